//! Bulk throughput of one session over loopback, and of many sessions on
//! one listener; `#[ignore]`d (they measure, they do not check much). Run
//! them in release, one at a time, and read the printed MB/s:
//!
//! ```text
//! cargo test --release --all-features --test net_throughput -- --ignored --nocapture --test-threads 1
//! ```
//! `KCP_BULK_MB` sets the megabytes per run (default 256).
//! The numbers are recorded in `docs/net_performance.md`.

use std::time::{Duration, Instant};

use kcp_rs::net::{KcpListener, KcpStream, SessionConfig};
use kcp_rs::KcpConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

fn megabytes() -> usize {
    std::env::var("KCP_BULK_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

/// A configuration for bulk transfer: stream mode, large windows.
pub fn bulk_config() -> SessionConfig {
    SessionConfig {
        kcp: KcpConfig {
            stream: true,
            snd_wnd: 1024,
            rcv_wnd: 1024,
            ..KcpConfig::fast()
        },
        send_queue_limit: 4 << 20,
        recv_queue_limit: 4 << 20,
        ..SessionConfig::default()
    }
}

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
