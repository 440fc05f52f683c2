//! The KCP protocol state machine.
//!
//! [`Kcp`] owns no socket and reads no clock: the caller feeds it datagrams
//! with [`Kcp::input`], the time with [`Kcp::update`], and receives datagrams
//! through its [`KcpOutput`]. Every algorithm follows ikcp 1.7 (`ikcp.c`), so
//! the same calls with the same clock produce byte-identical datagrams; the
//! differences are deliberate and listed here:
//!
//! - storage is fixed at construction (see [`storage`](crate::storage)): the
//!   send queue is bounded and [`Kcp::send`] says
//!   [`KcpError::BufferFull`](crate::KcpError::BufferFull) instead of
//!   growing;
//! - a datagram is validated whole before any of it is applied, so a bad
//!   segment in the middle (wrong `conv`, `len` past the end, unknown `cmd`)
//!   leaves the session untouched;
//! - [`Kcp::check`] names the time at which [`Kcp::update`] will do work,
//!   not merely "now" or "one interval from now", so a check–sleep–update
//!   loop neither spins nor wakes an idle session;
//! - stream-mode [`Kcp::recv`] fills the whole buffer across segments.

use crate::config::KcpConfig;
use crate::constants::*;
use crate::error::KcpResult;
use crate::sequence::{Seq, Timestamp};
use crate::stats::KcpStats;
use crate::storage::{AckList, FlushBuf, RecvPool, Ring, SendPool};

/// Where a session's datagrams go: a socket, a channel, a test link.
///
/// Closures `FnMut(&[u8]) -> KcpResult<usize>` implement it.
pub trait KcpOutput {
    /// Sends one datagram of at most `mtu` bytes. An error is counted in
    /// [`KcpStats::output_errors`]; KCP's retransmission recovers the loss.
    fn output(&mut self, data: &[u8]) -> KcpResult<usize>;
}

impl<F: FnMut(&[u8]) -> KcpResult<usize>> KcpOutput for F {
    fn output(&mut self, data: &[u8]) -> KcpResult<usize> {
        self(data)
    }
}

/// `probe` bits: send a `WASK` (ask the peer's window) at the next flush.
const ASK_SEND: u8 = 1;
/// `probe` bits: send a `WINS` (tell our window) at the next flush.
const ASK_TELL: u8 = 2;

/// One KCP conversation.
///
/// ```
/// use kcp_rs::{Kcp, KcpConfig, KcpResult};
///
/// let mut wire: Vec<Vec<u8>> = Vec::new();
/// let mut kcp = Kcp::with_config(1, |d: &[u8]| -> KcpResult<usize> {
///     println!("would send {} bytes", d.len());
///     Ok(d.len())
/// }, KcpConfig::fast())?;
/// kcp.send(b"hello")?;
/// kcp.update(0);
/// kcp.update(20); // first flush with cwnd 1 sends the segment
/// assert_eq!(kcp.wait_snd(), 1);
/// # Ok::<(), kcp_rs::KcpError>(())
/// ```
pub struct Kcp<O> {
    conv: u32,
    cfg: KcpConfig,
    mss: u32,
    dead: bool,

    // Send side. Ring positions [snd_una, snd_nxt) are in flight (some may
    // already be ACKed out of order), [snd_nxt, snd_nxt + nsnd_que) queued.
    snd_una: Seq,
    snd_nxt: Seq,
    nsnd_que: u32,
    nsnd_buf: u32,
    snd: Ring,
    snd_pool: SendPool,

    // Receive side. Ring positions [rcv_nxt - nrcv_que, rcv_nxt) are the
    // in-order queue the application reads; [rcv_nxt, rcv_nxt + rcv_wnd)
    // hold segments that arrived out of order. The span is at most
    // 2 * rcv_wnd, the ring's capacity.
    rcv_nxt: Seq,
    nrcv_que: u32,
    nrcv_buf: u32,
    rcv_queue_bytes: usize,
    rcv_head_off: usize,
    rcv: Ring,
    rcv_pool: RecvPool,

    rmt_wnd: u32,
    cwnd: u32,
    incr: u32,
    ssthresh: u32,

    rx_srtt: i32,
    rx_rttval: i32,
    rx_rto: u32,
    rx_minrto: u32,

    current: Timestamp,
    ts_flush: Timestamp,
    updated: bool,
    ts_probe: Timestamp,
    probe_wait: u32,
    probe: u8,
    // No segment sent before the last flush is due for retransmission before
    // `resend_floor` (a lower bound of their resend times), nor for a fast
    // retransmission unless `fastack_seen` (fast ACKs counted since, or a
    // segment resent on timeout that kept enough of them): flush then skips
    // them.
    //
    // Timestamps compare by half range, which is not transitive: the skip
    // is sound only while every resend time it stands for lies within
    // `FLOOR_SPAN` after the last flush's clock (`floor_at`), and the clock
    // moved forward by less than that since. `floor_wild` records that a
    // resend time broke the bound (a huge RTO, a clock jump): the next flush
    // scans them all.
    resend_floor: Timestamp,
    floor_at: Timestamp,
    floor_wild: bool,
    fastack_seen: bool,

    acks: AckList,
    buffer: FlushBuf,
    stats: KcpStats,
    output: O,
}

impl<O: KcpOutput> Kcp<O> {
    /// A session with ikcp's default configuration.
    ///
    /// # Panics
    /// Never: the default configuration is valid for every build.
    pub fn new(conv: u32, output: O) -> Self {
        match Self::with_config(conv, output, KcpConfig::default()) {
            Ok(kcp) => kcp,
            Err(_) => unreachable!("the default configuration is valid"),
        }
    }

    /// A session with `config`.
    ///
    /// # Errors
    /// [`KcpError::InvalidConfig`](crate::KcpError::InvalidConfig) when
    /// `config` cannot work with this build's buffers (see
    /// [`KcpConfig::validate`]).
    pub fn with_config(conv: u32, output: O, config: KcpConfig) -> KcpResult<Self> {
        config.validate()?;
        let mss = config.mss() as u32;
        // Room for a full window in flight plus one largest message queued.
        let snd_slots = config.snd_wnd as usize + config.max_fragments();
        let rcv_slots = 2 * config.rcv_wnd as usize;
        let snd = Ring::with_capacity(snd_slots);
        let rcv = Ring::with_capacity(rcv_slots);
        // A send block keeps a header's room before the payload, so that a
        // segment that fills a datagram alone is output from its block.
        let mut snd_pool = SendPool::new(OVERHEAD + mss as usize, snd.capacity());
        let mut rcv_pool = RecvPool::new(mss as usize, rcv.capacity());
        if config.preallocate {
            snd_pool.make_all();
            rcv_pool.make_all();
        }
        let sn = Seq::new(config.initial_sn);
        Ok(Kcp {
            conv,
            cfg: config,
            mss,
            dead: false,
            snd_una: sn,
            snd_nxt: sn,
            nsnd_que: 0,
            nsnd_buf: 0,
            snd,
            snd_pool,
            rcv_nxt: sn,
            nrcv_que: 0,
            nrcv_buf: 0,
            rcv_queue_bytes: 0,
            rcv_head_off: 0,
            acks: AckList::with_capacity(rcv.capacity() as usize),
            rcv,
            rcv_pool,
            rmt_wnd: WND_RCV as u32,
            cwnd: 0,
            incr: 0,
            ssthresh: THRESH_INIT,
            rx_srtt: 0,
            rx_rttval: 0,
            rx_rto: RTO_DEF,
            rx_minrto: config.effective_min_rto(),
            current: Timestamp::new(0),
            ts_flush: Timestamp::new(INTERVAL_DEF),
            updated: false,
            ts_probe: Timestamp::new(0),
            probe_wait: 0,
            probe: 0,
            resend_floor: Timestamp::new(0),
            floor_at: Timestamp::new(0),
            floor_wild: true,
            fastack_seen: false,
            buffer: FlushBuf::new(config.mtu as usize),
            stats: KcpStats::default(),
            output,
        })
    }

    // ----- state ------------------------------------------------------------

    /// The conversation id.
    pub fn conv(&self) -> u32 {
        self.conv
    }

    /// The configuration the session was built with.
    pub fn config(&self) -> &KcpConfig {
        &self.cfg
    }

    /// Largest payload of one segment (`mtu - 24`).
    pub fn mss(&self) -> usize {
        self.mss as usize
    }

    /// Whether a segment was sent `dead_link` times without an ACK.
    pub fn is_dead(&self) -> bool {
        self.dead
    }

    /// Smoothed round-trip time in milliseconds (0 before the first sample).
    pub fn rtt(&self) -> u32 {
        self.rx_srtt as u32
    }

    /// Current retransmission timeout in milliseconds.
    pub fn rto(&self) -> u32 {
        self.rx_rto
    }

    /// Congestion window in segments.
    pub fn cwnd(&self) -> u32 {
        self.cwnd
    }

    /// The peer's last advertised free receive window, in segments.
    pub fn remote_window(&self) -> u32 {
        self.rmt_wnd
    }

    /// Segments received in order and not yet read by [`recv`](Self::recv).
    pub fn queued_recv(&self) -> u32 {
        self.nrcv_que
    }

    /// Segments holding a payload block now: queued or unacknowledged on the
    /// send side, received and not yet read (behind a gap or in order) on
    /// the receive side. With [`memory_footprint`](Self::memory_footprint)
    /// it tells how much of what the session holds it still needs (see
    /// [`shrink_to_fit`](Self::shrink_to_fit)).
    pub fn segments_held(&self) -> u32 {
        self.wait_snd() + self.nrcv_buf + self.nrcv_que
    }

    /// Counters since construction.
    pub fn stats(&self) -> &KcpStats {
        &self.stats
    }

    /// The output sink.
    pub fn output(&self) -> &O {
        &self.output
    }

    /// The output sink, mutably.
    pub fn output_mut(&mut self) -> &mut O {
        &mut self.output
    }

    /// Bytes this session holds now: the struct, its rings and the payload
    /// blocks made so far.
    pub fn memory_footprint(&self) -> usize {
        core::mem::size_of::<Self>() + self.heap_bytes(false)
    }

    /// Bytes this session would hold with every payload block in use.
    pub fn memory_footprint_max(&self) -> usize {
        core::mem::size_of::<Self>() + self.heap_bytes(true)
    }

    /// Gives back the payload storage of each direction that holds no
    /// payload now, and returns the bytes released.
    ///
    /// The payload pools grow to the most blocks ever in use at once and
    /// keep them, so that a busy session allocates nothing. After one
    /// burst that can be a whole window's worth for the rest of the
    /// session's life (about 1.4 MB each way with 1,024-segment windows).
    /// A caller that sees the session go quiet, or need few blocks again
    /// ([`segments_held`](Self::segments_held)), can call this to return to
    /// a new session's footprint; the next burst grows the pools again, in
    /// O(log window) allocations.
    ///
    /// The send side is released only when nothing is queued or
    /// unacknowledged ([`wait_snd`](Self::wait_snd) is 0), the receive side
    /// only when nothing waits to be read or behind a gap. Rings, the ACK
    /// list and the flush buffer have fixed sizes and stay. A session made
    /// with [`KcpConfig::preallocate`] keeps everything, and without the
    /// `alloc` feature storage is inline: both return 0.
    ///
    /// # Examples
    /// ```
    /// use kcp_rs::{Kcp, KcpConfig, KcpResult};
    ///
    /// let out = |d: &[u8]| -> KcpResult<usize> { Ok(d.len()) };
    /// let mut kcp = Kcp::with_config(1, out, KcpConfig::fast())?;
    /// let fresh = kcp.memory_footprint();
    /// for _ in 0..64 {
    ///     kcp.send(&[0u8; 1024])?;
    /// }
    /// assert!(kcp.memory_footprint() > fresh);
    /// assert_eq!(kcp.shrink_to_fit(), 0); // still queued: kept
    /// # Ok::<(), kcp_rs::KcpError>(())
    /// ```
    pub fn shrink_to_fit(&mut self) -> usize {
        // Every queued, unacknowledged or received segment holds a block, so
        // "no block in use" is exactly the conditions above.
        if self.cfg.preallocate {
            return 0;
        }
        let before = self.memory_footprint();
        self.snd_pool.release_if_unused();
        self.rcv_pool.release_if_unused();
        before - self.memory_footprint()
    }

    // ----- internals --------------------------------------------------------

    fn heap_bytes(&self, max: bool) -> usize {
        let pools = if max {
            self.snd_pool.max_footprint() + self.rcv_pool.max_footprint()
        } else {
            self.snd_pool.footprint() + self.rcv_pool.footprint()
        };
        if cfg!(feature = "alloc") {
            pools
                + self.snd.footprint()
                + self.rcv.footprint()
                + self.acks.footprint()
                + self.buffer.footprint()
        } else {
            0 // all inline in the struct
        }
    }
}

mod flush;
mod input;
mod recv;
mod send;
#[cfg(test)]
mod tests;
