#!/usr/bin/env bash
# Runs every cargo-fuzz target for the given number of seconds each (default 60).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# cargo-fuzz needs nightly compiler flags (-Zsanitizer); on a stable toolchain they are
# unlocked with RUSTC_BOOTSTRAP=1. cargo-fuzz is installed (cargo install) when missing.
# Crashes land in fuzz/artifacts/TARGET/; turn each into a unit test in the parser's crate.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(content_range odata range_set)
fi

if ! cargo fuzz --help >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

export RUSTC_BOOTSTRAP=1
status=0
for t in "${targets[@]}"; do
    echo "== fuzzing $t for ${seconds}s"
    mkdir -p "corpus/$t"
    if ! cargo fuzz run "$t" "corpus/$t" -- -max_total_time="$seconds" -max_len=4096; then
        echo "!! $t found a crash: see fuzz/artifacts/$t/"
        status=1
    fi
done
exit $status
