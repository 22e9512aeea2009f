#!/usr/bin/env python3
"""Driver of scripts/bench-rpc.sh: our mechanism-server against a bare serde_json echo.

Usage: bench-rpc.py SERVER ECHO [--quick]
The echo runs twice: as the floor (it parses the request borrowed and answers around its id
and params text; ratios are against it) and with --value (a serde_json Value tree each way,
as a plain serde_json server would), shown alongside.
Prints requests/s (sequential: one in flight; pipelined: write N, read N) of `status` of a
stored plan, `describe` and an unknown method, in both framings, with client and server on one
CPU (both on CPU 0) and on two (client on 0, server on 1); then instructions per request under
callgrind ((I(N requests) - I(0 requests)) / N) and for a cold start (spawn, describe, exit).
The client is this Python process: its own cost per request is in every wall-clock figure, so
the echo's rates are a floor the client can reach, and the callgrind figures are the ones to
trust on a noisy machine.
"""
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

SERVER, ECHO = sys.argv[1], sys.argv[2]
QUICK = "--quick" in sys.argv[3:]
SECONDS = 0.1 if QUICK else 0.3  # per sequential measurement (three are made)
CALLGRIND_N = 100 if QUICK else 400


def frame(message, framing):
    body = json.dumps(message, separators=(",", ":")).encode()
    if framing == "line":
        return body + b"\n"
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


class Reader:
    """Reads whole response frames from a file descriptor."""

    def __init__(self, fd, framing):
        self.fd, self.framing, self.buf = fd, framing, b""

    def _fill(self):
        chunk = os.read(self.fd, 1 << 20)
        if not chunk:
            raise EOFError("server closed its stdout")
        self.buf += chunk

    def one(self):
        """The next frame's body."""
        if self.framing == "line":
            while (end := self.buf.find(b"\n")) < 0:
                self._fill()
            body, self.buf = self.buf[:end], self.buf[end + 1:]
            return body
        while (end := self.buf.find(b"\r\n\r\n")) < 0:
            self._fill()
        length = int(re.search(rb"(?i)content-length:\s*(\d+)", self.buf[:end]).group(1))
        while len(self.buf) < end + 4 + length:
            self._fill()
        body = self.buf[end + 4:end + 4 + length]
        self.buf = self.buf[end + 4 + length:]
        return body

    def skip(self, count):
        """Reads `count` frames without parsing their JSON."""
        for _ in range(count):
            self.one()


class Server:
    def __init__(self, argv, framing, cpu):
        self.proc = subprocess.Popen(["taskset", "-c", str(cpu)] + argv,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.framing = framing
        self.reader = Reader(self.proc.stdout.fileno(), framing)
        self.next_id = 0

    def call(self, method, params):
        self.next_id += 1
        os.write(self.proc.stdin.fileno(),
                 frame({"jsonrpc": "2.0", "id": self.next_id, "method": method,
                        "params": params}, self.framing))
        return json.loads(self.reader.one())

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def median(values):
    values = sorted(values)
    return values[len(values) // 2]


def request_bytes(method, params, framing):
    return frame({"jsonrpc": "2.0", "id": 7, "method": method, "params": params}, framing)


def sequential(server, data):
    fd, reader = server.proc.stdin.fileno(), server.reader
    count, start = 0, time.perf_counter()
    deadline = start + SECONDS
    while True:
        for _ in range(20):
            os.write(fd, data)
            reader.one()
        count += 20
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - start)


def write_all(fd, payload):
    view = memoryview(payload)
    while view:
        view = view[os.write(fd, view):]


def pipelined(server, data, count):
    fd = server.proc.stdin.fileno()
    payload = data * count
    writer = threading.Thread(target=write_all, args=(fd, payload))
    start = time.perf_counter()
    writer.start()
    server.reader.skip(count)
    writer.join()
    return count / (time.perf_counter() - start)


def setup(work):
    """A git repository with one commit, a patch blob in the store, and a plan of it."""
    root, store = os.path.join(work, "root"), os.path.join(work, "store")
    repo = os.path.join(root, "repo")
    os.makedirs(repo)
    git = lambda *a: subprocess.run(["git", "-C", repo, *a], check=True,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    git("init", "-q", "-b", "main")
    git("config", "user.name", "bench")
    git("config", "user.email", "bench@example.com")
    with open(os.path.join(repo, "a.txt"), "w") as f:
        f.write("one\ntwo\nthree\n")
    git("add", "-A")
    git("commit", "-qm", "base")
    patch = (b"diff --git a/a.txt b/a.txt\n--- a/a.txt\n+++ b/a.txt\n"
             b"@@ -1,3 +1,3 @@\n one\n-two\n+TWO\n three\n")
    hexdigest = hashlib.sha256(patch).hexdigest()
    # The store's layout (docs/protocol.md section 3.4); a blob needs no provenance sidecar.
    path = os.path.join(store, "objects", "sha256", hexdigest[:2])
    os.makedirs(path)
    with open(os.path.join(path, hexdigest[2:]), "wb") as f:
        f.write(patch)
    argv = [SERVER, "git_apply_patch", "--root", root, "--store", store]
    server = Server(argv, "line", 0)
    answer = server.call("plan", {
        "operation": "apply",
        "params": {"repo": "repo", "message": "bench",
                   "author": {"name": "b", "email": "b@example.com"}},
        "inputs": {"patch": "sha256:" + hexdigest}})
    server.close()
    if "result" not in answer:
        sys.exit(f"plan failed: {answer}")
    return argv, answer["result"]["plan_hash"]


def check(name, method, answer):
    """The answer is the kind the method calls for (a result, or method-not-found)."""
    if method == "no_such_method":
        ok = answer.get("error", {}).get("code") == -32601
    else:
        ok = "result" in answer
    if not ok:
        sys.exit(f"{name}: unexpected answer to {method}: {str(answer)[:300]}")


SERVERS = ("ours", "echo", "value")


def wall(ours_argv, methods):
    servers = {"ours": ours_argv, "echo": [ECHO], "value": [ECHO, "--value"]}
    rates = {}
    for pins, cpu in (("1 CPU", 0), ("2 CPUs", 1)):
        os.sched_setaffinity(0, {0})
        for framing in ("line", "content-length"):
            for name, argv in servers.items():
                server = Server(argv, framing, cpu)
                for method, params in methods.items():
                    check(name, method, server.call(method, params))
                    data = request_bytes(method, params, framing)
                    sequential(server, data)  # warm up
                    seq = median(sequential(server, data) for _ in range(3))
                    count = max(200, min(50000, int(seq * SECONDS)))
                    pipe = median(pipelined(server, data, count) for _ in range(3))
                    rates[pins, framing, method, name] = (seq, pipe)
                server.close()
    os.sched_setaffinity(0, set(range(os.cpu_count())))
    print("requests/s, median of 3; ratio = ours / echo; value = the echo with --value")
    print(f"{'CPUs':<8}{'framing':<16}{'method':<16}{'mode':<11}"
          f"{'ours':>10}{'echo':>10}{'ratio':>8}{'value':>10}{'ratio':>8}")
    for pins in ("1 CPU", "2 CPUs"):
        for framing in ("line", "content-length"):
            for method in methods:
                for mode, index in (("sequential", 0), ("pipelined", 1)):
                    ours, echo, value = (rates[pins, framing, method, name][index]
                                         for name in SERVERS)
                    print(f"{pins:<8}{framing:<16}{method:<16}{mode:<11}"
                          f"{ours:>10.0f}{echo:>10.0f}{ours / echo:>8.3f}"
                          f"{value:>10.0f}{ours / value:>8.3f}")


def instructions(argv, stdin_bytes):
    """Instructions the process and all its threads execute with this input, per callgrind."""
    with tempfile.NamedTemporaryFile() as out:
        run = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out.name]
                             + argv, input=stdin_bytes, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, check=True)
    match = re.search(rb"Collected : (\d+)", run.stderr)
    if match is None:
        sys.exit("callgrind printed no total:\n" + run.stderr.decode(errors="replace"))
    return int(match.group(1))


def callgrind(ours_argv, methods):
    servers = {"ours": ours_argv, "echo": [ECHO], "value": [ECHO, "--value"]}
    print()
    print(f"instructions under callgrind, line framing; per request = (I({CALLGRIND_N}) - I(0))"
          f" / {CALLGRIND_N}; ratio = ours / echo; value = the echo with --value")
    print(f"{'what':<28}{'ours':>12}{'echo':>12}{'ratio':>8}{'value':>12}{'ratio':>8}")

    def row(what, figures, form):
        ours, echo, value = (figures[name] for name in SERVERS)
        print(f"{what:<28}{ours:>12{form}}{echo:>12{form}}{ours / echo:>8.1f}"
              f"{value:>12{form}}{ours / value:>8.1f}")

    for method in ("status", "no_such_method"):
        data = request_bytes(method, methods[method], "line")
        per = {name: (instructions(argv, data * CALLGRIND_N) - instructions(argv, b""))
               / CALLGRIND_N for name, argv in servers.items()}
        row(method + " per request", per, ".0f")
    data = request_bytes("describe", {}, "line")
    row("cold start (describe)", {name: instructions(argv, data)
                                  for name, argv in servers.items()}, "d")


def main():
    with tempfile.TemporaryDirectory() as work:
        ours_argv, plan_hash = setup(work)
        methods = {"status": {"plan_hash": plan_hash}, "describe": {}, "no_such_method": {}}
        wall(ours_argv, methods)
        callgrind(ours_argv, methods)


main()
