# Shared setup for the bench/ entry scripts: installs what the benchmarks need (idempotent),
# builds the binaries, raises the fd limit. Sourced, not executed.

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REPO_DIR="$(cd "${BENCH_DIR}/.." && pwd)"
BUILD_DIR="${BUILD_DIR:-${REPO_DIR}/build}"
export PYTHONDONTWRITEBYTECODE=1  # keep bench/lib free of __pycache__

bench_log() { printf '[bench] %s\n' "$*" >&2; }

# Runs a command as root: directly when we are root, else through sudo.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    bench_log "need root (or sudo) for: $*"
    return 1
  fi
}

# Installs the Debian packages whose commands are missing; does nothing when all are present.
bench_ensure_packages() {
  local -a missing=()
  [ -x /usr/sbin/sshd ] || missing+=(openssh-server)
  command -v ssh >/dev/null 2>&1 || missing+=(openssh-client)
  command -v ssh-keygen >/dev/null 2>&1 || missing+=(openssh-client)
  command -v python3 >/dev/null 2>&1 || missing+=(python3)
  if [ "${#missing[@]}" -gt 0 ]; then
    bench_log "installing: ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${missing[@]}" >/dev/null
  fi
  # sshd refuses to start without its privilege-separation directory.
  if [ ! -d /run/sshd ]; then
    as_root mkdir -p /run/sshd
    as_root chmod 0755 /run/sshd
  fi
}

# Builds the given ninja targets unless SKIP_BUILD=1 (then they must already exist).
bench_build() {
  if [ "${SKIP_BUILD:-0}" = 1 ]; then return 0; fi
  local log
  log="$(mktemp)"
  if [ ! -f "${BUILD_DIR}/build.ninja" ]; then
    bench_log "configuring ${BUILD_DIR}"
    if ! cmake -S "${REPO_DIR}" -B "${BUILD_DIR}" -G Ninja >"${log}" 2>&1; then
      tail -n 30 "${log}" >&2; rm -f "${log}"
      bench_log "cmake failed (SKIP_BUILD=1 with AGENT_BIN=... runs an existing binary)"
      return 1
    fi
  fi
  bench_log "building: $*"
  if ! ninja -C "${BUILD_DIR}" "$@" >"${log}" 2>&1; then
    tail -n 30 "${log}" >&2; rm -f "${log}"
    bench_log "build failed (SKIP_BUILD=1 with AGENT_BIN=... runs an existing binary)"
    return 1
  fi
  rm -f "${log}"
}

# Raises the soft open-files limit as far as allowed (wanted: 65536).
bench_raise_fd_limit() {
  local want="${1:-65536}"
  if ! ulimit -n "${want}" 2>/dev/null; then
    local hard
    hard="$(ulimit -Hn)"
    if [ "${hard}" != unlimited ] && [ "${hard}" -lt "${want}" ]; then
      bench_log "cannot raise open-files limit to ${want}; using the hard limit ${hard}"
      ulimit -n "${hard}"
    else
      ulimit -n "${want}"
    fi
  fi
}

bench_python() {
  if command -v python3 >/dev/null 2>&1; then echo python3; else echo /usr/bin/python3; fi
}

# With BENCH_NICE (e.g. -15) the benchmark runs in a session of its own whose scheduler autogroup
# gets that nice value, so background compiles on a shared machine (each in their own autogroup,
# where a plain `nice` would not reach them) distort it less. Servers and clients are treated
# alike. Call first thing with "$@"; it returns in the process that should run the benchmark.
bench_enter_priority() {
  [ -n "${BENCH_NICE:-}" ] || return 0
  if [ -z "${BENCH_IN_SESSION:-}" ]; then
    export BENCH_IN_SESSION=1
    setsid "$0" "$@" &
    local child=$! rc=0
    trap 'kill -TERM "${child}" 2>/dev/null' INT TERM HUP
    while kill -0 "${child}" 2>/dev/null; do
      wait "${child}" && rc=0 || rc=$?
    done
    exit "${rc}"
  fi
  if ! echo "${BENCH_NICE}" >/proc/self/autogroup 2>/dev/null; then
    bench_log "cannot set the autogroup nice value; using plain nice"
  fi
}

bench_nice() {
  if [ -n "${BENCH_NICE:-}" ]; then echo "nice -n ${BENCH_NICE}"; fi
}
