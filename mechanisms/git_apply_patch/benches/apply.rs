//! git_apply_patch against real git on the same 100-file patch, in one run: `plan`, and
//! `plan` then `execute` as the runtime drives them (the `plan` verb; then the `execute`
//! verb: the runtime's re-plan, which must give the same plan, and the mechanism's execute
//! of what that re-plan prepared), against `git apply --index` then `git commit`, on a
//! repository of 1,000 files and one of 100,000. Only the mechanism's work is timed, through
//! its `Mechanism` implementation; the runtime's own (hashing and storing artifacts, records)
//! is not. The design promises cost that grows with the patch, not the repository, so the
//! two sizes show what the repository's size still costs us (the index, read whole) and
//! what it costs git (which also stats the whole work tree on commit).
//!
//! Each repository is a real git repository on branch `main`, checked out, so execute
//! updates the work tree and index as it does in use. Its one commit is made by
//! `git fast-import` (so its objects are packed) and checked out with `git reset --hard`.
//! The patch is real `git diff` output after editing 100 files (three lines each, in 100
//! directories); it is byte for byte the same on both sizes, as both hold the same files at
//! those paths. Plans use a fixed time, and git gets the same author and dates, so both
//! sides make the same commit, which setup checks once.
//!
//! Between runs (outside the timed part) the branch, work tree and index go back to the
//! base with `git reset --hard`, and the loose objects the run wrote are deleted, so every
//! run writes its blobs, trees and commit afresh rather than finding them present.
//!
//! A fourth measurement plans the same patch on branch `other`, which points at the base
//! but is not checked out: no work tree or index is read, so its cost should grow with the
//! patch alone, and the two sizes should take about the same time.
//!
//! The repositories are made under `TMPDIR` (`/tmp` by default); `TMPDIR=/dev/shm` leaves
//! the disk out and measures the CPU side alone. Under `cargo test --benches` (criterion's
//! test mode) only the 1,000-file repository is made: the 100,000-file one takes tens of
//! seconds to build.

use std::cell::OnceCell;
use std::fmt::Write as _;
use std::fs;
use std::hint::black_box;
use std::io::{BufWriter, Write as _};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use git_apply_patch::{plan, ApplyParams, GitApplyPatch, Person, APPLY, PATCH_INPUT};
use mechanism_server::protocol::artifact::kinds::{Determinism, MechanismRef};
use mechanism_server::protocol::artifact::Artifact;
use mechanism_server::protocol::store::{Provenance, Store};
use mechanism_server::protocol::Digest;
use mechanism_server::{testing, Env, Mechanism, PlanRequest};

const NAME: &str = "Bench";
const EMAIL: &str = "bench@example.com";
/// A branch at the base that is never checked out.
const OTHER: &str = "other";
/// The commit time of the patch, for both sides: plans are then deterministic and git's
/// commit equals ours.
const TIME: &str = "2026-01-02T03:04:05Z";
const MESSAGE: &str = "Edit 100 files";
/// Files the patch edits.
const EDITED: usize = 100;
/// Lines of every file, and the ones the patch changes.
const LINES: usize = 20;
const CHANGED_LINES: [usize; 3] = [3, 10, 17];

/// A repository's layout: `src/mAA/sBBB/fCCC.txt`.
#[derive(Clone, Copy)]
struct Shape {
    /// The criterion group name.
    group: &'static str,
    /// Top-level directories under `src`.
    top: usize,
    /// Leaf directories in each top-level one.
    leaves: usize,
    /// Files in each leaf directory.
    files: usize,
}

impl Shape {
    fn file_count(self) -> usize {
        self.top * self.leaves * self.files
    }
}

/// 1,000 files in 100 leaf directories.
const SMALL: Shape = Shape {
    group: "apply_1k",
    top: 10,
    leaves: 10,
    files: 10,
};

/// 100,000 files in 1,000 leaf directories.
const LARGE: Shape = Shape {
    group: "apply_100k",
    top: 10,
    leaves: 100,
    files: 100,
};

fn path(top: usize, leaf: usize, file: usize) -> String {
    format!("src/m{top:02}/s{leaf:03}/f{file:03}.txt")
}

/// The content depends on the path only, so both sizes hold the same file at a path.
fn content(top: usize, leaf: usize, file: usize, edited: bool) -> String {
    let mut text = String::new();
    for line in 1..=LINES {
        let note = if edited && CHANGED_LINES.contains(&line) {
            "edited by the patch"
        } else {
            "ordinary text"
        };
        writeln!(text, "m{top} s{leaf} f{file} line {line}: {note}").expect("write to String");
    }
    text
}

/// The edited files: one in each of 100 leaf directories, all inside the small shape, so
/// the patch applies to both sizes.
fn edited_files() -> impl Iterator<Item = (usize, usize, usize)> {
    (0..EDITED).map(|i| (i % 10, i / 10, (i * 3) % 10))
}

/// A scratch directory holding `home` (an empty HOME for git), `repo`, `patch.diff` and
/// `store` (the mechanism's object store, holding the patch).
struct Fixture {
    dir: tempfile::TempDir,
    /// The commit the branch is reset to between runs.
    base: String,
    /// The patch, as `git diff` wrote it.
    patch: Vec<u8>,
    params: ApplyParams,
    /// The mechanism's root (the repository) and store.
    env: Env,
    /// The patch in the store.
    patch_digest: Digest,
}

impl Fixture {
    fn new(shape: Shape) -> Self {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        fs::create_dir(dir.path().join("home")).expect("create home");
        fs::create_dir(dir.path().join("repo")).expect("create repo");
        let store = Store::open(dir.path().join("store")).expect("open the store");
        let env = Env {
            root: dir
                .path()
                .join("repo")
                .canonicalize()
                .expect("the repository"),
            store,
        };
        let mut fixture = Self {
            dir,
            env,
            patch_digest: Digest::of_bytes(b""),
            base: String::new(),
            patch: Vec::new(),
            params: ApplyParams {
                repo: ".".to_owned(),
                branch: Some("main".to_owned()),
                message: MESSAGE.to_owned(),
                author: Person {
                    name: NAME.to_owned(),
                    email: EMAIL.to_owned(),
                },
                time: Some(TIME.to_owned()),
                strip: None,
            },
        };
        fixture.git(&["init", "-q", "-b", "main"]);
        for (key, value) in [
            ("user.name", NAME),
            ("user.email", EMAIL),
            // A `git gc --auto` in the middle of a timed commit would measure the gc.
            ("gc.auto", "0"),
            ("maintenance.auto", "false"),
            ("commit.gpgsign", "false"),
        ] {
            fixture.git(&["config", key, value]);
        }

        let start = Instant::now();
        fixture.fast_import(shape);
        let imported = start.elapsed();
        let start = Instant::now();
        fixture.git(&["reset", "-q", "--hard", "main"]);
        let checked_out = start.elapsed();
        fixture.base = fixture.git(&["rev-parse", "main"]).trim().to_owned();
        fixture.git(&["branch", OTHER, "main"]);
        println!(
            "setup {}: {} files in {} directories: git fast-import {:.2} s, \
             git reset --hard (work tree and index) {:.2} s",
            shape.group,
            shape.file_count(),
            shape.top * shape.leaves,
            imported.as_secs_f64(),
            checked_out.as_secs_f64(),
        );

        for (top, leaf, file) in edited_files() {
            fs::write(
                fixture.repo().join(path(top, leaf, file)),
                content(top, leaf, file, true),
            )
            .expect("edit a file");
        }
        fixture.patch = fixture.git(&["diff"]).into_bytes();
        fixture.git(&["checkout", "--", "."]);
        fs::write(fixture.patch_file(), &fixture.patch).expect("write the patch file");
        fixture.patch_digest = fixture
            .env
            .store
            .put_blob_bytes(&fixture.patch, &Provenance::new("bench"))
            .expect("store the patch");
        fixture.check();
        fixture
    }

    fn repo(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    /// Outside the work tree, so it is never an untracked file there.
    fn patch_file(&self) -> PathBuf {
        self.dir.path().join("patch.diff")
    }

    /// Runs git in the repository with an empty HOME and no system config, with our
    /// author and dates, so that git's commit is the one our plan predicts.
    fn git(&self, args: &[&str]) -> String {
        let out = self
            .command(args)
            .output()
            .expect("run git (is it installed?)");
        assert!(
            out.status.success(),
            "git {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("git output is UTF-8")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("git");
        command
            .current_dir(self.repo())
            .args(args)
            .env("HOME", self.dir.path().join("home"))
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_AUTHOR_NAME", NAME)
            .env("GIT_AUTHOR_EMAIL", EMAIL)
            .env("GIT_COMMITTER_NAME", NAME)
            .env("GIT_COMMITTER_EMAIL", EMAIL)
            .env("GIT_AUTHOR_DATE", TIME)
            .env("GIT_COMMITTER_DATE", TIME);
        command
    }

    /// Streams every file into `git fast-import` as one commit on `main`: far faster
    /// than writing 100,000 files and `git add`, and the objects end up in one pack.
    fn fast_import(&self, shape: Shape) {
        let mut child = self
            .command(&["fast-import", "--quiet"])
            .stdin(Stdio::piped())
            .spawn()
            .expect("run git fast-import");
        {
            let stdin = child.stdin.take().expect("fast-import stdin");
            let mut out = BufWriter::new(stdin);
            let message = "Base";
            write!(
                out,
                "commit refs/heads/main\n\
                 author {NAME} <{EMAIL}> 1767225600 +0000\n\
                 committer {NAME} <{EMAIL}> 1767225600 +0000\n\
                 data {}\n{message}\n",
                message.len()
            )
            .expect("write to fast-import");
            for top in 0..shape.top {
                for leaf in 0..shape.leaves {
                    for file in 0..shape.files {
                        let text = content(top, leaf, file, false);
                        write!(
                            out,
                            "M 100644 inline {}\ndata {}\n{text}\n",
                            path(top, leaf, file),
                            text.len()
                        )
                        .expect("write to fast-import");
                    }
                }
            }
            out.flush().expect("flush fast-import input");
        }
        let status = child.wait().expect("wait for git fast-import");
        assert!(status.success(), "git fast-import failed");
    }

    /// Puts branch, work tree and index back to the base and deletes the loose objects a
    /// run wrote (the base is packed, so every loose object is a run's).
    fn reset(&self) {
        self.git(&["reset", "-q", "--hard", &self.base]);
        let objects = self.repo().join(".git/objects");
        for entry in fs::read_dir(&objects).expect("read .git/objects") {
            let entry = entry.expect("read .git/objects");
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.len() == 2 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
                fs::remove_dir_all(entry.path()).expect("delete loose objects");
            }
        }
    }

    /// The request the `plan` verb makes (with a preview) or the runtime's re-plan at
    /// `execute` (without).
    fn request(&self, preview: bool) -> PlanRequest {
        PlanRequest {
            operation: APPLY.to_owned(),
            params: serde_json::to_value(&self.params).expect("params"),
            inputs: [(PATCH_INPUT.to_owned(), self.patch_digest)].into(),
            preview,
        }
    }

    /// The params for branch `other`, not checked out.
    fn other_params(&self) -> ApplyParams {
        ApplyParams {
            branch: Some(OTHER.to_owned()),
            ..self.params.clone()
        }
    }

    /// The `plan` verb's request for branch `other`.
    fn request_other(&self) -> PlanRequest {
        PlanRequest {
            params: serde_json::to_value(self.other_params()).expect("params"),
            ..self.request(true)
        }
    }

    /// Ours, as the runtime drives it: the `plan` verb, then `execute`: the re-plan and the
    /// mechanism's execute of what it prepared. Returns the commit made.
    fn plan_and_execute(&self) -> String {
        let request = self.request(true);
        let proposal = GitApplyPatch.plan(&self.env, &request).expect("plan");
        let mechanism = MechanismRef {
            id: GitApplyPatch.id().to_owned(),
            version: GitApplyPatch.version().to_owned(),
        };
        let (plan, _, _) = proposal.into_plan(mechanism, &request, Determinism::D0);
        let replan = GitApplyPatch
            .plan(&self.env, &self.request(false))
            .expect("re-plan");
        let plan_hash = Artifact::from_typed(&plan).expect("plan artifact").digest();
        let ctx = testing::exec_context(plan_hash);
        let executed = GitApplyPatch
            .execute(&self.env, &plan, replan.prepared, &ctx)
            .expect("execute");
        executed.evidence["commit"]
            .as_str()
            .expect("the commit")
            .to_owned()
    }

    /// Git's: `git apply --index` then `git commit`, two processes as a user runs them.
    fn git_apply_and_commit(&self) {
        let patch = self.patch_file();
        let patch = patch.to_str().expect("the temporary path is UTF-8");
        self.git(&["apply", "--index", patch]);
        self.git(&["commit", "-q", "-m", MESSAGE]);
    }

    /// Once, before timing: both sides make the same commit and leave a clean work
    /// tree, so the comparison is of the same work.
    fn check(&self) {
        let root = self.repo();
        let predicted = plan(&root, &self.params, &self.patch).expect("plan");
        assert_eq!(
            predicted.effects.len(),
            EDITED + 1,
            "one write per file, one commit"
        );
        assert!(!predicted.destructive, "the patch only edits clean files");
        let other = plan(&root, &self.other_params(), &self.patch).expect("plan on the other");
        assert!(!other.checked_out, "branch {OTHER} is not checked out");
        assert_eq!(
            other.new_tree, predicted.new_tree,
            "the same base, the same tree"
        );
        let ours = self.plan_and_execute();
        assert_eq!(ours, predicted.new_commit);
        assert_eq!(
            self.git(&["status", "--porcelain"]),
            "",
            "ours left changes"
        );
        self.reset();
        self.git_apply_and_commit();
        let theirs = self.git(&["rev-parse", "HEAD"]);
        assert_eq!(theirs.trim(), ours, "git made another commit than ours");
        assert_eq!(self.git(&["status", "--porcelain"]), "", "git left changes");
        self.reset();
    }
}

/// Runs `run` `iters` times, resetting the repository after each run outside the timed part.
fn timed_with_reset<T>(fixture: &Fixture, iters: u64, mut run: impl FnMut() -> T) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let start = Instant::now();
        black_box(run());
        total += start.elapsed();
        fixture.reset();
    }
    total
}

/// The three measurements on one repository, made on first use so that a filter that
/// skips the group skips its setup too.
fn bench_shape(c: &mut Criterion, shape: Shape) {
    let cell = OnceCell::new();
    let fixture = || cell.get_or_init(|| Fixture::new(shape));
    let mut group = c.benchmark_group(shape.group);
    group.sample_size(10);
    group.bench_function("plan", |b| {
        let f = fixture();
        let request = f.request(true);
        b.iter(|| GitApplyPatch.plan(&f.env, &request).expect("plan"))
    });
    group.bench_function("plan, branch not checked out", |b| {
        let f = fixture();
        let request = f.request_other();
        b.iter(|| GitApplyPatch.plan(&f.env, &request).expect("plan"))
    });
    group.bench_function("plan+execute", |b| {
        let f = fixture();
        b.iter_custom(|iters| timed_with_reset(f, iters, || f.plan_and_execute()))
    });
    group.bench_function("git apply --index + git commit", |b| {
        let f = fixture();
        b.iter_custom(|iters| timed_with_reset(f, iters, || f.git_apply_and_commit()))
    });
    group.finish();
}

fn small(c: &mut Criterion) {
    bench_shape(c, SMALL);
}

fn large(c: &mut Criterion) {
    if bench_mode() {
        bench_shape(c, LARGE);
    } else {
        println!("{}: skipped outside `cargo bench`", LARGE.group);
    }
}

/// Whether criterion measures (`cargo bench`) rather than runs each benchmark once as a
/// test (`cargo test --benches`, or `--test`); criterion decides the same way.
fn bench_mode() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test")
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = small, large
}
criterion_main!(benches);
