#!/usr/bin/env bash
# Checks everything under deploy/ with the tools its readers will use; run by .ci/run.
#   - the Kubernetes overlays render (kubectl kustomize) and pass checkov, each finding fixed
#     or skipped with its reason in the manifest (checkov.io/skip annotations);
#   - the overlays' pipeline files are the repository's (base: deals.toml, otlp: otlp.toml);
#   - the Dockerfile passes checkov;
#   - the compose file is valid Compose (docker-compose config);
#   - vigil's alert rules pass promtool check rules, and Prometheus' config promtool check config;
#   - the Grafana dashboards and provisioning files parse.
# Needs: kubectl, promtool, docker-compose, and checkov at $CHECKOV (a venv of its own).
set -euo pipefail
cd "$(dirname "$0")"
checkov="${CHECKOV:-checkov}"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

echo "-- kustomize"
for copy in base/deals.toml:deals.toml overlays/otlp/otlp.toml:otlp.toml; do
  cmp "kubernetes/${copy%%:*}" "../pipelines/${copy#*:}" \
    || { echo "deploy/kubernetes/${copy%%:*} differs from pipelines/${copy#*:}: copy it again"; exit 1; }
done
for overlay in dev prod otlp; do
  mkdir -p "$out/$overlay"
  # (kustomize 5 warns about the kustomize-2 field names kept for old kubectl; only errors show)
  kubectl kustomize "kubernetes/overlays/$overlay" > "$out/$overlay/all.yaml" 2> "$out/$overlay.err" \
    || { cat "$out/$overlay.err"; exit 1; }
  echo "$overlay: $(grep -c '^kind:' "$out/$overlay/all.yaml") objects"
done

echo "-- checkov"
"$checkov" --quiet --compact --skip-download --framework kubernetes -d "$out/dev" -d "$out/prod" -d "$out/otlp"
"$checkov" --quiet --compact --skip-download --framework dockerfile -f docker/Dockerfile

echo "-- compose"
docker-compose -f compose/compose.yaml config --quiet && echo "compose.yaml: valid"

echo "-- prometheus"
promtool check rules compose/prometheus/vigil-alerts.yml
# The config names its rule file by its path in the container.
sed 's|/etc/prometheus/|'"$PWD"'/compose/prometheus/|' compose/prometheus/prometheus.yml > "$out/prometheus.yml"
promtool check config "$out/prometheus.yml"

echo "-- grafana"
python3 - <<'PY'
import json, pathlib
for p in sorted(pathlib.Path("compose/grafana/dashboards").glob("*.json")):
    d = json.loads(p.read_text())
    assert d["uid"] and d["panels"], p
    for panel in d["panels"]:
        for t in panel["targets"]:
            assert t.get("expr") or t.get("rawSql"), (p, panel["title"])
    print(f"{p.name}: {len(d['panels'])} panels")
PY
