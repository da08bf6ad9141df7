#!/usr/bin/env bash
# The README as a newcomer types it: a clean copy of the tree, a fresh HOME holding one new key,
# `scripts/run-agent.sh` (Release build, default config, 127.0.0.1:2222), then the stock clients.
# Usage: readme_commands.sh REPO_ROOT WORK_DIR   (scripts/test.sh stage "newcomer")
#
# README commands run here, each checked by its exit code and its bytes:
#   scripts/run-agent.sh                      builds, seeds ~/.ssh/*.pub, serves 127.0.0.1:2222
#   ssh -N -D 1080 -p 2222 host  +  curl --socks5-hostname 127.0.0.1:1080 http://internal/
#   ssh -N -L 8080:internal:80 -p 2222 host  +  curl http://127.0.0.1:8080/
#   ssh -W internal:22 -p 2222 host
#   ssh -o ProxyCommand='ssh -W %h:%p -p 2222 host' internal
#   alknet-admin --socket ./var/admin.sock keys add ~/.ssh/id_ed25519.pub --comment laptop
#   alknet-admin --socket ./var/admin.sock keys list
#   alknet-admin --socket ./var/admin.sock policy set max_sessions=500 connect_timeout=5s
#   alknet-admin --socket ./var/admin.sock sessions list
#   alknet-admin --socket ./var/admin.sock --json status
#   alknet-admin --socket ./var/admin.sock keys rm SHA256:... --kill
#   Ctrl-C stops the agent with exit 0; a second run reuses the build; a run while the port is
#   taken says so in one line and exits non-zero; SIGTERM stops it with exit 0.
# README commands tested elsewhere (they need a second agent, an sshd, a CA or nginx):
#   alknet-admin forwards add|list|rm           tests/interop/admin_forwards_test.cc
#   alknet-admin status --all, sessions list --all, sessions kill ID --replica R
#                                               tests/interop/fleet_test.cc (etcd)
#   alknet-agent connect ... (client role)      tests/interop/client_test.cc, tls_client_test.cc
#   ssh -o ProxyCommand='alknet-agent proxy tls://%h:%p ...'
#                                               tests/interop/tls_client_test.cc
#   ProxyCommand='openssl s_client ...'         tests/interop/tls_test.cc
#   ssh-keygen -s / -k (certificates, KRL)      tests/interop/certificate_test.cc
#   alknet-admin --via ssh://...                tests/interop/admin_test.cc
#   cmake --install (completion, man pages)     tests/interop/completion_test.sh, manpage_test.sh
# "host" and "internal" are 127.0.0.1 and a local web server; ssh gets -i and a known_hosts file
# in the fresh HOME (ssh reads ~ from the passwd entry, not $HOME), nothing else.
set -euo pipefail

repo=$(cd "$1" && pwd)
work=$2
rm -rf "$work"
mkdir -p "$work"
work=$(cd "$work" && pwd)
ports_py=$repo/tests/support/test_ports.py

pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

fail() {
  echo "newcomer: FAIL: $*" >&2
  for log in "$work"/*.log; do
    [[ -f "$log" ]] || continue
    echo "---- ${log##*/} (last 30 lines)" >&2
    tail -n 30 "$log" >&2
  done
  exit 1
}
ok() { echo "newcomer: ok: $*"; }

# Waits (up to $2 s) until file $1 contains $3.
wait_for_log() {
  local file=$1 seconds=$2 needle=$3 i
  for ((i = 0; i < seconds * 10; i++)); do
    grep -qF -- "$needle" "$file" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# Waits until process $1 itself listens on 127.0.0.1:$2 (not some other program on that port).
wait_for_listener() {
  local pid=$1 port=$2 i
  for ((i = 0; i < 200; i++)); do
    kill -0 "$pid" 2>/dev/null || return 1
    python3 "$ports_py" listens "$pid" "$port" && return 0
    sleep 0.1
  done
  return 1
}

# ---- a clean copy of the tree (tracked and new files, nothing ignored) and a fresh HOME ----
copy=$work/alknet
mkdir -p "$copy"
git -C "$repo" ls-files -z --cached --others --exclude-standard \
  | (cd "$repo" && tar --null --ignore-failed-read -T - -cf -) | tar -xf - -C "$copy"
home=$work/home
mkdir -p -m 0700 "$home/.ssh"
ssh-keygen -q -t ed25519 -N "" -C newcomer -f "$home/.ssh/id_ed25519"
as_newcomer=(env -u SUDO_USER -u ALKNET_WERROR "HOME=$home")

ssh_options=(-F /dev/null -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=accept-new
  -o "UserKnownHostsFile=$home/.ssh/known_hosts" -o ExitOnForwardFailure=yes -o ConnectTimeout=10)
ssh_base=(ssh "${ssh_options[@]}" -i "$home/.ssh/id_ed25519")

# ---- the run command ----
(cd "$work" && exec "${as_newcomer[@]}" bash "$copy/scripts/run-agent.sh") >"$work/run1.log" 2>&1 &
agent=$!
pids+=("$agent")
# A cold Release build on 2 cores takes minutes; ccache makes later ones quick.
wait_for_log "$work/run1.log" 1500 "engine: listening address=tcp://127.0.0.1:2222" \
  || fail "run-agent.sh did not start the agent on 127.0.0.1:2222"
grep -qF "run-agent: authorized $home/.ssh/id_ed25519.pub" "$work/run1.log" \
  || fail "run-agent.sh did not seed the newcomer's key"
ok "scripts/run-agent.sh built the Release agent and listens on 127.0.0.1:2222"

# "internal": a web server the agent can reach, serving a random file.
mkdir -p "$work/www"
head -c $((3 * 1024 * 1024 + 17)) /dev/urandom >"$work/www/blob.bin"
python3 -u -m http.server 0 --bind 127.0.0.1 --directory "$work/www" >"$work/http.log" 2>&1 &
pids+=("$!")
wait_for_log "$work/http.log" 10 "Serving HTTP" || fail "python3 -m http.server did not start"
http_port=$(sed -n 's/.* port \([0-9]*\) .*/\1/p' "$work/http.log" | head -n 1)

# ssh -N -D + curl --socks5-hostname: "localhost" is resolved by the agent.
socks=$(python3 "$ports_py" pick)
"${ssh_base[@]}" -N -D "$socks" -p 2222 127.0.0.1 >"$work/ssh_d.log" 2>&1 &
ssh_d=$!
pids+=("$ssh_d")
wait_for_listener "$ssh_d" "$socks" || fail "ssh -N -D did not listen on $socks"
curl -sS --max-time 60 --socks5-hostname "127.0.0.1:$socks" "http://localhost:$http_port/blob.bin" \
  -o "$work/via_socks.bin" || fail "curl --socks5-hostname through ssh -D failed"
cmp "$work/www/blob.bin" "$work/via_socks.bin" || fail "the file through ssh -D differs"
ok "ssh -N -D + curl --socks5-hostname: $(stat -c %s "$work/via_socks.bin") bytes, byte-exact"

# ssh -N -L + curl.
lport=$(python3 "$ports_py" pick)
"${ssh_base[@]}" -N -L "$lport:localhost:$http_port" -p 2222 127.0.0.1 >"$work/ssh_l.log" 2>&1 &
ssh_l=$!
pids+=("$ssh_l")
wait_for_listener "$ssh_l" "$lport" || fail "ssh -N -L did not listen on $lport"
curl -sS --max-time 60 "http://127.0.0.1:$lport/blob.bin" -o "$work/via_l.bin" \
  || fail "curl through ssh -L failed"
cmp "$work/www/blob.bin" "$work/via_l.bin" || fail "the file through ssh -L differs"
ok "ssh -N -L + curl: byte-exact"

# ssh -W: stdin/stdout straight to the web server.
request=$'GET /blob.bin HTTP/1.0\r\nHost: localhost\r\n\r\n'
printf '%s' "$request" | "${ssh_base[@]}" -W "localhost:$http_port" -p 2222 127.0.0.1 \
  >"$work/via_w.http" 2>"$work/ssh_w.log" || fail "ssh -W failed"
tail -c "$(stat -c %s "$work/www/blob.bin")" "$work/via_w.http" | cmp - "$work/www/blob.bin" \
  || fail "the file through ssh -W differs"
ok "ssh -W: byte-exact"

# ssh -o ProxyCommand='ssh -W %h:%p -p 2222 host' internal: here "internal" is the agent itself
# (localhost:2222 as the agent sees it), and the inner session runs -W to the web server.
proxy_command="${ssh_base[*]} -W %h:%p -p 2222 127.0.0.1"
printf '%s' "$request" | "${ssh_base[@]}" -o "ProxyCommand=$proxy_command" \
  -W "localhost:$http_port" -p 2222 localhost >"$work/via_proxy.http" 2>"$work/ssh_proxy.log" \
  || fail "ssh with ProxyCommand='ssh -W %h:%p ...' failed"
tail -c "$(stat -c %s "$work/www/blob.bin")" "$work/via_proxy.http" | cmp - "$work/www/blob.bin" \
  || fail "the file through the ProxyCommand hop differs"
ok "ssh -o ProxyCommand='ssh -W %h:%p -p 2222 host': byte-exact through two hops"

# ---- alknet-admin, as the README shows it (from the copy's root, where ./var is) ----
admin() { (cd "$copy" && "${as_newcomer[@]}" build-release/admin-cli/alknet-admin --socket ./var/admin.sock "$@"); }
ssh-keygen -q -t ed25519 -N "" -C laptop -f "$home/.ssh/id_laptop"
fingerprint=$(ssh-keygen -l -E sha256 -f "$home/.ssh/id_laptop.pub" | awk '{print $2}')
laptop_ssh=(ssh "${ssh_options[@]}" -i "$home/.ssh/id_laptop")
if "${laptop_ssh[@]}" -W "localhost:$http_port" -p 2222 127.0.0.1 </dev/null >/dev/null 2>&1; then
  fail "a key not yet added could log in"
fi
admin keys add "$home/.ssh/id_laptop.pub" --comment laptop >"$work/admin_add.out" 2>&1 \
  || fail "alknet-admin keys add failed: $(cat "$work/admin_add.out")"
grep -qF "$fingerprint" "$work/admin_add.out" || fail "keys add did not print the fingerprint"
"${laptop_ssh[@]}" -N -p 2222 127.0.0.1 >"$work/ssh_laptop.log" 2>&1 &
ssh_laptop=$!
pids+=("$ssh_laptop")
admin keys list >"$work/admin_list.out" 2>&1 || fail "alknet-admin keys list failed"
awk -v fp="$fingerprint" 'index($0, fp) && index($0, "laptop") {found = 1} END {exit !found}' \
  "$work/admin_list.out" \
  || fail "keys list lacks the added key: $(cat "$work/admin_list.out")"
admin policy set max_sessions=500 connect_timeout=5s >"$work/admin_policy.out" 2>&1 \
  || fail "alknet-admin policy set failed: $(cat "$work/admin_policy.out")"
for _ in $(seq 100); do
  admin sessions list >"$work/admin_sessions.out" 2>&1 || fail "alknet-admin sessions list failed"
  grep -qF "$fingerprint" "$work/admin_sessions.out" && break
  sleep 0.1
done
grep -qF "$fingerprint" "$work/admin_sessions.out" \
  || fail "sessions list does not show the laptop's session: $(cat "$work/admin_sessions.out")"
admin --json status >"$work/admin_status.json" 2>&1 || fail "alknet-admin --json status failed"
python3 -c 'import json, sys; json.load(open(sys.argv[1]))' "$work/admin_status.json" \
  || fail "--json status is not JSON: $(cat "$work/admin_status.json")"
admin keys rm "$fingerprint" --kill >"$work/admin_rm.out" 2>&1 \
  || fail "alknet-admin keys rm --kill failed: $(cat "$work/admin_rm.out")"
for _ in $(seq 100); do kill -0 "$ssh_laptop" 2>/dev/null || break; sleep 0.1; done
kill -0 "$ssh_laptop" 2>/dev/null && fail "keys rm --kill left the laptop's session up"
ok "alknet-admin keys add / keys list / policy set / sessions list / --json status / keys rm --kill"

# Sends signal $2 to the agent (pid $1) and checks that it exits 0; $3 names the signal.
stops_cleanly() {
  local code=0
  kill "-$2" "$1"
  wait "$1" || code=$?
  [[ $code -eq 0 ]] || fail "the agent exited $code after $3, want 0"
  ok "$3: exit 0"
}

# ---- Ctrl-C stops it cleanly ----
stops_cleanly "$agent" INT "Ctrl-C (SIGINT)"

# ---- a second run reuses the build; a third one while it runs finds the port taken ----
(cd "$work" && exec "${as_newcomer[@]}" bash "$copy/scripts/run-agent.sh") >"$work/run2.log" 2>&1 &
agent=$!
pids+=("$agent")
wait_for_log "$work/run2.log" 120 "engine: listening address=tcp://127.0.0.1:2222" \
  || fail "the second run-agent.sh did not start"
grep -qF "ninja: no work to do" "$work/run2.log" || fail "the second run rebuilt instead of reusing the build"
code=0
(cd "$work" && "${as_newcomer[@]}" bash "$copy/scripts/run-agent.sh") >"$work/run3.log" 2>&1 || code=$?
[[ $code -ne 0 ]] || fail "run-agent.sh with 127.0.0.1:2222 taken exited 0"
[[ $(wc -l <"$work/run3.log") -eq 1 ]] && grep -qF "127.0.0.1:2222 is already in use" "$work/run3.log" \
  || fail "run-agent.sh with the port taken should say so in one line, said: $(cat "$work/run3.log")"
ok "second run reuses the build; a run with the port taken says so in one line (exit $code)"
stops_cleanly "$agent" TERM SIGTERM
echo "newcomer: every README command above passed"
