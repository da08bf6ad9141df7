#!/usr/bin/env bash
# Builds alknet-agent and alknet-admin (Release, ./build-release) and runs the agent with the
# embedded default configuration: state in ./var, listening on tcp://127.0.0.1:2222,
# authorized keys in ./var/authorized_keys (seeded from your ~/.ssh/*.pub), admin socket
# ./var/admin.sock. Extra arguments are passed to the agent, e.g.
#   sudo scripts/run-agent.sh --listen tcp://0.0.0.0:2222 --log-level debug
# A second run reuses the build; Ctrl-C (or SIGTERM) stops the agent cleanly (exit 0).
# Warnings are not errors here (ALKNET_WERROR=ON in the environment makes them so, as CI does).
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"

# Without --listen/--config the agent takes 127.0.0.1:2222: say so at once if that is taken.
default_listen=1
for arg in "$@"; do
  case "$arg" in
    --listen|--listen=*|--config|--config=*) default_listen=0 ;;
  esac
done
port_in_use() { (exec 3<>/dev/tcp/127.0.0.1/2222) 2>/dev/null; }
if [[ $default_listen -eq 1 ]] && port_in_use; then
  echo "run-agent: 127.0.0.1:2222 is already in use (another agent?); stop it or pass --listen tcp://127.0.0.1:PORT" >&2
  exit 1
fi

bash scripts/install-deps.sh --build

echo "run-agent: building alknet-agent and alknet-admin (Release) in build-release/"
cmake -S . -B build-release -G Ninja -DCMAKE_BUILD_TYPE=Release -DALKNET_BUILD_TESTS=OFF \
  -DALKNET_BUILD_BENCH=OFF -DALKNET_WERROR="${ALKNET_WERROR:-OFF}" >/dev/null
ninja -C build-release alknet-agent alknet-admin

agent=build-release/agent/alknet-agent
admin=build-release/admin-cli/alknet-admin
for binary in "$agent" "$admin"; do
  if [[ ! -x "$binary" ]]; then
    echo "run-agent: build finished but $binary is missing" >&2
    exit 1
  fi
done

# State directory: host key, authorized_keys. Private to the agent's user.
if [[ ! -d var ]]; then
  mkdir -m 0700 var
fi

# The person who ran the script, whose public keys we seed: through sudo, the sudo user's home;
# otherwise $HOME.
invoking_home=$HOME
if [[ -n "${SUDO_USER:-}" && "$SUDO_USER" != root ]]; then
  invoking_home=$(getent passwd "$SUDO_USER" | cut -d: -f6 || true)
  invoking_home=${invoking_home:-$HOME}
fi

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
if [[ $default_listen -eq 0 ]]; then
  listen_hint="-p PORT HOST  (the address it logs as 'listening')"
fi
echo "run-agent: connect with e.g.  ssh -N -D 1080 $listen_hint"
echo "run-agent: then e.g.  curl --socks5-hostname 127.0.0.1:1080 http://internal/"
echo "run-agent: manage it live with  $repo_root/$admin --socket $repo_root/var/admin.sock keys list"
# A local demo: forwarding to this machine's own loopback services (curl http://localhost/...)
# is allowed here. A deployment keeps the default, which denies loopback (docs/security.md).
echo "run-agent: local demo: forwarding to loopback allowed (--forwarding-allow-loopback true)"
exec "$agent" --forwarding-allow-loopback true "$@"
