#!/usr/bin/env bash
# git_apply_patch plan, and plan plus execute as the runtime drives them (the plan verb, then
# execute's re-plan and the mechanism's execute of what it prepared), of a 100-file patch
# against `git apply --index` plus `git commit` of the same patch, on repositories of 1,000
# and 100,000 files (mechanisms/git_apply_patch/benches/apply.rs); and the plan of the same
# patch on a branch that is not checked out, whose cost should not grow with the repository
# (goal: 100,000 files / 1,000 files <= 1.2). Prints the medians and the ratios.
# Usage: scripts/bench-apply.sh [more criterion arguments, e.g. a filter]
# Respects CARGO_TARGET_DIR; criterion's results land in $CARGO_TARGET_DIR/criterion.
# The repositories are made under TMPDIR (default /tmp); TMPDIR=/dev/shm leaves the disk out.
set -euo pipefail
# A relative CARGO_TARGET_DIR means relative to where we were called from.
target=$(realpath -m "${CARGO_TARGET_DIR:-$(dirname "$0")/../target}")
export CARGO_TARGET_DIR=$target
cd "$(dirname "$0")/.."
log=$(mktemp)
stamp=$(mktemp)
trap 'rm -f "$log" "$stamp"' EXIT

cargo bench -p git_apply_patch --bench apply -- \
  --warm-up-time 1 --measurement-time 3 "$@" | tee "$log"

echo
grep '^setup ' "$log" || true
# Only results written by this run: older ones may remain from other runs.
python3 - "$target/criterion" "$stamp" <<'EOF'
import json, os, sys

root, stamp = sys.argv[1], os.path.getmtime(sys.argv[2])
groups = {"apply_1k": "1,000 files", "apply_100k": "100,000 files"}
ours = ["plan", "plan+execute", "plan, branch not checked out"]
git = "git apply --index + git commit"
medians = {}
for group in groups:
    directory = os.path.join(root, group)
    for bench in os.listdir(directory) if os.path.isdir(directory) else []:
        new = os.path.join(directory, bench, "new")
        try:
            with open(os.path.join(new, "benchmark.json")) as f:
                function = json.load(f)["function_id"]
            estimates = os.path.join(new, "estimates.json")
            if os.path.getmtime(estimates) < stamp:
                continue
            with open(estimates) as f:
                medians[group, function] = json.load(f)["median"]["point_estimate"] / 1e6
        except (OSError, KeyError, ValueError):
            continue

def ms(value):
    return "-" if value is None else f"{value:.2f}"

def ratio(a, b):
    return "-" if a is None or b is None else f"{a / b:.2f}"

names = ours + [git]
print()
print("median ms; git = git apply --index + git commit; ratios are ours / git")
print(f"{'repository':<15}{'plan':>10}{'plan+execute':>14}{'git':>10}"
      f"{'plan/git':>10}{'(plan+execute)/git':>20}{'plan, not checked out':>23}")
rows = {}
for group, label in groups.items():
    row = [medians.get((group, name)) for name in names]
    rows[group] = row
    if all(v is None for v in row):
        continue
    plan, both, other, theirs = row
    print(f"{label:<15}{ms(plan):>10}{ms(both):>14}{ms(theirs):>10}"
          f"{ratio(plan, theirs):>10}{ratio(both, theirs):>20}{ms(other):>23}")
small, large = rows["apply_1k"], rows["apply_100k"]
print("100,000 files / 1,000 files: " + ", ".join(
    f"{name} {ratio(l, s)}"
    for name, s, l in zip(["plan", "plan+execute", "plan not checked out (goal <= 1.2)", "git"],
                          small, large)))
EOF
