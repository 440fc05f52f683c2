//! The send side: the application's messages into segments in the send
//! ring, in place or copied.

use crate::constants::*;
use crate::error::{KcpError, KcpResult};
use crate::storage::copy_payload;

use super::{Kcp, KcpOutput};

impl<O: KcpOutput> Kcp<O> {
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
    ///   peer can reassemble
    ///   ([`KcpConfig::max_message`](crate::KcpConfig::max_message));
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

    /// Segments not yet acknowledged: in flight plus queued.
    pub fn wait_snd(&self) -> u32 {
        self.nsnd_buf + self.nsnd_que
    }

    /// Bytes more that [`send`](Self::send) would accept now, as whole
    /// segments (stream mode may append a little more to the last one).
    pub fn send_capacity(&self) -> usize {
        self.snd_free_slots() as usize * self.mss as usize
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
}
