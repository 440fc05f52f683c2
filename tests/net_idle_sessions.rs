//! Idle sessions cost memory but (almost) no CPU. A stress test,
//! `#[ignore]`d; run it on purpose:
//!
//! ```text
//! cargo test --release --test net_idle_sessions -- --ignored --nocapture ten_thousand
//! ```
//! The listener runs in a child process (this test binary again, running
//! `idle_listener_process`), so that its memory and CPU are measured alone;
//! the clients run here, each on a socket of its own (the process needs that
//! many file descriptors). `KCP_IDLE_SESSIONS` sets the count (default
//! 10 000), `KCP_IDLE_SECS` the measured idle time (default 60 s, three
//! keep-alive periods of the default configuration).
//!
//! Goal: under 512 MiB of resident memory and under 1% of a core for a
//! listener holding 10 000 sessions that exchanged data and went idle.
#![cfg(feature = "tokio")]

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use kcp_rs::net::{KcpListener, KcpStream, SessionConfig};

#[path = "support/proc_self.rs"]
mod proc_self;
use proc_self::{cpu_time, rss_kib};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn config(n: usize) -> SessionConfig {
    SessionConfig {
        max_sessions: n + 10,
        max_sessions_per_ip: n + 10,
        accept_backlog: 1024,
        // The preset asks 8 MiB per socket; 10 000 idle client sockets do
        // not need it (the kernel only charges what is queued anyway).
        socket_recv_buffer: None,
        socket_send_buffer: None,
        ..SessionConfig::default()
    }
}

#[test]
#[ignore = "stress: 10 000 sessions; run on purpose"]
fn ten_thousand_idle_sessions() {
    let n = env_or("KCP_IDLE_SESSIONS", 10_000);
    let idle = env_or("KCP_IDLE_SECS", 60);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "idle_listener_process",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env("KCP_IDLE_CHILD", "1")
        .env("KCP_IDLE_SESSIONS", n.to_string())
        .env("KCP_IDLE_SECS", idle.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let (tx, lines) = mpsc::channel::<String>();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let wait_for = |prefix: &str, within: Duration| -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(l) if l.starts_with(prefix) => return l,
                Ok(_) => continue,
                Err(e) => panic!("no {prefix} from the listener process: {e}"),
            }
        }
    };
    let addr: std::net::SocketAddr = wait_for("LISTENING ", Duration::from_secs(30))
        ["LISTENING ".len()..]
        .parse()
        .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let start = Instant::now();
    let clients = rt.block_on(async {
        let mut clients = Vec::with_capacity(n);
        for i in 0..n {
            let mut c = KcpStream::connect(addr, config(n)).await.unwrap();
            c.send_msg(&(i as u32).to_le_bytes()).await.unwrap();
            clients.push(c);
            if i % 500 == 499 {
                tokio::task::yield_now().await;
            }
        }
        clients
    });
    eprintln!(
        "{n} clients connected in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    writeln!(stdin, "go").unwrap();
    let result = wait_for("RESULT ", Duration::from_secs(idle as u64 + 120));
    eprintln!("{result}");
    let field = |name: &str| -> f64 {
        result
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    assert_eq!(field("sessions") as usize, n, "{result}");
    let _ = child.kill();
    let _ = child.wait();
    drop(clients);
    drop(rt);
    assert!(field("rss_mib") < 512.0, "{result}");
    assert!(field("cpu_percent") < 1.0, "{result}");
}

/// The listener half of `ten_thousand_idle_sessions`, in a process of its
/// own; does nothing unless started by it.
#[test]
#[ignore = "run by ten_thousand_idle_sessions"]
fn idle_listener_process() {
    if std::env::var("KCP_IDLE_CHILD").is_err() {
        return;
    }
    // Never outlive the parent for long.
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(600));
        std::process::exit(3);
    });
    let n = env_or("KCP_IDLE_SESSIONS", 10_000);
    let idle = env_or("KCP_IDLE_SECS", 60) as u64;
    let rss0 = rss_kib();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let listener = KcpListener::bind("127.0.0.1:0", config(n)).await.unwrap();
        println!("LISTENING {}", listener.local_addr().unwrap());
        let mut servers = Vec::with_capacity(n);
        for _ in 0..n {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 16];
            let got = s.recv_msg(&mut buf).await.unwrap();
            assert_eq!(got, 4);
            servers.push(s);
        }
        // Wait for the parent's "go" (every client connected), without
        // blocking the runtime.
        tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
        })
        .await
        .unwrap();
        // Let the first exchanges settle.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let rss1 = rss_kib();
        let before = listener.stats();
        let cpu0 = cpu_time();
        tokio::time::sleep(Duration::from_secs(idle)).await;
        let cpu_secs = (cpu_time() - cpu0).as_secs_f64();
        let st = listener.stats();
        println!(
            "RESULT sessions={} rss_mib={:.1} kib_per_session={:.1} cpu_secs={:.2} cpu_percent={:.2} \
             idle_secs={idle} datagrams_in={} datagrams_out={}",
            st.sessions_active,
            rss1 as f64 / 1024.0,
            (rss1 - rss0) as f64 / n as f64,
            cpu_secs,
            cpu_secs / idle as f64 * 100.0,
            st.datagrams_in - before.datagrams_in,
            st.datagrams_out - before.datagrams_out,
        );
        drop(servers);
    });
}
