//! Data moved between two cores over the seeded lossy link (`sim::Pair`):
//! loss, 20–40 ms of reordering delay and 1% duplicates both ways. Every
//! byte must arrive exactly once and in order; content is compared, not
//! counted.
#![cfg(feature = "std")] // the simulation needs std

mod support;

use kcp_rs::sim::{LinkConfig, Rng};
use kcp_rs::KcpConfig;
use support::{messages, pair, run, MessageFlow, StreamFlow};

const STEP_MS: u64 = 5;

fn message_case(cfg: KcpConfig, loss: f64, seed: u64, count: usize) {
    let mut p = pair(cfg, LinkConfig::lossy(loss), seed, 0);
    let mut rng = Rng::new(seed);
    let msgs = messages(&mut rng, count, cfg.mss(), 12);
    assert!(
        msgs.iter().any(Vec::is_empty),
        "the mix must include empty messages"
    );
    assert!(
        msgs.iter().any(|m| m.len() > 4 * cfg.mss()),
        "and multi-fragment ones"
    );
    let mut flow = MessageFlow::new(msgs, cfg.max_message());
    run(&mut p, &mut flow, None, STEP_MS, 3_600_000);
    check_link_did_its_job(&p, loss);
}

fn stream_case(cfg: KcpConfig, loss: f64, seed: u64, bytes: usize) {
    let cfg = KcpConfig {
        stream: true,
        ..cfg
    };
    let mut p = pair(cfg, LinkConfig::lossy(loss), seed, 0);
    let mut flow = StreamFlow::new(bytes, seed);
    run(&mut p, &mut flow, None, STEP_MS, 3_600_000);
    check_link_did_its_job(&p, loss);
}

/// The faults were really applied: a test on a link that lost nothing would
/// prove nothing.
fn check_link_did_its_job(p: &kcp_rs::sim::Pair, loss: f64) {
    let (ab, ba) = (p.ab.stats(), p.ba.stats());
    assert!(ab.sent > 50, "{ab:?}");
    assert!(ab.duplicated > 0 || ba.duplicated > 0, "{ab:?} {ba:?}");
    if loss > 0.0 {
        let share = ab.dropped as f64 / ab.sent as f64;
        assert!(
            (share - loss).abs() < 0.08,
            "asked {loss}, lost {share}: {ab:?}"
        );
        assert!(p.a.stats().retransmits + p.a.stats().fast_retransmits > 0);
    } else {
        assert_eq!(ab.dropped + ba.dropped, 0);
    }
}

macro_rules! cases {
    ($($name:ident: $kind:ident, $cfg:expr, $loss:expr, $seed:expr, $n:expr;)*) => {$(
        #[test]
        fn $name() {
            $kind($cfg, $loss, $seed, $n);
        }
    )*};
}

cases! {
    message_default_0: message_case, KcpConfig::default(), 0.0, 1, 400;
    message_default_10: message_case, KcpConfig::default(), 0.1, 2, 400;
    message_default_30: message_case, KcpConfig::default(), 0.3, 3, 300;
    message_fast_0: message_case, KcpConfig::fast(), 0.0, 4, 1000;
    message_fast_10: message_case, KcpConfig::fast(), 0.1, 5, 1000;
    message_fast_30: message_case, KcpConfig::fast(), 0.3, 6, 1000;
    stream_default_0: stream_case, KcpConfig::default(), 0.0, 7, 1_000_000;
    stream_default_10: stream_case, KcpConfig::default(), 0.1, 8, 1_000_000;
    stream_default_30: stream_case, KcpConfig::default(), 0.3, 9, 500_000;
    stream_fast_0: stream_case, KcpConfig::fast(), 0.0, 10, 2_000_000;
    stream_fast_10: stream_case, KcpConfig::fast(), 0.1, 11, 2_000_000;
    stream_fast_30: stream_case, KcpConfig::fast(), 0.3, 12, 2_000_000;
}

/// Both directions at once: each session's ACKs ride with its own data.
#[test]
fn bidirectional_messages_and_stream() {
    for (cfg, loss, seed) in [
        (KcpConfig::fast(), 0.1, 21),
        (KcpConfig::default(), 0.3, 22),
    ] {
        let mut p = pair(cfg, LinkConfig::lossy(loss), seed, 0);
        let mut rng = Rng::new(seed);
        let mut ab = MessageFlow::new(messages(&mut rng, 120, cfg.mss(), 8), cfg.max_message());
        let mut ba = MessageFlow::new(messages(&mut rng, 120, cfg.mss(), 8), cfg.max_message());
        run(&mut p, &mut ab, Some(&mut ba), STEP_MS, 600_000);
        check_link_did_its_job(&p, loss);
        assert!(p.b.stats().retransmits + p.b.stats().fast_retransmits > 0);
    }
    let cfg = KcpConfig {
        stream: true,
        ..KcpConfig::fast()
    };
    let mut p = pair(cfg, LinkConfig::lossy(0.1), 23, 0);
    let mut ab = StreamFlow::new(150_000, 24);
    let mut ba = StreamFlow::new(150_000, 25);
    run(&mut p, &mut ab, Some(&mut ba), STEP_MS, 600_000);
}

/// A stream read through a one-byte buffer still reads every byte in order.
#[test]
fn stream_read_one_byte_at_a_time() {
    let cfg = KcpConfig {
        stream: true,
        ..KcpConfig::fast()
    };
    let mut p = pair(cfg, LinkConfig::lossy(0.1), 31, 0);
    let mut data = vec![0u8; 20_000];
    Rng::new(31).fill(&mut data);
    let (mut sent, mut got) = (0, Vec::new());
    while got.len() < data.len() {
        if sent < data.len() {
            sent += p.a.send(&data[sent..]).unwrap_or(0);
        }
        p.step(STEP_MS);
        let mut b = [0u8; 1];
        while let Ok(n) = p.b.recv(&mut b) {
            assert_eq!(n, 1);
            got.push(b[0]);
        }
        assert!(p.now() < 300_000);
    }
    assert!(got == data);
}
