#!/usr/bin/env python3
"""Where a ping-pong's slow round trips come from: alone, or in phases.

Reads the files that `ASYNC_BENCH_SERIES=DIR cargo bench -p kcp-peers
--bench async_loopback` writes (one run per file, round trips in the order
they happened, in µs) and prints, per run: the median, the p99, the share of
round trips more than 3 µs over the median ("slow"), the share of round
trips inside runs of 10 or more consecutive slow ones (a phase of the
machine rather than a lone hiccup) and the longest such run; then, per row,
the p50 / p90 / p99 / p99.9 of all its runs pooled.

    python3 scripts/pingpong-phases.py DIR
"""
import collections
import glob
import os
import statistics
import sys


def pct(sorted_v, p):
    return sorted_v[min(len(sorted_v) - 1, int(len(sorted_v) * p))]


def main(d):
    pooled = collections.defaultdict(list)
    for f in sorted(glob.glob(os.path.join(d, "*.txt"))):
        row = os.path.basename(f)[4:-4]
        v = [float(x) for x in open(f)]
        if not v:
            continue
        med = statistics.median(v)
        slow = [x > med + 3 for x in v]
        runs, cur = [], 0
        for s in slow + [False]:
            if s:
                cur += 1
            elif cur:
                runs.append(cur)
                cur = 0
        in_phases = sum(r for r in runs if r >= 10)
        print(
            f"{os.path.basename(f):40} median {med:5.1f} p99 {pct(sorted(v), 0.99):5.1f}"
            f"  slow {100 * sum(slow) / len(v):5.1f}%  in phases {100 * in_phases / len(v):5.1f}%"
            f"  longest {max(runs, default=0)}"
        )
        pooled[row] += v
    print()
    for row, v in pooled.items():
        v.sort()
        print(
            f"{row:20} n={len(v):7}  p50 {pct(v, .5):5.1f}  p90 {pct(v, .9):5.1f}"
            f"  p99 {pct(v, .99):5.1f}  p99.9 {pct(v, .999):6.1f}"
        )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".")
