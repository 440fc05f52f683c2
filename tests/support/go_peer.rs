//! The kcp-go peer (`peers/go/fecpeer`) as a child process, for the FEC
//! interop tests: built once per test binary by `scripts/build-go-peer.sh`
//! (a missing Go toolchain or kcp-go fails the test), its stdout read line
//! by line on a thread, killed on drop.
#![allow(dead_code)] // each test binary uses a different subset

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Message `i` of the deterministic stream the peer sends and expects
/// (`message(i)` in main.go).
pub fn message(i: usize) -> Vec<u8> {
    let size = 1 + (i * 397) % 4000;
    (0..size).map(|j| ((i * 31 + j) % 251) as u8).collect()
}

/// `name=value` from one of the peer's stats lines.
pub fn stat(line: &str, name: &str) -> u64 {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {line:?}"))
}

/// The peer's binary, built on first use; one per test binary, so that
/// test binaries run side by side do not build over each other's.
fn peer_binary() -> &'static PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(concat!("fecpeer-", env!("CARGO_CRATE_NAME")));
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/build-go-peer.sh");
        let status = Command::new("bash")
            .arg(script)
            .arg(&out)
            .status()
            .expect("running scripts/build-go-peer.sh");
        assert!(
            status.success(),
            "building the kcp-go peer failed ({status}); see the message above"
        );
        out
    })
}

/// The Go process, its stdout lines, and its stdin (held open: EOF makes
/// the peer exit). Killed on drop.
pub struct GoPeer {
    child: Child,
    _stdin: ChildStdin,
    lines: Receiver<String>,
}

impl GoPeer {
    /// Starts the peer with `args` and the shared FEC and timeout flags
    /// (10 data + 3 parity shards, 60 s at most).
    pub fn spawn(args: &[&str]) -> GoPeer {
        let mut child = Command::new(peer_binary())
            .args(args)
            .args(["-ds", "10", "-ps", "3", "-timeout", "60s"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting the kcp-go peer");
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                eprintln!("kcp-go peer: {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        GoPeer {
            child,
            _stdin: stdin,
            lines,
        }
    }

    /// The next line that starts with `prefix`, skipping others; panics
    /// after `within`. Blocks (from async code: `spawn_blocking`).
    pub fn line_starting(&self, prefix: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return line,
                Ok(_) => continue,
                Err(e) => panic!("no '{prefix}' line from the kcp-go peer: {e}"),
            }
        }
    }

    /// The peer's exit status if it has exited.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().expect("try_wait on the kcp-go peer")
    }

    /// A line if one is waiting.
    pub fn try_line(&self) -> Option<String> {
        self.lines.try_recv().ok()
    }
}

impl Drop for GoPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
