//! Per-segment bookkeeping kept in the send and receive rings.

use crate::sequence::{Seq, Timestamp};

/// Metadata of one segment. The payload lives in a block of the session's
/// payload pool ([`SendPool`](crate::storage::SendPool) or [`RecvPool`](crate::storage::RecvPool)); this struct stays at 32 bytes so that two
/// fit in a cache line and the flush loop, which reads every in-flight
/// segment, touches little memory. Fields the flush loop reads first come
/// first.
///
/// `repr(C, align(32))` pins that order and keeps a slot from straddling two
/// cache lines (the ring's storage would otherwise be only 4-byte aligned).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C, align(32))]
pub(crate) struct Segment {
    /// When the next retransmission is due (send side).
    pub resendts: Timestamp,
    /// Sequence number.
    pub sn: Seq,
    /// Time of the last transmission (send side) or the sender's `ts`.
    pub ts: Timestamp,
    /// Current retransmission timeout of this segment.
    pub rto: u32,
    /// ACKs seen for later segments since the last (re)send.
    pub fastack: u32,
    /// Transmissions so far (0 = queued, never sent).
    pub xmit: u32,
    /// Payload block in the pool.
    pub block: u32,
    /// Payload length.
    pub len: u16,
    /// Fragments that follow in the same message.
    pub frg: u8,
    /// Whether this slot holds a segment (false once ACKed or consumed).
    pub live: bool,
}

#[cfg(test)]
mod tests {
    #[test]
    fn segment_metadata_is_half_a_cache_line() {
        assert_eq!(core::mem::size_of::<super::Segment>(), 32);
    }
}
