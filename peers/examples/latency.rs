//! The latency experiment of ikcp's `test.cpp`, run on the C ikcp and on our
//! core through the same simulated link, under a virtual clock, and on our
//! fast mode with FEC in front of both sessions.
//!
//! The link is test.cpp's `LatencySimulator(10, 60, 125)`: in each
//! direction exactly 5 of every 100 datagrams are lost (drawn without
//! replacement from a bag of 100), each datagram is delayed 30–61 ms, and
//! delivery is FIFO (a late datagram holds back the ones behind it); at most
//! 1,000 datagrams wait in each direction. Windows are 128/128. The sender
//! writes an 8-byte message (index, timestamp) every 20 ms, the peer echoes
//! each one, and the sender records the round-trip time until 1,000 echoes
//! arrived.
//!
//! Modes, as in test.cpp: default `nodelay(0,10,0,0)`, normal
//! `nodelay(0,10,0,1)`, fast `nodelay(2,10,2,1)` with `rx_minrto = 10` and
//! fast resend 1 on the sender.
//!
//! FEC rows: our fast mode with a [`FecEncoder`] on each side's output and a
//! [`FecDecoder`] before each side's input (KCP MTU 1392, the FEC header
//! taken from 1400), for a few presets, with the encoder's early group close
//! ([`FecEncoder::poll`] after every update, with the session's RTO;
//! [`FecConfig::early_close`]) on and off. Every datagram on the link counts
//! against the loss bag, parity included.
//!
//! Each configuration runs on every seed; the table pools the RTTs of all
//! seeds. The chart (CDF of the RTT per implementation and mode) goes to
//! `docs/latency.svg` unless `--chart PATH` or `--no-chart` says otherwise.
//!
//! `--trace N` explains the slow echoes of our fast-mode rows: for each
//! variant it counts the pushes whose first copy was lost and that FEC could
//! not rebuild, sorts the echoes of 250 ms or more by cause, and prints the N
//! slowest with the message that held each direction back (in-order
//! delivery), which shards of its group were lost, when the group's parity
//! left, when the decoder could rebuild it, and when KCP resent it. The
//! environment variable `LATENCY_GROUP_WAIT_DIVISOR` overrides the FEC rows'
//! [`FecConfig::group_wait_divisor`] (4).
//!
//! ```text
//! cargo run --release -p kcp-peers --example latency [SEEDS] [--chart PATH | --no-chart] [--trace N]
//! ```
//!
//! `SEEDS` is one seed (`3`), a range (`1-10`, the default) or a list
//! (`1,4,9`).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::rc::Rc;

use kcp_peers::{Ikcp, Peer};
use kcp_rs::fec::{FecConfig, FecDecoder, FecEncoder};
use kcp_rs::sim::{Outbox, Rng};
use kcp_rs::{Kcp, KcpConfig, KcpError};

const CONV: u32 = 0x1122_3344;
const ECHOES: u32 = 1000;
/// The link MTU the FEC runs keep to: KCP gets 8 bytes less.
const LINK_MTU: u32 = 1400;
/// The goal for fast mode with FEC.
const FEC_MAX_GOAL_MS: u32 = 250;

/// test.h's `Random`: draws 0..size without replacement, refilling the bag
/// when it is empty.
struct Bag {
    seeds: Vec<u32>,
    left: usize,
}

impl Bag {
    fn new(size: u32) -> Bag {
        Bag {
            seeds: (0..size).collect(),
            left: 0,
        }
    }

    fn draw(&mut self, rng: &mut Rng) -> u32 {
        if self.left == 0 {
            for (i, s) in self.seeds.iter_mut().enumerate() {
                *s = i as u32;
            }
            self.left = self.seeds.len();
        }
        let i = rng.range(0, self.left as u64 - 1) as usize;
        let x = self.seeds[i];
        self.left -= 1;
        self.seeds[i] = self.seeds[self.left];
        x
    }
}

/// test.h's `LatencySimulator` with a seeded generator.
struct LatencySim {
    rng: Rng,
    bags: [Bag; 2],
    /// (due, index in `log`, bytes)
    tunnels: [VecDeque<(u64, usize, Vec<u8>)>; 2],
    lost_pct: u32,
    delay: (u64, u64),
    nmax: usize,
    tx: [u64; 2],
    /// Bytes sent, each way.
    tx_bytes: [u64; 2],
    /// Every datagram sent, when `--trace` asks for it.
    log: Option<Vec<Sent>>,
}

/// One datagram on the simulated link, for `--trace`.
#[derive(Clone, PartialEq, Eq)]
struct Sent {
    /// 0: sender to echoer, 1: back.
    dir: usize,
    at: u64,
    /// When it left the tunnel (`None`: lost, or still in flight).
    arrived: Option<u64>,
    bytes: Vec<u8>,
}

impl LatencySim {
    /// `lostrate` round-trip loss in %, RTT between `rttmin` and `rttmax`.
    fn new(seed: u64, lostrate: u32, rttmin: u64, rttmax: u64) -> LatencySim {
        LatencySim {
            rng: Rng::new(seed),
            bags: [Bag::new(100), Bag::new(100)],
            tunnels: [VecDeque::new(), VecDeque::new()],
            lost_pct: lostrate / 2,
            delay: (rttmin / 2, rttmax / 2),
            nmax: 1000,
            tx: [0; 2],
            tx_bytes: [0; 2],
            log: None,
        }
    }

    /// A datagram sent by `peer` (0 or 1) at `now`.
    fn send(&mut self, peer: usize, now: u64, data: &[u8]) {
        self.tx[peer] += 1;
        self.tx_bytes[peer] += data.len() as u64;
        let id = self.log.as_mut().map_or(0, |log| {
            log.push(Sent {
                dir: peer,
                at: now,
                arrived: None,
                bytes: data.to_vec(),
            });
            log.len() - 1
        });
        if self.bags[peer].draw(&mut self.rng) < self.lost_pct {
            return;
        }
        if self.tunnels[peer].len() >= self.nmax {
            return;
        }
        let (lo, hi) = self.delay;
        // test.h: rttmin + rand() % (rttmax - rttmin), i.e. 30..=61 ms.
        let delay = lo + self.rng.range(0, hi - lo - 1);
        self.tunnels[peer].push_back((now + delay, id, data.to_vec()));
    }

    /// The next datagram for `peer` due by `now`, FIFO.
    fn recv(&mut self, peer: usize, now: u64) -> Option<Vec<u8>> {
        let tunnel = &mut self.tunnels[1 - peer];
        match tunnel.front() {
            Some((due, _, _)) if *due <= now => {
                let (_, id, d) = tunnel.pop_front()?;
                if let Some(log) = &mut self.log {
                    log[id].arrived = Some(now);
                }
                Some(d)
            }
            _ => None,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Default,
    Normal,
    Fast,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Default => "default",
            Mode::Normal => "normal",
            Mode::Fast => "fast",
        }
    }

    /// (sender, echoer) configurations.
    fn configs(self) -> (KcpConfig, KcpConfig) {
        let base = KcpConfig {
            snd_wnd: 128,
            rcv_wnd: 128,
            ..KcpConfig::default()
        };
        match self {
            Mode::Default => {
                let c = base.with_ikcp_nodelay(0, 10, 0, false);
                (c, c)
            }
            Mode::Normal => {
                let c = base.with_ikcp_nodelay(0, 10, 0, true);
                (c, c)
            }
            Mode::Fast => {
                let c = base.with_ikcp_nodelay(2, 10, 2, true);
                let sender = KcpConfig {
                    min_rto: Some(10),
                    resend: 1,
                    ..c
                };
                (sender, c)
            }
        }
    }
}

/// One row of the table: an implementation in a mode, optionally with FEC.
#[derive(Clone, Copy)]
enum Variant {
    Ikcp(Mode),
    Ours(Mode),
    /// Our fast mode behind FEC `k + m`, with or without early group close.
    OursFec {
        k: usize,
        m: usize,
        early: bool,
    },
}

impl Variant {
    fn all() -> Vec<Variant> {
        let mut v = Vec::new();
        for mode in [Mode::Default, Mode::Normal, Mode::Fast] {
            v.push(Variant::Ikcp(mode));
            v.push(Variant::Ours(mode));
        }
        // The four presets (low_latency, balanced, high_protection,
        // bandwidth_efficient) and 2+2.
        for (k, m) in [(2, 1), (2, 2), (4, 2), (8, 4), (10, 2)] {
            for early in [true, false] {
                v.push(Variant::OursFec { k, m, early });
            }
        }
        v
    }

    fn mode(self) -> String {
        match self {
            Variant::Ikcp(m) | Variant::Ours(m) => m.name().to_string(),
            Variant::OursFec { k, m, early } => {
                format!(
                    "fast+FEC {k}+{m} {}",
                    if early { "poll" } else { "no poll" }
                )
            }
        }
    }

    fn implementation(self) -> &'static str {
        match self {
            Variant::Ikcp(_) => "ikcp",
            _ => "kcp-rs",
        }
    }

    fn label(self) -> String {
        format!("{} {}", self.implementation(), self.mode())
    }

    /// The sender and the echoer; FEC runs add their counters to `totals`
    /// when they end.
    fn peers(self, totals: &Rc<RefCell<FecTotals>>) -> (Box<dyn Peer>, Box<dyn Peer>) {
        match self {
            Variant::Ikcp(mode) => {
                let (c1, c2) = mode.configs();
                (
                    Box::new(Ikcp::with_config(CONV, &c1).expect("config")),
                    Box::new(Ikcp::with_config(CONV, &c2).expect("config")),
                )
            }
            Variant::Ours(mode) => {
                let (c1, c2) = mode.configs();
                (
                    Box::new(Kcp::with_config(CONV, Outbox::default(), c1).expect("config")),
                    Box::new(Kcp::with_config(CONV, Outbox::default(), c2).expect("config")),
                )
            }
            Variant::OursFec { k, m, early } => {
                let mut fec = FecConfig {
                    early_close: early,
                    ..FecConfig::new(k, m).expect("FEC config")
                };
                if let Ok(d) = std::env::var("LATENCY_GROUP_WAIT_DIVISOR") {
                    fec.group_wait_divisor = d.parse().expect("a divisor");
                }
                let (c1, c2) = Mode::Fast.configs();
                let mtu = FecConfig::kcp_mtu(LINK_MTU);
                (
                    Box::new(FecPeer::new(KcpConfig { mtu, ..c1 }, fec, totals)),
                    Box::new(FecPeer::new(KcpConfig { mtu, ..c2 }, fec, totals)),
                )
            }
        }
    }
}

/// Counters of the FEC runs of one variant, both sides, all seeds.
#[derive(Clone, Copy, Default)]
struct FecTotals {
    /// KCP datagrams rebuilt by the decoders.
    recovered: u64,
    /// Groups forgotten with data missing (more than `m` losses).
    unrecoverable: u64,
    /// Empty packets sent to close groups early.
    empty: u64,
    /// KCP retransmissions (timeout and fast).
    retransmits: u64,
}

/// Our core with an FEC encoder on its output and a decoder before its
/// input, seen by the experiment as one more [`Peer`].
struct FecPeer {
    kcp: Kcp<Outbox>,
    enc: FecEncoder,
    dec: FecDecoder,
    /// The clock of the last update, for the decoder.
    now: u32,
    /// FEC packets not yet handed to the link.
    out: Vec<Vec<u8>>,
    totals: Rc<RefCell<FecTotals>>,
}

impl FecPeer {
    fn new(cfg: KcpConfig, fec: FecConfig, totals: &Rc<RefCell<FecTotals>>) -> FecPeer {
        FecPeer {
            kcp: Kcp::with_config(CONV, Outbox::default(), cfg).expect("config"),
            enc: FecEncoder::new(fec).expect("FEC config"),
            dec: FecDecoder::new(fec).expect("FEC config"),
            now: 0,
            out: Vec::new(),
            totals: totals.clone(),
        }
    }

    /// Moves what KCP output so far through the encoder.
    fn encode_output(&mut self) {
        let (enc, out) = (&mut self.enc, &mut self.out);
        self.kcp.output_mut().drain(|d| {
            enc.encode(d, |p| out.push(p.to_vec()))
                .expect("KCP datagrams fit the FEC packet")
        });
    }
}

impl Peer for FecPeer {
    fn send(&mut self, data: &[u8]) -> Result<usize, String> {
        self.kcp.send(data).map_err(|e| e.to_string())
    }

    fn recv(&mut self, buf: &mut [u8]) -> Option<usize> {
        self.kcp.recv(buf).ok()
    }

    fn input(&mut self, data: &[u8]) -> Result<(), String> {
        let kcp = &mut self.kcp;
        let mut refused: Option<KcpError> = None;
        self.dec
            .decode(self.now, data, |d| {
                if let Err(e) = kcp.input(d) {
                    refused.get_or_insert(e);
                }
            })
            .map_err(|e| e.to_string())?;
        refused.map_or(Ok(()), |e| Err(e.to_string()))
    }

    fn update(&mut self, now: u32) {
        self.now = now;
        self.kcp.update(now);
        self.encode_output();
        // Closes partly filled groups when `early_close` is on.
        let out = &mut self.out;
        self.enc.poll(now, self.kcp.rto(), |p| out.push(p.to_vec()));
    }

    fn flush(&mut self) {
        self.kcp.flush();
        self.encode_output();
    }

    fn drain(&mut self, f: &mut dyn FnMut(&[u8])) {
        self.encode_output();
        for p in self.out.drain(..) {
            f(&p);
        }
    }

    fn wait_snd(&self) -> u32 {
        self.kcp.wait_snd()
    }

    fn peek_size(&self) -> Option<usize> {
        self.kcp.peek_size().ok()
    }
}

impl Drop for FecPeer {
    fn drop(&mut self) {
        let mut t = self.totals.borrow_mut();
        let (dec, kcp) = (self.dec.stats(), self.kcp.stats());
        t.recovered += dec.recovered;
        t.unrecoverable += dec.unrecoverable_groups;
        t.empty += self.enc.stats().empty_packets;
        t.retransmits += kcp.retransmits + kcp.fast_retransmits;
    }
}

#[derive(PartialEq, Eq)]
struct Outcome {
    /// Every RTT, in the order the echoes arrived.
    rtts: Vec<u32>,
    /// Datagrams the sender put on the link.
    tx: u64,
    /// Their bytes.
    tx_bytes: u64,
    /// Every datagram, both ways (`--trace` only).
    log: Vec<Sent>,
}

/// Messages waiting for room in a bounded send queue.
///
/// ikcp's send queue is unbounded; ours says `BufferFull`. Messages keep
/// their timestamps while they wait here, and are offered again before every
/// update, so each flush sees the same queue as ikcp's would (a flush moves
/// at most `snd_wnd` segments, less than our queue holds).
#[derive(Default)]
struct Pending(VecDeque<Vec<u8>>);

impl Pending {
    fn offer(&mut self, k: &mut dyn Peer) {
        while let Some(m) = self.0.front() {
            if k.send(m).is_err() {
                return;
            }
            self.0.pop_front();
        }
    }
}

/// test.cpp's `test(mode)` loop with a 1 ms virtual tick.
fn run(mut k1: Box<dyn Peer>, mut k2: Box<dyn Peer>, seed: u64, trace: bool) -> Outcome {
    let mut vnet = LatencySim::new(seed, 10, 60, 125);
    if trace {
        vnet.log = Some(Vec::new());
    }
    let mut now: u64 = 0;
    let mut slap = 20;
    let mut index: u32 = 0;
    let mut next: u32 = 0;
    let mut rtts = Vec::with_capacity(ECHOES as usize);
    let mut buf = [0u8; 2000];
    let (mut p1, mut p2) = (Pending::default(), Pending::default());
    while next < ECHOES {
        now += 1;
        assert!(now < 3_600_000, "no progress after an hour of virtual time");
        let clock = now as u32;
        p1.offer(&mut *k1);
        p2.offer(&mut *k2);
        k1.update(clock);
        k2.update(clock);
        k1.drain(&mut |d| vnet.send(0, now, d));
        k2.drain(&mut |d| vnet.send(1, now, d));
        while now >= slap {
            let mut msg = [0u8; 8];
            msg[..4].copy_from_slice(&index.to_le_bytes());
            msg[4..].copy_from_slice(&clock.to_le_bytes());
            index += 1;
            p1.0.push_back(msg.to_vec());
            slap += 20;
        }
        p1.offer(&mut *k1);
        while let Some(d) = vnet.recv(1, now) {
            k2.input(&d).expect("input");
        }
        while let Some(d) = vnet.recv(0, now) {
            k1.input(&d).expect("input");
        }
        while let Some(n) = k2.recv(&mut buf[..10]) {
            p2.0.push_back(buf[..n].to_vec());
            p2.offer(&mut *k2);
        }
        while let Some(n) = k1.recv(&mut buf[..10]) {
            assert_eq!(n, 8);
            let sn = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
            let ts = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
            assert_eq!(sn, next, "echo out of order");
            rtts.push(clock.wrapping_sub(ts));
            next += 1;
        }
    }
    Outcome {
        rtts,
        tx: vnet.tx[0],
        tx_bytes: vnet.tx_bytes[0],
        log: vnet.log.unwrap_or_default(),
    }
}

/// The RTTs of one variant over all seeds.
struct Row {
    variant: Variant,
    /// All RTTs, sorted.
    sorted: Vec<u32>,
    /// Largest RTT of each seed.
    max_per_seed: Vec<u32>,
    /// Datagrams the sender put on the link, over all seeds.
    tx: u64,
    /// Their bytes.
    tx_bytes: u64,
    /// Seeds on which the bytes differed from ikcp's in the same mode.
    differs: usize,
    fec: FecTotals,
}

impl Row {
    fn avg(&self) -> f64 {
        self.sorted.iter().map(|&r| r as f64).sum::<f64>() / self.sorted.len() as f64
    }

    /// Nearest-rank percentile.
    fn percentile(&self, p: f64) -> u32 {
        let n = self.sorted.len();
        let rank = ((p / 100.0) * n as f64).ceil() as usize;
        self.sorted[rank.clamp(1, n) - 1]
    }

    fn max(&self) -> u32 {
        self.sorted.last().copied().unwrap_or(0)
    }
}

struct Args {
    seeds: Vec<u64>,
    chart: Option<PathBuf>,
    /// Slowest echoes to explain per fast-mode variant (`--trace N`).
    trace: usize,
}

fn parse_args() -> Args {
    let mut seeds = (1..=10).collect();
    let mut chart = Some(PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/latency.svg"
    )));
    let mut trace = 0;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--no-chart" => chart = None,
            "--trace" => trace = args.next().and_then(|n| n.parse().ok()).expect("--trace N"),
            "--chart" => chart = Some(PathBuf::from(args.next().expect("--chart PATH"))),
            s => seeds = parse_seeds(s).unwrap_or_else(|| panic!("bad seeds {s:?}")),
        }
    }
    Args {
        seeds,
        chart,
        trace,
    }
}

/// `3`, `1-5` or `1,4,9`.
fn parse_seeds(s: &str) -> Option<Vec<u64>> {
    if let Some((a, b)) = s.split_once('-') {
        let (a, b) = (a.parse::<u64>().ok()?, b.parse::<u64>().ok()?);
        return (a <= b).then(|| (a..=b).collect());
    }
    s.split(',').map(|x| x.parse().ok()).collect()
}

fn main() {
    let args = parse_args();
    let seeds = &args.seeds;
    println!("ikcp test.cpp latency experiment: 1,000 echoes of an 8-byte message every 20 ms,");
    println!("5% loss each way (5 of every 100), 30-61 ms one way FIFO, windows 128/128;");
    println!(
        "seeds {seeds:?}, RTTs pooled over the seeds ({} per row)\n",
        ECHOES as usize * seeds.len()
    );

    let mut rows: Vec<Row> = Vec::new();
    for variant in Variant::all() {
        let mut row = Row {
            variant,
            sorted: Vec::new(),
            max_per_seed: Vec::new(),
            tx: 0,
            tx_bytes: 0,
            differs: 0,
            fec: FecTotals::default(),
        };
        let totals = Rc::new(RefCell::new(FecTotals::default()));
        let (trace, km) = match variant {
            Variant::Ours(Mode::Fast) => (args.trace > 0, (0, 0)),
            Variant::OursFec { k, m, .. } => (args.trace > 0, (k, m)),
            _ => (false, (0, 0)),
        };
        let mut explained = Vec::new();
        let mut unrebuilt = [0; 2];
        for &seed in seeds {
            let (k1, k2) = variant.peers(&totals);
            let o = run(k1, k2, seed, trace);
            if let Variant::Ours(mode) = variant {
                // ikcp's run in the same mode and seed, for the comparison.
                let (i1, i2) = Variant::Ikcp(mode).peers(&totals);
                if run(i1, i2, seed, trace) != o {
                    row.differs += 1;
                }
            }
            if trace {
                let t = trace::Run::new(&o.log, km.0, km.1);
                let u = t.unrebuilt();
                unrebuilt[0] += u[0];
                unrebuilt[1] += u[1];
                for (i, &rtt) in o.rtts.iter().enumerate() {
                    if rtt >= FEC_MAX_GOAL_MS - 50 {
                        let (cause, text) = t.explain(i as u32, rtt);
                        explained.push((rtt, seed, cause, text));
                    }
                }
            }
            row.max_per_seed
                .push(o.rtts.iter().copied().max().unwrap_or(0));
            row.tx += o.tx;
            row.tx_bytes += o.tx_bytes;
            row.sorted.extend_from_slice(&o.rtts);
        }
        row.sorted.sort_unstable();
        row.fec = *totals.borrow();
        rows.push(row);
        if trace {
            println!(
                "## {}: pushes lost and not rebuilt (left to KCP): {} forward, {} echoes",
                variant.label(),
                unrebuilt[0],
                unrebuilt[1]
            );
            print_trace(variant, &mut explained, args.trace);
        }
    }

    print_table(&rows, seeds.len());
    print_goals(&rows);

    if let Some(path) = &args.chart {
        match chart::draw(&rows, seeds, path) {
            Ok(()) => println!("\nchart: {}", path.display()),
            Err(e) => eprintln!("\nchart not written to {}: {e}", path.display()),
        }
    }
}

/// The causes of the echoes at or over the goal and the `n` slowest
/// explained.
fn print_trace(variant: Variant, explained: &mut [(u32, u64, trace::Cause, String)], n: usize) {
    explained.sort_by_key(|e| std::cmp::Reverse(e.0));
    let mut causes = std::collections::BTreeMap::new();
    for e in explained.iter().filter(|e| e.0 >= FEC_MAX_GOAL_MS) {
        *causes.entry(e.2).or_insert(0) += 1;
    }
    let near = explained.len();
    println!(
        "## {}: {near} echoes >= {} ms; causes of those >= {FEC_MAX_GOAL_MS}: {causes:?}",
        variant.label(),
        FEC_MAX_GOAL_MS - 50
    );
    for (rtt, seed, cause, text) in explained.iter().take(n) {
        println!("  seed {seed} {cause:?} ({rtt} ms) {text}");
    }
}

fn print_table(rows: &[Row], nseeds: usize) {
    println!(
        "| mode | impl | avg ms | p50 | p99 | max | max per seed, lowest-highest | seeds with max >= {FEC_MAX_GOAL_MS} | sender datagrams / echo | sender bytes / echo |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let lo = r.max_per_seed.iter().min().copied().unwrap_or(0);
        let over = r
            .max_per_seed
            .iter()
            .filter(|&&m| m >= FEC_MAX_GOAL_MS)
            .count();
        println!(
            "| {} | {} | {:.1} | {} | {} | {} | {}-{} | {}/{} | {:.2} | {:.0} |",
            r.variant.mode(),
            r.variant.implementation(),
            r.avg(),
            r.percentile(50.0),
            r.percentile(99.0),
            r.max(),
            lo,
            r.max(),
            over,
            nseeds,
            r.tx as f64 / r.sorted.len() as f64,
            r.tx_bytes as f64 / r.sorted.len() as f64
        );
    }
    println!("\nFEC runs, both sides, all seeds:\n");
    println!(
        "| mode | KCP datagrams recovered | groups incomplete (> m lost, empty packets included) | empty packets (early close) | KCP retransmissions (timeout + fast) |"
    );
    println!("|---|---:|---:|---:|---:|");
    for r in rows {
        if let Variant::OursFec { .. } = r.variant {
            let f = r.fec;
            println!(
                "| {} | {} | {} | {} | {} |",
                r.variant.mode(),
                f.recovered,
                f.unrecoverable,
                f.empty,
                f.retransmits
            );
        }
    }
}

/// The goals from the issues, checked against the rows.
fn print_goals(rows: &[Row]) {
    println!();
    for mode in [Mode::Default, Mode::Normal, Mode::Fast] {
        let ikcp = rows
            .iter()
            .find(|r| matches!(r.variant, Variant::Ikcp(m) if m == mode));
        let ours = rows
            .iter()
            .find(|r| matches!(r.variant, Variant::Ours(m) if m == mode));
        let (Some(ikcp), Some(ours)) = (ikcp, ours) else {
            continue;
        };
        let no_worse = ours.avg() <= ikcp.avg()
            && ours.percentile(50.0) <= ikcp.percentile(50.0)
            && ours.percentile(99.0) <= ikcp.percentile(99.0)
            && ours.max() <= ikcp.max();
        println!(
            "{:<8} kcp-rs no worse than ikcp (avg, p50, p99, max): {}{}",
            mode.name(),
            if no_worse { "holds" } else { "DOES NOT HOLD" },
            match ours.differs {
                0 => " (identical traffic on every seed)".to_string(),
                n => format!(" ({n} seed(s) with traffic different from ikcp's)"),
            }
        );
    }
    for r in rows {
        if let Variant::OursFec { .. } = r.variant {
            println!(
                "{:<22} max {:>3} ms < {FEC_MAX_GOAL_MS} ms: {}",
                r.variant.mode(),
                r.max(),
                if r.max() < FEC_MAX_GOAL_MS {
                    "holds"
                } else {
                    "does not hold"
                }
            );
        }
    }
}

/// The chart, SVG through plotters without font or C dependencies (the
/// text is left to the SVG viewer): on the left the CDF of the RTT for
/// ikcp and ours in the three modes, on the right the tail of fast mode
/// with and without FEC as the fraction of echoes at or above each RTT
/// (FEC without early close dashed).
mod chart {
    use std::path::Path;

    use plotters::coord::Shift;
    use plotters::element::DashedPathElement;
    use plotters::prelude::*;

    use super::{Mode, Row, Variant, FEC_MAX_GOAL_MS};

    /// Points per curve: a quantile grid plus the last samples one by one,
    /// so the tail up to the maximum is exact and the file stays small.
    const GRID: usize = 100;
    const TAIL: usize = 30;

    type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

    pub fn draw(rows: &[Row], seeds: &[u64], path: &Path) -> Result<()> {
        let root = SVGBackend::new(path, (1100, 540)).into_drawing_area();
        root.fill(&WHITE)?;
        let n = rows.iter().map(|r| r.sorted.len()).min().unwrap_or(1);
        let contiguous = seeds.windows(2).all(|w| w[1] == w[0] + 1);
        let seeds = match (seeds.first(), seeds.last()) {
            (Some(a), Some(b)) if contiguous && a != b => format!("{a}-{b}"),
            _ => seeds
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(","),
        };
        let root = root.titled(
            &format!(
                "ikcp test.cpp latency experiment: 5% loss each way, 30-61 ms one way, 1,000 echoes per seed, seeds {seeds}"
            ),
            ("sans-serif", 16),
        )?;
        let (left, right) = root.split_horizontally(500);
        modes(&left, rows)?;
        tail(&right, rows, n)?;
        root.present()?;
        Ok(())
    }

    fn modes(area: &DrawingArea<SVGBackend<'_>, Shift>, rows: &[Row]) -> Result<()> {
        let mut chart = ChartBuilder::on(area)
            .caption(
                "RTT CDF by mode: ikcp (wide, pale) under kcp-rs",
                ("sans-serif", 14),
            )
            .margin(10)
            .x_label_area_size(36)
            .y_label_area_size(44)
            .build_cartesian_2d((40f64..10_000f64).log_scale(), 0f64..1f64)?;
        chart
            .configure_mesh()
            .x_desc("RTT (ms, log scale)")
            .y_desc("fraction of echoes <= RTT")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| format!("{y:.1}"))
            .label_style(("sans-serif", 12))
            .max_light_lines(0)
            .draw()?;
        for r in rows {
            let (style, dashed) = match r.variant {
                Variant::Ikcp(_) => (color_of(r.variant).mix(0.35).stroke_width(7), false),
                Variant::Ours(_) => (color_of(r.variant).stroke_width(2), false),
                Variant::OursFec { .. } => continue,
            };
            let n = r.sorted.len() as f64;
            let points: Vec<(f64, f64)> = sample(&r.sorted)
                .map(|v| {
                    let at_most = r.sorted.partition_point(|&x| x <= v);
                    (f64::from(v.max(40)), at_most as f64 / n)
                })
                .collect();
            line(&mut chart, points, style, dashed, r.variant.label())?;
        }
        legend(&mut chart, SeriesLabelPosition::LowerRight)
    }

    fn tail(area: &DrawingArea<SVGBackend<'_>, Shift>, rows: &[Row], n: usize) -> Result<()> {
        let floor = 0.5 / n as f64;
        let mut chart = ChartBuilder::on(area)
            .caption(
                "Tail of fast mode with FEC: solid = early close (poll), dashed = without",
                ("sans-serif", 14),
            )
            .margin(10)
            .x_label_area_size(36)
            .y_label_area_size(52)
            .build_cartesian_2d(50f64..500f64, (floor..1f64).log_scale())?;
        chart
            .configure_mesh()
            .x_desc("RTT (ms)")
            .y_desc("fraction of echoes >= RTT (log scale)")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| format!("{y:.0e}"))
            .label_style(("sans-serif", 12))
            .max_light_lines(0)
            .draw()?;
        let goal = FEC_MAX_GOAL_MS as f64;
        let goal_style = BLACK.mix(0.5).stroke_width(1);
        chart
            .draw_series(LineSeries::new([(goal, floor), (goal, 1.0)], goal_style))?
            .label(format!("{FEC_MAX_GOAL_MS} ms goal"))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], goal_style));
        for r in rows {
            let (style, dashed) = match r.variant {
                Variant::Ikcp(Mode::Fast) => (color_of(r.variant).mix(0.35).stroke_width(7), false),
                Variant::Ours(Mode::Fast) => (color_of(r.variant).stroke_width(2), false),
                Variant::OursFec { early, .. } => (color_of(r.variant).stroke_width(2), !early),
                _ => continue,
            };
            let n = r.sorted.len() as f64;
            let points: Vec<(f64, f64)> = sample(&r.sorted)
                .map(|v| {
                    let at_least = r.sorted.len() - r.sorted.partition_point(|&x| x < v);
                    (f64::from(v.clamp(50, 500)), at_least as f64 / n)
                })
                .collect();
            line(&mut chart, points, style, dashed, r.variant.label())?;
        }
        legend(&mut chart, SeriesLabelPosition::UpperRight)
    }

    type Chart<'a, X, Y> = ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>;

    fn line<'a, X, Y>(
        chart: &mut Chart<'a, X, Y>,
        points: Vec<(f64, f64)>,
        style: ShapeStyle,
        dashed: bool,
        label: String,
    ) -> Result<()>
    where
        X: Ranged<ValueType = f64>,
        Y: Ranged<ValueType = f64>,
    {
        if dashed {
            chart
                .draw_series(DashedLineSeries::new(points, 6, 4, style))?
                .label(label)
                .legend(move |(x, y)| DashedPathElement::new([(x, y), (x + 20, y)], 6, 4, style));
        } else {
            chart
                .draw_series(LineSeries::new(points, style))?
                .label(label)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], style));
        }
        Ok(())
    }

    fn legend<X, Y>(chart: &mut Chart<'_, X, Y>, at: SeriesLabelPosition) -> Result<()>
    where
        X: Ranged<ValueType = f64>,
        Y: Ranged<ValueType = f64>,
    {
        chart
            .configure_series_labels()
            .position(at)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .label_font(("sans-serif", 11))
            .draw()?;
        Ok(())
    }

    fn color_of(v: Variant) -> RGBColor {
        match v {
            Variant::Ikcp(m) | Variant::Ours(m) => match m {
                Mode::Default => RGBColor(110, 110, 110),
                Mode::Normal => RGBColor(31, 119, 180),
                Mode::Fast => RGBColor(44, 160, 44),
            },
            Variant::OursFec { k: 2, m: 1, .. } => RGBColor(255, 127, 14),
            Variant::OursFec { k: 2, .. } => RGBColor(140, 86, 75),
            Variant::OursFec { k: 4, .. } => RGBColor(214, 39, 40),
            Variant::OursFec { k: 8, .. } => RGBColor(148, 103, 189),
            Variant::OursFec { .. } => RGBColor(23, 190, 207),
        }
    }

    /// The RTTs at a quantile grid and the last `TAIL` ones, each value
    /// once, ascending.
    fn sample(sorted: &[u32]) -> impl Iterator<Item = u32> + '_ {
        let n = sorted.len();
        let mut idx: Vec<usize> = (0..=GRID).map(|i| i * n.saturating_sub(1) / GRID).collect();
        idx.extend(n.saturating_sub(TAIL)..n);
        idx.sort_unstable();
        let mut values: Vec<u32> = idx
            .into_iter()
            .filter_map(|i| sorted.get(i).copied())
            .collect();
        values.dedup();
        values.into_iter()
    }
}

/// `--trace N`: for the N slowest echoes of a variant, which datagrams were
/// lost, whether their FEC group could rebuild them, when the group's
/// parity went out, and what KCP's retransmission cost.
mod trace {
    use std::collections::HashMap;

    use super::Sent;

    /// KCP's push command.
    const PUSH: u8 = 81;

    /// One datagram, parsed.
    struct Dgram {
        at: u64,
        arrived: Option<u64>,
        /// FEC seqid and whether it is a data packet (`None` without FEC).
        fec: Option<(u32, bool)>,
        /// Whether it carries KCP bytes (not parity, not an empty packet).
        kcp: bool,
    }

    /// What one direction of one run did.
    struct Dir {
        dgrams: Vec<Dgram>,
        /// Datagrams carrying each push sn, in sending order.
        by_sn: HashMap<u32, Vec<usize>>,
        /// Datagrams of each FEC group.
        by_group: HashMap<u32, Vec<usize>>,
    }

    /// A run's log seen with FEC `k + m` (`k == 0`: no FEC).
    pub struct Run {
        dirs: [Dir; 2],
        k: usize,
        m: usize,
    }

    /// Why the message that held an echo back arrived late, least severe
    /// first.
    #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
    pub enum Cause {
        /// Its first transmission arrived: the delay is the link's.
        NoLoss,
        /// Lost and rebuilt from its group.
        Recovered,
        /// Lost, group recoverable, but a retransmission arrived first.
        RetransmitFirst,
        /// Lost and never rebuilt: no FEC, or its group missed more than
        /// `m` shards. KCP had to retransmit it.
        NotRebuilt,
    }

    fn segments(kcp: &[u8]) -> Vec<u32> {
        let mut out = Vec::new();
        let mut off = 0;
        while kcp.len() >= off + 24 {
            let h = &kcp[off..off + 24];
            let sn = u32::from_le_bytes([h[12], h[13], h[14], h[15]]);
            let len = u32::from_le_bytes([h[20], h[21], h[22], h[23]]) as usize;
            if h[4] == PUSH {
                out.push(sn);
            }
            off += 24 + len;
        }
        out
    }

    impl Run {
        pub fn new(log: &[Sent], k: usize, m: usize) -> Run {
            let mut dirs = [0, 1].map(|_| Dir {
                dgrams: Vec::new(),
                by_sn: HashMap::new(),
                by_group: HashMap::new(),
            });
            for s in log {
                let b = &s.bytes;
                let (fec, kcp): (Option<(u32, bool)>, &[u8]) = if k == 0 {
                    (None, b)
                } else {
                    let seqid = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                    if b[4] == 0xF1 {
                        let size = u16::from_le_bytes([b[6], b[7]]) as usize;
                        (Some((seqid, true)), &b[8..6 + size])
                    } else {
                        (Some((seqid, false)), &[])
                    }
                };
                let d = &mut dirs[s.dir];
                let i = d.dgrams.len();
                let pushes = segments(kcp);
                for &sn in &pushes {
                    d.by_sn.entry(sn).or_default().push(i);
                }
                if let Some((seqid, _)) = fec {
                    d.by_group
                        .entry(seqid / (k + m) as u32)
                        .or_default()
                        .push(i);
                }
                d.dgrams.push(Dgram {
                    at: s.at,
                    arrived: s.arrived,
                    fec,
                    kcp: !kcp.is_empty(),
                });
            }
            Run { dirs, k, m }
        }

        /// When the group of datagram `i` could be rebuilt (the decoder held
        /// `k` of its shards, counting every empty position once an empty
        /// packet arrived), if ever.
        fn recovery(&self, dir: usize, i: usize) -> Option<u64> {
            let d = &self.dirs[dir];
            let n = self.k + self.m;
            let (seqid, _) = d.dgrams[i].fec?;
            let mut arrivals: Vec<(u64, usize, bool)> = d.by_group[&(seqid / n as u32)]
                .iter()
                .filter_map(|&j| {
                    let g = &d.dgrams[j];
                    let (s, data) = g.fec?;
                    Some((g.arrived?, s as usize % n, data && !g.kcp))
                })
                .collect();
            arrivals.sort_unstable();
            // Every empty packet names the group's first one.
            let first_empty = d.by_group[&(seqid / n as u32)]
                .iter()
                .filter_map(|&j| {
                    let (s, data) = d.dgrams[j].fec?;
                    (data && !d.dgrams[j].kcp).then_some(s as usize % n)
                })
                .min()
                .unwrap_or(self.k);
            let mut held = vec![false; n];
            for (t, pos, empty) in arrivals {
                held[pos] = true;
                if empty {
                    held[first_empty..self.k].iter_mut().for_each(|h| *h = true);
                }
                if held.iter().filter(|&&h| h).count() >= self.k {
                    return Some(t);
                }
            }
            None
        }

        /// Pushes, per direction, whose first copy was lost and that the
        /// decoder could not rebuild (KCP had to retransmit them).
        pub fn unrebuilt(&self) -> [usize; 2] {
            [0, 1].map(|dir| {
                let d = &self.dirs[dir];
                d.by_sn
                    .iter()
                    .filter(|&(&sn, sends)| {
                        sn < super::ECHOES
                            && d.dgrams[sends[0]].arrived.is_none()
                            && self.recovery(dir, sends[0]).is_none()
                    })
                    .count()
            })
        }

        /// When the receiver's KCP first held push `sn`.
        fn avail(&self, dir: usize, sn: u32) -> Option<u64> {
            self.dirs[dir]
                .by_sn
                .get(&sn)?
                .iter()
                .filter_map(|&i| {
                    let d = &self.dirs[dir].dgrams[i];
                    match (d.arrived, self.recovery(dir, i)) {
                        (Some(a), _) => Some(a),
                        (None, r) => r,
                    }
                })
                .min()
        }

        /// The message up to `sn` that arrived last (in-order delivery).
        fn blocker(&self, dir: usize, sn: u32) -> Option<(u32, u64)> {
            (sn.saturating_sub(20)..=sn)
                .filter_map(|j| Some((j, self.avail(dir, j)?)))
                .max_by_key(|&(j, t)| (t, j))
        }

        /// The cause of the echo `index` with round-trip time `rtt`, and a
        /// line describing it.
        pub fn explain(&self, index: u32, rtt: u32) -> (Cause, String) {
            let ts = 20 * (u64::from(index) + 1);
            let rel = |t: u64| t as i64 - ts as i64;
            let mut worst = Cause::NoLoss;
            let mut text = format!("echo {index} rtt {rtt}:");
            for dir in 0..2 {
                let Some((j, t)) = self.blocker(dir, index) else {
                    continue;
                };
                let d = &self.dirs[dir];
                let sends = &d.by_sn[&j];
                let first = &d.dgrams[sends[0]];
                let name = ["fwd", "back"][dir];
                text += &format!(
                    "\n    {name}: held by sn {j} (sent {:+}, in KCP {:+})",
                    rel(first.at),
                    rel(t)
                );
                let cause = if first.arrived.is_some() {
                    text += " first copy arrived";
                    Cause::NoLoss
                } else {
                    let mut c = Cause::NotRebuilt;
                    if let Some((seqid, _)) = first.fec {
                        let n = (self.k + self.m) as u32;
                        let group = &d.by_group[&(seqid / n)];
                        let lost: Vec<String> = group
                            .iter()
                            .filter(|&&i| d.dgrams[i].arrived.is_none())
                            .map(|&i| {
                                let g = &d.dgrams[i];
                                let (s, data) = g.fec.unwrap_or_default();
                                let kind = match (data, g.kcp) {
                                    (true, true) => "data",
                                    (true, false) => "empty",
                                    _ => "parity",
                                };
                                format!("{kind}@{}", s % n)
                            })
                            .collect();
                        let data_real = group.iter().filter(|&&i| d.dgrams[i].kcp).count();
                        let parity_at = group
                            .iter()
                            .filter(|&&i| matches!(d.dgrams[i].fec, Some((_, false))))
                            .map(|&i| d.dgrams[i].at)
                            .min();
                        let rec = self.recovery(dir, sends[0]);
                        text += &format!(
                            "; first copy lost, group {} pos {}: lost {} of {} ({} with KCP bytes), parity sent {}, rebuildable {}",
                            seqid / n,
                            seqid % n,
                            lost.join(" "),
                            group.len(),
                            data_real,
                            parity_at.map_or("never".into(), |p| format!(
                                "{:+} ms after the data",
                                p - first.at
                            )),
                            rec.map_or("never".into(), |r| format!("{:+}", rel(r)))
                        );
                        if let Some(r) = rec {
                            c = if r <= t {
                                Cause::Recovered
                            } else {
                                Cause::RetransmitFirst
                            };
                        }
                    } else {
                        text += "; first copy lost";
                    }
                    for &i in &sends[1..] {
                        let r = &d.dgrams[i];
                        text += &format!(
                            "; resent {:+} {}",
                            rel(r.at),
                            r.arrived
                                .map_or("lost".into(), |a| format!("arrived {:+}", rel(a)))
                        );
                    }
                    c
                };
                worst = worst.max(cause);
            }
            (worst, text)
        }
    }
}
