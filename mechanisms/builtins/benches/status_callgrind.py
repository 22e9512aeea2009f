#!/usr/bin/env python3
"""Instructions per `status` request of a stored plan, under callgrind.

Makes a git repository and a stored plan of `git_apply_patch`, then runs the server under
`valgrind --tool=callgrind` on N `status` requests and on none, and prints
(instructions(N) - instructions(0)) / N.

Usage: status_callgrind.py SERVER_BINARY [N]   (the release `mechanism-server` of
mechanism-builtins; N defaults to 1000). With CALLGRIND_OUT=FILE set, the profile of the N requests is kept
there, for callgrind_annotate.
"""
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile


def git(repo, *args):
    subprocess.run(["git", "-C", repo, *args], check=True, capture_output=True)


def make_world(work):
    root = os.path.join(work, "root")
    repo = os.path.join(root, "repo")
    os.makedirs(repo)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.name", "bench")
    git(repo, "config", "user.email", "bench@example.com")
    for i in range(20):
        with open(os.path.join(repo, f"f{i}.txt"), "w") as f:
            f.write("".join(f"line {i} {n}\n" for n in range(40)))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "base")
    with open(os.path.join(repo, "f3.txt"), "a") as f:
        f.write("more\n")
    patch = subprocess.run(["git", "-C", repo, "diff"], check=True, capture_output=True).stdout
    git(repo, "checkout", "--", ".")
    # A blob is just its bytes filed under their digest; the sidecar is optional.
    store = os.path.join(work, "store")
    hexd = hashlib.sha256(patch).hexdigest()
    objdir = os.path.join(store, "objects", "sha256", hexd[:2])
    os.makedirs(objdir)
    with open(os.path.join(objdir, hexd[2:]), "wb") as f:
        f.write(patch)
    return root, store, "sha256:" + hexd


def request(i, method, params):
    return json.dumps({"jsonrpc": "2.0", "id": i, "method": method, "params": params}) + "\n"


def instructions(server, root, store, lines, keep=None):
    out = tempfile.NamedTemporaryFile(delete=False)
    out.close()
    subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out.name}", server,
         "--root", root, "--store", store, "git_apply_patch"],
        input="".join(lines).encode(), check=True, capture_output=True,
    )
    with open(out.name) as f:
        text = f.read()
    if keep:
        os.replace(out.name, keep)
    else:
        os.unlink(out.name)
    return int(re.search(r"^summary: (\d+)", text, re.M).group(1))


def main():
    server = os.path.abspath(sys.argv[1])
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    with tempfile.TemporaryDirectory() as work:
        root, store, patch = make_world(work)
        plan = request(0, "plan", {
            "operation": "apply",
            "params": {"repo": "repo", "message": "bench",
                       "author": {"name": "b", "email": "b@example.com"}},
            "inputs": {"patch": patch},
        })
        out = subprocess.run([server, "--root", root, "--store", store, "git_apply_patch"], input=plan.encode(),
                             check=True, capture_output=True).stdout
        plan_hash = json.loads(out)["result"]["plan_hash"]
        status = [request(i + 1, "status", {"plan_hash": plan_hash}) for i in range(n)]
        # Checks the answer is "planned", so the figure is that of the intended path.
        out = subprocess.run([server, "--root", root, "--store", store, "git_apply_patch"],
                             input=status[0].encode(), check=True, capture_output=True).stdout
        assert json.loads(out)["result"]["state"] == "planned", out
        zero = instructions(server, root, store, [])
        many = instructions(server, root, store, status, os.environ.get("CALLGRIND_OUT"))
        print(f"status: {(many - zero) / n:.0f} instructions per request "
              f"({n} requests: {many}, none: {zero})")


if __name__ == "__main__":
    main()
