//! Idle sessions cost memory but no CPU. A stress test, `#[ignore]`d; run it
//! on purpose:
//!
//! ```text
//! cargo test --release --test net_idle_sessions -- --ignored --nocapture
//! ```
//! `KCP_IDLE_SESSIONS` sets the count (default 10 000 clients, each on a
//! socket of its own, so 20 000 sessions in the process with the server's;
//! it needs that many file descriptors).

use std::time::{Duration, Instant};

use kcp_rs::net::{KcpListener, KcpStream, SessionConfig};

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn cpu_secs() -> f64 {
    // utime + stime in clock ticks (100 Hz on Linux).
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = s
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let t = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (t(11) + t(12)) / 100.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "stress: 10 000 sessions; run on purpose"]
async fn ten_thousand_idle_sessions() {
    let n: usize = std::env::var("KCP_IDLE_SESSIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let cfg = SessionConfig {
        max_sessions: n + 10,
        max_sessions_per_ip: n + 10,
        accept_backlog: 1024,
        // The preset asks 8 MiB per socket; 10 000 idle client sockets do
        // not need it (the kernel only charges what is queued anyway).
        socket_recv_buffer: None,
        socket_send_buffer: None,
        ..SessionConfig::default()
    };
    let rss0 = rss_kib();
    let listener = KcpListener::bind("127.0.0.1:0", cfg.clone()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio::spawn(async move {
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(listener.accept().await.unwrap().0);
        }
        (listener, v)
    });
    let start = Instant::now();
    let mut clients = Vec::with_capacity(n);
    for i in 0..n {
        let mut c = KcpStream::connect(addr, cfg.clone()).await.unwrap();
        c.send_msg(&(i as u32).to_le_bytes()).await.unwrap();
        clients.push(c);
        if i % 500 == 499 {
            tokio::task::yield_now().await;
        }
    }
    let (listener, servers) = acceptor.await.unwrap();
    eprintln!(
        "{n} sessions opened in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    // Let the first exchanges settle.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss1 = rss_kib();
    let cpu0 = cpu_secs();
    let idle = Duration::from_secs(10);
    tokio::time::sleep(idle).await;
    let cpu1 = cpu_secs();
    let st = listener.stats();
    eprintln!(
        "{n} client + {n} server sessions: RSS {} MiB more ({:.1} KiB per session pair); \
         CPU over {idle:?} idle: {:.2} s ({:.1}% of one core); listener datagrams in {} out {}",
        (rss1 - rss0) / 1024,
        (rss1 - rss0) as f64 / n as f64,
        cpu1 - cpu0,
        (cpu1 - cpu0) / idle.as_secs_f64() * 100.0,
        st.datagrams_in,
        st.datagrams_out,
    );
    assert_eq!(st.sessions_active, n as u64);
    drop(servers);
    drop(clients);
}
