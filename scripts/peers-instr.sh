#!/usr/bin/env bash
# Instructions per message of the side-by-side scenarios (peers/benches/peers.rs)
# for our core, the C ikcp and the `kcp` crate, under callgrind.
#
# Each scenario runs twice in the same binary: with its measured work and
# with only its set-up (`peers instr <scenario> <impl> 1|0`); the difference,
# divided by the messages moved, is the cost per message of the protocol
# work plus the harness (sink copy, link, checks), which is the same code for
# all three. Counts are exact and repeatable where wall-clock times are not.
#
#   scripts/peers-instr.sh [scenario ...]    round bulk0 bulk10 by default;
#                                            also bulk0-long, bulk10-long (a second
#                                            transfer through one pair)
#
# Takes a few minutes after the build (bulk under valgrind is slow).
set -euo pipefail
cd "$(dirname "$0")/.."

bin=$(cargo bench -p kcp-peers --bench peers --no-run --message-format=json 2>/dev/null \
    | grep -o '"executable":"[^"]*peers-[^"]*"' | tail -1 | cut -d'"' -f4)
if [ -z "$bin" ] || [ ! -x "$bin" ]; then
    cargo bench -p kcp-peers --bench peers --no-run # show the error
    echo "peers-instr: could not find the benchmark executable" >&2
    exit 1
fi

count() {
    valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" instr "$@" 2>&1 \
        | sed -n 's/^==[0-9]*== Collected : \([0-9]*\)$/\1/p'
}

# Messages per measured run: 10 rounds of 1,000; one bulk of 16 MiB / 1,376 + 1.
messages() {
    case "$1" in
        round) echo 10000 ;;
        bulk*) echo $(((16 << 20) / 1376 + 1)) ;;
    esac
}

scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=(round bulk0 bulk10)
printf '%-8s %-13s %14s %10s\n' scenario impl instructions 'instr/msg'
for s in "${scenarios[@]}"; do
    for imp in ours ours-in-place ikcp crate; do
        full=$(count "$s" "$imp" 1)
        empty=$(count "$s" "$imp" 0)
        n=$(messages "$s")
        printf '%-8s %-13s %14s %10s\n' "$s" "$imp" "$((full - empty))" \
            "$(awk -v f="$full" -v e="$empty" -v n="$n" 'BEGIN { printf "%.1f", (f - e) / n }')"
    done
done
