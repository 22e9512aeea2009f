#!/usr/bin/env bash
# terraform_plan_apply against terraform itself, and its plan hash across processes.
#
# 1. Wall time of `admission run` of a workorder creating 20 `terraform_data` resources,
#    against `terraform plan -out=PLAN && terraform apply PLAN` of the same configuration,
#    each from an empty state, median of N runs, and the ratio. `admission run` is timed
#    cold (a fresh store: the mechanism runs `terraform init` in its private area) and warm
#    (the store kept: init is skipped); terraform with and without its `init`.
# 2. The plan hash of that workorder from 10 separate `admission plan`s, each in its own
#    copy of the workspace and store, so each from its own `mechanism-server` process:
#    prints the number of distinct hashes, which must be 1.
# Usage: scripts/bench-terraform.sh [N]   (default 5; builds the release binaries first)
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-5}"
target="${CARGO_TARGET_DIR:-target}"
tf="${MECHANISM_TERRAFORM:-$(command -v terraform || true)}"
[ -n "$tf" ] || { echo "bench-terraform: needs terraform (MECHANISM_TERRAFORM or PATH)" >&2; exit 1; }
cargo build --release --quiet -p admission -p mechanism-builtins
adm="$(realpath "$target/release/admission")"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
tmpl="$work/template"
mkdir -p "$tmpl/ws/infra"
for i in $(seq 1 20); do
  printf 'resource "terraform_data" "r%d" {\n  input = "value %d"\n}\n' "$i" "$i"
done > "$tmpl/ws/infra/main.tf"
cat > "$tmpl/wo.json" <<JSON
{"kind":"mechanism.workorder/v0","work_order_id":"bench-terraform","mechanism":"terraform_plan_apply",
 "operation":"apply","params":{"dir":"infra"},"inputs":{},"budget":{"wall_ms":600000}}
JSON

now_us() { echo $(($(date +%s%N) / 1000)); }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# Sets the variable $1 to the median time of N runs of "${@:2}" (a failing run ends the script).
measure() {
  local var=$1; shift
  : > "$work/times"
  for _ in $(seq 1 "$n"); do "$@" >> "$work/times"; done
  printf -v "$var" '%s' "$(median < "$work/times")"
}
ms() { awk "BEGIN{printf \"%.1f\", $1/1000}"; }

# admission run in a fresh workspace; with "cold", in a fresh store too.
admission_once() {
  rm -rf "$work/run/ws" && cp -r "$tmpl/ws" "$work/run/ws"
  if [ "$1" = cold ]; then rm -rf "$work/run/.mechanism"; fi
  local start end
  start=$(now_us)
  (cd "$work/run" && "$adm" --workspace ws run "$tmpl/wo.json" >/dev/null)
  end=$(now_us)
  echo $((end - start))
}

# terraform plan -out && apply PLAN in a fresh module dir; with "init", init first, in a
# fresh data dir.
terraform_once() {
  rm -rf "$work/tf/infra" && cp -r "$tmpl/ws/infra" "$work/tf/infra"
  if [ "$1" = init ]; then rm -rf "$work/tf/data"; fi
  local start end
  start=$(now_us)
  (
    cd "$work/tf/infra"
    export TF_DATA_DIR="$work/tf/data" TF_IN_AUTOMATION=1 TF_INPUT=0 CHECKPOINT_DISABLE=1
    export TF_CLI_CONFIG_FILE="$work/tf/cli.tfrc"
    if [ "$1" = init ]; then "$tf" init -input=false -no-color >/dev/null; fi
    "$tf" plan -input=false -no-color -out="$work/tf/plan" >/dev/null
    "$tf" apply -input=false -no-color "$work/tf/plan" >/dev/null
  )
  end=$(now_us)
  echo $((end - start))
}

mkdir -p "$work/run" "$work/tf"
: > "$work/tf/cli.tfrc"
terraform_once init >/dev/null # the data dir, for the runs without init
measure adm_cold admission_once cold
admission_once cold >/dev/null # the store, for the warm runs
measure adm_warm admission_once warm
measure tf_init terraform_once init
measure tf_plain terraform_once plain

printf 'admission run, fresh store (with init)      %8s ms\n' "$(ms "$adm_cold")"
printf 'admission run, store kept (init skipped)    %8s ms\n' "$(ms "$adm_warm")"
printf 'terraform init + plan -out + apply PLAN     %8s ms\n' "$(ms "$tf_init")"
printf 'terraform plan -out + apply PLAN            %8s ms\n' "$(ms "$tf_plain")"
printf 'ratio, with init:    %s x\n' "$(awk "BEGIN{printf \"%.2f\", $adm_cold/$tf_init}")"
printf 'ratio, without init: %s x\n' "$(awk "BEGIN{printf \"%.2f\", $adm_warm/$tf_plain}")"
echo "(20 terraform_data creates, each from an empty state, median of $n)"
echo

hashes="$work/hashes"
for i in $(seq 1 10); do
  mkdir -p "$work/hash$i" && cp -r "$tmpl/ws" "$work/hash$i/ws"
  (cd "$work/hash$i" && "$adm" --json --workspace ws plan "$tmpl/wo.json") |
    jq -r .plan_hash >> "$hashes"
done
distinct=$(sort -u "$hashes" | wc -l)
echo "plan hash over 10 mechanism-server processes: $distinct distinct ($(head -1 "$hashes"))"
[ "$distinct" -eq 1 ]
