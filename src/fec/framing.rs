//! kcp-go's FEC packet: a view over bytes and the parsed header.
//!
//! All fields little-endian:
//!
//! ```text
//! 0        4      6      8
//! +--------+------+------+-------------------------------+
//! | seqid  | type | size |  KCP datagram (size - 2 bytes) |   data, type 0xF1
//! +--------+------+------+-------------------------------+
//! | seqid  | type |  parity bytes (as long as the group's  |   parity, type 0xF2
//! +--------+------+  longest `size ‖ KCP bytes`)            |
//! ```
//!
//! The *shard* of a packet is everything after the 6-byte header. For data
//! it is `size ‖ KCP bytes` (`size` counts its own two bytes); a group's
//! parity is Reed-Solomon over its data shards zero-padded to the longest
//! one, so a parity packet has no size field of its own: its bytes 6..8 are
//! parity over the data shards' size fields.
//!
//! A data packet may carry bytes after its `size`: the encoder pads the
//! empty data shards that close a group early to 24 bytes, because kcp-go
//! drops any datagram shorter than a KCP header before FEC sees it. Those
//! bytes are part of the shard (they are zeros, the same as the padding the
//! parity was computed over) but not of the KCP datagram.
//!
//! [`Packet`] checks the length once, then reads fields without panicking;
//! [`FecHeader`] is the parsed `Copy` value with `parse` and `emit`.

use super::config::FecError;

/// Bytes of `seqid` and `type`.
pub const HEADER_LEN: usize = 6;

/// Bytes of a data packet's size field.
pub const SIZE_LEN: usize = 2;

/// Bytes FEC adds in front of a KCP datagram: header and size field.
/// kcp-go reserves them from the KCP MTU (`ReserveBytes(8)`).
pub const FEC_OVERHEAD: usize = HEADER_LEN + SIZE_LEN;

/// Type field of a data packet.
pub const TYPE_DATA: u16 = 0xF1;

/// Type field of a parity packet.
pub const TYPE_PARITY: u16 = 0xF2;

/// Length of the empty data packets that close a group early: kcp-go drops
/// datagrams shorter than a KCP header (24 bytes) before decoding FEC.
pub const EMPTY_DATA_LEN: usize = crate::constants::OVERHEAD;

/// First byte after the size field of an empty data packet from this crate:
/// the next byte is the shard position of its group's first empty packet.
/// Older versions sent zeros there. The bytes are part of the shard, so
/// parity covers them; kcp-go hands the 16 bytes after the size field to
/// its `kcp.Input`, which refuses them as shorter than a KCP header either
/// way.
pub const EMPTY_MARK: u8 = 0xE5;

/// Whether a datagram looks like a FEC packet, as kcp-go decides it: the
/// `u16` at offset 4 is 0xF1 or 0xF2. A plain KCP datagram has `cmd` (81–84)
/// and `frg` there, which never read as those values.
///
/// ```
/// use kcp_rs::fec::framing::is_fec_packet;
/// assert!(is_fec_packet(&[0, 0, 0, 0, 0xF1, 0x00, 2, 0]));
/// assert!(!is_fec_packet(&[1, 0, 0, 0, 81, 0, 32, 0]));
/// ```
pub fn is_fec_packet(datagram: &[u8]) -> bool {
    matches!(datagram.get(4..6), Some([t, 0]) if u16::from(*t) == TYPE_DATA || u16::from(*t) == TYPE_PARITY)
}

/// The two kinds of FEC packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ShardKind {
    /// A KCP datagram with its size field (type 0xF1).
    Data,
    /// Reed-Solomon parity over the group's data shards (type 0xF2).
    Parity,
}

impl ShardKind {
    /// The wire value of the type field.
    pub const fn to_wire(self) -> u16 {
        match self {
            ShardKind::Data => TYPE_DATA,
            ShardKind::Parity => TYPE_PARITY,
        }
    }

    /// Reads a type field.
    ///
    /// # Errors
    /// [`FecError::UnknownType`] for anything but 0xF1 and 0xF2.
    pub const fn from_wire(raw: u16) -> Result<Self, FecError> {
        match raw {
            TYPE_DATA => Ok(ShardKind::Data),
            TYPE_PARITY => Ok(ShardKind::Parity),
            other => Err(FecError::UnknownType(other)),
        }
    }
}

/// The parsed 6-byte header of a FEC packet.
///
/// ```
/// use kcp_rs::fec::framing::{FecHeader, ShardKind};
///
/// let h = FecHeader { seqid: 0x0102_0304, kind: ShardKind::Parity };
/// let mut buf = [0u8; 6];
/// h.emit(&mut buf);
/// assert_eq!(buf, [0x04, 0x03, 0x02, 0x01, 0xF2, 0x00]);
/// assert_eq!(FecHeader::parse(&buf), Ok(h));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FecHeader {
    /// Position in the sender's packet sequence; the shard index within its
    /// group is `seqid % (k + m)`.
    pub seqid: u32,
    /// Data or parity.
    pub kind: ShardKind,
}

impl FecHeader {
    /// Reads the header from the first 6 bytes of `buf`.
    ///
    /// # Errors
    /// [`FecError::Truncated`] when `buf` is shorter than 6 bytes,
    /// [`FecError::UnknownType`] for an unknown type field.
    pub fn parse(buf: &[u8]) -> Result<Self, FecError> {
        let h: &[u8; HEADER_LEN] = buf
            .get(..HEADER_LEN)
            .and_then(|s| s.try_into().ok())
            .ok_or(FecError::Truncated { len: buf.len() })?;
        Ok(FecHeader {
            seqid: u32::from_le_bytes([h[0], h[1], h[2], h[3]]),
            kind: ShardKind::from_wire(u16::from_le_bytes([h[4], h[5]]))?,
        })
    }

    /// Writes the header into the first 6 bytes of `buf`.
    ///
    /// # Panics
    /// When `buf` is shorter than [`HEADER_LEN`]; callers size their
    /// buffers from the configuration, so this is a bug, not an input error.
    pub fn emit(&self, buf: &mut [u8]) {
        buf[..4].copy_from_slice(&self.seqid.to_le_bytes());
        buf[4..HEADER_LEN].copy_from_slice(&self.kind.to_wire().to_le_bytes());
    }
}

/// A FEC packet checked for consistency, borrowing its bytes.
///
/// ```
/// use kcp_rs::fec::framing::{Packet, ShardKind};
///
/// let bytes = [7, 0, 0, 0, 0xF1, 0x00, 5, 0, b'k', b'c', b'p'];
/// let p = Packet::new_checked(&bytes[..])?;
/// assert_eq!(p.header().seqid, 7);
/// assert_eq!(p.header().kind, ShardKind::Data);
/// assert_eq!(p.kcp_bytes(), b"kcp");
/// assert_eq!(p.shard(), &bytes[6..]);
/// # Ok::<(), kcp_rs::fec::FecError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
    header: FecHeader,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Parses and checks `buffer`: the header is whole, the type is known, a
    /// data packet's size field is at least 2 and fits the packet, and a
    /// parity packet carries at least two bytes of parity.
    ///
    /// # Errors
    /// [`FecError::Truncated`], [`FecError::UnknownType`] or
    /// [`FecError::BadSize`]; never panics.
    pub fn new_checked(buffer: T) -> Result<Self, FecError> {
        let bytes = buffer.as_ref();
        let header = FecHeader::parse(bytes)?;
        let shard_len = bytes.len() - HEADER_LEN;
        if shard_len < SIZE_LEN {
            return Err(FecError::Truncated { len: bytes.len() });
        }
        if header.kind == ShardKind::Data {
            let size = u16::from_le_bytes([bytes[HEADER_LEN], bytes[HEADER_LEN + 1]]);
            if (size as usize) < SIZE_LEN || size as usize > shard_len {
                return Err(FecError::BadSize {
                    size,
                    available: shard_len,
                });
            }
        }
        Ok(Packet { buffer, header })
    }

    /// The parsed header.
    pub fn header(&self) -> FecHeader {
        self.header
    }

    /// Everything after the header: what Reed-Solomon codes.
    pub fn shard(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }

    /// The KCP datagram of a data packet (empty for a parity packet or an
    /// empty data shard).
    pub fn kcp_bytes(&self) -> &[u8] {
        match self.header.kind {
            ShardKind::Data => kcp_bytes_of_shard(self.shard()).unwrap_or(&[]),
            ShardKind::Parity => &[],
        }
    }

    /// The whole packet.
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// The KCP datagram inside a data shard (`size ‖ bytes ‖ padding`), or
/// `None` when the size field is below 2 or runs past the shard.
pub(crate) fn kcp_bytes_of_shard(shard: &[u8]) -> Option<&[u8]> {
    let size = match shard {
        [a, b, ..] => u16::from_le_bytes([*a, *b]) as usize,
        _ => return None,
    };
    if size < SIZE_LEN {
        return None;
    }
    shard.get(SIZE_LEN..size)
}

/// The seqid at which the sender wraps to 0: the largest multiple of
/// `group_len` not above `u32::MAX`, so every group has all its shards
/// (kcp-go's `paws`).
pub(crate) fn seqid_wrap(group_len: usize) -> u32 {
    let n = group_len as u32;
    u32::MAX / n * n
}

/// Signed distance `a - b` over the half range, as kcp-go's `_itimediff`.
pub(crate) fn seqid_diff(a: u32, b: u32) -> i32 {
    a.wrapping_sub(b) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// seqid 0x01020304, data, size 5, KCP bytes "abc".
    const GOLDEN_DATA: [u8; 11] = [
        0x04, 0x03, 0x02, 0x01, // seqid
        0xF1, 0x00, // type data
        0x05, 0x00, // size = 2 + 3
        b'a', b'b', b'c',
    ];

    #[test]
    fn parses_golden_data_packet() {
        let p = Packet::new_checked(&GOLDEN_DATA[..]).unwrap();
        assert_eq!(
            p.header(),
            FecHeader {
                seqid: 0x0102_0304,
                kind: ShardKind::Data
            }
        );
        assert_eq!(p.kcp_bytes(), b"abc");
        assert_eq!(p.shard(), &GOLDEN_DATA[6..]);
    }

    #[test]
    fn emits_golden_header() {
        let mut buf = [0u8; 6];
        FecHeader {
            seqid: 0x0102_0304,
            kind: ShardKind::Data,
        }
        .emit(&mut buf);
        assert_eq!(buf, GOLDEN_DATA[..6]);
    }

    #[test]
    fn padded_data_packet_exposes_only_its_size() {
        let mut p = [0u8; EMPTY_DATA_LEN];
        p[4] = 0xF1;
        p[6] = 2;
        let p = Packet::new_checked(&p[..]).unwrap();
        assert_eq!(p.kcp_bytes(), b"");
        assert_eq!(p.shard().len(), EMPTY_DATA_LEN - HEADER_LEN);
    }

    #[test]
    fn rejects_malformed() {
        assert_eq!(
            Packet::new_checked(&GOLDEN_DATA[..5]).unwrap_err(),
            FecError::Truncated { len: 5 }
        );
        assert_eq!(
            Packet::new_checked(&GOLDEN_DATA[..7]).unwrap_err(),
            FecError::Truncated { len: 7 }
        );
        let mut bad = GOLDEN_DATA;
        bad[4] = 0xF3;
        assert_eq!(
            Packet::new_checked(&bad[..]).unwrap_err(),
            FecError::UnknownType(0xF3)
        );
        bad[4] = 0xF1;
        bad[6] = 6; // one past the end
        assert!(matches!(
            Packet::new_checked(&bad[..]),
            Err(FecError::BadSize { size: 6, .. })
        ));
        bad[6] = 1; // below its own length
        assert!(matches!(
            Packet::new_checked(&bad[..]),
            Err(FecError::BadSize { size: 1, .. })
        ));
    }

    #[test]
    fn detects_fec_vs_plain_kcp() {
        assert!(is_fec_packet(&GOLDEN_DATA));
        assert!(!is_fec_packet(&GOLDEN_DATA[..5]));
        for cmd in 81..=84u8 {
            for frg in [0u8, 0xF1, 0xF2, 255] {
                assert!(!is_fec_packet(&[0, 0, 0, 0, cmd, frg]));
            }
        }
    }

    #[test]
    fn wrap_point_is_a_multiple_of_the_group() {
        for n in [3usize, 6, 12, 13, 256] {
            let w = seqid_wrap(n);
            assert_eq!(w as u64 % n as u64, 0);
            assert!(u64::from(w) + n as u64 > u64::from(u32::MAX));
        }
        // kcp-go: 0xffffffff / 13 * 13
        assert_eq!(seqid_wrap(13), 0xffff_fff7);
        assert_eq!(seqid_diff(0, seqid_wrap(13) - 13), 22);
    }
}
