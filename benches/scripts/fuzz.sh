#!/usr/bin/env bash
# The cargo-fuzz targets, each for a fixed time (CI runs their proptest equivalents for a
# fixed number of cases instead): the decoder, the time parser, the pipeline-file loader and
# detection. Needs the nightly toolchain; installs cargo-fuzz from crates.io if missing.
# Usage: benches/scripts/fuzz.sh [seconds per target] [target...]   (default 300; all four)
# FUZZ_SANITIZER=none builds without AddressSanitizer (much faster for the targets that pull in
# DataFusion and deltalake; the code is safe Rust, so panics are what the run looks for).
set -euo pipefail
cd "$(dirname "$0")/../.."
secs="${1:-300}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(decode time pipeline detect)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
logs="${FUZZ_LOGS:-$(mktemp -d)}"
for t in "${targets[@]}"; do
  case "$t" in
    decode) dir=crates/vigil-decode ;;
    time) dir=crates/vigil-core ;;
    pipeline) dir=crates/vigil-config ;;
    detect) dir=crates/vigil-detect ;;
    *) echo "unknown target $t" >&2; exit 2 ;;
  esac
  echo "== $t: $secs s (full output: $logs/$t.log)"
  status=0
  (cd "$dir" && CARGO_TARGET_DIR="$HOME/.cache/vigil/fuzz-target" cargo +nightly fuzz run ${FUZZ_SANITIZER:+-s "$FUZZ_SANITIZER"} "$t" \
    -- -max_total_time="$secs" -rss_limit_mb=4096) >"$logs/$t.log" 2>&1 || status=$?
  # The last stats line (executions, coverage, corpus, exec/s), and a crash's message and
  # artifact if there is one.
  grep -E "^#[0-9]+" "$logs/$t.log" | tail -1 || true
  grep -E "panicked at|^Done|ERROR: libFuzzer|Test unit written|assertion" "$logs/$t.log" | head -8 || true
  [ "$status" -eq 0 ] || { echo "$t: exit $status"; failed=1; }
done
exit "${failed:-0}"
