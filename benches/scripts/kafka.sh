#!/usr/bin/env bash
# Kafka → archive throughput against the ceiling measured in the same run: a bare rdkafka
# consumer (benches/kafka-count, a crate of its own) that only counts bytes from the same topic.
#   vigil:  vigil run --until-end over a pipeline consuming the topic into a fresh archive
#           (decode, sort, Parquet zstd, Delta commits with offsets)
# Usage: benches/scripts/kafka.sh [records] [partitions] [runs] [threads]
#        (default 400000, 4, 3, vigil's default: the machine's cores)
# Needs Tansu (installed by .ci/run into ~/.cache/vigil/tools) or VIGIL_TANSU.
set -euo pipefail
source "$(dirname "$0")/common.sh"
records="${1:-400000}"
partitions="${2:-4}"
runs="${3:-3}"
threads_flag=()
[ $# -ge 4 ] && threads_flag=(--threads "$4")
cargo build --release -q -p kafka-count
count="$CARGO_TARGET_DIR/release/kafka-count"
work="$(mktemp -d)"
start_tansu "$work"
trap 'kill $broker_pid 2>/dev/null; rm -rf "$work"' EXIT

"$vigil" generate --logs "$work/logs.ndjson" --duration 1d --rate 100 --max-logs "$records" \
  --incident errors:database@2h+20m
"$py" crates/vigil/tests/py/kafka_client.py create-topic "$brokers" bench "$partitions"
"$vigil" produce --brokers "$brokers" --topic bench --key trace_id "$work/logs.ndjson" 2>&1 | tail -1

cat >"$work/pipeline.toml" <<TOML
[[sources]]
type = "kafka"
brokers = "$brokers"
group_id = "GROUP"
topics = [{ name = "bench", kind = "logs" }]
[sources.properties]
"session.timeout.ms" = 6000
[schema.logs.fields]
"additional_data.status_code" = "int32"
"additional_data.processing_time_ms" = "float64"
[archive]
url = "$work/archive"
TOML

size=$(stat -c %s "$work/logs.ndjson")
echo "input: $records seed-format log records, $((size / 1000000)) MB, $partitions partitions, Tansu $("$tansu" --version | head -1) (memory storage)"
# The broker's CPU before and after each consumer shows what that consumer cost it.
for i in $(seq "$runs"); do
  b0=$(cpu_seconds "$broker_pid")
  /usr/bin/time -f "%U %S" -o "$work/tc" "$count" "$brokers" bench >"$work/count"
  read -r msgs bytes secs <"$work/count"
  read -r cuser csys <"$work/tc"
  b1=$(cpu_seconds "$broker_pid")
  echo "bare rdkafka consumer: $msgs messages in $secs s ($(awk "BEGIN{printf \"%.0f\", $bytes/$secs/1e6}") MB/s, $(awk "BEGIN{printf \"%.0f\", $msgs/$secs}") msg/s; CPU user $cuser, sys $csys; broker CPU $(awk "BEGIN{print $b1 - $b0}") s)"
  rm -rf "$work/archive"
  sed "s/GROUP/bench-$i-$RANDOM/" "$work/pipeline.toml" >"$work/p.toml"
  /usr/bin/time -f "%e %U %S" -o "$work/t" "$vigil" -v run "${threads_flag[@]}" --until-end --pipeline "$work/p.toml" 2>"$work/vigil.err" || { cat "$work/vigil.err"; exit 1; }
  read -r wall user sys <"$work/t"
  b2=$(cpu_seconds "$broker_pid")
  # The group join (first assignment) is not ingestion; vigil logs when it gets partitions.
  echo "vigil run --until-end: wall $wall s (user $user, sys $sys; broker CPU $(awk "BEGIN{print $b2 - $b1}") s); $(grep -o "messages=.*per_second=[0-9]*" "$work/vigil.err" | tail -1); $(tail -1 "$work/vigil.err")"
done
