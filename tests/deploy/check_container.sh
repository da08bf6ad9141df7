#!/usr/bin/env bash
# Checks the Helm chart rendered with its values (the image itself: tests/container/).
# Usage: check_container.sh REPO_ROOT AGENT_BINARY
set -euo pipefail
repo="$1"
agent="$2"
work="$(mktemp -d)"
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }

# --- Helm chart ---
render() {
  if command -v helm >/dev/null 2>&1; then
    helm template alknet "$repo/helm/alknet" "$@"
  else
    "$repo/../shared/tools/chart-render/chart-render" "$@" "$repo/helm/alknet"
  fi
}
if ! command -v helm >/dev/null 2>&1 && [ ! -x "$repo/../shared/tools/chart-render/chart-render" ]; then
  echo "SKIP: neither helm nor chart-render is available to render the chart"
  exit 0
fi
out="$(render 2>&1)" || { echo "$out"; fail "chart does not render"; }
for want in "kind: StatefulSet" "runAsNonRoot: true" "readOnlyRootFilesystem: true" "path: /readyz" \
            "path: /healthz" "kind: Service" "containerPort: 2222" "listen: 0.0.0.0:9464"; do
  grep -qF "$want" <<<"$out" || fail "rendered chart lacks '$want'"
done
grep -q "kind: ServiceMonitor" <<<"$out" && fail "ServiceMonitor rendered without being enabled"
out="$(render --set metrics.serviceMonitor.enabled=true --api-versions monitoring.coreos.com/v1 2>&1)" \
  || fail "chart with ServiceMonitor does not render"
grep -q "kind: ServiceMonitor" <<<"$out" || fail "ServiceMonitor missing when enabled"
# The rendered agent.yaml must be a config the agent accepts.
awk '/agent.yaml: \|/{f=1;next} /authorized_keys: \|/{f=0} f' <<<"$out" | sed 's/^    //' > "$work/agent.yaml"
"$agent" --config "$work/agent.yaml" --print-config >/dev/null || fail "chart's agent.yaml is rejected by the agent"
echo "ok: chart renders (default and with ServiceMonitor) and its agent.yaml is valid"
