//! An in-memory lossy link and a pair of sessions joined by two of them.
//!
//! Time is a `u64` millisecond count owned by the caller; sessions see it as
//! `u32` from an offset of the caller's choosing, so tests can start the
//! clock just below `u32::MAX` and watch it wrap.
//!
//! Buffers are recycled: once the link has carried its busiest moment it
//! allocates nothing more, so allocation-counting tests can run through it.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::vec::Vec;

use super::Rng;
use crate::{Kcp, KcpConfig, KcpOutput, KcpResult};

/// Faults a [`Link`] applies to each datagram.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinkConfig {
    /// Probability that a datagram is lost.
    pub loss: f64,
    /// Probability that a datagram is delivered twice.
    pub duplicate: f64,
    /// Fixed one-way delay in milliseconds.
    pub delay: u32,
    /// Extra random delay, uniform in `0..=jitter` ms.
    pub jitter: u32,
    /// Keep datagrams in order despite jitter (a FIFO queue, as in ikcp's
    /// `test.cpp`); when false, jitter reorders them.
    pub fifo: bool,
}

impl LinkConfig {
    /// No loss, no delay.
    pub fn perfect() -> Self {
        LinkConfig {
            loss: 0.0,
            duplicate: 0.0,
            delay: 0,
            jitter: 0,
            fifo: true,
        }
    }

    /// `loss` probability with 20–40 ms of reordering delay and 1% duplicates.
    pub fn lossy(loss: f64) -> Self {
        LinkConfig {
            loss,
            duplicate: 0.01,
            delay: 20,
            jitter: 20,
            fifo: false,
        }
    }
}

/// What a link did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Datagrams offered.
    pub sent: u64,
    /// Datagrams lost.
    pub dropped: u64,
    /// Extra copies delivered.
    pub duplicated: u64,
    /// Datagrams delivered (copies included).
    pub delivered: u64,
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Due {
    at: u64,
    order: u64,
    slot: usize,
}

/// A one-way link with seeded faults.
pub struct Link {
    cfg: LinkConfig,
    rng: Rng,
    queue: BinaryHeap<Reverse<Due>>,
    slots: Vec<Vec<u8>>,
    free: Vec<usize>,
    order: u64,
    last_at: u64,
    stats: LinkStats,
}

impl Link {
    /// A link with `cfg`, its randomness seeded by `seed`.
    pub fn new(cfg: LinkConfig, seed: u64) -> Link {
        Link {
            cfg,
            rng: Rng::new(seed),
            queue: BinaryHeap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            order: 0,
            last_at: 0,
            stats: LinkStats::default(),
        }
    }

    /// Offers `data` at time `now`.
    pub fn send(&mut self, now: u64, data: &[u8]) {
        self.stats.sent += 1;
        if self.rng.chance(self.cfg.loss) {
            self.stats.dropped += 1;
            return;
        }
        let copies = if self.rng.chance(self.cfg.duplicate) {
            self.stats.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let mut at = now + self.cfg.delay as u64 + self.rng.range(0, self.cfg.jitter as u64);
            if self.cfg.fifo {
                at = at.max(self.last_at);
                self.last_at = at;
            }
            let slot = match self.free.pop() {
                Some(s) => s,
                None => {
                    self.slots.push(Vec::new());
                    self.slots.len() - 1
                }
            };
            self.slots[slot].clear();
            self.slots[slot].extend_from_slice(data);
            self.order += 1;
            self.queue.push(Reverse(Due {
                at,
                order: self.order,
                slot,
            }));
        }
    }

    /// Hands every datagram due by `now` to `deliver`, oldest first.
    pub fn deliver(&mut self, now: u64, mut deliver: impl FnMut(&[u8])) {
        while let Some(Reverse(due)) = self.queue.peek() {
            if due.at > now {
                break;
            }
            let slot = due.slot;
            self.queue.pop();
            self.stats.delivered += 1;
            deliver(&self.slots[slot]);
            self.free.push(slot);
        }
    }

    /// Datagrams in transit.
    pub fn in_transit(&self) -> usize {
        self.queue.len()
    }

    /// Counters so far.
    pub fn stats(&self) -> LinkStats {
        self.stats
    }
}

/// A [`KcpOutput`] that keeps datagrams until [`Outbox::drain`] moves them on.
///
/// Datagrams are appended to one reused buffer, with their end offsets
/// beside: no allocation per datagram once the buffer has held the largest
/// batch, and the same sink the side-by-side benchmarks give ikcp.
#[derive(Default)]
pub struct Outbox {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Outbox {
    /// An outbox with room for `datagrams` datagrams of `bytes` in all,
    /// allocated and touched now, so that a measurement that starts later
    /// does not count this buffer's growth or its first page faults: the
    /// outbox stands for the kernel's socket buffer, not the session's
    /// memory.
    pub fn with_room(datagrams: usize, bytes: usize) -> Outbox {
        // Written, not zeroed: a zeroed allocation may be fresh pages that
        // are only mapped at the first write.
        let mut out = Outbox {
            bytes: Vec::with_capacity(bytes),
            ends: Vec::with_capacity(datagrams),
        };
        out.bytes.resize(bytes, 0xa5);
        out.ends.resize(datagrams, usize::MAX);
        out.bytes.clear();
        out.ends.clear();
        out
    }

    /// Hands every pending datagram to `f`, oldest first, and empties the
    /// buffer (keeping its allocation).
    pub fn drain(&mut self, mut f: impl FnMut(&[u8])) {
        let mut start = 0;
        for &end in &self.ends {
            f(&self.bytes[start..end]);
            start = end;
        }
        self.bytes.clear();
        self.ends.clear();
    }

    /// Datagrams waiting.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether no datagram is waiting.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
}

impl KcpOutput for Outbox {
    fn output(&mut self, data: &[u8]) -> KcpResult<usize> {
        self.bytes.extend_from_slice(data);
        self.ends.push(self.bytes.len());
        Ok(data.len())
    }
}

/// Two sessions `a` and `b` joined by links `ab` and `ba` under one clock.
pub struct Pair {
    /// The first session.
    pub a: Kcp<Outbox>,
    /// The second session.
    pub b: Kcp<Outbox>,
    /// The link from `a` to `b`.
    pub ab: Link,
    /// The link from `b` to `a`.
    pub ba: Link,
    now: u64,
    epoch: u32,
    input_errors: u64,
}

impl Pair {
    /// Two sessions of conversation `conv` with the given configurations;
    /// `epoch` is the `u32` clock value the sessions see at time 0.
    ///
    /// # Errors
    /// When either configuration is invalid.
    pub fn new(
        conv: u32,
        cfg_a: KcpConfig,
        cfg_b: KcpConfig,
        ab: Link,
        ba: Link,
        epoch: u32,
    ) -> KcpResult<Pair> {
        Ok(Pair {
            a: Kcp::with_config(conv, Outbox::default(), cfg_a)?,
            b: Kcp::with_config(conv, Outbox::default(), cfg_b)?,
            ab,
            ba,
            now: 0,
            epoch,
            input_errors: 0,
        })
    }

    /// Simulated milliseconds since the start.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// The `u32` clock the sessions see.
    pub fn clock(&self) -> u32 {
        self.epoch.wrapping_add(self.now as u32)
    }

    /// Datagrams the sessions refused (should stay 0 on an honest link).
    pub fn input_errors(&self) -> u64 {
        self.input_errors
    }

    /// Advances the clock by `dt` ms: delivers what is due, then updates
    /// both sessions and puts what they sent on the links.
    pub fn step(&mut self, dt: u64) {
        self.now += dt;
        self.deliver();
        let clock = self.clock();
        self.a.update(clock);
        self.b.update(clock);
        self.pump();
    }

    /// Delivers what is due now, without advancing the clock.
    pub fn deliver(&mut self) {
        let (now, mut errors) = (self.now, 0);
        let b = &mut self.b;
        self.ab
            .deliver(now, |d| errors += b.input(d).is_err() as u64);
        let a = &mut self.a;
        self.ba
            .deliver(now, |d| errors += a.input(d).is_err() as u64);
        self.input_errors += errors;
    }

    /// Moves what the sessions output onto the links.
    pub fn pump(&mut self) {
        let now = self.now;
        let ab = &mut self.ab;
        self.a.output_mut().drain(|d| ab.send(now, d));
        let ba = &mut self.ba;
        self.b.output_mut().drain(|d| ba.send(now, d));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_link_delivers_everything_in_order() {
        let mut l = Link::new(LinkConfig::perfect(), 1);
        for i in 0..10u8 {
            l.send(0, &[i]);
        }
        let mut got = Vec::new();
        l.deliver(0, |d| got.push(d[0]));
        assert_eq!(got, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn delay_holds_datagrams_until_due() {
        let cfg = LinkConfig {
            delay: 30,
            ..LinkConfig::perfect()
        };
        let mut l = Link::new(cfg, 1);
        l.send(0, b"x");
        let mut n = 0;
        l.deliver(29, |_| n += 1);
        assert_eq!(n, 0);
        l.deliver(30, |_| n += 1);
        assert_eq!(n, 1);
    }

    #[test]
    fn lossy_link_drops_about_the_asked_share_and_can_reorder() {
        let mut l = Link::new(LinkConfig::lossy(0.3), 9);
        for i in 0..10_000u32 {
            l.send(i as u64, &i.to_le_bytes());
        }
        let mut got = Vec::new();
        l.deliver(u64::MAX, |d| {
            got.push(u32::from_le_bytes(d.try_into().unwrap()))
        });
        let s = l.stats();
        assert!((2_700..3_300).contains(&s.dropped), "{s:?}");
        assert_eq!(s.delivered as usize, got.len());
        assert!(got.windows(2).any(|w| w[0] > w[1]), "jitter should reorder");
    }

    #[test]
    fn pair_moves_a_message() {
        let mut p = Pair::new(
            1,
            KcpConfig::fast(),
            KcpConfig::fast(),
            Link::new(LinkConfig::perfect(), 1),
            Link::new(LinkConfig::perfect(), 2),
            u32::MAX - 50,
        )
        .unwrap();
        p.a.send(b"across the wrap").unwrap();
        let mut buf = [0u8; 64];
        for _ in 0..20 {
            p.step(10);
            if let Ok(n) = p.b.recv(&mut buf) {
                assert_eq!(&buf[..n], b"across the wrap");
                assert_eq!(p.input_errors(), 0);
                return;
            }
        }
        panic!("not delivered");
    }
}
