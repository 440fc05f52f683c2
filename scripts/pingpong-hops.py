#!/usr/bin/env python3
"""Where an echo server's reply time goes across processes: its own work, or
the CPU the kernel gave it.

Runs the cross-process ping-pong in blocks of 100 round trips (rows 1 and 4:
our layer and tokio_kcp, each echo server in a process of its own), records
0.2 s of `sendto` calls on all CPUs with `perf`, and
pairs every `sendto` of the client with the echo server's next one: that
hop is the server's wake-up plus its work up to the reply. A hop is on the
"same" CPU when the server replied on the CPU the client had sent from, on
the "other" one otherwise (the server woke there). Prints, per server, the hop
times of each kind, the share of replies given on the client's CPU, and per
block of replies (a gap of over 0.5 ms starts one) the block's majority
kind and whether another thread than in the previous block answered.

    python3 scripts/pingpong-hops.py BENCH_BINARY [TRACES]

BENCH_BINARY is the built `async_loopback` bench (`cargo bench -p kcp-peers
--bench async_loopback --no-run` prints its path); TRACES (default 10) runs
are pooled. Needs `perf` with the syscalls tracepoints (root).
"""
import collections
import os
import re
import subprocess
import sys
import tempfile
import time

EVENT = re.compile(r"\s*(\d+)/(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+(\S+):")
BLOCK_GAP_S = 0.0005


def echo_servers(parent):
    """The bench's echo children: pid -> implementation (row 1 is ours, row 4 tokio_kcp)."""
    names = {}
    kids = subprocess.run(["pgrep", "-P", str(parent)], capture_output=True, text=True).stdout.split()
    for pid in kids:
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = dict(v.split(b"=", 1) for v in f.read().split(b"\0") if b"=" in v)
        role = env.get(b"ASYNC_BENCH_CHILD", b"").decode()
        names[int(pid)] = {"echo:0": "ours", "echo:1": "tokio_kcp"}.get(role, role)
    return names


def trace(binary, data):
    """One bench run; returns (client pid, {server pid: name}, perf script lines, bench output)."""
    env = dict(
        os.environ,
        ASYNC_BENCH="pingpong",
        ASYNC_BENCH_PINGPONG="turns-processes",
        ASYNC_BENCH_ROWS="1,4",
        ASYNC_BENCH_TURN="100",
        ASYNC_BENCH_PINGPONG_REPS="1",
        ASYNC_BENCH_RTTS="60000",
    )
    bench = subprocess.Popen([binary, "--bench"], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    time.sleep(2)
    names = echo_servers(bench.pid)
    subprocess.run(["perf", "record", "-q", "-a", "-e", "syscalls:sys_enter_sendto", "-o", data, "--", "sleep", "0.2"],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    out, _ = bench.communicate()
    script = subprocess.run(["perf", "script", "-i", data, "-F", "pid,tid,cpu,time,event"],
                            capture_output=True, text=True).stdout
    cells = [[c.strip() for c in l.split("|")] for l in out.splitlines() if "| 60000 |" in l]
    rows = [f"{c[1]} {c[4]} / {c[5]}" for c in cells]
    return bench.pid, names, script.splitlines(), rows


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(len(v) * p))]


def close_block(blocks, name, b):
    """Counts a block by the CPU most of its replies were given on."""
    if b:
        mode = "same" if 2 * b["same"] >= b["n"] else "other"
        blocks[(name, mode, b["new_thread"])] += 1


def main(binary, traces):
    hops = collections.defaultdict(list)
    blocks = collections.Counter()
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(traces):
            client, names, lines, rows = trace(binary, os.path.join(tmp, "perf.data"))
            print("run p50 / p99 (us):", ", ".join(rows))
            prev, last, cur = None, {}, {}
            for line in lines:
                m = EVENT.match(line)
                if not m or m[5] != "syscalls:sys_enter_sendto":
                    continue
                pid, tid, cpu, t = int(m[1]), int(m[2]), int(m[3]), float(m[4])
                if prev and prev[0] == client and pid in names:
                    name, same = names[pid], cpu == prev[1]
                    hops[(name, same)].append((t - prev[2]) * 1e6)
                    if name not in last or t - last[name][0] > BLOCK_GAP_S:
                        close_block(blocks, name, cur.pop(name, None))
                        cur[name] = {"n": 0, "same": 0, "new_thread": name in last and last[name][1] != tid}
                    cur[name]["n"] += 1
                    cur[name]["same"] += same
                    last[name] = (t, tid)
                prev = (pid, cpu, t)
            for name, b in cur.items():
                close_block(blocks, name, b)
    for name in ["ours", "tokio_kcp"]:
        same, cross = hops[(name, True)], hops[(name, False)]
        total = len(same) + len(cross)
        if not total:
            continue
        print(f"{name}: {total} replies, {100 * len(same) / total:.0f}% on the client's CPU")
        for kind, v in [("same CPU", same), ("other CPU", cross)]:
            if v:
                print(f"  {kind:9}: hop p50 {pct(v, .5):.1f} us, p90 {pct(v, .9):.1f}, p99 {pct(v, .99):.1f} ({len(v)})")
        for (n, mode, new_thread), count in sorted(blocks.items()):
            if n == name:
                who = "another thread" if new_thread else "the same thread"
                print(f"  blocks answered mostly on the {mode:5} CPU by {who}: {count}")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 10)
