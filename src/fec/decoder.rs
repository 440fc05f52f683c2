//! The receiving side: hands data up at once, recovers lost data from parity.

use reed_solomon_erasure::galois_8::ReedSolomon;

use super::config::{FecConfig, FecError};
use super::framing::{kcp_bytes_of_shard, seqid_diff, Packet, ShardKind, EMPTY_MARK, SIZE_LEN};

/// Counters of a [`FecDecoder`] since it was built.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
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
    /// Empty data shards held before they arrived, because another empty
    /// packet of their group did (see [`FecDecoder`]).
    pub inferred_empty: u64,
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
    /// First data position known to be empty, from an empty packet that
    /// arrived (`MAX_SHARDS`: none).
    inferred_from: usize,
}

const FREE: Group = Group {
    state: State::Free,
    base: 0,
    since_ms: 0,
    received: 0,
    data_received: 0,
    parity_len: 0,
    data_len: 0,
    inferred_from: super::MAX_SHARDS,
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
/// Groups closed early ([`FecEncoder::flush_group`](super::FecEncoder::flush_group))
/// end with empty data packets (size field 2), and only such groups have
/// them: a KCP datagram is never empty, so kcp-go never sends one. Each
/// empty packet names the position of its group's first empty packet
/// ([`EMPTY_MARK`]), and they are all the same
/// shard, so the first one to arrive lets the decoder hold every empty
/// position of the group before the others arrive (from an empty packet
/// without the mark, sent by an older version, the positions after it). On
/// sparse traffic a closed group is mostly empty packets; without this, a
/// lost empty packet would use up a parity shard as surely as a lost
/// datagram. If a data packet arrives anyway at a position taken as empty,
/// its datagram is still delivered.
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
        if is_data && index >= group.inferred_from {
            // Expected empty, and already held as such: accepted (a sender
            // unlike ours would have its datagram delivered here).
            return Ok(self.deliver_data(&packet, &mut deliver));
        }
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
        if is_data && packet.kcp_bytes().is_empty() {
            self.infer_empty(g, index);
        }
        let group = &mut self.groups[g];
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

    /// Holds the other empty positions of group `g`, whose shard at `index`
    /// is an empty one, as copies of it: the encoder closes a group with
    /// identical empty packets from the position the shard names (or, for an
    /// unmarked one, at least from `index`) up to the last data position.
    fn infer_empty(&mut self, g: usize, index: usize) {
        let (k, n) = (self.cfg.data_shards, self.cfg.group_len());
        let shards = &mut self.shards[g * n..(g + 1) * n];
        let (before, rest) = shards[..k].split_at_mut(index);
        let (this, after) = rest.split_at_mut(1);
        let empty = &this[0].0;
        let from = match empty.get(SIZE_LEN..SIZE_LEN + 2) {
            Some(&[EMPTY_MARK, first]) if usize::from(first) < index => usize::from(first),
            _ => index,
        };
        let mut inferred = 0;
        for (buf, held) in before[from..]
            .iter_mut()
            .chain(after)
            .filter(|(_, held)| !*held)
        {
            buf.clear();
            buf.extend_from_slice(empty); // within capacity
            *held = true;
            inferred += 1;
        }
        let group = &mut self.groups[g];
        group.received += inferred;
        group.data_received += inferred;
        group.inferred_from = group.inferred_from.min(from);
        self.stats.inferred_empty += inferred as u64;
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

    /// A 4+2 group closed after one datagram: data, three empty packets,
    /// two parity.
    fn closed_early(cfg: FecConfig) -> Vec<Vec<u8>> {
        let mut enc = FecEncoder::new(cfg).unwrap();
        let mut out = Vec::new();
        enc.encode(&[7; 40], |p| out.push(p.to_vec())).unwrap();
        enc.flush_group(|p| out.push(p.to_vec()));
        out
    }

    #[test]
    fn empty_packets_after_an_empty_one_are_inferred() {
        let cfg = FecConfig::balanced();
        let w = closed_early(cfg);
        assert_eq!(w.len(), 6);
        let mut dec = FecDecoder::new(cfg).unwrap();
        // Lost: the datagram, empties 2 and 3, the second parity. Empty 1
        // and one parity are two shards of four, but empty 1 says 2 and 3
        // are empty too.
        let got = run(&mut dec, &[w[1].clone(), w[4].clone()]);
        assert_eq!(got, [vec![7u8; 40]]);
        assert_eq!(dec.stats().recovered, 1);
        assert_eq!(dec.stats().inferred_empty, 2);
        // The inferred empties arriving late are neither duplicates nor
        // delivered.
        assert!(run(&mut dec, &[w[2].clone(), w[3].clone(), w[5].clone()]).is_empty());
        assert_eq!(dec.stats().duplicates, 0);
        assert_eq!(dec.stats().data_packets, 3);
    }

    #[test]
    fn an_empty_packet_names_the_first_one() {
        let cfg = FecConfig::balanced();
        let w = closed_early(cfg);
        assert_eq!(&w[2][8..10], &[EMPTY_MARK, 1]);
        let mut dec = FecDecoder::new(cfg).unwrap();
        // Empty 2 says 1..4 are empty: with one parity, four shards.
        assert_eq!(
            run(&mut dec, &[w[2].clone(), w[4].clone()]),
            [vec![7u8; 40]]
        );
        assert_eq!(dec.stats().inferred_empty, 2);
        assert_eq!(dec.stats().recovered, 1);
    }

    #[test]
    fn unmarked_empty_packets_infer_only_the_positions_after_them() {
        // A group closed after one datagram by an encoder that sent zeros
        // after the size field (before EMPTY_MARK).
        let cfg = FecConfig::balanced();
        let mut shards: Vec<Vec<u8>> = vec![vec![0; 42]; 6];
        shards[0][..2].copy_from_slice(&42u16.to_le_bytes());
        shards[0][2..].fill(7);
        for s in &mut shards[1..4] {
            s[0] = 2;
        }
        ReedSolomon::new(4, 2).unwrap().encode(&mut shards).unwrap();
        let packet = |i: usize| {
            let kind: u16 = if i < 4 { 0xF1 } else { 0xF2 };
            let mut p = (i as u32).to_le_bytes().to_vec();
            p.extend_from_slice(&kind.to_le_bytes());
            p.extend_from_slice(if (1..4).contains(&i) {
                &shards[i][..18]
            } else {
                &shards[i]
            });
            p
        };
        let mut dec = FecDecoder::new(cfg).unwrap();
        // Empty 2 infers 3 only; 1 could have been data: three shards.
        assert!(run(&mut dec, &[packet(2), packet(4)]).is_empty());
        assert_eq!(dec.stats().inferred_empty, 1);
        assert_eq!(run(&mut dec, &[packet(5)]), [vec![7u8; 40]]);
    }

    #[test]
    fn data_at_a_position_inferred_empty_is_still_delivered() {
        // Not something our encoder or kcp-go sends: an empty data shard
        // followed by real data in the same group.
        let cfg = FecConfig::balanced();
        let mut dec = FecDecoder::new(cfg).unwrap();
        let w = closed_early(cfg);
        dec.decode(0, &w[1], |_| panic!("empty delivered")).unwrap();
        let mut odd = w[0].clone();
        odd[0] = 2; // seqid 2: a position taken as empty
        let mut got = Vec::new();
        dec.decode(0, &odd, |d| got.push(d.to_vec())).unwrap();
        assert_eq!(got, [vec![7u8; 40]]);
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
