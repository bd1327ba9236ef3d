#!/usr/bin/env bash
# Analyst SQL over an archive of ten million records: vigil (`vigil sql`, `vigil serve` over
# HTTP and the Postgres wire) against DuckDB reading the same Delta table, in the same run
# (benches/scripts/sql_peer.py): (a) count per service over one hour, (b) p95 per service per
# hour over a day, (c) one trace_id, (d) error messages containing a word over a day.
# Usage: benches/scripts/sql.sh [runs] [work dir]   (default 5 runs; the archive is kept in the
# work dir and reused; VIGIL_BIN measures another binary)
set -euo pipefail
source "$(dirname "$0")/common.sh"
runs="${1:-5}"
work="${2:-${TMPDIR:-/tmp}/vigil-sql-bench}"
day=2026-06-01
mkdir -p "$work"
if [ ! -d "$work/archive/logs/_delta_log" ]; then
  # One day at 24 requests/s: about 10.3 million log records.
  "$vigil" generate --logs "$work/l.ndjson" --start "${day}T00:00:00Z" \
    --duration 24h --rate 24 --seed 7 2>/dev/null
  "$vigil" ingest --archive "$work/archive" "$work/l.ndjson" 2>&1 | tail -1
  rm "$work/l.ndjson"
fi
trace_id="$("$vigil" sql --archive "$work/archive" --format csv \
  "SELECT trace_id FROM logs WHERE timestamp >= '${day}T15:00:00Z' AND trace_id IS NOT NULL LIMIT 1" | tail -1)"
records="$("$vigil" sql --archive "$work/archive" --format csv "SELECT count(*) FROM logs" | tail -1)"
echo "archive: $records log records; trace $trace_id"
port() { "$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
http="127.0.0.1:$(port)"
pg="$(port)"
VIGIL_SQL_TOKEN=bench VIGIL_SQL_USER=bench VIGIL_SQL_PASSWORD=bench \
  "$vigil" serve --archive "$work/archive" --http "$http" --pg "127.0.0.1:$pg" 2>/dev/null &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 50); do "$py" -c "import socket; socket.create_connection(('127.0.0.1', $pg), 1)" 2>/dev/null && break; sleep 0.2; done
"$py" benches/scripts/sql_peer.py "$vigil" "$work/archive" "$http" "$pg" "$day" "$trace_id" "$runs"
