//! Golden traces: the same script of `send` / `update` / `input` / `recv`
//! calls under the same virtual clock must make ikcp and our core emit
//! byte-identical datagrams.
//!
//! Each scenario runs two conversations side by side, one between two C
//! sessions and one between two of ours. Every datagram either side emits is
//! compared with its twin byte for byte (a mismatch prints both decoded);
//! since they are equal, one fault pattern (loss, delay) applies to both, and
//! the receivers see identical input. Observable state (RTT, RTO, cwnd,
//! remote window, queue lengths) is compared after every tick too.
//!
//! The deliberate differences of our core are kept out of the scripts: the
//! send queue never fills, every datagram is valid, `check` is not called,
//! and stream-mode reads take exactly ikcp's one segment (`peek_size` of
//! ikcp sizes our buffer).

use kcp_peers::{describe, Ikcp};
use kcp_rs::codec::Segments;
use kcp_rs::constants::{CMD_ACK, CMD_PUSH, CMD_WASK, CMD_WINS};
use kcp_rs::sim::{Outbox, Rng};
use kcp_rs::{Kcp, KcpConfig};

const CONV: u32 = 0x0102_0304;

/// What the wire carried, to prove a scenario exercised what it claims.
#[derive(Debug, Default)]
struct Seen {
    datagrams: u64,
    push: u64,
    ack: u64,
    wask: u64,
    wins: u64,
    dropped: u64,
    max_cwnd: u32,
    /// Datagrams in which a window probe or announcement follows an ACK.
    probe_after_ack: u64,
    cwnd_reset: bool,
}

/// A fault pattern: what happens to the n-th datagram sent in each direction.
struct Faults {
    rng: Rng,
    /// Loss probability, index 0 for a→b, 1 for b→a.
    loss: [f64; 2],
    /// One-way delay range in ms.
    delay: (u32, u32),
    /// Drop everything sent by side `.2` between `.0` and `.1` (ms).
    blackout: Option<(u32, u32, usize)>,
}

impl Faults {
    fn clean(delay: u32) -> Faults {
        Faults {
            rng: Rng::new(1),
            loss: [0.0; 2],
            delay: (delay, delay),
            blackout: None,
        }
    }
}

struct InFlight {
    due: u32,
    order: u64,
    to: usize,
    data: Vec<u8>,
}

struct Lockstep {
    name: &'static str,
    ours: [Kcp<Outbox>; 2],
    c: [Ikcp; 2],
    stream: bool,
    now: u32,
    /// What the sessions' clock reads at `now == 0`.
    epoch: u32,
    faults: Faults,
    wire: Vec<InFlight>,
    order: u64,
    seen: Seen,
}

impl Lockstep {
    fn new(name: &'static str, cfg: [KcpConfig; 2], faults: Faults) -> Lockstep {
        assert_eq!(cfg[0].stream, cfg[1].stream);
        let mk = |c: &KcpConfig| Kcp::with_config(CONV, Outbox::default(), *c).unwrap();
        let mkc = |c: &KcpConfig| Ikcp::with_config(CONV, c).unwrap();
        Lockstep {
            name,
            ours: [mk(&cfg[0]), mk(&cfg[1])],
            c: [mkc(&cfg[0]), mkc(&cfg[1])],
            stream: cfg[0].stream,
            now: 0,
            epoch: 0,
            faults,
            wire: Vec::new(),
            order: 0,
            seen: Seen::default(),
        }
    }

    fn send(&mut self, side: usize, data: &[u8]) {
        let ours = self.ours[side].send(data);
        let c = self.c[side].send(data);
        match (ours, c) {
            (Ok(a), Ok(b)) if a == b => {}
            (a, b) => panic!(
                "[{}] t={} side {side}: send({} bytes) ours {a:?} ikcp {b:?}",
                self.name,
                self.now,
                data.len()
            ),
        }
    }

    /// Reads everything complete on `side`, checking both give the same.
    fn recv_all(&mut self, side: usize) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        loop {
            let c_size = self.c[side].peek_size().ok();
            let ours_size = self.ours[side].peek_size().ok();
            if !self.stream {
                assert_eq!(
                    ours_size, c_size,
                    "[{}] t={} side {side}: peek_size",
                    self.name, self.now
                );
            } else {
                assert_eq!(ours_size.is_some(), c_size.is_some());
            }
            let Some(n) = c_size else { break };
            let mut a = vec![0u8; n];
            let mut b = vec![0u8; n];
            assert_eq!(self.c[side].recv(&mut b), Ok(n));
            assert_eq!(self.ours[side].recv(&mut a), Ok(n), "[{}]", self.name);
            assert_eq!(a, b, "[{}] t={} side {side}: recv", self.name, self.now);
            got.push(a);
        }
        got
    }

    /// Advances the clock to `now`: delivers what is due, updates all four
    /// sessions, compares and routes what they emit.
    fn tick(&mut self, now: u32) {
        self.deliver(now);
        self.update_all();
    }

    /// Delivers what is due by `now`; returns how many datagrams each side
    /// received.
    fn deliver(&mut self, now: u32) -> [usize; 2] {
        let mut count = [0; 2];
        self.now = now;
        self.wire.sort_by_key(|f| (f.due, f.order));
        let due = self.wire.iter().take_while(|f| f.due <= now).count();
        for f in self.wire.drain(..due).collect::<Vec<_>>() {
            let a = self.ours[f.to].input(&f.data);
            let b = self.c[f.to].input(&f.data);
            assert!(
                a.is_ok() && b.is_ok(),
                "[{}] t={now}: input ours {a:?} ikcp {b:?}\n{}",
                self.name,
                describe(&f.data)
            );
            count[f.to] += 1;
        }
        count
    }

    /// Updates all four sessions at the current time and routes their output.
    fn update_all(&mut self) {
        let now = self.now.wrapping_add(self.epoch);
        for side in 0..2 {
            self.ours[side].update(now);
            self.c[side].update(now);
        }
        for side in 0..2 {
            self.route(side);
        }
        self.compare_state();
    }

    /// Calls `flush` on `side` of both (outside the update schedule).
    fn flush(&mut self, side: usize) {
        self.ours[side].flush();
        self.c[side].flush();
        self.route(side);
    }

    fn route(&mut self, side: usize) {
        let mut ours = Vec::new();
        self.ours[side]
            .output_mut()
            .drain(|d| ours.push(d.to_vec()));
        let c = self.c[side].take_output();
        for i in 0..ours.len().max(c.len()) {
            match (ours.get(i), c.get(i)) {
                (Some(a), Some(b)) if a == b => {}
                (a, b) => self.mismatch(side, i, a, b),
            }
        }
        for d in ours {
            self.account(&d);
            let (lo, hi) = self.faults.delay;
            let delay = self.faults.rng.range(lo as u64, hi as u64) as u32;
            let lost = self.faults.rng.chance(self.faults.loss[side]);
            let black = matches!(self.faults.blackout,
                Some((from, to, s)) if s == side && (from..to).contains(&self.now));
            if lost || black {
                self.seen.dropped += 1;
                continue;
            }
            self.order += 1;
            self.wire.push(InFlight {
                due: self.now + delay,
                order: self.order,
                to: 1 - side,
                data: d,
            });
        }
    }

    fn account(&mut self, d: &[u8]) {
        self.seen.datagrams += 1;
        let mut acked = false;
        for (h, _) in Segments::new(d).map_while(Result::ok) {
            match h.cmd {
                CMD_PUSH => self.seen.push += 1,
                CMD_ACK => self.seen.ack += 1,
                CMD_WASK => self.seen.wask += 1,
                CMD_WINS => self.seen.wins += 1,
                _ => {}
            }
            if (h.cmd == CMD_WASK || h.cmd == CMD_WINS) && acked {
                self.seen.probe_after_ack += 1;
            }
            acked |= h.cmd == CMD_ACK;
        }
    }

    fn mismatch(&self, side: usize, i: usize, ours: Option<&Vec<u8>>, c: Option<&Vec<u8>>) -> ! {
        let show = |d: Option<&Vec<u8>>| d.map_or("(none)".to_string(), |d| describe(d));
        let first = match (ours, c) {
            (Some(a), Some(b)) => a
                .iter()
                .zip(b.iter())
                .position(|(x, y)| x != y)
                .unwrap_or(a.len().min(b.len()))
                .to_string(),
            _ => "-".into(),
        };
        panic!(
            "[{}] t={} side {side}: datagram {i} differs (first differing byte {first})\n\
             ours: {}\nikcp: {}",
            self.name,
            self.now,
            show(ours),
            show(c)
        );
    }

    fn compare_state(&mut self) {
        for side in 0..2 {
            let (o, c) = (&self.ours[side], &self.c[side]);
            let ours = (
                o.rtt(),
                o.rto(),
                o.cwnd(),
                o.remote_window(),
                o.wait_snd(),
                o.queued_recv(),
            );
            let theirs = (
                c.rtt(),
                c.rto(),
                c.cwnd(),
                c.remote_window(),
                c.wait_snd(),
                c.queued_recv(),
            );
            assert_eq!(
                ours, theirs,
                "[{}] t={} side {side}: (rtt, rto, cwnd, rmt_wnd, wait_snd, nrcv_que)",
                self.name, self.now
            );
            if side == 0 {
                if o.cwnd() > self.seen.max_cwnd {
                    self.seen.max_cwnd = o.cwnd();
                } else if o.cwnd() == 1 && self.seen.max_cwnd >= 4 {
                    self.seen.cwnd_reset = true;
                }
            }
        }
    }
}

/// Message `i` of a scenario: `len` bytes that identify it.
fn message(i: u32, len: usize) -> Vec<u8> {
    let mut m = vec![0u8; len];
    Rng::new(i as u64 + 1000).fill(&mut m);
    if len >= 4 {
        m[..4].copy_from_slice(&i.to_le_bytes());
    }
    m
}

/// Side 0 sends `count` messages with sizes from `size`, one every `gap`
/// ms; side 1 reads them (and echoes `echo` bytes of each). Runs until all
/// arrived and were acknowledged, or `limit` ms. Returns the lockstep for
/// further checks.
struct Traffic {
    count: u32,
    gap: u32,
    size: fn(&mut Rng) -> usize,
    echo: usize,
    limit: u32,
}

fn run(mut ls: Lockstep, t: Traffic) -> Lockstep {
    let mut rng = Rng::new(77);
    let mut sent = Vec::new();
    let mut received: Vec<u8> = Vec::new();
    let mut echoed: Vec<u8> = Vec::new();
    let mut echo_got: Vec<u8> = Vec::new();
    let mut next: Option<Vec<u8>> = None;
    let mut now = 0;
    while now < t.limit {
        if now % t.gap == 0 && (sent.len() as u32) < t.count {
            let m = next
                .take()
                .unwrap_or_else(|| message(sent.len() as u32, (t.size)(&mut rng)));
            // Our send queue is bounded (ikcp's is not): offer a message
            // only when ours has room for it, to both.
            let mss = ls.ours[0].mss();
            if ls.ours[0].send_capacity() >= m.len().max(1).div_ceil(mss) * mss {
                ls.send(0, &m);
                sent.push(m);
            } else {
                next = Some(m);
            }
        }
        ls.tick(now);
        for m in ls.recv_all(1) {
            received.extend_from_slice(&m);
            if t.echo > 0 {
                let e = &m[..m.len().min(t.echo)];
                ls.send(1, e);
                echoed.extend_from_slice(e);
            }
        }
        for m in ls.recv_all(0) {
            echo_got.extend_from_slice(&m);
        }
        let all_sent = sent.len() as u32 == t.count;
        if all_sent && ls.ours[0].wait_snd() == 0 && ls.ours[1].wait_snd() == 0 {
            break;
        }
        now += 1;
    }
    assert!(
        now < t.limit,
        "[{}] did not finish in {} ms",
        ls.name,
        t.limit
    );
    assert_eq!(received, sent.concat(), "[{}] content", ls.name);
    assert_eq!(echo_got, echoed, "[{}] echo content", ls.name);
    ls
}

fn small(r: &mut Rng) -> usize {
    r.range(1, 200) as usize
}

#[test]
fn default_config() {
    let cfg = KcpConfig::default();
    let ls = run(
        Lockstep::new("default", [cfg; 2], Faults::clean(15)),
        Traffic {
            count: 300,
            gap: 7,
            size: small,
            echo: 16,
            limit: 30_000,
        },
    );
    assert!(ls.seen.push >= 600 && ls.seen.ack >= 600, "{:?}", ls.seen);
}

#[test]
fn fast_config() {
    let cfg = KcpConfig::fast();
    let ls = run(
        Lockstep::new("fast", [cfg; 2], Faults::clean(20)),
        Traffic {
            count: 500,
            gap: 3,
            size: |r| r.range(1, 1400) as usize,
            echo: 8,
            limit: 30_000,
        },
    );
    assert!(ls.seen.push >= 1000, "{:?}", ls.seen);
}

#[test]
fn nodelay_level_2() {
    let cfg = KcpConfig::default().with_ikcp_nodelay(2, 10, 2, true);
    let faults = Faults {
        loss: [0.1, 0.1],
        delay: (10, 30),
        ..Faults::clean(0)
    };
    let ls = run(
        Lockstep::new("nodelay 2", [cfg; 2], faults),
        Traffic {
            count: 400,
            gap: 5,
            size: |r| r.range(1, 3000) as usize,
            echo: 32,
            limit: 60_000,
        },
    );
    assert!(ls.seen.dropped > 50, "{:?}", ls.seen);
    let s = ls.ours[0].stats();
    assert!(s.retransmits > 0 && s.fast_retransmits > 0, "{s:?}");
}

#[test]
fn message_mode_fragmentation() {
    let cfg = KcpConfig {
        snd_wnd: 128,
        ..KcpConfig::default().with_ikcp_nodelay(1, 10, 2, false)
    };
    let ls = run(
        Lockstep::new("fragmentation", [cfg; 2], Faults::clean(5)),
        Traffic {
            count: 60,
            gap: 50,
            // Up to 100 fragments of 1376 bytes; the limit is 127.
            size: |r| r.range(1377, 137_600) as usize,
            echo: 0,
            limit: 60_000,
        },
    );
    assert!(ls.seen.push > 60 * 20, "{:?}", ls.seen);
    // The largest message ikcp accepts, and the first it refuses.
    let mut ls = ls;
    ls.send(0, &message(0, 127 * 1376));
    let ours = ls.ours[0].send(&message(0, 128 * 1376));
    let c = ls.c[0].send(&message(0, 128 * 1376));
    assert!(ours.is_err() && c.is_err());
}

#[test]
fn stream_mode_coalesces_small_writes() {
    let cfg = KcpConfig {
        stream: true,
        ..KcpConfig::fast()
    };
    let ls = run(
        Lockstep::new("stream", [cfg; 2], Faults::clean(10)),
        Traffic {
            count: 3000,
            gap: 1,
            size: |r| r.range(1, 700) as usize,
            echo: 3,
            limit: 60_000,
        },
    );
    // Writes were merged: fewer data segments than writes, most full.
    assert!(ls.seen.push < 3000, "{:?}", ls.seen);
}

#[test]
fn lossy_exchange() {
    // Congestion control on, fast resend at 2: 5% / 2% loss and a
    // 1.5 s blackout of the sender make fast resends (cwnd halving), RTO
    // timeouts with backoff (cwnd reset to 1) and recovery all happen.
    let cfg = KcpConfig {
        resend: 2,
        snd_wnd: 64,
        interval: 20,
        ..KcpConfig::default()
    };
    // The receiver flushes every 10 ms: more ACK datagrams, more fast acks.
    let rcv = KcpConfig {
        interval: 10,
        ..cfg
    };
    let faults = Faults {
        rng: Rng::new(2024),
        loss: [0.05, 0.02],
        delay: (20, 40),
        blackout: Some((3_000, 4_500, 0)),
    };
    let ls = run(
        Lockstep::new("lossy", [cfg, rcv], faults),
        Traffic {
            count: 1500,
            gap: 2,
            size: |r| r.range(100, 1376) as usize,
            echo: 64,
            limit: 120_000,
        },
    );
    let s = ls.ours[0].stats();
    eprintln!("{s:?}\n{:?}", ls.seen);
    assert!(s.fast_retransmits > 10, "{s:?}");
    assert!(s.retransmits > 10, "{s:?}");
    assert!(ls.seen.cwnd_reset, "{:?}", ls.seen);
}

#[test]
fn lossy_exchange_default_backoff() {
    // Plain defaults (no fast resend): every loss waits for the RTO, which
    // doubles; the blackout makes one segment time out several times.
    let faults = Faults {
        rng: Rng::new(99),
        loss: [0.1, 0.1],
        delay: (30, 60),
        blackout: Some((2_000, 6_000, 0)),
    };
    let ls = run(
        Lockstep::new("lossy default", [KcpConfig::default(); 2], faults),
        Traffic {
            count: 200,
            gap: 20,
            size: small,
            echo: 4,
            limit: 120_000,
        },
    );
    assert!(ls.ours[0].stats().retransmits > 10);
}

#[test]
fn zero_window_probing() {
    // The receiver stops reading: its queue fills to 128 segments, it
    // advertises a zero window, the sender probes (WASK after 7 s, then
    // ×1.5) and the receiver answers (WINS). When it reads again it tells
    // the sender at once (WINS) and the transfer completes.
    let cfg = KcpConfig::default();
    let mut ls = Lockstep::new("zero window", [cfg; 2], Faults::clean(10));
    let mut sent = Vec::new();
    for i in 0..200 {
        let m = message(i, 100 + i as usize);
        ls.send(0, &m);
        sent.push(m);
    }
    let mut got = Vec::new();
    let mut now = 0;
    while now < 60_000 {
        ls.tick(now);
        if now == 25_000 {
            // The receiver says something while blocked, so the sender has
            // ACKs to flush along with its next probe.
            ls.send(1, b"still here");
        }
        if now >= 30_000 {
            got.extend(ls.recv_all(1));
        }
        ls.recv_all(0);
        if got.len() == 200 && ls.ours[0].wait_snd() == 0 {
            break;
        }
        now += 1;
    }
    assert_eq!(got, sent);
    assert!(ls.seen.wask >= 2, "{:?}", ls.seen);
    assert!(ls.seen.wins >= 3, "{:?}", ls.seen);
}

#[test]
fn window_reopens_with_acks_in_the_same_flush() {
    // The receiver's queue is full; a retransmission arrives and, before the
    // next flush, the application reads: that flush carries the ACK and the
    // WINS announcing the reopened window together.
    let cfg = KcpConfig::fast();
    // The receiver's ACKs are lost for 3 s, so the sender keeps
    // retransmitting into the full queue.
    let faults = Faults {
        blackout: Some((0, 3_000, 1)),
        ..Faults::clean(3)
    };
    let mut ls = Lockstep::new("wins with acks", [cfg; 2], faults);
    let mut sent = Vec::new();
    for i in 0..200 {
        let m = message(i, 50);
        ls.send(0, &m);
        sent.push(m);
    }
    let mut got = Vec::new();
    let mut reopened = false;
    let mut now = 0;
    while now < 30_000 && !(got.len() == 200 && ls.ours[0].wait_snd() == 0) {
        let arrived = ls.deliver(now);
        if !reopened && ls.ours[1].queued_recv() == 128 && arrived[1] > 0 && now > 1_000 {
            reopened = true;
            let mixed = ls.seen.probe_after_ack;
            got.extend(ls.recv_all(1));
            ls.flush(1);
            ls.update_all();
            assert!(ls.seen.probe_after_ack > mixed, "{:?}", ls.seen);
        } else {
            ls.update_all();
        }
        if reopened {
            got.extend(ls.recv_all(1));
        }
        now += 1;
    }
    assert!(reopened);
    assert_eq!(got, sent);
}

#[test]
fn long_run_rtt_settles() {
    // Five minutes of a 50 ms ± 10 ms link: the estimators converge and
    // stay identical.
    let faults = Faults {
        rng: Rng::new(5),
        loss: [0.02, 0.02],
        delay: (40, 60),
        blackout: None,
    };
    let cfg = KcpConfig::default().with_ikcp_nodelay(1, 10, 2, true);
    let ls = run(
        Lockstep::new("long run", [cfg; 2], faults),
        Traffic {
            count: 6000,
            gap: 50,
            size: small,
            echo: 8,
            limit: 400_000,
        },
    );
    let rtt = ls.ours[0].rtt();
    assert!((80..=130).contains(&rtt), "srtt {rtt}");
}

#[test]
fn clock_and_sequence_numbers_wrap() {
    // The virtual clock and the sequence numbers both cross u32::MAX during
    // a lossy transfer.
    let cfg = KcpConfig {
        initial_sn: u32::MAX - 100,
        ..KcpConfig::fast()
    };
    let faults = Faults {
        rng: Rng::new(31),
        loss: [0.1, 0.1],
        delay: (10, 30),
        blackout: None,
    };
    let mut ls = Lockstep::new("wrap", [cfg; 2], faults);
    ls.epoch = u32::MAX - 2_000;
    let ls = run(
        ls,
        Traffic {
            count: 1000,
            gap: 4,
            size: |r| r.range(1, 2000) as usize,
            echo: 16,
            limit: 60_000,
        },
    );
    assert!(ls.c[0].cb().snd_nxt < 10_000, "{:?}", ls.c[0]);
}

#[test]
fn mismatch_report_decodes_both_headers() {
    // The harness itself must be able to fail: a datagram that differs in
    // one byte is reported with both headers decoded.
    let ls = Lockstep::new("self-test", [KcpConfig::default(); 2], Faults::clean(0));
    let a = message(1, 30);
    let mut b = a.clone();
    b[5] ^= 1;
    let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ls.mismatch(0, 0, Some(&a), Some(&b))
    }))
    .unwrap_err();
    let msg = err.downcast_ref::<String>().unwrap();
    assert!(msg.contains("first differing byte 5"), "{msg}");
    assert!(msg.contains("ours:") && msg.contains("ikcp:"), "{msg}");
}
