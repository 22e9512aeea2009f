#!/usr/bin/env python3
"""`tools/call plan` and `tools/call execute` through `admission mcp` against `admission plan`
and `admission execute` from the command line, in one run, alternating.

The MCP side is the official TypeScript SDK (tests/mcp-client/client.mjs) connected once to one
`admission mcp` server, as an agent's client stays connected; its time is the SDK's own round
trip of each `tools/call`, measured in the client. The command-line side is each command's
whole process, as a shell runs it. Each side has its own clone of one repository of 200 files;
iteration i plans and executes a one-file patch of file i, so every plan is new and applies.

Usage: scripts/bench-mcp.py [N]   (default 15, at least 7; builds the release binaries)
ADMISSION=PATH times that admission binary instead (its mechanism-server beside it), unbuilt.
"""

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLIENT = ROOT / "tests" / "mcp-client"
FILES = 200


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    if n < 7 or n > FILES:
        print(f"bench-mcp.py: N must be between 7 and {FILES} (got {n})", file=sys.stderr)
        return 2
    admission = binary()
    if not (CLIENT / "node_modules" / "@modelcontextprotocol" / "sdk").is_dir():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=CLIENT, check=True,
                       stdout=subprocess.DEVNULL)
    work = Path(tempfile.mkdtemp())
    try:
        return bench(admission, work, n)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def binary() -> Path:
    if os.environ.get("ADMISSION"):
        return Path(os.environ["ADMISSION"]).resolve()
    subprocess.run(["cargo", "build", "--release", "--quiet", "-p", "admission", "-p",
                    "mechanism-builtins"], cwd=ROOT, check=True)
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    return (target / "release" / "admission").resolve()


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True)


def bench(admission: Path, work: Path, n: int) -> int:
    home = work / "home"
    home.mkdir()
    env = dict(os.environ, HOME=str(home), GIT_CONFIG_NOSYSTEM="1",
               GIT_AUTHOR_NAME="b", GIT_AUTHOR_EMAIL="b@example.com",
               GIT_COMMITTER_NAME="b", GIT_COMMITTER_EMAIL="b@example.com")
    env.pop("RUST_LOG", None)
    os.environ.update(env)
    base = work / "base"
    base.mkdir()
    git(base, "init", "-q", "-b", "main")
    for i in range(1, FILES + 1):
        (base / f"f{i}.txt").write_text(f"file {i}\nline two\nline three\n")
    git(base, "add", "-A")
    git(base, "commit", "-qm", "base")
    for side in ("cli", "mcp"):
        (work / side / "ws").mkdir(parents=True)
        git(work, "clone", "-q", str(base), str(work / side / "ws" / "repo"))

    client = subprocess.Popen(
        ["node", str(CLIENT / "client.mjs"), "--", str(admission), "mcp",
         "--workspace", str(work / "mcp" / "ws"), "--store", str(work / "mcp" / "store")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)

    def request(req: dict) -> dict:
        client.stdin.write(json.dumps(req) + "\n")
        client.stdin.flush()
        return json.loads(client.stdout.readline())

    request({"op": "list_tools"})  # the SDK learns the output schemas, as a client does
    cli = {"plan": [], "execute": []}
    mcp = {"plan": [], "execute": []}
    for i in range(1, n + 1):
        patch = (f"diff --git a/f{i}.txt b/f{i}.txt\n--- a/f{i}.txt\n+++ b/f{i}.txt\n"
                 f"@@ -1,3 +1,3 @@\n file {i}\n-line two\n+line two, changed\n line three\n")
        params = {"repo": "repo", "message": f"bench {i}",
                  "author": {"name": "b", "email": "b@example.com"}}

        # The command line: a workorder file naming the patch file.
        side = work / "cli"
        (side / f"p{i}.diff").write_text(patch)
        (side / f"wo{i}.json").write_text(json.dumps({
            "kind": "mechanism.workorder/v0", "work_order_id": f"bench-{i}",
            "mechanism": "git_apply_patch", "operation": "apply", "params": params,
            "inputs": {"patch": f"p{i}.diff"}, "budget": {"wall_ms": 120000}}))
        base_args = [str(admission), "--json", "--workspace", "ws", "--store", "store"]
        start = time.perf_counter()
        out = subprocess.run(base_args + ["plan", f"wo{i}.json"], cwd=side, check=True,
                             capture_output=True, text=True)
        cli["plan"].append(time.perf_counter() - start)
        plan_hash = json.loads(out.stdout)["plan_hash"]
        start = time.perf_counter()
        out = subprocess.run(base_args + ["execute", plan_hash], cwd=side, check=True,
                             capture_output=True, text=True)
        cli["execute"].append(time.perf_counter() - start)
        assert json.loads(out.stdout)["outcome"] == "succeeded", out.stdout

        # MCP: the patch as text, the plan hash it returns.
        planned = request({"op": "call", "name": "plan", "arguments": {
            "mechanism": "git_apply_patch", "operation": "apply", "params": params,
            "inputs": {"patch": {"text": patch}}}})
        content = planned["result"]["structuredContent"]
        assert content.get("outcome") == "admitted", planned
        mcp["plan"].append(planned["elapsed_ms"] / 1000)
        executed = request({"op": "call", "name": "execute",
                            "arguments": {"plan_hash": content["plan_hash"]}})
        assert executed["result"]["structuredContent"].get("outcome") == "succeeded", executed
        mcp["execute"].append(executed["elapsed_ms"] / 1000)
    client.stdin.close()
    client.wait(timeout=30)

    print(f"admission {admission}; {FILES}-file repository, one-file patch; medians of {n}, "
          "alternating\n")
    print("| call | command line | MCP tools/call | MCP / CLI |")
    print("|---|---|---|---|")
    for verb in ("plan", "execute"):
        c = statistics.median(cli[verb]) * 1000
        m = statistics.median(mcp[verb]) * 1000
        print(f"| {verb} | {c:.1f} ms | {m:.1f} ms | {m / c:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
