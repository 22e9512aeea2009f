#!/usr/bin/env bash
# Wall time of `admission run` for a small patch, and where it goes.
#
# Times, each as the median of N runs on a fresh copy of one small repository:
#   describe  spawn the mechanism + describe + shutdown
#   plan      the same + store inputs + plan twice (G-DET) + gates + witness + journal
#   run       the same + execute + result checks + run record
# so plan - describe is planning and gating, run - plan is executing and recording.
# Usage: scripts/bench-run.sh [N]   (default 20; builds the release binaries first)
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-20}"
target="${CARGO_TARGET_DIR:-target}"
cargo build --release --quiet -p admission -p mechanism-builtins
adm="$(realpath "$target/release/admission")"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
tmpl="$work/template"
mkdir -p "$tmpl/ws/repo"
(
  cd "$tmpl/ws/repo"
  git init -q -b main
  git config user.name bench && git config user.email bench@example.com
  for i in $(seq 1 20); do
    mkdir -p "src/m$((i % 4))"
    seq 1 40 | sed "s/^/line $i /" > "src/m$((i % 4))/f$i.txt"
  done
  git add -A && git commit -qm base
  sed -i 's/^line 3 10$/line 3 ten/' src/m3/f3.txt
  printf 'new\n' > src/added.txt
  git add -A && git diff --cached > "$tmpl/change.diff"
  git reset -q --hard
)
cat > "$tmpl/wo.json" <<JSON
{"kind":"mechanism.workorder/v0","work_order_id":"bench","mechanism":"git_apply_patch",
 "operation":"apply","params":{"repo":"repo","message":"bench","author":{"name":"b","email":"b@example.com"}},
 "inputs":{"patch":"change.diff"},"budget":{"wall_ms":60000}}
JSON

# Runs "$@" in a fresh copy of the template, prints its wall time in ms.
once() {
  rm -rf "$work/run" && cp -r "$tmpl" "$work/run"
  local start end
  start=$(date +%s%N)
  (cd "$work/run" && "$adm" --workspace ws "$@" >/dev/null) || [ $? -le 4 ]
  end=$(date +%s%N)
  echo $(((end - start) / 1000))
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
measure() {
  local label=$1; shift
  local times
  times=$(for _ in $(seq 1 "$n"); do once "$@"; done | median)
  printf '%-9s %8.1f ms   (admission %s, median of %d)\n' "$label" "$(awk "BEGIN{print $times/1000}")" "$*" "$n"
  eval "${label}_us=$times"
}
measure describe describe git_apply_patch
measure plan plan wo.json
measure run run wo.json
echo
printf 'planning + gates (plan - describe):  %6.1f ms\n' "$(awk "BEGIN{print ($plan_us-$describe_us)/1000}")"
printf 'execute + records (run - plan):      %6.1f ms\n' "$(awk "BEGIN{print ($run_us-$plan_us)/1000}")"
