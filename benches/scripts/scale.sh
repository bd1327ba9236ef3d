#!/usr/bin/env bash
# Distributed detection (#17, `[detect] distributed = true`) on this machine's cores.
#   throughput: pipelines/services.toml over a fresh topic per run (6 partitions, keyed by
#     trace id) and its metrics (1 partition); the replicas join the group first, then N log
#     records are produced; wall time from the first produced record until detection has
#     closed its windows through the data's end (detection works on rows as they are read;
#     the archive commits every 5 s alongside). Three set-ups, alternating:
#     one replica detecting alone (no shuffle), one replica distributed, two replicas
#     distributed (two processes sharing the two cores). Shuffle bytes per raw byte from the
#     replicas' own counts.
#   latency: records stamped with the wall clock (benches/scripts/realtime_producer.py) and a
#     rule on 5 s windows; samples vigil_detection_closed_through_seconds every 0.2 s: how long
#     after a window's end plus the allowed lateness it closes, one replica alone vs two
#     distributed.
# Usage: benches/scripts/scale.sh [records] [runs] [latency seconds]   (default 400000, 3, 120;
#        latency 0 skips it). CORRELATE=false runs the pipeline without correlation (what the
#        traces add to the shuffle). BACKLOG=1 produces the data before the replicas start and
#        times from their start (join included): what the replicas do when the producer is not
#        the bound.
# Needs Tansu (see common.sh's start_tansu) and curl.
set -euo pipefail
source "$(dirname "$0")/common.sh"
records="${1:-400000}"
runs="${2:-3}"
latency_secs="${3:-120}"
work="$(mktemp -d)"
start_tansu "$work"
pids=()
ports=()
trap 'kill $broker_pid "${pids[@]}" 2>/dev/null; rm -rf "$work"' EXIT
client=crates/vigil/tests/py/kafka_client.py

# About 6000 log records per minute of event time at rate 20; metrics over the same span.
"$vigil" generate --logs "$work/logs.ndjson" --metrics "$work/metrics.ndjson" \
  --duration "$((records / 6000 + 1))m" --rate 20 --incident errors:database@10m+5m >/dev/null
records=$(wc -l <"$work/logs.ndjson")
last=$(tail -1 "$work/logs.ndjson" | sed 's/.*"timestamp": *"\([^"]*\)".*/\1/')
target=$(( $(date -d "$last" +%s) - 70 ))   # the last full minute's window, less the lateness
logs_bytes=$(stat -c %s "$work/logs.ndjson")
metrics_bytes=$(stat -c %s "$work/metrics.ndjson")
metric_lines=$(wc -l <"$work/metrics.ndjson")
echo "input: $records log records ($((logs_bytes / 1000000)) MB) + $metric_lines metric samples ($((metrics_bytes / 1000000)) MB), 6 + 1 partitions; $(nproc) cores; Tansu (memory storage)"

# pipelines/services.toml, its environment written in; `distributed` when $2 is a topic.
pipeline() {
  local name=$1 partials=$2 file="$work/$1.toml"
  sed -e "s|\${KAFKA_BROKERS:-[^}]*}|$brokers|" -e "s|\${VIGIL_GROUP_ID:-[^}]*}|$name|" \
    -e "s|\${LOGS_TOPIC:-[^}]*}|${3:-bench.logs}|" -e "s|\${METRICS_TOPIC:-[^}]*}|${4:-bench.metrics}|" \
    -e "s|\${VIGIL_ARCHIVE:-[^}]*}|$work/$name.archive|" -e "s|\${VIGIL_FLUSH_INTERVAL:-[^}]*}|5s|" \
    -e "s|\${VIGIL_ALLOWED_LATENESS:-[^}]*}|5s|" -e "s|\${ANOMALY_TOPIC:-[^}]*}|$name.anomalies|" \
    -e "s|\${ALERTMANAGER_URL:-[^}]*}||" -e "s|\${VIGIL_DISTRIBUTED:-[^}]*}|${partials:+true}|" \
    -e "s|\${PARTIALS_TOPIC:-[^}]*}|$partials|" -e "s|^correlate = true|correlate = ${CORRELATE:-true}|" \
    pipelines/services.toml >"$file"
  sed -i "s|^distributed = $|distributed = false|" "$file"
  if [ -n "$partials" ]; then "$py" "$client" create-topic "$brokers" "$partials" 1; fi
  echo "$file"
}

# start_replicas NAME N FILE: N `vigil run --pipeline FILE`, each serving /metrics on a port of
# its own and logging to $work/NAME-i.log; sets `pids` and `ports`.
start_replicas() {
  local name=$1 n=$2 file=$3 r p
  pids=()
  ports=()
  for r in $(seq "$n"); do
    p=$((40000 + RANDOM % 20000))
    ports+=("$p")
    VIGIL_LOG=warn,vigil=info,vigil_pipeline=info,vigil_kafka=info "$vigil" run --pipeline "$file" \
      --listen "127.0.0.1:$p" 2>"$work/$name-$r.log" &
    pids+=($!)
  done
}

# SIGTERM to every replica, then waits for them.
stop_replicas() {
  local pid
  for pid in "${pids[@]}"; do kill -TERM "$pid"; done
  for pid in "${pids[@]}"; do wait "$pid" || true; done
  pids=()
}

closed() { # the furthest any replica's detection has closed, seconds
  local best=0 v
  for p in "$@"; do
    v=$(curl -s "http://127.0.0.1:$p/metrics" 2>/dev/null | awk '/^vigil_detection_closed_through_seconds /{printf "%d", $2}')
    [ -n "$v" ] && [ "$v" -gt "$best" ] && best=$v
  done
  echo "$best"
}

# run NAME REPLICAS PARTIALS: wall seconds until detection closed through $target.
run() {
  local name=$1 n=$2 partials=$3 file start end
  "$py" "$client" create-topic "$brokers" "$name.logs" 6
  "$py" "$client" create-topic "$brokers" "$name.metrics" 1
  file=$(pipeline "$name" "$partials" "$name.logs" "$name.metrics")
  if [ -n "${BACKLOG:-}" ]; then
    # The data is in the topics first; the clock runs from the replicas' start, group join
    # (and, with two, the rebalance as the second joins) included.
    "$vigil" produce --brokers "$brokers" --topic "$name.logs" --key trace_id "$work/logs.ndjson" >/dev/null 2>&1
    "$vigil" produce --brokers "$brokers" --topic "$name.metrics" --key service "$work/metrics.ndjson" >/dev/null 2>&1
    start=$(date +%s.%N)
    start_replicas "$name" "$n" "$file"
  else
    start_replicas "$name" "$n" "$file"
    # Every replica in the group (ready: its consumer is steady) before the data arrives, so
    # no rebalance throws work away mid-run.
    for p in "${ports[@]}"; do
      until [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$p/readyz")" = 200 ]; do sleep 0.2; done
    done
    sleep 2
    start=$(date +%s.%N)
    "$vigil" produce --brokers "$brokers" --topic "$name.logs" --key trace_id "$work/logs.ndjson" >/dev/null 2>&1 &
    "$vigil" produce --brokers "$brokers" --topic "$name.metrics" --key service "$work/metrics.ndjson" >/dev/null 2>&1
  fi
  until [ "$(closed "${ports[@]}")" -ge "$target" ]; do
    for pid in "${pids[@]}"; do
      kill -0 "$pid" 2>/dev/null || { echo "a replica exited:"; tail -20 "$work/$name"-*.log; exit 1; }
    done
    if [ "$(awk "BEGIN{print ($(date +%s.%N) - $start > ${BENCH_TIMEOUT:-600})}")" = 1 ]; then
      echo "$name: detection did not close through $target in ${BENCH_TIMEOUT:-600} s:"; tail -20 "$work/$name"-*.log
      for p in "${ports[@]}"; do curl -s "http://127.0.0.1:$p/metrics" | grep -E '^vigil_(watermark|detection|records|late|shuffle)'; done
      exit 1
    fi
    sleep 0.1
  done
  end=$(date +%s.%N)
  local cpu=""
  for pid in "${pids[@]}"; do cpu+="$(cpu_seconds "$pid") "; done
  stop_replicas
  local wall sent messages
  wall=$(awk "BEGIN{printf \"%.2f\", $end - $start}")
  sent=$(cat "$work/$name"-*.log | { grep -o 'partials handed on messages=[0-9]* bytes=[0-9]*' || true; } | awk -F'bytes=' '{s+=$2} END{print s+0}')
  messages=$(cat "$work/$name"-*.log | { grep -o 'partials handed on messages=[0-9]*' || true; } | awk -F'messages=' '{s+=$2} END{print s+0}')
  echo "$name: $n replica(s)${partials:+, distributed}: $wall s, $(awk "BEGIN{printf \"%.0f\", ($records + $metric_lines) / $wall}") records/s; shuffle $messages messages, $sent bytes = $(awk "BEGIN{printf \"%.4f\", $sent / ($logs_bytes + $metrics_bytes)}") of the raw bytes; CPU s per replica: $cpu"
}

count="$CARGO_TARGET_DIR/release/kafka-count"
[ -x "$count" ] || cargo build --release -q -p kafka-count
for i in $(seq "$runs"); do
  run "alone-$i" 1 ""
  run "one-$i" 1 "one-$i.partials"
  run "two-$i" 2 "two-$i.partials"
  # The broker's ceiling in the same run: a bare consumer counting the same topic.
  read -r msgs bytes secs < <("$count" "$brokers" "alone-$i.logs")
  echo "bare rdkafka consumer over alone-$i.logs: $(awk "BEGIN{printf \"%.0f\", $msgs/$secs}") msg/s"
done

# Latency: a 5 s window rule over wall-clock-stamped records.
"$py" "$client" create-topic "$brokers" live.logs 6
"$py" "$client" create-topic "$brokers" live.metrics 1
latency() {
  local name=$1 n=$2 partials=$3 file
  file=$(pipeline "$name" "$partials" live.logs live.metrics)
  cat >>"$file" <<'TOML'

[[rules]]
name = "Five Second Rate"
table = "logs"
window = "5s"
signal = "count(*)"
condition = "< 0"
severity = "P4"
TOML
  start_replicas "$name" "$n" "$file"
  sleep 8
  "$py" benches/scripts/realtime_producer.py "$brokers" live.logs --seconds "$latency_secs" --rate 300 >/dev/null &
  # Windows ending in the first 15 s (groups joining, an empty partition's first idle
  # period) are not counted.
  local producer=$! seen=0 now c from=$(( $(date +%s) + 15 ))
  : >"$work/$name.lat"
  while kill -0 "$producer" 2>/dev/null; do
    c=$(closed "${ports[@]}")
    now=$(date +%s.%N)
    if [ "$c" -gt "$seen" ]; then
      [ "$seen" -gt 0 ] && [ "$c" -gt "$from" ] && awk "BEGIN{printf \"%.3f\n\", $now - $c - 5}" >>"$work/$name.lat"
      seen=$c
    fi
    sleep 0.2
  done
  stop_replicas
  sort -n "$work/$name.lat" | awk -v name="$name" -v n="$n" '{a[NR]=$1} END{
    if (NR == 0) { print name ": no window closed"; exit }
    m = int(NR * 0.5) + 1; if (m > NR) m = NR
    p = int(NR * 0.95) + 1; if (p > NR) p = NR
    printf "%s (%d replica(s)): %d windows; closed after their end + lateness: median %.2f s, p95 %.2f s, max %.2f s\n", name, n, NR, a[m], a[p], a[NR]
  }'
}
if [ "$latency_secs" -gt 0 ]; then
  latency "live-alone" 1 ""
  latency "live-two" 2 "live.partials"
fi
