//! Sequence numbers and the millisecond clock crossing `u32::MAX` under
//! loss: both are compared over the half range, so nothing may notice.
#![cfg(feature = "std")] // the simulation needs std

mod support;

use kcp_rs::codec::Segments;
use kcp_rs::constants::CMD_PUSH;
use kcp_rs::sim::{Link, LinkConfig, Outbox, Rng};
use kcp_rs::{Kcp, KcpConfig};
use support::{messages, pair, run, MessageFlow, StreamFlow};

const NEAR_MAX_SN: u32 = u32::MAX - 40;

fn with_sn(cfg: KcpConfig, sn: u32) -> KcpConfig {
    KcpConfig {
        initial_sn: sn,
        ..cfg
    }
}

/// First transmissions `a` made: each used a fresh sequence number.
fn sequence_numbers_used(p: &kcp_rs::sim::Pair) -> u64 {
    let s = p.a.stats();
    s.out_segments - s.retransmits - s.fast_retransmits
}

fn messages_case(cfg: KcpConfig, loss: f64, seed: u64, epoch: u32) -> kcp_rs::sim::Pair {
    let mut p = pair(cfg, LinkConfig::lossy(loss), seed, epoch);
    let mut rng = Rng::new(seed);
    let mut flow = MessageFlow::new(messages(&mut rng, 300, cfg.mss(), 6), cfg.max_message());
    run(&mut p, &mut flow, None, 5, 3_600_000);
    assert!(p.a.stats().retransmits + p.a.stats().fast_retransmits > 0);
    p
}

#[test]
fn sn_crosses_u32_max_under_loss() {
    for (cfg, loss, seed) in [
        (KcpConfig::fast(), 0.1, 1),
        (KcpConfig::fast(), 0.3, 2),
        (KcpConfig::default(), 0.1, 3),
        (KcpConfig::default(), 0.3, 4),
    ] {
        let p = messages_case(with_sn(cfg, NEAR_MAX_SN), loss, seed, 0);
        // More than 41 fresh numbers from u32::MAX - 40 means sn wrapped.
        assert!(sequence_numbers_used(&p) > 200, "{:?}", p.a.stats());
    }
}

#[test]
fn sn_crosses_u32_max_in_stream_mode() {
    let cfg = KcpConfig {
        stream: true,
        ..with_sn(KcpConfig::fast(), NEAR_MAX_SN)
    };
    let mut p = pair(cfg, LinkConfig::lossy(0.2), 5, 0);
    let mut flow = StreamFlow::new(500_000, 5);
    run(&mut p, &mut flow, None, 5, 3_600_000);
    assert!(sequence_numbers_used(&p) > 300);
}

#[test]
fn clock_crosses_u32_max_under_loss() {
    for (cfg, loss, seed) in [
        (KcpConfig::fast(), 0.1, 11),
        (KcpConfig::fast(), 0.3, 12),
        (KcpConfig::default(), 0.1, 13),
        (KcpConfig::default(), 0.3, 14),
    ] {
        // The sessions' clock starts 300 ms before the wrap; the transfer
        // takes longer than that (asserted), so the wrap happens mid-transfer.
        let epoch = u32::MAX - 300;
        let p = messages_case(cfg, loss, seed, epoch);
        assert!(p.now() > 600, "transfer ended before the wrap");
        assert!(p.clock() < 1_000_000_000, "clock wrapped: {}", p.clock());
        // RTT estimates stayed sane: a wrap read the wrong way would give
        // ~49 days, clamped to 60 s.
        assert!(p.a.rtt() < 1_000, "rtt {}", p.a.rtt());
        assert!(p.a.rto() < 5_000, "rto {}", p.a.rto());
    }
}

#[test]
fn sn_and_clock_cross_together() {
    for (cfg, seed) in [(KcpConfig::fast(), 21), (KcpConfig::default(), 22)] {
        // Both wrap within the first seconds of the transfer.
        let p = messages_case(with_sn(cfg, NEAR_MAX_SN), 0.2, seed, u32::MAX - 300);
        assert!(sequence_numbers_used(&p) > 200);
        assert!(p.now() > 600);
        assert!(p.a.rtt() < 1_000 && p.b.rtt() < 1_000);
    }
    // And in both directions at once.
    let cfg = with_sn(KcpConfig::fast(), u32::MAX - 3);
    let mut p = pair(cfg, LinkConfig::lossy(0.2), 23, u32::MAX - 300);
    let mut rng = Rng::new(23);
    let mut ab = MessageFlow::new(messages(&mut rng, 200, cfg.mss(), 4), cfg.max_message());
    let mut ba = MessageFlow::new(messages(&mut rng, 200, cfg.mss(), 4), cfg.max_message());
    run(&mut p, &mut ab, Some(&mut ba), 5, 3_600_000);
}

/// The wire really carries sequence numbers on both sides of the wrap, in
/// one run, and the receiver delivers them as one ordered sequence. Built
/// from the sim's parts rather than `Pair`, to tap the datagrams.
#[test]
fn wire_shows_the_wrap() {
    let cfg = with_sn(KcpConfig::fast(), u32::MAX - 5);
    let mut a = Kcp::with_config(9, Outbox::default(), cfg).unwrap();
    let mut b = Kcp::with_config(9, Outbox::default(), cfg).unwrap();
    let mut ab = Link::new(LinkConfig::lossy(0.2), 31);
    let mut ba = Link::new(LinkConfig::lossy(0.2), 32);
    let epoch = u32::MAX - 100;
    let (mut seen_high, mut seen_low) = (false, false);
    for i in 0..20u32 {
        a.send(&i.to_le_bytes()).unwrap();
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 16];
    for now in (0..10_000u64).step_by(5) {
        let clock = epoch.wrapping_add(now as u32);
        ab.deliver(now, |d| {
            for (h, _) in Segments::new(d).map(Result::unwrap) {
                if h.cmd == CMD_PUSH {
                    seen_high |= h.sn.get() >= u32::MAX - 5;
                    seen_low |= h.sn.get() < 20;
                }
            }
            b.input(d).unwrap();
        });
        ba.deliver(now, |d| a.input(d).unwrap());
        a.update(clock);
        b.update(clock);
        a.output_mut().drain(|d| ab.send(now, d));
        b.output_mut().drain(|d| ba.send(now, d));
        while let Ok(n) = b.recv(&mut buf) {
            got.push(u32::from_le_bytes(buf[..n].try_into().unwrap()));
        }
        if got.len() == 20 && a.wait_snd() == 0 {
            break;
        }
    }
    assert_eq!(got, (0..20).collect::<Vec<_>>());
    assert!(seen_high && seen_low, "high {seen_high}, low {seen_low}");
    assert_eq!(a.wait_snd(), 0);
}

/// `check` across the clock wrap names a time a few ms ahead, never ~2^32
/// ms ahead or behind.
#[test]
fn check_across_clock_wrap() {
    let cfg = KcpConfig::fast();
    let mut p = pair(cfg, LinkConfig::lossy(0.1), 41, u32::MAX - 500);
    let mut rng = Rng::new(41);
    let mut flow = MessageFlow::new(messages(&mut rng, 50, cfg.mss(), 3), cfg.max_message());
    use support::Flow;
    for _ in 0..400 {
        flow.push(&mut p.a);
        p.step(5);
        flow.pull(&mut p.b);
        for kcp in [&p.a, &p.b] {
            let clock = p.clock();
            let ahead = kcp.check(clock).wrapping_sub(clock);
            assert!(ahead <= 10_000, "check {ahead} ms ahead at clock {clock}");
        }
    }
    assert!(flow.done());
    assert!(p.clock() < 2_000);
}
