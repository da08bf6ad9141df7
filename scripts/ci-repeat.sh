#!/usr/bin/env bash
# Runs CI (.ci/run, which is scripts/test.sh) N times in a row, each from a fresh clone of one
# commit, and stops at the first failure: the flake check ("N full runs in a row from clean
# clones"). Usage: scripts/ci-repeat.sh [N=5] [COMMIT=HEAD] [OUT_DIR]. One line per run goes to
# stdout and each run's whole output to OUT_DIR/runK.log (default: a new temp dir); a failed run's
# build/Testing is kept beside its log. (Not an ALKNET_* variable: the agents the suite starts
# refuse unknown ALKNET_* names.)
set -uo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
runs=${1:-5}
commit=$(git -C "$repo_root" rev-parse --verify "${2:-HEAD}^{commit}") || {
  echo "ci-repeat.sh: '${2:-HEAD}' is not a commit of $repo_root" >&2
  exit 2
}
if ! [[ "$runs" =~ ^[1-9][0-9]*$ ]]; then
  echo "ci-repeat.sh: N must be a positive integer, got '$runs'" >&2
  exit 2
fi
out=${3:-$(mktemp -d /tmp/alknet-ci-repeat.XXXXXX)}
mkdir -p "$out"
clone=$out/clone
# CI's checkout has the shared tools beside it (../shared: the chart renderer, where helm is
# not installed); give the clone the same neighbour so the chart check runs instead of skipping.
if [[ -d "$repo_root/../shared" && ! -e "$out/shared" ]]; then
  ln -s "$(cd "$repo_root/../shared" && pwd)" "$out/shared"
fi

for ((i = 1; i <= runs; i++)); do
  rm -rf "$clone"
  git clone -q "$repo_root" "$clone" && git -C "$clone" checkout -q "$commit" || exit 1
  start=$(date +%s)
  (cd "$clone" && CI=true .ci/run) >"$out/run$i.log" 2>&1
  rc=$?
  echo "run $i/$runs commit ${commit:0:7} rc=$rc seconds=$(($(date +%s) - start)) log=$out/run$i.log"
  if [[ $rc -ne 0 ]]; then
    cp -r "$clone/build/Testing" "$out/testing$i" 2>/dev/null
    exit 1
  fi
done
rm -rf "$clone"
echo "ci-repeat.sh: $runs of $runs runs passed on ${commit:0:7}"
