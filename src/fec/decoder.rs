//! The receiving side: hands data up at once, recovers lost data from parity.

use reed_solomon_erasure::galois_8::ReedSolomon;

use super::config::{FecConfig, FecError};
use super::framing::{kcp_bytes_of_shard, seqid_diff, Packet, ShardKind};

/// Counters of a [`FecDecoder`] since it was built.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FecDecoderStats {
    /// Data packets accepted (delivered at once unless empty).
    pub data_packets: u64,
    /// Parity packets accepted.
    pub parity_packets: u64,
    /// KCP datagrams recovered from parity and delivered.
    pub recovered: u64,
    /// Packets dropped because their shard was already held or delivered.
    pub duplicates: u64,
    /// Parity packets dropped because their group needed no more shards.
    pub parity_unused: u64,
    /// Packets of a group older than every group held while all slots were
    /// taken (data in them is still delivered).
    pub stale: u64,
    /// Groups forgotten (evicted or expired) while data shards were
    /// missing: losses FEC could not repair (kcp-go's `FECShortShards`).
    pub unrecoverable_groups: u64,
    /// Packets refused with an error.
    pub malformed: u64,
    /// Recovered data shards whose size field made no sense (kcp-go's
    /// `FECErrs`): corrupted input.
    pub recovery_errors: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Free,
    /// Collecting shards.
    Open,
    /// Every data shard was received or recovered: later packets of the
    /// group are dropped.
    Done,
}

/// Book-keeping of one group slot; its shards live in `FecDecoder::store`.
#[derive(Clone, Copy, Debug)]
struct Group {
    state: State,
    /// seqid of the group's first shard (a multiple of `k + m`).
    base: u32,
    /// Arrival time of its first packet, for expiry.
    since_ms: u32,
    received: usize,
    data_received: usize,
    /// Length of the group's parity shards; 0 before the first arrives.
    parity_len: usize,
    /// Longest data shard received.
    data_len: usize,
}

const FREE: Group = Group {
    state: State::Free,
    base: 0,
    since_ms: 0,
    received: 0,
    data_received: 0,
    parity_len: 0,
    data_len: 0,
};

/// Decodes kcp-go FEC packets back into KCP datagrams.
///
/// A data packet's KCP datagram is delivered as soon as it arrives. Once any
/// `k` of a group's `k + m` shards are held, the missing data shards are
/// rebuilt and the ones never delivered are handed up too. The decoder keeps
/// at most [`FecConfig::rx_groups`] groups in buffers allocated by
/// [`FecDecoder::new`]: a packet of a new group evicts the oldest, a group is
/// forgotten [`FecConfig::expire_ms`] after its first packet, and completed
/// groups are remembered (until evicted) so that late copies are dropped.
/// Memory never grows, whatever arrives. Decoding without loss allocates
/// nothing; a recovery may allocate when `reed-solomon-erasure` inverts a
/// decode matrix for a loss pattern not in its cache.
///
/// As in kcp-go, a shard is valid only at its position: data at
/// `seqid % (k + m) < k`, parity after. Unlike kcp-go, the decoder does not
/// retune itself to a peer with other shard counts; such packets are refused
/// with [`FecError::ShardMismatch`].
///
/// ```
/// use kcp_rs::fec::{FecConfig, FecDecoder, FecEncoder};
///
/// let cfg = FecConfig::low_latency(); // 2 + 1
/// let mut enc = FecEncoder::new(cfg)?;
/// let mut dec = FecDecoder::new(cfg)?;
/// let mut wire = Vec::new();
/// enc.encode(b"lost on the way", |p| wire.push(p.to_vec()))?;
/// enc.encode(b"arrives", |p| wire.push(p.to_vec()))?;
///
/// let mut got = Vec::new();
/// for packet in &wire[1..] { // the first data packet is lost
///     dec.decode(0, packet, |kcp| got.push(kcp.to_vec()))?;
/// }
/// assert_eq!(got, [b"arrives".to_vec(), b"lost on the way".to_vec()]);
/// assert_eq!(dec.stats().recovered, 1);
/// # Ok::<(), kcp_rs::fec::FecError>(())
/// ```
pub struct FecDecoder {
    cfg: FecConfig,
    codec: ReedSolomon,
    groups: Vec<Group>,
    /// `rx_groups × (k + m)` shards, each with room for `max_shard` bytes,
    /// and whether it is held: the form `reconstruct_data` takes.
    shards: Vec<(Vec<u8>, bool)>,
    stats: FecDecoderStats,
}

impl FecDecoder {
    /// A decoder with every buffer allocated.
    ///
    /// # Errors
    /// [`FecError::InvalidConfig`] when `config` does not validate.
    pub fn new(config: FecConfig) -> Result<Self, FecError> {
        config.validate()?;
        let codec = ReedSolomon::new(config.data_shards, config.parity_shards)
            .map_err(|_| FecError::InvalidConfig("shard counts refused by the codec"))?;
        let shards = config.rx_groups * config.group_len();
        Ok(FecDecoder {
            cfg: config,
            codec,
            groups: vec![FREE; config.rx_groups],
            shards: (0..shards)
                .map(|_| (Vec::with_capacity(config.max_shard()), false))
                .collect(),
            stats: FecDecoderStats::default(),
        })
    }

    /// Takes one FEC packet received at `now_ms` and hands every KCP
    /// datagram it makes available to `deliver`: the packet's own, and any
    /// recovered from its group. Returns how many were delivered.
    ///
    /// # Errors
    /// When the packet is truncated, longer than `max_packet`, of unknown
    /// type, has a bad size field, sits at the wrong shard position, or its
    /// length contradicts its group. The decoder is left unchanged and
    /// nothing is delivered. Never panics.
    pub fn decode(
        &mut self,
        now_ms: u32,
        packet: &[u8],
        mut deliver: impl FnMut(&[u8]),
    ) -> Result<usize, FecError> {
        let (packet, index) = match self.check(packet) {
            Ok(checked) => checked,
            Err(e) => {
                self.stats.malformed += 1;
                return Err(e);
            }
        };
        self.expire(now_ms);
        let header = packet.header();
        let base = header.seqid - index as u32;
        let shard = packet.shard();
        let is_data = header.kind == ShardKind::Data;

        let g = match self
            .groups
            .iter()
            .position(|g| g.state != State::Free && g.base == base)
        {
            Some(g) => g,
            None => match self.claim_slot(base, now_ms) {
                Some(g) => g,
                None => {
                    self.stats.stale += 1;
                    return Ok(self.deliver_data(&packet, &mut deliver));
                }
            },
        };
        let slot = g * self.cfg.group_len() + index;
        let group = self.groups[g];
        let held = self.shards[slot].1;
        if group.state == State::Done || held {
            if held || is_data {
                self.stats.duplicates += 1;
            } else {
                self.stats.parity_unused += 1;
            }
            return Ok(0);
        }
        let consistent = if is_data {
            group.parity_len == 0 || shard.len() <= group.parity_len
        } else {
            (group.parity_len == 0 || shard.len() == group.parity_len)
                && shard.len() >= group.data_len
        };
        if !consistent {
            self.stats.malformed += 1;
            return Err(FecError::InconsistentGroup {
                seqid: header.seqid,
            });
        }

        let mut delivered = self.deliver_data(&packet, &mut deliver);
        let (buf, held) = &mut self.shards[slot];
        buf.clear();
        buf.extend_from_slice(shard); // within capacity: max_packet was checked
        *held = true;
        let group = &mut self.groups[g];
        group.received += 1;
        if is_data {
            group.data_received += 1;
            group.data_len = group.data_len.max(shard.len());
        } else {
            group.parity_len = shard.len();
        }
        if group.data_received == self.cfg.data_shards {
            group.state = State::Done;
        } else if group.received >= self.cfg.data_shards {
            group.state = State::Done;
            delivered += self.recover(g, &mut deliver);
        }
        Ok(delivered)
    }

    /// Counters since construction.
    pub fn stats(&self) -> &FecDecoderStats {
        &self.stats
    }

    /// The configuration.
    pub fn config(&self) -> &FecConfig {
        &self.cfg
    }

    /// Groups currently held (collecting or remembered as complete).
    pub fn groups_held(&self) -> usize {
        self.groups
            .iter()
            .filter(|g| g.state != State::Free)
            .count()
    }

    /// Validates a packet against the framing and this decoder's shard
    /// counts; returns it with its shard index.
    fn check<'p>(&self, packet: &'p [u8]) -> Result<(Packet<&'p [u8]>, usize), FecError> {
        if packet.len() > self.cfg.max_packet {
            return Err(FecError::TooLarge {
                len: packet.len(),
                max: self.cfg.max_packet,
            });
        }
        let packet = Packet::new_checked(packet)?;
        let header = packet.header();
        let index = (header.seqid % self.cfg.group_len() as u32) as usize;
        let data_position = index < self.cfg.data_shards;
        if data_position != (header.kind == ShardKind::Data) {
            return Err(FecError::ShardMismatch {
                seqid: header.seqid,
            });
        }
        Ok((packet, index))
    }

    fn deliver_data(&mut self, packet: &Packet<&[u8]>, deliver: &mut impl FnMut(&[u8])) -> usize {
        if packet.header().kind != ShardKind::Data {
            self.stats.parity_packets += 1;
            return 0;
        }
        self.stats.data_packets += 1;
        let kcp = packet.kcp_bytes();
        if kcp.is_empty() {
            return 0;
        }
        deliver(kcp);
        1
    }

    /// Forgets groups older than `expire_ms`.
    fn expire(&mut self, now_ms: u32) {
        let limit = i32::try_from(self.cfg.expire_ms).unwrap_or(i32::MAX);
        for g in 0..self.groups.len() {
            let group = self.groups[g];
            if group.state != State::Free && seqid_diff(now_ms, group.since_ms) > limit {
                self.release(g);
            }
        }
    }

    /// A free slot for a new group at `base`, evicting the oldest group if
    /// none is free; `None` when `base` is older than every group held.
    fn claim_slot(&mut self, base: u32, now_ms: u32) -> Option<usize> {
        let g = match self.groups.iter().position(|g| g.state == State::Free) {
            Some(g) => g,
            None => {
                let (oldest, _) = self
                    .groups
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, g)| seqid_diff(g.base, base))?;
                if seqid_diff(base, self.groups[oldest].base) < 0 {
                    return None;
                }
                self.release(oldest);
                oldest
            }
        };
        self.groups[g] = Group {
            state: State::Open,
            base,
            since_ms: now_ms,
            ..FREE
        };
        Some(g)
    }

    fn release(&mut self, g: usize) {
        let group = self.groups[g];
        if group.state == State::Open && group.data_received < self.cfg.data_shards {
            self.stats.unrecoverable_groups += 1;
        }
        let n = self.cfg.group_len();
        for (_, held) in &mut self.shards[g * n..(g + 1) * n] {
            *held = false;
        }
        self.groups[g] = FREE;
    }

    /// Rebuilds the missing data shards of group `g` (which holds at least
    /// `k` shards, one of them parity) and delivers those not seen before.
    fn recover(&mut self, g: usize, deliver: &mut impl FnMut(&[u8])) -> usize {
        let (k, n) = (self.cfg.data_shards, self.cfg.group_len());
        let group = self.groups[g];
        let len = group.parity_len.max(group.data_len);
        let shards = &mut self.shards[g * n..(g + 1) * n];
        let mut missing = [false; super::MAX_SHARDS];
        for ((buf, held), gone) in shards.iter_mut().zip(&mut missing) {
            // kcp-go pads every shard with zeros to the longest; resizing
            // within the reserved capacity allocates nothing.
            buf.resize(len, 0);
            *gone = !*held;
        }
        if self.codec.reconstruct_data(shards).is_err() {
            self.stats.recovery_errors += 1;
            return 0;
        }
        let mut delivered = 0;
        for ((buf, _), _) in shards[..k].iter().zip(&missing).filter(|(_, gone)| **gone) {
            match kcp_bytes_of_shard(buf) {
                Some([]) => {} // an empty shard that closed the group early
                Some(kcp) => {
                    deliver(kcp);
                    delivered += 1;
                }
                None => self.stats.recovery_errors += 1,
            }
        }
        self.stats.recovered += delivered as u64;
        delivered
    }
}

impl core::fmt::Debug for FecDecoder {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FecDecoder")
            .field("config", &self.cfg)
            .field("groups_held", &self.groups_held())
            .field("stats", &self.stats)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fec::FecEncoder;

    /// Encodes `count` datagrams `i` (each `i` repeated `20 + i` times).
    fn wire(cfg: FecConfig, count: usize) -> Vec<Vec<u8>> {
        let mut enc = FecEncoder::new(cfg).unwrap();
        let mut out = Vec::new();
        for i in 0..count {
            enc.encode(&vec![i as u8; 20 + i], |p| out.push(p.to_vec()))
                .unwrap();
        }
        out
    }

    fn run(dec: &mut FecDecoder, packets: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        for p in packets {
            let _ = dec.decode(0, p, |d| got.push(d.to_vec()));
        }
        got
    }

    #[test]
    fn lossless_stream_is_delivered_in_order_without_recovery() {
        let cfg = FecConfig::balanced();
        let mut dec = FecDecoder::new(cfg).unwrap();
        let got = run(&mut dec, &wire(cfg, 40));
        let expected: Vec<Vec<u8>> = (0..40).map(|i| vec![i as u8; 20 + i]).collect();
        assert_eq!(got, expected);
        assert_eq!(dec.stats().recovered, 0);
        assert_eq!(dec.stats().parity_unused, 20);
        assert_eq!(dec.stats().data_packets, 40);
    }

    #[test]
    fn duplicates_and_late_copies_are_dropped() {
        let cfg = FecConfig::low_latency();
        let w = wire(cfg, 2);
        let mut dec = FecDecoder::new(cfg).unwrap();
        // data 1, parity: recovers data 0; then the late data 0 and a copy
        // of data 1 must not be delivered again.
        let got = run(
            &mut dec,
            &[w[1].clone(), w[2].clone(), w[0].clone(), w[1].clone()],
        );
        assert_eq!(got, [vec![1u8; 21], vec![0u8; 20]]);
        assert_eq!(dec.stats().recovered, 1);
        assert_eq!(dec.stats().duplicates, 2);
        let mut again = FecDecoder::new(cfg).unwrap();
        let got = run(&mut again, &[w[0].clone(), w[0].clone()]);
        assert_eq!(got.len(), 1);
        assert_eq!(again.stats().duplicates, 1);
    }

    #[test]
    fn groups_are_bounded_and_evicted_oldest_first() {
        let cfg = FecConfig::balanced();
        let w = wire(cfg, 4 * 10);
        let mut dec = FecDecoder::new(cfg).unwrap();
        // Only the first data shard of every group: nothing completes.
        let firsts: Vec<Vec<u8>> = w.iter().step_by(6).cloned().collect();
        assert_eq!(run(&mut dec, &firsts).len(), 10);
        assert_eq!(dec.groups_held(), cfg.rx_groups);
        assert_eq!(dec.stats().unrecoverable_groups, 10 - cfg.rx_groups as u64);
        // A shard of the first (evicted, older than all held) group is
        // stale: its data is still delivered, nothing is stored.
        assert_eq!(run(&mut dec, &[w[1].clone()]).len(), 1);
        assert_eq!(dec.stats().stale, 1);
    }

    #[test]
    fn groups_expire() {
        let cfg = FecConfig::low_latency();
        let w = wire(cfg, 2);
        let mut dec = FecDecoder::new(cfg).unwrap();
        let mut got = 0;
        dec.decode(1_000, &w[1], |_| got += 1).unwrap();
        assert_eq!(dec.groups_held(), 1);
        // The parity arrives after the group expired: no recovery.
        dec.decode(1_000 + cfg.expire_ms + 1, &w[2], |_| got += 1)
            .unwrap();
        assert_eq!(got, 1);
        assert_eq!(dec.stats().unrecoverable_groups, 1);
        assert_eq!(dec.stats().recovered, 0);
    }

    #[test]
    fn inconsistent_and_misplaced_packets_are_refused() {
        let cfg = FecConfig::low_latency();
        let w = wire(cfg, 2);
        let mut dec = FecDecoder::new(cfg).unwrap();
        dec.decode(0, &w[2], |_| {}).unwrap();
        // A data shard longer than the group's parity.
        let mut long = w[1].clone();
        long.extend_from_slice(&[0; 10]);
        assert_eq!(
            dec.decode(0, &long, |_| panic!("delivered")),
            Err(FecError::InconsistentGroup { seqid: 1 })
        );
        // Data type at a parity position.
        let mut misplaced = w[0].clone();
        misplaced[0] = 2;
        assert_eq!(
            dec.decode(0, &misplaced, |_| panic!("delivered")),
            Err(FecError::ShardMismatch { seqid: 2 })
        );
        assert_eq!(dec.stats().malformed, 2);
        // The group is intact: the real data shard still recovers the other.
        let mut got = Vec::new();
        dec.decode(0, &w[1], |d| got.push(d.to_vec())).unwrap();
        assert_eq!(got, [vec![1u8; 21], vec![0u8; 20]]);
    }

    #[test]
    fn oversized_packets_are_refused() {
        let mut dec = FecDecoder::new(FecConfig::balanced()).unwrap();
        let mut p = vec![0u8; 1501];
        p[4] = 0xF1;
        p[6] = 2;
        assert_eq!(
            dec.decode(0, &p, |_| {}),
            Err(FecError::TooLarge {
                len: 1501,
                max: 1500
            })
        );
    }
}
