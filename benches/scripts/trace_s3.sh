#!/usr/bin/env bash
# One trace id looked up through `vigil serve` over an archive on an S3 server (moto, as the
# tests run it): three hours of generated telemetry (~1.2M log records) ingested to
# s3://bench/vigil, then the median of 9 lookups over HTTP after a first one.
# Usage: benches/scripts/trace_s3.sh   (VIGIL_BIN measures another binary; run both to compare)
set -euo pipefail
source "$(dirname "$0")/common.sh"
work="$(mktemp -d)"
port=$((30000 + RANDOM % 10000))
"$py" crates/vigil-store/tests/common/moto_server.py -H 127.0.0.1 -p "$port" >"$work/moto.log" 2>&1 &
moto=$!
trap 'kill $moto 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.2; done
curl -s -X PUT "http://127.0.0.1:$port/bench" >/dev/null
opts=(--storage-option "aws_endpoint=http://127.0.0.1:$port" --storage-option aws_region=us-east-1
  --storage-option aws_access_key_id=bench --storage-option aws_secret_access_key=bench)
archive=s3://bench/vigil
"$vigil" generate --logs "$work/l.ndjson" --start 2026-06-01T00:00:00Z --duration 3h --rate 24 --seed 7 2>/dev/null
"$vigil" ingest --archive "$archive" "${opts[@]}" "$work/l.ndjson" 2>&1 | grep -v ERROR | tail -1
trace="$("$vigil" sql --archive "$archive" "${opts[@]}" --format csv \
  "SELECT trace_id FROM logs WHERE timestamp >= '2026-06-01T02:00:00Z' AND trace_id IS NOT NULL LIMIT 1" | tail -1)"
query="SELECT timestamp, service, span_id, level, message FROM logs WHERE trace_id = '$trace' ORDER BY timestamp, span_id"
http="127.0.0.1:$((40000 + RANDOM % 10000))"
VIGIL_SQL_TOKEN=bench "$vigil" serve --archive "$archive" "${opts[@]}" --http "$http" 2>/dev/null &
server=$!
trap 'kill $server $moto 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 100); do curl -s -o /dev/null "http://$http/healthz" && break; sleep 0.2; done
ask() { curl -s -H 'Authorization: Bearer bench' --data "$query" "$@" "http://$http/sql"; }
rows="$(ask | grep -o '"span_id"' | wc -l)"
median="$(for _ in $(seq 9); do ask -o /dev/null -w '%{time_total}\n'; done | sort -n | sed -n 5p)"
echo "trace $trace: $rows records; median of 9 lookups ${median} s"
