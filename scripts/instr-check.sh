#!/usr/bin/env bash
# Instruction-count regression check of the core's hot paths.
#
# Runs every scenario of benches/instructions.rs under callgrind twice, with
# its measured loop and without it (same binary, same set-up and warm-up),
# and divides the difference by the loop's iteration count: instructions per
# operation, exact and repeatable, unlike wall-clock time on a shared machine.
# The loop run is repeated once to prove the count is deterministic.
#
#   scripts/instr-check.sh            compare with benches/instructions_baseline.txt;
#                                     fail if a scenario got more than
#                                     INSTR_TOLERANCE percent (default 10) worse
#   scripts/instr-check.sh --update   rewrite the baseline from this run
#
# Counts depend on the compiler: after a toolchain upgrade, review the table
# and run --update. Takes about half a minute after the build.
set -euo pipefail
cd "$(dirname "$0")/.."

baseline=benches/instructions_baseline.txt
tolerance=${INSTR_TOLERANCE:-10}
update=0
case "${1:-}" in
    "") ;;
    --update) update=1 ;;
    *) echo "usage: $0 [--update]" >&2; exit 2 ;;
esac

if ! command -v valgrind >/dev/null 2>&1; then
    echo "installing valgrind"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq valgrind >/dev/null
fi

# Build (bench profile: release with debug info) and find the executable.
bin=$(cargo bench --bench instructions --no-run --message-format=json 2>/dev/null \
    | grep -o '"executable":"[^"]*instructions-[^"]*"' | tail -1 | cut -d'"' -f4)
if [ -z "$bin" ] || [ ! -x "$bin" ]; then
    cargo bench --bench instructions --no-run # show the error
    echo "instr-check: could not find the benchmark executable" >&2
    exit 1
fi

# Instructions executed by one run: callgrind's "Collected : N" line.
count() {
    valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" "$@" 2>&1 \
        | sed -n 's/^==[0-9]*== Collected : \([0-9]*\)$/\1/p'
}

declare -A base=()
if [ -f "$baseline" ]; then
    while read -r name value; do
        case "$name" in ''|'#'*) continue ;; esac
        base[$name]=$value
    done <"$baseline"
fi

fail=0
results=()
printf '%-26s %6s %10s %10s %s\n' scenario iters 'instr/op' baseline change
while read -r name iters; do
    full=$(count "$name" 1)
    again=$(count "$name" 1)
    empty=$(count "$name" 0)
    if [ -z "$full" ] || [ -z "$empty" ]; then
        echo "instr-check: $name failed to run; try: $bin $name 1" >&2
        exit 1
    fi
    if [ "$full" != "$again" ]; then
        echo "instr-check: $name is not deterministic ($full vs $again instructions)" >&2
        fail=1
    fi
    per_op=$(awk -v f="$full" -v e="$empty" -v n="$iters" 'BEGIN { printf "%.1f", (f - e) / n }')
    results+=("$name $per_op")
    old=${base[$name]:-}
    if [ -z "$old" ]; then
        verdict="new"
        [ "$update" -eq 1 ] || fail=1
    else
        verdict=$(awk -v new="$per_op" -v old="$old" -v tol="$tolerance" 'BEGIN {
            pct = old > 0 ? (new - old) * 100 / old : (new > 0 ? 100 : 0)
            printf "%+.1f%%%s", pct, (pct > tol ? " REGRESSED" : "")
        }')
        case "$verdict" in *REGRESSED) [ "$update" -eq 1 ] || fail=1 ;; esac
    fi
    printf '%-26s %6s %10s %10s %s\n' "$name" "$iters" "$per_op" "${old:--}" "$verdict"
done < <("$bin" --list)

if [ "$update" -eq 1 ]; then
    {
        echo "# Instructions per operation, measured by scripts/instr-check.sh under"
        echo "# callgrind ($(rustc --version | cut -d' ' -f1-2), $(valgrind --version))."
        echo "# Regenerate with scripts/instr-check.sh --update; review the diff."
        echo "# scenario instructions/op"
        printf '%s\n' "${results[@]}"
    } >"$baseline"
    echo "wrote $baseline"
    exit 0
fi

if [ "$fail" -ne 0 ]; then
    echo "instr-check: FAILED (tolerance ${tolerance}%; a scenario marked new needs --update)" >&2
    exit 1
fi
echo "instr-check: ok (tolerance ${tolerance}%)"
