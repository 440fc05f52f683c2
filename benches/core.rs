//! Wall-clock benchmarks of the core's hot paths (criterion).
//!
//! Every measured call does its real work and leaves the session as it
//! found it: what a batch queues is drained outside the timed region
//! (`iter_custom`), and every call's result is checked, so a failing call
//! (a `send` refused with `BufferFull`, a duplicate PUSH) can never be what
//! is measured. `benches/instructions.rs` counts instructions for the same
//! paths; this file answers "how long", that one "how much work".
//!
//! ```text
//! cargo bench --bench core -- --warm-up-time 1 --measurement-time 3
//! ```
//! Results and their sanity checks: `docs/benchmarks_core.md`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use kcp_rs::codec::Header;
use kcp_rs::constants::{CMD_PUSH, OVERHEAD};
use kcp_rs::sequence::{Seq, Timestamp};
use kcp_rs::sim::Outbox;
use kcp_rs::{Kcp, KcpConfig, KcpError};

type Session = Kcp<Outbox>;

const MSG: [u8; 64] = [0x5a; 64];
/// Calls per timed batch; the send queue and receive window hold this many.
const BATCH: usize = 64;
const T0: u32 = u32::MAX - 1_000;

fn sessions(cfg: KcpConfig) -> (Session, Session, u32) {
    let mut a = Kcp::with_config(7, Outbox::default(), cfg).expect("valid configuration");
    let mut b = Kcp::with_config(7, Outbox::default(), cfg).expect("valid configuration");
    let mut now = T0;
    // Warm up: pools grown, RTT sampled, peer window known, rings cycled.
    for _ in 0..4 {
        for _ in 0..BATCH {
            assert_eq!(a.send(&MSG), Ok(MSG.len()));
        }
        drain(&mut a, &mut b, &mut now);
    }
    (a, b, now)
}

fn deliver(from: &mut Session, to: &mut Session) {
    from.output_mut()
        .drain(|d| to.input(d).expect("an honest datagram"));
}

/// Moves everything `a` queued to `b`, reads it, and brings the ACKs back,
/// one interval at a time, until nothing is queued, in flight or unread.
fn drain(a: &mut Session, b: &mut Session, now: &mut u32) {
    let mut buf = [0u8; 2048];
    for _ in 0..1_000 {
        *now = now.wrapping_add(a.config().interval);
        a.update(*now);
        deliver(a, b);
        while b.recv(&mut buf).is_ok() {}
        b.update(*now);
        deliver(b, a);
        if a.wait_snd() == 0 && b.peek_size().is_err() && b.output().is_empty() {
            return;
        }
    }
    panic!("could not drain: wait_snd {}", a.wait_snd());
}

fn push_header() -> Header {
    Header {
        conv: 0x1234_5678,
        cmd: CMD_PUSH,
        frg: 0,
        wnd: 128,
        ts: Timestamp::new(10_000),
        sn: Seq::new(42),
        una: Seq::new(40),
        len: 64,
    }
}

fn codec(c: &mut Criterion) {
    let mut g = c.benchmark_group("codec");
    let h = push_header();
    g.bench_function("header_encode", |bench| {
        let mut buf = [0u8; OVERHEAD];
        bench.iter(|| black_box(&h).emit(black_box(&mut buf[..])));
        assert_eq!(Header::parse(&buf), Ok(h));
    });
    let mut bytes = [0u8; OVERHEAD];
    h.emit(&mut bytes);
    g.bench_function("header_decode", |bench| {
        bench.iter(|| Header::parse(black_box(&bytes[..])).expect("a whole header"))
    });
    g.finish();
}

fn send(c: &mut Criterion) {
    let mut g = c.benchmark_group("send");
    g.bench_function("message_64B", |bench| {
        let (mut a, mut b, mut now) = sessions(KcpConfig::fast());
        bench.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters as usize;
            while left > 0 {
                let n = left.min(BATCH);
                let start = Instant::now();
                for _ in 0..n {
                    let r = a.send(black_box(&MSG));
                    assert!(r == Ok(64));
                }
                total += start.elapsed();
                assert_eq!(a.wait_snd() as usize, n);
                drain(&mut a, &mut b, &mut now);
                left -= n;
            }
            total
        });
    });
    g.finish();
}

fn update(c: &mut Criterion) {
    let mut g = c.benchmark_group("update");
    // The timer fires one interval later and the flush finds nothing to do.
    g.bench_function("idle_flush", |bench| {
        let (mut a, _b, mut now) = sessions(KcpConfig::fast());
        let before = *a.stats();
        let interval = a.config().interval;
        bench.iter(|| {
            now = now.wrapping_add(interval);
            a.update(black_box(now));
        });
        assert_eq!(*a.stats(), before, "an idle flush sent something");
    });
    // Called again before the next flush is due: only the clock check.
    g.bench_function("idle_not_due", |bench| {
        let (mut a, _b, now) = sessions(KcpConfig::fast());
        a.update(now);
        let before = *a.stats();
        bench.iter(|| a.update(black_box(now)));
        assert_eq!(*a.stats(), before);
    });
    // 32 segments in flight, none due: the flush scans the window. A 60 s
    // minimum RTO keeps the timers ahead for a batch of 1,000 intervals
    // (20 s); between batches the segments are ACKed and replaced.
    g.bench_function("in_flight_32", |bench| {
        let cfg = KcpConfig {
            min_rto: Some(60_000),
            ..KcpConfig::fast()
        };
        let (mut a, mut b, mut now) = sessions(cfg);
        let interval = a.config().interval;
        bench.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(1_000);
                for _ in 0..32 {
                    assert_eq!(a.send(&MSG), Ok(64));
                }
                now = now.wrapping_add(interval);
                a.update(now);
                let mut in_flight = Vec::new();
                a.output_mut().drain(|d| in_flight.push(d.to_vec()));
                assert_eq!(a.wait_snd(), 32);
                let before = *a.stats();
                let start = Instant::now();
                for _ in 0..n {
                    now = now.wrapping_add(interval);
                    a.update(black_box(now));
                }
                total += start.elapsed();
                assert_eq!(*a.stats(), before, "a timer fired during the batch");
                for d in &in_flight {
                    b.input(d).expect("an honest datagram");
                }
                drain(&mut a, &mut b, &mut now);
                left -= n;
            }
            total
        });
    });
    g.finish();
}

fn recv(c: &mut Criterion) {
    let mut g = c.benchmark_group("recv");
    g.bench_function("empty", |bench| {
        let (_a, mut b, _) = sessions(KcpConfig::fast());
        let mut buf = [0u8; 256];
        assert_eq!(b.recv(&mut buf), Err(KcpError::WouldBlock));
        bench.iter(|| b.recv(black_box(&mut buf[..])));
    });
    g.finish();
}

/// `BATCH` datagrams from `a`, each holding one PUSH of [`MSG`].
fn one_push_each(a: &mut Session) -> Vec<Vec<u8>> {
    let mut v = Vec::with_capacity(BATCH);
    for _ in 0..BATCH {
        assert_eq!(a.send(&MSG), Ok(64));
        a.flush();
        a.output_mut().drain(|d| v.push(d.to_vec()));
    }
    assert_eq!(v.len(), BATCH);
    v
}

fn input(c: &mut Criterion) {
    let mut g = c.benchmark_group("input");
    g.bench_function("one_push", |bench| {
        let (mut a, mut b, mut now) = sessions(KcpConfig::fast());
        bench.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters as usize;
            while left > 0 {
                let n = left.min(BATCH);
                let pushes = one_push_each(&mut a);
                let queued = b.queued_recv();
                let start = Instant::now();
                for d in &pushes[..n] {
                    let r = b.input(black_box(d));
                    assert!(r.is_ok());
                }
                total += start.elapsed();
                assert_eq!(b.queued_recv(), queued + n as u32, "a PUSH was not new");
                for d in &pushes[n..] {
                    b.input(d).expect("an honest datagram");
                }
                b.update(now);
                deliver(&mut b, &mut a);
                drain(&mut a, &mut b, &mut now);
                left -= n;
            }
            total
        });
    });
    // The same datagrams through the zero-copy call: each message is handed
    // to the reader straight from the datagram (never stored), so unlike
    // `one_push` nothing is left queued for a `recv`; `drain` brings the
    // ACKs back so every batch starts from the same state.
    g.bench_function("one_push_with", |bench| {
        let (mut a, mut b, mut now) = sessions(KcpConfig::fast());
        bench.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters as usize;
            while left > 0 {
                let n = left.min(BATCH);
                let pushes = one_push_each(&mut a);
                let mut handed = 0;
                let start = Instant::now();
                for d in &pushes[..n] {
                    let r = b.input_with(black_box(d), |piece, end| {
                        black_box((piece, end));
                    });
                    handed += r.unwrap_or(0);
                }
                total += start.elapsed();
                assert_eq!(handed, n * MSG.len(), "a message was not handed over");
                assert_eq!(b.queued_recv(), 0, "a message was stored");
                for d in &pushes[n..] {
                    b.input_with(d, |_, _| {}).expect("an honest datagram");
                }
                b.update(now);
                deliver(&mut b, &mut a);
                drain(&mut a, &mut b, &mut now);
                left -= n;
            }
            total
        });
    });
    g.bench_function("one_ack", |bench| {
        let (mut a, mut b, mut now) = sessions(KcpConfig::fast());
        let mut buf = [0u8; 256];
        bench.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters as usize;
            while left > 0 {
                let n = left.min(BATCH);
                let mut acks = Vec::with_capacity(BATCH);
                for d in one_push_each(&mut a) {
                    b.input(&d).expect("an honest datagram");
                    assert_eq!(b.recv(&mut buf), Ok(64));
                    b.flush();
                    b.output_mut().drain(|d| acks.push(d.to_vec()));
                }
                assert_eq!(acks.len(), BATCH);
                let waiting = a.wait_snd();
                let start = Instant::now();
                for d in &acks[..n] {
                    let r = a.input(black_box(d));
                    assert!(r.is_ok());
                }
                total += start.elapsed();
                assert_eq!(a.wait_snd(), waiting - n as u32, "an ACK freed nothing");
                for d in &acks[n..] {
                    a.input(d).expect("an honest datagram");
                }
                drain(&mut a, &mut b, &mut now);
                left -= n;
            }
            total
        });
    });
    g.finish();
}

/// One 64-byte message end to end: send, update (PUSH out), input, recv,
/// update (ACK out), input. The sum of the parts, measured as a whole.
fn round_trip(c: &mut Criterion) {
    let mut g = c.benchmark_group("cycle");
    g.bench_function("message_64B_round", |bench| {
        let (mut a, mut b, mut now) = sessions(KcpConfig::fast());
        let mut buf = [0u8; 256];
        let interval = a.config().interval;
        bench.iter(|| {
            assert_eq!(a.send(black_box(&MSG)), Ok(64));
            now = now.wrapping_add(interval);
            a.update(now);
            deliver(&mut a, &mut b);
            assert_eq!(b.recv(&mut buf), Ok(64));
            b.update(now);
            deliver(&mut b, &mut a);
        });
        assert_eq!(a.wait_snd(), 0);
        assert_eq!(a.stats().retransmits, 0);
    });
    g.finish();
}

criterion_group!(benches, codec, send, update, recv, input, round_trip);
criterion_main!(benches);
