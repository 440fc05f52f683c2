//! Hostile and malformed datagrams: each is refused or handled like any
//! other segment, never panics, never corrupts the session and never grows
//! its memory past `memory_footprint_max()`.
//!
//! KCP has no authentication: a segment with the right `conv` and an
//! in-window `sn` is indistinguishable from the peer's. What we require of
//! such segments is that they are handled exactly as the peer's would be;
//! liveness is checked in the direction they cannot forge.
#![cfg(feature = "std")] // the simulation needs std

mod support;

use kcp_rs::codec::Header;
use kcp_rs::constants::{CMD_ACK, CMD_PUSH, CMD_WASK, CMD_WINS};
use kcp_rs::sequence::{Seq, Timestamp};
use kcp_rs::sim::{LinkConfig, Pair, Rng};
use kcp_rs::{KcpConfig, KcpError, KcpStats};
use proptest::prelude::*;
use support::{pair, SimKcp};

const CONV: u32 = 0x1234_5678;

fn header(cmd: u8, sn: u32, una: u32, len: u32) -> Header {
    Header {
        conv: CONV,
        cmd,
        frg: 0,
        wnd: 128,
        ts: Timestamp::new(0),
        sn: Seq::new(sn),
        una: Seq::new(una),
        len,
    }
}

/// Segments back to back; each header's `len` is written as given.
fn datagram(segs: &[(Header, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (h, body) in segs {
        let mut b = [0u8; Header::LEN];
        h.emit(&mut b);
        out.extend_from_slice(&b);
        out.extend_from_slice(body);
    }
    out
}

/// Everything observable about a session, minus the refusal counter.
#[derive(Debug, PartialEq)]
struct Snapshot {
    stats: KcpStats,
    wait_snd: u32,
    peek: Result<usize, KcpError>,
    queued: u32,
    rtt: u32,
    rto: u32,
    cwnd: u32,
    rmt_wnd: u32,
    dead: bool,
    memory: usize,
    check: u32,
}

fn snapshot(k: &SimKcp, clock: u32) -> Snapshot {
    let mut stats = *k.stats();
    stats.dropped_datagrams = 0;
    Snapshot {
        stats,
        wait_snd: k.wait_snd(),
        peek: k.peek_size(),
        queued: k.queued_recv(),
        rtt: k.rtt(),
        rto: k.rto(),
        cwnd: k.cwnd(),
        rmt_wnd: k.remote_window(),
        dead: k.is_dead(),
        memory: k.memory_footprint(),
        check: k.check(clock),
    }
}

fn assert_memory_bounded(k: &SimKcp) {
    assert!(
        k.memory_footprint() <= k.memory_footprint_max(),
        "{} > {}",
        k.memory_footprint(),
        k.memory_footprint_max()
    );
}

/// One-fragment messages `tag‖index`, a→b, `n` of them.
fn send_numbered(k: &mut SimKcp, tag: u8, from: u32, n: u32) {
    for i in from..from + n {
        let mut m = [tag; 5];
        m[1..].copy_from_slice(&i.to_le_bytes());
        k.send(&m).unwrap();
    }
}

/// Steps until `rx` delivered `n` messages, returns them.
fn receive_n(p: &mut Pair, n: usize, to_a: bool, limit_ms: u64) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 200_000];
    let start = p.now();
    while got.len() < n {
        p.step(5);
        let rx = if to_a { &mut p.a } else { &mut p.b };
        while let Ok(len) = rx.recv(&mut buf) {
            got.push(buf[..len].to_vec());
        }
        assert!(
            p.now() - start < limit_ms,
            "only {} of {n} messages after {limit_ms} ms",
            got.len()
        );
    }
    got
}

fn numbered(tag: u8, from: u32, n: u32) -> Vec<Vec<u8>> {
    (from..from + n)
        .map(|i| {
            let mut m = vec![tag; 5];
            m[1..].copy_from_slice(&i.to_le_bytes());
            m
        })
        .collect()
}

/// Steps until nothing is in flight or in transit.
fn quiesce(p: &mut Pair) {
    let start = p.now();
    while p.a.wait_snd() + p.b.wait_snd() > 0
        || p.ab.in_transit() + p.ba.in_transit() > 0
        || !p.a.output().is_empty()
        || !p.b.output().is_empty()
    {
        p.step(5);
        assert!(p.now() - start < 60_000, "never quiet");
    }
    // One more flush so that pending ACKs are out and delivered.
    for _ in 0..20 {
        p.step(5);
    }
}

/// A pair mid-conversation: 10 messages delivered a→b, 10 more in flight on
/// a link that loses and reorders, some of them not yet delivered.
fn busy_pair(seed: u64) -> Pair {
    let mut p = pair(KcpConfig::fast(), LinkConfig::lossy(0.2), seed, 1_000_000);
    send_numbered(&mut p.a, b'a', 0, 10);
    assert_eq!(receive_n(&mut p, 10, false, 10_000), numbered(b'a', 0, 10));
    send_numbered(&mut p.a, b'a', 10, 10);
    send_numbered(&mut p.b, b'b', 0, 3);
    p.step(5);
    p.step(5);
    p
}

/// `busy_pair` after every message was read and everything was ACKed.
fn quiet_pair(seed: u64) -> Pair {
    let mut p = busy_pair(seed);
    assert_eq!(receive_n(&mut p, 10, false, 20_000), numbered(b'a', 10, 10));
    assert_eq!(receive_n(&mut p, 3, true, 20_000), numbered(b'b', 0, 3));
    quiesce(&mut p);
    p
}

/// Datagrams that must be refused whole. `rcv_nxt` is the receiver's next
/// sequence number, so that the valid segments in them would be accepted
/// on their own.
fn malformed(rcv_nxt: u32, mss: usize) -> Vec<(&'static str, Vec<u8>, KcpError)> {
    let bad = KcpError::InvalidPacket;
    let push = header(CMD_PUSH, rcv_nxt, 0, 4);
    let other_conv = Header {
        conv: CONV ^ 1,
        ..header(CMD_ACK, 0, 0, 0)
    };
    let mut v = vec![
        ("empty", vec![], bad),
        ("one byte", vec![0x78], bad),
        ("23 bytes", datagram(&[(push, b"evil")])[..23].to_vec(), bad),
        (
            "len past the end",
            datagram(&[(header(CMD_PUSH, rcv_nxt, 0, 100), b"evil")]),
            bad,
        ),
        (
            "len u32::MAX",
            datagram(&[(header(CMD_PUSH, rcv_nxt, 0, u32::MAX), b"evil")]),
            bad,
        ),
        (
            "valid segment then a truncated header",
            {
                let mut d = datagram(&[(push, b"evil")]);
                d.extend_from_slice(&[1, 2, 3, 4, 5]);
                d
            },
            bad,
        ),
        (
            "valid segment then len past the end",
            datagram(&[(push, b"evil"), (header(CMD_ACK, 0, 0, 9), b"x")]),
            bad,
        ),
        (
            "valid segment then another conv",
            datagram(&[(push, b"evil"), (other_conv, b"")]),
            KcpError::ConvMismatch {
                expected: CONV,
                found: CONV ^ 1,
            },
        ),
        (
            "another conv",
            datagram(&[(Header { conv: 7, ..push }, b"evil")]),
            KcpError::ConvMismatch {
                expected: CONV,
                found: 7,
            },
        ),
        (
            "body longer than mss",
            datagram(&[(
                header(CMD_PUSH, rcv_nxt, 0, mss as u32 + 1),
                &vec![0; mss + 1],
            )]),
            bad,
        ),
        (
            "frg beyond the receive window",
            datagram(&[(Header { frg: 128, ..push }, b"evil")]),
            bad,
        ),
        (
            "frg 255",
            datagram(&[(Header { frg: 255, ..push }, b"evil")]),
            bad,
        ),
    ];
    for cmd in [0u8, 1, 80, 85, 255] {
        let h = Header {
            cmd,
            ..header(CMD_PUSH, rcv_nxt, 0, 4)
        };
        v.push(("unknown cmd", datagram(&[(h, b"evil")]), bad));
        v.push((
            "valid segment then unknown cmd",
            datagram(&[(push, b"evil"), (Header { len: 0, ..h }, b"")]),
            bad,
        ));
    }
    v
}

/// Each malformed datagram is refused and leaves the session exactly as a
/// twin that never saw it: same state now, same datagrams and deliveries
/// afterwards.
#[test]
fn malformed_datagrams_leave_the_session_untouched() {
    let mss = KcpConfig::fast().mss();
    for (i, (what, dgram, err)) in malformed(10, mss).into_iter().enumerate() {
        let seed = 100 + i as u64;
        let (mut p, mut twin) = (busy_pair(seed), busy_pair(seed));
        for side in [0, 1] {
            let clock = p.clock();
            let k = if side == 0 { &mut p.b } else { &mut p.a };
            let before = k.stats().dropped_datagrams;
            assert_eq!(k.input(&dgram), Err(err), "{what}");
            assert_eq!(k.stats().dropped_datagrams, before + 1, "{what}");
            let t = if side == 0 { &twin.b } else { &twin.a };
            assert_eq!(snapshot(k, clock), snapshot(t, clock), "{what}");
        }
        // The rest of the conversation is identical, byte for byte.
        let got = receive_n(&mut p, 10, false, 20_000);
        let want = receive_n(&mut twin, 10, false, 20_000);
        assert_eq!(got, numbered(b'a', 10, 10), "{what}");
        assert_eq!(got, want);
        assert_eq!(receive_n(&mut p, 3, true, 20_000), numbered(b'b', 0, 3));
        assert_eq!(receive_n(&mut twin, 3, true, 20_000), numbered(b'b', 0, 3));
        for _ in 0..100 {
            p.step(5);
            twin.step(5);
            let clock = p.clock();
            assert_eq!(snapshot(&p.a, clock), snapshot(&twin.a, clock), "{what}");
            assert_eq!(snapshot(&p.b, clock), snapshot(&twin.b, clock), "{what}");
        }
        assert_eq!(p.ab.stats(), twin.ab.stats());
        assert_eq!(p.ba.stats(), twin.ba.stats());
    }
}

/// ACKs for sequence numbers never sent, with any `ts` (including ones that
/// make the RTT sample absurd), are harmless: nothing in flight is freed,
/// and data still flows.
#[test]
fn acks_for_segments_never_sent() {
    let mut p = busy_pair(1);
    let clock = p.clock();
    let wait = p.a.wait_snd();
    assert!(wait > 0);
    for (sn, ts) in [
        (1_000u32, clock),
        (u32::MAX, clock),
        (25, clock.wrapping_sub(i32::MAX as u32)),
        (26, clock.wrapping_sub(i32::MAX as u32)),
        (27, clock.wrapping_sub(1 << 30)),
        (28, clock.wrapping_add(5)),
        (29, 0),
        (1 << 31, clock.wrapping_sub(i32::MAX as u32)),
    ] {
        // una 0 is "behind" everything: acknowledges nothing.
        let ack = Header {
            ts: Timestamp::new(ts),
            ..header(CMD_ACK, sn, 0, 0)
        };
        assert_eq!(p.a.input(&datagram(&[(ack, b"")])), Ok(()));
        assert_eq!(p.a.wait_snd(), wait, "sn {sn} freed something");
        assert_memory_bounded(&p.a);
    }
    // The absurd RTT samples push the RTO to its ceiling, but what is in
    // flight is retransmitted and delivered anyway.
    assert!(p.a.rto() <= 60_000);
    assert_eq!(
        receive_n(&mut p, 10, false, 200_000),
        numbered(b'a', 10, 10)
    );
    send_numbered(&mut p.a, b'a', 20, 5);
    assert_eq!(receive_n(&mut p, 5, false, 200_000), numbered(b'a', 20, 5));
}

/// `wnd` 0 stalls the sender until its probe learns the truth; 65535 does
/// not let it exceed its own send window.
#[test]
fn absurd_remote_windows() {
    let mut p = quiet_pair(2);
    for (wnd, cmd) in [(0u16, CMD_WINS), (0, CMD_ACK), (0, CMD_WASK)] {
        let h = Header {
            wnd,
            ..header(cmd, 0, 0, 0)
        };
        assert_eq!(p.a.input(&datagram(&[(h, b"")])), Ok(()));
        assert_eq!(p.a.remote_window(), 0);
        send_numbered(&mut p.a, b'a', 20, 3);
        // Nothing leaves for a while, then the probe (7 s) reopens it.
        for _ in 0..200 {
            p.step(5);
            assert!(p.b.recv(&mut [0u8; 8]).is_err(), "sent into a zero window");
        }
        assert_eq!(receive_n(&mut p, 3, false, 20_000), numbered(b'a', 20, 3));
        quiesce(&mut p);
    }
    let h = Header {
        wnd: u16::MAX,
        ..header(CMD_WINS, 0, 0, 0)
    };
    assert_eq!(p.a.input(&datagram(&[(h, b"")])), Ok(()));
    assert_eq!(p.a.remote_window(), 65_535);
    for i in 0..50u32 {
        send_numbered(&mut p.a, b'c', i * 4, 4);
        p.step(5);
        assert!(p.a.cwnd() <= 65_535);
    }
    let got = receive_n(&mut p, 200, false, 60_000);
    assert_eq!(got, numbered(b'c', 0, 200));
    assert_memory_bounded(&p.a);
}

/// `una` far ahead acknowledges no more than was sent; far behind, nothing.
#[test]
fn una_far_ahead_and_behind() {
    let mut p = quiet_pair(3);
    for una in [30u32, 1_000, 1 << 30, (1 << 31) - 1, 1 << 31, u32::MAX, 0] {
        let h = header(CMD_ACK, 0, una, 0);
        assert_eq!(p.a.input(&datagram(&[(h, b"")])), Ok(()));
        assert_eq!(p.a.wait_snd(), 0);
        assert_eq!(p.b.input(&datagram(&[(h, b"")])), Ok(()));
    }
    send_numbered(&mut p.a, b'a', 20, 5);
    send_numbered(&mut p.b, b'b', 3, 5);
    assert_eq!(receive_n(&mut p, 5, false, 20_000), numbered(b'a', 20, 5));
    assert_eq!(receive_n(&mut p, 5, true, 20_000), numbered(b'b', 3, 5));
}

/// Every datagram of a conversation replayed, in order and backwards, adds
/// no message and breaks nothing.
#[test]
fn replayed_datagrams_deliver_nothing_new() {
    let cfg = KcpConfig::fast();
    let mut a = kcp_rs::Kcp::with_config(CONV, kcp_rs::sim::Outbox::default(), cfg).unwrap();
    let mut b = kcp_rs::Kcp::with_config(CONV, kcp_rs::sim::Outbox::default(), cfg).unwrap();
    let (mut to_b, mut to_a) = (Vec::new(), Vec::new());
    let mut buf = [0u8; 8];
    let mut got = Vec::new();
    let mut msgs = numbered(b'a', 0, 30);
    msgs[7] = vec![b'x'; 3 * cfg.mss()]; // and a multi-fragment one
    for m in &msgs {
        a.send(m).unwrap();
    }
    let mut big = vec![0u8; 5 * cfg.mss()];
    let mut clock = 0u32;
    let exchange = |a: &mut SimKcp,
                    b: &mut SimKcp,
                    to_b: &mut Vec<Vec<u8>>,
                    to_a: &mut Vec<Vec<u8>>,
                    clock: u32| {
        a.update(clock);
        a.output_mut().drain(|d| {
            to_b.push(d.to_vec());
            b.input(d).unwrap();
        });
        b.update(clock);
        b.output_mut().drain(|d| {
            to_a.push(d.to_vec());
            a.input(d).unwrap();
        });
    };
    while got.len() < msgs.len() {
        exchange(&mut a, &mut b, &mut to_b, &mut to_a, clock);
        while let Ok(n) = b.recv(&mut big) {
            got.push(big[..n].to_vec());
        }
        clock += 10;
        assert!(clock < 10_000);
    }
    assert_eq!(got, msgs);
    let dups = b.stats().duplicate_segments;
    for d in to_b.iter().chain(to_b.iter().rev()) {
        assert_eq!(b.input(d), Ok(()));
    }
    for d in to_a.iter().chain(to_a.iter().rev()) {
        assert_eq!(a.input(d), Ok(()));
    }
    assert!(b.stats().duplicate_segments >= dups + 2 * 31);
    assert_eq!(b.recv(&mut buf), Err(KcpError::WouldBlock));
    assert_memory_bounded(&a);
    assert_memory_bounded(&b);
    // The conversation continues.
    for m in numbered(b'z', 0, 5) {
        a.send(&m).unwrap();
    }
    let mut more = Vec::new();
    while more.len() < 5 {
        clock += 10;
        exchange(&mut a, &mut b, &mut to_b, &mut to_a, clock);
        while let Ok(n) = b.recv(&mut buf) {
            more.push(buf[..n].to_vec());
        }
        assert!(clock < 20_000);
    }
    assert_eq!(more, numbered(b'z', 0, 5));
}

/// Thousands of forged in-window PUSHes between two flushes: ACKs beyond
/// the list's capacity are dropped and counted, memory stays bounded, the
/// forged data is read like any other, and the flooded session's own
/// sending is unaffected.
#[test]
fn flood_of_in_window_pushes() {
    let mut p = quiet_pair(4);
    let mut rng = Rng::new(4);
    let mut body = [0u8; 100];
    for i in 0..20_000u32 {
        let sn = 20 + rng.range(0, 127) as u32; // b's window is [20, 148)
        let h = Header {
            frg: 0,
            ..header(CMD_PUSH, sn, 0, rng.range(0, 100) as u32)
        };
        rng.fill(&mut body);
        let d = datagram(&[(h, &body[..h.len as usize])]);
        assert_eq!(p.b.input(&d), Ok(()));
        if i % 1000 == 0 {
            assert_memory_bounded(&p.b);
        }
    }
    assert!(p.b.stats().dropped_acks > 0);
    assert!(p.b.stats().duplicate_segments > 10_000);
    assert_memory_bounded(&p.b);
    // The forged messages are readable and well formed.
    let mut buf = [0u8; 200];
    let mut forged = 0;
    while let Ok(n) = p.b.recv(&mut buf) {
        assert!(n <= 100);
        forged += 1;
    }
    assert_eq!(forged, 128);
    // b still sends to a.
    send_numbered(&mut p.b, b'b', 3, 5);
    assert_eq!(receive_n(&mut p, 5, true, 20_000), numbered(b'b', 3, 5));
    assert_memory_bounded(&p.b);
    assert_eq!(p.input_errors(), 0);
}

// ----- property tests -------------------------------------------------------

/// A segment with fields drawn near the interesting values.
fn arb_segment() -> impl Strategy<Value = (Header, Vec<u8>, Option<u32>)> {
    (
        prop_oneof![4 => Just(CONV), 1 => any::<u32>()],
        prop_oneof![
            4 => prop::sample::select(vec![CMD_PUSH, CMD_ACK, CMD_WASK, CMD_WINS]),
            1 => any::<u8>()
        ],
        prop_oneof![3 => Just(0u8), 1 => 0u8..130, 1 => any::<u8>()],
        prop_oneof![Just(0u16), Just(u16::MAX), any::<u16>(), 0u16..256],
        prop_oneof![any::<u32>(), Just(0u32)],
        prop_oneof![0u32..300, any::<u32>()],
        prop_oneof![0u32..300, any::<u32>()],
        prop::collection::vec(any::<u8>(), 0..1500),
        prop::option::weighted(0.1, any::<u32>()),
    )
        .prop_map(|(conv, cmd, frg, wnd, ts, sn, una, body, len)| {
            let h = Header {
                conv,
                cmd,
                frg,
                wnd,
                ts: Timestamp::new(ts),
                sn: Seq::new(sn),
                una: Seq::new(una),
                len: len.unwrap_or(body.len() as u32),
            };
            (h, body, len)
        })
}

/// Datagrams of 1–3 such segments, sometimes cut short, or raw bytes.
fn arb_datagram() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => (prop::collection::vec(arb_segment(), 1..4), any::<prop::sample::Index>(), any::<bool>())
            .prop_map(|(segs, cut, truncate)| {
                let segs: Vec<(Header, &[u8])> =
                    segs.iter().map(|(h, b, _)| (*h, &b[..])).collect();
                let mut d = datagram(&segs);
                if truncate {
                    d.truncate(cut.index(d.len() + 1));
                }
                d
            }),
        1 => prop::collection::vec(any::<u8>(), 0..200),
    ]
}

fn proptest_config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x006b_6370),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(proptest_config())]

    /// Hostile datagrams into the sender, interleaved with its traffic:
    /// no panic, bounded memory, and a→b still delivers exactly.
    #[test]
    fn hostile_datagrams_into_the_sender(dgrams in prop::collection::vec(arb_datagram(), 1..20)) {
        let mut p = pair(KcpConfig::fast(), LinkConfig::perfect(), 7, u32::MAX - 100);
        send_numbered(&mut p.a, b'a', 0, 5);
        prop_assert_eq!(receive_n(&mut p, 5, false, 5_000), numbered(b'a', 0, 5));
        quiesce(&mut p);
        for d in &dgrams {
            let _ = p.a.input(d);
            assert_memory_bounded(&p.a);
            p.step(5);
            let mut buf = vec![0u8; 200_000];
            while p.a.recv(&mut buf).is_ok() {} // forged data, read and dropped
        }
        send_numbered(&mut p.a, b'a', 5, 5);
        prop_assert_eq!(receive_n(&mut p, 5, false, 60_000), numbered(b'a', 5, 5));
        assert_memory_bounded(&p.a);
        assert_memory_bounded(&p.b);
    }

    /// Hostile datagrams into the receiver: no panic, bounded memory, what
    /// it reads is well formed, and b→a still delivers exactly.
    #[test]
    fn hostile_datagrams_into_the_receiver(dgrams in prop::collection::vec(arb_datagram(), 1..20)) {
        let mut p = pair(KcpConfig::fast(), LinkConfig::perfect(), 8, 0);
        send_numbered(&mut p.a, b'a', 0, 5);
        prop_assert_eq!(receive_n(&mut p, 5, false, 5_000), numbered(b'a', 0, 5));
        quiesce(&mut p);
        let max = p.b.config().max_message();
        let mut buf = vec![0u8; max];
        for d in &dgrams {
            let _ = p.b.input(d);
            assert_memory_bounded(&p.b);
            p.step(5);
            loop {
                match p.b.recv(&mut buf) {
                    Ok(n) => prop_assert!(n <= max),
                    Err(KcpError::WouldBlock) => break,
                    Err(e) => prop_assert!(false, "recv: {}", e),
                }
            }
        }
        send_numbered(&mut p.b, b'b', 0, 5);
        prop_assert_eq!(receive_n(&mut p, 5, true, 60_000), numbered(b'b', 0, 5));
        assert_memory_bounded(&p.b);
    }

    /// Raw bytes straight into a fresh session and a busy one.
    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..3000)) {
        let mut p = busy_pair(9);
        let r = p.b.input(&bytes);
        let refused_or_taken =
            r.is_ok() || matches!(r, Err(KcpError::InvalidPacket | KcpError::ConvMismatch { .. }));
        prop_assert!(refused_or_taken, "{:?}", r);
        let _ = p.a.input(&bytes);
        assert_memory_bounded(&p.a);
        assert_memory_bounded(&p.b);
    }
}
