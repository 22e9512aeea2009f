//! Scratch directories and the real binaries.
//!
//! The binaries are built once per test process with the same cargo, profile and target
//! directory as the test itself, so `cargo test -p tests` never runs a stale or missing binary.

use std::path::{Path, PathBuf};
use std::process;
use std::sync::OnceLock;

use assert_cmd::Command;
use tempfile::TempDir;

/// The packages whose binaries the end-to-end tests run.
const BINARY_PACKAGES: &[&str] = &["mechanism-builtins", "admission", "minimal-mechanism"];

/// The path of a workspace binary built for the same profile as this test.
pub fn bin_path(name: &str) -> PathBuf {
    let profile_dir = profile_dir();
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| build_binaries(&profile_dir));
    profile_dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
}

/// `target/<profile>/` of the running test executable (`target/<profile>/deps/<test>`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its own path");
    exe.parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps")
        .to_path_buf()
}

/// Runs `cargo build` for the binary packages; a no-op of well under a second when fresh.
fn build_binaries(profile_dir: &Path) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let target_dir = profile_dir.parent().expect("target/<profile> has a parent");
    let mut command = process::Command::new(cargo);
    command
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["build", "--quiet", "--bins", "--target-dir"])
        .arg(target_dir);
    match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => {}
        Some("release") => {
            command.arg("--release");
        }
        Some(other) => {
            command.args(["--profile", other]);
        }
    }
    for package in BINARY_PACKAGES {
        command.args(["-p", package]);
    }
    let output = command.output().expect("cargo runs");
    assert!(
        output.status.success(),
        "building the binaries failed: {command:?}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A throw-away directory where one test runs its commands.
pub struct Scratch {
    dir: TempDir,
}

impl Scratch {
    /// A fresh empty directory.
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temporary directory"),
        }
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// A path inside the directory.
    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    /// Writes a file (creating parent directories) and returns its path.
    pub fn write(&self, relative: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create parent directories");
        }
        std::fs::write(&path, contents).expect("write scratch file");
        path
    }

    /// `admission` run inside this directory; failures print the command, stdout and stderr.
    pub fn admission(&self) -> Command {
        let mut cmd = Command::new(bin_path("admission"));
        cmd.current_dir(self.root()).env_remove("RUST_LOG");
        cmd
    }
}

impl Default for Scratch {
    fn default() -> Self {
        Self::new()
    }
}
