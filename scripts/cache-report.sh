#!/usr/bin/env bash
# Cache misses per operation of the core's hot paths, from cachegrind.
#
# Same method as scripts/instr-check.sh: each scenario of
# benches/instructions.rs runs with and without its measured loop after the
# same warm-up, and the difference is divided by the iteration count, so the
# numbers are those of the steady state, not of start-up.
#
#   scripts/cache-report.sh [scenario...]    default: every scenario
#
# The cache is simulated with fixed parameters (not the host's) so that the
# report is the same on every machine: CACHE_I1, CACHE_D1, CACHE_LL in
# cachegrind's size,associativity,line form. Cachegrind models an inclusive
# two-level hierarchy without prefetching; treat the numbers as working-set
# evidence, not as a prediction of hardware counters. Report only: never fails
# on the numbers.
set -euo pipefail
cd "$(dirname "$0")/.."

i1=${CACHE_I1:-32768,8,64}
d1=${CACHE_D1:-32768,8,64}
ll=${CACHE_LL:-33554432,16,64}

if ! command -v valgrind >/dev/null 2>&1; then
    echo "installing valgrind"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq valgrind >/dev/null
fi

bin=$(cargo bench --bench instructions --no-run --message-format=json 2>/dev/null \
    | grep -o '"executable":"[^"]*instructions-[^"]*"' | tail -1 | cut -d'"' -f4)
if [ -z "$bin" ] || [ ! -x "$bin" ]; then
    cargo bench --bench instructions --no-run # show the error
    echo "cache-report: could not find the benchmark executable" >&2
    exit 1
fi

# "Ir D1mr+D1mw LLdmr+LLdmw I1mr LLimr Dr+Dw" of one run, from cachegrind's summary.
counts() {
    valgrind --tool=cachegrind --cache-sim=yes --cachegrind-out-file=/dev/null \
        --I1="$i1" --D1="$d1" --LL="$ll" "$bin" "$@" 2>&1 \
        | awk '
            function num(s) { gsub(",", "", s); return s + 0 }
            /== I +refs:/    { ir = num($4) }
            /== I1 +misses:/ { i1 = num($4) }
            /== LLi +misses:/ { lli = num($4) }
            /== D +refs:/    { dr = num($4) }
            /== D1 +misses:/ { d1 = num($4) }
            /== LLd +misses:/ { lld = num($4) }
            END { print ir, d1, lld, i1, lli, dr }'
}

echo "cachegrind: I1=$i1 D1=$d1 LL=$ll (size,assoc,line); per operation, steady state"
printf '%-26s %6s %9s %9s %9s %9s %9s\n' scenario iters 'D refs' 'D1 miss' 'LLd miss' 'I1 miss' 'LLi miss'
while read -r name iters; do
    if [ $# -gt 0 ] && [[ " $* " != *" $name "* ]]; then
        continue
    fi
    read -r _ d1f lldf i1f llif drf <<<"$(counts "$name" 1)"
    read -r _ d1e llde i1e llie dre <<<"$(counts "$name" 0)"
    awk -v name="$name" -v n="$iters" \
        -v dr=$((drf - dre)) -v d1=$((d1f - d1e)) -v lld=$((lldf - llde)) \
        -v i1=$((i1f - i1e)) -v lli=$((llif - llie)) 'BEGIN {
            printf "%-26s %6d %9.1f %9.3f %9.3f %9.3f %9.3f\n",
                name, n, dr / n, d1 / n, lld / n, i1 / n, lli / n
        }'
done < <("$bin" --list)
