#!/usr/bin/env python3
"""Kill `mechanism-server` for real at random instants of `execute`, then count what is left.

Each trial copies a prepared workspace (a repository of --files files, checked out) and store
(the plan of a patch that rewrites every file and adds --new more, with its admission), starts
the release `mechanism-server git_apply_patch`, sends `execute`, sleeps a random time within
the execute's measured duration and sends SIGKILL. It then classifies the repository:

  untouched  the branch at the base commit, `git status` clean, no lock files
  applied    the branch at the predicted commit, `git status` clean, no lock files
  half       anything else (branch moved with an old index or work tree, leftovers, ...)

and executes the same plan again in a fresh server ("recovery"), and classifies again: after
recovery every trial must be applied with exactly one new commit and `git fsck` clean.

With --concurrency 2,4,8 it also starts that many servers on one fresh copy, sends each the
same `execute` at once, and counts the answers and the commits made.

Usage: scripts/kill-trials.py [--trials 50] [--files 400] [--new 20] [--seed 1]
                              [--concurrency 2,4,8] [--rounds 5] [--bin DIR]
Without --bin it builds the release binaries first (respects CARGO_TARGET_DIR).
Needs git and python3. Exits 1 when any trial is not applied after recovery.
"""

import argparse
import collections
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GIT_ENV = dict(
    os.environ,
    GIT_CONFIG_NOSYSTEM="1",
    GIT_AUTHOR_NAME="Fixture",
    GIT_AUTHOR_EMAIL="fixture@example.com",
    GIT_COMMITTER_NAME="Fixture",
    GIT_COMMITTER_EMAIL="fixture@example.com",
    GIT_AUTHOR_DATE="2026-01-02T03:04:05Z",
    GIT_COMMITTER_DATE="2026-01-02T03:04:05Z",
)


def git(repo, *args, check=True):
    out = subprocess.run(
        ["git", *args], cwd=repo, env=GIT_ENV, capture_output=True, text=True
    )
    if check and out.returncode != 0:
        sys.exit(f"git {' '.join(args)} failed in {repo}:\n{out.stderr}")
    return out


def build_binaries():
    target = os.path.realpath(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")))
    subprocess.run(
        ["cargo", "build", "--release", "--quiet", "-p", "admission", "-p", "mechanism-builtins"],
        cwd=ROOT,
        check=True,
        env=dict(os.environ, CARGO_TARGET_DIR=target),
    )
    return os.path.join(target, "release")


def prepare(base, bin_dir, files, new):
    """A workspace with one repository and a store holding an admitted plan; returns facts."""
    workspace = os.path.join(base, "workspace")
    store = os.path.join(base, "store")
    repo = os.path.join(workspace, "repo")
    os.makedirs(repo)
    git(repo, "init", "-q", "-b", "main")
    for i in range(files):
        path = os.path.join(repo, f"src/d{i % 20}/f{i}.txt")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.writelines(f"file {i} line {n}\n" for n in range(40))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")
    for i in range(files):
        with open(os.path.join(repo, f"src/d{i % 20}/f{i}.txt"), "a") as f:
            f.write(f"appended to {i}\n")
    for i in range(new):
        path = os.path.join(repo, f"new/n{i}.txt")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.writelines(f"new {i} line {n}\n" for n in range(40))
    git(repo, "add", "-A")
    patch = git(repo, "diff", "--cached", "--full-index").stdout
    git(repo, "reset", "-q", "--hard", "HEAD")
    git(repo, "clean", "-q", "-fd")
    with open(os.path.join(base, "big.diff"), "w") as f:
        f.write(patch)
    workorder = {
        "kind": "mechanism.workorder/v0",
        "work_order_id": "kill-trials",
        "mechanism": "git_apply_patch",
        "operation": "apply",
        "params": {
            "repo": "repo",
            "message": "kill trials",
            "author": {"name": "Trial", "email": "trial@example.com"},
        },
        "inputs": {"patch": "big.diff"},
        "budget": {"wall_ms": 120000},
    }
    with open(os.path.join(base, "wo.json"), "w") as f:
        json.dump(workorder, f)
    out = subprocess.run(
        [os.path.join(bin_dir, "admission"), "--json", "--store", store,
         "--workspace", workspace, "plan", os.path.join(base, "wo.json")],
        capture_output=True, text=True,
    )
    if out.returncode != 0:
        sys.exit(f"admission plan failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    report = json.loads(out.stdout)
    plan = json.loads(subprocess.run(
        [os.path.join(bin_dir, "admission"), "--store", store, "cat", report["plan_hash"]],
        capture_output=True, text=True, check=True).stdout)
    predicted = next(e["to"] for e in plan["intended_effects"] if e["type"] == "git.commit")
    return {
        "workspace": workspace,
        "store": store,
        "plan_hash": report["plan_hash"],
        "admission": report["admission_hash"],
        "base": plan["state"]["base_commit"],
        "predicted": predicted,
    }


class Server:
    """A `mechanism-server git_apply_patch` child over real pipes, newline-delimited."""

    def __init__(self, bin_dir, workspace, store):
        self.proc = subprocess.Popen(
            [os.path.join(bin_dir, "mechanism-server"), "git_apply_patch",
             "--root", workspace, "--store", store],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )
        self.next_id = 0

    def send(self, method, params):
        self.next_id += 1
        line = json.dumps({"jsonrpc": "2.0", "id": self.next_id, "method": method,
                           "params": params})
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()
        return self.next_id

    def response(self, want):
        while True:
            line = self.proc.stdout.readline()
            if not line:
                return None
            message = json.loads(line)
            if message.get("id") == want:
                return message

    def call(self, method, params):
        return self.response(self.send(method, params))

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


def outcome(response):
    if response is None:
        return "no answer"
    if "result" in response:
        return "success"
    return (response["error"].get("data") or {}).get("code", str(response["error"]["code"]))


def classify(repo, facts):
    branch = git(repo, "rev-parse", "refs/heads/main").stdout.strip()
    dirty = git(repo, "status", "--porcelain", "--untracked-files=all").stdout.strip()
    locks = [p for p in ("index.lock", "refs/heads/main.lock")
             if os.path.exists(os.path.join(repo, ".git", p))]
    if not dirty and not locks and branch == facts["base"]:
        return "untouched"
    if not dirty and not locks and branch == facts["predicted"]:
        return "applied"
    return "half"


def fresh_copy(template, into):
    shutil.copytree(template, into, symlinks=True)
    return {k: v.replace(template, into) if isinstance(v, str) else v
            for k, v in FACTS.items()}


def execute_params(facts):
    return {"plan_hash": facts["plan_hash"], "admission": facts["admission"]}


def timed_execute(bin_dir, template, scratch, n):
    """The wall time of a whole execute, from sending it to its answer (median of n)."""
    times = []
    for i in range(n):
        facts = fresh_copy(template, os.path.join(scratch, f"calibrate{i}"))
        server = Server(bin_dir, facts["workspace"], facts["store"])
        server.call("describe", {})
        start = time.monotonic()
        answer = server.call("execute", execute_params(facts))
        times.append(time.monotonic() - start)
        server.close()
        if outcome(answer) != "success":
            sys.exit(f"calibration execute failed: {answer}")
        shutil.rmtree(os.path.join(scratch, f"calibrate{i}"))
    return sorted(times)[len(times) // 2]


def kill_trials(bin_dir, template, scratch, trials, rng):
    window = timed_execute(bin_dir, template, scratch, 3)
    print(f"execute takes {window * 1000:.0f} ms; killing at random within {window * 1200:.0f} ms")
    before = collections.Counter()
    after = collections.Counter()
    answers = collections.Counter()
    failures = []
    for trial in range(trials):
        into = os.path.join(scratch, f"trial{trial}")
        facts = fresh_copy(template, into)
        repo = os.path.join(facts["workspace"], "repo")
        server = Server(bin_dir, facts["workspace"], facts["store"])
        server.call("describe", {})
        server.send("execute", execute_params(facts))
        time.sleep(rng.uniform(0, window * 1.2))
        server.proc.kill()
        server.proc.wait()
        before[classify(repo, facts)] += 1

        again = Server(bin_dir, facts["workspace"], facts["store"])
        answer = again.call("execute", execute_params(facts))
        again.close()
        answers[outcome(answer)] += 1
        state = classify(repo, facts)
        commits = git(repo, "rev-list", "--count", f"{facts['base']}..refs/heads/main",
                      check=False).stdout.strip()
        fsck = git(repo, "fsck", "--no-dangling", check=False)
        good = state == "applied" and commits == "1" and fsck.returncode == 0
        after["applied" if good else state if state != "applied" else "applied, but bad"] += 1
        if good:
            shutil.rmtree(into)
        else:
            failures.append((trial, into, outcome(answer), state, commits, fsck.stderr.strip()))
    print(f"\n{trials} kill trials:")
    print(f"  before recovery: " + ", ".join(
        f"{k} {before[k]}" for k in ("untouched", "applied", "half")))
    print(f"  execute again answered: " + ", ".join(f"{k} {v}" for k, v in sorted(answers.items())))
    print(f"  after recovery: " + ", ".join(f"{k} {v}" for k, v in sorted(after.items())))
    for trial, into, answer, state, commits, fsck in failures[:10]:
        print(f"  trial {trial} ({into}): execute again {answer}; {state}; "
              f"{commits} commits after base; fsck: {fsck or 'ok'}")
    return not failures


def concurrency(bin_dir, template, scratch, levels, rounds):
    print(f"\nconcurrent executes of one plan ({rounds} rounds each):")
    print(f"  {'processes':>9}  {'commits per plan':<18} outcomes")
    ok = True
    for level in levels:
        answers = collections.Counter()
        commits_seen = collections.Counter()
        for r in range(rounds):
            into = os.path.join(scratch, f"conc{level}-{r}")
            facts = fresh_copy(template, into)
            repo = os.path.join(facts["workspace"], "repo")
            servers = [Server(bin_dir, facts["workspace"], facts["store"]) for _ in range(level)]
            for s in servers:
                s.call("describe", {})
            ids = [s.send("execute", execute_params(facts)) for s in servers]
            for s, i in zip(servers, ids):
                answers[outcome(s.response(i))] += 1
                s.close()
            commits = git(repo, "rev-list", "--count", f"{facts['base']}..refs/heads/main",
                          check=False).stdout.strip()
            state = classify(repo, facts)
            commits_seen[f"{commits} ({state})"] += 1
            ok &= commits == "1" and state == "applied"
            shutil.rmtree(into)
        print(f"  {level:>9}  {', '.join(f'{k} x{v}' for k, v in sorted(commits_seen.items())):<18} "
              + ", ".join(f"{k} {v}" for k, v in sorted(answers.items())))
    return ok


FACTS = {}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--files", type=int, default=400)
    parser.add_argument("--new", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--concurrency", default="")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--bin", help="directory of release binaries (default: build them)")
    args = parser.parse_args()
    for tool in ("git",):
        if shutil.which(tool) is None:
            sys.exit(f"kill-trials needs {tool}, which is not on PATH")
    bin_dir = args.bin or build_binaries()
    rng = random.Random(args.seed)
    scratch = tempfile.mkdtemp(prefix="kill-trials-")
    template = os.path.join(scratch, "template")
    FACTS.update(prepare(template, bin_dir, args.files, args.new))
    print(f"repository of {args.files} files; patch of {args.files + args.new} files; "
          f"plan {FACTS['plan_hash'][:19]}...; scratch {scratch}")
    ok = kill_trials(bin_dir, template, scratch, args.trials, rng)
    if args.concurrency:
        levels = [int(n) for n in args.concurrency.split(",")]
        ok &= concurrency(bin_dir, template, scratch, levels, args.rounds)
    if ok:
        shutil.rmtree(scratch)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
