#!/usr/bin/env bash
# Checks the container pieces that can run without a Docker engine: the entrypoint as an
# unprivileged user on an empty state volume. The Helm chart is checked by check_chart.py.
# Usage: check_container.sh REPO_ROOT AGENT_BINARY
set -euo pipefail
repo="$1"
agent="$2"
work="$(mktemp -d)"
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }

# --- entrypoint: non-root, empty volume, no arguments beyond test ports ---
state="$work/state"
mkdir -p "$state"
chown nobody "$state" "$work" 2>/dev/null || true
chmod 700 "$state"
cp "$agent" "$work/alknet-agent"
chmod 755 "$work/alknet-agent" "$work"
run_as_nobody() {
  if [ "$(id -u)" = 0 ]; then
    exec setpriv --reuid=nobody --regid=nogroup --clear-groups -- "$@"
  else
    exec "$@"
  fi
}
ALKNET_AGENT="$work/alknet-agent" ALKNET_CONFIG="$repo/docker/agent.yaml" ALKNET_STATE_DIR="$state" \
  run_as_nobody "$repo/docker/entrypoint.sh" --listen tcp://127.0.0.1:0 --metrics-listen 127.0.0.1:0 \
  >"$work/out.log" 2>&1 &
pid=$!
for _ in $(seq 100); do
  grep -q "metrics: listening" "$work/out.log" && break
  sleep 0.1
done
grep -q "engine: listening address=tcp://127.0.0.1:" "$work/out.log" || { cat "$work/out.log"; fail "agent did not start from the entrypoint"; }
key="$state/ssh_host_ed25519_key"
[ -f "$key" ] || fail "host key not generated in the state volume"
[ "$(stat -c %a "$key")" = 600 ] || fail "host key mode is $(stat -c %a "$key"), want 600"
if [ "$(id -u)" = 0 ]; then
  [ "$(stat -c %U "$key")" = nobody ] || fail "host key owned by $(stat -c %U "$key"), want the unprivileged user"
  ps -o user= -p "$pid" >/dev/null
fi
[ -f "$state/authorized_keys" ] || fail "authorized_keys not created"
kill -TERM "$pid"
wait "$pid" || { cat "$work/out.log"; fail "agent exited non-zero after SIGTERM"; }
pid=""
echo "ok: entrypoint runs the agent unprivileged on an empty volume"
