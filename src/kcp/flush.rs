//! The clock and the output: `update`, `check` and `flush`, which sends
//! ACKs, window probes, new data and retransmissions in MTU-sized
//! datagrams, as ikcp's `ikcp_flush`.

use crate::codec::Header;
use crate::config::KcpConfig;
use crate::constants::*;
use crate::segment::Segment;
use crate::sequence::{Seq, Timestamp};
use crate::stats::KcpStats;
use crate::storage::{copy_payload, Ring};

use super::{Kcp, KcpOutput, ASK_SEND, ASK_TELL};

/// Largest per-segment RTO after backoff: the furthest a resend time can
/// be and still compare as "later" (wrapping half range, ~24.8 days).
const RTO_BACKOFF_MAX: u32 = i32::MAX as u32;
/// How far ahead of a flush's clock the resend times that the next flush
/// may skip can lie, and how far the clock may move before then: a quarter
/// of the range each, so that every comparison the skip stands for spans
/// less than half the range and agrees with the one it replaces.
const FLOOR_SPAN: u32 = 1 << 30;

impl<O: KcpOutput> Kcp<O> {
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

    fn wnd_unused(&self) -> u16 {
        (self.cfg.rcv_wnd as u32).saturating_sub(self.nrcv_que) as u16
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
