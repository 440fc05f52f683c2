//! The session layer's steady state: a 64-byte ping-pong over loopback
//! allocates nothing, and a bulk transfer a few times per 16 KiB whatever
//! the size of its writes. Both ends and the tasks run on one thread (a
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
    let mut modes = vec![("message", SessionConfig::default()), ("stream", stream)];
    #[cfg(feature = "fec")]
    modes.push((
        "message mode with FEC 4+2",
        SessionConfig {
            fec: Some(kcp_rs::fec::FecConfig::balanced()),
            ..SessionConfig::default()
        },
    ));
    for (mode, cfg) in modes {
        let per = timeout(Duration::from_secs(20), allocations_per_round_trip(cfg))
            .await
            .expect("ping-pong stalled");
        assert!(
            per == 0.0,
            "{mode} mode: {per:.3} allocations per round trip"
        );
    }
}

/// Allocations per MiB of a one-way stream transfer of `MIB` MiB after one
/// MiB of warm-up, in `write` calls of `piece` bytes.
async fn allocations_per_mib(piece: usize) -> f64 {
    const MIB: usize = 8;
    let cfg = SessionConfig {
        kcp: KcpConfig {
            stream: true,
            ..KcpConfig::fast()
        },
        ..SessionConfig::default()
    };
    let listener = KcpListener::bind("127.0.0.1:0", cfg.clone()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut c = KcpStream::connect(addr, cfg).await.unwrap();
    c.write_all(&[0u8; 1]).await.unwrap();
    let (mut s, _) = listener.accept().await.unwrap();
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        let mut total = 0usize;
        let mut sum = 0u64;
        while total < 1 + ((MIB + 1) << 20) {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "stream ended after {total} bytes");
            sum += buf[..n].iter().map(|&b| b as u64).sum::<u64>();
            total += n;
        }
        sum
    });
    let data: Vec<u8> = (0..piece).map(|i| (i % 251) as u8).collect();
    let per_mib = (1 << 20) / piece;
    let mut expect = 0u64;
    let mut count = 0;
    for mib in 0..=MIB {
        if mib == 1 {
            count = allocations();
        }
        for _ in 0..per_mib {
            c.write_all(&data).await.unwrap();
            expect += data.iter().map(|&b| b as u64).sum::<u64>();
        }
    }
    let during = allocations() - count;
    assert_eq!(reader.await.unwrap(), expect, "the bytes arrived changed");
    let per = during as f64 / MIB as f64;
    eprintln!("{piece}-byte writes: {during} allocations in {MIB} MiB ({per:.1} per MiB)");
    per
}

#[tokio::test]
async fn bulk_transfer_allocates_little() {
    for piece in [64, 1024, 64 * 1024] {
        let per = timeout(Duration::from_secs(30), allocations_per_mib(piece))
            .await
            .expect("transfer stalled");
        // Two per 16 KiB each way (a new buffer and its shared header, when
        // a burst still holds the last one), one per large chunk, a few in
        // the channels: 140-265 here. One per write would be 16,384 per MiB
        // for 64-byte writes and 1,024 for 1 KiB ones.
        assert!(
            per <= 384.0,
            "{piece}-byte writes: {per:.1} allocations per MiB"
        );
    }
}
