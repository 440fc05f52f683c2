//! The receive side: in-order segments out of the receive ring to the
//! application, whole messages or a stream.

use crate::error::{KcpError, KcpResult};
use crate::sequence::Seq;
use crate::storage::copy_payload;

use super::{Kcp, KcpOutput, ASK_TELL};

impl<O: KcpOutput> Kcp<O> {
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
    pub(super) fn hand_over_head<F: FnMut(&[u8], bool)>(&mut self, read: &mut F) -> (usize, bool) {
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
    pub(super) fn tell_if_reopened(&mut self, was_full: bool) {
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

    pub(super) fn rcv_head(&self) -> Seq {
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
    pub(super) fn move_to_queue(&mut self) {
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
}
