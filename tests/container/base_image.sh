# The container checks' base image: Debian 12 minbase from debootstrap, with this host's apt
# sources, imported as $base and cached as a tarball in $cache. Sourced by check_image.sh and
# check_deb.sh, which define pod() (podman with this sandbox's flags), fail() and the variables.
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
