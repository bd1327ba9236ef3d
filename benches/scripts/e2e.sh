#!/usr/bin/env bash
# End to end on one thread each: one seed-format NDJSON file → archive.
#   vigil:  vigil ingest --threads 1 (decode, sort, Parquet zstd, Delta commit)
#   peer:   DuckDB (PyPI duckdb==1.4.4), SET threads=1; COPY (SELECT * FROM read_ndjson(...)) TO ... (FORMAT parquet, COMPRESSION zstd)
# Usage: benches/scripts/e2e.sh [records] [runs]     (default 400000 records, 3 runs)
# Prints the median of each and the ratio. Needs the Python tools of .ci/run (VIGIL_PYTHON).
set -euo pipefail
cd "$(dirname "$0")/../.."
records="${1:-400000}"
runs="${2:-3}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/vigil/target}"
py="${VIGIL_PYTHON:-$HOME/.cache/vigil/venv/bin/python}"
cargo build --release -q -p vigil
vigil="$CARGO_TARGET_DIR/release/vigil"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
input="$work/logs.ndjson"
"$vigil" generate --logs "$input" --duration 1d --rate 100 --max-logs "$records" \
  --incident errors:database@2h+20m --incident latency:ai-service@5h+30m
bytes=$(stat -c %s "$input")
lines=$(wc -l < "$input")
cat "$input" > /dev/null # page cache

now() { date +%s.%N; }
vigil_times=()
duck_times=()
for i in $(seq "$runs"); do
  rm -rf "$work/archive" "$work/duck.parquet"
  t0=$(now)
  "$vigil" ingest --threads 1 --archive "$work/archive" "$input" 2>/dev/null
  t1=$(now)
  vigil_times+=("$(echo "$t1 - $t0" | bc -l)")
  duck_times+=("$("$py" - "$input" "$work/duck.parquet" <<'PY'
import sys, time, duckdb
con = duckdb.connect()
con.execute("SET threads=1")
t0 = time.perf_counter()
con.execute(f"COPY (SELECT * FROM read_ndjson('{sys.argv[1]}')) TO '{sys.argv[2]}' (FORMAT parquet, COMPRESSION zstd)")
print(time.perf_counter() - t0)
PY
)")
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
tv=$(median "${vigil_times[@]}")
td=$(median "${duck_times[@]}")
archive_bytes=$(du -sb "$work/archive/logs" | cut -f1)
duck_bytes=$(stat -c %s "$work/duck.parquet")
printf 'input: %s lines, %.1f MB of seed-format NDJSON (vigil generate, seed 42)\n' "$lines" "$(echo "$bytes/1000000" | bc -l)"
printf 'vigil ingest --threads 1 : %.3f s  %.0f MB/s  %.0f records/s  archive %.1f MB  (runs: %s)\n' \
  "$tv" "$(echo "$bytes/$tv/1000000" | bc -l)" "$(echo "$lines/$tv" | bc -l)" "$(echo "$archive_bytes/1000000" | bc -l)" "${vigil_times[*]}"
printf 'duckdb read_ndjson→parquet: %.3f s  %.0f MB/s  %.0f records/s  parquet %.1f MB  (runs: %s)\n' \
  "$td" "$(echo "$bytes/$td/1000000" | bc -l)" "$(echo "$lines/$td" | bc -l)" "$(echo "$duck_bytes/1000000" | bc -l)" "${duck_times[*]}"
printf 'ratio (DuckDB time / vigil time): %.2fx\n' "$(echo "$td/$tv" | bc -l)"
