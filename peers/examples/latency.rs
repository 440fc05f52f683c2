//! The latency experiment of ikcp's `test.cpp`, run on the C ikcp and on our
//! core through the same simulated link, under a virtual clock.
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
//! ```text
//! cargo run --release -p kcp-peers --example latency [seed]
//! ```

use std::collections::VecDeque;

use kcp_peers::{Ikcp, Peer};
use kcp_rs::sim::{Outbox, Rng};
use kcp_rs::{Kcp, KcpConfig};

const CONV: u32 = 0x1122_3344;
const ECHOES: u32 = 1000;

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
    tunnels: [VecDeque<(u64, Vec<u8>)>; 2],
    lost_pct: u32,
    delay: (u64, u64),
    nmax: usize,
    tx: [u64; 2],
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
        }
    }

    /// A datagram sent by `peer` (0 or 1) at `now`.
    fn send(&mut self, peer: usize, now: u64, data: &[u8]) {
        self.tx[peer] += 1;
        if self.bags[peer].draw(&mut self.rng) < self.lost_pct {
            return;
        }
        if self.tunnels[peer].len() >= self.nmax {
            return;
        }
        let (lo, hi) = self.delay;
        // test.h: rttmin + rand() % (rttmax - rttmin), i.e. 30..=61 ms.
        let delay = lo + self.rng.range(0, hi - lo - 1);
        self.tunnels[peer].push_back((now + delay, data.to_vec()));
    }

    /// The next datagram for `peer` due by `now`, FIFO.
    fn recv(&mut self, peer: usize, now: u64) -> Option<Vec<u8>> {
        let tunnel = &mut self.tunnels[1 - peer];
        match tunnel.front() {
            Some((due, _)) if *due <= now => tunnel.pop_front().map(|(_, d)| d),
            _ => None,
        }
    }
}

#[derive(Clone, Copy)]
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

#[derive(PartialEq, Eq)]
struct Outcome {
    avg: u64,
    max: u32,
    tx: u64,
    virtual_ms: u64,
}

/// An implementation's name and its two sessions.
type Run = (&'static str, Box<dyn Peer>, Box<dyn Peer>);

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
fn run(mut k1: Box<dyn Peer>, mut k2: Box<dyn Peer>, seed: u64) -> Outcome {
    let mut vnet = LatencySim::new(seed, 10, 60, 125);
    let mut now: u64 = 0;
    let mut slap = 20;
    let mut index: u32 = 0;
    let mut next: u32 = 0;
    let (mut sum, mut count, mut max) = (0u64, 0u64, 0u32);
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
            let rtt = clock.wrapping_sub(ts);
            next += 1;
            sum += rtt as u64;
            count += 1;
            max = max.max(rtt);
        }
    }
    Outcome {
        avg: sum / count,
        max,
        tx: vnet.tx[0],
        virtual_ms: now,
    }
}

fn main() {
    let seed = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    println!("ikcp test.cpp latency experiment, seed {seed}: 1,000 echoes of an 8-byte message every 20 ms,");
    println!("5% loss each way (5 of every 100), 30-61 ms one way FIFO, windows 128/128\n");
    println!(
        "{:<8} {:<8} {:>8} {:>8} {:>8} {:>11}",
        "mode", "impl", "avg ms", "max ms", "tx", "virtual ms"
    );
    for mode in [Mode::Default, Mode::Normal, Mode::Fast] {
        let (c1, c2) = mode.configs();
        let runs: [Run; 2] = [
            (
                "ikcp",
                Box::new(Ikcp::with_config(CONV, &c1).expect("config")),
                Box::new(Ikcp::with_config(CONV, &c2).expect("config")),
            ),
            (
                "kcp-rs",
                Box::new(Kcp::with_config(CONV, Outbox::default(), c1).expect("config")),
                Box::new(Kcp::with_config(CONV, Outbox::default(), c2).expect("config")),
            ),
        ];
        let mut first: Option<Outcome> = None;
        for (name, k1, k2) in runs {
            let o = run(k1, k2, seed);
            println!(
                "{:<8} {:<8} {:>8} {:>8} {:>8} {:>11}",
                mode.name(),
                name,
                o.avg,
                o.max,
                o.tx,
                o.virtual_ms
            );
            match &first {
                None => first = Some(o),
                Some(f) if *f == o => {}
                Some(_) => println!("         ^ differs from ikcp"),
            }
        }
    }
    println!("\n(the two implementations send the same bytes, so equal rows are expected)");
}
