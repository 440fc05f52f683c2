//! Counters a session keeps: what kcp-go users read from its SNMP table.

/// Counters since a session was built. All wrap only after 2^64 events.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct KcpStats {
    /// Datagrams handed to the output.
    pub out_datagrams: u64,
    /// Bytes handed to the output, headers included.
    pub out_bytes: u64,
    /// PUSH segments sent, first transmissions and retransmissions.
    pub out_segments: u64,
    /// ACK segments sent.
    pub out_acks: u64,
    /// Retransmissions after a timeout (each one a lost segment).
    pub retransmits: u64,
    /// Retransmissions triggered by duplicate ACKs.
    pub fast_retransmits: u64,
    /// Datagrams accepted by `input`.
    pub in_datagrams: u64,
    /// Bytes accepted by `input`.
    pub in_bytes: u64,
    /// Segments accepted by `input`.
    pub in_segments: u64,
    /// PUSH segments received again (already had or already delivered).
    pub duplicate_segments: u64,
    /// Datagrams refused by `input` (malformed or another conversation).
    pub dropped_datagrams: u64,
    /// ACKs not queued because too many were pending before a flush.
    pub dropped_acks: u64,
    /// Calls to the output that failed.
    pub output_errors: u64,
}
