#!/usr/bin/env bash
# Fuzzes one target in tests/fuzz with libFuzzer for a number of seconds.
#
#   tools/fuzz.sh [--skip_build] [--build_dir=DIR] TARGET [SECONDS] [-- LIBFUZZER_ARGS...]
#
# TARGET is token, page_token, filter or logo; SECONDS defaults to 600.
# Unless --skip_build is given, it configures and builds the fuzz preset
# (clang) into build-fuzz/ first. Inputs that find new coverage are kept in
# DIR/fuzz-runs/TARGET/corpus/ and reused by the next run, on top of the
# checked-in seeds in tests/fuzz/corpus/TARGET/. An input that crashes or
# breaks a property is saved under DIR/fuzz-runs/TARGET/artifacts/, and the
# script exits non-zero. Arguments after -- go to libFuzzer, such as
# -jobs=2 -workers=2 or -max_len=65536.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=$root/build-fuzz
skip_build=0
positional=()
libfuzzer_args=()
while (($# > 0)); do
  case $1 in
    --skip_build) skip_build=1 ;;
    --build_dir=*) build=${1#*=} ;;
    --) shift; libfuzzer_args=("$@"); break ;;
    -*) echo "fuzz: unknown option $1" >&2; exit 2 ;;
    *) positional+=("$1") ;;
  esac
  shift
done
if ((${#positional[@]} < 1 || ${#positional[@]} > 2)); then
  echo "usage: tools/fuzz.sh [--skip_build] [--build_dir=DIR] TARGET [SECONDS] [-- LIBFUZZER_ARGS...]" >&2
  exit 2
fi
target=${positional[0]}
seconds=${positional[1]:-600}
seeds=$root/tests/fuzz/corpus/$target
if [[ ! -d $seeds ]]; then
  echo "fuzz: unknown target $target; the targets are: $(ls "$root/tests/fuzz/corpus" | tr '\n' ' ')" >&2
  exit 2
fi

if ((skip_build == 0)); then
  cmake --preset fuzz -S "$root" -B "$build" >/dev/null
  cmake --build "$build" -j"$(nproc)" --target "${target}_fuzzer"
fi

fuzzer=$build/tests/fuzz/${target}_fuzzer
if [[ ! -x $fuzzer ]]; then
  echo "fuzz: $fuzzer is not built; add ${target}_fuzzer to the fuzz build preset in CMakePresets.json" >&2
  exit 2
fi
run_dir=$build/fuzz-runs/$target
mkdir -p "$run_dir/corpus" "$run_dir/artifacts"
# The first folder receives new inputs; the seed folder is only read.
status=0
"$fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
  -print_final_stats=1 -artifact_prefix="$run_dir/artifacts/" \
  "${libfuzzer_args[@]}" "$run_dir/corpus" "$seeds" || status=$?
if ((status != 0)); then
  echo "fuzz: $target failed; the input is in $run_dir/artifacts/." >&2
  echo "fuzz: fix the bug, then add the input as a regression case:" >&2
  echo "fuzz:   cp $run_dir/artifacts/crash-<hash> $seeds/regression-<what-it-broke>" >&2
fi
exit "$status"
