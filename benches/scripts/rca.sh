#!/usr/bin/env bash
# Root causes on real fault-injection cases (../shared/data/rca: Nezha's TrainTicket and
# OnlineBoutique, dev half): `vigil backtest` of pipelines/services.toml over each stream, then
# the dataset's scorer (AS@1 per fault type, false incidents).
# Usage: benches/scripts/rca.sh [pipeline] [--detail]   (VIGIL_BIN measures another binary)
set -euo pipefail
source "$(dirname "$0")/common.sh"
pipeline="${1:-pipelines/services.toml}"
shift || true
data="${VIGIL_RCA_DATA:-../shared/data/rca}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for s in tt ob; do
  "$vigil" backtest --pipeline "$pipeline" --logs "$data/$s/logs.ndjson.gz" \
    --metrics "$data/$s/metrics.ndjson.gz" --anomalies "$work/$s.out" 2>&1 | tail -1
done
"$py" "$data/nezha_score.py" "$data/tt/labels.json" "$work/tt.out" "$data/ob/labels.json" "$work/ob.out" "$@"
