//! Bulk throughput of one session over loopback, and of many sessions on
//! one listener; `#[ignore]`d (they measure, they do not check much). Run
//! them in release, one at a time, and read the printed MB/s:
//!
//! ```text
//! cargo test --release --all-features --test net_throughput -- --ignored --nocapture --test-threads 1
//! ```
//! `KCP_BULK_MB` sets the megabytes per run (default 256).
//! The numbers are recorded in `docs/net_performance.md`.
#![cfg(feature = "tokio")]

use std::time::{Duration, Instant};

use kcp_rs::net::{KcpListener, KcpStream, SessionConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

fn megabytes() -> usize {
    std::env::var("KCP_BULK_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

#[path = "support/bulk_config.rs"]
mod bulk_config;
use bulk_config::bulk_config;

/// Sends `bytes` from a client to the listener's session; returns MB/s
/// measured at the receiver (first byte of the connect to last byte read).
async fn one_way(listener: &KcpListener, cfg: SessionConfig, bytes: usize) -> f64 {
    let addr = listener.local_addr().unwrap();
    let start = Instant::now();
    let mut c = KcpStream::connect(addr, cfg).await.unwrap();
    let writer = tokio::spawn(async move {
        let chunk = vec![0xA5u8; 64 << 10];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(chunk.len());
            c.write_all(&chunk[..n]).await.unwrap();
            left -= n;
        }
        c.shutdown().await.unwrap();
        c
    });
    let (mut s, _) = listener.accept().await.unwrap();
    let mut buf = vec![0u8; 256 << 10];
    let mut got = 0;
    while got < bytes {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0);
        got += n;
    }
    let secs = start.elapsed().as_secs_f64();
    let c = writer.await.unwrap();
    let st = c.stats();
    eprintln!(
        "  {} MiB in {secs:.2} s; client datagrams out {} (retransmits {}), send drops {}",
        bytes >> 20,
        st.kcp.out_datagrams,
        st.kcp.retransmits,
        st.send_dropped
    );
    bytes as f64 / secs / 1e6
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run in release on purpose"]
async fn single_session_bulk_throughput() {
    let bytes = megabytes() << 20;
    let cfg = bulk_config();
    let listener = KcpListener::bind("127.0.0.1:0", cfg.clone()).await.unwrap();
    let mut best: f64 = 0.0;
    for _ in 0..3 {
        let mbs = timeout(
            Duration::from_secs(120),
            one_way(&listener, cfg.clone(), bytes),
        )
        .await
        .expect("transfer timed out");
        eprintln!("single session: {mbs:.0} MB/s");
        best = best.max(mbs);
    }
    eprintln!("single session bulk, best of 3: {best:.0} MB/s");
}

/// `clients` sessions each send `bytes / clients` at once to a listener on
/// `sockets` sockets; the clients run on a runtime of their own. Returns
/// the aggregate MB/s at the server.
fn many_clients(sockets: usize, clients: usize, bytes: usize) -> f64 {
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let cfg = bulk_config();
    let listener = server_rt
        .block_on(KcpListener::bind_reuseport(
            "127.0.0.1:0",
            cfg.clone(),
            sockets,
        ))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let each = bytes / clients;
    let start = Instant::now();
    let server = server_rt.spawn(async move {
        let mut readers = Vec::new();
        for _ in 0..clients {
            let (mut s, _) = listener.accept().await.unwrap();
            readers.push(tokio::spawn(async move {
                let mut buf = vec![0u8; 256 << 10];
                let mut got = 0;
                while got < each {
                    let n = s.read(&mut buf).await.unwrap();
                    assert!(n > 0);
                    got += n;
                }
                s
            }));
        }
        let mut sessions = Vec::new();
        for r in readers {
            sessions.push(r.await.unwrap());
        }
        (Instant::now(), listener, sessions)
    });
    let writers: Vec<_> = (0..clients)
        .map(|_| {
            let cfg = cfg.clone();
            client_rt.spawn(async move {
                let mut c = KcpStream::connect(addr, cfg).await.unwrap();
                let chunk = vec![0x5Au8; 64 << 10];
                let mut left = each;
                while left > 0 {
                    let n = left.min(chunk.len());
                    c.write_all(&chunk[..n]).await.unwrap();
                    left -= n;
                }
                c.shutdown().await.unwrap();
                c
            })
        })
        .collect();
    let (end, listener, _sessions) = server_rt
        .block_on(async { timeout(Duration::from_secs(120), server).await })
        .expect("transfer timed out")
        .unwrap();
    let _clients: Vec<KcpStream> = client_rt.block_on(async {
        let mut v = Vec::new();
        for w in writers {
            v.push(w.await.unwrap());
        }
        v
    });
    let secs = end.duration_since(start).as_secs_f64();
    let st = listener.stats();
    eprintln!(
        "  {sockets} socket(s), {clients} clients, {} MiB in {secs:.2} s; listener datagrams in {} out {}, send errors {}",
        bytes >> 20,
        st.datagrams_in,
        st.datagrams_out,
        st.send_errors
    );
    (each * clients) as f64 / secs / 1e6
}

#[test]
#[ignore = "measurement; run in release on purpose"]
fn many_clients_throughput_one_and_two_sockets() {
    let bytes = megabytes() << 20;
    for sockets in [1, 2] {
        let mut best: f64 = 0.0;
        for _ in 0..3 {
            best = best.max(many_clients(sockets, 16, bytes));
        }
        eprintln!("{sockets} socket(s), 16 clients, aggregate best of 3: {best:.0} MB/s");
    }
}
