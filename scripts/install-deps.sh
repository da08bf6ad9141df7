#!/usr/bin/env bash
# Installs the Debian 12 packages alknet needs.
#   --build  compiler, CMake/Ninja and the libraries the agent and tests link against
#   --test   everything in --build plus the peers the test suite runs against
#            (OpenSSH client/server, curl, socat, ncat, python3 with grpcio for the admin
#            API test, openssl for its test certificates, nginx as the reference for the
#            TLS stealth answers and handshake, sslscan to scan both, Prometheus/promtool
#            for the metrics and deploy/ checks, podman/buildah/runc/debootstrap to build and
#            run the container image), fail2ban (its fail2ban-regex checks the filter in
#            deploy/fail2ban/), systemd (systemd-analyze checks deploy/systemd/) and clang with its
#            runtime libraries for the ASan/UBSan and libFuzzer builds; python3-yaml and
#            ajv-cli (npm, with Debian's npm if there is none) for the Helm chart check;
#            zsh, groff and man-db for the completion and man page checks;
#            node/npm, python3-grpc-tools, proxychains4, redsocks, iptables and iproute2 for
#            the examples/ and docs/recipes.md tests (tests/examples); etcd-server and
#            etcd-client for the fleet tests (a real etcd cluster).
# Idempotent: when every package is already installed it only runs dpkg-query (and `command -v`
# for the npm tools).
set -euo pipefail

BUILD_PACKAGES=(
  build-essential cmake ninja-build pkg-config ccache
  libssh-dev libssl-dev libabsl-dev libyaml-cpp-dev libgtest-dev libgmock-dev
  prometheus-cpp-dev
  libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc
  libbenchmark-dev  # bench/fwdpolicy (issue 15); the target is skipped without it
  golang-etcd-server-dev  # etcd's .proto files: the etcd state backend's stubs (ADR 0017)
  libngtcp2-dev libngtcp2-crypto-gnutls-dev libgnutls28-dev  # quic:// (ADR 0018)
)
TEST_PACKAGES=(
  openssh-client openssh-server curl socat python3 ncat
  microsocks tinyproxy
  prometheus
  clang libclang-rt-14-dev
  python3-grpcio python3-protobuf openssl
  nginx sslscan
  podman buildah runc debootstrap
  python3-yaml
  zsh groff-base man-db
  python3-grpc-tools proxychains4 redsocks iptables iproute2
  fail2ban
  systemd
  etcd-server etcd-client
  ngtcp2-client  # gtlsclient: a QUIC peer nobody here wrote (tests/interop/quic_test.cc)
  nftables  # packet loss in a test's own network namespace (quic_test.cc, issue 14)
)
# npm packages of --test, installed globally only when their command is missing.
NPM_TEST_PACKAGES=(ajv-cli ajv-formats)
NPM_TEST_COMMAND=ajv

usage() {
  echo "usage: $0 --build | --test" >&2
  echo "  --build  install build dependencies" >&2
  echo "  --test   install build dependencies and test peers (OpenSSH, curl, socat, ncat, prometheus, clang, ...)" >&2
}

mode=""
for arg in "$@"; do
  case "$arg" in
    --build) mode=${mode:-"build"} ;;
    --test) mode="test" ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install-deps: unknown argument: $arg" >&2; usage; exit 2 ;;
  esac
done
if [[ -z "$mode" ]]; then
  usage
  exit 2
fi

packages=("${BUILD_PACKAGES[@]}")
if [[ "$mode" == test ]]; then
  packages+=("${TEST_PACKAGES[@]}")
fi

if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
  echo "install-deps: dpkg-query/apt-get not found; this script supports Debian 12 (bookworm) only" >&2
  exit 1
fi

missing=()
for pkg in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
  if [[ "$status" != installed ]]; then
    missing+=("$pkg")
  fi
done

if [[ $(id -u) -eq 0 ]]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1; then
  as_root=(sudo)
else
  as_root=(false)
fi

apt_install() {
  if [[ "${as_root[0]:-}" == false ]]; then
    echo "install-deps: missing packages: $*" >&2
    echo "install-deps: installing them needs root; run this script as root or install sudo" >&2
    exit 1
  fi
  echo "install-deps: installing $*"
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends "$@"
  echo "install-deps: installed $*"
}

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-deps: all ${#packages[@]} $mode packages already installed"
else
  apt_install "${missing[@]}"
fi

# Any working node/npm will do (e.g. NodeSource's nodejs ships npm); Debian's otherwise. The
# examples/node test needs it whether or not ajv is there.
if [[ "$mode" == test ]] && ! command -v npm >/dev/null 2>&1; then
  apt_install npm
fi
if [[ "$mode" == test ]] && ! command -v "$NPM_TEST_COMMAND" >/dev/null 2>&1; then
  echo "install-deps: npm install -g ${NPM_TEST_PACKAGES[*]}"
  npm_prefix=("${as_root[@]}")
  [[ "${as_root[0]:-}" == false ]] && npm_prefix=()
  "${npm_prefix[@]}" npm install -g --no-fund --no-audit "${NPM_TEST_PACKAGES[@]}"
fi
