#!/usr/bin/env bash
# Runs one fuzz target for a given time on the stable toolchain.
#
#   fuzz/run.sh TARGET SECONDS [extra libFuzzer flags...]
#
# TARGET is decode or channel. New inputs go to fuzz/corpus/TARGET (not committed); the
# committed seeds in fuzz/seeds/TARGET are read as a second corpus. Crashes land in
# fuzz/artifacts/TARGET. Builds go to fuzz/target. Environment:
#   SANITIZER  address (default) or none (faster, still catches panics and overflows)
#   CARGO_BUILD_JOBS  limits the build's parallelism, as for any cargo command
set -euo pipefail

if [[ $# -lt 2 ]]; then
    echo "usage: $0 TARGET SECONDS [libFuzzer flags...]" >&2
    exit 2
fi
target=$1
seconds=$2
shift 2

cd "$(dirname "$0")"
if [[ ! -f "fuzz_targets/$target.rs" ]]; then
    echo "no such target: $target (have: $(ls fuzz_targets | sed 's/\.rs$//' | tr '\n' ' '))" >&2
    exit 2
fi
mkdir -p "corpus/$target" "artifacts/$target"

# libFuzzer needs -Zsanitizer=… and -Cpasses=sancov-module, which stable rustc accepts only
# with RUSTC_BOOTSTRAP=1.
export RUSTC_BOOTSTRAP=1
build=(--sanitizer "${SANITIZER:-address}")

exec cargo fuzz run "${build[@]}" "$target" "corpus/$target" "seeds/$target" -- \
    -max_total_time="$seconds" \
    -timeout=30 \
    -print_final_stats=1 \
    "$@"
