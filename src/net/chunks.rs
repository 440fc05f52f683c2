//! Chunks cut from one reusable buffer, so that a steady exchange of small
//! writes and deliveries allocates nothing.
//!
//! A stream's writes travel to the socket task, and the task's deliveries to
//! the reader, as [`Bytes`] chunks. A small chunk is cut
//! ([`BytesMut::split`]) from a buffer of [`REUSE`] bytes; once every chunk
//! cut from it has been dropped, [`BytesMut::reserve`] takes the whole buffer
//! back without allocating. While some are still queued the next cut needs a
//! new buffer: two allocations (the buffer and its shared header) per
//! `REUSE` bytes at worst, where each chunk had its own before. A larger
//! chunk gets its own allocation, as it costs little beside its copy, so an
//! idle session keeps at most `REUSE` bytes here per direction.

use bytes::{Bytes, BytesMut};

/// Bytes of the reused buffer: 64 ping-pong messages of 64 bytes, or two
/// full-size segments, between reclaims.
pub(crate) const REUSE: usize = 4096;

/// Where one direction's chunks are cut from.
#[derive(Debug, Default)]
pub(crate) struct ChunkBuf(BytesMut);

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
        if self.0.capacity() < max {
            // Reclaims the buffer when no chunk cut from it is alive.
            self.0.reserve(REUSE);
        }
        write(&mut self.0);
        debug_assert!(self.0.len() <= max);
        self.0.split().freeze()
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
        let big = buf.copy(&[9; REUSE + 1]);
        assert_eq!(big.len(), REUSE + 1);
        assert!(
            buf.0.capacity() <= REUSE,
            "a large chunk was cut from the buffer"
        );
    }

    #[test]
    fn a_dropped_chunk_gives_its_room_back() {
        let mut buf = ChunkBuf::default();
        let first = buf.copy(&[1; 64]);
        let base = first.as_ptr();
        drop(first);
        // Walk through the buffer; every chunk is dropped at once, so the
        // cut after the buffer runs out starts over at its beginning.
        let again = (0..REUSE / 64)
            .map(|_| buf.copy(&[2; 64]).as_ptr())
            .any(|p| p == base);
        assert!(again, "the buffer was not taken back");
    }
}
