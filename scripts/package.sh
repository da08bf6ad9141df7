#!/usr/bin/env bash
# Builds the Debian package: Release build in ./build-package (prefix /usr, ALKNET_PACKAGE=ON),
# then CPack. Prints the path of build-package/alknet_VERSION_ARCH.deb; install it with
# `apt install ./build-package/alknet_*.deb` (README, "Debian package").
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"
"$repo_root/scripts/install-deps.sh" --build >&2
export CCACHE_BASEDIR=$repo_root
cmake -S . -B build-package -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=/usr \
  -DALKNET_PACKAGE=ON -DALKNET_BUILD_TESTS=OFF >&2
ninja -C build-package alknet-agent alknet-admin alknet_shell_docs >&2
(cd build-package && cpack -G DEB >&2)
ls "$repo_root"/build-package/alknet_*.deb
