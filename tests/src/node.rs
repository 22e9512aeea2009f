//! Node.js clients that are not ours (tests/foreign-client on vscode-jsonrpc, tests/mcp-client
//! on the official MCP TypeScript SDK): each a package whose one pinned dependency is installed
//! with `npm ci` from its committed lockfile the first time a test needs it.

use std::fs::{self, File};
use std::path::Path;
use std::process;

use assert_cmd::Command;
use serde_json::Value;

/// Makes sure `dir/node_modules` holds `dependency` at the version `dir/package.json` pins,
/// running `npm ci` once if not. A file lock keeps two test processes from installing at once.
pub fn ensure_installed(dir: &Path, dependency: &str) {
    require_tool("node");
    // Checked under the lock too: while another process's `npm ci` is extracting, the
    // dependency's package.json can be in place before the rest of it.
    let name = dir
        .file_name()
        .map_or_else(|| "client".into(), |n| n.to_string_lossy());
    let lock_path = std::env::temp_dir().join(format!("mechanism-{name}-npm.lock"));
    let lock = File::create(&lock_path).expect("create the npm lock file");
    lock.lock().expect("lock the npm lock file");
    if !installed(dir, dependency) {
        require_tool("npm");
        let mut cmd = Command::new("npm");
        cmd.current_dir(dir).args(["ci", "--no-audit", "--no-fund"]);
        cmd.assert().success();
    }
    assert!(
        installed(dir, dependency),
        "`npm ci` in {} did not install {dependency} {}",
        dir.display(),
        pinned_version(dir, dependency)
    );
}

/// Whether the installed dependency is the version package.json pins.
fn installed(dir: &Path, dependency: &str) -> bool {
    let manifest = dir.join(format!("node_modules/{dependency}/package.json"));
    fs::read(manifest)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
        .is_some_and(|installed| installed["version"] == pinned_version(dir, dependency).as_str())
}

/// The exact version package.json pins.
fn pinned_version(dir: &Path, dependency: &str) -> String {
    let manifest = dir.join("package.json");
    let package: Value = serde_json::from_slice(&fs::read(&manifest).expect("read package.json"))
        .expect("package.json is JSON");
    package["dependencies"][dependency]
        .as_str()
        .unwrap_or_else(|| panic!("{} does not pin {dependency}", manifest.display()))
        .to_owned()
}

/// Fails clearly, naming what to install, when `tool` (node or npm) cannot run.
pub fn require_tool(tool: &str) {
    if let Err(e) = process::Command::new(tool).arg("--version").output() {
        panic!(
            "this test needs Node.js 20+ and npm on PATH, but `{tool} --version` could not \
             run: {e}"
        );
    }
}
