//! Datagrams from the peer: validated whole, then ACKs, window updates
//! and data applied, as ikcp's `ikcp_input`.

use crate::codec::{split_segment, Header};
use crate::constants::*;
use crate::error::{KcpError, KcpResult};
use crate::sequence::{Seq, Timestamp};
use crate::storage::copy_payload;

use super::{Kcp, KcpOutput, ASK_TELL};

impl<O: KcpOutput> Kcp<O> {
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
