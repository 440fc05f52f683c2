//! The session layer's steady state allocates nothing: a 64-byte ping-pong
//! over loopback, both ends and the echo task on one thread (a
//! current-thread runtime), counted by a global allocator after a warm-up.
#![cfg(feature = "tokio")]

#[path = "support/counting_alloc.rs"]
mod counting_alloc;

use std::time::Duration;

use counting_alloc::{allocations, Counting};
use kcp_rs::net::{KcpListener, KcpStream, SessionConfig};
use kcp_rs::KcpConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

#[global_allocator]
static GLOBAL: Counting = Counting;

const WARMUP: u64 = 500;
const ROUNDS: u64 = 2_000;

/// Allocations per round trip of `ROUNDS` 64-byte exchanges after `WARMUP`.
async fn allocations_per_round_trip(cfg: SessionConfig) -> f64 {
    let listener = KcpListener::bind("127.0.0.1:0", cfg.clone()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut c = KcpStream::connect(addr, cfg).await.unwrap();
    c.write_all(&[0u8; 64]).await.unwrap();
    let (mut s, _) = listener.accept().await.unwrap();
    let echo = tokio::spawn(async move {
        let mut b = [0u8; 64];
        loop {
            s.read_exact(&mut b).await?;
            s.write_all(&b).await?;
        }
        #[allow(unreachable_code)]
        std::io::Result::Ok(())
    });
    c.read_exact(&mut [0u8; 64]).await.unwrap();
    for i in 0..WARMUP {
        round_trip(&mut c, i).await;
    }
    let before = allocations();
    for i in WARMUP..WARMUP + ROUNDS {
        round_trip(&mut c, i).await;
    }
    let during = allocations() - before;
    echo.abort();
    let per = during as f64 / ROUNDS as f64;
    eprintln!("{during} allocations in {ROUNDS} round trips ({per:.3} each)");
    per
}

/// Message `i` out and back, checked.
async fn round_trip(c: &mut KcpStream, i: u64) {
    let mut msg = [0u8; 64];
    msg[..8].copy_from_slice(&i.to_le_bytes());
    c.write_all(&msg).await.unwrap();
    let mut back = [0u8; 64];
    c.read_exact(&mut back).await.unwrap();
    assert_eq!(back, msg, "round {i}");
}

#[tokio::test]
async fn ping_pong_steady_state_allocates_nothing() {
    let stream = SessionConfig {
        kcp: KcpConfig {
            stream: true,
            ..SessionConfig::default().kcp
        },
        ..SessionConfig::default()
    };
    for (mode, cfg) in [("message", SessionConfig::default()), ("stream", stream)] {
        let per = timeout(Duration::from_secs(20), allocations_per_round_trip(cfg))
            .await
            .expect("ping-pong stalled");
        assert!(
            per == 0.0,
            "{mode} mode: {per:.3} allocations per round trip"
        );
    }
}
