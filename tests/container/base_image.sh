# What the container checks share (sourced by check_image.sh and check_deb.sh, which define
# fail(), ok(), $base and $cache): the tool check, podman with this sandbox's flags and limits, and
# the base image, Debian 12 minbase from debootstrap with this host's apt sources, imported as
# $base and cached as a tarball in $cache.

# Exits 77 (skipped) when one of the named tools is missing.
require_tools() {
  local tool
  for tool in "$@"; do
    if ! command -v "$tool" >/dev/null 2>&1; then
      echo "SKIP: $tool is not installed (scripts/install-deps.sh --test installs it)"
      exit 77
    fi
  done
}

# Rootful podman without a Docker engine, cgroup manager or network stack of its own.
pod() {
  podman --runtime runc --cgroup-manager=cgroupfs --events-backend=file --storage-driver vfs "$@"
}
# podman's default rlimits exceed what this sandbox may set: the open-file limit it has, and a
# process limit well above what the agent uses (a fixed pool of threads).
pod_limits=(--ulimit "nofile=$(ulimit -Hn):$(ulimit -Hn)" --ulimit "nproc=4096:4096")

ensure_base_image() {
  if ! pod image exists "$base"; then
    tarball=$cache/bookworm-minbase.tar
    if [[ ! -s "$tarball" ]]; then
      mkdir -p "$cache"
      rootfs=$cache/rootfs.tmp
      rm -rf "$rootfs"
      echo "container: debootstrap --variant=minbase bookworm (cached in $cache)"
      debootstrap --variant=minbase bookworm "$rootfs" >"$cache/debootstrap.log" 2>&1 \
        || { tail -n 20 "$cache/debootstrap.log" >&2; fail "debootstrap failed"; }
      if [[ -f /etc/apt/sources.list.d/debian.sources ]]; then
        cp /etc/apt/sources.list.d/debian.sources "$rootfs/etc/apt/sources.list.d/"
        rm -f "$rootfs/etc/apt/sources.list"
      fi
      rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
      tar -C "$rootfs" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
      rm -rf "$rootfs"
    fi
    pod import "$tarball" "$base" >/dev/null
  fi
}
