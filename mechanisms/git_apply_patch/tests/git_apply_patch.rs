//! git_apply_patch against real repositories made with the real `git`: predictions equal
//! what `git apply --index` and `git write-tree` produce, execute makes exactly the
//! predicted commit, stale plans are refused, and every refusal writes nothing anywhere.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use git_apply_patch::{
    branch_state, execute, plan, ApplyError, ApplyParams, BranchState, Person, Prediction,
};
use protocol::ErrorCode;
use tests::repo::{self, git_home, numbered, write};

/// A scratch directory: `root/` (the mechanism's root) holding `root/repo`, and
/// `outside/`, which nothing may ever touch.
struct World {
    dir: tempfile::TempDir,
}

impl World {
    fn new() -> Self {
        let world = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        fs::create_dir_all(world.path("home")).unwrap();
        fs::create_dir_all(world.path("outside")).unwrap();
        fs::write(world.path("outside/marker"), "outside\n").unwrap();
        repo::init_with(
            &world.repo(),
            Some(&world.path("home")),
            &[("tool.sh", "#!/bin/sh\necho tool\n")],
        );
        world
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    fn root(&self) -> PathBuf {
        self.path("root")
    }

    fn repo(&self) -> PathBuf {
        self.path("root/repo")
    }

    fn git(&self, args: &[&str]) -> String {
        git_home(&self.repo(), Some(&self.path("home")), args)
    }

    /// Makes edits, captures them as `git diff --cached -M --full-index`, and puts the
    /// work tree and index back to HEAD.
    fn patch(&self, edit: impl FnOnce(&Path)) -> Vec<u8> {
        edit(&self.repo());
        self.git(&["add", "-A"]);
        let patch = self.git(&["diff", "--cached", "-M", "--full-index"]);
        self.git(&["reset", "-q", "--hard", "HEAD"]);
        self.git(&["clean", "-q", "-fdx"]);
        assert!(!patch.is_empty(), "the edit produced no patch");
        patch.into_bytes()
    }

    /// The tree `git apply --index` then `git write-tree` make of `patch` in a clone.
    fn reference_tree(&self, patch: &[u8]) -> String {
        let clone = self.path("clone");
        let _ = fs::remove_dir_all(&clone);
        git_home(
            self.dir.path(),
            Some(&self.path("home")),
            &["clone", "-q", self.repo().to_str().unwrap(), "clone"],
        );
        fs::write(self.path("p.diff"), patch).unwrap();
        git_home(
            &clone,
            Some(&self.path("home")),
            &["apply", "--index", self.path("p.diff").to_str().unwrap()],
        );
        let tree = git_home(&clone, Some(&self.path("home")), &["write-tree"]);
        fs::remove_dir_all(&clone).unwrap();
        fs::remove_file(self.path("p.diff")).unwrap();
        tree.trim().to_owned()
    }

    fn rev(&self, rev: &str) -> String {
        self.git(&["rev-parse", rev]).trim().to_owned()
    }

    /// Every file, directory and symlink under the scratch directory, with contents and
    /// permissions: inside the repository (objects, refs, index, work tree) and outside.
    fn snapshot(&self) -> BTreeMap<PathBuf, Node> {
        let mut nodes = BTreeMap::new();
        walk(self.dir.path(), self.dir.path(), &mut nodes);
        nodes
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Node {
    Dir,
    File(Vec<u8>, u32),
    Symlink(PathBuf),
}

fn walk(base: &Path, dir: &Path, nodes: &mut BTreeMap<PathBuf, Node>) {
    use std::os::unix::fs::PermissionsExt;
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let relative = path.strip_prefix(base).unwrap().to_path_buf();
        let meta = fs::symlink_metadata(&path).unwrap();
        if meta.file_type().is_symlink() {
            nodes.insert(relative, Node::Symlink(fs::read_link(&path).unwrap()));
        } else if meta.is_dir() {
            nodes.insert(relative, Node::Dir);
            walk(base, &path, nodes);
        } else {
            let mode = meta.permissions().mode();
            nodes.insert(relative, Node::File(fs::read(&path).unwrap(), mode));
        }
    }
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn params() -> ApplyParams {
    ApplyParams {
        repo: "repo".to_owned(),
        branch: None,
        message: "apply a patch".to_owned(),
        author: Person {
            name: "Mechanism Test".to_owned(),
            email: "test@example.com".to_owned(),
        },
        time: None,
        strip: None,
    }
}

/// Plans `patch`, expecting a refusal with `code`, and checks that nothing under the
/// scratch directory changed.
fn refused(world: &World, params: &ApplyParams, patch: &[u8], code: ErrorCode) -> String {
    let before = world.snapshot();
    let error = plan(&world.root(), params, patch).expect_err("the plan must be refused");
    assert_eq!(error.code(), code, "{error}");
    assert_eq!(world.snapshot(), before, "a refused plan changed files");
    error.to_string()
}

fn effect_types(p: &Prediction) -> Vec<String> {
    p.effects.iter().map(|e| e.effect_type.clone()).collect()
}

/// Plan (writing nothing, twice equal, tree as git apply's), execute (commit as
/// predicted, clean status), then the same patch no longer applies.
fn round_trip(world: &World, patch: &[u8]) -> Prediction {
    let reference = world.reference_tree(patch);
    round_trip_to(world, &params(), patch, &reference)
}

/// [`round_trip`] with `params`, the tree to predict being `reference`.
fn round_trip_to(world: &World, params: &ApplyParams, patch: &[u8], reference: &str) -> Prediction {
    let before = world.snapshot();
    let predicted = plan(&world.root(), params, patch).unwrap();
    assert_eq!(world.snapshot(), before, "planning wrote something");
    assert_eq!(plan(&world.root(), params, patch).unwrap(), predicted);
    assert_eq!(
        predicted.new_tree, reference,
        "tree differs from git apply's"
    );
    assert_eq!(predicted.base_commit, world.rev("main"));
    assert_eq!(
        branch_state(&world.root(), &predicted).unwrap(),
        BranchState::AtBase
    );

    let applied = execute(&world.root(), params, patch, &predicted).unwrap();
    assert_eq!(applied.commit, predicted.new_commit);
    assert!(applied.worktree_updated);
    assert_eq!(world.rev("main"), predicted.new_commit);
    assert_eq!(world.rev("HEAD^{tree}"), predicted.new_tree);
    assert_eq!(world.rev("HEAD~1"), predicted.base_commit);
    assert_eq!(
        world.git(&["status", "--porcelain", "--untracked-files=all"]),
        "",
        "work tree or index differ from the new commit"
    );
    world.git(&["fsck", "--strict", "--no-dangling"]);
    assert_eq!(
        branch_state(&world.root(), &predicted).unwrap(),
        BranchState::AtPredicted
    );

    let again = plan(&world.root(), params, patch).unwrap_err();
    assert_eq!(again.code(), ErrorCode::InvalidParams);
    assert!(again.to_string().contains("does not apply"), "{again}");
    predicted
}

#[test]
fn additions_match_git_apply_and_are_not_destructive() {
    let w = World::new();
    let patch = w.patch(|d| {
        write(d, "src/new.rs", &numbered("new", 5));
        write(d, "deep/er/nested.txt", "nested\n");
        write(d, "empty.txt", "");
        write(d, "run.sh", "#!/bin/sh\n");
        chmod(&d.join("run.sh"), 0o755);
    });
    let p = round_trip(&w, &patch);
    assert!(!p.destructive, "{:?}", p.destructive_reasons);
    assert_eq!(
        effect_types(&p),
        ["fs.write", "fs.write", "fs.write", "fs.write", "git.commit"]
    );
    let run = p
        .effects
        .iter()
        .find(|e| e.resource == "repo/run.sh")
        .unwrap();
    assert_eq!(run.detail["mode"], "100755");
    assert_eq!(run.detail["before"], serde_json::Value::Null);
    assert!(p.preview.contains("+++ b/src/new.rs"), "{}", p.preview);
    assert_eq!(
        fs::read_to_string(w.repo().join("deep/er/nested.txt")).unwrap(),
        "nested\n"
    );
    let commit = &p.effects[4];
    assert_eq!(commit.resource, "repo");
    assert_eq!(commit.detail["ref"], "refs/heads/main");
    assert_eq!(commit.detail["to"], p.new_commit.as_str());
}

#[test]
fn edits_with_several_hunks_match_git_apply() {
    let w = World::new();
    let patch = w.patch(|d| {
        let mut text = numbered("fn g", 30);
        text = text.replace("fn g 3\n", "fn g three\n");
        text = text.replace("fn g 27\n", "fn g 27\ninserted\n");
        write(d, "src/lib.rs", &text);
        write(
            d,
            "README.md",
            "# fixture\n\nA repository for tests, edited.\n",
        );
    });
    let p = round_trip(&w, &patch);
    assert!(!p.destructive);
    assert!(p.preview.contains("+fn g three"), "{}", p.preview);
    let write = &p.effects[0];
    assert_eq!(write.effect_type, "fs.write");
    assert_ne!(write.detail["before"], serde_json::Value::Null);
    assert_eq!(p.worktree.len(), 2);
    assert!(p.worktree.iter().all(|f| !f.differs));
}

#[test]
fn deletions_match_git_apply_and_are_destructive() {
    let w = World::new();
    let patch = w.patch(|d| {
        fs::remove_file(d.join("src/old.rs")).unwrap();
        // The only file of its directory: the directory goes too.
        fs::remove_file(d.join("docs/guide.txt")).unwrap();
    });
    let p = round_trip(&w, &patch);
    assert!(p.destructive);
    assert_eq!(
        p.destructive_reasons,
        ["deletes docs/guide.txt", "deletes src/old.rs"]
    );
    assert_eq!(effect_types(&p), ["fs.delete", "fs.delete", "git.commit"]);
    assert!(
        !w.repo().join("docs").exists(),
        "the emptied directory stays"
    );
    assert!(w.repo().join("src/lib.rs").exists());
}

#[test]
fn renames_match_git_apply_and_are_not_destructive() {
    let w = World::new();
    let patch = w.patch(|d| {
        fs::create_dir_all(d.join("manual")).unwrap();
        fs::rename(d.join("docs/guide.txt"), d.join("manual/guide.txt")).unwrap();
        // A rename with an edit.
        let text = numbered("old", 12).replace("old 6\n", "six\n");
        fs::remove_file(d.join("src/old.rs")).unwrap();
        write(d, "src/renamed.rs", &text);
    });
    assert!(String::from_utf8_lossy(&patch).contains("rename from src/old.rs"));
    let p = round_trip(&w, &patch);
    assert!(!p.destructive, "{:?}", p.destructive_reasons);
    let renamed: Vec<_> = p
        .effects
        .iter()
        .filter(|e| e.detail.contains_key("renamed_from"))
        .map(|e| {
            (
                e.resource.as_str(),
                e.detail["renamed_from"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        renamed,
        [
            ("repo/manual/guide.txt", "docs/guide.txt"),
            ("repo/src/renamed.rs", "src/old.rs")
        ]
    );
    assert!(
        p.preview.contains("rename from docs/guide.txt"),
        "{}",
        p.preview
    );
    assert!(
        !w.repo().join("docs").exists(),
        "the emptied directory stays"
    );
}

#[test]
fn a_rename_with_a_mode_change_and_an_edit_matches_git_apply() {
    let w = World::new();
    let patch = w.patch(|d| {
        fs::remove_file(d.join("tool.sh")).unwrap();
        write(
            d,
            "bin/tool.sh",
            "#!/bin/sh
echo tool
echo more
",
        );
        chmod(&d.join("bin/tool.sh"), 0o755);
    });
    let p = round_trip(&w, &patch);
    assert_eq!(
        effect_types(&p),
        ["fs.delete", "fs.write", "fs.mode", "git.commit"]
    );
    assert_eq!(p.effects[1].detail["renamed_from"], "tool.sh");
    assert_eq!(p.effects[1].detail["mode"], "100755");
    assert_eq!(
        p.destructive_reasons,
        ["changes the mode of bin/tool.sh from 100644 to 100755"]
    );
}

#[test]
fn crlf_lines_and_missing_final_newlines_match_git_apply() {
    let w = World::new();
    write(&w.repo(), "dos.txt", "one\r\ntwo\r\nthree\r\n");
    write(&w.repo(), "tail.txt", "a\nb\nc");
    w.git(&["add", "-A"]);
    w.git(&["commit", "-q", "-m", "odd endings"]);
    let patch = w.patch(|d| {
        write(d, "dos.txt", "one\r\n2\r\nthree\r\n");
        write(d, "tail.txt", "a\nb\nc\nd");
    });
    assert!(String::from_utf8_lossy(&patch).contains("No newline at end of file"));
    round_trip(&w, &patch);
    assert_eq!(
        fs::read(w.repo().join("dos.txt")).unwrap(),
        b"one\r\n2\r\nthree\r\n"
    );
    assert_eq!(fs::read(w.repo().join("tail.txt")).unwrap(), b"a\nb\nc\nd");
}

#[test]
fn an_empty_file_is_deleted_without_hunks() {
    let w = World::new();
    write(&w.repo(), "empty.txt", "");
    w.git(&["add", "-A"]);
    w.git(&["commit", "-q", "-m", "empty file"]);
    let patch = w.patch(|d| fs::remove_file(d.join("empty.txt")).unwrap());
    assert!(!String::from_utf8_lossy(&patch).contains("@@"));
    let p = round_trip(&w, &patch);
    assert_eq!(p.destructive_reasons, ["deletes empty.txt"]);
}

#[test]
fn mode_change_matches_git_apply_and_is_destructive() {
    let w = World::new();
    let patch = w.patch(|d| chmod(&d.join("tool.sh"), 0o755));
    let p = round_trip(&w, &patch);
    assert!(p.destructive);
    assert_eq!(
        p.destructive_reasons,
        ["changes the mode of tool.sh from 100644 to 100755"]
    );
    assert_eq!(effect_types(&p), ["fs.mode", "git.commit"]);
    assert_eq!(p.effects[0].detail["to"], "100755");
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(w.repo().join("tool.sh"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o111, 0o111);
}

#[test]
fn a_plain_diff_without_git_headers_applies() {
    let w = World::new();
    let patch = b"--- a/README.md\t2026-01-01 00:00:00\n+++ b/README.md\t2026-01-02 00:00:00\n\
@@ -1,3 +1,3 @@\n # fixture\n \n-A repository for tests.\n+A repository for plain diffs.\n";
    round_trip(&w, patch);
}

/// A commit message and the edit the commit makes.
type Edit<'a> = (&'a str, &'a dyn Fn(&Path));

/// Commits each edit on `main` with its message, and returns `git format-patch --stdout -M
/// ARGS` of those commits; `main` is put back on the base.
fn format_patch(w: &World, edits: &[Edit], args: &[&str]) -> Vec<u8> {
    let base = w.rev("main");
    for (message, edit) in edits {
        edit(&w.repo());
        w.git(&["add", "-A"]);
        w.git(&["commit", "-q", "-m", message]);
    }
    let range = format!("{base}..main");
    let mut command = vec!["format-patch", "--stdout", "-M"];
    command.extend(args);
    command.push(&range);
    let mbox = w.git(&command);
    w.git(&["reset", "-q", "--hard", &base]);
    mbox.into_bytes()
}

/// The tree `git am` makes of `mbox` on `main`, in a clone.
fn am_tree(w: &World, mbox: &[u8]) -> String {
    let clone = w.path("clone");
    let _ = fs::remove_dir_all(&clone);
    let home = w.path("home");
    let repo = w.repo();
    git_home(
        w.dir.path(),
        Some(&home),
        &["clone", "-q", repo.to_str().unwrap(), "clone"],
    );
    fs::write(w.path("mails"), mbox).unwrap();
    git_home(
        &clone,
        Some(&home),
        &["am", "-q", w.path("mails").to_str().unwrap()],
    );
    let tree = git_home(&clone, Some(&home), &["rev-parse", "HEAD^{tree}"]);
    fs::remove_dir_all(&clone).unwrap();
    fs::remove_file(w.path("mails")).unwrap();
    tree.trim().to_owned()
}

#[test]
fn format_patch_mails_apply_in_order_as_one_commit_as_git_am_applies_them() {
    let w = World::new();
    let edit_readme = |d: &Path| write(d, "README.md", "# fixture\n\n- \nEdited by mail 1.\n");
    let add_and_rename = |d: &Path| {
        write(d, "src/new.rs", &numbered("new", 5));
        fs::rename(d.join("src/old.rs"), d.join("src/older.rs")).unwrap();
    };
    let edit_readme_again = |d: &Path| {
        // Removing the line `- ` writes `-- ` into the diff: a hunk line, not a signature.
        write(d, "README.md", "# fixture\n\nEdited by mail 3.\n")
    };
    let edit_new_and_renamed = |d: &Path| {
        write(d, "src/new.rs", &numbered("newer", 5));
        write(d, "src/older.rs", &numbered("older", 12));
    };
    let edits: [Edit; 4] = [
        (
            "mail 1\n\nIts body.\n---\nA line git am would cut at.",
            &edit_readme,
        ),
        ("mail 2", &add_and_rename),
        ("mail 3", &edit_readme_again),
        ("mail 4", &edit_new_and_renamed),
    ];
    for args in [
        &[][..],
        &["--no-signature"],
        &["--numbered", "--cover-letter"],
    ] {
        let mbox = format_patch(&w, &edits, args);
        if args.contains(&"--cover-letter") {
            // A cover letter has no diff: git am refuses it too.
            let message = refused(&w, &params(), &mbox, ErrorCode::InvalidParams);
            assert!(message.contains("no `diff --git`"), "{message}");
            continue;
        }
        // Removing `- ` wrote `-- ` into mail 3's hunk; each mail has a signature unless not.
        let separators = String::from_utf8_lossy(&mbox).matches("\n-- \n").count();
        assert_eq!(separators, if args.is_empty() { 5 } else { 1 });
        let base = w.rev("main");
        let reference = am_tree(&w, &mbox);
        let p = round_trip_to(&w, &params(), &mbox, &reference);
        // One commit, made of the params' message and author, not the mails'.
        assert_eq!(w.rev("HEAD~1"), base);
        assert_eq!(
            w.git(&["log", "-1", "--format=%s|%an|%ae"]).trim(),
            "apply a patch|Mechanism Test|test@example.com"
        );
        let paths: Vec<&str> = p
            .effects
            .iter()
            .filter_map(|e| e.detail.get("path").and_then(|p| p.as_str()))
            .collect();
        assert_eq!(
            paths,
            ["README.md", "src/new.rs", "src/old.rs", "src/older.rs"]
        );
        assert_eq!(p.effects[3].detail["renamed_from"], "src/old.rs");
        assert!(!p.destructive, "{:?}", p.destructive_reasons);
        w.git(&["reset", "-q", "--hard", &base]);
    }
}

#[test]
fn a_mail_whose_diff_does_not_apply_after_the_mails_before_it_is_refused() {
    let w = World::new();
    let mbox = format_patch(
        &w,
        &[
            ("add", &|d: &Path| write(d, "notes.txt", "one\n")),
            ("edit", &|d: &Path| write(d, "notes.txt", "two\n")),
        ],
        &[],
    );
    let text = String::from_utf8(mbox).unwrap();
    let at = text.find("\nFrom ").unwrap() + 1;
    let (first, second) = text.split_at(at);
    // The second mail alone edits a file that is not there; after the first it applies.
    let message = refused(&w, &params(), second.as_bytes(), ErrorCode::InvalidParams);
    assert!(message.contains("does not exist"), "{message}");
    let swapped = [second, first].concat();
    let message = refused(&w, &params(), swapped.as_bytes(), ErrorCode::InvalidParams);
    assert!(message.contains("does not exist"), "{message}");
    assert!(plan(&w.root(), &params(), text.as_bytes()).is_ok());
}

#[test]
fn strip_0_applies_diffs_without_prefixes_as_patch_p0_does() {
    let w = World::new();
    let no_prefix = |p: &ApplyParams| ApplyParams {
        strip: Some(0),
        ..p.clone()
    };
    // `git diff --no-prefix`, checked against what git itself makes of the edit.
    write(
        &w.repo(),
        "docs/guide.txt",
        &numbered("guide line (edited)", 20),
    );
    write(&w.repo(), "top.txt", "top\n");
    w.git(&["add", "-A"]);
    let patch = w.git(&["diff", "--cached", "--no-prefix"]);
    let reference = w.git(&["write-tree"]).trim().to_owned();
    w.git(&["reset", "-q", "--hard", "HEAD"]);
    w.git(&["clean", "-q", "-fdx"]);
    let message = refused(&w, &params(), patch.as_bytes(), ErrorCode::InvalidParams);
    assert!(
        message.contains("\"top.txt\" has no leading directory (like `a/`) to strip")
            && message.contains("set the param `strip` to 0"),
        "{message}"
    );
    round_trip_to(&w, &no_prefix(&params()), patch.as_bytes(), &reference);

    // `diff -u` of one file, checked against `patch -p0` in a copy.
    let copy = w.path("copy");
    let _ = fs::remove_dir_all(&copy);
    git_home(
        w.dir.path(),
        Some(&w.path("home")),
        &["clone", "-q", w.repo().to_str().unwrap(), "copy"],
    );
    fs::write(
        w.path("new-readme"),
        "# fixture\n\nA repository for plain diffs.\n",
    )
    .unwrap();
    let diff = std::process::Command::new("diff")
        .current_dir(&copy)
        .args([
            "-u",
            "README.md",
            "../new-readme",
            "--label",
            "README.md",
            "--label",
            "README.md",
        ])
        .output()
        .unwrap();
    assert_eq!(diff.status.code(), Some(1), "diff found no difference");
    let patched = std::process::Command::new("patch")
        .current_dir(&copy)
        .args(["-s", "-p0"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(&diff.stdout)?;
            child.wait()
        })
        .unwrap();
    assert!(patched.success());
    git_home(&copy, Some(&w.path("home")), &["add", "-A"]);
    let reference = git_home(&copy, Some(&w.path("home")), &["write-tree"])
        .trim()
        .to_owned();
    round_trip_to(&w, &no_prefix(&params()), &diff.stdout, &reference);

    // strip 2 removes two directories; a name with fewer is refused, naming the count.
    let two = b"--- x/y/README.md\n+++ x/y/README.md\n@@ -1,3 +1,3 @@\n-# fixture\n+# two\n \n \
A repository for plain diffs.\n";
    let strip_2 = ApplyParams {
        strip: Some(2),
        ..params()
    };
    plan(&w.root(), &strip_2, two).unwrap();
    let message = refused(
        &w,
        &ApplyParams {
            strip: Some(3),
            ..params()
        },
        two,
        ErrorCode::InvalidParams,
    );
    assert!(
        message.contains("fewer than 3 leading directories"),
        "{message}"
    );
}

#[test]
fn a_hunk_is_found_at_an_offset_as_git_apply_finds_it() {
    let w = World::new();
    let patch = w.patch(|d| {
        write(
            d,
            "src/lib.rs",
            &numbered("fn g", 30).replace("fn g 20\n", "twenty\n"),
        );
    });
    // The base gains lines above the hunk after the patch was made.
    write(
        &w.repo(),
        "src/lib.rs",
        &(String::from("// a\n// b\n") + &numbered("fn g", 30)),
    );
    w.git(&["commit", "-q", "-am", "lines on top"]);
    let p = round_trip(&w, &patch);
    let text = fs::read_to_string(w.repo().join("src/lib.rs")).unwrap();
    assert!(text.starts_with("// a\n// b\nfn g 1\n") && text.contains("twenty\n"));
    assert!(!p.destructive);
}

#[test]
fn quoted_non_ascii_names_are_applied() {
    let w = World::new();
    let patch = w.patch(|d| write(d, "docs/caf\u{e9} menu.txt", "croissant\n"));
    assert!(
        String::from_utf8_lossy(&patch).contains("\\303\\251"),
        "git quotes the name"
    );
    let p = round_trip(&w, &patch);
    assert_eq!(p.effects[0].resource, "repo/docs/caf\u{e9} menu.txt");
}

#[test]
fn time_is_given_or_derived_from_the_base_never_the_clock() {
    let w = World::new();
    let patch = w.patch(|d| write(d, "a.txt", "a\n"));
    let derived = plan(&w.root(), &params(), &patch).unwrap();
    // The fixture commits at 2026-01-02T03:04:05Z.
    assert_eq!(derived.time, "2026-01-02T03:04:06Z");

    let mut given = params();
    given.time = Some("2026-03-04T05:06:07+02:00".to_owned());
    let p = plan(&w.root(), &given, &patch).unwrap();
    assert_eq!(p.time, "2026-03-04T05:06:07+02:00");
    assert_ne!(p.new_commit, derived.new_commit);
    execute(&w.root(), &given, &patch, &p).unwrap();
    assert_eq!(
        w.git(&["log", "-1", "--format=%aI %cI %an <%ae>"]).trim(),
        "2026-03-04T05:06:07+02:00 2026-03-04T05:06:07+02:00 Mechanism Test <test@example.com>"
    );

    for bad in ["yesterday", "2026-03-04T05:06:07.5Z", "2026-03-04 05:06:07"] {
        let mut params = params();
        params.time = Some(bad.to_owned());
        refused(&w, &params, &patch, ErrorCode::InvalidParams);
    }
    let mut bad_author = params();
    bad_author.author.name = "Eve <eve@example.com>".to_owned();
    refused(&w, &bad_author, &patch, ErrorCode::InvalidParams);
    let mut empty_message = params();
    empty_message.message = " \n\n".to_owned();
    refused(&w, &empty_message, &patch, ErrorCode::InvalidParams);
    let mut no_branch = params();
    no_branch.branch = Some("nope".to_owned());
    refused(&w, &no_branch, &patch, ErrorCode::InvalidParams);
    let mut bad_branch = params();
    bad_branch.branch = Some("a..b".to_owned());
    refused(&w, &bad_branch, &patch, ErrorCode::InvalidParams);
}

#[test]
fn params_refuse_unknown_fields() {
    let ok = serde_json::json!({
        "repo": "repo", "message": "m", "author": {"name": "n", "email": "e@x"}
    });
    serde_json::from_value::<ApplyParams>(ok.clone()).unwrap();
    let mut extra = ok.clone();
    extra["force"] = true.into();
    assert!(serde_json::from_value::<ApplyParams>(extra).is_err());
    let mut extra = ok;
    extra["author"]["phone"] = "1".into();
    assert!(serde_json::from_value::<ApplyParams>(extra).is_err());
}

#[test]
fn stale_after_the_branch_moves() {
    let w = World::new();
    let patch = w.patch(|d| write(d, "a.txt", "a\n"));
    let p = plan(&w.root(), &params(), &patch).unwrap();
    write(&w.repo(), "README.md", "moved\n");
    w.git(&["commit", "-q", "-am", "someone else"]);
    let moved = w.rev("main");
    assert_eq!(
        branch_state(&w.root(), &p).unwrap(),
        BranchState::Elsewhere(moved.clone())
    );
    let before = w.snapshot();
    let error = execute(&w.root(), &params(), &patch, &p).unwrap_err();
    assert_eq!(error.code(), ErrorCode::StalePlan, "{error}");
    assert_eq!(w.snapshot(), before);
    assert_eq!(w.rev("main"), moved);
}

#[test]
fn stale_after_an_edit_of_a_touched_file_and_destructive_when_replanned() {
    let w = World::new();
    let patch = w.patch(|d| write(d, "README.md", "# fixture\n\nA repository for tests!\n"));
    let p = plan(&w.root(), &params(), &patch).unwrap();
    assert!(!p.destructive);
    fs::write(
        w.repo().join("README.md"),
        "# fixture\n\nA repository for tests.\nlocal\n",
    )
    .unwrap();
    let before = w.snapshot();
    let error = execute(&w.root(), &params(), &patch, &p).unwrap_err();
    assert_eq!(error.code(), ErrorCode::StalePlan, "{error}");
    assert!(error.to_string().contains("work tree"), "{error}");
    assert_eq!(w.snapshot(), before);

    // Planned again: the local change would be overwritten, so it is destructive.
    let again = plan(&w.root(), &params(), &patch).unwrap();
    assert!(again.destructive);
    assert_eq!(again.destructive_reasons.len(), 1);
    assert!(again.destructive_reasons[0].contains("README.md"));
    assert!(again.worktree[0].differs);
    // A dirty file the patch does not touch changes nothing.
    fs::write(w.repo().join("src/old.rs"), "dirty\n").unwrap();
    assert_eq!(plan(&w.root(), &params(), &patch).unwrap(), again);

    execute(&w.root(), &params(), &patch, &again).unwrap();
    assert_eq!(
        fs::read_to_string(w.repo().join("README.md")).unwrap(),
        "# fixture\n\nA repository for tests!\n"
    );
    assert_eq!(
        fs::read_to_string(w.repo().join("src/old.rs")).unwrap(),
        "dirty\n"
    );
}

#[test]
fn staged_changes_to_a_touched_file_are_destructive() {
    let w = World::new();
    let patch = w.patch(|d| write(d, "README.md", "changed\n"));
    write(&w.repo(), "README.md", "staged\n");
    w.git(&["add", "README.md"]);
    write(
        &w.repo(),
        "README.md",
        "# fixture\n\nA repository for tests.\n",
    );
    let p = plan(&w.root(), &params(), &patch).unwrap();
    assert!(p.destructive);
    let fact = &p.worktree[0];
    assert!(fact.differs);
    assert_ne!(fact.index, fact.worktree);
}

#[test]
fn a_locked_branch_is_busy_without_moving_it_or_touching_the_work_tree() {
    let w = World::new();
    let patch = w.patch(|d| write(d, "README.md", "locked\n"));
    let p = plan(&w.root(), &params(), &patch).unwrap();
    let lock = w.repo().join(".git/refs/heads/main.lock");
    fs::write(&lock, "").unwrap();
    let before = w.snapshot();
    let error = execute(&w.root(), &params(), &patch, &p).unwrap_err();
    assert_eq!(error.code(), ErrorCode::Busy, "{error}");
    assert_eq!(w.snapshot(), before);
    assert_eq!(w.rev("main"), p.base_commit);
    assert_eq!(
        fs::read_to_string(w.repo().join("README.md")).unwrap(),
        "# fixture\n\nA repository for tests.\n"
    );
    fs::remove_file(lock).unwrap();
    execute(&w.root(), &params(), &patch, &p).unwrap();
    assert_eq!(w.rev("main"), p.new_commit);
}

#[test]
fn a_branch_not_checked_out_moves_only_its_ref() {
    let w = World::new();
    w.git(&["branch", "feature", "HEAD~1"]);
    let patch = w.patch(|d| write(d, "feature.txt", "feature\n"));
    let mut params = params();
    params.branch = Some("feature".to_owned());
    let p = plan(&w.root(), &params, &patch).unwrap();
    assert!(!p.checked_out);
    assert!(p.worktree.is_empty());
    assert_eq!(p.ref_name, "refs/heads/feature");
    assert_eq!(p.base_commit, w.rev("main~1"));

    let main = w.rev("main");
    let index = fs::read(w.repo().join(".git/index")).unwrap();
    let applied = execute(&w.root(), &params, &patch, &p).unwrap();
    assert!(!applied.worktree_updated);
    assert_eq!(w.rev("feature"), p.new_commit);
    assert_eq!(w.rev("feature~1"), p.base_commit);
    assert_eq!(w.rev("main"), main);
    assert!(!w.repo().join("feature.txt").exists());
    assert_eq!(fs::read(w.repo().join(".git/index")).unwrap(), index);
    assert_eq!(w.git(&["status", "--porcelain"]), "");
}

// Refusals. Each checks, through `refused`, that nothing changed under the scratch dir.

#[test]
fn absolute_dotdot_and_dot_git_paths_are_refused() {
    let w = World::new();
    let create = |name: &str| {
        format!(
            "diff --git a/{name} b/{name}\nnew file mode 100644\n--- /dev/null\n+++ b/{name}\n\
             @@ -0,0 +1 @@\n+x\n"
        )
    };
    for name in [
        "/tmp/absolute",
        "../outside/x",
        "src/../../outside/x",
        ".git/hooks/pre-commit",
        ".GIT/config",
        "src/.Git/x",
        ".git./config",
        ".git /config",
        "git~1/config",
        ".g\u{200c}it/config",
    ] {
        let message = refused(
            &w,
            &params(),
            create(name).as_bytes(),
            ErrorCode::PathRefused,
        );
        assert!(message.contains("refused"), "{name}: {message}");
    }
    // Rename lines carry no prefix, so an absolute path arrives as it is.
    let rename = b"diff --git a/README.md b//tmp/stolen\nsimilarity index 100%\n\
rename from README.md\nrename to /tmp/stolen\n";
    refused(&w, &params(), rename, ErrorCode::PathRefused);
}

/// `patch` with its `a/` and `b/` prefixes replaced by `/`: every name absolute.
fn absolute_names(patch: &[u8]) -> Vec<u8> {
    String::from_utf8_lossy(patch)
        .lines()
        .map(|line| {
            let line = if line.starts_with("diff --git ") {
                line.replace(" a/", " /").replace(" b/", " /")
            } else {
                line.replace("--- a/", "--- /").replace("+++ b/", "+++ /")
            };
            line + "\n"
        })
        .collect::<String>()
        .into_bytes()
}

#[test]
fn absolute_names_are_refused_never_rewritten() {
    let w = World::new();
    let create = absolute_names(&w.patch(|d| write(d, "etc/x", "pwned\n")));
    assert!(
        String::from_utf8_lossy(&create).contains("diff --git /etc/x /etc/x\n"),
        "{}",
        String::from_utf8_lossy(&create)
    );
    let modify = absolute_names(&w.patch(|d| write(d, "README.md", "changed\n")));
    let delete = absolute_names(&w.patch(|d| fs::remove_file(d.join("src/old.rs")).unwrap()));
    let patches: [&[u8]; 10] = [
        &create,
        &modify,
        &delete,
        // Plain diffs: a creation from /dev/null, and an edit.
        b"--- /dev/null\n+++ /etc/x\n@@ -0,0 +1 @@\n+pwned\n",
        b"--- /README.md\n+++ /README.md\n@@ -1,3 +1,3 @@\n # fixture\n \n\
-A repository for tests.\n+pwned\n",
        // Quoted names.
        b"--- /dev/null\n+++ \"/etc/x\"\n@@ -0,0 +1 @@\n+pwned\n",
        b"diff --git \"/etc/x\" \"/etc/x\"\nnew file mode 100644\n",
        // An empty file: the `diff --git` line is the only name.
        b"diff --git /etc/x /etc/x\nnew file mode 100644\n",
        // An absolute header over prefixed `---`/`+++` lines.
        b"diff --git /README.md /README.md\n--- a/README.md\n+++ b/README.md\n\
@@ -1,3 +1,3 @@\n # fixture\n \n-A repository for tests.\n+pwned\n",
        // A name made absolute by a second slash after the prefix.
        b"diff --git a//etc/x b//etc/x\nnew file mode 100644\n--- /dev/null\n+++ b//etc/x\n\
@@ -0,0 +1 @@\n+pwned\n",
    ];
    for patch in patches {
        let message = refused(&w, &params(), patch, ErrorCode::PathRefused);
        assert!(
            message.contains("absolute"),
            "{message}\n{}",
            String::from_utf8_lossy(patch)
        );
    }
    assert!(!w.repo().join("etc").exists());
    // `a/`, `b/` and `/dev/null` keep their meaning.
    round_trip(
        &w,
        b"--- /dev/null\n+++ b/etc/x\n@@ -0,0 +1 @@\n+fine\n--- a/src/old.rs\n+++ b/src/old.rs\n\
@@ -1,2 +1,2 @@\n-old 1\n+one\n old 2\n",
    );
    assert_eq!(
        fs::read_to_string(w.repo().join("etc/x")).unwrap(),
        "fine\n"
    );
}

#[test]
fn gitmodules_is_refused_in_every_spelling() {
    let w = World::new();
    let create = |name: &str| {
        format!(
            "diff --git a/{name} b/{name}\nnew file mode 100644\n--- /dev/null\n+++ b/{name}\n\
             @@ -0,0 +1,3 @@\n+[submodule \"evil\"]\n+\tpath = evil\n+\turl = ../outside\n"
        )
    };
    for name in [
        ".gitmodules",
        ".GITMODULES",
        ".GitModules",
        "GITMOD~1",
        "gitmod~4",
        "GI7EBA~1",
        "gi7eb~12",
        ".gitmodules.",
        ".gitmodules .",
        ".gitmodules::$DATA",
        ".git\u{200c}modules",
        "sub/.gitmodules",
        ".gitmodules/x",
    ] {
        let message = refused(
            &w,
            &params(),
            create(name).as_bytes(),
            ErrorCode::PathRefused,
        );
        assert!(message.contains(".gitmodules"), "{name:?}: {message}");
    }
    // A rename onto it, made by git.
    let onto = w.patch(|d| fs::rename(d.join("README.md"), d.join(".gitmodules")).unwrap());
    assert!(String::from_utf8_lossy(&onto).contains("rename to .gitmodules"));
    refused(&w, &params(), &onto, ErrorCode::PathRefused);

    // One already in the base: editing, deleting or moving it is refused too.
    write(&w.repo(), ".gitmodules", "[submodule \"x\"]\n\tpath = x\n");
    w.git(&["add", "-A"]);
    w.git(&["commit", "-q", "-m", "gitmodules"]);
    let edit = w.patch(|d| write(d, ".gitmodules", "[submodule \"x\"]\n\tpath = y\n"));
    let delete = w.patch(|d| fs::remove_file(d.join(".gitmodules")).unwrap());
    let away = w.patch(|d| fs::rename(d.join(".gitmodules"), d.join("modules.txt")).unwrap());
    for patch in [edit, delete, away] {
        refused(&w, &params(), &patch, ErrorCode::PathRefused);
    }
    // Names that only look alike are files like any other.
    round_trip(
        &w,
        &w.patch(|d| {
            write(d, ".gitmodules2", "a\n");
            write(d, "gitmodules", "b\n");
            write(d, "GI7EB~1", "c\n");
        }),
    );
}

#[test]
fn a_renamed_symlink_is_refused_before_the_shape_of_the_patch() {
    let w = World::new();
    std::os::unix::fs::symlink(w.path("outside"), w.repo().join("link")).unwrap();
    w.git(&["add", "link"]);
    w.git(&["commit", "-q", "-m", "a symlink"]);
    let rename = w.patch(|d| fs::rename(d.join("link"), d.join("newname")).unwrap());
    assert!(String::from_utf8_lossy(&rename).contains("rename from link"));
    let message = refused(&w, &params(), &rename, ErrorCode::PathRefused);
    assert!(message.contains("symbolic link"), "{message}");
    // Then a write under the new name, which would go through the symlink.
    let through = [
        &rename[..],
        b"diff --git a/newname/x b/newname/x\nnew file mode 100644\n--- /dev/null\n\
+++ b/newname/x\n@@ -0,0 +1 @@\n+pwned\n",
    ]
    .concat();
    let message = refused(&w, &params(), &through, ErrorCode::PathRefused);
    assert!(message.contains("symbolic link"), "{message}");
    assert!(!w.path("outside/x").exists());
}

#[test]
fn a_time_a_commit_cannot_hold_is_refused() {
    let w = World::new();
    let patch = w.patch(|d| write(d, "a.txt", "a\n"));
    for bad in [
        "0000-01-01T00:00:00Z",
        "1969-12-31T23:59:59Z",
        "1970-01-01T00:59:59+01:00",
        "2106-02-07T06:28:16Z",
        "2106-02-07T08:28:16+02:00",
        "9999-12-31T23:59:59Z",
    ] {
        let mut params = params();
        params.time = Some(bad.to_owned());
        let message = refused(&w, &params, &patch, ErrorCode::InvalidParams);
        assert!(
            message.contains("1970-01-01T00:00:00Z") && message.contains("2106-02-07T06:28:15Z"),
            "{bad}: {message}"
        );
    }
    // The bounds themselves are committed exactly.
    let second = w.patch(|d| write(d, "b.txt", "b\n"));
    for (patch, time, seconds) in [
        (&patch, "1970-01-01T01:00:00+01:00", "0 +0100"),
        (&second, "2106-02-07T06:28:15Z", "4294967295 +0000"),
    ] {
        let mut params = params();
        params.time = Some(time.to_owned());
        let p = plan(&w.root(), &params, patch).unwrap();
        assert_eq!(p.time, time);
        execute(&w.root(), &params, patch, &p).unwrap();
        assert_eq!(
            w.git(&["log", "-1", "--format=%ad %cd", "--date=raw"])
                .trim(),
            format!("{seconds} {seconds}")
        );
    }

    // A base at the last second: the default time (one second later) cannot be held.
    let late = git2::Repository::open(w.repo()).unwrap();
    let head = late.head().unwrap().peel_to_commit().unwrap();
    let when = git2::Signature::new(
        "Fixture",
        "fixture@example.com",
        &git2::Time::new(u32::MAX.into(), 0),
    )
    .unwrap();
    late.commit(
        Some("refs/heads/late"),
        &when,
        &when,
        "at the last second",
        &head.tree().unwrap(),
        &[&head],
    )
    .unwrap();
    let third = w.patch(|d| write(d, "c.txt", "c\n"));
    let mut params = params();
    params.branch = Some("late".to_owned());
    let message = refused(&w, &params, &third, ErrorCode::InvalidParams);
    assert!(message.contains("base commit"), "{message}");
    params.time = Some("2106-02-07T06:28:15Z".to_owned());
    plan(&w.root(), &params, &third).unwrap();
}

#[test]
fn a_tracked_symlink_is_never_passed_through_nor_changed() {
    let w = World::new();
    let outside = w.path("outside");
    std::os::unix::fs::symlink(&outside, w.repo().join("evil")).unwrap();
    std::os::unix::fs::symlink(".git", w.repo().join("gitlink")).unwrap();
    w.git(&["add", "evil", "gitlink"]);
    w.git(&["commit", "-q", "-m", "symlinks"]);
    let through = |name: &str| {
        format!(
            "diff --git a/{name} b/{name}\nnew file mode 100644\n--- /dev/null\n+++ b/{name}\n\
             @@ -0,0 +1 @@\n+pwned\n"
        )
    };
    for name in ["evil/x", "gitlink/config", "gitlink/hooks/post-commit"] {
        let message = refused(
            &w,
            &params(),
            through(name).as_bytes(),
            ErrorCode::PathRefused,
        );
        assert!(message.contains("symbolic link"), "{message}");
    }
    assert!(!outside.join("x").exists());
    // Retargeting the symlink (a real git diff of it) is a symlink change.
    let retarget = w.patch(|d| {
        fs::remove_file(d.join("evil")).unwrap();
        std::os::unix::fs::symlink("/etc", d.join("evil")).unwrap();
    });
    refused(&w, &params(), &retarget, ErrorCode::PathRefused);
    // So is deleting it.
    let delete = w.patch(|d| fs::remove_file(d.join("evil")).unwrap());
    refused(&w, &params(), &delete, ErrorCode::PathRefused);
}

#[test]
fn a_symlink_in_the_work_tree_is_never_passed_through() {
    let w = World::new();
    let patch = w.patch(|d| write(d, "docs/guide.txt", "rewritten\n"));
    // Locally (uncommitted) `docs` becomes a symlink to a directory outside.
    fs::rename(w.repo().join("docs"), w.path("outside/docs")).unwrap();
    std::os::unix::fs::symlink(w.path("outside/docs"), w.repo().join("docs")).unwrap();
    let message = refused(&w, &params(), &patch, ErrorCode::PathRefused);
    assert!(
        message.contains("symbolic link in the work tree"),
        "{message}"
    );
    assert_eq!(
        fs::read_to_string(w.path("outside/docs/guide.txt")).unwrap(),
        numbered("guide line", 20)
    );
}

#[test]
fn creating_symlinks_or_submodules_is_refused() {
    let w = World::new();
    let symlink = w.patch(|d| std::os::unix::fs::symlink("/etc/passwd", d.join("link")).unwrap());
    assert!(String::from_utf8_lossy(&symlink).contains("new file mode 120000"));
    refused(&w, &params(), &symlink, ErrorCode::PathRefused);
    let submodule = b"diff --git a/sub b/sub\nnew file mode 160000\nindex 0000000..1234567\n\
--- /dev/null\n+++ b/sub\n@@ -0,0 +1 @@\n+Subproject commit 1234567890123456789012345678901234567890\n";
    refused(&w, &params(), submodule, ErrorCode::PathRefused);
    let mode = b"diff --git a/tool.sh b/tool.sh\nold mode 100644\nnew mode 120000\n";
    refused(&w, &params(), mode, ErrorCode::PathRefused);
}

#[test]
fn case_and_unicode_normalisation_collisions_are_refused() {
    let w = World::new();
    write(&w.repo(), "caf\u{e9}.txt", "nfc\n");
    w.git(&["add", "-A"]);
    w.git(&["commit", "-q", "-m", "nfc name"]);
    let case = w.patch(|d| write(d, "readme.md", "lower\n"));
    let message = refused(&w, &params(), &case, ErrorCode::PathRefused);
    assert!(message.contains("README.md"), "{message}");
    let directory = w.patch(|d| write(d, "Docs/more.txt", "more\n"));
    refused(&w, &params(), &directory, ErrorCode::PathRefused);
    let nfd = w.patch(|d| write(d, "cafe\u{301}.txt", "nfd\n"));
    refused(&w, &params(), &nfd, ErrorCode::PathRefused);
    // Two new files colliding with each other.
    let pair = w.patch(|d| {
        write(d, "new/A.txt", "a\n");
        write(d, "new/a.txt", "a\n");
    });
    refused(&w, &params(), &pair, ErrorCode::PathRefused);
}

#[test]
fn a_deletion_must_match_the_file_line_for_line() {
    let w = World::new();
    // Two of the file's twelve lines: libgit2 would delete the whole file.
    let partial = b"diff --git a/src/old.rs b/src/old.rs\ndeleted file mode 100644\n\
--- a/src/old.rs\n+++ /dev/null\n@@ -1,2 +0,0 @@\n-old 1\n-old 2\n";
    let message = refused(&w, &params(), partial, ErrorCode::InvalidParams);
    assert!(message.contains("does not apply"), "{message}");
    // A real deletion patch, after the file changed on the branch.
    let delete = w.patch(|d| fs::remove_file(d.join("src/old.rs")).unwrap());
    write(
        &w.repo(),
        "src/old.rs",
        &numbered("old", 12).replace("old 7\n", "seven\n"),
    );
    w.git(&["commit", "-q", "-am", "edit old.rs"]);
    let message = refused(&w, &params(), &delete, ErrorCode::InvalidParams);
    assert!(message.contains("does not apply"), "{message}");
}

#[test]
fn binary_empty_and_malformed_patches_are_refused() {
    let w = World::new();
    let edit = |d: &Path| fs::write(d.join("blob.bin"), [0u8, 1, 2, 255, 0, 7]).unwrap();
    let plain = w.patch(edit);
    assert!(String::from_utf8_lossy(&plain).contains("Binary files"));
    let message = refused(&w, &params(), &plain, ErrorCode::InvalidParams);
    assert!(message.contains("binary"), "{message}");
    edit(&w.repo());
    w.git(&["add", "-A"]);
    let binary = w.git(&["diff", "--cached", "--binary"]);
    w.git(&["reset", "-q", "--hard"]);
    w.git(&["clean", "-q", "-fdx"]);
    assert!(binary.contains("GIT binary patch"));
    refused(&w, &params(), binary.as_bytes(), ErrorCode::InvalidParams);

    let message = refused(&w, &params(), b"", ErrorCode::InvalidParams);
    assert!(message.contains("empty"), "{message}");
    let truncated = b"diff --git a/README.md b/README.md\n--- a/README.md\n+++ b/README.md\n\
@@ -1,3 +1,3 @@\n # fixture\n";
    let message = refused(&w, &params(), truncated, ErrorCode::InvalidParams);
    assert!(message.contains("line 6"), "{message}");
    let twice = [
        &b"--- a/README.md\n+++ b/README.md\n@@ -1 +1 @@\n-# fixture\n+# one\n"[..],
        b"--- a/README.md\n+++ b/README.md\n@@ -3 +3 @@\n-A repository for tests.\n+two\n",
    ]
    .concat();
    let message = refused(&w, &params(), &twice, ErrorCode::InvalidParams);
    assert!(message.contains("more than once"), "{message}");
    let garbage = b"this is not a patch\n";
    let message = refused(&w, &params(), garbage, ErrorCode::InvalidParams);
    assert!(message.contains("line 1"), "{message}");
}

#[test]
fn patches_that_do_not_apply_are_refused() {
    let w = World::new();
    let exists = b"diff --git a/README.md b/README.md\nnew file mode 100644\n--- /dev/null\n\
+++ b/README.md\n@@ -0,0 +1 @@\n+again\n";
    let missing = b"--- a/nope.txt\n+++ b/nope.txt\n@@ -1 +1 @@\n-a\n+b\n";
    let context =
        b"--- a/README.md\n+++ b/README.md\n@@ -1,3 +1,3 @@\n # fixture\n \n-Not this line.\n+B\n";
    for patch in [&exists[..], missing, context] {
        let message = refused(&w, &params(), patch, ErrorCode::InvalidParams);
        assert!(message.contains("does not apply"), "{message}");
    }
}

#[test]
fn a_repo_outside_the_root_is_denied() {
    let w = World::new();
    let patch = w.patch(|d| write(d, "a.txt", "a\n"));
    // A real repository outside the root, reached in several ways.
    fs::rename(w.repo(), w.path("outside/repo")).unwrap();
    std::os::unix::fs::symlink(w.path("outside/repo"), w.root().join("repo")).unwrap();
    let outside_abs = w.path("outside/repo").to_str().unwrap().to_owned();
    for repo in [
        "repo",
        "../outside/repo",
        outside_abs.as_str(),
        "../nowhere",
    ] {
        let mut params = params();
        params.repo = repo.to_owned();
        refused(&w, &params, &patch, ErrorCode::CapabilityDenied);
    }
}

#[test]
fn repo_may_be_absolute_inside_the_root_or_the_root_itself() {
    let w = World::new();
    let patch = w.patch(|d| write(d, "a.txt", "a\n"));
    let mut absolute = params();
    absolute.repo = w.repo().to_str().unwrap().to_owned();
    let p = plan(&w.root(), &absolute, &patch).unwrap();
    assert_eq!(p, plan(&w.root(), &params(), &patch).unwrap());
    assert_eq!(p.repo, "repo");

    let mut at_root = params();
    at_root.repo = ".".to_owned();
    let p = plan(&w.repo(), &at_root, &patch).unwrap();
    assert_eq!(p.repo, ".");
    assert_eq!(p.effects[0].resource, "a.txt");
    assert_eq!(p.effects[1].resource, ".");
}

#[test]
fn errors_map_to_protocol_codes() {
    for (error, code) in [
        (
            ApplyError::PathRefused(String::new()),
            ErrorCode::PathRefused,
        ),
        (
            ApplyError::CapabilityDenied(String::new()),
            ErrorCode::CapabilityDenied,
        ),
        (
            ApplyError::InvalidParams(String::new()),
            ErrorCode::InvalidParams,
        ),
        (ApplyError::StalePlan(String::new()), ErrorCode::StalePlan),
        (
            ApplyError::ExecutionFailed(String::new()),
            ErrorCode::ExecutionFailed,
        ),
        (
            ApplyError::Internal(String::new()),
            ErrorCode::InternalError,
        ),
    ] {
        assert_eq!(error.code(), code);
    }
}
