//! Instruction-count benchmarks of the core's hot paths.
//!
//! Wall-clock timings drift on shared machines; the number of instructions
//! an operation executes under callgrind does not. Each scenario builds its
//! sessions, warms them up (pools grown to their high-water mark, rings
//! cycled, one RTT sample taken), then runs one operation a fixed number of
//! times. `scripts/instr-check.sh` runs every scenario twice under valgrind,
//! once with the loop and once without, and divides the difference by the
//! iteration count: start-up, set-up and warm-up cancel out exactly because
//! both runs execute the same code up to the loop.
//!
//! ```text
//! instructions --list          scenario names and iteration counts
//! instructions <scenario> 1    set up, warm up, run the loop
//! instructions <scenario> 0    set up, warm up, skip the loop
//! ```
//!
//! The two modes take an argument of the same length so that even argument
//! parsing costs the same in both runs.

use std::hint::black_box;
use std::process::ExitCode;

use kcp_rs::codec::Header;
use kcp_rs::constants::{CMD_PUSH, OVERHEAD};
use kcp_rs::sequence::{Seq, Timestamp};
use kcp_rs::sim::Outbox;
use kcp_rs::{Kcp, KcpConfig, KcpError};

type Session = Kcp<Outbox>;

/// The payload of every message: 64 bytes, one segment.
const MSG: [u8; 64] = [0x5a; 64];

/// Clock value at the start: close to the wrap, as a real clock may be.
const T0: u32 = u32::MAX - 1_000;

struct Scenario {
    name: &'static str,
    iters: usize,
    run: fn(usize),
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "header_encode",
        iters: 10_000,
        run: header_encode,
    },
    Scenario {
        name: "header_decode",
        iters: 10_000,
        run: header_decode,
    },
    Scenario {
        name: "send_64",
        iters: 1_000,
        run: send_64,
    },
    Scenario {
        name: "update_idle",
        iters: 1_000,
        run: update_idle,
    },
    Scenario {
        name: "update_inflight_32",
        iters: 1_000,
        run: update_inflight_32,
    },
    Scenario {
        name: "recv_empty",
        iters: 10_000,
        run: recv_empty,
    },
    Scenario {
        name: "input_push",
        iters: 1_000,
        run: input_push,
    },
    Scenario {
        name: "input_with_push",
        iters: 1_000,
        run: input_with_push,
    },
    Scenario {
        name: "input_ack",
        iters: 1_000,
        run: input_ack,
    },
    Scenario {
        name: "message_round",
        iters: 1_000,
        run: message_round,
    },
    Scenario {
        name: "message_round_in_place",
        iters: 1_000,
        run: message_round_in_place,
    },
    Scenario {
        name: "message_round_mss",
        iters: 1_000,
        run: message_round_mss,
    },
    Scenario {
        name: "message_round_1024_pairs",
        iters: 2 * PAIRS,
        run: message_round_1024_pairs,
    },
];

/// Session pairs in `message_round_1024_pairs`.
const PAIRS: usize = 1024;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [flag] if flag == "--list" => {
            for s in SCENARIOS {
                println!("{} {}", s.name, s.iters);
            }
            ExitCode::SUCCESS
        }
        [name, mode] if mode == "0" || mode == "1" => {
            let Some(s) = SCENARIOS.iter().find(|s| s.name == name) else {
                eprintln!("unknown scenario {name}; see --list");
                return ExitCode::FAILURE;
            };
            let n = if mode == "1" { s.iters } else { 0 };
            (s.run)(n);
            ExitCode::SUCCESS
        }
        // `cargo bench` runs every bench binary with `--bench`: nothing to
        // measure without valgrind, so say how to and succeed.
        _ => {
            eprintln!("usage: instructions --list | <scenario> <0|1>; run scripts/instr-check.sh");
            ExitCode::SUCCESS
        }
    }
}

// ----- scenarios --------------------------------------------------------------

/// `Header::emit` of a PUSH header into a 24-byte buffer.
fn header_encode(n: usize) {
    let h = push_header();
    let mut buf = [0u8; OVERHEAD];
    for _ in 0..n {
        black_box(&h).emit(black_box(&mut buf[..]));
    }
    black_box(&buf);
}

/// `Header::parse` of a 24-byte buffer.
fn header_decode(n: usize) {
    let mut buf = [0u8; OVERHEAD];
    push_header().emit(&mut buf);
    for _ in 0..n {
        let h = Header::parse(black_box(&buf[..])).expect("a whole header");
        black_box(h);
    }
}

/// `send` of one 64-byte message into a queue with room, its block taken
/// from a pool already grown by the warm-up (no allocation).
fn send_64(n: usize) {
    let cfg = KcpConfig {
        snd_wnd: 1024,
        rcv_wnd: 1024,
        ..KcpConfig::fast()
    };
    let (mut a, mut b) = sessions(cfg);
    let mut now = T0;
    warm_up(&mut a, &mut b, &mut now, 1_000);
    for _ in 0..n {
        assert_eq!(a.send(black_box(&MSG)), Ok(MSG.len()));
    }
    black_box(&a);
}

/// `update` one interval later with nothing to send: no ACK, no probe, no
/// data. The flush runs and finds nothing.
fn update_idle(n: usize) {
    let (mut a, mut b) = sessions(KcpConfig::fast());
    let mut now = T0;
    warm_up(&mut a, &mut b, &mut now, 200);
    let out_before = a.stats().out_datagrams;
    let interval = a.config().interval;
    for _ in 0..n {
        now = now.wrapping_add(interval);
        a.update(black_box(now));
    }
    assert_eq!(a.stats().out_datagrams, out_before);
    assert!(a.output().is_empty());
}

/// `update` one interval later with 32 segments in flight and none due:
/// the flush scans the send window and sends nothing. A 60 s minimum RTO
/// keeps every retransmission timer in the future for the whole loop
/// (1 000 × 20 ms).
fn update_inflight_32(n: usize) {
    let cfg = KcpConfig {
        min_rto: Some(60_000),
        ..KcpConfig::fast()
    };
    let (mut a, mut b) = sessions(cfg);
    let mut now = T0;
    warm_up(&mut a, &mut b, &mut now, 200);
    for _ in 0..32 {
        assert_eq!(a.send(&MSG), Ok(MSG.len()));
    }
    now = now.wrapping_add(a.config().interval);
    a.update(now);
    a.output_mut().drain(|_| {}); // lost: stays in flight
    assert_eq!(a.wait_snd(), 32);
    let out_before = a.stats().out_datagrams;
    let interval = a.config().interval;
    for _ in 0..n {
        now = now.wrapping_add(interval);
        a.update(black_box(now));
    }
    assert_eq!(a.stats().out_datagrams, out_before);
    assert_eq!(a.stats().retransmits, 0);
    assert_eq!(a.wait_snd(), 32);
}

/// `recv` with nothing queued.
fn recv_empty(n: usize) {
    let (mut a, mut b) = sessions(KcpConfig::fast());
    let mut now = T0;
    warm_up(&mut a, &mut b, &mut now, 200);
    let mut buf = [0u8; 256];
    for _ in 0..n {
        assert_eq!(b.recv(black_box(&mut buf[..])), Err(KcpError::WouldBlock));
    }
}

/// A warmed-up receiver (1024 windows) and 1,000 datagrams of its peer,
/// each holding one in-order 64-byte PUSH, for the `input` scenarios.
fn receiver_and_pushes() -> (Session, Vec<Vec<u8>>) {
    let cfg = KcpConfig {
        snd_wnd: 1024,
        rcv_wnd: 1024,
        ..KcpConfig::fast()
    };
    let (mut a, mut b) = sessions(cfg);
    let mut now = T0;
    warm_up(&mut a, &mut b, &mut now, 1_000);
    let pushes = one_push_per_datagram(&mut a, 1_000);
    (b, pushes)
}

/// `input` of a datagram holding one in-order 64-byte PUSH: validate, queue
/// an ACK, copy the data into a pool block, move it to the receive queue.
fn input_push(n: usize) {
    let (mut b, pushes) = receiver_and_pushes();
    let received = b.stats().in_segments;
    for d in &pushes[..n] {
        b.input(black_box(d)).expect("an honest PUSH");
    }
    assert_eq!(b.stats().in_segments, received + n as u64);
    assert_eq!(b.queued_recv() as usize, n);
}

/// `input_with` of a datagram holding one in-order 64-byte PUSH, nothing
/// queued: validate, queue an ACK, hand the message to the reader straight
/// from the datagram (not copied, not stored). `input_push` plus the `recv`
/// that would follow it is the copying equivalent.
fn input_with_push(n: usize) {
    let (mut b, pushes) = receiver_and_pushes();
    let received = b.stats().in_segments;
    let (mut handed, mut last) = (0, (std::ptr::null(), false));
    for d in &pushes[..n] {
        handed += b
            .input_with(black_box(d), |piece, end| {
                last = (black_box(piece).as_ptr(), end);
            })
            .expect("an honest PUSH");
    }
    assert_eq!(b.stats().in_segments, received + n as u64);
    assert_eq!(handed, n * MSG.len());
    assert_eq!(b.queued_recv(), 0);
    if let Some(d) = pushes[..n].last() {
        // Handed in place: the payload right after the datagram's header.
        assert_eq!(last, (d[OVERHEAD..].as_ptr(), true));
    }
}

/// `input` of a datagram holding one ACK of the oldest segment in flight:
/// RTT sample, free the segment and its block, advance `snd_una`, grow cwnd.
fn input_ack(n: usize) {
    let cfg = KcpConfig {
        snd_wnd: 1024,
        rcv_wnd: 1024,
        ..KcpConfig::fast()
    };
    let (mut a, mut b) = sessions(cfg);
    let mut now = T0;
    warm_up(&mut a, &mut b, &mut now, 1_000);
    let pushes = one_push_per_datagram(&mut a, 1_000);
    let mut acks = Vec::with_capacity(pushes.len());
    let mut buf = [0u8; 256];
    for d in &pushes {
        b.input(d).expect("an honest PUSH");
        assert_eq!(b.recv(&mut buf), Ok(MSG.len())); // keep b's window open
        b.flush();
        b.output_mut().drain(|d| acks.push(d.to_vec()));
    }
    assert_eq!(acks.len(), pushes.len());
    assert_eq!(a.wait_snd(), 1_000);
    for d in &acks[..n] {
        a.input(black_box(d)).expect("an honest ACK");
    }
    assert_eq!(a.wait_snd() as usize, 1_000 - n);
}

/// One 64-byte message end to end, one flush interval per round:
/// `a.send`, `a.update` (PUSH out), `b.input`, `b.recv`, `b.update` (ACK
/// out), `a.input`. Datagrams go through the [`Outbox`]es, which recycle
/// their buffers, so the loop allocates nothing.
fn message_round(n: usize) {
    let (mut a, mut b) = sessions(KcpConfig::fast());
    let mut now = T0;
    warm_up(&mut a, &mut b, &mut now, 200);
    let mut buf = [0u8; 256];
    for _ in 0..n {
        round(&mut a, &mut b, &mut now, &mut buf);
    }
    assert_eq!(a.wait_snd(), 0);
    assert_eq!(a.stats().retransmits, 0);
}

/// `message_round` with the receiver on `input_with`: the message is handed
/// over in place from the datagram, so `b.input` and `b.recv` become one
/// `b.input_with` and the payload is copied once (into `a`'s send buffer)
/// instead of twice more.
fn message_round_in_place(n: usize) {
    let (mut a, mut b) = sessions(KcpConfig::fast());
    let mut now = T0;
    warm_up(&mut a, &mut b, &mut now, 200);
    let mut handed = 0;
    for _ in 0..n {
        assert_eq!(a.send(black_box(&MSG)), Ok(MSG.len()));
        now = now.wrapping_add(a.config().interval);
        a.update(now);
        a.output_mut().drain(|d| {
            handed += b
                .input_with(d, |piece, end| {
                    black_box((piece, end));
                })
                .expect("an honest datagram");
        });
        b.update(now);
        deliver(&mut b, &mut a);
    }
    assert_eq!(handed, n * MSG.len());
    assert_eq!((a.wait_snd(), b.queued_recv()), (0, 0));
    assert_eq!(a.stats().retransmits, 0);
}

/// `message_round` with a message of exactly one MSS (1 376 bytes at the
/// default MTU): the difference from `message_round` is the cost of the
/// payload copies.
fn message_round_mss(n: usize) {
    let (mut a, mut b) = sessions(KcpConfig::fast());
    let mut now = T0;
    warm_up(&mut a, &mut b, &mut now, 200);
    let msg = vec![0x5au8; a.mss()];
    let mut buf = vec![0u8; a.mss()];
    for _ in 0..n {
        round_with(&mut a, &mut b, &mut now, &msg, &mut buf);
    }
    assert_eq!(a.wait_snd(), 0);
    assert_eq!(a.stats().retransmits, 0);
}

/// `message_round` over 1 024 session pairs in turn, as a server with many
/// active conversations would: the same instructions, but each pair's state
/// has gone cold in the caches by the time its turn comes again. This is the
/// scenario `scripts/cache-report.sh` exists for.
fn message_round_1024_pairs(n: usize) {
    let mut pairs: Vec<(Session, Session, u32)> = (0..PAIRS)
        .map(|_| {
            let (mut a, mut b) = sessions(KcpConfig::fast());
            let mut now = T0;
            warm_up_for(&mut a, &mut b, &mut now, 8, 8);
            (a, b, now)
        })
        .collect();
    let mut buf = [0u8; 256];
    // One turn each so that the caches hold what a long run leaves behind.
    for (a, b, now) in pairs.iter_mut() {
        round(a, b, now, &mut buf);
    }
    for i in 0..n {
        let (a, b, now) = &mut pairs[i % PAIRS];
        round(a, b, now, &mut buf);
    }
    for (a, _, _) in &pairs {
        assert_eq!(a.wait_snd(), 0);
        assert_eq!(a.stats().retransmits, 0);
    }
}

// ----- helpers ----------------------------------------------------------------

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

fn sessions(cfg: KcpConfig) -> (Session, Session) {
    let a = Kcp::with_config(7, Outbox::default(), cfg).expect("a valid configuration");
    let b = Kcp::with_config(7, Outbox::default(), cfg).expect("a valid configuration");
    (a, b)
}

/// Moves every datagram `from` has output into `to`.
fn deliver(from: &mut Session, to: &mut Session) {
    from.output_mut()
        .drain(|d| to.input(d).expect("an honest datagram"));
}

/// One [`MSG`] from `a` to `b` and its ACK back, one interval later.
#[inline(always)]
fn round(a: &mut Session, b: &mut Session, now: &mut u32, buf: &mut [u8]) {
    round_with(a, b, now, &MSG, buf);
}

/// One `msg` from `a` to `b` and its ACK back, one interval later.
#[inline(always)]
fn round_with(a: &mut Session, b: &mut Session, now: &mut u32, msg: &[u8], buf: &mut [u8]) {
    assert_eq!(a.send(black_box(msg)), Ok(msg.len()));
    *now = now.wrapping_add(a.config().interval);
    a.update(*now);
    deliver(a, b);
    assert_eq!(b.recv(black_box(&mut *buf)), Ok(msg.len()));
    b.update(*now);
    deliver(b, a);
}

/// Brings both sessions to a steady state: `burst` messages in one go (so
/// both pools grow to that high-water mark and the peer's window is known),
/// then enough single-message rounds to cycle every ring slot twice and
/// take RTT samples. Ends with nothing queued, in flight or unread.
fn warm_up(a: &mut Session, b: &mut Session, now: &mut u32, burst: usize) {
    warm_up_for(a, b, now, burst, 2 * 2048);
}

/// [`warm_up`] with `rounds` single-message rounds at the end.
fn warm_up_for(a: &mut Session, b: &mut Session, now: &mut u32, burst: usize, rounds: usize) {
    let mut buf = [0u8; 256];
    round(a, b, now, &mut buf); // learn the peer's window
    for _ in 0..burst {
        assert_eq!(a.send(&MSG), Ok(MSG.len()));
    }
    let mut got = 0;
    for _ in 0..10_000 {
        if got == burst && a.wait_snd() == 0 {
            break;
        }
        *now = now.wrapping_add(a.config().interval);
        a.update(*now);
        deliver(a, b);
        while b.recv(&mut buf) == Ok(MSG.len()) {
            got += 1;
        }
        b.update(*now);
        deliver(b, a);
    }
    assert_eq!((got, a.wait_snd()), (burst, 0), "warm-up did not settle");
    for _ in 0..rounds {
        round(a, b, now, &mut buf);
    }
    // One more interval so that neither side has anything left to say.
    *now = now.wrapping_add(a.config().interval);
    a.update(*now);
    b.update(*now);
    deliver(a, b);
    deliver(b, a);
    assert!(a.output().is_empty() && b.output().is_empty());
    assert_eq!((a.wait_snd(), b.wait_snd(), b.queued_recv()), (0, 0, 0));
}

/// `count` messages from `a`, each flushed alone so that every datagram
/// holds exactly one PUSH. Needs the peer's window to be known (warm-up).
fn one_push_per_datagram(a: &mut Session, count: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        assert_eq!(a.send(&MSG), Ok(MSG.len()));
        a.flush();
        a.output_mut().drain(|d| out.push(d.to_vec()));
    }
    assert_eq!(out.len(), count);
    assert!(out.iter().all(|d| d.len() == OVERHEAD + MSG.len()));
    out
}
