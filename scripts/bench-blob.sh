#!/usr/bin/env bash
# Blob hashing and store I/O against sha256sum on the same file, in one run, plus the peak
# memory of `admission put` and `admission cat`.
# Usage: scripts/bench-blob.sh [SIZE_MIB]   (default 1024)
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${1:-1024}
cargo build --release -q -p admission
bin=target/release/admission
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
head -c "$((size_mib * 1024 * 1024))" /dev/urandom >"$work/blob"
sha256sum "$work/blob" >/dev/null # warm the page cache

measure() { # label, command...
  local label=$1; shift
  /usr/bin/time -f "%e %M" -o "$work/time" "$@" >/dev/null
  read -r secs kib <"$work/time"
  awk -v l="$label" -v s="$secs" -v k="$kib" -v m="$size_mib" \
    'BEGIN { printf "%-28s %7.2f s %8.0f MiB/s  peak RSS %6.1f MiB\n", l, s, (s > 0 ? m / s : 0), k / 1024 }'
}

echo "blob: ${size_mib} MiB"
measure "sha256sum" sha256sum "$work/blob"
measure "admission digest --raw" "$bin" digest --raw "$work/blob"
measure "admission put" "$bin" --store "$work/store" put "$work/blob"
digest=$("$bin" --store "$work/store" put "$work/blob")
measure "admission cat (verify+copy)" "$bin" --store "$work/store" cat "$digest"
[ "$(sha256sum <"$work/blob" | cut -d' ' -f1)" = "${digest#sha256:}" ] && echo "digests agree with sha256sum"
