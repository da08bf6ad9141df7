# Sourced by completion_test.sh and manpage_test.sh: `cmake --install "$build"` into a temporary
# prefix removed on exit; sets work (the temp dir) and share (the prefix's share/). Needs $build.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/prefix" >"$work/install.log" 2>&1 ||
  { cat "$work/install.log"; echo "FAIL: cmake --install"; exit 1; }
share=$work/prefix/share
