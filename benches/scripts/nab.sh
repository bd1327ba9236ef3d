#!/usr/bin/env bash
# A series detector on the Numenta Anomaly Benchmark: `vigil detect-series` over every series
# of a NAB checkout, then `nab_score` (benches/src/nab.rs) on the results.
# Usage: [DETECTOR=ensemble|resonance|baseline] benches/scripts/nab.sh [NAB_DIR] [RESULTS_DIR]
#   DETECTOR     `vigil detect-series --detector` (default: ensemble, detect-series' default)
#   NAB_DIR      data/<category>/<name>.csv, labels/, config/  (default /work/shared/data/nab)
#   RESULTS_DIR  where the scored series go, same relative paths (default: a temporary dir)
# Debug build: the detector is cheap, and a debug build shares the workspace's warm cache.
set -euo pipefail
cd "$(dirname "$0")/../.."
nab="${1:-/work/shared/data/nab}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/vigil/target}"
cargo build -q --workspace --bins --examples
vigil="$CARGO_TARGET_DIR/debug/vigil"
if [ $# -ge 2 ]; then
  results="$2"
else
  results="$(mktemp -d)"
  trap 'rm -rf "$results"' EXIT
fi
shopt -s nullglob
files=("$nab"/data/*/*.csv)
[ ${#files[@]} -gt 0 ] || { echo "nab.sh: no $nab/data/*/*.csv" >&2; exit 1; }
for input in "${files[@]}"; do
  rel="${input#"$nab"/data/}"
  mkdir -p "$results/$(dirname "$rel")"
  "$vigil" detect-series --detector "${DETECTOR:-ensemble}" --input "$input" --output "$results/$rel" > /dev/null
done
"$CARGO_TARGET_DIR/debug/examples/nab_score" --nab "$nab" --results "$results"
