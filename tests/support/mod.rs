//! Shared helpers for the `core_*` integration tests: traffic generators
//! whose content is checked byte for byte, and drivers over `sim::Pair`.
#![allow(dead_code)] // each test binary uses a different subset

use kcp_rs::sim::{Link, LinkConfig, Outbox, Pair, Rng};
use kcp_rs::{Kcp, KcpConfig, KcpError};

/// A session as the simulation builds it.
pub type SimKcp = Kcp<Outbox>;

/// A pair with the same configuration on both ends and `link` both ways.
pub fn pair(cfg: KcpConfig, link: LinkConfig, seed: u64, epoch: u32) -> Pair {
    Pair::new(
        0x1234_5678,
        cfg,
        cfg,
        Link::new(link, seed),
        Link::new(link, seed ^ 0x9e37_79b9_7f4a_7c15),
        epoch,
    )
    .expect("valid configuration")
}

/// `n` messages of random sizes: some empty, many small, some spanning
/// several fragments (up to `max_frags` of `mss` bytes), random content.
pub fn messages(rng: &mut Rng, n: usize, mss: usize, max_frags: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|_| {
            let len = match rng.range(0, 9) {
                0 => 0,
                1..=4 => rng.range(1, 200) as usize,
                5..=7 => rng.range(200, 2 * mss as u64) as usize,
                _ => rng.range(2 * mss as u64, (max_frags * mss) as u64) as usize,
            };
            let mut m = vec![0u8; len];
            rng.fill(&mut m);
            m
        })
        .collect()
}

/// One direction of traffic: what to write into a sender and how to check
/// what its peer reads.
pub trait Flow {
    /// Hands the sender as much as it accepts now.
    fn push(&mut self, tx: &mut SimKcp);
    /// Reads everything the receiver has and checks it.
    fn pull(&mut self, rx: &mut SimKcp);
    /// Whether everything was delivered and checked.
    fn done(&self) -> bool;
}

/// Messages, each delivered whole, once, in order.
pub struct MessageFlow {
    msgs: Vec<Vec<u8>>,
    sent: usize,
    received: usize,
    buf: Vec<u8>,
}

impl MessageFlow {
    pub fn new(msgs: Vec<Vec<u8>>, max_message: usize) -> Self {
        MessageFlow {
            msgs,
            sent: 0,
            received: 0,
            buf: vec![0; max_message],
        }
    }

    pub fn received(&self) -> usize {
        self.received
    }

    pub fn bytes(&self) -> usize {
        self.msgs.iter().map(Vec::len).sum()
    }
}

impl Flow for MessageFlow {
    fn push(&mut self, tx: &mut SimKcp) {
        while let Some(m) = self.msgs.get(self.sent) {
            match tx.send(m) {
                Ok(n) => assert_eq!(n, m.len(), "message mode takes a message whole"),
                Err(KcpError::BufferFull) => return,
                Err(e) => panic!("send of message {} ({} bytes): {e}", self.sent, m.len()),
            }
            self.sent += 1;
        }
    }

    fn pull(&mut self, rx: &mut SimKcp) {
        loop {
            match rx.recv(&mut self.buf) {
                Ok(n) => {
                    let i = self.received;
                    let want = self
                        .msgs
                        .get(i)
                        .unwrap_or_else(|| panic!("extra message of {n} bytes after the last"));
                    assert!(i < self.sent, "message {i} received before it was sent");
                    assert_eq!(n, want.len(), "length of message {i}");
                    assert!(self.buf[..n] == want[..], "content of message {i}");
                    self.received += 1;
                }
                Err(KcpError::WouldBlock) => return,
                Err(e) => panic!("recv: {e}"),
            }
        }
    }

    fn done(&self) -> bool {
        self.received == self.msgs.len()
    }
}

/// A byte stream written and read in random-sized pieces.
pub struct StreamFlow {
    data: Vec<u8>,
    sent: usize,
    received: usize,
    rng: Rng,
    buf: Vec<u8>,
}

impl StreamFlow {
    pub fn new(len: usize, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let mut data = vec![0u8; len];
        rng.fill(&mut data);
        StreamFlow {
            data,
            sent: 0,
            received: 0,
            rng,
            buf: vec![0; 8192],
        }
    }
}

impl Flow for StreamFlow {
    fn push(&mut self, tx: &mut SimKcp) {
        while self.sent < self.data.len() {
            let want = self.rng.range(1, 5000) as usize;
            let end = (self.sent + want).min(self.data.len());
            match tx.send(&self.data[self.sent..end]) {
                Ok(n) => {
                    assert!(n > 0 && n <= end - self.sent, "stream send took {n}");
                    self.sent += n;
                    if self.sent < end {
                        return; // partially taken: the queue is full
                    }
                }
                Err(KcpError::BufferFull) => return,
                Err(e) => panic!("stream send: {e}"),
            }
        }
    }

    fn pull(&mut self, rx: &mut SimKcp) {
        loop {
            let want = self.rng.range(1, self.buf.len() as u64) as usize;
            match rx.recv(&mut self.buf[..want]) {
                Ok(n) => {
                    assert!(n <= want);
                    let end = self.received + n;
                    assert!(
                        end <= self.sent,
                        "read {end} bytes, only {} sent",
                        self.sent
                    );
                    assert!(
                        self.buf[..n] == self.data[self.received..end],
                        "stream content at {}..{end}",
                        self.received
                    );
                    self.received = end;
                    if n == 0 {
                        return;
                    }
                }
                Err(KcpError::WouldBlock) => return,
                Err(e) => panic!("stream recv: {e}"),
            }
        }
    }

    fn done(&self) -> bool {
        self.received == self.data.len()
    }
}

/// Runs the flows (a→b and optionally b→a) in steps of `dt` ms until both are
/// done, then `settle` ms more to show nothing further arrives. Panics after
/// `limit_ms` of virtual time. Returns the virtual time taken.
pub fn run(
    p: &mut Pair,
    ab: &mut dyn Flow,
    mut ba: Option<&mut dyn Flow>,
    dt: u64,
    limit_ms: u64,
) -> u64 {
    let start = p.now();
    loop {
        ab.push(&mut p.a);
        if let Some(f) = ba.as_deref_mut() {
            f.push(&mut p.b);
        }
        p.step(dt);
        ab.pull(&mut p.b);
        if let Some(f) = ba.as_deref_mut() {
            f.pull(&mut p.a);
        }
        if ab.done() && ba.as_deref().is_none_or(|f| f.done()) {
            break;
        }
        assert!(
            p.now() - start < limit_ms,
            "not done after {limit_ms} ms (a: {:?}, b: {:?})",
            p.a.stats(),
            p.b.stats()
        );
    }
    let took = p.now() - start;
    // Everything was delivered once; retransmissions still in flight must
    // not deliver anything twice. Settle until both senders saw every ACK.
    let mut settled = 0;
    while settled < 1_000 || p.a.wait_snd() + p.b.wait_snd() > 0 {
        p.step(dt);
        settled += dt;
        ab.pull(&mut p.b);
        if let Some(f) = ba.as_deref_mut() {
            f.pull(&mut p.a);
        }
        assert!(settled < 120_000, "ACKs never settled");
    }
    assert_eq!(
        p.input_errors(),
        0,
        "an honest link carried a datagram the peer refused"
    );
    assert!(!p.a.is_dead() && !p.b.is_dead());
    took
}
