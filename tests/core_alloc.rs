//! Zero heap allocations in the steady state.
//!
//! A counting global allocator (wrapping `System`, counting per thread so
//! the test harness's own threads do not interfere) watches 10,000 messages
//! move through a lossy `sim::Pair` after a warm-up that lets every pool,
//! ring and link queue reach its high-water mark. `send`, `input`, `update`
//! (and so `flush`), `recv`, and the simulation itself must not allocate.
#![cfg(feature = "std")] // the simulation needs std

mod support;

use kcp_rs::sim::{Link, LinkConfig, Outbox, Pair};
use kcp_rs::{Kcp, KcpConfig, KcpError};

#[path = "support/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::{allocations, Counting};

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Message `i`: its length is a function of `i` (empty, small, and up to
/// four fragments), its bytes a function of `i` and the position.
fn message_len(i: u32, mss: usize) -> usize {
    match i % 10 {
        0 => 0,
        1..=6 => (i as usize * 7) % 200 + 1,
        7 | 8 => (i as usize * 13) % (2 * mss),
        _ => (i as usize * 31) % (4 * mss),
    }
}

fn fill_message(buf: &mut [u8], i: u32) -> usize {
    let len = message_len(i, 1376);
    for (j, b) in buf[..len].iter_mut().enumerate() {
        *b = (i as usize).wrapping_mul(31).wrapping_add(j) as u8;
    }
    if len >= 4 {
        buf[..4].copy_from_slice(&i.to_le_bytes());
    }
    len
}

fn check_message(got: &[u8], i: u32, scratch: &mut [u8]) {
    let len = fill_message(scratch, i);
    assert_eq!(got.len(), len, "length of message {i}");
    assert!(got == &scratch[..len], "content of message {i}");
}

/// Moves `count` messages starting at `first`, both ends fed as fast as
/// they accept; returns the next message number.
fn traffic(p: &mut Pair, first: u32, count: u32, bufs: &mut Buffers) -> u32 {
    let (mut sent, mut received) = (first, first);
    let end = first + count;
    while received < end {
        while sent < end {
            let len = fill_message(&mut bufs.send, sent);
            match p.a.send(&bufs.send[..len]) {
                Ok(_) => sent += 1,
                Err(KcpError::BufferFull) => break,
                Err(e) => panic!("send: {e}"),
            }
        }
        p.step(5);
        loop {
            match p.b.recv(&mut bufs.recv) {
                Ok(n) => {
                    check_message(&bufs.recv[..n], received, &mut bufs.scratch);
                    received += 1;
                }
                Err(KcpError::WouldBlock) => break,
                Err(e) => panic!("recv: {e}"),
            }
        }
        assert!(p.now() < 10_000_000, "stalled at message {received}");
    }
    end
}

struct Buffers {
    send: Vec<u8>,
    recv: Vec<u8>,
    scratch: Vec<u8>,
}

#[test]
fn steady_state_allocates_nothing() {
    let cfg = KcpConfig::fast();
    let mut p = Pair::new(
        1,
        cfg,
        cfg,
        Link::new(LinkConfig::lossy(0.1), 1),
        Link::new(LinkConfig::lossy(0.1), 2),
        u32::MAX - 10_000, // and the clock wraps during the run
    )
    .unwrap();
    let mut bufs = Buffers {
        send: vec![0; cfg.max_message()],
        recv: vec![0; cfg.max_message()],
        scratch: vec![0; cfg.max_message()],
    };

    // Warm-up: pools, rings and link queues reach their high-water marks.
    let before_warmup = allocations();
    let next = traffic(&mut p, 0, 20_000, &mut bufs);
    let warmup_allocs = allocations() - before_warmup;
    assert!(warmup_allocs > 0, "the counter counts nothing");

    let before = allocations();
    let mem = (p.a.memory_footprint(), p.b.memory_footprint());
    let sent_before = p.ab.stats().sent;
    traffic(&mut p, next, 10_000, &mut bufs);
    let during = allocations() - before;

    // The measured phase really was lossy and busy.
    let s = p.a.stats();
    assert!(
        p.ab.stats().sent - sent_before > 5_000,
        "{:?}",
        p.ab.stats()
    );
    assert!(s.retransmits + s.fast_retransmits > 100, "{s:?}");
    assert!(p.ab.stats().dropped > 100 && p.ab.stats().duplicated > 10);
    assert_eq!(
        during, 0,
        "{during} allocations while 10,000 messages moved (warm-up made {warmup_allocs})"
    );
    assert_eq!(mem, (p.a.memory_footprint(), p.b.memory_footprint()));
    assert!(p.clock() < 1_000_000, "the clock should have wrapped");
}

/// The same with the core alone: no link, an `Outbox` drained by hand, every
/// datagram delivered, and stream mode.
#[test]
fn stream_mode_steady_state_allocates_nothing() {
    let cfg = KcpConfig {
        stream: true,
        ..KcpConfig::fast()
    };
    let mut a = Kcp::with_config(3, Outbox::default(), cfg).unwrap();
    let mut b = Kcp::with_config(3, Outbox::default(), cfg).unwrap();
    let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut buf = vec![0u8; 3000];
    let (mut sent, mut got, mut clock) = (0usize, 0usize, 0u32);
    let mut round =
        |a: &mut Kcp<Outbox>, b: &mut Kcp<Outbox>, sent: &mut usize, got: &mut usize| {
            for _ in 0..50 {
                let end = (*sent % data.len() + 1 + *sent % 3000).min(data.len());
                match a.send(&data[*sent % data.len()..end]) {
                    Ok(n) => *sent += n,
                    Err(KcpError::BufferFull) => break,
                    Err(e) => panic!("{e}"),
                }
            }
            clock += 10;
            a.update(clock);
            b.update(clock);
            a.output_mut().drain(|d| b.input(d).unwrap());
            b.output_mut().drain(|d| a.input(d).unwrap());
            let want = 1 + *got % buf.len();
            while let Ok(n) = b.recv(&mut buf[..want]) {
                let mut k = 0;
                while k < n {
                    let start = (*got + k) % data.len();
                    let take = (n - k).min(data.len() - start);
                    assert!(
                        buf[k..k + take] == data[start..start + take],
                        "at byte {}",
                        *got + k
                    );
                    k += take;
                }
                *got += n;
                if n == 0 {
                    break;
                }
            }
        };
    for _ in 0..1_000 {
        round(&mut a, &mut b, &mut sent, &mut got);
    }
    let before = allocations();
    for _ in 0..2_000 {
        round(&mut a, &mut b, &mut sent, &mut got);
    }
    assert_eq!(allocations() - before, 0);
    assert!(got > 2_000_000, "only {got} bytes moved");
}

/// The zero-copy paths: `input_with` on a lossy, reordering link
/// (messages handed over in place and from the receive buffer), and
/// `send_with` + `input` + `recv_with` on the way back.
#[test]
fn zero_copy_receive_allocates_nothing() {
    let cfg = KcpConfig::fast();
    let mut z = ZeroCopyPair {
        a: Kcp::with_config(5, Outbox::default(), cfg).unwrap(),
        b: Kcp::with_config(5, Outbox::default(), cfg).unwrap(),
        ab: Link::new(LinkConfig::lossy(0.1), 3),
        ba: Link::new(LinkConfig::lossy(0.1), 4),
        bufs: Buffers {
            send: vec![0; cfg.max_message()],
            recv: vec![0; cfg.max_message()],
            scratch: vec![0; cfg.max_message()],
        },
        now: 0,
        sent: [0; 2],
        got: [0; 2],
    };
    // Warm-up: 20,000 left one link queue short of its busiest moment.
    z.round(60_000);
    let mem = (z.a.memory_footprint(), z.b.memory_footprint());
    let before = allocations();
    z.round(10_000);
    let during = allocations() - before;
    assert!(z.ab.stats().dropped > 100 && z.ba.stats().dropped > 100);
    assert!(
        z.got[1] > 5_000,
        "the way back moved too little: {:?}",
        z.got
    );
    assert_eq!(
        during, 0,
        "{during} allocations in the zero-copy steady state"
    );
    assert_eq!(mem, (z.a.memory_footprint(), z.b.memory_footprint()));
}

struct ZeroCopyPair {
    a: Kcp<Outbox>,
    b: Kcp<Outbox>,
    ab: Link,
    ba: Link,
    bufs: Buffers,
    now: u64,
    sent: [u32; 2],
    got: [u32; 2],
}

impl ZeroCopyPair {
    /// Messages both ways, as fast as accepted, until `b` has `count` more.
    fn round(&mut self, count: u32) {
        let (sent, got) = (&mut self.sent, &mut self.got);
        let end = got[0] + count;
        while got[0] < end {
            for (side, kcp) in [&mut self.a, &mut self.b].into_iter().enumerate() {
                while sent[side] < got[side] + 500 {
                    let len = fill_message(&mut self.bufs.send, sent[side]);
                    let msg = &self.bufs.send[..len];
                    // The way back writes in place.
                    let r = if side == 1 {
                        let mut at = 0;
                        kcp.send_with(len, |piece| {
                            piece.copy_from_slice(&msg[at..at + piece.len()]);
                            at += piece.len();
                        })
                    } else {
                        kcp.send(msg)
                    };
                    match r {
                        Ok(_) => sent[side] += 1,
                        Err(KcpError::BufferFull) => break,
                        Err(e) => panic!("send: {e}"),
                    }
                }
            }
            self.now += 5;
            let now = self.now;
            let (recv, scratch) = (&mut self.bufs.recv, &mut self.bufs.scratch);
            let (mut len, got_b, b) = (0, &mut got[0], &mut self.b);
            self.ab.deliver(now, |d| {
                b.input_with(d, |piece, end| {
                    recv[len..len + piece.len()].copy_from_slice(piece);
                    len += piece.len();
                    if end {
                        check_message(&recv[..len], *got_b, scratch);
                        *got_b += 1;
                        len = 0;
                    }
                })
                .unwrap();
            });
            assert_eq!(len, 0, "input_with left a message half handed over");
            let a = &mut self.a;
            self.ba.deliver(now, |d| a.input(d).unwrap());
            loop {
                let mut len = 0;
                match a.recv_with(|piece, _| {
                    recv[len..len + piece.len()].copy_from_slice(piece);
                    len += piece.len();
                }) {
                    Ok(n) => {
                        assert_eq!(n, len);
                        check_message(&recv[..n], got[1], scratch);
                        got[1] += 1;
                    }
                    Err(KcpError::WouldBlock) => break,
                    Err(e) => panic!("recv_with: {e}"),
                }
            }
            self.a.update(now as u32);
            self.b.update(now as u32);
            let (ab, ba) = (&mut self.ab, &mut self.ba);
            self.a.output_mut().drain(|d| ab.send(now, d));
            self.b.output_mut().drain(|d| ba.send(now, d));
            assert!(now < 10_000_000, "stalled at {got:?}");
        }
    }
}

/// With `KcpConfig::preallocate` a session allocates nothing after
/// construction, not even in its first burst: 3,000 messages of up to three
/// segments through 1,024-segment windows, every 10th datagram each way
/// lost. The same run without it grows the payload pools (the control: the
/// counter sees that growth).
#[test]
fn preallocated_session_allocates_nothing_after_construction() {
    /// Allocations from the first `send` to the last `recv`.
    fn run(preallocate: bool) -> u64 {
        let cfg = KcpConfig {
            preallocate,
            snd_wnd: 1024,
            rcv_wnd: 1024,
            ..KcpConfig::fast()
        };
        let mss = cfg.mss();
        // The outboxes stand for socket buffers: room for the largest flush.
        let outbox = || Outbox::with_room(4096, 4096 * cfg.mtu as usize);
        let mut a = Kcp::with_config(9, outbox(), cfg).unwrap();
        let mut b = Kcp::with_config(9, outbox(), cfg).unwrap();
        let fresh = (a.memory_footprint(), b.memory_footprint());
        if preallocate {
            assert_eq!(fresh, (a.memory_footprint_max(), b.memory_footprint_max()));
        }
        let len = |i: u32| 1 + (i as usize * 997) % (3 * mss);
        let (mut msg, mut buf) = (vec![0u8; 3 * mss], vec![0u8; 3 * mss]);
        let (mut sent, mut got, mut clock, mut seen) = (0u32, 0u32, 0u32, 0u32);
        let total = 3_000;

        let before = allocations();
        while got < total {
            while sent < total {
                let m = &mut msg[..len(sent)];
                m.fill(sent as u8);
                match a.send(m) {
                    Ok(_) => sent += 1,
                    Err(KcpError::BufferFull) => break,
                    Err(e) => panic!("send: {e}"),
                }
            }
            clock += 10;
            a.update(clock);
            b.update(clock);
            let mut lossy = |d: &[u8], to: &mut Kcp<Outbox>| {
                seen += 1;
                if seen % 10 != 0 {
                    to.input(d).unwrap();
                }
            };
            a.output_mut().drain(|d| lossy(d, &mut b));
            b.output_mut().drain(|d| lossy(d, &mut a));
            loop {
                match b.recv(&mut buf) {
                    Ok(n) => {
                        assert_eq!(n, len(got), "length of message {got}");
                        assert!(buf[..n].iter().all(|&x| x == got as u8), "message {got}");
                        got += 1;
                    }
                    Err(KcpError::WouldBlock) => break,
                    Err(e) => panic!("recv: {e}"),
                }
            }
            assert!(clock < 600_000, "stalled at message {got}");
        }
        let during = allocations() - before;
        assert!(a.stats().retransmits + a.stats().fast_retransmits > 100);
        if preallocate {
            assert_eq!(a.shrink_to_fit() + b.shrink_to_fit(), 0);
            assert_eq!(fresh, (a.memory_footprint(), b.memory_footprint()));
        }
        during
    }
    assert_eq!(run(true), 0, "allocations with preallocate");
    assert!(run(false) > 0, "the counter saw no pool grow");
}
