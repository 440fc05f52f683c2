//! Chunks cut from one reusable buffer, so that a steady exchange of small
//! writes and deliveries allocates nothing.
//!
//! A stream's writes travel to the socket task, and the task's deliveries to
//! the reader, as [`Bytes`] chunks. A small chunk is cut
//! ([`BytesMut::split`]) from a buffer kept per direction; once every chunk
//! cut from it has been dropped, [`BytesMut::try_reclaim`] takes the whole
//! buffer back without allocating. A request/response exchange (each chunk
//! consumed before the next is cut) so reuses one buffer the size of its
//! largest chunk, and an idle session keeps only that.
//!
//! When the chunks cut earlier are still queued (a burst), the next cut
//! needs a new buffer: it is made twice as large as the last, up to
//! [`REUSE`], so a burst costs a few allocations per `REUSE` bytes rather
//! than one per chunk. A chunk larger than `REUSE` gets its own allocation:
//! beside its copy that costs little, and no session keeps more than
//! `REUSE` bytes here per direction.

use bytes::{Bytes, BytesMut};

use super::config::RECV_CHUNK;

/// Largest buffer kept, as large as a delivery of stream data: a burst of
/// small chunks costs two allocations per 16 KiB.
pub(crate) const REUSE: usize = RECV_CHUNK;

/// Where one direction's chunks are cut from.
#[derive(Debug, Default)]
pub(crate) struct ChunkBuf {
    buf: BytesMut,
    /// Capacity the buffer was made with.
    made: usize,
}

impl ChunkBuf {
    /// A chunk holding a copy of `data`.
    pub fn copy(&mut self, data: &[u8]) -> Bytes {
        self.fill(data.len(), |b| b.extend_from_slice(data))
    }

    /// A chunk of what `write` appends, which must be at most `max` bytes
    /// (more would grow the buffer this keeps).
    pub fn fill(&mut self, max: usize, write: impl FnOnce(&mut BytesMut)) -> Bytes {
        if max > REUSE {
            let mut own = BytesMut::with_capacity(max);
            write(&mut own);
            return own.freeze();
        }
        if self.buf.capacity() < max && !self.buf.try_reclaim(max) {
            self.made = (2 * self.made).clamp(max, REUSE);
            self.buf = BytesMut::with_capacity(self.made);
        }
        write(&mut self.buf);
        debug_assert!(self.buf.len() <= max);
        self.buf.split().freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_hold_their_bytes_after_the_buffer_is_reused() {
        let mut buf = ChunkBuf::default();
        let kept: Vec<Bytes> = (0..200u8).map(|i| buf.copy(&[i; 100])).collect();
        for (i, c) in kept.iter().enumerate() {
            assert_eq!(&c[..], &[i as u8; 100][..]);
        }
        drop(kept);
        for i in 0..200u8 {
            let c = buf.copy(&[i; 100]);
            assert_eq!(&c[..], &[i; 100][..]);
        }
        let spare = buf.buf.capacity();
        let big = buf.copy(&[9; REUSE + 1]);
        assert_eq!(&big[..], &[9; REUSE + 1][..]);
        assert_eq!(
            buf.buf.capacity(),
            spare,
            "a large chunk went through the buffer"
        );
    }

    #[test]
    fn a_burst_doubles_the_buffer_up_to_reuse() {
        let mut buf = ChunkBuf::default();
        let kept: Vec<Bytes> = (0..4).map(|_| buf.copy(&[0; 64])).collect();
        // Made 64 for the first, 128 for the next two, 256 for the fourth.
        assert_eq!(buf.made, 256);
        let more: Vec<Bytes> = (0..1000).map(|_| buf.copy(&[0; 64])).collect();
        assert_eq!(buf.made, REUSE);
        drop((kept, more));
        buf.copy(&[0; 64]);
        assert_eq!(buf.made, REUSE, "a reclaimed buffer keeps its size");
    }

    #[test]
    fn a_dropped_chunk_gives_its_room_back() {
        let mut buf = ChunkBuf::default();
        let first = buf.copy(&[1; 64]);
        let base = first.as_ptr();
        drop(first);
        // Each chunk is dropped before the next is cut: the one buffer, of
        // the chunk's size, serves them all.
        for i in 0..100u8 {
            let c = buf.copy(&[i; 64]);
            assert_eq!(c.as_ptr(), base, "the buffer was not taken back");
            assert_eq!(&c[..], &[i; 64][..]);
        }
        assert_eq!(buf.made, 64);
    }
}
