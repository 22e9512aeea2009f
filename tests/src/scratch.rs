//! Scratch directories and the real binaries.
//!
//! The binaries are found next to the test executable's profile directory
//! (`target/<profile>/`); `cargo test --workspace` builds them because the `admission` and
//! `mechanism-server` packages have integration tests of their own.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use tempfile::TempDir;

/// The path of a workspace binary built for the same profile as this test.
pub fn bin_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its own path");
    // target/<profile>/deps/<test-binary> -> target/<profile>/<name>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps");
    let path = profile_dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test --workspace`, which builds it",
        path.display()
    );
    path
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
