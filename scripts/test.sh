#!/usr/bin/env bash
# Builds alknet and runs the whole test suite, warnings as errors (ALKNET_WERROR=ON) throughout:
#   1. deps      install build + test packages (scripts/install-deps.sh --test)
#   2. build     RelWithDebInfo build in ./build, ctest (unit, integration, interop)
#   3. release   what users build: Release with GCC (./build-release-gcc) and clang
#                (./build-release-clang), the agent, alknet-admin and the bench helper
#   4. newcomer  the README as a newcomer types it: scripts/run-agent.sh from a clean copy with a
#                fresh HOME, stock ssh -D/-L/-W, curl, alknet-admin (tests/newcomer/)
#   5. container docker/Dockerfile built and run with podman, and the .deb (scripts/package.sh)
#                installed with apt in a clean container (ctest -L container,
#                tests/container/check_image.sh, check_deb.sh)   (skipped by --no-container)
#   6. asan      ASan+UBSan build in ./build-asan, ctest                (skipped by --quick)
#   7. fuzz      clang libFuzzer build in ./build-fuzz; each tests/fuzz/*_fuzzer.cc runs for
#                ALKNET_FUZZ_SECONDS (default 20) on a copy of its corpus  (skipped by --quick)
# Options:
#   --quick         skip the asan and fuzz stages
#   --no-container  skip the container stage (CI never does)
#   --label L       run only tests labelled L (ctest -L L); skips the release, newcomer and
#                   container stages
#   --only STAGE    run that one stage (a developer's re-run, e.g. --only fuzz); CI runs all
# Re-running reuses the build directories. Exits non-zero on the first failing stage.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"

usage() {
  sed -n '2,21s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
}

quick=0
container=1
label=""
only=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --only)
      case "${2:-}" in
        deps|build|release|newcomer|container|asan|fuzz) only=$2; shift ;;
        *) echo "test.sh: --only needs a stage: deps build release newcomer container asan fuzz" >&2; exit 2 ;;
      esac
      ;;
    --quick) quick=1 ;;
    --no-container) container=0 ;;
    --label)
      if [[ $# -lt 2 || -z "$2" ]]; then
        echo "test.sh: --label needs a value (unit, integration or interop)" >&2
        exit 2
      fi
      label=$2
      shift
      ;;
    --label=*) label=${1#--label=} ;;
    -h|--help) usage; exit 0 ;;
    *) echo "test.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

# ccache keys on paths relative to the tree, so the newcomer stage's copy (under build-newcomer/)
# and a fresh clone elsewhere reuse what earlier builds compiled.
export CCACHE_BASEDIR=$repo_root

fuzz_seconds=${ALKNET_FUZZ_SECONDS:-20}
if ! [[ "$fuzz_seconds" =~ ^[0-9]+$ ]] || [[ "$fuzz_seconds" -lt 1 ]]; then
  echo "test.sh: ALKNET_FUZZ_SECONDS must be a positive integer, got '$fuzz_seconds'" >&2
  exit 2
fi

ctest_args=(--output-on-failure -j2 --no-tests=error)
if [[ -n "$label" ]]; then
  ctest_args+=(-L "$label")
else
  ctest_args+=(-LE container)  # the container stage runs those
fi

# Every tests/fuzz/NAME_fuzzer.cc is a libFuzzer target (tests/CMakeLists.txt); its seed
# corpus is tests/fuzz/corpus/NAME/.
FUZZERS=()
for src in tests/fuzz/*_fuzzer.cc; do
  [[ -e "$src" ]] || continue
  src=${src##*/}
  FUZZERS+=("${src%.cc}")
done

# ---- stages -------------------------------------------------------------------------

# ctest on build directory $1 (extra ctest arguments after it). Under CI a skipped test fails
# the stage: CI installs every peer the suite needs (install-deps.sh --test), so a skip there is
# a missing dependency, not a choice.
run_ctest() {
  local dir=$1
  shift
  local log=$dir/ctest-last.log
  ctest --test-dir "$dir" "$@" | tee "$log"  # pipefail keeps ctest's own status
  if [[ "${CI:-}" == true ]] && grep -E '\((Skipped|Not Run)\)' "$log"; then
    echo "test.sh: tests were skipped in CI (above); CI has every dependency, so this fails" >&2
    return 1
  fi
}

stage_deps() {
  bash scripts/install-deps.sh --test
}

stage_build() {
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DALKNET_WERROR=ON \
    -DALKNET_BUILD_TESTS=ON -DALKNET_SANITIZE=OFF -DALKNET_FUZZ=OFF
  ninja -C build
  run_ctest build "${ctest_args[@]}"
}

# The Release build type (-O3) that run-agent.sh, the Dockerfile and packagers use warns where
# RelWithDebInfo does not: build it with both compilers, warnings as errors.
stage_release() {
  local pair cc cxx
  for pair in "gcc g++" "clang clang++"; do
    read -r cc cxx <<<"$pair"
    CC=$cc CXX=$cxx cmake -S . -B "build-release-$cc" -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DALKNET_WERROR=ON -DALKNET_BUILD_TESTS=OFF
    ninja -C "build-release-$cc"
  done
}

# The image users run: docker/Dockerfile built and run with podman.
# The check skips (exit 77) only where podman cannot be installed; under CI that fails (run_ctest).
stage_container() {
  run_ctest build --output-on-failure --no-tests=error -L container
}

# The README's run command, run as a newcomer runs it (tests/newcomer/readme_commands.sh).
stage_newcomer() {
  bash tests/newcomer/readme_commands.sh "$repo_root" "$repo_root/build-newcomer"
}

# Prints "CC CXX" for the first compiler pair that builds and runs an ASan+UBSan program.
pick_sanitizer_compiler() {
  local probe_dir pair cc cxx
  probe_dir=$(mktemp -d)
  printf '#include <vector>\nint main() { std::vector<int> v(2); return v[1]; }\n' >"$probe_dir/probe.cc"
  for pair in "gcc g++" "clang clang++"; do
    read -r cc cxx <<<"$pair"
    command -v "$cxx" >/dev/null 2>&1 || continue
    if "$cxx" -std=c++20 -fsanitize=address,undefined -fno-omit-frame-pointer \
        "$probe_dir/probe.cc" -o "$probe_dir/probe" >/dev/null 2>&1 \
        && "$probe_dir/probe" >/dev/null 2>&1; then
      rm -rf "$probe_dir"
      echo "$cc $cxx"
      return 0
    fi
  done
  rm -rf "$probe_dir"
  return 1
}

stage_asan() {
  local compilers cc cxx
  local -a with_compiler=()
  if [[ -f build-asan/CMakeCache.txt ]]; then
    # An existing build directory keeps the compiler it was configured with.
    echo "test.sh: reusing build-asan/ (compiler: $(sed -n 's/^CMAKE_CXX_COMPILER:[A-Z]*=//p' build-asan/CMakeCache.txt))"
  else
    if ! compilers=$(pick_sanitizer_compiler); then
      echo "test.sh: neither g++ nor clang++ can build and run an -fsanitize=address,undefined program" >&2
      echo "test.sh: (g++ needs libasan/libubsan from build-essential; clang++ needs libclang-rt-14-dev)" >&2
      return 1
    fi
    read -r cc cxx <<<"$compilers"
    echo "test.sh: ASan+UBSan build with $cxx"
    with_compiler=(env "CC=$cc" "CXX=$cxx")
  fi
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  "${with_compiler[@]}" cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DALKNET_WERROR=ON -DALKNET_BUILD_TESTS=ON -DALKNET_SANITIZE=ON -DALKNET_FUZZ=OFF
  ninja -C build-asan
  run_ctest build-asan "${ctest_args[@]}"
}

stage_fuzz() {
  if ! command -v clang++ >/dev/null 2>&1; then
    echo "test.sh: clang++ not found; the fuzz build needs clang (scripts/install-deps.sh --test)" >&2
    return 1
  fi
  if [[ ${#FUZZERS[@]} -eq 0 ]]; then
    echo "test.sh: no fuzz targets found (tests/fuzz/*_fuzzer.cc)" >&2
    return 1
  fi
  local fuzzer
  if [[ -f build-fuzz/CMakeCache.txt ]] \
      && ! grep -q '^CMAKE_CXX_COMPILER:[A-Z]*=.*clang++' build-fuzz/CMakeCache.txt; then
    echo "test.sh: build-fuzz/ was configured without clang++; remove build-fuzz/ and re-run" >&2
    return 1
  fi
  # Fuzz targets are defined in tests/CMakeLists.txt, so tests stay on; only the
  # fuzzers are built.
  CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DALKNET_WERROR=ON -DALKNET_BUILD_TESTS=ON -DALKNET_FUZZ=ON -DALKNET_SANITIZE=OFF
  ninja -C build-fuzz "${FUZZERS[@]}"

  local work
  work=$(mktemp -d)
  # Stages run in a subshell, so this fires when the stage ends.
  # shellcheck disable=SC2064  # expand $work now
  trap "rm -rf '$work'" EXIT
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  # One fuzzer per core at a time (each runs single-threaded for fuzz_seconds); outcomes are
  # reported in the fuzzers' order once all have finished.
  local parallel
  parallel=$(nproc 2>/dev/null || echo 1)
  local -a running=()
  for fuzzer in "${FUZZERS[@]}"; do
    local name=${fuzzer%_fuzzer}
    local corpus=$work/$name artifacts=$repo_root/build-fuzz/artifacts/$name
    mkdir -p "$corpus" "$artifacts"
    rm -f "$artifacts/exit-code"
    if [[ -d "tests/fuzz/corpus/$name" ]]; then
      cp -R "tests/fuzz/corpus/$name/." "$corpus/"
    else
      echo "test.sh: warning: no seed corpus tests/fuzz/corpus/$name/; starting from empty" >&2
    fi
    while [[ ${#running[@]} -ge $parallel ]]; do
      wait -n || true
      local -a still=()
      local pid
      for pid in "${running[@]}"; do kill -0 "$pid" 2>/dev/null && still+=("$pid"); done
      running=("${still[@]}")
    done
    echo "test.sh: running $fuzzer for ${fuzz_seconds}s on $(find "$corpus" -type f | wc -l) seed inputs"
    # libFuzzer logs every new coverage point: keep that in a file, show the outcome.
    (
      rc=0
      "build-fuzz/tests/$fuzzer" -max_total_time="$fuzz_seconds" -timeout=25 \
        -print_final_stats=1 -artifact_prefix="$artifacts/" "$corpus" >"$artifacts/fuzz.log" 2>&1 \
        || rc=$?
      echo "$rc" >"$artifacts/exit-code"
    ) &
    running+=($!)
  done
  wait
  local failed=0
  for fuzzer in "${FUZZERS[@]}"; do
    local name=${fuzzer%_fuzzer}
    local artifacts=$repo_root/build-fuzz/artifacts/$name
    local log=$artifacts/fuzz.log
    if [[ "$(cat "$artifacts/exit-code" 2>/dev/null)" != 0 ]]; then
      tail -n 80 "$log" >&2
      echo "test.sh: $fuzzer found a failure (full log: $log); reproducer(s) in $artifacts/" >&2
      echo "test.sh: rerun one with: build-fuzz/tests/$fuzzer $artifacts/<file>" >&2
      failed=1
      continue
    fi
    grep -E '^(Done [0-9]+ runs|stat::number_of_executed_units|stat::peak_rss_mb)' "$log" || true
    echo "test.sh: $fuzzer: no failure in ${fuzz_seconds}s (log: $log)"
  done
  return "$failed"
}

# ---- driver -------------------------------------------------------------------------

summary=()

run_stage() {
  local name=$1 fn=$2 start rc elapsed
  echo
  echo "==== test.sh: stage '$name' ===="
  start=$(date +%s)
  set +e
  (set -e; "$fn")
  rc=$?
  set -e
  elapsed=$(($(date +%s) - start))
  if [[ $rc -ne 0 ]]; then
    summary+=("$name: FAILED (${elapsed}s)")
    echo "==== test.sh: stage '$name' FAILED (exit $rc) after ${elapsed}s ====" >&2
    print_summary
    exit 1
  fi
  summary+=("$name: ok (${elapsed}s)")
  echo "==== test.sh: stage '$name' passed in ${elapsed}s ===="
}

print_summary() {
  echo
  echo "==== test.sh: summary ===="
  local line
  for line in "${summary[@]}"; do
    echo "  $line"
  done
}

total_start=$(date +%s)
if [[ -n "$only" ]]; then
  run_stage "$only" "stage_$only"
  print_summary
  exit 0
fi
run_stage deps stage_deps
run_stage build stage_build
if [[ -n "$label" ]]; then
  summary+=("release: skipped (--label)" "newcomer: skipped (--label)")
else
  run_stage release stage_release
  run_stage newcomer stage_newcomer
  if [[ $container -eq 1 ]]; then
    run_stage container stage_container
  else
    summary+=("container: skipped (--no-container)")
  fi
fi
if [[ $quick -eq 1 ]]; then
  summary+=("asan: skipped (--quick)" "fuzz: skipped (--quick)")
else
  run_stage asan stage_asan
  run_stage fuzz stage_fuzz
fi
print_summary
echo "==== test.sh: all stages passed in $(($(date +%s) - total_start))s ===="
