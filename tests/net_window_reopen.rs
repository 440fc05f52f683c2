//! A reader that falls behind shuts the receive window; when it catches
//! up, the window update must leave at once, not at the session's next
//! `interval` tick (up to a second here), or a bulk transfer crawls one
//! tick per window.
#![cfg(feature = "tokio")]

use std::time::{Duration, Instant};

use kcp_rs::net::{KcpListener, KcpStream, SessionConfig};
use kcp_rs::KcpConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BYTES: usize = 2 << 20;

fn config() -> SessionConfig {
    SessionConfig {
        kcp: KcpConfig {
            stream: true,
            // Flushes on the timer are a second apart: only a flush made at
            // the moment the window reopens keeps the transfer going.
            interval: 1000,
            snd_wnd: 32,
            rcv_wnd: 32,
            ..KcpConfig::fast()
        },
        recv_queue_limit: 16 << 10,
        ..SessionConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reopened_window_is_announced_at_once() {
    let cfg = config();
    let listener = KcpListener::bind("127.0.0.1:0", cfg.clone()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let data: Vec<u8> = (0..BYTES).map(|i| (i % 241) as u8).collect();
    let sent = data.clone();
    let writer = tokio::spawn(async move {
        let mut c = KcpStream::connect(addr, cfg).await.unwrap();
        c.write_all(&sent).await.unwrap();
        c.shutdown().await.unwrap();
        c
    });
    let (mut s, _) = listener.accept().await.unwrap();
    // Fall behind: the window shuts.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let mut got = vec![0u8; BYTES];
    tokio::time::timeout(Duration::from_secs(60), s.read_exact(&mut got))
        .await
        .expect("transfer stalled")
        .unwrap();
    let took = started.elapsed();
    let c = writer.await.unwrap();
    assert!(got == data, "bytes differ");
    let st = s.stats();
    eprintln!(
        "{} KiB through a 32-segment window in {took:?} after the reader caught up; \
         sender retransmits {}",
        BYTES >> 10,
        c.stats().kcp.retransmits
    );
    // About 48 windows: a flush at each reopening takes milliseconds in
    // all; waiting for the 1 s tick (or an RTO-later probe) takes seconds.
    assert!(
        took < Duration::from_millis(1500),
        "{took:?} for {} windows: reopenings wait for the timer ({st:?})",
        BYTES / (32 * 1376)
    );
}
