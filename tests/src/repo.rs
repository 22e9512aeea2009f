//! Real git repositories made with the real `git` binary.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs `git` in `dir` and returns its stdout; panics with stderr on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    git_home(dir, None, args)
}

/// The same with `HOME` at `home` when given, so no user configuration is read either.
pub fn git_home(dir: &Path, home: Option<&Path>, args: &[&str]) -> String {
    let mut command = Command::new("git");
    command
        .current_dir(dir)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "Fixture")
        .env("GIT_AUTHOR_EMAIL", "fixture@example.com")
        .env("GIT_COMMITTER_NAME", "Fixture")
        .env("GIT_COMMITTER_EMAIL", "fixture@example.com")
        .env("GIT_AUTHOR_DATE", "2026-01-02T03:04:05Z")
        .env("GIT_COMMITTER_DATE", "2026-01-02T03:04:05Z");
    if let Some(home) = home {
        command.env("HOME", home);
    }
    let out = command.output().expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} in {} failed:\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A repository with a small history on `main`: two commits, a few files.
pub fn init(dir: &Path) -> PathBuf {
    init_with(dir, None, &[])
}

/// The same, running git with `HOME` at `home` when given, with `extra` files (path and
/// contents) added by the first commit.
pub fn init_with(dir: &Path, home: Option<&Path>, extra: &[(&str, &str)]) -> PathBuf {
    let git = |args: &[&str]| git_home(dir, home, args);
    std::fs::create_dir_all(dir).expect("create repo dir");
    git(&["init", "-q", "-b", "main"]);
    git(&["config", "user.name", "Fixture"]);
    git(&["config", "user.email", "fixture@example.com"]);
    write(dir, "README.md", "# fixture\n\nA repository for tests.\n");
    write(dir, "src/lib.rs", &numbered("fn f", 30));
    write(dir, "src/old.rs", &numbered("old", 12));
    write(dir, "docs/guide.txt", &numbered("guide line", 20));
    for (path, contents) in extra {
        write(dir, path, contents);
    }
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "first"]);
    write(dir, "src/lib.rs", &numbered("fn g", 30));
    git(&["commit", "-q", "-am", "second"]);
    dir.to_path_buf()
}

/// `n` numbered lines starting with `prefix`.
pub fn numbered(prefix: &str, n: usize) -> String {
    (1..=n).map(|i| format!("{prefix} {i}\n")).collect()
}

/// Writes a file, creating parent directories.
pub fn write(dir: &Path, relative: &str, contents: &str) {
    let path = dir.join(relative);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("create parents");
    }
    std::fs::write(path, contents).expect("write file");
}

/// Makes edits in the work tree, captures them as a `git diff` patch (staged, with
/// renames detected), and restores the work tree and index to HEAD.
pub fn patch_from_edits(dir: &Path, edit: impl FnOnce(&Path)) -> String {
    edit(dir);
    git(dir, &["add", "-A"]);
    let patch = git(dir, &["diff", "--cached", "-M", "--full-index"]);
    git(dir, &["reset", "-q", "--hard", "HEAD"]);
    git(dir, &["clean", "-q", "-fd"]);
    patch
}

/// The commit id a ref points to.
pub fn rev(dir: &Path, rev: &str) -> String {
    git(dir, &["rev-parse", rev]).trim().to_owned()
}
