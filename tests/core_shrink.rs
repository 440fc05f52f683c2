//! `Kcp::shrink_to_fit`: after a burst, a quiet session gives its payload
//! pools back and returns to a new session's footprint; while data is queued,
//! in flight or waiting behind a gap, it releases nothing and loses nothing.
#![cfg(feature = "std")] // the simulation needs std

mod support;

use kcp_rs::sim::{LinkConfig, Outbox, Pair};
use kcp_rs::{Kcp, KcpConfig, KcpError};
use support::pair;

const WND: u16 = 1024;

fn config() -> KcpConfig {
    KcpConfig {
        snd_wnd: WND,
        rcv_wnd: WND,
        ..KcpConfig::fast()
    }
}

/// Message `i`: one full segment whose bytes depend on `i`.
fn message(i: u32, mss: usize) -> Vec<u8> {
    (0..mss).map(|j| (i as usize * 31 + j) as u8).collect()
}

/// Moves `count` full-segment messages from `a` to `b` over the lossy link,
/// calling `shrink_to_fit` on both sides after every step when `shrink`, and
/// checks each message's bytes and order. Returns the most bytes either side
/// held during the transfer.
fn transfer(p: &mut Pair, first: u32, count: u32, shrink: bool) -> usize {
    let mss = p.a.mss();
    let mut buf = vec![0u8; mss];
    let (mut sent, mut got) = (first, first);
    let end = first + count;
    let mut peak = 0;
    while got < end {
        while sent < end {
            match p.a.send(&message(sent, mss)) {
                Ok(_) => sent += 1,
                Err(KcpError::BufferFull) => break,
                Err(e) => panic!("{e}"),
            }
        }
        p.step(10);
        while let Ok(n) = p.b.recv(&mut buf) {
            assert_eq!(&buf[..n], &message(got, mss)[..], "message {got}");
            got += 1;
        }
        peak = peak.max(p.a.memory_footprint().max(p.b.memory_footprint()));
        if shrink {
            // Whatever is queued, in flight or unread here must stay where
            // it is: a pool with a block in use stays whole.
            let before = (p.a.wait_snd(), p.b.queued_recv());
            p.a.shrink_to_fit();
            p.b.shrink_to_fit();
            assert_eq!(before, (p.a.wait_snd(), p.b.queued_recv()));
        }
        assert!(p.now() < 600_000, "stalled at {got} of {end}");
    }
    // Let the last ACKs arrive.
    for _ in 0..100 {
        if p.a.wait_snd() == 0 {
            break;
        }
        p.step(10);
    }
    assert_eq!(p.a.wait_snd(), 0, "everything acknowledged");
    peak
}

#[test]
fn a_quiet_session_returns_to_a_new_sessions_footprint() {
    let fresh = Kcp::with_config(1, Outbox::default(), config())
        .unwrap()
        .memory_footprint();
    let mut p = pair(config(), LinkConfig::lossy(0.05), 7, 0);
    assert_eq!(p.a.memory_footprint(), fresh);

    let peak = transfer(&mut p, 0, 5_000, false);
    // The burst grew the pools well past a new session's (a window's worth
    // of blocks is ~1.4 MB at this MTU).
    assert!(peak > fresh + 500_000, "peak {peak}, fresh {fresh}");
    let held = (p.a.memory_footprint(), p.b.memory_footprint());
    assert!(
        held.0 > fresh + 100_000 && held.1 > fresh + 100_000,
        "{held:?}"
    );

    assert_eq!((p.a.segments_held(), p.b.segments_held()), (0, 0));
    let released = (p.a.shrink_to_fit(), p.b.shrink_to_fit());
    assert_eq!(released, (held.0 - fresh, held.1 - fresh));
    assert_eq!(
        (p.a.memory_footprint(), p.b.memory_footprint()),
        (fresh, fresh)
    );
    assert_eq!((p.a.shrink_to_fit(), p.b.shrink_to_fit()), (0, 0));

    // The next burst grows them again and moves everything intact.
    let peak = transfer(&mut p, 5_000, 2_000, false);
    assert!(peak > fresh + 500_000, "peak {peak}");
}

#[test]
fn shrinking_during_a_transfer_releases_nothing_in_use() {
    let mut p = pair(config(), LinkConfig::lossy(0.1), 11, 0);
    // Without the shrink calls, for comparison: the same seed moves the same
    // traffic, so the two runs must end alike.
    let mut q = pair(config(), LinkConfig::lossy(0.1), 11, 0);
    transfer(&mut p, 0, 3_000, true);
    transfer(&mut q, 0, 3_000, false);
    assert_eq!(p.a.stats(), q.a.stats());
    assert_eq!(p.b.stats(), q.b.stats());
    assert!(p.a.stats().retransmits + p.a.stats().fast_retransmits > 100);
}

#[test]
fn a_direction_still_in_use_keeps_its_pool() {
    let mut p = pair(config(), LinkConfig::perfect(), 3, 0);
    transfer(&mut p, 0, 500, false);
    // Queue 50 messages without flushing: a's send pool is in use; b read
    // everything, so its receive pool is free (and a's never grew: a only
    // received ACKs).
    for i in 0..50 {
        p.a.send(&message(i, p.a.mss())).unwrap();
    }
    assert_eq!(p.a.segments_held(), 50);
    let before = p.a.memory_footprint();
    assert_eq!(p.a.shrink_to_fit(), 0, "50 messages queued");
    assert_eq!(p.a.memory_footprint(), before);
    let b_before = p.b.memory_footprint();
    assert!(p.b.shrink_to_fit() > 0, "the receiver read everything");
    assert!(p.b.memory_footprint() < b_before);
    // The queued messages still arrive intact (a transfer of no new
    // messages: steps until everything is acknowledged).
    transfer(&mut p, 50, 0, false);
    let mut buf = vec![0u8; p.a.mss()];
    for i in 0..50 {
        let n = p.b.recv(&mut buf).expect("queued message");
        assert_eq!(&buf[..n], &message(i, p.a.mss())[..]);
    }
}
