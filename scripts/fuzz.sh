#!/usr/bin/env bash
# Runs the fuzz targets in fuzz/ (all, or those named) for a bounded time each and
# exits non-zero if any crashed, hung or leaked; libFuzzer leaves each such input in
# fuzz/artifacts/TARGET/. The README's Fuzzing section has how to run one for longer.
#
#   scripts/fuzz.sh [-t SECONDS] [TARGET...]    default: 15 s per target, every target
#   FUZZ_SEED=N: libFuzzer's -seed (the same inputs in the same order, for a run that
#   gates, as CI's: a red run then comes from the change, not from the draw)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
setup_base
setup_fuzz

seconds=15
if [ "${1:-}" = "-t" ]; then
    seconds="$2"
    shift 2
fi
# cargo-fuzz's nightly-only flags (sanitizer, coverage) on the stable toolchain.
export RUSTC_BOOTSTRAP=1
# Instrumented builds go to fuzz/target, never into a main-workspace target directory.
unset CARGO_TARGET_DIR
# nghttp3's C code (feature vendored) gets what cargo-fuzz gives the Rust code: libFuzzer's
# coverage counters and AddressSanitizer (whose runtime rustc links).
export NGHTTP3_SYS_CC=clang
export NGHTTP3_SYS_CFLAGS="-fsanitize=fuzzer-no-link -fsanitize=address -g -O1"
cd fuzz
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo fuzz list)
cargo fuzz build

failed=()
for t in "${targets[@]}"; do
    printf '\n==> fuzz %s for %ss\n' "$t" "$seconds" >&2
    # Each run starts from the committed seeds alone, so its time stays bounded; new
    # inputs go to the first directory (ignored), the seeds stay as they are.
    rm -rf "target/corpus/$t"
    mkdir -p "target/corpus/$t"
    log="target/$t.log"
    flags=()
    [ -f "$t.dict" ] && flags=(-dict="$t.dict")
    [ -z "${FUZZ_SEED:-}" ] || flags+=(-seed="$FUZZ_SEED")
    if cargo fuzz run "$t" "target/corpus/$t" "corpus/$t" -- "${flags[@]}" \
        -max_total_time="$seconds" -timeout=10 -print_final_stats=1 2>"$log"; then
        grep -E '^(Done|stat::peak_rss_mb)' "$log" >&2 || true
    else
        tail -n 40 "$log" >&2
        failed+=("$t")
    fi
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: crashes in ${failed[*]}: inputs in fuzz/artifacts/" >&2
    exit 1
fi
