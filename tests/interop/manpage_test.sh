#!/bin/bash
# alknet-agent(1) and alknet-admin(1) are written from the command tables: they render without a
# groff warning, the installed files are what the binaries print, and every flag --help lists
# (program, group or command) is in the rendered page. The pages checked are the ones
# `cmake --install` puts in share/man/man1. Args: AGENT ADMIN BUILD_DIR.
set -u
agent=$1 admin=$2 build=$3
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
source "$(dirname "${BASH_SOURCE[0]}")/installed_tree.sh"
if ! command -v groff >/dev/null; then
  echo "SKIP: groff not installed (scripts/install-deps.sh --test)"
  exit 77
fi

help_flags() {
  "$@" --help | sed -n 's/^ *\(-h, \)\{0,1\}\(--[a-z0-9][a-z0-9-]*\).*/\2/p' | sort -u
}

for binary in "$agent" "$admin"; do
  program=$(basename "$binary")
  page="$share/man/man1/$program.1"
  [[ -f "$page" ]] || { fail "$page was not generated"; continue; }
  cmp -s "$page" <("$binary" manpage) || fail "$page differs from '$program manpage'"
  warnings=$(groff -man -Tutf8 -ww -z "$page" 2>&1)
  [[ -z "$warnings" ]] || fail "groff warns about $page: $warnings"
  if command -v man >/dev/null; then
    MANWIDTH=100 man -l "$page" >/dev/null 2>&1 || fail "man -l $page failed"
  fi
  # Plain text: ASCII hyphens, no overstriking.
  text=$(groff -man -Tascii -P-c -P-b -P-u -rLL=200n "$page" 2>/dev/null)
  grep -q "^NAME" <<<"$text" || fail "$program.1 has no NAME section"

  commands=("")
  while read -r line; do commands+=("$line"); done < <(
    "$binary" --help | sed -n '/^Commands:/,/^$/p' | sed -n 's/^  \([a-z][a-z]*\)\( [a-z][a-z]*\)\{0,1\}.*/\1\2/p' |
      sort -u)
  [[ ${#commands[@]} -gt 3 ]] || fail "$program --help lists too few commands"
  for command in "${commands[@]}"; do
    # shellcheck disable=SC2086
    for flag in $(help_flags "$binary" $command); do
      grep -q -- "$flag\b" <<<"$text" || fail "$program $command --help lists $flag, $program.1 does not"
    done
    [[ -z "$command" ]] || grep -q -- "$command" <<<"$text" || fail "$program.1 does not describe '$command'"
  done
done

if [[ $failures -gt 0 ]]; then
  echo "$failures failure(s)"
  exit 1
fi
echo "ok"
