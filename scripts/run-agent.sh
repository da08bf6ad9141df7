#!/usr/bin/env bash
# Builds alknet-agent (Release, ./build-release) and runs it with the embedded default
# configuration: state in ./var, listening on tcp://127.0.0.1:2222, authorized keys in
# ./var/authorized_keys. Extra arguments are passed to the agent, e.g.
#   sudo scripts/run-agent.sh --listen tcp://0.0.0.0:2222 --log-level debug
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"

bash scripts/install-deps.sh --build

echo "run-agent: building alknet-agent (Release) in build-release/"
cmake -S . -B build-release -G Ninja \
  -DCMAKE_BUILD_TYPE=Release -DALKNET_BUILD_TESTS=OFF >/dev/null
ninja -C build-release alknet-agent

agent=build-release/agent/alknet-agent
if [[ ! -x "$agent" ]]; then
  echo "run-agent: build finished but $agent is missing" >&2
  exit 1
fi

# State directory: host key, authorized_keys. Private to the agent's user.
if [[ ! -d var ]]; then
  mkdir -m 0700 var
fi

# The person who ran the script (through sudo or not), whose public keys we seed.
invoking_user=${SUDO_USER:-${USER:-$(id -un)}}
invoking_home=$(getent passwd "$invoking_user" | cut -d: -f6 || true)
invoking_home=${invoking_home:-$HOME}

keys_file=var/authorized_keys
if [[ ! -e "$keys_file" ]]; then
  seeded=0
  ( umask 077 && : >"$keys_file" )
  shopt -s nullglob
  for pub in "$invoking_home"/.ssh/*.pub; do
    [[ "$pub" == *-cert.pub ]] && continue
    cat "$pub" >>"$keys_file"
    echo "run-agent: authorized $pub"
    seeded=$((seeded + 1))
  done
  shopt -u nullglob
  chmod 600 "$keys_file"
  if [[ $seeded -eq 0 ]]; then
    echo "run-agent: no public key in $invoking_home/.ssh; $repo_root/$keys_file is empty, so nobody can log in yet."
    echo "run-agent: add one (the agent reloads on SIGHUP):"
    if [[ -n "${SUDO_USER:-}" ]]; then
      echo "  ssh-keygen -t ed25519 && cat ~/.ssh/id_ed25519.pub | sudo tee -a $repo_root/$keys_file && sudo kill -HUP $$"
    else
      echo "  ssh-keygen -t ed25519 && cat ~/.ssh/id_ed25519.pub >> $repo_root/$keys_file && kill -HUP $$"
    fi
  fi
fi

echo "run-agent: starting alknet-agent (pid $$; 'kill -HUP $$' reloads $keys_file)"
listen_hint="-p 2222 127.0.0.1"
for arg in "$@"; do
  case "$arg" in
    --listen|--listen=*|--config|--config=*) listen_hint="-p PORT HOST  (the address it logs as 'listening')" ;;
  esac
done
echo "run-agent: connect with e.g.  ssh -N -D 1080 $listen_hint"
echo "run-agent: then e.g.  curl --socks5-hostname 127.0.0.1:1080 http://internal/"
exec "$agent" "$@"
