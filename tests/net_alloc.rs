//! The session layer's steady state: a 64-byte ping-pong over loopback
//! allocates nothing, and a bulk transfer a few times per 16 KiB whatever
//! the size of its writes. Both ends and the tasks run on one thread (a
//! current-thread runtime), counted by a global allocator after a warm-up.
#![cfg(feature = "tokio")]

#[path = "support/counting_alloc.rs"]
mod counting_alloc;

use std::future::Future;
use std::time::Duration;

use counting_alloc::{allocations, Counting};
use kcp_rs::net::{KcpListener, KcpStream, SessionConfig};
use kcp_rs::KcpConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A client and the server end the listener accepted for it, after one byte
/// from the client (which is what opens the session there). The listener
/// must live as long as the sessions.
async fn connected(cfg: SessionConfig) -> (KcpListener, KcpStream, KcpStream) {
    let listener = KcpListener::bind("127.0.0.1:0", cfg.clone()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut c = KcpStream::connect(addr, cfg).await.unwrap();
    c.write_all(&[7]).await.unwrap();
    let (mut s, _) = listener.accept().await.unwrap();
    let mut hello = [0u8];
    s.read_exact(&mut hello).await.unwrap();
    assert_eq!(hello, [7]);
    (listener, c, s)
}

/// A pause long enough for FEC's early close (a quarter of the 30 ms
/// minimum RTO).
const QUIET: Duration = Duration::from_millis(20);

/// Allocations per round trip of `rounds` 64-byte exchanges after as many
/// for warm-up, with a `QUIET` pause after every third when `pause` (so that
/// FEC, with groups of 4, closes each group early), and the FEC parity
/// packets the client sent meanwhile.
async fn allocations_per_round_trip(cfg: SessionConfig, rounds: u64, pause: bool) -> (f64, u64) {
    let (_listener, mut c, mut s) = connected(cfg).await;
    let echo = tokio::spawn(async move {
        let mut b = [0u8; 64];
        loop {
            s.read_exact(&mut b).await?;
            s.write_all(&b).await?;
        }
        #[allow(unreachable_code)]
        std::io::Result::Ok(())
    });
    let (mut before, mut parity) = (0, 0);
    for i in 0..2 * rounds {
        if i == rounds {
            parity = c.stats().fec_parity_sent;
            before = allocations();
        }
        round_trip(&mut c, i).await;
        // The warm-up pauses a few times whatever `pause` says: the socket
        // task's output buffers grow to its largest flush and stay, and the
        // largest here is an FEC group closed early (data, empty packets
        // and parity at once), which a busy run may meet by chance. The
        // pauses come 1 to 4 messages apart, to close groups of each fill.
        let warm_up_pause = i < rounds && [0, 2, 5, 9].contains(&i);
        if warm_up_pause || (pause && i % 3 == 2) {
            tokio::time::sleep(QUIET).await;
        }
    }
    let during = allocations() - before;
    let parity = c.stats().fec_parity_sent - parity;
    echo.abort();
    let per = during as f64 / rounds as f64;
    eprintln!("{during} allocations in {rounds} round trips ({per:.3} each), {parity} parity");
    (per, parity)
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

/// Runs `measure` on a current-thread runtime of its own, within 30 s. The
/// runtime is dropped with everything on it before the next measurement
/// starts: sessions closing in the background (a closed session allocates
/// its close reason) must not count in another's.
fn alone<T>(measure: impl Future<Output = T>) -> T {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async { timeout(Duration::from_secs(30), measure).await })
        .expect("stalled")
}

#[test]
fn ping_pong_steady_state_allocates_nothing() {
    let stream = SessionConfig {
        kcp: KcpConfig {
            stream: true,
            ..SessionConfig::default().kcp
        },
        ..SessionConfig::default()
    };
    // (what, configuration, round trips, pauses)
    #[allow(unused_mut)]
    let mut runs = vec![
        ("message mode", SessionConfig::default(), 2_000, false),
        ("stream mode", stream, 2_000, false),
    ];
    #[cfg(feature = "fec")]
    {
        // `balanced()` closes groups early.
        let fec = SessionConfig {
            fec: Some(kcp_rs::fec::FecConfig::balanced()),
            ..SessionConfig::default()
        };
        runs.push(("FEC 4+2", fec.clone(), 2_000, false));
        runs.push(("FEC 4+2, pauses", fec, 99, true));
    }
    for (what, cfg, rounds, pause) in runs {
        let (per, parity) = alone(allocations_per_round_trip(cfg, rounds, pause));
        assert!(per == 0.0, "{what}: {per:.3} allocations per round trip");
        if pause {
            // Two parity packets per three messages: every group was
            // closed early (full groups of 4 would give 2 per 4).
            assert!(parity >= 2 * rounds / 3, "{what}: {parity} parity packets");
        }
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
    let (_listener, mut c, mut s) = connected(cfg).await;
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        let mut total = 0usize;
        let mut sum = 0u64;
        while total < (MIB + 1) << 20 {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "stream ended after {total} bytes");
            sum += buf[..n].iter().map(|&b| b as u64).sum::<u64>();
            total += n;
        }
        sum
    });
    let data: Vec<u8> = (0..piece).map(|i| (i % 251) as u8).collect();
    let per_mib = (1 << 20) / piece;
    let mut count = 0;
    for mib in 0..=MIB {
        if mib == 1 {
            count = allocations();
        }
        for _ in 0..per_mib {
            c.write_all(&data).await.unwrap();
        }
    }
    let during = allocations() - count;
    let expect = data.iter().map(|&b| b as u64).sum::<u64>() * ((MIB + 1) * per_mib) as u64;
    assert_eq!(reader.await.unwrap(), expect, "the bytes arrived changed");
    let per = during as f64 / MIB as f64;
    eprintln!("{piece}-byte writes: {during} allocations in {MIB} MiB ({per:.1} per MiB)");
    per
}

#[test]
fn bulk_transfer_allocates_little() {
    for piece in [64, 1024, 64 * 1024] {
        let per = alone(allocations_per_mib(piece));
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
