#!/usr/bin/env bash
# `admission events process` of one ready ticket against `admission run` of the same work as a
# plain workorder, in one run, alternating, each on a fresh workspace; then what one ticket's
# cycle stores.
#
# The repository has 200 files; the patch changes 10 of them and adds 2. The ticket is filed
# and made ready untimed; what is timed is `events process` (snapshot plan, RUNNING, workorder,
# the pipeline, output bundle, run record, ticket DONE, pause state, processed event) against
# `admission run wo.json` (the pipeline alone).
# Usage: scripts/bench-ticket.sh [N]   (default 11, at least 7; builds the release binaries)
# ADMISSION=PATH times that admission binary instead (its mechanism-server beside it), unbuilt.
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-11}"
if [ "$n" -lt 7 ]; then
  echo "bench-ticket.sh: N must be at least 7 (got $n)" >&2
  exit 2
fi
if [ -n "${ADMISSION:-}" ]; then
  adm="$(realpath "$ADMISSION")"
else
  target="${CARGO_TARGET_DIR:-target}"
  cargo build --release --quiet -p admission -p mechanism-builtins
  adm="$(realpath "$target/release/admission")"
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/home"
export HOME="$work/home" GIT_CONFIG_NOSYSTEM=1
export GIT_AUTHOR_NAME=b GIT_AUTHOR_EMAIL=b@example.com
export GIT_COMMITTER_NAME=b GIT_COMMITTER_EMAIL=b@example.com

# The base repository and the patch, once.
base="$work/base"
mkdir -p "$base/repo"
(
  cd "$base/repo"
  git init -q -b main
  for i in $(seq 1 200); do printf 'file %d\nline two\nline three\n' "$i" > "f$i.txt"; done
  git add -A && git commit -qm base
  for i in $(seq 1 10); do printf 'file %d\nline two, changed\nline three\n' "$i" > "f$i.txt"; done
  printf 'new one\n' > n1.txt && printf 'new two\n' > n2.txt
  git add -A && git diff --cached > ../change.diff
  git reset -q --hard
)
work_json='"mechanism":"git_apply_patch","operation":"apply","params":{"repo":"repo","message":"bench","author":{"name":"b","email":"b@example.com"}},"inputs":{"patch":"change.diff"},"budget":{"wall_ms":60000}'
cat > "$base/wo.json" <<JSON
{"kind":"mechanism.workorder/v0","work_order_id":"bench",$work_json}
JSON
cat > "$base/ticket.json" <<JSON
{"ticket_id":"BENCH-1","objective":"Change ten files and add two","acceptance":["the patch is committed"],"work":{$work_json}}
JSON

# A fresh workspace at $1: a clone of the base, the workorder, ticket and patch.
fresh() {
  rm -rf "$1" && mkdir -p "$1/ws"
  git clone -q "$base/repo" "$1/ws/repo"
  cp "$base/wo.json" "$base/ticket.json" "$base/change.diff" "$1/"
}

now_us() { echo $(($(date +%s%N) / 1000)); }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ms() { awk "BEGIN{printf \"%.1f\", $1/1000}"; }
objects() { find "$1/.mechanism/objects" -type f ! -name '*.json' | wc -l; }
object_bytes() { find "$1/.mechanism/objects" -type f ! -name '*.json' -printf '%s\n' | awk '{s+=$1} END {print s+0}'; }

ticket_once() {
  local dir=$1 start end
  fresh "$dir"
  (cd "$dir" && "$adm" --workspace ws ticket new ticket.json >/dev/null && "$adm" --workspace ws ticket ready BENCH-1 >/dev/null)
  start=$(now_us)
  (cd "$dir" && "$adm" --workspace ws --json events process > out.json)
  end=$(now_us)
  grep -q '"ticket_status":"DONE"' "$dir/out.json" || { echo "bench-ticket.sh: the ticket did not end DONE: $(cat "$dir/out.json")" >&2; exit 1; }
  echo $((end - start))
}

run_once() {
  local dir=$1 start end
  fresh "$dir"
  start=$(now_us)
  (cd "$dir" && "$adm" --workspace ws run wo.json >/dev/null)
  end=$(now_us)
  echo $((end - start))
}

# What one cycle stores: objects (blobs and artifacts; provenance sidecars not counted).
fresh "$work/count"
(cd "$work/count" && "$adm" --workspace ws ticket new ticket.json >/dev/null && "$adm" --workspace ws ticket ready BENCH-1 >/dev/null)
before=$(objects "$work/count/ws"); before_bytes=$(object_bytes "$work/count/ws")
(cd "$work/count" && "$adm" --workspace ws events process >/dev/null)
after=$(objects "$work/count/ws"); after_bytes=$(object_bytes "$work/count/ws")
fresh "$work/count-run"
(cd "$work/count-run" && "$adm" --workspace ws run wo.json >/dev/null)
run_objects=$(objects "$work/count-run/ws"); run_bytes=$(object_bytes "$work/count-run/ws")

: > "$work/ticket" && : > "$work/run"
for _ in $(seq 1 "$n"); do
  ticket_once "$work/t" >> "$work/ticket"
  run_once "$work/r" >> "$work/run"
done
t=$(median < "$work/ticket"); r=$(median < "$work/run")
echo "median of $n, ms, fresh workspace each (200-file repository, 12-file patch)"
printf '%-40s %8s\n' "admission events process (one ticket)" "$(ms "$t")"
printf '%-40s %8s\n' "admission run (the same workorder)" "$(ms "$r")"
printf '%-40s %8s\n' "ratio" "$(awk "BEGIN{printf \"%.2f\", $t/$r}")"
echo
echo "objects stored (blobs and artifacts, without provenance sidecars)"
printf '%-40s %4d objects %8d bytes\n' "ticket new + ready (ticket, event, patch)" "$before" "$before_bytes"
printf '%-40s %4d objects %8d bytes\n' "events process (the cycle)" "$((after - before))" "$((after_bytes - before_bytes))"
printf '%-40s %4d objects %8d bytes\n' "admission run (patch included)" "$run_objects" "$run_bytes"
