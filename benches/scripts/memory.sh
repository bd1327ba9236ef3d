#!/usr/bin/env bash
# Peak memory of `vigil ingest` against input size: the same command on ~250 MB and ~1 GB of
# seed-format NDJSON; bounded means the two peaks are about equal.
# Usage: benches/scripts/memory.sh [threads]    (default: all cores)
set -euo pipefail
source "$(dirname "$0")/common.sh"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
threads_flag=()
[ $# -ge 1 ] && threads_flag=(--threads "$1")
for records in 800000 3300000; do
  input="$work/logs-$records.ndjson"
  "$vigil" generate --logs "$input" --duration 7d --rate 100 --max-logs "$records"
  rm -rf "$work/archive"
  /usr/bin/time -f '%M %e' -o "$work/time" "$vigil" ingest "${threads_flag[@]}" --archive "$work/archive" "$input" 2>"$work/err" || { cat "$work/err"; exit 1; }
  read -r rss secs < "$work/time"
  printf 'input %.0f MB (%s lines): peak RSS %.0f MB, %.1f s — %s\n' \
    "$(echo "$(stat -c %s "$input")/1000000" | bc -l)" "$records" "$(echo "$rss/1024" | bc -l)" "$secs" "$(tail -1 "$work/err")"
  rm -f "$input"
done
