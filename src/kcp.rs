//! The KCP protocol state machine.
//!
//! [`Kcp`] owns no socket and reads no clock: the caller feeds it datagrams
//! with [`Kcp::input`], the time with [`Kcp::update`], and receives datagrams
//! through its [`KcpOutput`]. Every algorithm follows ikcp 1.7 (`ikcp.c`), so
//! the same calls with the same clock produce byte-identical datagrams; the
//! differences are deliberate and listed here:
//!
//! - storage is fixed at construction (see [`storage`](crate::storage)): the
//!   send queue is bounded and [`Kcp::send`] says [`KcpError::BufferFull`]
//!   instead of growing;
//! - a datagram is validated whole before any of it is applied, so a bad
//!   segment in the middle (wrong `conv`, `len` past the end, unknown `cmd`)
//!   leaves the session untouched;
//! - [`Kcp::check`] names the time at which [`Kcp::update`] will do work,
//!   not merely "now" or "one interval from now", so a check–sleep–update
//!   loop neither spins nor wakes an idle session;
//! - stream-mode [`Kcp::recv`] fills the whole buffer across segments.

use crate::codec::{split_segment, Header};
use crate::config::KcpConfig;
use crate::constants::*;
use crate::error::{KcpError, KcpResult};
use crate::segment::Segment;
use crate::sequence::{Seq, Timestamp};
use crate::stats::KcpStats;
use crate::storage::{copy_payload, AckList, FlushBuf, RecvPool, Ring, SendPool};

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

/// Largest per-segment RTO after backoff: the furthest a resend time can
/// be and still compare as "later" (wrapping half range, ~24.8 days).
const RTO_BACKOFF_MAX: u32 = i32::MAX as u32;
/// How far ahead of a flush's clock the resend times that the next flush
/// may skip can lie, and how far the clock may move before then: a quarter
/// of the range each, so that every comparison the skip stands for spans
/// less than half the range and agrees with the one it replaces.
const FLOOR_SPAN: u32 = 1 << 30;

const ASK_SEND: u8 = 1;
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
    /// [`KcpError::InvalidConfig`] when `config` cannot work with this
    /// build's buffers (see [`KcpConfig::validate`]).
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

    // ----- application side -------------------------------------------------

    /// Queues `data` for sending; it leaves at the next [`flush`](Self::flush).
    ///
    /// In message mode `data` is one message, delivered whole by the peer's
    /// `recv` (an empty message is allowed, as in ikcp). In stream mode as
    /// many bytes are taken as the send queue has room for, and small writes
    /// are appended to the last queued segment.
    ///
    /// Returns the number of bytes taken.
    ///
    /// # Errors
    /// - [`KcpError::DataTooLarge`]: a message needs more fragments than the
    ///   peer can reassemble ([`KcpConfig::max_message`]);
    /// - [`KcpError::BufferFull`]: the send queue has no room now;
    /// - [`KcpError::DeadLink`]: the link was declared dead.
    pub fn send(&mut self, data: &[u8]) -> KcpResult<usize> {
        // The common case, a message of one segment, without the cursor
        // below (measured: 16 instructions more per `send` through it).
        if !self.cfg.stream && data.len() <= self.mss as usize {
            return self.send_one(data.len(), &mut |piece: &mut [u8]| {
                copy_payload(piece, data)
            });
        }
        let mut at = 0;
        self.send_with(data.len(), |piece| {
            copy_payload(piece, &data[at..at + piece.len()]);
            at += piece.len();
        })
    }

    /// Queues `len` bytes that `fill` writes straight into KCP's send
    /// buffer: [`send`](Self::send) without the copy from a buffer of the
    /// caller's, for data that is produced anyway (a message serialised
    /// into place, a file read into place).
    ///
    /// `fill` gets consecutive pieces of the send buffer, one per segment
    /// (at most `mss` bytes each), in order; their lengths add up to the
    /// returned count, and each must be filled completely (its old bytes
    /// are whatever the buffer held before). It is called only for bytes
    /// that are taken: in message mode all `len` or none, in stream mode
    /// as many as there is room for, so a caller writing a stream resumes
    /// from the returned count. Errors and limits are `send`'s.
    ///
    /// A `fill` that panics leaves the message partly queued with
    /// unspecified bytes; the session should then be dropped.
    ///
    /// # Errors
    /// As [`send`](Self::send).
    ///
    /// # Examples
    /// ```
    /// use kcp_rs::{Kcp, KcpConfig, KcpResult};
    ///
    /// let mut wire: Vec<Vec<u8>> = Vec::new();
    /// let out = |d: &[u8]| -> KcpResult<usize> {
    ///     wire.push(d.to_vec());
    ///     Ok(d.len())
    /// };
    /// let mut a = Kcp::with_config(1, out, KcpConfig::fast())?;
    /// // A 3000-byte message of counting bytes, written in place: three
    /// // segments, so `fill` is called three times.
    /// let mut next = 0u32;
    /// a.send_with(3000, |piece| {
    ///     for b in piece.iter_mut() {
    ///         *b = next as u8;
    ///         next += 1;
    ///     }
    /// })?;
    /// assert_eq!(next, 3000);
    /// a.update(0);
    /// drop(a);
    ///
    /// let mut b = Kcp::new(1, |d: &[u8]| -> KcpResult<usize> { Ok(d.len()) });
    /// for d in &wire {
    ///     b.input(d)?;
    /// }
    /// let mut got = [0u8; 3000];
    /// assert_eq!(b.recv(&mut got)?, 3000);
    /// assert!(got.iter().enumerate().all(|(i, &x)| x == i as u8));
    /// # Ok::<(), kcp_rs::KcpError>(())
    /// ```
    pub fn send_with<F: FnMut(&mut [u8])>(&mut self, len: usize, mut fill: F) -> KcpResult<usize> {
        let mss = self.mss as usize;
        // The common case, a message of one segment, without the division
        // and the loop below.
        if !self.cfg.stream && len <= mss {
            return self.send_one(len, &mut fill);
        }
        if self.dead {
            return Err(KcpError::DeadLink);
        }
        let mut taken = 0;
        if self.cfg.stream {
            taken = self.append_to_last(len, &mut fill);
            if taken == len {
                return Ok(taken);
            }
        }
        let rest = len - taken;
        let free = self.snd_free_slots() as usize;
        let count = rest.div_ceil(mss).max(1);
        if self.cfg.stream {
            let n = count.min(free);
            if n == 0 {
                return if taken > 0 {
                    Ok(taken)
                } else {
                    Err(KcpError::BufferFull)
                };
            }
            let bytes = rest.min(n * mss);
            self.queue_fragments(bytes, n, false, &mut fill);
            return Ok(taken + bytes);
        }
        if count > self.cfg.max_fragments() {
            return Err(KcpError::DataTooLarge {
                max: self.cfg.max_message(),
            });
        }
        if count > free {
            return Err(KcpError::BufferFull);
        }
        self.queue_fragments(rest, count, true, &mut fill);
        Ok(rest)
    }

    /// Copies the next message (message mode) or as many bytes as fit
    /// (stream mode) into `buf`.
    ///
    /// # Errors
    /// - [`KcpError::WouldBlock`]: nothing complete to read yet;
    /// - [`KcpError::BufferTooSmall`]: the next message is larger than `buf`
    ///   (message mode; nothing is consumed; see [`peek_size`](Self::peek_size)).
    #[inline]
    pub fn recv(&mut self, buf: &mut [u8]) -> KcpResult<usize> {
        if self.nrcv_que == 0 {
            return Err(KcpError::WouldBlock);
        }
        self.recv_queued(buf)
    }

    /// Hands the next complete message (message mode) or the bytes of the
    /// next segment (stream mode) to `read` as slices of the receive
    /// buffer, without copying them into a buffer of the caller's, and
    /// consumes what it handed over. Returns the number of bytes.
    ///
    /// `read` gets `(piece, end)`: a message comes as its segments'
    /// payloads in order, `end` set on the last; stream mode hands one
    /// piece per call, `end` set. A reader that stops between calls keeps
    /// the rest queued, and the receive window closes behind it as with
    /// [`recv`](Self::recv).
    ///
    /// # Errors
    /// [`KcpError::WouldBlock`]: nothing complete to read yet.
    ///
    /// # Examples
    /// ```
    /// use kcp_rs::{Kcp, KcpConfig, KcpResult};
    ///
    /// let mut wire: Vec<Vec<u8>> = Vec::new();
    /// let out = |d: &[u8]| -> KcpResult<usize> {
    ///     wire.push(d.to_vec());
    ///     Ok(d.len())
    /// };
    /// // `fast()` has no congestion window: everything goes in one flush.
    /// let mut a = Kcp::with_config(1, out, KcpConfig::fast())?;
    /// a.send(&[7u8; 3000])?; // three segments
    /// a.update(0);
    /// drop(a);
    ///
    /// let mut b = Kcp::new(1, |d: &[u8]| -> KcpResult<usize> { Ok(d.len()) });
    /// for d in &wire {
    ///     b.input(d)?;
    /// }
    /// let (mut pieces, mut total) = (0, 0);
    /// let n = b.recv_with(|piece, _end| {
    ///     pieces += 1;
    ///     total += piece.len();
    /// })?;
    /// assert_eq!((n, total, pieces), (3000, 3000, 3));
    /// # Ok::<(), kcp_rs::KcpError>(())
    /// ```
    pub fn recv_with<F: FnMut(&[u8], bool)>(&mut self, mut read: F) -> KcpResult<usize> {
        self.peek_size()?;
        let recover = self.window_full();
        let mut size = 0;
        while self.nrcv_que > 0 {
            let (n, end) = self.hand_over_head(&mut read);
            size += n;
            if end {
                break;
            }
        }
        self.move_to_queue();
        self.tell_if_reopened(recover);
        Ok(size)
    }

    /// Hands the head of the receive queue to `read` (what is left of it,
    /// in stream mode) and pops it; returns its length and whether it ended
    /// a message.
    #[inline]
    fn hand_over_head<F: FnMut(&[u8], bool)>(&mut self, read: &mut F) -> (usize, bool) {
        let seg = *self.rcv.at(self.rcv_head().get());
        let end = self.cfg.stream || seg.frg == 0;
        let off = self.rcv_head_off;
        let piece = self.rcv_pool.bytes(seg.block, off, seg.len as usize - off);
        let n = piece.len();
        read(piece, end);
        self.pop_rcv_head();
        (n, end)
    }

    /// Whether the application's queue fills the receive window (the peer
    /// is told a zero window).
    pub(crate) fn window_full(&self) -> bool {
        self.nrcv_que >= self.cfg.rcv_wnd as u32
    }

    /// After a read: if the window was full before it (`was_full`) and no
    /// longer is, tell the peer now rather than let it wait for its next
    /// probe.
    fn tell_if_reopened(&mut self, was_full: bool) {
        if was_full && !self.window_full() {
            self.probe |= ASK_TELL;
        }
    }

    /// [`recv`](Self::recv) once something is queued.
    fn recv_queued(&mut self, buf: &mut [u8]) -> KcpResult<usize> {
        let recover = self.window_full();
        let head = *self.rcv.at(self.rcv_head().get());
        let n = if !self.cfg.stream && head.frg == 0 {
            // A message of one segment, the usual case.
            let len = head.len as usize;
            if len > buf.len() {
                return Err(KcpError::BufferTooSmall { needed: len });
            }
            copy_payload(&mut buf[..len], self.rcv_pool.bytes(head.block, 0, len));
            self.pop_rcv_head();
            len
        } else {
            self.recv_general(buf)?
        };
        self.move_to_queue();
        self.tell_if_reopened(recover);
        Ok(n)
    }

    /// [`recv`](Self::recv) in stream mode or of a fragmented message.
    fn recv_general(&mut self, buf: &mut [u8]) -> KcpResult<usize> {
        let size = self.peek_size()?;
        Ok(if self.cfg.stream {
            if buf.is_empty() {
                return Err(KcpError::BufferTooSmall { needed: 1 });
            }
            self.read_stream(buf)
        } else {
            if size > buf.len() {
                return Err(KcpError::BufferTooSmall { needed: size });
            }
            self.read_message(buf)
        })
    }

    /// Size of the next message (message mode) or bytes readable (stream).
    ///
    /// # Errors
    /// [`KcpError::WouldBlock`] when nothing complete is queued.
    pub fn peek_size(&self) -> KcpResult<usize> {
        if self.nrcv_que == 0 {
            return Err(KcpError::WouldBlock);
        }
        if self.cfg.stream {
            return Ok(self.rcv_queue_bytes - self.rcv_head_off);
        }
        let head = self.rcv_head();
        let first = self.rcv.at(head.get());
        if first.frg == 0 {
            return Ok(first.len as usize);
        }
        if self.nrcv_que < first.frg as u32 + 1 {
            return Err(KcpError::WouldBlock);
        }
        let mut len = 0;
        for i in 0..self.nrcv_que {
            let seg = self.rcv.at((head + i).get());
            len += seg.len as usize;
            if seg.frg == 0 {
                break;
            }
        }
        Ok(len)
    }

    /// Segments not yet acknowledged: in flight plus queued.
    pub fn wait_snd(&self) -> u32 {
        self.nsnd_buf + self.nsnd_que
    }

    /// Whether the next flush announces this side's receive window
    /// (`WINS`): the application made room in a window that was full, or
    /// the peer asked. Until that flush the peer may be waiting idle.
    pub fn tells_window(&self) -> bool {
        self.probe & ASK_TELL != 0
    }

    /// Asks the peer to announce its receive window: a `WASK` segment goes
    /// out at the next flush, and every KCP implementation answers it with
    /// `WINS`. Useful as a keep-alive, and to learn that a peer is there.
    pub fn ask_window(&mut self) {
        self.probe |= ASK_SEND;
    }

    /// Announces this side's receive window: a `WINS` segment goes out at
    /// the next flush, as when the peer asked. A peer's question or our
    /// answer may be lost; repeating the answer costs one header.
    pub fn tell_window(&mut self) {
        self.probe |= ASK_TELL;
    }

    /// Bytes more that [`send`](Self::send) would accept now, as whole
    /// segments (stream mode may append a little more to the last one).
    pub fn send_capacity(&self) -> usize {
        self.snd_free_slots() as usize * self.mss as usize
    }

    // ----- network side -----------------------------------------------------

    /// Processes one datagram received from the peer.
    ///
    /// The datagram is checked whole first; if any segment is malformed or
    /// for another conversation nothing of it is applied.
    ///
    /// # Errors
    /// - [`KcpError::InvalidPacket`]: shorter than a header, a `len` past
    ///   the end, an unknown command, data longer than our MSS, or a
    ///   fragment count the receive window cannot hold;
    /// - [`KcpError::ConvMismatch`]: a segment for another conversation.
    pub fn input(&mut self, data: &[u8]) -> KcpResult<()> {
        self.input_inner::<false, _>(data, &mut |_, _| {})
    }

    /// [`input`](Self::input), then hands every complete message that is
    /// now in order to `read`, as [`recv_with`](Self::recv_with) would,
    /// and returns the bytes handed over.
    ///
    /// The zero-copy receive path: a single-segment message (any segment in
    /// stream mode) that arrives in order while nothing waits in the
    /// receive queue goes to `read` straight from `data` and is never
    /// stored, so it is not copied at all. Everything else (segments that
    /// arrive out of order, fragments of a longer message) is stored as
    /// `input` stores it and handed over from the receive buffer once in
    /// order. Either way `read` sees the stream in order, exactly once.
    ///
    /// `read` gets `(piece, end)`: message mode hands each message as its
    /// segments' payloads in order, `end` set on the last one; stream mode
    /// sets `end` on every piece. Because everything in order is handed
    /// over, the receive window stays open: this path has no backpressure.
    /// A reader that must be able to stop takes [`input`](Self::input) and
    /// [`recv_with`](Self::recv_with) instead.
    ///
    /// # Errors
    /// As [`input`](Self::input); nothing is handed over then.
    ///
    /// # Examples
    /// ```
    /// use kcp_rs::{Kcp, KcpConfig, KcpResult};
    ///
    /// let mut wire: Vec<Vec<u8>> = Vec::new();
    /// let out = |d: &[u8]| -> KcpResult<usize> {
    ///     wire.push(d.to_vec());
    ///     Ok(d.len())
    /// };
    /// // `fast()` has no congestion window: everything goes in one flush.
    /// let mut a = Kcp::with_config(1, out, KcpConfig::fast())?;
    /// a.send(b"hello")?;
    /// a.update(0);
    /// drop(a);
    ///
    /// let mut b = Kcp::new(1, |d: &[u8]| -> KcpResult<usize> { Ok(d.len()) });
    /// let mut got = Vec::new();
    /// for d in &wire {
    ///     b.input_with(d, |piece, _end| got.extend_from_slice(piece))?;
    /// }
    /// assert_eq!(got, b"hello");
    /// # Ok::<(), kcp_rs::KcpError>(())
    /// ```
    pub fn input_with<F: FnMut(&[u8], bool)>(
        &mut self,
        data: &[u8],
        mut read: F,
    ) -> KcpResult<usize> {
        let mut handed = 0;
        self.input_inner::<true, _>(data, &mut |piece, end| {
            handed += piece.len();
            read(piece, end);
        })?;
        if self.nrcv_que > 0 {
            handed += self.hand_over_queue(&mut read);
        }
        Ok(handed)
    }

    /// Hands every complete message of the receive queue to `read`, as
    /// repeated [`recv_with`](Self::recv_with) calls would, in one pass:
    /// segments that become in order meanwhile follow them.
    fn hand_over_queue<F: FnMut(&[u8], bool)>(&mut self, read: &mut F) -> usize {
        let recover = self.window_full();
        let mut handed = 0;
        loop {
            while self.nrcv_que > 0 {
                // A message's fragments are queued in order: it is whole
                // once its first one has the rest behind it.
                let frg = self.rcv.at(self.rcv_head().get()).frg;
                if !self.cfg.stream && frg as u32 >= self.nrcv_que {
                    break;
                }
                handed += self.hand_over_head(read).0;
            }
            let queued = self.nrcv_que;
            self.move_to_queue();
            if self.nrcv_que == queued {
                break;
            }
        }
        self.tell_if_reopened(recover);
        handed
    }

    /// `input`, handing in-order single-segment messages to `read` in place
    /// when `DIRECT`.
    fn input_inner<const DIRECT: bool, F: FnMut(&[u8], bool)>(
        &mut self,
        data: &[u8],
        read: &mut F,
    ) -> KcpResult<()> {
        if let Err(e) = self.validate(data) {
            self.stats.dropped_datagrams += 1;
            return Err(e);
        }
        self.stats.in_datagrams += 1;
        self.stats.in_bytes += data.len() as u64;

        let prev_una = self.snd_una;
        // RTT samples are folded in locals, the RTO computed once at the end
        // (from the last estimate, as computing it after every sample would).
        let (mut srtt, mut rttval) = (self.rx_srtt, self.rx_rttval);
        let mut sampled = false;
        let mut latest: Option<(Seq, Timestamp)> = None;
        let mut rest = data;
        while let Some((h, body, tail)) = split_segment(rest) {
            rest = tail;
            self.stats.in_segments += 1;
            self.rmt_wnd = h.wnd as u32;
            self.parse_una(h.una);
            match h.cmd {
                CMD_ACK => {
                    let rtt = self.current.diff(h.ts);
                    if rtt >= 0 {
                        (srtt, rttval) = rtt_sample(srtt, rttval, rtt);
                        sampled = true;
                    }
                    self.parse_ack(h.sn);
                    // ikcp's conservative fast-ack rule: the newest ACK by
                    // sequence must also be the newest by send time.
                    latest = match latest {
                        None => Some((h.sn, h.ts)),
                        Some((sn, ts)) if h.sn > sn && h.ts > ts => Some((h.sn, h.ts)),
                        keep => keep,
                    };
                }
                // Beyond the window: dropped unacknowledged, as ikcp does.
                CMD_PUSH if h.sn < self.rcv_nxt + self.cfg.rcv_wnd as u32 => {
                    if !self.acks.push(h.sn.get(), h.ts.get()) {
                        self.stats.dropped_acks += 1;
                    }
                    if DIRECT && self.can_hand_over(&h) {
                        read(body, true);
                        self.rcv_nxt += 1;
                        self.move_to_queue();
                    } else if h.sn >= self.rcv_nxt {
                        self.parse_data(&h, body);
                    } else {
                        self.stats.duplicate_segments += 1;
                    }
                }
                CMD_WASK => self.probe |= ASK_TELL,
                // WINS (its window was read above), PUSH beyond the window.
                _ => {}
            }
        }
        if sampled {
            self.update_rto(srtt, rttval);
        }
        if let Some((sn, ts)) = latest {
            self.parse_fastack(sn, ts);
        }
        if self.snd_una > prev_una {
            self.grow_cwnd();
        }
        Ok(())
    }

    /// Sets the clock to `current` without flushing.
    ///
    /// [`input`](Self::input) measures round-trip times against the clock of
    /// the last [`update`](Self::update). A driver that calls `update` only
    /// when [`check`](Self::check) says so (as it should) must call this
    /// before `input`, or an ACK arriving between two updates is measured
    /// against a stale clock and the RTT reads too small.
    pub fn set_clock(&mut self, current: u32) {
        self.current = Timestamp::new(current);
    }

    /// Advances the clock to `current` (milliseconds, any origin, wrapping)
    /// and flushes if a flush interval has passed.
    pub fn update(&mut self, current: u32) {
        self.current = Timestamp::new(current);
        if !self.updated {
            self.updated = true;
            self.ts_flush = self.current;
        }
        let mut slap = self.current.diff(self.ts_flush);
        if !(-CLOCK_JUMP..CLOCK_JUMP).contains(&slap) {
            self.ts_flush = self.current;
            slap = 0;
        }
        if slap >= 0 {
            self.ts_flush += self.cfg.interval;
            if self.current >= self.ts_flush {
                self.ts_flush = self.current + self.cfg.interval;
            }
            self.flush();
        }
    }

    /// When [`update`](Self::update) should next be called: the earliest
    /// time at which it will send something (an ACK, a window probe, new
    /// data or a retransmission). Returns `current` when that is now, and at
    /// most [`IDLE_CHECK`] ms ahead when nothing at all is pending.
    ///
    /// Call it again after [`send`](Self::send), [`recv`](Self::recv) or
    /// [`input`](Self::input): they can create work.
    pub fn check(&self, current: u32) -> u32 {
        let current = Timestamp::new(current);
        if !self.updated {
            return current.get();
        }
        let mut ts_flush = self.ts_flush;
        if !(-CLOCK_JUMP..CLOCK_JUMP).contains(&current.diff(ts_flush)) {
            ts_flush = current;
        }
        // update() flushes only once ts_flush is reached: nothing is sent
        // earlier, whatever timers say.
        let tick = if current >= ts_flush {
            current
        } else {
            ts_flush
        };
        // Queued data leaves at the next flush only if the window has room;
        // otherwise an ACK (input) or a timer below opens it.
        let can_send = self.nsnd_que > 0 && self.snd_nxt < self.snd_una + self.send_window();
        if self.acks.len() > 0 || self.probe != 0 || can_send {
            return tick.get();
        }
        let mut next: Option<Timestamp> = None;
        let mut earliest = |t: Timestamp| {
            next = Some(match next {
                Some(n) if n <= t => n,
                _ => t,
            })
        };
        if self.rmt_wnd == 0 {
            if self.probe_wait == 0 {
                return tick.get();
            }
            earliest(self.ts_probe);
        }
        let resent = self.fast_resend_threshold();
        for i in 0..self.snd_nxt.distance_from(self.snd_una) {
            let seg = self.snd.at((self.snd_una + i).get());
            if !seg.live {
                continue;
            }
            if seg.fastack >= resent && self.cfg.fast_resend_allowed(seg.xmit) {
                return tick.get();
            }
            earliest(seg.resendts);
        }
        match next {
            Some(t) if t > tick => t.get(),
            Some(_) => tick.get(),
            None => (current + IDLE_CHECK).get(),
        }
    }

    /// Sends pending ACKs, window probes, new data and due retransmissions
    /// now. Does nothing before the first [`update`](Self::update).
    pub fn flush(&mut self) {
        if !self.updated {
            return;
        }
        let current = self.current;
        let wnd = self.wnd_unused();
        let resent = self.fast_resend_threshold();
        // Nothing below changes the windows before new data is moved.
        let cwnd = self.send_window();
        let mut out = Writer {
            buf: self.buffer.bytes(),
            len: 0,
            output: &mut self.output,
            stats: &mut self.stats,
        };
        let mut ctl = Header {
            conv: self.conv,
            cmd: CMD_ACK,
            frg: 0,
            wnd,
            ts: Timestamp::new(0),
            sn: Seq::new(0),
            una: self.rcv_nxt,
            len: 0,
        };
        for &(sn, ts) in self.acks.as_slice() {
            ctl.sn = Seq::new(sn);
            ctl.ts = Timestamp::new(ts);
            out.push_header(&ctl);
        }
        out.stats.out_acks += self.acks.len() as u64;
        self.acks.clear();

        // Probe the peer's window while it reports zero: 7 s, then ×1.5 up
        // to 120 s between probes.
        if self.rmt_wnd == 0 {
            if self.probe_wait == 0 {
                self.probe_wait = PROBE_INIT;
                self.ts_probe = current + self.probe_wait;
            } else if current >= self.ts_probe {
                self.probe_wait = self.probe_wait.max(PROBE_INIT);
                self.probe_wait += self.probe_wait / 2;
                self.probe_wait = self.probe_wait.min(PROBE_LIMIT);
                self.ts_probe = current + self.probe_wait;
                self.probe |= ASK_SEND;
            }
        } else {
            self.ts_probe = Timestamp::new(0);
            self.probe_wait = 0;
        }
        // ikcp reuses its ACK header for the probes without clearing it, so
        // a WASK/WINS sent after ACKs in the same flush carries the last
        // ACK's `sn` and `ts` (0 when there were none). Receivers ignore both
        // fields; we copy ikcp so the datagrams are identical byte for byte.
        if self.probe & ASK_SEND != 0 {
            ctl.cmd = CMD_WASK;
            out.push_header(&ctl);
        }
        if self.probe & ASK_TELL != 0 {
            ctl.cmd = CMD_WINS;
            out.push_header(&ctl);
        }
        self.probe = 0;

        // Move queued segments into flight as far as the window allows: a
        // queued segment already carries the sn of its ring position, and
        // xmit and fastack 0 (`queue_segment`); the loop below sets the
        // times of a segment never sent.
        let sent_before = self.snd_nxt.distance_from(self.snd_una);
        if self.nsnd_que > 0 {
            let moved = self
                .nsnd_que
                .min((self.snd_una + cwnd).distance_from(self.snd_nxt));
            self.snd_nxt += moved;
            self.nsnd_que -= moved;
            self.nsnd_buf += moved;
        }

        let rtomin = if self.cfg.nodelay {
            0
        } else {
            self.rx_rto >> 3
        };
        let mut change = false;
        let mut lost = false;
        ctl.cmd = CMD_PUSH;
        // Segments in flight, by distance from snd_una. New data is sent in
        // a run, so the segment after one sent is checked here; the search
        // past segments that are not due is `scan_due`'s. Those sent before
        // this flush are skipped while none of them can be due; otherwise
        // the search computes their earliest resend time again.
        let end = self.snd_nxt.distance_from(self.snd_una);
        let skip = sent_before > 0
            && !self.fastack_seen
            && !self.floor_wild
            && current.get().wrapping_sub(self.floor_at.get()) < FLOOR_SPAN
            && current < self.resend_floor;
        let (start, at) = if skip {
            (sent_before, self.resend_floor)
        } else {
            (0, current + RTO_MAX)
        };
        let mut floor = Floor { at, wild: false };
        self.fastack_seen = false;
        #[cfg(debug_assertions)]
        for i in 0..start {
            let seg = self.snd.at((self.snd_una + i).get());
            debug_assert!(
                !is_due(seg, current, resent, &self.cfg),
                "skipped a due {seg:?}"
            );
        }
        let mut next = due_from(
            &self.snd,
            self.snd_una,
            start..end,
            current,
            resent,
            &self.cfg,
            &mut floor,
        );
        while let Some(i) = next {
            let seg = self.snd.at_mut((self.snd_una + i).get());
            let mut needsend = false;
            if seg.xmit == 0 {
                needsend = true;
                seg.xmit += 1;
                seg.rto = self.rx_rto;
                seg.resendts = current + seg.rto + rtomin;
            } else if current >= seg.resendts {
                needsend = true;
                seg.xmit += 1;
                out.stats.retransmits += 1;
                let step = if !self.cfg.nodelay {
                    seg.rto.max(self.rx_rto)
                } else if self.cfg.gentle_backoff {
                    self.rx_rto / 2
                } else {
                    seg.rto / 2
                };
                // ikcp lets this grow unbounded; once past 2^31 ms the
                // resend time reads as the past (resend every flush) and
                // then the u32 overflows. Stop at the half range instead.
                seg.rto = seg.rto.saturating_add(step).min(RTO_BACKOFF_MAX);
                seg.resendts = current + seg.rto;
                lost = true;
                // ikcp keeps the fast ACKs of a segment resent on timeout:
                // enough of them make it due again at the next flush.
                if seg.fastack >= resent && self.cfg.fast_resend_allowed(seg.xmit) {
                    self.fastack_seen = true;
                }
            } else if seg.fastack >= resent && self.cfg.fast_resend_allowed(seg.xmit) {
                needsend = true;
                seg.xmit += 1;
                seg.fastack = 0;
                seg.resendts = current + seg.rto;
                out.stats.fast_retransmits += 1;
                change = true;
            }
            if needsend {
                seg.ts = current;
                ctl.frg = seg.frg;
                ctl.ts = current;
                ctl.sn = seg.sn;
                ctl.len = seg.len as u32;
                let need = OVERHEAD + seg.len as usize;
                out.push_block(&ctl, self.snd_pool.bytes_mut(seg.block, 0, need));
                out.stats.out_segments += 1;
                if seg.xmit >= self.cfg.dead_link {
                    self.dead = true;
                }
                if seg.resendts < floor.at {
                    floor.at = seg.resendts;
                }
                floor.wild |= !within_span(seg.resendts, current);
            }
            next = due_from(
                &self.snd,
                self.snd_una,
                i + 1..end,
                current,
                resent,
                &self.cfg,
                &mut floor,
            );
        }
        self.resend_floor = floor.at;
        self.floor_at = current;
        self.floor_wild = floor.wild;
        out.finish();

        if change {
            let inflight = self.snd_nxt.distance_from(self.snd_una);
            self.ssthresh = (inflight / 2).max(THRESH_MIN);
            self.cwnd = self.ssthresh.saturating_add(resent);
            self.incr = self.cwnd.saturating_mul(self.mss);
        }
        if lost {
            self.ssthresh = (cwnd / 2).max(THRESH_MIN);
            self.cwnd = 1;
            self.incr = self.mss;
        }
        if self.cwnd < 1 {
            self.cwnd = 1;
            self.incr = self.mss;
        }
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

    #[inline(always)]
    fn validate(&self, data: &[u8]) -> KcpResult<()> {
        let Some((first, _, _)) = split_segment(data) else {
            return Err(KcpError::InvalidPacket);
        };
        self.check_segment(&first)?;
        // Most datagrams carry segments of one size (only ACKs, full-size
        // segments, equal messages): those are checked at a fixed stride
        // first, so that finding a header never waits for the previous
        // header's `len` to be read. The walk below takes over at the first
        // segment of another size, or at a tail shorter than the stride.
        let stride = OVERHEAD + first.len as usize;
        let mut at = stride;
        while let Some(chunk) = data.get(at..at + stride) {
            let h = Header::parse(chunk)?;
            if h.len != first.len {
                break;
            }
            self.check_segment(&h)?;
            at += stride;
        }
        let mut rest = &data[at..];
        while !rest.is_empty() {
            let Some((h, _, tail)) = split_segment(rest) else {
                return Err(KcpError::InvalidPacket);
            };
            self.check_segment(&h)?;
            rest = tail;
        }
        Ok(())
    }

    /// [`validate`](Self::validate)'s checks of one segment whose data fits
    /// in the datagram.
    #[inline]
    fn check_segment(&self, h: &Header) -> KcpResult<()> {
        if !h.has_known_cmd() {
            return Err(KcpError::InvalidPacket);
        }
        if h.conv != self.conv {
            return Err(KcpError::ConvMismatch {
                expected: self.conv,
                found: h.conv,
            });
        }
        if h.cmd == CMD_PUSH
            && (h.len > self.mss || (!self.cfg.stream && h.frg as u32 >= self.cfg.rcv_wnd as u32))
        {
            return Err(KcpError::InvalidPacket);
        }
        Ok(())
    }

    fn snd_free_slots(&self) -> u32 {
        let used = self.snd_nxt.distance_from(self.snd_una) + self.nsnd_que;
        self.snd.capacity() - used
    }

    /// Message mode: queues a message of one segment (`len <= mss`).
    #[inline(always)]
    fn send_one<F: FnMut(&mut [u8])>(&mut self, len: usize, fill: &mut F) -> KcpResult<usize> {
        if self.dead {
            return Err(KcpError::DeadLink);
        }
        if self.snd_free_slots() == 0 {
            return Err(KcpError::BufferFull);
        }
        self.queue_segment(len, 0, fill);
        Ok(len)
    }

    /// Stream mode: top up the last queued (never sent) segment with up to
    /// `len` bytes from `fill`; returns how many.
    fn append_to_last<F: FnMut(&mut [u8])>(&mut self, len: usize, fill: &mut F) -> usize {
        if self.nsnd_que == 0 {
            return 0;
        }
        let last = self.snd.at_mut((self.snd_nxt + (self.nsnd_que - 1)).get());
        let old = last.len as usize;
        let extend = len.min(self.mss as usize - old);
        if extend == 0 {
            return 0;
        }
        last.len += extend as u16;
        let block = last.block;
        fill(self.snd_pool.bytes_mut(block, OVERHEAD + old, extend));
        extend
    }

    /// Queues `count` segments holding `len` bytes from `fill`; capacity
    /// was checked.
    fn queue_fragments<F: FnMut(&mut [u8])>(
        &mut self,
        len: usize,
        count: usize,
        message: bool,
        fill: &mut F,
    ) {
        let mss = self.mss as usize;
        for i in 0..count {
            let chunk = (len - (i * mss).min(len)).min(mss);
            let frg = if message { (count - i - 1) as u8 } else { 0 };
            self.queue_segment(chunk, frg, fill);
        }
    }

    /// Queues one segment of `len` (at most `mss`) bytes from `fill`; a
    /// slot is free.
    #[inline(always)]
    fn queue_segment<F: FnMut(&mut [u8])>(&mut self, len: usize, frg: u8, fill: &mut F) {
        let Some(block) = self.snd_pool.take() else {
            unreachable!("send pool holds one block per ring slot");
        };
        fill(self.snd_pool.bytes_mut(block, OVERHEAD, len));
        let pos = self.snd_nxt + self.nsnd_que;
        *self.snd.at_mut(pos.get()) = crate::segment::Segment {
            sn: pos,
            block,
            len: len as u16,
            frg,
            live: true,
            ..Default::default()
        };
        self.nsnd_que += 1;
    }

    fn rcv_head(&self) -> Seq {
        self.rcv_nxt - self.nrcv_que
    }

    /// Pops the head of the receive queue, returning its block to the pool.
    fn pop_rcv_head(&mut self) {
        let head = self.rcv_head();
        let seg = self.rcv.at_mut(head.get());
        seg.live = false;
        let (block, len) = (seg.block, seg.len as usize);
        self.rcv_pool.give(block);
        self.nrcv_que -= 1;
        self.rcv_queue_bytes -= len;
        self.rcv_head_off = 0;
    }

    fn read_message(&mut self, buf: &mut [u8]) -> usize {
        let mut n = 0;
        while self.nrcv_que > 0 {
            let seg = *self.rcv.at(self.rcv_head().get());
            let len = seg.len as usize;
            buf[n..n + len].copy_from_slice(self.rcv_pool.bytes(seg.block, 0, len));
            n += len;
            self.pop_rcv_head();
            if seg.frg == 0 {
                break;
            }
        }
        n
    }

    fn read_stream(&mut self, buf: &mut [u8]) -> usize {
        let mut n = 0;
        while self.nrcv_que > 0 && n < buf.len() {
            let seg = *self.rcv.at(self.rcv_head().get());
            let off = self.rcv_head_off;
            let take = (seg.len as usize - off).min(buf.len() - n);
            buf[n..n + take].copy_from_slice(self.rcv_pool.bytes(seg.block, off, take));
            n += take;
            if off + take == seg.len as usize {
                self.pop_rcv_head();
            } else {
                self.rcv_head_off = off + take;
            }
        }
        n
    }

    /// Moves segments that are now in order from the out-of-order buffer to
    /// the application's queue, while the window allows.
    fn move_to_queue(&mut self) {
        if self.nrcv_buf == 0 {
            return;
        }
        while self.nrcv_que < self.cfg.rcv_wnd as u32 {
            let seg = self.rcv.at(self.rcv_nxt.get());
            if !seg.live || seg.sn != self.rcv_nxt {
                break;
            }
            self.rcv_queue_bytes += seg.len as usize;
            self.nrcv_que += 1;
            self.nrcv_buf -= 1;
            self.rcv_nxt += 1;
        }
    }

    /// Whether an accepted PUSH can go to the reader in place: next in
    /// order with nothing queued before it, a whole message (or stream
    /// data), and not a copy of one already stored.
    #[inline]
    fn can_hand_over(&self, h: &Header) -> bool {
        if h.sn != self.rcv_nxt || self.nrcv_que != 0 || !(self.cfg.stream || h.frg == 0) {
            return false;
        }
        let slot = self.rcv.at(h.sn.get());
        !(slot.live && slot.sn == h.sn)
    }

    #[inline(always)]
    fn parse_data(&mut self, h: &Header, body: &[u8]) {
        // Caller checked rcv_nxt <= sn < rcv_nxt + rcv_wnd, so the slot is
        // not one of the application queue's.
        let slot = self.rcv.at_mut(h.sn.get());
        if slot.live && slot.sn == h.sn {
            self.stats.duplicate_segments += 1;
            return;
        }
        let Some(block) = self.rcv_pool.take() else {
            unreachable!("receive pool holds one block per ring slot");
        };
        copy_payload(self.rcv_pool.bytes_mut(block, 0, body.len()), body);
        *slot = crate::segment::Segment {
            sn: h.sn,
            ts: h.ts,
            block,
            len: body.len() as u16,
            frg: h.frg,
            live: true,
            ..Default::default()
        };
        if h.sn == self.rcv_nxt && self.nrcv_buf == 0 && self.nrcv_que < self.cfg.rcv_wnd as u32 {
            // In order with nothing waiting behind it, the usual case:
            // straight into the queue, what `move_to_queue` would do.
            self.rcv_queue_bytes += body.len();
            self.nrcv_que += 1;
            self.rcv_nxt += 1;
            return;
        }
        self.nrcv_buf += 1;
        // Only a segment at rcv_nxt can let others follow it into the queue
        // (they stayed behind because it was missing, or the queue was full
        // and still is).
        if h.sn == self.rcv_nxt {
            self.move_to_queue();
        }
    }

    fn wnd_unused(&self) -> u16 {
        (self.cfg.rcv_wnd as u32).saturating_sub(self.nrcv_que) as u16
    }

    /// Sets the RTT estimate and the RTO computed from it.
    fn update_rto(&mut self, srtt: i32, rttval: i32) {
        self.rx_srtt = srtt;
        self.rx_rttval = rttval;
        let rto = srtt as i64 + (self.cfg.interval as i64).max(4 * rttval as i64);
        self.rx_rto = rto.clamp(self.rx_minrto as i64, RTO_MAX as i64) as u32;
    }

    /// Frees an in-flight segment that the peer acknowledged.
    fn ack_segment(&mut self, sn: Seq) {
        let seg = self.snd.at_mut(sn.get());
        if seg.live && seg.xmit > 0 && seg.sn == sn {
            seg.live = false;
            let block = seg.block;
            self.snd_pool.give(block);
            self.nsnd_buf -= 1;
        }
    }

    #[inline(always)]
    fn parse_ack(&mut self, sn: Seq) {
        if sn < self.snd_una || sn >= self.snd_nxt {
            return;
        }
        self.ack_segment(sn);
        // Only freeing the oldest segment can move snd_una.
        if sn == self.snd_una {
            self.shrink_buf();
        }
    }

    // Between calls, snd_una is the oldest live segment in flight, or
    // snd_nxt (`shrink_buf` runs after every ACK that could move it), so a
    // `una` not past snd_una has nothing to do: ikcp's parse_una and
    // shrink_buf in one, without their work in the common case.
    #[inline(always)]
    fn parse_una(&mut self, una: Seq) {
        if una <= self.snd_una {
            return;
        }
        // Everything before `una` is acknowledged; a spoofed una beyond what
        // we sent acknowledges no more than we sent.
        let end = if una > self.snd_nxt {
            self.snd_nxt
        } else {
            una
        };
        for i in 0..end.distance_from(self.snd_una) {
            self.ack_segment(self.snd_una + i);
        }
        // Everything before `end` is freed now: no need to walk it again.
        self.snd_una = end;
        self.shrink_buf();
    }

    /// snd_una := first unacknowledged segment in flight, or snd_nxt.
    fn shrink_buf(&mut self) {
        while self.snd_una < self.snd_nxt && !self.snd.at(self.snd_una.get()).live {
            self.snd_una += 1;
        }
    }

    fn parse_fastack(&mut self, sn: Seq, ts: Timestamp) {
        if sn < self.snd_una || sn >= self.snd_nxt {
            return;
        }
        for i in 0..sn.distance_from(self.snd_una) {
            let seg = self.snd.at_mut((self.snd_una + i).get());
            if seg.live && ts >= seg.ts {
                seg.fastack += 1;
                self.fastack_seen = true;
            }
        }
    }

    fn grow_cwnd(&mut self) {
        if self.cwnd >= self.rmt_wnd {
            return;
        }
        let mss = self.mss;
        if self.cwnd < self.ssthresh {
            self.cwnd += 1;
            self.incr += mss;
        } else {
            self.incr = self.incr.max(mss);
            self.incr += (mss * mss) / self.incr + mss / 16;
            if (self.cwnd + 1) * mss <= self.incr {
                self.cwnd = self.incr.div_ceil(mss);
            }
        }
        if self.cwnd > self.rmt_wnd {
            self.cwnd = self.rmt_wnd;
            self.incr = self.rmt_wnd * mss;
        }
    }

    /// Segments that may be in flight: the send window, the peer's window
    /// and, unless `nc`, the congestion window.
    fn send_window(&self) -> u32 {
        let wnd = (self.cfg.snd_wnd as u32).min(self.rmt_wnd);
        if self.cfg.nc {
            wnd
        } else {
            wnd.min(self.cwnd)
        }
    }

    fn fast_resend_threshold(&self) -> u32 {
        if self.cfg.resend > 0 {
            self.cfg.resend
        } else {
            u32::MAX
        }
    }
}

/// ikcp's RTT estimator: one sample `rtt` folded into the smoothed RTT and
/// its variation (`srtt` 0 before the first sample).
#[inline]
fn rtt_sample(srtt: i32, rttval: i32, rtt: i32) -> (i32, i32) {
    if srtt == 0 {
        return (rtt, rtt / 2);
    }
    // In i64: a forged ACK's `ts` can make `rtt` (and so rttval) close to
    // i32::MAX, and 3 * rttval would overflow.
    let delta = (rtt as i64 - srtt as i64).abs();
    let rttval = ((3 * rttval as i64 + delta) / 4) as i32;
    let srtt = (((7 * srtt as i64 + rtt as i64) / 8) as i32).max(1);
    (srtt, rttval)
}

/// The first segment in flight, at a distance in `range` from `una`, that
/// flush must send now: never sent, due for retransmission, or with enough
/// fast ACKs. New data goes out in a run, so the first segment is checked
/// here, inline; a search past segments that are not due (most of those in
/// flight at most flushes) is `scan_due`'s, which lowers `floor` to the
/// resend time of each segment it passes.
#[inline]
fn due_from(
    snd: &Ring,
    una: Seq,
    range: core::ops::Range<u32>,
    current: Timestamp,
    resent: u32,
    cfg: &KcpConfig,
    floor: &mut Floor,
) -> Option<u32> {
    let first = range.start;
    if first >= range.end {
        return None;
    }
    if is_due(snd.at((una + first).get()), current, resent, cfg) {
        return Some(first);
    }
    scan_due(snd, una, range, current, resent, cfg, floor)
}

/// [`due_from`]'s search: a loop without calls, out of line so that its
/// state stays in registers instead of competing with `flush`'s writer.
#[inline(never)]
fn scan_due(
    snd: &Ring,
    una: Seq,
    range: core::ops::Range<u32>,
    current: Timestamp,
    resent: u32,
    cfg: &KcpConfig,
    floor: &mut Floor,
) -> Option<u32> {
    let mut low = floor.at;
    let mut far = false;
    for i in range {
        let seg = snd.at((una + i).get());
        if !seg.live {
            continue;
        }
        if is_due(seg, current, resent, cfg) {
            floor.at = low;
            floor.wild |= far;
            return Some(i);
        }
        if seg.resendts < low {
            low = seg.resendts;
        }
        far |= !within_span(seg.resendts, current);
    }
    floor.at = low;
    floor.wild |= far;
    None
}

/// What a flush learns of the segments it leaves in flight: a lower bound
/// of their resend times, and whether one of them lies [`FLOOR_SPAN`] or
/// more ahead (then the next flush visits them all).
struct Floor {
    at: Timestamp,
    wild: bool,
}

/// Whether a resend time lies less than [`FLOOR_SPAN`] after `current`,
/// so that flush may stand for it with `resend_floor` (see [`Kcp::flush`]).
#[inline]
fn within_span(resendts: Timestamp, current: Timestamp) -> bool {
    resendts.get().wrapping_sub(current.get()) < FLOOR_SPAN
}

/// Whether flush must send `seg` now (see [`due_from`]).
#[inline]
fn is_due(seg: &Segment, current: Timestamp, resent: u32, cfg: &KcpConfig) -> bool {
    seg.live
        && (seg.xmit == 0
            || current >= seg.resendts
            || (seg.fastack >= resent && cfg.fast_resend_allowed(seg.xmit)))
}

/// Packs segments into MTU-sized datagrams, as ikcp's flush does.
struct Writer<'a, O: KcpOutput> {
    buf: &'a mut [u8],
    len: usize,
    output: &'a mut O,
    stats: &'a mut KcpStats,
}

impl<O: KcpOutput> Writer<'_, O> {
    /// Appends a segment without data (ACK, WASK, WINS).
    #[inline]
    fn push_header(&mut self, h: &Header) {
        if self.len + OVERHEAD > self.buf.len() {
            self.finish();
        }
        h.emit(&mut self.buf[self.len..]);
        self.len += OVERHEAD;
    }

    /// Appends a PUSH whose `h.len` bytes of data sit in a send-pool
    /// `block` after a header's room (`block` is the header's room and the
    /// data, `OVERHEAD + h.len` bytes).
    ///
    /// A segment that starts a datagram and leaves no room for another
    /// header after it (a full-size one, typically) would go out alone
    /// anyway: its header is written into the block's room and the block is
    /// output as it is, without the copy into the datagram buffer. The
    /// datagrams are the same either way.
    #[inline]
    fn push_block(&mut self, h: &Header, block: &mut [u8]) {
        let need = OVERHEAD + h.len as usize;
        if self.len + need > self.buf.len() {
            self.finish();
        }
        if self.len == 0 && need + OVERHEAD > self.buf.len() {
            h.emit(block);
            self.send(block);
            return;
        }
        h.emit(&mut self.buf[self.len..]);
        copy_payload(
            &mut self.buf[self.len + OVERHEAD..self.len + need],
            &block[OVERHEAD..],
        );
        self.len += need;
    }

    /// Outputs the datagram assembled so far, if any.
    fn finish(&mut self) {
        if self.len == 0 {
            return;
        }
        let len = core::mem::take(&mut self.len);
        Self::send_to(self.output, self.stats, &self.buf[..len]);
    }

    fn send(&mut self, dgram: &[u8]) {
        Self::send_to(self.output, self.stats, dgram);
    }

    fn send_to(output: &mut O, stats: &mut KcpStats, dgram: &[u8]) {
        stats.out_datagrams += 1;
        stats.out_bytes += dgram.len() as u64;
        if output.output(dgram).is_err() {
            stats.output_errors += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    //! Runs in every build, including the no-alloc profiles (`cargo test
    //! --lib --no-default-features [--features small-buffers]`), where the
    //! integration tests and the simulator are not available.
    use super::*;
    use std::vec::Vec;

    #[derive(Default)]
    struct Wire(Vec<Vec<u8>>);

    impl KcpOutput for Wire {
        fn output(&mut self, data: &[u8]) -> KcpResult<usize> {
            self.0.push(data.to_vec());
            Ok(data.len())
        }
    }

    /// Moves `msgs` from `a` to `b` over a link that drops every `drop_nth`
    /// datagram, returning what `b` received.
    fn exchange(cfg: KcpConfig, msgs: &[Vec<u8>], drop_nth: usize) -> Vec<Vec<u8>> {
        let mut a = Kcp::with_config(3, Wire::default(), cfg).unwrap();
        let mut b = Kcp::with_config(3, Wire::default(), cfg).unwrap();
        let mut got = Vec::new();
        let mut next = 0;
        let mut buf = std::vec![0u8; cfg.max_message()];
        let mut count = 0usize;
        for now in (0..600_000u32).step_by(10) {
            while next < msgs.len() && a.send(&msgs[next]).is_ok() {
                next += 1;
            }
            a.update(now);
            b.update(now);
            for d in core::mem::take(&mut a.output_mut().0) {
                count += 1;
                if !count.is_multiple_of(drop_nth) {
                    b.input(&d).unwrap();
                }
            }
            for d in core::mem::take(&mut b.output_mut().0) {
                count += 1;
                if !count.is_multiple_of(drop_nth) {
                    a.input(&d).unwrap();
                }
            }
            while let Ok(n) = b.recv(&mut buf) {
                got.push(buf[..n].to_vec());
            }
            if got.len() == msgs.len() {
                break;
            }
        }
        got
    }

    /// Without `alloc` a `Kcp` holds its buffers inline (hundreds of KiB
    /// in the default profile), more than a test thread's stack in debug.
    fn with_big_stack(f: impl FnOnce() + Send + 'static) {
        std::thread::Builder::new()
            .stack_size(64 << 20)
            .spawn(f)
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn asked_and_told_windows_go_out_at_the_next_flush() {
        with_big_stack(|| {
            let mut k = Kcp::new(5, Wire::default());
            k.update(0);
            k.output_mut().0.clear();
            k.tell_window();
            assert!(k.tells_window());
            k.ask_window();
            k.flush();
            let cmds: Vec<(u8, u16)> = k
                .output()
                .0
                .iter()
                .flat_map(|d| {
                    d.chunks(OVERHEAD)
                        .map(|h| (h[4], u16::from_le_bytes([h[6], h[7]])))
                })
                .collect();
            let wnd = k.config().rcv_wnd;
            assert_eq!(cmds, [(CMD_WASK, wnd), (CMD_WINS, wnd)]);
            assert!(!k.tells_window(), "told once per call");
            k.output_mut().0.clear();
            k.flush();
            assert!(k.output().0.is_empty());
        });
    }

    #[test]
    fn presets_deliver_in_this_build_despite_loss() {
        with_big_stack(presets_deliver);
    }

    fn presets_deliver() {
        for cfg in [KcpConfig::default(), KcpConfig::fast()] {
            let max = cfg.max_message();
            let msgs: Vec<Vec<u8>> = (0..60usize)
                .map(|i| (0..(i * 97) % (max + 1)).map(|j| (i + j) as u8).collect())
                .chain([std::vec![7u8; max]])
                .collect();
            assert_eq!(exchange(cfg, &msgs, 7), msgs, "{cfg:?}");
        }
    }

    #[test]
    fn a_clock_jump_of_half_the_range_skips_no_due_segment() {
        with_big_stack(clock_jump_of_half_the_range);
    }

    /// Timestamps compare by half range, so after a jump of about 2^31 ms
    /// one segment in flight can read as due while an earlier one does not.
    /// The flush that skips segments below `resend_floor` must resend
    /// exactly what a full scan would (found by the `kcp_stateful` fuzzer).
    fn clock_jump_of_half_the_range() {
        // No congestion window: both segments go out at once.
        let cfg = KcpConfig {
            nc: true,
            ..KcpConfig::default()
        };
        let mut a = Kcp::with_config(3, Wire::default(), cfg).unwrap();
        a.send(b"first").unwrap();
        a.update(0);
        a.update(50);
        a.send(b"second").unwrap();
        a.flush();
        a.output_mut().0.clear();
        let resend_at = |a: &Kcp<Wire>, sn: u32| a.snd.at(sn).resendts.get();
        let (r0, r1) = (resend_at(&a, 0), resend_at(&a, 1));
        assert!(r1 > r0 && r1 - r0 < 1000, "{r0} {r1}");
        // Half a range past the first resend time, and a little less past
        // the second: the first reads as not yet due, the second as due.
        let jump = r0 + (1u32 << 31) + (r1 - r0) / 2;
        a.update(jump);
        let mut resent = Vec::new();
        for d in &a.output().0 {
            let mut rest = &d[..];
            while let Some((h, _, after)) = split_segment(rest) {
                if h.cmd == CMD_PUSH {
                    resent.push(h.sn.get());
                }
                rest = after;
            }
        }
        assert_eq!(resent, [1], "segments resent after the jump");
    }

    #[test]
    fn a_message_over_the_limit_is_refused() {
        with_big_stack(message_over_the_limit);
    }

    fn message_over_the_limit() {
        let cfg = KcpConfig::default();
        let mut a = Kcp::with_config(3, Wire::default(), cfg).unwrap();
        let too_big = std::vec![0u8; cfg.max_message() + 1];
        assert_eq!(
            a.send(&too_big),
            Err(KcpError::DataTooLarge {
                max: cfg.max_message()
            })
        );
    }
}
