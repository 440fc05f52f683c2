//! Side by side: our core, the C ikcp (kcp-sys) and the `kcp` crate (0.6)
//! doing the same work in the same run.
//!
//! - `message_round`: 1,000 × 64-byte messages sent, flushed, input on the
//!   peer, received, and the ACKs returned and input on the sender;
//! - `bulk`: 16 MiB of 1,376-byte messages through an in-memory link under
//!   a virtual clock, with no loss and with 10% loss.
//!
//! Every iteration checks what it delivered (a failing call panics instead
//! of being measured as fast). Run with
//! `cargo bench -p kcp-peers --bench peers`.

use std::cell::RefCell;
use std::hint::black_box;
use std::io;
use std::rc::Rc;

use criterion::{criterion_group, BatchSize, BenchmarkId, Criterion, Throughput};
use kcp_peers::{Ikcp, Peer};
use kcp_rs::sim::{Outbox, Rng};
use kcp_rs::{Kcp, KcpConfig};

const CONV: u32 = 0x4b43_5021;

/// Room every output sink gets up front: more than one flush of any
/// scenario (a 256-segment window of full datagrams plus ACKs, or a round's
/// 1,000 small messages packed into datagrams).
const SINK_BYTES: usize = 512 << 10;
const SINK_DATAGRAMS: usize = 1024;

/// Datagrams written by the `kcp` crate, into the same sink type as the
/// other two (an `Outbox` shared with the wrapper, which drains it).
#[derive(Clone)]
struct Sink(Rc<RefCell<Outbox>>);

impl io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        kcp_rs::KcpOutput::output(&mut *self.0.borrow_mut(), buf)
            .map_err(|e| io::Error::other(e.to_string()))
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The `kcp` crate behind the same [`Peer`] interface.
struct KcpCrate {
    kcp: kcp::Kcp<Sink>,
    sink: Sink,
}

impl KcpCrate {
    fn new(cfg: &KcpConfig) -> KcpCrate {
        let sink = Sink(Rc::new(RefCell::new(Outbox::with_room(
            SINK_DATAGRAMS,
            SINK_BYTES,
        ))));
        let mut kcp = if cfg.stream {
            kcp::Kcp::new_stream(CONV, sink.clone())
        } else {
            kcp::Kcp::new(CONV, sink.clone())
        };
        kcp.set_nodelay(cfg.nodelay, cfg.interval as i32, cfg.resend as i32, cfg.nc);
        kcp.set_wndsize(cfg.snd_wnd, cfg.rcv_wnd);
        KcpCrate { kcp, sink }
    }
}

impl Peer for KcpCrate {
    fn send(&mut self, data: &[u8]) -> Result<usize, String> {
        self.kcp.send(data).map_err(|e| e.to_string())
    }
    fn recv(&mut self, buf: &mut [u8]) -> Option<usize> {
        self.kcp.recv(buf).ok()
    }
    fn input(&mut self, data: &[u8]) -> Result<(), String> {
        self.kcp.input(data).map(|_| ()).map_err(|e| e.to_string())
    }
    fn update(&mut self, now: u32) {
        self.kcp.update(now).expect("update");
    }
    fn flush(&mut self) {
        self.kcp.flush().expect("flush");
    }
    fn drain(&mut self, f: &mut dyn FnMut(&[u8])) {
        self.sink.0.borrow_mut().drain(f);
    }
    fn wait_snd(&self) -> u32 {
        self.kcp.wait_snd() as u32
    }
    fn peek_size(&self) -> Option<usize> {
        self.kcp.peeksize().ok()
    }
}

#[derive(Clone, Copy, Debug)]
enum Impl {
    Ours,
    /// Ours with the zero-copy calls: the sender writes each message in
    /// place with `send_with`, the receiver reads it with `input_with`.
    OursInPlace,
    Ikcp,
    KcpCrate,
}

impl Impl {
    const ALL: [Impl; 4] = [Impl::Ours, Impl::OursInPlace, Impl::Ikcp, Impl::KcpCrate];

    fn name(self) -> &'static str {
        match self {
            Impl::Ours => "kcp-rs",
            Impl::OursInPlace => "kcp-rs in place",
            Impl::Ikcp => "ikcp (C)",
            Impl::KcpCrate => "kcp 0.6",
        }
    }

    /// Whether messages are written and read in place, through
    /// [`Peer::send_with`] and [`Peer::input_with`].
    fn in_place(self) -> bool {
        matches!(self, Impl::OursInPlace)
    }

    /// A session whose output sink already has room for any flush of
    /// these scenarios, touched: the sink stands for the kernel's socket
    /// buffer, so no implementation pays for growing it in a measurement.
    fn make(self, cfg: &KcpConfig) -> Box<dyn Peer> {
        match self {
            Impl::Ours | Impl::OursInPlace => {
                let sink = Outbox::with_room(SINK_DATAGRAMS, SINK_BYTES);
                Box::new(Kcp::with_config(CONV, sink, *cfg).unwrap())
            }
            Impl::Ikcp => {
                let mut ikcp = Ikcp::with_config(CONV, cfg).unwrap();
                ikcp.reserve_output(SINK_DATAGRAMS, SINK_BYTES);
                Box::new(ikcp)
            }
            Impl::KcpCrate => Box::new(KcpCrate::new(cfg)),
        }
    }
}

// ----- (a) message round ----------------------------------------------------

const ROUND: usize = 1_000;

/// A pair ready for rounds: windows large enough for a whole round, no
/// congestion window, one warm-up round done.
struct RoundPair {
    a: Box<dyn Peer>,
    b: Box<dyn Peer>,
    now: u32,
    in_place: bool,
}

impl RoundPair {
    fn new(imp: Impl) -> RoundPair {
        let cfg = KcpConfig {
            snd_wnd: 1024,
            rcv_wnd: 1024,
            ..KcpConfig::fast()
        };
        let mut p = RoundPair {
            a: imp.make(&cfg),
            b: imp.make(&cfg),
            now: 0,
            in_place: imp.in_place(),
        };
        // Open the windows: the first update only sets cwnd, and the peer
        // must advertise its receive window once.
        p.a.update(0);
        p.b.update(0);
        // A one-message round teaches a the peer's window (1024, not
        // ikcp's initial 128); then full rounds.
        p.round(1);
        for _ in 0..3 {
            p.round(ROUND);
        }
        p
    }

    /// One round of `count` messages; returns the messages received.
    fn round(&mut self, count: usize) -> usize {
        self.round_with(count, |_| {})
    }

    /// [`round`](Self::round), calling `lap(i)` at the end of each of its
    /// [`PHASES`].
    #[inline(always)]
    fn round_with(&mut self, count: usize, mut lap: impl FnMut(usize)) -> usize {
        self.now += 20;
        let msg = [0x5au8; 64];
        for _ in 0..count {
            if self.in_place {
                self.a.send_with(64, &mut |piece| piece.fill(0x5a)).unwrap();
            } else {
                self.a.send(&msg).unwrap();
            }
        }
        lap(0);
        self.a.update(self.now);
        self.a.flush();
        lap(1);
        let (a, b) = (&mut self.a, &mut self.b);
        let mut got = 0;
        if self.in_place {
            // Input and read in one pass: the "recv" phase is empty.
            a.drain(&mut |d| {
                b.input_with(d, &mut |m, end| {
                    assert!(m.len() == 64 && end);
                    got += 1;
                })
                .unwrap();
            });
        } else {
            a.drain(&mut |d| b.input(d).unwrap());
        }
        lap(2);
        let mut buf = [0u8; 128];
        while let Some(n) = b.recv(&mut buf) {
            assert_eq!(n, 64);
            got += 1;
        }
        lap(3);
        b.update(self.now);
        b.flush();
        lap(4);
        b.drain(&mut |d| a.input(d).unwrap());
        lap(5);
        assert_eq!(got, count, "round delivered {got} of {count}");
        assert_eq!(a.wait_snd(), 0, "round left data unacknowledged");
        got
    }
}

/// The phases of a message round, as `peers time phases` reports them.
const PHASES: [&str; 6] = ["send", "flush", "input", "recv", "ack flush", "ack input"];

fn message_round(c: &mut Criterion) {
    let mut g = c.benchmark_group("message_round_1000x64B");
    g.throughput(Throughput::Elements(ROUND as u64));
    for imp in Impl::ALL {
        let mut pair = RoundPair::new(imp);
        g.bench_function(imp.name(), |bch| bch.iter(|| black_box(pair.round(ROUND))));
    }
    g.finish();
}

// ----- (b) bulk -------------------------------------------------------------

const BULK: usize = 16 << 20;
const SEG: usize = 1376;

/// A sender and a receiver joined by an in-memory link losing `loss` of
/// the datagrams each way (seeded), under a 10 ms virtual clock.
///
/// Measured two ways: a fresh pair for each transfer, built outside the
/// measurement (the cost includes the first touch of the sessions' own
/// buffers as they grow, not the sinks, which are warm: see
/// [`Impl::make`]), and the long-lived way, transfer after transfer through
/// one pair, as a real connection does (where allocating per segment meets
/// a heap that the other live sessions have fragmented).
struct BulkPair {
    a: Box<dyn Peer>,
    b: Box<dyn Peer>,
    in_place: bool,
    loss: f64,
    rng: Rng,
    now: u32,
    /// Messages sent and received so far; message `i` carries `i`.
    sent: u64,
    got: u64,
}

impl BulkPair {
    fn new(imp: Impl, loss: f64, seed: u64) -> BulkPair {
        let cfg = KcpConfig {
            snd_wnd: 256,
            rcv_wnd: 256,
            ..KcpConfig::fast()
        };
        BulkPair {
            a: imp.make(&cfg),
            b: imp.make(&cfg),
            in_place: imp.in_place(),
            loss,
            rng: Rng::new(seed),
            now: 0,
            sent: 0,
            got: 0,
        }
    }

    /// A pair that has moved one transfer already: every buffer at its
    /// working size.
    fn long_lived(imp: Impl, loss: f64, seed: u64) -> BulkPair {
        let mut p = BulkPair::new(imp, loss, seed);
        p.run();
        p
    }

    /// Moves `BULK` bytes in 1,376-byte messages from a to b. Returns the
    /// bytes received, each message checked for its number (in order, once).
    fn run(&mut self) -> usize {
        let wnd = 256;
        let mut msg = [0u8; SEG];
        let end = self.got + (BULK / SEG + 1) as u64;
        let mut bytes = 0;
        let mut buf = [0u8; SEG];
        let (a, b, rng, loss) = (&mut self.a, &mut self.b, &mut self.rng, self.loss);
        let (sent, got) = (&mut self.sent, &mut self.got);
        let first_now = self.now;
        while *got < end {
            while *sent < end && a.wait_snd() < 2 * wnd {
                // The same bytes either way: the number, then zeros (in
                // place they must be written: the buffer is recycled).
                let id = sent.to_le_bytes();
                let r = if self.in_place {
                    a.send_with(SEG, &mut |piece| {
                        piece[..8].copy_from_slice(&id);
                        piece[8..].fill(0);
                    })
                } else {
                    msg[..8].copy_from_slice(&id);
                    a.send(&msg)
                };
                if r.is_err() {
                    break;
                }
                *sent += 1;
            }
            a.update(self.now);
            b.update(self.now);
            let mut check = |m: &[u8]| {
                assert_eq!(m.len(), SEG);
                let id = u64::from_le_bytes(m[..8].try_into().unwrap());
                assert_eq!(id, *got, "out of order");
                *got += 1;
                bytes += m.len();
            };
            // The link: each datagram goes from the sender's sink straight
            // into the peer's input, or is dropped. Input sends nothing (in
            // all three implementations), so this is the order of draining
            // both sinks first and then delivering.
            a.drain(&mut |d| {
                if rng.chance(loss) {
                } else if self.in_place {
                    b.input_with(d, &mut |m, end| {
                        assert!(end);
                        check(m);
                    })
                    .unwrap();
                } else {
                    b.input(d).unwrap();
                }
            });
            b.drain(&mut |d| {
                if !rng.chance(loss) {
                    a.input(d).unwrap();
                }
            });
            while let Some(n) = b.recv(&mut buf) {
                check(&buf[..n]);
            }
            self.now += 10;
            assert!(
                self.now - first_now < 10_000_000,
                "bulk transfer stalled at {got} of {end}"
            );
        }
        assert!(bytes >= BULK);
        bytes
    }
}

/// The loss rate a bulk scenario's name (`bulk0`, `bulk10-long`, ...) asks for.
fn bulk_loss(scenario: &str) -> f64 {
    if scenario.starts_with("bulk10") {
        0.1
    } else {
        0.0
    }
}

fn bulk_transfer(c: &mut Criterion) {
    for (long_lived, loss) in [(false, 0.0), (false, 0.1), (true, 0.0), (true, 0.1)] {
        let kind = if long_lived { "_long_lived" } else { "" };
        let name = format!("bulk_16MiB_loss_{}pct{kind}", (loss * 100.0) as u32);
        let mut g = c.benchmark_group(name);
        g.throughput(Throughput::Bytes(BULK as u64));
        g.sample_size(10);
        for imp in Impl::ALL {
            g.bench_with_input(
                BenchmarkId::from_parameter(imp.name()),
                &imp,
                |bch, &imp| {
                    if long_lived {
                        let mut pair = BulkPair::long_lived(imp, loss, 1);
                        bch.iter(|| black_box(pair.run()))
                    } else {
                        let mut seed = 0;
                        bch.iter_batched(
                            || {
                                seed += 1;
                                BulkPair::new(imp, loss, seed)
                            },
                            |mut pair| {
                                black_box(pair.run());
                                pair // dropped outside the measurement
                            },
                            BatchSize::PerIteration,
                        )
                    }
                },
            );
        }
        g.finish();
    }
}

criterion_group!(benches, message_round, bulk_transfer);

/// `peers instr <round|bulk0|bulk10|bulk0-long|bulk10-long>
/// <ours|ours-in-place|ikcp|crate> <0|1>` runs one scenario outside
/// criterion for callgrind: with `1` the measured work (10 message rounds,
/// or one bulk transfer; `-long`: a second transfer through the same pair),
/// with `0` only the set-up (`-long`: the first transfer).
/// The difference of the two instruction counts is the work itself; see
/// `scripts/peers-instr.sh`. Anything else runs the criterion benchmarks.
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, scenario, imp, mode] = args.as_slice() {
        if flag == "instr" {
            let imp = match imp.as_str() {
                "ours" => Impl::Ours,
                "ours-in-place" => Impl::OursInPlace,
                "ikcp" => Impl::Ikcp,
                "crate" => Impl::KcpCrate,
                _ => panic!("unknown implementation {imp}"),
            };
            let run = mode == "1";
            match scenario.as_str() {
                "round" => {
                    let mut pair = RoundPair::new(imp);
                    if run {
                        for _ in 0..INSTR_ROUNDS {
                            black_box(pair.round(ROUND));
                        }
                    }
                }
                "bulk0" | "bulk10" => {
                    let mut pair = BulkPair::new(imp, bulk_loss(scenario), 1);
                    if run {
                        black_box(pair.run());
                    }
                }
                "bulk0-long" | "bulk10-long" => {
                    // The set-up is a first transfer, so the measured one
                    // starts with every buffer at its working size.
                    let mut pair = BulkPair::long_lived(imp, bulk_loss(scenario), 1);
                    if run {
                        black_box(pair.run());
                    }
                }
                _ => panic!("unknown scenario {scenario}"),
            }
            return;
        }
    }
    if let [flag, scenario, reps] = args.as_slice() {
        if flag == "time" {
            interleaved(scenario, reps.parse().expect("a repetition count"));
            return;
        }
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}

/// `peers time phases <reps>`: where the time of a message round goes, per
/// implementation: the median over `reps` rounds of each phase, in
/// nanoseconds per message (rounds of the three in turn, each timed one
/// after five untimed; the clock is read six times per round of 1,000
/// messages).
fn phases(reps: usize) {
    let mut pairs: Vec<RoundPair> = Impl::ALL.iter().map(|&i| RoundPair::new(i)).collect();
    let mut times = vec![vec![Vec::with_capacity(reps); PHASES.len()]; Impl::ALL.len()];
    for _ in 0..reps {
        for (pair, times) in pairs.iter_mut().zip(&mut times) {
            // Warm, as in `peers time round`.
            for _ in 0..5 {
                black_box(pair.round(ROUND));
            }
            let mut last = std::time::Instant::now();
            black_box(pair.round_with(ROUND, |i| {
                let now = std::time::Instant::now();
                times[i].push((now - last).as_secs_f64() * 1e9 / ROUND as f64);
                last = now;
            }));
        }
    }
    for (imp, times) in Impl::ALL.iter().zip(&mut times) {
        let medians: Vec<f64> = times
            .iter_mut()
            .map(|t| {
                t.sort_by(f64::total_cmp);
                t[t.len() / 2]
            })
            .collect();
        let cols: Vec<String> = PHASES
            .iter()
            .zip(&medians)
            .map(|(name, t)| format!("{name} {t:.1}"))
            .collect();
        let sum: f64 = medians.iter().sum();
        println!(
            "phases {:10} {} = {sum:.1} ns/msg",
            imp.name(),
            cols.join(", ")
        );
    }
}

/// The copies alone of a bulk transfer: each of the [`BULK`] / [`SEG`]
/// messages is copied four times, as our core and the link do (message →
/// send block, block → sink, sink → receive block, block → the caller's
/// buffer), through buffers of a 256-segment window. The floor under our
/// `bulk` time; ikcp makes one copy more (into its flush buffer).
fn copies_only(rounds: usize) -> usize {
    const WND: usize = 256;
    let mut snd = vec![0u8; WND * (SEG + 24)];
    let mut sink = vec![0u8; WND * (SEG + 24)];
    let mut rcv = vec![0u8; WND * SEG];
    let mut msg = [0u8; SEG];
    let mut buf = [0u8; SEG];
    let mut total = 0;
    for _ in 0..rounds {
        for i in 0..BULK / SEG + 1 {
            let k = i % WND;
            msg[..8].copy_from_slice(&(i as u64).to_le_bytes());
            let s = k * (SEG + 24);
            snd[s + 24..s + 24 + SEG].copy_from_slice(black_box(&msg));
            sink[s..s + 24 + SEG].copy_from_slice(black_box(&snd[s..s + 24 + SEG]));
            rcv[k * SEG..(k + 1) * SEG].copy_from_slice(black_box(&sink[s + 24..s + 24 + SEG]));
            buf.copy_from_slice(black_box(&rcv[k * SEG..(k + 1) * SEG]));
            total += black_box(&buf)[0] as usize;
        }
    }
    total
}

/// `peers time <round|bulk0|bulk10|bulk0-long|bulk10-long|copies|phases>
/// <reps>`: the implementations in turn, one iteration each, `reps` times,
/// so that a change in the machine's load hits all alike (`-long`: each
/// through one long-lived pair, see [`BulkPair`]); prints each one's
/// median and its ratio to ikcp's (`phases`: the mean time per message of
/// each phase of the round).
fn interleaved(scenario: &str, reps: usize) {
    if scenario == "phases" {
        phases(reps);
        return;
    }
    if scenario == "copies" {
        let mut t: Vec<f64> = (0..reps)
            .map(|_| {
                let t = std::time::Instant::now();
                black_box(copies_only(1));
                t.elapsed().as_secs_f64() * 1e6
            })
            .collect();
        t.sort_by(f64::total_cmp);
        println!(
            "copies only (4 per message, 16 MiB): median {:.1} us",
            t[t.len() / 2]
        );
        return;
    }
    let mut pairs: Vec<RoundPair> = Impl::ALL.iter().map(|&i| RoundPair::new(i)).collect();
    let loss = bulk_loss(scenario);
    let mut long: Vec<BulkPair> = if scenario.ends_with("-long") {
        Impl::ALL
            .iter()
            .map(|&i| BulkPair::long_lived(i, loss, 1))
            .collect()
    } else {
        Vec::new()
    };
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); Impl::ALL.len()];
    for rep in 0..reps {
        for k in 0..Impl::ALL.len() {
            let i = (rep + k) % Impl::ALL.len();
            if scenario == "round" {
                // Warm, as in criterion's loop: a few untimed rounds first.
                for _ in 0..5 {
                    black_box(pairs[i].round(ROUND));
                }
            }
            let mut fresh: Vec<Option<BulkPair>> = Vec::new();
            if scenario == "bulk0" || scenario == "bulk10" {
                fresh = Impl::ALL.iter().map(|_| None).collect();
                fresh[i] = Some(BulkPair::new(Impl::ALL[i], loss, rep as u64 + 1));
            }
            let t = std::time::Instant::now();
            match scenario {
                "round" => {
                    black_box(pairs[i].round(ROUND));
                }
                "bulk0" | "bulk10" => {
                    // Dropped after the clock stops, as it was built before.
                    black_box(fresh[i].as_mut().expect("one fresh pair per rep").run());
                }
                "bulk0-long" | "bulk10-long" => {
                    black_box(long[i].run());
                }
                _ => panic!("unknown scenario {scenario}"),
            }
            times[i].push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let medians: Vec<f64> = times.iter_mut().map(median).collect();
    let ikcp = Impl::ALL
        .iter()
        .position(|i| matches!(i, Impl::Ikcp))
        .unwrap();
    for (imp, m) in Impl::ALL.iter().zip(&medians) {
        println!(
            "{scenario} {:17} median {m:10.1} us  ratio to ikcp {:.2}",
            imp.name(),
            m / medians[ikcp]
        );
    }
}

/// Rounds of [`ROUND`] messages per `instr round` run.
const INSTR_ROUNDS: usize = 10;
