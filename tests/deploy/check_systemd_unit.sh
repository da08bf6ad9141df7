#!/usr/bin/env bash
# deploy/systemd: `systemd-analyze verify` on the unit (and the socket example) with ExecStart
# pointing at the built agent and its generated man page on MANPATH, then
# `systemd-analyze security --offline=true`: prints the exposure score and fails above
# ALKNET_UNIT_MAX_EXPOSURE (default 1.5; docs/adr/0012-systemd-unit.md records the score).
# Usage: check_systemd_unit.sh REPO_ROOT AGENT_BINARY MAN_DIR. Exit 77 without systemd-analyze.
set -euo pipefail
repo=$1 agent=$2 mandir=$3
max=${ALKNET_UNIT_MAX_EXPOSURE:-1.5}
if ! command -v systemd-analyze >/dev/null; then
  echo "SKIP: systemd-analyze is not installed (Debian package systemd)"
  exit 77
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for unit in alknet-agent.service alknet-agent.socket.example; do
  sed "s|/usr/bin/alknet-agent|$agent|" "$repo/deploy/systemd/$unit" >"$work/${unit%.example}"
done
cd "$work"
export MANPATH=$mandir
if ! out=$(systemd-analyze verify alknet-agent.service alknet-agent.socket 2>&1) || [[ -n "$out" ]]; then
  echo "FAIL: systemd-analyze verify:"
  echo "$out"
  exit 1
fi
echo "ok: systemd-analyze verify alknet-agent.service alknet-agent.socket (no findings)"
security=$(systemd-analyze security --offline=true --no-pager alknet-agent.service 2>&1)
score=$(grep -o 'Overall exposure level for alknet-agent.service: [0-9.]*' <<<"$security" | awk '{print $NF}')
if [[ -z "$score" ]]; then
  echo "FAIL: no exposure score in systemd-analyze security output:"
  echo "$security"
  exit 1
fi
echo "exposure score (systemd-analyze security --offline=true): $score (max $max)"
grep -E '^✗' <<<"$security" | sed 's/^/  not set: /' || true
if awk -v s="$score" -v m="$max" 'BEGIN { exit !(s > m) }'; then
  echo "FAIL: exposure $score is above $max"
  exit 1
fi
# The drop-in for ports below 1024 keeps the unit valid.
mkdir -p alknet-agent.service.d
cp "$repo/deploy/systemd/alknet-agent.service.d/low-port.conf.example" alknet-agent.service.d/low-port.conf
if ! out=$(systemd-analyze verify alknet-agent.service 2>&1) || [[ -n "$out" ]]; then
  echo "FAIL: systemd-analyze verify with the low-port drop-in:"
  echo "$out"
  exit 1
fi
echo "ok: the low-port drop-in verifies"
