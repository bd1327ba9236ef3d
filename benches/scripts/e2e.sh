#!/usr/bin/env bash
# End to end, the same thread count each: one seed-format NDJSON file → archive.
#   vigil:  vigil ingest --threads N   (decode, sort, Parquet zstd, Delta commit)
#   peer:   DuckDB (PyPI duckdb==1.4.4): SET threads=N;
#           COPY (SELECT * FROM read_ndjson(file)) TO out.parquet (FORMAT parquet, COMPRESSION zstd)
# Usage: benches/scripts/e2e.sh [records] [runs] [threads]   (default 400000 records, 5 runs, 1)
#
# Reports the median wall time and the median CPU time (user + sys) of each, and both ratios.
# This machine is shared: wall time swings with neighbours, CPU time much less. DuckDB is timed
# inside Python around the COPY statement only; vigil as a whole process (start-up included).
set -euo pipefail
source "$(dirname "$0")/common.sh"
records="${1:-400000}"
runs="${2:-5}"
threads="${3:-1}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
input="$work/logs.ndjson"
"$vigil" generate --logs "$input" --duration 1d --rate 100 --max-logs "$records" \
  --incident errors:database@2h+20m --incident latency:ai-service@5h+30m
cat "$input" > /dev/null # page cache

results="$work/results"
for i in $(seq "$runs"); do
  rm -rf "$work/archive" "$work/duck.parquet"
  /usr/bin/time -f '%e %U %S' -o "$work/t" "$vigil" ingest --threads "$threads" --archive "$work/archive" "$input" 2>/dev/null
  read -r wall user sys < "$work/t"
  echo "vigil $wall $(awk "BEGIN{print $user+$sys}")" >> "$results"
  "$py" - "$input" "$work/duck.parquet" "$threads" >> "$results" <<'PY'
import resource, sys, time, duckdb
con = duckdb.connect()
con.execute(f"SET threads={int(sys.argv[3])}")
r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
con.execute(f"COPY (SELECT * FROM read_ndjson('{sys.argv[1]}')) TO '{sys.argv[2]}' (FORMAT parquet, COMPRESSION zstd)")
t1, r1 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
print(f"duckdb {t1 - t0:.3f} {cpu:.3f}")
PY
done
"$py" - "$input" "$results" "$work/archive/logs" "$work/duck.parquet" "$threads" <<'PY'
import os, statistics, sys
inp, results, archive, duck, threads = sys.argv[1:6]
size = os.path.getsize(inp)
lines = sum(1 for _ in open(inp, "rb"))
rows = {"vigil": [], "duckdb": []}
for line in open(results):
    who, wall, cpu = line.split()
    rows[who].append((float(wall), float(cpu)))
def du(p):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(p) for f in fs) if os.path.isdir(p) else os.path.getsize(p)
med = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for k, v in rows.items()}
print(f"input: {lines} lines, {size / 1e6:.1f} MB of seed-format NDJSON (vigil generate), {len(rows['vigil'])} runs each")
for who, label, out in [("vigil", f"vigil ingest --threads {threads}", archive), ("duckdb", f"duckdb threads={threads} read_ndjson→parquet", duck)]:
    wall, cpu = med[who]
    print(f"{label}: wall {wall:.3f} s ({size / wall / 1e6:.0f} MB/s, {lines / wall:,.0f} records/s), "
          f"cpu {cpu:.3f} s, output {du(out) / 1e6:.1f} MB; walls {[w for w, _ in rows[who]]}")
print(f"ratio DuckDB/vigil: wall {med['duckdb'][0] / med['vigil'][0]:.2f}x, cpu {med['duckdb'][1] / med['vigil'][1]:.2f}x")
PY
