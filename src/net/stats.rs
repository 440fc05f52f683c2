//! Counters: per session ([`SessionStats`]) and per listener ([`ListenerStats`]).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::KcpStats;

/// A snapshot of one session: the protocol core's counters plus the session
/// layer's. Read it with [`KcpStream::stats`](super::KcpStream::stats); it is
/// refreshed each time the socket task works on the session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionStats {
    /// The protocol core's counters: datagrams, bytes and segments in and
    /// out, retransmissions (each one a segment lost), fast retransmissions,
    /// duplicates.
    pub kcp: KcpStats,
    /// Smoothed round-trip time in milliseconds (0 before the first sample).
    pub rtt_ms: u32,
    /// Retransmission timeout in milliseconds.
    pub rto_ms: u32,
    /// Congestion window in segments.
    pub cwnd: u32,
    /// The peer's last advertised free receive window, in segments.
    pub remote_window: u32,
    /// Segments not yet acknowledged by the peer (in flight plus queued in
    /// KCP).
    pub unacked_segments: u32,
    /// Bytes the protocol core holds for this session
    /// ([`Kcp::memory_footprint`](crate::Kcp::memory_footprint)): fixed
    /// rings plus payload blocks. A burst grows the blocks to what it had in
    /// flight; they are given back once the session has needed less than
    /// 64 KiB of them for a second (a pool with a block still in use stays
    /// whole).
    pub core_memory_bytes: usize,
    /// Application bytes handed to KCP for sending.
    pub app_bytes_sent: u64,
    /// Application bytes taken out of KCP for the reader.
    pub app_bytes_received: u64,
    /// Datagrams for this session the socket could not take (send buffer
    /// full); KCP retransmits what they carried.
    pub send_dropped: u64,
    /// Keep-alive probes sent.
    pub keepalives_sent: u64,
    /// FEC: KCP datagrams lost on the way but rebuilt from parity (0
    /// without [`SessionConfig::fec`](super::SessionConfig)).
    pub fec_recovered: u64,
    /// FEC: parity packets sent.
    pub fec_parity_sent: u64,
    /// FEC: parity packets received and accepted by the decoder.
    pub fec_parity_received: u64,
    /// FEC: packets the decoder dropped: malformed, at a shard position
    /// its shard counts do not allow (a peer with other FEC settings), or
    /// duplicates (a copy, or a late data packet already rebuilt from
    /// parity). Parity that arrives for a group already complete is
    /// normal (no loss in it) and not counted.
    pub fec_dropped: u64,
}

/// A snapshot of a listener's socket task: totals over all its sessions.
/// Read it with [`KcpListener::stats`](super::KcpListener::stats).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListenerStats {
    /// Datagrams read from the socket.
    pub datagrams_in: u64,
    /// Datagrams written to the socket.
    pub datagrams_out: u64,
    /// Datagrams dropped because they were malformed (shorter than a
    /// header, or refused by the session's `Kcp::input`).
    pub dropped_invalid: u64,
    /// Datagrams for no known session that could not open one (not a
    /// plausible first segment, or the listener is closed).
    pub dropped_unknown: u64,
    /// Datagrams that would have opened a session beyond `max_sessions`,
    /// `max_sessions_per_ip` or a full accept backlog.
    pub dropped_over_limit: u64,
    /// Datagrams the socket could not send (buffer full) or failed to send.
    pub send_errors: u64,
    /// Sessions opened (half-open ones included).
    pub sessions_opened: u64,
    /// Sessions handed to `accept`.
    pub sessions_accepted: u64,
    /// Sessions closed, for any reason (a lingering session counts as
    /// closed from the moment it finished).
    pub sessions_closed: u64,
    /// Half-open sessions that expired before the peer answered.
    pub half_open_expired: u64,
    /// Sessions closed because the link died or the peer went quiet.
    pub timed_out: u64,
    /// Sessions open now (lingering ones not included).
    pub sessions_active: u64,
    /// Sessions finished but still acknowledging the peer's
    /// retransmissions (see [`SessionConfig::linger`](super::SessionConfig::linger)).
    /// They count against the session limits.
    pub sessions_lingering: u64,
    /// FEC: KCP datagrams rebuilt from parity, over all sessions.
    pub fec_recovered: u64,
    /// FEC: parity packets sent, over all sessions.
    pub fec_parity_sent: u64,
    /// FEC: parity packets accepted, over all sessions.
    pub fec_parity_received: u64,
    /// FEC: packets the sessions' decoders dropped (see
    /// [`SessionStats::fec_dropped`]).
    pub fec_dropped: u64,
}

/// The socket task's counters, shared with the handles that read them.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub datagrams_in: AtomicU64,
    pub datagrams_out: AtomicU64,
    pub dropped_invalid: AtomicU64,
    pub dropped_unknown: AtomicU64,
    pub dropped_over_limit: AtomicU64,
    pub send_errors: AtomicU64,
    pub sessions_opened: AtomicU64,
    pub sessions_accepted: AtomicU64,
    pub sessions_closed: AtomicU64,
    pub half_open_expired: AtomicU64,
    pub timed_out: AtomicU64,
    pub sessions_active: AtomicU64,
    pub sessions_lingering: AtomicU64,
    pub fec_recovered: AtomicU64,
    pub fec_parity_sent: AtomicU64,
    pub fec_parity_received: AtomicU64,
    pub fec_dropped: AtomicU64,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    pub fn snapshot(&self) -> ListenerStats {
        ListenerStats {
            datagrams_in: self.datagrams_in.load(Relaxed),
            datagrams_out: self.datagrams_out.load(Relaxed),
            dropped_invalid: self.dropped_invalid.load(Relaxed),
            dropped_unknown: self.dropped_unknown.load(Relaxed),
            dropped_over_limit: self.dropped_over_limit.load(Relaxed),
            send_errors: self.send_errors.load(Relaxed),
            sessions_opened: self.sessions_opened.load(Relaxed),
            sessions_accepted: self.sessions_accepted.load(Relaxed),
            sessions_closed: self.sessions_closed.load(Relaxed),
            half_open_expired: self.half_open_expired.load(Relaxed),
            timed_out: self.timed_out.load(Relaxed),
            sessions_active: self.sessions_active.load(Relaxed),
            sessions_lingering: self.sessions_lingering.load(Relaxed),
            fec_recovered: self.fec_recovered.load(Relaxed),
            fec_parity_sent: self.fec_parity_sent.load(Relaxed),
            fec_parity_received: self.fec_parity_received.load(Relaxed),
            fec_dropped: self.fec_dropped.load(Relaxed),
        }
    }
}
