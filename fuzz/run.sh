#!/usr/bin/env bash
# Runs one fuzz target for a given time on the stable toolchain.
#
#   fuzz/run.sh TARGET SECONDS [extra libFuzzer flags...]
#
# TARGET is decode or channel (fuzz/), or browser_message or config (fuzz/gateway/, which
# builds the gateway too). New inputs go to corpus/TARGET of that folder (not committed); the
# committed seeds in seeds/TARGET are read as a second corpus. Crashes land in
# artifacts/TARGET. Builds go to target/ of that folder. Environment:
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
# The gateway's targets live in their own crate (they need the server's dependencies).
if [[ -f "gateway/fuzz_targets/$target.rs" ]]; then
    cd gateway
elif [[ ! -f "fuzz_targets/$target.rs" ]]; then
    have="$(ls fuzz_targets gateway/fuzz_targets | grep '\.rs$' | sed 's/\.rs$//' | tr '\n' ' ')"
    echo "no such target: $target (have: $have)" >&2
    exit 2
fi
mkdir -p "corpus/$target" "artifacts/$target"

# libFuzzer needs -Zsanitizer=… and -Cpasses=sancov-module, which stable rustc accepts only
# with RUSTC_BOOTSTRAP=1.
export RUSTC_BOOTSTRAP=1
build=(--sanitizer "${SANITIZER:-address}")

exec cargo fuzz run --fuzz-dir . "${build[@]}" "$target" "corpus/$target" "seeds/$target" -- \
    -max_total_time="$seconds" \
    -timeout=30 \
    -print_final_stats=1 \
    "$@"
