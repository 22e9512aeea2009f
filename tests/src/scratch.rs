//! Scratch directories and the real binaries.
//!
//! The binaries come from other packages (`admission`, `mechanism-builtins`,
//! `minimal-mechanism`), and cargo gives `CARGO_BIN_EXE_<name>` only to the integration tests of
//! the package that owns a binary. So they are found where cargo puts them, next to this test's
//! own directory: `cargo test --workspace` builds every one of them (each package has
//! integration tests) before any test runs. `cargo test -p tests` alone builds none of them: a
//! missing one fails with the command that builds it, a stale one is run as it is.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use tempfile::TempDir;

/// What to run when a binary is missing, as after `cargo test -p tests` in a clean target.
const BUILD_COMMAND: &str = "cargo build -p admission -p mechanism-builtins -p minimal-mechanism";

/// The path of a workspace binary built for the same profile and target as this test.
pub fn bin_path(name: &str) -> PathBuf {
    let path = profile_dir().join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "the binary {name} is not built at {}: run `cargo test --workspace`, or `{BUILD_COMMAND}` \
         (with the same profile) before `cargo test -p tests`",
        path.display()
    );
    path
}

/// `target/[<triple>/]<profile>/` of the running test executable (`.../<profile>/deps/<test>`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its own path");
    exe.parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps")
        .to_path_buf()
}

/// The environment variables `admission` reads for its global flags.
pub const ADMISSION_ENV: [&str; 4] = [
    "ADMISSION_STORE",
    "ADMISSION_WORKSPACE",
    "ADMISSION_ALLOWED_SIGNERS",
    "ADMISSION_REGISTRY",
];

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
    /// The environment variables that stand for its global flags are cleared: only what a
    /// test sets applies.
    pub fn admission(&self) -> Command {
        let mut cmd = Command::new(bin_path("admission"));
        cmd.current_dir(self.root()).env_remove("RUST_LOG");
        for var in ADMISSION_ENV {
            cmd.env_remove(var);
        }
        cmd
    }
}

impl Default for Scratch {
    fn default() -> Self {
        Self::new()
    }
}
