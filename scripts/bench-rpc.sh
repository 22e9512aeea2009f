#!/usr/bin/env bash
# The request path of our server (`mechanism-server git_apply_patch`, release build) against a
# bare serde_json JSON-RPC echo (mechanisms/builtins/examples/rpc_echo.rs: read a frame, parse
# it borrowed, answer around its id and params text, flush; and, alongside, the same echo
# with --value, which goes through a serde_json Value tree each way): requests/s of `status`
# of a stored plan, `describe` and an unknown method, one in flight and pipelined, in line and
# Content-Length framing, client and server on one CPU and on two; then instructions per
# request under callgrind ((N requests - 0 requests) / N) and for a cold start (spawn,
# describe, exit). Prints ratios ours / echo. The driver is
# scripts/bench-rpc.py; about a minute, half that with --quick.
# Usage: scripts/bench-rpc.sh [--quick]   (needs python3, git, taskset, valgrind; 2+ CPUs)
set -euo pipefail
# A relative CARGO_TARGET_DIR means relative to where we were called from.
target=$(realpath -m "${CARGO_TARGET_DIR:-$(dirname "$0")/../target}")
export CARGO_TARGET_DIR=$target
cd "$(dirname "$0")/.."
cargo build --release --quiet -p mechanism-builtins --bin mechanism-server --example rpc_echo
python3 scripts/bench-rpc.py "$target/release/mechanism-server" \
  "$target/release/examples/rpc_echo" "$@"
