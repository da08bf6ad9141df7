#!/usr/bin/env bash
# The container image as an operator meets it, built and run with podman (no Docker engine here):
# docker/Dockerfile built unchanged except BASE_IMAGE/BUILD_IMAGE (a local debootstrap base;
# --format docker, since the OCI format has no HEALTHCHECK),
# `run` with no arguments as UID 65532, the first key added with alknet-admin inside, stock
# `ssh -N -L` through the container, the TLS listener, a restart that keeps the host key,
# the HEALTHCHECK saying yes and no, and SIGTERM draining to exit 0.
# Then the Helm chart's default pod, rendered, run by podman from this image (two replicas sharing
# the rendered Secret, tests/deploy/check_chart.py with CHECK_CHART_POD_IMAGE).
# Usage: check_image.sh REPO_ROOT WORK_DIR AGENT_BINARY (the host build, for the config check)
# The debootstrap base is cached in ~/.cache/alknet-container (ALKNET_CONTAINER_CACHE).
# Exits 77 (skipped) only when podman/buildah/debootstrap cannot be installed.
set -euo pipefail

repo=$(cd "$1" && pwd)
work=$2
agent=$3
rm -rf "$work"
mkdir -p "$work"
work=$(cd "$work" && pwd)
cache=${ALKNET_CONTAINER_CACHE:-$HOME/.cache/alknet-container}
# shellcheck source=tests/container/base_image.sh
source "$repo/tests/container/base_image.sh"
ports_py=$repo/tests/support/test_ports.py
image=localhost/alknet/agent:test
base=localhost/alknet-base:bookworm
name=alknet-check-$$

require_tools podman buildah debootstrap runc
limits=("${pod_limits[@]}")

pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  pod rm -f -t 0 "$name" >/dev/null 2>&1 || true
  wait 2>/dev/null || true
}
trap cleanup EXIT

fail() {
  echo "container: FAIL: $*" >&2
  save_log
  tail -n 40 "$work/container.log" >&2
  exit 1
}
ok() { echo "container: ok: $*"; }

# The container's log so far, in $work/container.log (a file, not a pipe: `grep -q` closing a
# pipe early would fail the pipeline under pipefail).
save_log() { pod logs "$name" >"$work/container.log" 2>&1 || true; }
log_has() { save_log; grep -qF -- "$1" "$work/container.log"; }

wait_for_log() {  # seconds, needle
  local i
  for ((i = 0; i < $1 * 10; i++)); do
    log_has "$2" && return 0
    sleep 0.1
  done
  return 1
}

# ---- the base image: Debian 12 minbase from debootstrap (tests/container/base_image.sh) ----
ensure_base_image
ok "base image $base"

# ---- build: the Dockerfile unchanged, only the base images pointed at the local one ----
started=$(date +%s)
pod build --format docker --isolation chroot --build-arg "BASE_IMAGE=$base" --build-arg "BUILD_IMAGE=$base" \
  -f "$repo/docker/Dockerfile" -t "$image" "$repo" >"$work/build.log" 2>&1 \
  || { tail -n 60 "$work/build.log" >&2; fail "the image does not build"; }
size=$(pod image inspect "$image" --format '{{.Size}}')
ok "image built in $(($(date +%s) - started)) s, $((size / 1024 / 1024)) MiB"
if pod run --rm "${limits[@]}" --entrypoint /bin/sh "$image" \
    -c 'for c in cc c++ gcc g++ clang; do command -v "$c" && exit 0; done; exit 1' >/dev/null 2>&1; then
  fail "the runtime image contains a compiler"
fi

# ---- run with no arguments (host network: the image's own ports 2222, 8443, 9464) ----
for port in 2222 8443 9464; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    fail "127.0.0.1:$port is taken; the image's default ports must be free for this check"
  fi
done
state=$work/state
mkdir -p "$state"
chown 65532:65532 "$state"
run_container() {
  # Host network: the test's web page is on the host's loopback, which the forwarding policy
  # denies by default (ADR 0014); the environment lifts that without changing the command line.
  pod run -d "${limits[@]}" --name "$name" --network host -e ALKNET_FORWARDING_ALLOW_LOOPBACK=true \
    -v "$state:/var/lib/alknet" "$image" >/dev/null
}
run_container || fail "podman run failed"
wait_for_log 60 "engine: started" || fail "the agent did not start"
tini_pid=$(pod inspect "$name" --format '{{.State.Pid}}')
agent_pid=$(pgrep -P "$tini_pid" | head -n 1)
[[ -n "$agent_pid" ]] || fail "no agent process under tini"
uid=$(awk '/^Uid:/{print $2}' "/proc/$agent_pid/status")
[[ "$uid" == 65532 ]] || fail "the agent runs as uid $uid, want 65532"
[[ "$(tr '\0' ' ' <"/proc/$tini_pid/cmdline")" == "/usr/bin/tini -- /usr/local/bin/alknet-agent serve " ]] \
  || fail "PID 1 is not tini running the agent: $(tr '\0' ' ' <"/proc/$tini_pid/cmdline")"
ok "runs with no arguments as uid 65532 under tini"
key_file=$state/ssh_host_ed25519_key
[[ -f "$key_file" && "$(stat -c %u "$key_file")" == 65532 && "$(stat -c %a "$key_file")" == 600 ]] \
  || fail "host key not generated 0600 by uid 65532 in the volume"
log_has "alknet-admin --socket /var/lib/alknet/admin.sock keys add" \
  || fail "no log line telling the operator how to add the first key"
log_has "tls: generated self-signed certificate" || fail "no TLS certificate generated"
ok "host key, TLS certificate and admin socket in the volume; the log says how to add the first key"

# ---- the first key, from inside the container; stock ssh -N -L through it ----
ssh-keygen -q -t ed25519 -N "" -f "$work/id_ed25519"
pod exec -i "$name" alknet-admin keys add - <"$work/id_ed25519.pub" >"$work/keys_add.out" 2>&1 \
  || fail "alknet-admin keys add - inside the container: $(cat "$work/keys_add.out")"
fingerprint_before=$(ssh-keyscan -p 2222 127.0.0.1 2>/dev/null | ssh-keygen -l -E sha256 -f - | awk '{print $2}') || true
[[ "$fingerprint_before" == SHA256:* ]] || fail "ssh-keyscan found no host key on 127.0.0.1:2222"
mkdir -p "$work/www"
head -c $((1024 * 1024 + 3)) /dev/urandom >"$work/www/blob.bin"
python3 -u -m http.server 0 --bind 127.0.0.1 --directory "$work/www" >"$work/http.log" 2>&1 &
pids+=("$!")
for _ in $(seq 100); do grep -q "Serving HTTP" "$work/http.log" && break; sleep 0.1; done
http_port=$(sed -n 's/.* port \([0-9]*\) .*/\1/p' "$work/http.log" | head -n 1)
[[ -n "$http_port" ]] || fail "python3 -m http.server did not start"
ssh_options=(-F /dev/null -i "$work/id_ed25519" -o IdentitiesOnly=yes -o BatchMode=yes
  -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ExitOnForwardFailure=yes)
lport=$(python3 "$ports_py" pick)
ssh "${ssh_options[@]}" -N -L "$lport:127.0.0.1:$http_port" -p 2222 127.0.0.1 >"$work/ssh_l.log" 2>&1 &
ssh_l=$!
pids+=("$ssh_l")
for _ in $(seq 100); do python3 "$ports_py" listens "$ssh_l" "$lport" && break; sleep 0.1; done
curl -sS --max-time 30 "http://127.0.0.1:$lport/blob.bin" -o "$work/via_l.bin" || fail "curl through ssh -L failed"
cmp "$work/www/blob.bin" "$work/via_l.bin" || fail "the file through the container differs"
ok "alknet-admin keys add - inside; stock ssh -N -L through the container: byte-exact"
# SSH inside TLS on 8443, as the README's ProxyCommand does it.
printf 'GET /blob.bin HTTP/1.0\r\n\r\n' | ssh "${ssh_options[@]}" \
  -o "ProxyCommand=openssl s_client -quiet -connect 127.0.0.1:8443 -servername example.com" \
  -W "127.0.0.1:$http_port" -p 8443 127.0.0.1 >"$work/via_tls.http" 2>"$work/ssh_tls.log" \
  || fail "ssh through TLS on 8443 failed: $(tail -n 5 "$work/ssh_tls.log")"
tail -c "$(stat -c %s "$work/www/blob.bin")" "$work/via_tls.http" | cmp - "$work/www/blob.bin" \
  || fail "the file through TLS differs"
ok "ssh -W through tls://0.0.0.0:8443 (openssl s_client as ProxyCommand): byte-exact"

# ---- HEALTHCHECK: healthy, then unhealthy while the agent is frozen, then healthy again ----
pod healthcheck run "$name" >/dev/null 2>&1 || fail "the healthcheck fails on a serving agent"
kill -STOP "$agent_pid"
if pod healthcheck run "$name" >/dev/null 2>&1; then
  kill -CONT "$agent_pid"
  fail "the healthcheck passes while the agent is frozen"
fi
kill -CONT "$agent_pid"
pod healthcheck run "$name" >/dev/null 2>&1 || fail "the healthcheck did not recover"
ok "HEALTHCHECK (alknet-agent health): 0 serving, non-zero frozen, 0 again"

# ---- SIGTERM drains and exits 0; a restart keeps the host key ----
kill "$ssh_l" 2>/dev/null || true
pod stop -t 30 "$name" >/dev/null || fail "podman stop failed"
code=$(pod inspect "$name" --format '{{.State.ExitCode}}')
[[ "$code" == 0 ]] || fail "exit code $code after SIGTERM, want 0"
log_has "engine: stopped" || fail "no drain ('engine: stopped') in the log"
ok "SIGTERM (podman stop): drained, exit 0"
pod start "$name" >/dev/null || fail "podman start failed"
for _ in $(seq 100); do
  # (set -e must not end the script while the agent is still starting and refuses)
  fingerprint_after=$(ssh-keyscan -p 2222 127.0.0.1 2>/dev/null | ssh-keygen -l -E sha256 -f - 2>/dev/null | awk '{print $2}') || true
  [[ -n "$fingerprint_after" ]] && break
  sleep 0.2
done
[[ "$fingerprint_after" == "$fingerprint_before" ]] \
  || fail "host key changed across a restart: $fingerprint_before -> $fingerprint_after"
printf 'GET /blob.bin HTTP/1.0\r\n\r\n' | ssh "${ssh_options[@]}" -W "127.0.0.1:$http_port" -p 2222 127.0.0.1 \
  >"$work/after_restart.http" 2>/dev/null || fail "the added key does not work after a restart"
ok "restart: same host key ($fingerprint_after), the added key still works"
pod stop -t 30 "$name" >/dev/null
pod rm "$name" >/dev/null
# The healthcheck command itself says no when nothing serves.
if pod run --rm "${limits[@]}" --network host --entrypoint /usr/local/bin/alknet-agent "$image" health >/dev/null 2>&1; then
  fail "alknet-agent health passes with no agent running"
fi
ok "alknet-agent health fails with the agent stopped"

# ---- the chart's rendered pod, run by podman ----
CHECK_CHART_POD_IMAGE=$image CHECK_CHART_PODMAN="podman --runtime runc --cgroup-manager=cgroupfs --events-backend=file --storage-driver vfs" \
  python3 "$repo/tests/deploy/check_chart.py" "$repo" "$agent" || fail "the chart's pod does not run from the image"
ok "the Helm chart's default pod runs from the image: /readyz 200 on two replicas, one host key"
# vfs storage copies every layer whole: drop this run's image and the layers only it used.
pod rmi "$image" >/dev/null 2>&1 || true
pod image prune -f >/dev/null 2>&1 || true
echo "container: image checks passed (image $((size / 1024 / 1024)) MiB)"
