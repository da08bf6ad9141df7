#!/bin/bash
# The bash completion scripts come from the same command tables as --help: `alknet-admin ke<TAB>`
# completes to `keys`, and every flag that --help lists (of the program, a group or a command)
# is completed after that command. The scripts checked are the ones `cmake --install` puts in
# share/bash-completion/completions and share/zsh/vendor-completions. Args: AGENT ADMIN BUILD_DIR.
set -u
agent=$1 admin=$2 build=$3
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

source "$(dirname "${BASH_SOURCE[0]}")/installed_tree.sh"
mkdir "$work/empty"
cd "$work/empty" || exit 1  # file-name completion offers nothing here

# COMPREPLY for the command line "$@" (the last word is the one being completed), one per line.
complete_words() {
  local fn
  fn=$(complete -p "$1" 2>/dev/null | sed -n 's/.*-F \([^ ]*\) .*/\1/p')
  [[ -n "$fn" ]] || { echo "no completion function for $1" >&2; return 1; }
  COMP_WORDS=("$@")
  COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
  COMP_LINE="$*"
  COMP_POINT=${#COMP_LINE}
  COMPREPLY=()
  "$fn" "$1" "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
  [[ ${#COMPREPLY[@]} -eq 0 ]] || printf '%s\n' "${COMPREPLY[@]}"
}

# The flags --help lists: the first token of an option line (after "-h, ").
help_flags() {
  "$@" --help | sed -n 's/^ *\(-h, \)\{0,1\}\(--[a-z0-9][a-z0-9-]*\).*/\2/p' | sort -u
}

for binary in "$agent" "$admin"; do
  program=$(basename "$binary")
  script="$share/bash-completion/completions/$program"
  [[ -f "$script" ]] || { fail "$script was not generated"; continue; }
  cmp -s "$script" <("$binary" completion bash) || fail "$script differs from '$program completion bash'"
  [[ -f "$share/zsh/vendor-completions/_$program" ]] || fail "zsh completion of $program not generated"
  # shellcheck disable=SC1090
  source "$script"
  complete -p "$program" >/dev/null || { fail "$script registers no completion for $program"; continue; }

  # Every command path the completion offers (two levels: "keys", "keys add"; the shells after
  # "completion" too).
  checked=0
  paths=("")
  for first in $(complete_words "$program" "" | grep -v '^-'); do
    paths+=("$first")
    for second in $(complete_words "$program" "$first" "" | grep -v '^-'); do
      paths+=("$first $second")
    done
  done
  [[ ${#paths[@]} -gt 3 ]] || fail "$program: too few commands completed: ${paths[*]}"

  for path in "${paths[@]}"; do
    # The flags completed at this path and at every path under it.
    offered=$(for other in "${paths[@]}"; do
                if [[ -z "$path" || "$other" == "$path" || "$other" == "$path "* ]]; then
                  # shellcheck disable=SC2086
                  complete_words "$program" $other --
                fi
              done | sort -u)
    # shellcheck disable=SC2086
    listed=$(help_flags "$binary" $path)
    [[ -n "$listed" ]] || fail "$program $path --help lists no flags"
    for flag in $listed; do
      checked=$((checked + 1))
      grep -qx -- "$flag" <<<"$offered" || fail "$program $path --help lists $flag, completion does not offer it"
    done
  done
  echo "$program: ${#paths[@]} command paths, $checked flags from --help checked"
done

# The brief's own example.
source "$share/bash-completion/completions/alknet-admin"
got=$(complete_words alknet-admin ke)
[[ "$got" == "keys" ]] || fail "alknet-admin ke<TAB> gave '$got', not 'keys'"
got=$(complete_words alknet-admin keys add --per)
[[ "$got" == $'--permit-listen\n--permit-open' || "$got" == $'--permit-open\n--permit-listen' ]] ||
  fail "alknet-admin keys add --per<TAB> gave '$got'"
got=$(complete_words alknet-agent connect --ser)
[[ "$got" == "--server" ]] || fail "alknet-agent connect --ser<TAB> gave '$got'"
got=$(complete_words alknet-agent serve --ser)
[[ -z "$got" ]] || fail "alknet-agent serve --ser<TAB> offered '$got' (upstream flags are connect only)"

# zsh: the generated files parse (when zsh is installed: scripts/install-deps.sh --test).
if command -v zsh >/dev/null; then
  for program in alknet-agent alknet-admin; do
    zsh -n "$share/zsh/vendor-completions/_$program" || fail "zsh -n _$program"
  done
else
  echo "note: zsh not installed; the zsh scripts were not syntax-checked"
fi

if [[ $failures -gt 0 ]]; then
  echo "$failures failure(s)"
  exit 1
fi
echo "ok"
