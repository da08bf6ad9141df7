#!/usr/bin/env bash
# The Debian package as an operator meets it: `apt install ./alknet_*.deb` in a clean Debian 12
# container (the debootstrap base of tests/container/base_image.sh, run by podman), `dpkg -L`
# against the list README.md gives ("Debian package"), the unit and config where they belong,
# then the installed agent started as the package's `alknet` user with /etc/alknet/agent.yaml
# (listen port overridden to a free one), `alknet-admin status` and `keys add` answering through
# the installed admin socket, SIGTERM and exit 0, and `apt purge` leaving no state.
# Usage: check_deb.sh REPO_ROOT WORK_DIR DEB. Exits 77 only when podman/debootstrap are missing.
set -euo pipefail
repo=$(cd "$1" && pwd)
work=$2
deb=$3
cache=${ALKNET_CONTAINER_CACHE:-$HOME/.cache/alknet-container}
base=localhost/alknet-base:bookworm
# shellcheck source=tests/container/base_image.sh
source "$repo/tests/container/base_image.sh"
require_tools podman debootstrap runc
fail() { echo "deb: FAIL: $*" >&2; exit 1; }
ok() { echo "deb: ok: $*"; }
[[ -f "$deb" ]] || fail "no package at $deb (scripts/package.sh builds it)"
rm -rf "$work"
mkdir -p "$work"
# The README's list of what the package installs, between its two marker lines.
sed -n '/^<!-- deb-files -->$/,/^<!-- \/deb-files -->$/p' "$repo/README.md" | grep '^    /' \
  | sed 's/^    //' | sort >"$work/expected"
[[ -s "$work/expected" ]] || fail "README.md has no <!-- deb-files --> list"
port=$(python3 "$repo/tests/support/test_ports.py" pick)
ensure_base_image
ok "base image $base"

cat >"$work/inside.sh" <<'INSIDE'
set -eu
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq /pkg/alknet.deb >/tmp/apt.log 2>&1 || { tail -20 /tmp/apt.log; exit 10; }
dpkg -L alknet | sort >/out/installed
getent passwd alknet >/out/user
stat -c '%U %a' /var/lib/alknet >/out/state_dir
dpkg-query -W -f='${Conffiles}\n' alknet >/out/conffiles
# What systemd's RuntimeDirectory= would make.
install -d -o alknet -g alknet -m 0700 /run/alknet
setpriv --reuid alknet --regid alknet --init-groups -- alknet-agent --config /etc/alknet/agent.yaml --listen "tcp://127.0.0.1:$PORT" \
  --metrics-listen 127.0.0.1:0 2>/out/agent.log &
agent=$!
for i in $(seq 100); do grep -q 'engine: listening' /out/agent.log && break; sleep 0.1; done
alknet-admin status >/out/status 2>&1 || echo "status exit $?" >>/out/status
ssh_key='ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl deb-test'
echo "$ssh_key" | alknet-admin keys add - >/out/keys_add 2>&1 || echo "keys add exit $?" >>/out/keys_add
alknet-admin keys list >/out/keys_list 2>&1 || true
kill -TERM "$agent"
code=0
wait "$agent" || code=$?
echo "$code" >/out/agent_exit
apt-get purge -y -qq alknet >/tmp/purge.log 2>&1 || { tail -20 /tmp/purge.log; exit 11; }
{ [ -e /var/lib/alknet ] && echo present || echo gone; } >/out/state_after_purge
INSIDE
mkdir -p "$work/out"
cp "$deb" "$work/alknet.deb"
start=$(date +%s)
pod run --rm --network host "${pod_limits[@]}" -e "PORT=$port" \
  -v "$work/alknet.deb:/pkg/alknet.deb:ro" -v "$work/out:/out" -v "$work/inside.sh:/inside.sh:ro" \
  "$base" sh /inside.sh || fail "the container run failed (exit $?)"
ok "apt install ./alknet_*.deb in a clean Debian 12 container ($(($(date +%s) - start)) s with apt update)"

# Directories are listed by dpkg -L too: compare files only (what README lists).
grep -v -x -e '/.' -e '/etc' -e '/usr' -e '/usr/bin' -e '/usr/lib' -e '/usr/share' "$work/out/installed" \
  | while read -r path; do [[ "$path" == */ ]] || echo "$path"; done >"$work/installed.all"
comm -13 "$work/expected" "$work/installed.all" | while read -r path; do
  # a directory of a listed file is fine; anything else must be in the README's list
  grep -q "^$path/" "$work/expected" || echo "$path"
done >"$work/unlisted"
missing=$(comm -23 "$work/expected" "$work/installed.all")
[[ -z "$missing" ]] || fail "README lists what dpkg -L does not: $missing"
[[ ! -s "$work/unlisted" ]] || fail "dpkg -L lists what README does not: $(tr '\n' ' ' <"$work/unlisted")"
ok "dpkg -L alknet matches README.md's list ($(wc -l <"$work/expected") files)"
grep -q '^alknet:' "$work/out/user" || fail "no alknet system user"
[[ "$(cat "$work/out/state_dir")" == "alknet 700" ]] || fail "/var/lib/alknet is $(cat "$work/out/state_dir")"
grep -q '/etc/alknet/agent.yaml' "$work/out/conffiles" || fail "/etc/alknet/agent.yaml is not a conffile"
ok "system user alknet, /var/lib/alknet 0700, /etc/alknet/agent.yaml a conffile"
grep -q "engine: listening address=tcp://127.0.0.1:$port" "$work/out/agent.log" \
  || fail "the installed agent did not listen: $(tail -5 "$work/out/agent.log")"
grep -q 'state_dir\|/var/lib/alknet\|listening' "$work/out/agent.log"
grep -q 'unix:/run/alknet/admin.sock' "$work/out/status" || fail "alknet-admin status: $(cat "$work/out/status")"
grep -q 'deb-test' "$work/out/keys_list" || fail "keys add/list: $(cat "$work/out/keys_add" "$work/out/keys_list")"
[[ "$(cat "$work/out/agent_exit")" == 0 ]] || fail "agent exit $(cat "$work/out/agent_exit") on SIGTERM"
ok "the installed agent ran as alknet with /etc/alknet/agent.yaml; alknet-admin status and keys add answered; SIGTERM -> exit 0"
[[ "$(cat "$work/out/state_after_purge")" == gone ]] || fail "apt purge left /var/lib/alknet"
ok "apt purge removed /var/lib/alknet"
