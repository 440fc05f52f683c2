//! Interop: the C ikcp and our core talking to each other over the seeded
//! lossy in-memory link, in both directions, message and stream mode,
//! default and fast configurations, 0 / 10 / 30% loss with reordering and
//! duplication. Every byte must arrive exactly once and in order; content
//! is checked, not just counts.

use kcp_peers::{Ikcp, Peer};
use kcp_rs::sim::{Link, LinkConfig, Outbox, Rng};
use kcp_rs::{Kcp, KcpConfig};

const CONV: u32 = 0xC0FF_EE00;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Side {
    Ours,
    C,
}

fn peer(side: Side, cfg: &KcpConfig) -> Box<dyn Peer> {
    match side {
        Side::Ours => Box::new(Kcp::with_config(CONV, Outbox::default(), *cfg).unwrap()),
        Side::C => Box::new(Ikcp::with_config(CONV, cfg).unwrap()),
    }
}

/// Two sessions joined by two links under one virtual clock.
struct Net {
    a: Box<dyn Peer>,
    b: Box<dyn Peer>,
    ab: Link,
    ba: Link,
    now: u64,
    epoch: u32,
    input_errors: Vec<String>,
}

impl Net {
    fn step(&mut self, dt: u64) {
        self.now += dt;
        let now = self.now;
        let (a, b, errors) = (&mut self.a, &mut self.b, &mut self.input_errors);
        self.ab.deliver(now, |d| {
            if let Err(e) = b.input(d) {
                errors.push(e);
            }
        });
        self.ba.deliver(now, |d| {
            if let Err(e) = a.input(d) {
                errors.push(e);
            }
        });
        let clock = self.epoch.wrapping_add(now as u32);
        self.a.update(clock);
        self.b.update(clock);
        let ab = &mut self.ab;
        self.a.drain(&mut |d| ab.send(now, d));
        let ba = &mut self.ba;
        self.b.drain(&mut |d| ba.send(now, d));
    }
}

struct Case {
    sender: Side,
    cfg: KcpConfig,
    link: LinkConfig,
    seed: u64,
    messages: usize,
    max_size: usize,
    epoch: u32,
    /// Virtual time limit in ms.
    limit: u64,
}

/// Sends `messages` random messages from the sender to the other side and
/// checks what arrives. Returns the virtual time taken in ms.
fn transfer(c: &Case) -> u64 {
    let receiver = match c.sender {
        Side::Ours => Side::C,
        Side::C => Side::Ours,
    };
    let name = format!(
        "{:?}->{:?} stream={} nodelay={} loss={} seed={}",
        c.sender, receiver, c.cfg.stream, c.cfg.nodelay, c.link.loss, c.seed
    );
    let mut net = Net {
        a: peer(c.sender, &c.cfg),
        b: peer(receiver, &c.cfg),
        ab: Link::new(c.link, c.seed),
        ba: Link::new(c.link, c.seed ^ 0x5555),
        now: 0,
        epoch: c.epoch,
        input_errors: Vec::new(),
    };
    let mut rng = Rng::new(c.seed);
    let msgs: Vec<Vec<u8>> = (0..c.messages)
        .map(|i| {
            let mut m = vec![0u8; rng.range(1, c.max_size as u64) as usize];
            rng.fill(&mut m);
            m[0] = i as u8;
            m
        })
        .collect();
    // Keep at most this many segments queued, whatever the implementation
    // (ikcp's queue is unbounded, ours says BufferFull).
    let queue_limit = 2 * c.cfg.snd_wnd as u32;
    let mut next = 0;
    let mut offset = 0; // stream mode: bytes of msgs[next] already taken
    let mut got: Vec<Vec<u8>> = Vec::new();
    let mut stream_bytes: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 1 << 18];
    let flat = msgs.concat();
    let total = flat.len();
    let step = 5;
    let started = std::time::Instant::now();
    loop {
        while next < msgs.len() && net.a.wait_snd() < queue_limit {
            let rest = &msgs[next][offset..];
            match net.a.send(rest) {
                Ok(n) if n == rest.len() => (next, offset) = (next + 1, 0),
                // Stream mode takes what fits.
                Ok(n) if c.cfg.stream => offset += n,
                Ok(n) => panic!("[{name}] partial send {n} of {}", rest.len()),
                Err(_) => break, // full: retry after ACKs
            }
        }
        net.step(step);
        while let Some(n) = net.b.recv(&mut buf) {
            if c.cfg.stream {
                let at = stream_bytes.len();
                assert!(
                    at + n <= flat.len() && buf[..n] == flat[at..at + n],
                    "[{name}] stream content differs within bytes {at}..{}",
                    at + n
                );
                stream_bytes.extend_from_slice(&buf[..n]);
            } else {
                let i = got.len();
                assert!(i < msgs.len(), "[{name}] extra message");
                assert_eq!(buf[..n], msgs[i][..], "[{name}] message {i} differs");
                got.push(buf[..n].to_vec());
            }
        }
        let done = if c.cfg.stream {
            stream_bytes.len() == total
        } else {
            got.len() == msgs.len()
        };
        if done && net.a.wait_snd() == 0 {
            break;
        }
        assert!(
            net.now < c.limit,
            "[{name}] incomplete after {} ms: {} of {} messages sent, {} received, {} stream bytes",
            net.now,
            next,
            msgs.len(),
            got.len(),
            stream_bytes.len()
        );
    }
    // Nothing more may arrive: drain the links and read again.
    for _ in 0..200 {
        net.step(step);
    }
    assert!(
        net.b.recv(&mut buf).is_none(),
        "[{name}] data after the end"
    );
    assert!(
        net.input_errors.is_empty(),
        "[{name}] refused datagrams: {:?}",
        &net.input_errors[..net.input_errors.len().min(5)]
    );
    let s = net.ab.stats();
    if c.link.loss > 0.0 {
        assert!(s.dropped > 0 && s.duplicated > 0, "[{name}] {s:?}");
    }
    eprintln!(
        "[{name}] {} messages, {total} bytes in {} virtual ms ({:?} wall)",
        msgs.len(),
        net.now,
        started.elapsed()
    );
    net.now
}

fn links() -> [LinkConfig; 3] {
    [
        LinkConfig {
            delay: 20,
            ..LinkConfig::perfect()
        },
        LinkConfig::lossy(0.1),
        LinkConfig::lossy(0.3),
    ]
}

/// Every direction and link, `messages` each. (ikcp's default mode backs
/// off hard on the 30% link: about an hour of virtual time, under a second
/// of wall time.)
fn matrix(cfg: KcpConfig, messages: usize, limit: u64) {
    let mut seed = 1;
    for sender in [Side::C, Side::Ours] {
        for link in links() {
            seed += 1;
            transfer(&Case {
                sender,
                cfg,
                link,
                seed,
                messages,
                max_size: 4096,
                epoch: 0,
                limit,
            });
        }
    }
}

#[test]
fn message_mode_default() {
    matrix(KcpConfig::default(), 2000, 20_000_000);
}

#[test]
fn message_mode_fast() {
    matrix(KcpConfig::fast(), 2000, 600_000);
}

#[test]
fn stream_mode_default() {
    let cfg = KcpConfig {
        stream: true,
        ..KcpConfig::default()
    };
    matrix(cfg, 2000, 20_000_000);
}

#[test]
fn stream_mode_fast() {
    let cfg = KcpConfig {
        stream: true,
        ..KcpConfig::fast()
    };
    matrix(cfg, 2000, 600_000);
}

#[test]
fn large_messages_fragment_across_implementations() {
    // Up to 100 fragments per message, both directions, 10% loss.
    for (i, sender) in [Side::C, Side::Ours].into_iter().enumerate() {
        transfer(&Case {
            sender,
            cfg: KcpConfig::fast(),
            link: LinkConfig::lossy(0.1),
            seed: 40 + i as u64,
            messages: 100,
            max_size: 100 * 1376,
            epoch: 0,
            limit: 600_000,
        });
    }
}

#[test]
fn sequence_numbers_and_clock_wrap() {
    // ikcp's snd_una/snd_nxt/rcv_nxt are set through its control block, so
    // both implementations start 300 segments and 5 s before wraparound.
    let start = u32::MAX - 300;
    for (i, sender) in [Side::C, Side::Ours].into_iter().enumerate() {
        for stream in [false, true] {
            let cfg = KcpConfig {
                initial_sn: start,
                stream,
                ..KcpConfig::fast()
            };
            transfer(&Case {
                sender,
                cfg,
                link: LinkConfig::lossy(0.1),
                seed: 60 + i as u64,
                messages: 1000,
                max_size: 2048,
                epoch: u32::MAX - 5_000,
                limit: 600_000,
            });
        }
    }
}

#[test]
fn harness_detects_corruption() {
    // The checks can fail: a link that flips a payload byte in transit
    // (with the header intact) makes the content assertion fire.
    struct Corrupt(Box<dyn Peer>);
    impl Peer for Corrupt {
        fn send(&mut self, d: &[u8]) -> Result<usize, String> {
            self.0.send(d)
        }
        fn recv(&mut self, b: &mut [u8]) -> Option<usize> {
            self.0.recv(b)
        }
        fn input(&mut self, d: &[u8]) -> Result<(), String> {
            let mut d = d.to_vec();
            if d.len() > 30 && d[4] == 81 {
                d[30] ^= 0xff;
            }
            self.0.input(&d)
        }
        fn update(&mut self, now: u32) {
            self.0.update(now)
        }
        fn flush(&mut self) {
            self.0.flush()
        }
        fn drain(&mut self, f: &mut dyn FnMut(&[u8])) {
            self.0.drain(f)
        }
        fn wait_snd(&self) -> u32 {
            self.0.wait_snd()
        }
        fn peek_size(&self) -> Option<usize> {
            self.0.peek_size()
        }
    }
    let cfg = KcpConfig::fast();
    let mut net = Net {
        a: peer(Side::C, &cfg),
        b: Box::new(Corrupt(peer(Side::Ours, &cfg))),
        ab: Link::new(LinkConfig::perfect(), 1),
        ba: Link::new(LinkConfig::perfect(), 2),
        now: 0,
        epoch: 0,
        input_errors: Vec::new(),
    };
    let msg = vec![7u8; 100];
    net.a.send(&msg).unwrap();
    let mut buf = [0u8; 200];
    let mut got = None;
    for _ in 0..50 {
        net.step(10);
        if let Some(n) = net.b.recv(&mut buf) {
            got = Some(buf[..n].to_vec());
            break;
        }
    }
    let got = got.expect("delivered");
    assert_eq!(got.len(), msg.len());
    assert_ne!(
        got, msg,
        "corruption should be visible to the content check"
    );
}
