#!/usr/bin/env bash
# Whether this machine's cores slow each other: one-thread `vigil ingest` of INPUT alone, then
# two copies at once (each into its own archive), three rounds. If the pair's times match the
# solo ones, what a two-thread ingest loses against two cores is vigil's own (BENCHMARKS.md,
# goal 3).
# Usage: benches/scripts/cores_apart.sh INPUT   (VIGIL_BIN measures another binary)
set -euo pipefail
source "$(dirname "$0")/common.sh"
input="$1"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
one() {
  rm -rf "$work/$1"
  /usr/bin/time -f "$1 %e s wall, %U s user, %S s sys" "$vigil" ingest --threads 1 \
    --archive "$work/$1" "$input" 2>&1 >/dev/null | tail -1
}
for _ in 1 2 3; do
  one solo
  one pair-a &
  one pair-b &
  wait
done
