#!/usr/bin/env bash
# `vigil backtest` against DuckDB computing the same signals (benches/scripts/backtest_peer.py),
# alternating, on the input BENCHMARKS.md's backtest figures use: six hours of the deals system
# at 20 requests/s with two incidents, and pipelines/deals.toml's five rules.
# Usage: benches/scripts/backtest.sh [runs]     (default 3; VIGIL_BIN measures another binary)
set -euo pipefail
source "$(dirname "$0")/common.sh"
runs="${1:-3}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$vigil" generate --logs "$work/d.ndjson" --metrics "$work/dm.ndjson" --duration 6h --rate 20 \
  --incident errors:token-service@1h+15m --incident cpu:database@3h+20m 2>/dev/null
cat "$work/d.ndjson" "$work/dm.ndjson" > /dev/null # page cache
for i in $(seq "$runs"); do
  "$vigil" backtest --pipeline pipelines/deals.toml --logs "$work/d.ndjson" \
    --metrics "$work/dm.ndjson" --anomalies "$work/d.out" 2>&1 | tail -1 | sed "s/^/run $i: /"
  "$py" benches/scripts/backtest_peer.py "$work/d.ndjson" "$work/dm.ndjson" 1 | sed "s/^/run $i: /"
done
