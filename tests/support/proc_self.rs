//! This process's resident memory and CPU time, read from Linux's `/proc`,
//! for the tests that bound what a load costs. A test that cannot read them
//! fails rather than comparing zeros.
#![allow(dead_code)] // each test binary uses a different subset

use std::time::Duration;

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path} (Linux only): {e}"))
}

/// Resident set size, in KiB (`VmRSS` of `/proc/self/status`).
pub fn rss_kib() -> u64 {
    let status = read("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/self/status"))
}

/// CPU time (user + system) this process has used so far.
pub fn cpu_time() -> Duration {
    let stat = read("/proc/self/stat");
    // The fields after the command name, which is in parentheses and may
    // hold spaces: utime and stime are fields 14 and 15 of the line, 11 and
    // 12 of these.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let field = |i: usize| -> u64 {
        rest.split_whitespace()
            .nth(i)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no field {i} in /proc/self/stat"))
    };
    // In clock ticks: USER_HZ is 100 on Linux.
    Duration::from_millis((field(11) + field(12)) * 10)
}
