#!/usr/bin/env bash
# Inside a fresh network namespace: runs one docs/recipes.md recipe (proxychains | redsocks) and
# fetches the host's loopback web page through the tunnel. Started by examples_test.py, which sets
# AGENT, WORK (recipe files, logs), BRIDGE (Unix socket to the server agent), HOST_FP, KEY, PAGE
# and WEB_PORT. The namespace has only lo: the page is not reachable here except via the tunnel.
set -euo pipefail
mode=$1
ip link set lo up

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

wait_for_log() {  # FILE TEXT: up to 20 s
  for _ in $(seq 200); do
    grep -q -- "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "FAIL: '$2' never appeared in $1:" >&2
  cat "$1" >&2
  exit 1
}

# The tunnel's own way out of the namespace: 127.0.0.1:2200 here is the server agent's port.
socat TCP-LISTEN:2200,bind=127.0.0.1,fork,reuseaddr "UNIX-CONNECT:$BRIDGE" &
pids+=($!)
"$AGENT" connect --state-dir "$WORK/ns-client-state" --metrics-listen off \
  --server tcp://127.0.0.1:2200 --identity "$KEY" --host-key-fingerprint "$HOST_FP" \
  --socks5 127.0.0.1:1080 >"$WORK/ns-client.log" 2>&1 &
pids+=($!)
wait_for_log "$WORK/ns-client.log" "upstream connected"

url="http://127.0.0.1:$WEB_PORT/page.bin"
if curl -fsS --max-time 10 -o /dev/null "$url" 2>/dev/null; then
  echo "FAIL: $url answered without the tunnel: the namespace is not isolated" >&2
  exit 1
fi

case "$mode" in
  proxychains)
    proxychains4 -q -f "$WORK/proxychains.recipe" curl -fsS --max-time 30 -o "$WORK/got" "$url"
    ;;
  redsocks)
    redsocks -c "$WORK/redsocks.recipe" >"$WORK/redsocks.log" 2>&1 &
    pids+=($!)
    wait_for_log "$WORK/redsocks.log" "redsocks started"
    SERVER_IP=127.0.0.1 SERVER_PORT=2200 bash -euo pipefail "$WORK/redsocks-iptables.recipe"
    # A plain curl: every TCP connection of the namespace goes through redsocks and the tunnel.
    curl -fsS --max-time 30 -o "$WORK/got" "$url"
    ;;
  *)
    echo "usage: $0 proxychains|redsocks" >&2
    exit 2
    ;;
esac
cmp "$PAGE" "$WORK/got"
echo "$mode: $(stat -c %s "$WORK/got") bytes through the tunnel, byte-exact"
