#!/bin/sh
# Container entrypoint: runs alknet-agent on the image's config (host key made on first start
# in the state volume), passing any arguments through; --healthcheck probes /healthz.
set -eu
CONFIG="${ALKNET_CONFIG:-/etc/alknet/agent.yaml}"
STATE_DIR="${ALKNET_STATE_DIR:-/var/lib/alknet}"
AGENT="${ALKNET_AGENT:-/usr/local/bin/alknet-agent}"

if [ "${1:-}" = "--healthcheck" ]; then
  # No curl in the image: a tiny HTTP GET with the shell's /dev/tcp is not available in sh,
  # so ask the agent binary's own port with bash if present, else assume healthy.
  port="${ALKNET_METRICS_PORT:-9464}"
  if command -v bash >/dev/null 2>&1; then
    exec bash -c "exec 3<>/dev/tcp/127.0.0.1/$port && printf 'GET /healthz HTTP/1.0\r\n\r\n' >&3 && head -1 <&3 | grep -q ' 200 '"
  fi
  exit 0
fi

if [ ! -d "$STATE_DIR" ]; then
  echo "alknet: state directory $STATE_DIR is missing; mount a volume there" >&2
  exit 1
fi
if [ ! -w "$STATE_DIR" ]; then
  echo "alknet: state directory $STATE_DIR is not writable by uid $(id -u); fix the volume's owner" >&2
  exit 1
fi
if [ ! -e "$STATE_DIR/authorized_keys" ]; then
  : > "$STATE_DIR/authorized_keys"
  chmod 600 "$STATE_DIR/authorized_keys"
  echo "alknet: created empty $STATE_DIR/authorized_keys; add keys there (then send SIGHUP) or mount one" >&2
fi
# The image's config applies unless the caller brings its own --config (e.g. the Helm chart).
for arg in "$@"; do
  case "$arg" in
    --config|--config=*) exec "$AGENT" --state-dir "$STATE_DIR" "$@" ;;
  esac
done
exec "$AGENT" --config "$CONFIG" --state-dir "$STATE_DIR" "$@"
