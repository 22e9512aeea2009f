#!/usr/bin/env bash
# `admission run` of a real multi-file patch against `git apply --index && git commit` of the
# same patch, in one run.
#
# The patches come from two published versions of a crate in the cargo registry cache
# (~/.cargo/registry/src/*/): the repository holds the older version, the patch makes the
# text files of the newer one (added and changed files; deletions and binary files are left
# out, as git_apply_patch refuses binary patches and a deletion makes the plan destructive,
# which needs an operator's force-ack). Every pair found of
#   sha2-0.10.9 -> sha2-0.11.1   and   rand-0.8.8 -> rand-0.9.5
# is measured (the workspace's Cargo.lock uses both versions, so `cargo fetch` puts them there).
#
# Each round makes two fresh clones of the base repository (untimed) and times, alternating,
# `admission run` of a workorder applying the patch (fresh store, the mechanism spawned as in
# use) and `git apply --index PATCH && git commit` in a clone; both make the same tree,
# checked once. Prints the medians of N rounds and the ratio admission / git.
#
# Then, as a second table, where admission's time goes on the same patch, each as the median
# of N runs on a fresh clone:
#   describe  spawn the mechanism + describe + shutdown
#   plan      the same + store inputs + plan (twice for G-DET) + gates + witness + journal
#   run       the same + execute + result checks + run record
# so plan - describe is planning and gating, run - plan is executing and recording.
# Usage: scripts/bench-run.sh [N]   (default 11, at least 7; builds the release binaries first)
# ADMISSION=PATH times that admission binary instead (its mechanism-server beside it), unbuilt:
# for comparing two builds.
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-11}"
if [ "$n" -lt 7 ]; then
  echo "bench-run.sh: N must be at least 7 (got $n)" >&2
  exit 2
fi
if [ -n "${ADMISSION:-}" ]; then
  adm="$(realpath "$ADMISSION")"
else
  target="${CARGO_TARGET_DIR:-target}"
  cargo build --release --quiet -p admission -p mechanism-builtins
  adm="$(realpath "$target/release/admission")"
fi

registry_src="${CARGO_HOME:-$HOME/.cargo}/registry/src"
pairs=()
for pair in "sha2-0.10.9 sha2-0.11.1" "rand-0.8.8 rand-0.9.5"; do
  read -r old new <<<"$pair"
  old_dir=$(ls -d "$registry_src"/*/"$old" 2>/dev/null | head -n 1 || true)
  new_dir=$(ls -d "$registry_src"/*/"$new" 2>/dev/null | head -n 1 || true)
  if [ -n "$old_dir" ] && [ -n "$new_dir" ]; then
    pairs+=("$old_dir $new_dir")
  fi
done
if [ "${#pairs[@]}" -eq 0 ]; then
  echo "bench-run.sh: needs the sources of sha2-0.10.9 and sha2-0.11.1, or of rand-0.8.8 and" >&2
  echo "rand-0.9.5, under $registry_src/*/; neither pair is there. Run \`cargo fetch\` in" >&2
  echo "this workspace (its Cargo.lock uses all four) and try again." >&2
  exit 2
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/home"
# Git on both sides sees no user or system configuration (hooks, fsmonitor and the like).
export HOME="$work/home" GIT_CONFIG_NOSYSTEM=1
export GIT_AUTHOR_NAME=b GIT_AUTHOR_EMAIL=b@example.com
export GIT_COMMITTER_NAME=b GIT_COMMITTER_EMAIL=b@example.com

# Makes $1/repo (the base commit, of the old version) and $1/change.diff (to the new one).
make_case() {
  local dir=$1 old=$2 new=$3
  mkdir -p "$dir/repo"
  (
    cd "$dir/repo"
    git init -q -b main
    git config gc.auto 0
    cp -r "$old/." .
    git add -A && git commit -qm base
    # The new version's files over the old; what it deleted stays.
    cp -r "$new/." .
    git add -A
    # Text files only: numstat shows "-" for a binary one.
    git diff --cached --no-renames --numstat --diff-filter=AM |
      awk -F '\t' '$1 != "-" {print $3}' > ../text-files
    xargs -a ../text-files -d '\n' git diff --cached --no-renames --diff-filter=AM -- \
      > ../change.diff
    git reset -q --hard
  )
  cat > "$dir/wo.json" <<JSON
{"kind":"mechanism.workorder/v0","work_order_id":"bench","mechanism":"git_apply_patch",
 "operation":"apply","params":{"repo":"repo","message":"bench","author":{"name":"b","email":"b@example.com"}},
 "inputs":{"patch":"change.diff"},"budget":{"wall_ms":60000}}
JSON
}

# A fresh clone of case $1's repository at $2/ws/repo, the workorder and patch in $2.
fresh() {
  rm -rf "$2" && mkdir -p "$2/ws"
  git clone -q "$1/repo" "$2/ws/repo"
  cp "$1/wo.json" "$1/change.diff" "$2/"
}

now_us() { echo $(($(date +%s%N) / 1000)); }

# `admission $@` in fresh clone $2 of case $1 (store in $2/.mechanism); prints its wall time
# in µs. Fails unless the exit code is $3 or less.
admission_once() {
  local case=$1 run=$2 max_exit=$3 start end code=0
  shift 3
  fresh "$case" "$run"
  start=$(now_us)
  (cd "$run" && "$adm" --workspace ws "$@" >/dev/null) || code=$?
  end=$(now_us)
  if [ "$code" -gt "$max_exit" ]; then
    echo "bench-run.sh: admission $* exited $code" >&2
    exit 1
  fi
  echo $((end - start))
}

# `git apply --index && git commit` in fresh clone $2 of case $1; prints its wall time in µs.
git_once() {
  local case=$1 run=$2 start end
  fresh "$case" "$run"
  start=$(now_us)
  (cd "$run/ws/repo" && git -c apply.whitespace=nowarn apply --index "$case/change.diff" && git commit -qm bench)
  end=$(now_us)
  echo $((end - start))
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ms() { awk "BEGIN{printf \"%.1f\", $1/1000}"; }

summary=()
split=()
i=0
for pair in "${pairs[@]}"; do
  read -r old_dir new_dir <<<"$pair"
  name="$(basename "$old_dir") -> $(basename "$new_dir")"
  case="$work/case$i"
  i=$((i + 1))
  make_case "$case" "$old_dir" "$new_dir"
  files=$(wc -l < "$case/text-files")
  lines=$(wc -l < "$case/change.diff")

  # Once: both sides make the same tree, and admission's run succeeds (exit 0).
  admission_once "$case" "$work/check-ours" 0 run wo.json >/dev/null
  git_once "$case" "$work/check-git" >/dev/null
  ours_tree=$(git -C "$work/check-ours/ws/repo" rev-parse 'HEAD^{tree}')
  git_tree=$(git -C "$work/check-git/ws/repo" rev-parse 'HEAD^{tree}')
  if [ "$ours_tree" != "$git_tree" ]; then
    echo "bench-run.sh: $name: admission made tree $ours_tree, git $git_tree" >&2
    exit 1
  fi

  : > "$work/ours" && : > "$work/git"
  for _ in $(seq 1 "$n"); do
    admission_once "$case" "$work/run" 0 run wo.json >> "$work/ours"
    git_once "$case" "$work/run" >> "$work/git"
  done
  ours=$(median < "$work/ours")
  theirs=$(median < "$work/git")
  summary+=("$(printf '%-28s %5d %7d %12s %10s %7s' "$name" "$files" "$lines" \
    "$(ms "$ours")" "$(ms "$theirs")" "$(awk "BEGIN{printf \"%.2f\", $ours/$theirs}")")")

  declare -A t=()
  for verb in describe plan run; do
    case $verb in
      describe) args=(describe git_apply_patch) ;;
      *) args=("$verb" wo.json) ;;
    esac
    t[$verb]=$(for _ in $(seq 1 "$n"); do admission_once "$case" "$work/run" 0 "${args[@]}"; done | median)
  done
  split+=("$(printf '%-28s %10s %10s %10s %16s %15s' "$name" "$(ms "${t[describe]}")" \
    "$(ms "${t[plan]}")" "$(ms "${t[run]}")" "$(ms $((t[plan] - t[describe])))" \
    "$(ms $((t[run] - t[plan])))")")
  unset t
done

echo
echo "median of $n, ms; git = git apply --index PATCH && git commit, on a fresh clone"
printf '%-28s %5s %7s %12s %10s %7s\n' patch files lines "admission" git ratio
printf '%s\n' "${summary[@]}"
echo
echo "where admission's time goes (median of $n, ms): plan - describe is planning and gating,"
echo "run - plan is executing and recording"
printf '%-28s %10s %10s %10s %16s %15s\n' patch describe plan run "plan-describe" "run-plan"
printf '%s\n' "${split[@]}"
