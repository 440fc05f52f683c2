//! The sending side: frames KCP datagrams and adds parity after each group.

use reed_solomon_erasure::galois_8::ReedSolomon;

use super::config::{FecConfig, FecError};
use super::framing::{
    seqid_wrap, FecHeader, ShardKind, EMPTY_DATA_LEN, EMPTY_MARK, FEC_OVERHEAD, HEADER_LEN,
    SIZE_LEN,
};

/// Counters of a [`FecEncoder`] since it was built.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FecEncoderStats {
    /// Data packets carrying a KCP datagram.
    pub data_packets: u64,
    /// Parity packets.
    pub parity_packets: u64,
    /// Empty data packets sent to close a group early.
    pub empty_packets: u64,
    /// Groups closed early by [`FecEncoder::flush_group`] or
    /// [`FecEncoder::poll`].
    pub flushed_groups: u64,
}

/// Frames outgoing KCP datagrams as kcp-go FEC packets and emits each
/// group's parity right after its last data packet.
///
/// Sans-IO like [`Kcp`](crate::Kcp): packets go to the `emit` closure the
/// caller passes, which typically writes them to a socket. Data packets are
/// emitted at once, never held back. All buffers are allocated by
/// [`FecEncoder::new`]; encoding allocates nothing (for up to 32 parity
/// shards, the limit of `reed-solomon-erasure`'s inline row list).
///
/// ```
/// use kcp_rs::fec::{FecConfig, FecEncoder};
///
/// let mut enc = FecEncoder::new(FecConfig::low_latency())?; // 2 + 1
/// let mut sent: Vec<Vec<u8>> = Vec::new();
/// enc.encode(b"first KCP datagram", |p| sent.push(p.to_vec()))?;
/// assert_eq!(sent.len(), 1); // data goes out at once
/// enc.encode(b"second", |p| sent.push(p.to_vec()))?;
/// assert_eq!(sent.len(), 3); // second data packet, then the parity
/// assert_eq!(&sent[0][..8], &[0, 0, 0, 0, 0xF1, 0, 20, 0]);
/// # Ok::<(), kcp_rs::fec::FecError>(())
/// ```
pub struct FecEncoder {
    cfg: FecConfig,
    codec: ReedSolomon,
    /// `k + m` packet buffers with room for `max_packet` bytes: header at
    /// 0..6, shard after it, so packets are emitted without another copy.
    bufs: Vec<PacketBuf>,
    /// Data shards in the open group.
    count: usize,
    /// Longest shard of the open group.
    longest: usize,
    next: u32,
    wrap: u32,
    /// When [`FecEncoder::poll`] first saw the open group.
    opened_at: Option<u32>,
    stats: FecEncoderStats,
}

impl FecEncoder {
    /// An encoder whose first packet has seqid 0, as kcp-go's.
    ///
    /// # Errors
    /// [`FecError::InvalidConfig`] when `config` does not validate.
    pub fn new(config: FecConfig) -> Result<Self, FecError> {
        Self::with_first_seqid(config, 0)
    }

    /// An encoder starting at `seqid`, rounded down to a group boundary
    /// (tests use values near the wrap point).
    ///
    /// # Errors
    /// [`FecError::InvalidConfig`] when `config` does not validate.
    pub fn with_first_seqid(config: FecConfig, seqid: u32) -> Result<Self, FecError> {
        config.validate()?;
        let codec = ReedSolomon::new(config.data_shards, config.parity_shards)
            .map_err(|_| FecError::InvalidConfig("shard counts refused by the codec"))?;
        let n = config.group_len();
        let wrap = seqid_wrap(n);
        let start = seqid % wrap;
        Ok(FecEncoder {
            cfg: config,
            codec,
            bufs: (0..n)
                .map(|_| PacketBuf(Vec::with_capacity(config.max_packet)))
                .collect(),
            count: 0,
            longest: 0,
            next: start - start % n as u32,
            wrap,
            opened_at: None,
            stats: FecEncoderStats::default(),
        })
    }

    /// Frames one KCP datagram and emits it; after the group's `k`-th data
    /// packet also emits the `m` parity packets.
    ///
    /// # Errors
    /// [`FecError::PayloadSize`] when `kcp_datagram` is empty or longer
    /// than [`FecConfig::max_kcp_datagram`]; nothing is emitted then.
    pub fn encode(
        &mut self,
        kcp_datagram: &[u8],
        mut emit: impl FnMut(&[u8]),
    ) -> Result<(), FecError> {
        let max = self.cfg.max_kcp_datagram();
        if kcp_datagram.is_empty() || kcp_datagram.len() > max {
            return Err(FecError::PayloadSize {
                len: kcp_datagram.len(),
                max,
            });
        }
        let shard_len = SIZE_LEN + kcp_datagram.len();
        let seqid = self.take_seqid();
        let buf = self.data_buf(seqid, shard_len as u16);
        buf.extend_from_slice(kcp_datagram);
        emit(buf);
        self.stats.data_packets += 1;
        self.push_data(shard_len, &mut emit);
        Ok(())
    }

    /// Closes the open group now: emits empty data packets for its missing
    /// data shards, then its parity, so that a loss among the packets
    /// already sent is recovered without waiting for more traffic. Returns
    /// the number of empty packets (0 when no group is open).
    ///
    /// An empty data packet is 24 bytes: header, size field 2,
    /// [`EMPTY_MARK`] and the position of the
    /// group's first empty packet, then zeros up to the length of a KCP
    /// header. Every empty packet of a group is the same shard, so a decoder
    /// that receives any one of them holds them all. kcp-go drops datagrams
    /// shorter than 24 bytes before decoding FEC, and hands the 16 bytes
    /// after the size field to its `kcp.Input`, which refuses them as too
    /// short without other effect.
    ///
    /// ```
    /// use kcp_rs::fec::{FecConfig, FecEncoder};
    ///
    /// let mut enc = FecEncoder::new(FecConfig::balanced())?; // 4 + 2
    /// let mut sent = Vec::new();
    /// enc.encode(&[1; 40], |p| sent.push(p.len()))?;
    /// assert_eq!(enc.flush_group(|p| sent.push(p.len())), 3);
    /// assert_eq!(sent, [48, 24, 24, 24, 48, 48]);
    /// # Ok::<(), kcp_rs::fec::FecError>(())
    /// ```
    pub fn flush_group(&mut self, mut emit: impl FnMut(&[u8])) -> usize {
        if self.count == 0 {
            return 0;
        }
        let missing = self.cfg.data_shards - self.count;
        // k <= 255: the position fits a byte.
        let first_empty = self.count as u8;
        self.stats.flushed_groups += 1;
        for _ in 0..missing {
            let seqid = self.take_seqid();
            let buf = self.data_buf(seqid, SIZE_LEN as u16);
            buf.extend_from_slice(&[EMPTY_MARK, first_empty]);
            buf.resize(EMPTY_DATA_LEN, 0);
            emit(buf);
            self.stats.empty_packets += 1;
            self.push_data(EMPTY_DATA_LEN - HEADER_LEN, &mut emit);
        }
        missing
    }

    /// Closes the open group once it has waited `rto_ms / group_wait_divisor`
    /// (at least 1 ms), so that on a quiet link a lost packet is recovered
    /// sooner than KCP would retransmit it. Returns when to call again:
    /// `Some(deadline)` while a group is open, `None` otherwise. With
    /// [`FecConfig::early_close`] off it does nothing and returns `None`.
    ///
    /// Call it after each [`Kcp::update`](crate::Kcp::update) with the same
    /// clock; a group's wait counts from the first `poll` that finds it open.
    ///
    /// ```
    /// use kcp_rs::fec::{FecConfig, FecEncoder};
    ///
    /// let mut enc = FecEncoder::new(FecConfig::balanced())?;
    /// let mut sent = 0;
    /// enc.encode(&[1; 40], |_| sent += 1)?;
    /// assert_eq!(enc.poll(1000, 200, |_| sent += 1), Some(1050)); // RTO / 4
    /// assert_eq!(enc.poll(1049, 200, |_| sent += 1), Some(1050));
    /// assert_eq!(enc.poll(1050, 200, |_| sent += 1), None);
    /// assert_eq!(sent, 1 + 3 + 2);
    /// # Ok::<(), kcp_rs::fec::FecError>(())
    /// ```
    pub fn poll(&mut self, now_ms: u32, rto_ms: u32, emit: impl FnMut(&[u8])) -> Option<u32> {
        if self.count == 0 || !self.cfg.early_close {
            self.opened_at = None;
            return None;
        }
        let opened = *self.opened_at.get_or_insert(now_ms);
        let wait = (rto_ms / self.cfg.group_wait_divisor).max(1);
        let deadline = opened.wrapping_add(wait);
        if (now_ms.wrapping_sub(deadline) as i32) < 0 {
            return Some(deadline);
        }
        self.flush_group(emit);
        None
    }

    /// Data shards in the open group (0 right after a group closed).
    pub fn pending(&self) -> usize {
        self.count
    }

    /// The seqid the next packet will carry.
    pub fn next_seqid(&self) -> u32 {
        self.next
    }

    /// The configuration.
    pub fn config(&self) -> &FecConfig {
        &self.cfg
    }

    /// Counters since construction.
    pub fn stats(&self) -> &FecEncoderStats {
        &self.stats
    }

    fn take_seqid(&mut self) -> u32 {
        let s = self.next;
        // Only the last parity packet of a group can reach `wrap`.
        self.next = (s + 1) % self.wrap;
        s
    }

    /// The next data packet's buffer holding its header and size field.
    fn data_buf(&mut self, seqid: u32, size: u16) -> &mut Vec<u8> {
        let buf = &mut self.bufs[self.count].0;
        buf.clear();
        buf.resize(HEADER_LEN, 0);
        FecHeader {
            seqid,
            kind: ShardKind::Data,
        }
        .emit(buf);
        buf.extend_from_slice(&size.to_le_bytes());
        debug_assert_eq!(buf.len(), FEC_OVERHEAD);
        buf
    }

    /// Records a data shard already written to `bufs`; closes the group on
    /// the `k`-th.
    fn push_data(&mut self, shard_len: usize, emit: &mut impl FnMut(&[u8])) {
        self.longest = self.longest.max(shard_len);
        self.count += 1;
        if self.count == self.cfg.data_shards {
            self.emit_parity(emit);
        }
    }

    /// Pads the data shards with zeros to the longest, computes and emits
    /// the parity packets, and starts a new group.
    fn emit_parity(&mut self, emit: &mut impl FnMut(&[u8])) {
        let (k, m) = (self.cfg.data_shards, self.cfg.parity_shards);
        // Resizing within the reserved capacity pads data shards with zeros
        // and sizes the parity shards, without allocating.
        for buf in &mut self.bufs {
            buf.0.resize(HEADER_LEN + self.longest, 0);
        }
        let (data, parity) = self.bufs.split_at_mut(k);
        let coded = self.codec.encode_sep(data, parity).is_ok();
        self.count = 0;
        self.longest = 0;
        self.opened_at = None;
        if !coded {
            // Equal lengths and counts by construction; like kcp-go, a codec
            // failure would only cost this group its parity.
            self.next = (self.next + m as u32) % self.wrap;
            return;
        }
        for j in 0..m {
            let seqid = self.take_seqid();
            let buf = &mut self.bufs[k + j].0;
            FecHeader {
                seqid,
                kind: ShardKind::Parity,
            }
            .emit(buf);
            emit(buf);
            self.stats.parity_packets += 1;
        }
    }
}

/// A packet buffer whose shard (everything after the header) is what the
/// codec sees, so parity is computed in place.
struct PacketBuf(Vec<u8>);

impl AsRef<[u8]> for PacketBuf {
    fn as_ref(&self) -> &[u8] {
        &self.0[HEADER_LEN..]
    }
}

impl AsMut<[u8]> for PacketBuf {
    fn as_mut(&mut self) -> &mut [u8] {
        &mut self.0[HEADER_LEN..]
    }
}

impl core::fmt::Debug for FecEncoder {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FecEncoder")
            .field("config", &self.cfg)
            .field("next_seqid", &self.next)
            .field("pending", &self.count)
            .field("stats", &self.stats)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fec::framing::{Packet, TYPE_PARITY};

    fn collect(enc: &mut FecEncoder, kcp: &[u8], out: &mut Vec<Vec<u8>>) {
        enc.encode(kcp, |p| out.push(p.to_vec())).unwrap();
    }

    #[test]
    fn golden_group_of_two_plus_one() {
        let mut enc = FecEncoder::new(FecConfig::low_latency()).unwrap();
        let mut out = Vec::new();
        collect(&mut enc, &[0x10, 0x20, 0x30], &mut out);
        collect(&mut enc, &[0x01], &mut out);
        assert_eq!(
            out,
            [
                vec![0, 0, 0, 0, 0xF1, 0, 5, 0, 0x10, 0x20, 0x30],
                vec![1, 0, 0, 0, 0xF1, 0, 3, 0, 0x01],
                // Parity over [05 00 10 20 30] and [03 00 01 00 00] (the
                // second shard zero-padded), as klauspost/reedsolomon, the
                // codec under kcp-go, computes it for 2+1.
                vec![2, 0, 0, 0, 0xF2, 0, 0x09, 0x00, 0x32, 0x60, 0x50],
            ]
        );
    }

    #[test]
    fn parity_follows_each_kth_data_packet() {
        let cfg = FecConfig::high_protection();
        let mut enc = FecEncoder::new(cfg).unwrap();
        let mut out = Vec::new();
        for i in 0..3 * cfg.data_shards {
            collect(&mut enc, &vec![i as u8; 30 + i], &mut out);
        }
        assert_eq!(out.len(), 3 * cfg.group_len());
        for (i, p) in out.iter().enumerate() {
            let p = Packet::new_checked(&p[..]).unwrap();
            assert_eq!(p.header().seqid, i as u32);
            let is_parity = i % cfg.group_len() >= cfg.data_shards;
            assert_eq!(p.header().kind == ShardKind::Parity, is_parity);
        }
        // Parity packets are as long as the group's longest data packet.
        let group = &out[cfg.group_len()..2 * cfg.group_len()];
        let longest = group[..cfg.data_shards].iter().map(Vec::len).max();
        for p in &group[cfg.data_shards..] {
            assert_eq!(Some(p.len()), longest);
            assert_eq!(u16::from_le_bytes([p[4], p[5]]), TYPE_PARITY);
        }
    }

    #[test]
    fn stale_bytes_of_a_previous_group_do_not_leak_into_parity() {
        let cfg = FecConfig::low_latency();
        let mut a = FecEncoder::new(cfg).unwrap();
        let mut b = FecEncoder::new(cfg).unwrap();
        let mut out_a = Vec::new();
        let mut out_b = Vec::new();
        // `a` first sends a group of long packets, `b` a group of short
        // ones; then both send the same short group.
        collect(&mut a, &[0xAA; 100], &mut out_a);
        collect(&mut a, &[0xAA; 100], &mut out_a);
        collect(&mut b, &[1; 3], &mut out_b);
        collect(&mut b, &[1; 3], &mut out_b);
        for enc_out in [(&mut a, &mut out_a), (&mut b, &mut out_b)] {
            enc_out.1.clear();
            collect(enc_out.0, &[7; 10], enc_out.1);
            collect(enc_out.0, &[8; 4], enc_out.1);
        }
        assert_eq!(out_a, out_b);
    }

    #[test]
    fn refuses_empty_and_oversized_datagrams() {
        let mut enc = FecEncoder::new(FecConfig::balanced()).unwrap();
        let mut n = 0;
        assert!(matches!(
            enc.encode(&[], |_| n += 1),
            Err(FecError::PayloadSize { len: 0, .. })
        ));
        assert!(enc.encode(&[0; 1492], |_| n += 1).is_ok());
        assert_eq!(
            enc.encode(&[0; 1493], |_| n += 1),
            Err(FecError::PayloadSize {
                len: 1493,
                max: 1492
            })
        );
        assert_eq!(n, 1);
        assert_eq!(enc.next_seqid(), 1);
    }

    #[test]
    fn seqid_wraps_at_a_group_boundary() {
        let cfg = FecConfig::new(10, 3).unwrap();
        let wrap = seqid_wrap(13);
        let mut enc = FecEncoder::with_first_seqid(cfg, wrap - 13 + 5).unwrap();
        assert_eq!(enc.next_seqid(), wrap - 13);
        let mut seqids = Vec::new();
        for _ in 0..20 {
            enc.encode(&[1; 30], |p| {
                seqids.push(Packet::new_checked(p).unwrap().header().seqid)
            })
            .unwrap();
        }
        let expected: Vec<u32> = (wrap - 13..wrap).chain(0..13).collect();
        assert_eq!(seqids, expected);
    }

    #[test]
    fn poll_closes_a_waiting_group_only_after_the_bound() {
        let mut enc = FecEncoder::new(FecConfig::balanced()).unwrap();
        let mut lens = Vec::new();
        assert_eq!(enc.poll(0, 100, |p| lens.push(p.len())), None);
        enc.encode(&[9; 30], |p| lens.push(p.len())).unwrap();
        assert_eq!(enc.poll(10, 100, |p| lens.push(p.len())), Some(35));
        assert_eq!(enc.poll(34, 100, |p| lens.push(p.len())), Some(35));
        assert_eq!(lens, [38]);
        assert_eq!(enc.poll(40, 100, |p| lens.push(p.len())), None);
        assert_eq!(lens, [38, 24, 24, 24, 38, 38]);
        assert_eq!(enc.pending(), 0);
        assert_eq!(enc.stats().empty_packets, 3);
        assert_eq!(enc.stats().flushed_groups, 1);
        assert_eq!(enc.flush_group(|_| unreachable!()), 0);
    }

    #[test]
    fn golden_empty_packets() {
        let mut enc = FecEncoder::new(FecConfig::balanced()).unwrap();
        let mut out = Vec::new();
        collect(&mut enc, &[0xAB; 30], &mut out);
        collect(&mut enc, &[0xCD; 30], &mut out);
        enc.flush_group(|p| out.push(p.to_vec()));
        let mut empty = vec![0u8; 24];
        empty[4..10].copy_from_slice(&[0xF1, 0, 2, 0, EMPTY_MARK, 2]);
        for (seqid, p) in [(2u8, &out[2]), (3, &out[3])] {
            empty[0] = seqid;
            assert_eq!(p, &empty);
        }
    }

    #[test]
    fn poll_leaves_groups_open_without_early_close() {
        let cfg = FecConfig {
            early_close: false,
            ..FecConfig::balanced()
        };
        let mut enc = FecEncoder::new(cfg).unwrap();
        let mut sent = 0;
        enc.encode(&[9; 30], |_| sent += 1).unwrap();
        assert_eq!(enc.poll(0, 100, |_| sent += 1), None);
        assert_eq!(enc.poll(1_000_000, 100, |_| sent += 1), None);
        assert_eq!((sent, enc.pending()), (1, 1));
        // flush_group still closes it on request.
        assert_eq!(enc.flush_group(|_| sent += 1), 3);
        assert_eq!(sent, 6);
    }
}
