#!/usr/bin/env bash
# Bounded fuzzing for CI: builds the cargo-fuzz targets in fuzz/ and runs each
# one for FUZZ_SECONDS (default 20) from the committed seeds (fuzz/seeds/) plus
# whatever corpus fuzz/corpus/ already holds. Fails if any target finds a
# crash, a panic (an invariant), a hang (-timeout) or runs out of memory.
# Crashing inputs land in fuzz/artifacts/<target>/; see docs/fuzzing.md.
#
#   scripts/fuzz-ci.sh                 # every target, 20 s each
#   FUZZ_SECONDS=600 scripts/fuzz-ci.sh kcp_stateful
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
# cargo-fuzz passes nightly-only flags (-Zsanitizer..., -Cpasses=sancov);
# this lets the stable toolchain accept them.
export RUSTC_BOOTSTRAP=1
seconds=${FUZZ_SECONDS:-20}
# No sanitizer: kcp-rs and the harness forbid unsafe code, so
# ASan would find nothing; the build keeps debug assertions and overflow
# checks, and runs about twice as fast without it.
build=(-s none)
start=$(date +%s)
step() { echo "== $* ($(($(date +%s) - start))s)"; }

if ! cargo fuzz --version >/dev/null 2>&1; then
    step "install cargo-fuzz"
    cargo install cargo-fuzz --locked || cargo install cargo-fuzz
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo fuzz list)
fi

step "build ${targets[*]}"
for t in "${targets[@]}"; do
    cargo fuzz build "${build[@]}" "$t"
done

failed=()
mkdir -p fuzz/artifacts/logs
for t in "${targets[@]}"; do
    step "fuzz $t for ${seconds}s"
    mkdir -p "fuzz/corpus/$t"
    dirs=("fuzz/corpus/$t")
    [ -d "fuzz/seeds/$t" ] && dirs+=("fuzz/seeds/$t")
    log="fuzz/artifacts/logs/$t.log"
    if ! cargo fuzz run "${build[@]}" "$t" "${dirs[@]}" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 >"$log" 2>&1; then
        failed+=("$t")
    fi
    # The last status line (executions, coverage, corpus), the final stats,
    # and on failure the panic message and where the input was saved.
    grep -E '^#[0-9]+' "$log" | tail -n 1 || true
    grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb|thread |SUMMARY|artifact_prefix|Test unit written)' "$log" || true
done

step "done"
if [ ${#failed[@]} -ne 0 ]; then
    echo "fuzzing found problems in: ${failed[*]} (logs in fuzz/artifacts/logs/)"
    exit 1
fi
