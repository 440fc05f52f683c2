//! The 24-byte KCP segment header: parse and emit.
//!
//! Layout, all little-endian, identical to ikcp:
//!
//! ```text
//! 0        4     5     6        8        12       16       20       24
//! +--------+-----+-----+--------+--------+--------+--------+--------+
//! |  conv  | cmd | frg |  wnd   |   ts   |   sn   |  una   |  len   |
//! +--------+-----+-----+--------+--------+--------+--------+--------+
//! ```
//!
//! A datagram carries one or more segments back to back, each header followed
//! by `len` bytes of data. [`Header::parse`] never panics: it checks the length
//! first. [`Segments`] walks a datagram and stops with an error at the first
//! segment that does not fit.

use crate::constants::{CMD_ACK, CMD_PUSH, CMD_WASK, CMD_WINS, OVERHEAD};
use crate::error::{KcpError, KcpResult};
use crate::sequence::{Seq, Timestamp};

/// A parsed segment header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Conversation id: both ends must agree on it.
    pub conv: u32,
    /// Command: [`CMD_PUSH`], [`CMD_ACK`], [`CMD_WASK`] or [`CMD_WINS`].
    pub cmd: u8,
    /// Fragments that follow this one in the same message (message mode).
    pub frg: u8,
    /// The sender's free receive window, in segments.
    pub wnd: u16,
    /// Send time (PUSH) or the echoed send time (ACK).
    pub ts: Timestamp,
    /// Sequence number (PUSH) or the acknowledged one (ACK).
    pub sn: Seq,
    /// Everything before this has been received by the sender.
    pub una: Seq,
    /// Data bytes that follow the header.
    pub len: u32,
}

impl Header {
    /// Header size on the wire.
    pub const LEN: usize = OVERHEAD;

    /// Reads a header from the first 24 bytes of `buf`.
    ///
    /// # Errors
    /// [`KcpError::InvalidPacket`] when `buf` is shorter than a header.
    #[inline]
    pub fn parse(buf: &[u8]) -> KcpResult<Header> {
        let b: &[u8; OVERHEAD] = buf
            .get(..OVERHEAD)
            .and_then(|s| s.try_into().ok())
            .ok_or(KcpError::InvalidPacket)?;
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        Ok(Header {
            conv: u32_at(0),
            cmd: b[4],
            frg: b[5],
            wnd: u16::from_le_bytes([b[6], b[7]]),
            ts: Timestamp::new(u32_at(8)),
            sn: Seq::new(u32_at(12)),
            una: Seq::new(u32_at(16)),
            len: u32_at(20),
        })
    }

    /// Writes the header into the first 24 bytes of `buf`.
    ///
    /// # Panics
    /// When `buf` is shorter than [`Header::LEN`]; callers size their buffers
    /// from the MTU, so this is a bug, not an input error.
    #[inline]
    pub fn emit(&self, buf: &mut [u8]) {
        let b: &mut [u8; OVERHEAD] = (&mut buf[..OVERHEAD]).try_into().unwrap();
        b[0..4].copy_from_slice(&self.conv.to_le_bytes());
        b[4] = self.cmd;
        b[5] = self.frg;
        b[6..8].copy_from_slice(&self.wnd.to_le_bytes());
        b[8..12].copy_from_slice(&self.ts.get().to_le_bytes());
        b[12..16].copy_from_slice(&self.sn.get().to_le_bytes());
        b[16..20].copy_from_slice(&self.una.get().to_le_bytes());
        b[20..24].copy_from_slice(&self.len.to_le_bytes());
    }

    /// Whether `cmd` is one of the four commands KCP defines.
    #[inline]
    pub fn has_known_cmd(&self) -> bool {
        matches!(self.cmd, CMD_PUSH | CMD_ACK | CMD_WASK | CMD_WINS)
    }
}

/// Reads the conversation id of a datagram without parsing the rest.
///
/// Useful to demultiplex datagrams before handing them to a session.
#[inline]
pub fn peek_conv(datagram: &[u8]) -> Option<u32> {
    let b = datagram.get(..4)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Iterator over the segments of a datagram: `(header, data)` pairs.
///
/// Yields `Err(InvalidPacket)` once, then stops, when a header is truncated,
/// its `len` runs past the end, or its command is unknown.
#[derive(Clone, Debug)]
pub struct Segments<'a> {
    rest: &'a [u8],
    failed: bool,
}

impl<'a> Segments<'a> {
    /// Walks `datagram`.
    pub fn new(datagram: &'a [u8]) -> Self {
        Segments {
            rest: datagram,
            failed: false,
        }
    }
}

impl<'a> Iterator for Segments<'a> {
    type Item = KcpResult<(Header, &'a [u8])>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        let parsed = Header::parse(self.rest).and_then(|h| {
            let body = &self.rest[OVERHEAD..];
            let len = usize::try_from(h.len).map_err(|_| KcpError::InvalidPacket)?;
            if len > body.len() || !h.has_known_cmd() {
                return Err(KcpError::InvalidPacket);
            }
            Ok((h, len))
        });
        match parsed {
            Ok((h, len)) => {
                let body = &self.rest[OVERHEAD..];
                let (data, rest) = body.split_at(len);
                self.rest = rest;
                Some(Ok((h, data)))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// Splits the first segment off `datagram`: its header, its data and what
/// follows, or `None` when the header is truncated or `len` runs past the
/// end. Unlike [`Segments`] it does not check the command; it is meant for
/// a datagram already checked whole.
#[inline]
pub(crate) fn split_segment(datagram: &[u8]) -> Option<(Header, &[u8], &[u8])> {
    let h = Header::parse(datagram).ok()?;
    let after = &datagram[OVERHEAD..];
    if h.len as usize > after.len() {
        return None;
    }
    let (body, rest) = after.split_at(h.len as usize);
    Some((h, body, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOLDEN: [u8; 24] = [
        0x78, 0x56, 0x34, 0x12, // conv
        81,   // cmd
        2,    // frg
        0x80, 0x00, // wnd 128
        0x10, 0x27, 0x00, 0x00, // ts 10000
        0xff, 0xff, 0xff, 0xff, // sn u32::MAX
        0x01, 0x00, 0x00, 0x00, // una 1
        0x05, 0x00, 0x00, 0x00, // len 5
    ];

    fn golden_header() -> Header {
        Header {
            conv: 0x1234_5678,
            cmd: CMD_PUSH,
            frg: 2,
            wnd: 128,
            ts: Timestamp::new(10_000),
            sn: Seq::new(u32::MAX),
            una: Seq::new(1),
            len: 5,
        }
    }

    #[test]
    fn emits_exact_bytes() {
        let mut buf = [0u8; 24];
        golden_header().emit(&mut buf);
        assert_eq!(buf, GOLDEN);
    }

    #[test]
    fn parses_exact_bytes() {
        assert_eq!(Header::parse(&GOLDEN).unwrap(), golden_header());
    }

    #[test]
    fn round_trips() {
        let mut h = golden_header();
        for cmd in [CMD_PUSH, CMD_ACK, CMD_WASK, CMD_WINS] {
            h.cmd = cmd;
            h.una += 77;
            let mut buf = [0u8; 24];
            h.emit(&mut buf);
            assert_eq!(Header::parse(&buf).unwrap(), h);
        }
    }

    #[test]
    fn short_buffers_are_refused() {
        for n in 0..24 {
            assert_eq!(Header::parse(&GOLDEN[..n]), Err(KcpError::InvalidPacket));
        }
    }

    #[test]
    fn segments_walks_a_datagram_and_stops_at_damage() {
        let mut dgram = [0u8; 24 + 5 + 24];
        golden_header().emit(&mut dgram);
        dgram[24..29].copy_from_slice(b"hello");
        let mut ack = golden_header();
        ack.cmd = CMD_ACK;
        ack.len = 0;
        ack.emit(&mut dgram[29..]);
        let segs: Vec<_> = Segments::new(&dgram).collect();
        assert_eq!(segs.len(), 2);
        assert_eq!(segs[0].as_ref().unwrap().1, b"hello");
        assert_eq!(segs[1].as_ref().unwrap().0.cmd, CMD_ACK);

        // Truncate the second header: one error, then the iterator ends.
        let segs: Vec<_> = Segments::new(&dgram[..40]).collect();
        assert_eq!(segs.len(), 2);
        assert!(segs[1].is_err());

        // A len past the end is refused.
        let mut long = golden_header();
        long.len = 6;
        let mut buf = [0u8; 29];
        long.emit(&mut buf);
        assert_eq!(
            Segments::new(&buf).next(),
            Some(Err(KcpError::InvalidPacket))
        );

        // Unknown command.
        let mut bad = golden_header();
        bad.cmd = 80;
        bad.len = 0;
        bad.emit(&mut buf);
        assert_eq!(
            Segments::new(&buf[..24]).next(),
            Some(Err(KcpError::InvalidPacket))
        );
    }

    #[test]
    fn peek_conv_reads_first_four_bytes() {
        assert_eq!(peek_conv(&GOLDEN), Some(0x1234_5678));
        assert_eq!(peek_conv(&GOLDEN[..3]), None);
    }
}
