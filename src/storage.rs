//! Fixed-capacity storage for one session: segment rings and payload pools.
//!
//! Two builds share one shape:
//! - with `alloc`, every buffer is sized from the configuration when the
//!   session is built, and payload blocks are handed out from a pool that
//!   grows on first use up to its fixed maximum, so an idle session that only
//!   ever exchanged a few messages keeps a few blocks, not its whole window;
//! - without `alloc`, every buffer is an array sized by
//!   [`profile`](crate::constants::profile) at compile time.
//!
//! In both, ring capacities are powers of two and a sequence number maps to
//! its slot with `sn & mask`; no operation after construction allocates
//! beyond the pool's high-water mark.

use crate::segment::Segment;

/// A ring of segment slots indexed by `sn & mask`.
pub(crate) struct Ring {
    slots: imp::Slots,
    mask: u32,
}

impl Ring {
    /// Capacity rounded up to a power of two.
    pub fn with_capacity(min: usize) -> Ring {
        let cap = min.next_power_of_two();
        let slots = imp::slots(cap);
        let mask = (slots.len() - 1) as u32;
        Ring { slots, mask }
    }

    /// Number of slots.
    #[inline]
    pub fn capacity(&self) -> u32 {
        self.mask + 1
    }

    #[inline]
    pub fn at(&self, pos: u32) -> &Segment {
        &self.slots[(pos & self.mask) as usize]
    }

    #[inline]
    pub fn at_mut(&mut self, pos: u32) -> &mut Segment {
        &mut self.slots[(pos & self.mask) as usize]
    }

    /// Bytes of metadata held.
    pub fn footprint(&self) -> usize {
        self.slots.len() * core::mem::size_of::<Segment>()
    }
}

/// A fixed list of pending ACKs `(sn, ts)`.
pub(crate) struct AckList {
    items: imp::Acks,
    len: usize,
}

impl AckList {
    pub fn with_capacity(cap: usize) -> AckList {
        AckList {
            items: imp::acks(cap),
            len: 0,
        }
    }

    /// Adds an ACK; returns false (and drops it) when the list is full.
    #[inline]
    pub fn push(&mut self, sn: u32, ts: u32) -> bool {
        match self.items.get_mut(self.len) {
            Some(slot) => {
                *slot = (sn, ts);
                self.len += 1;
                true
            }
            None => false,
        }
    }

    #[inline]
    pub fn as_slice(&self) -> &[(u32, u32)] {
        &self.items[..self.len]
    }

    #[inline]
    pub fn clear(&mut self) {
        self.len = 0;
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn footprint(&self) -> usize {
        self.items.len() * core::mem::size_of::<(u32, u32)>()
    }
}

/// `dst.copy_from_slice(src)` without a call to `memcpy` for up to 64
/// bytes: two fixed-size moves that overlap in the middle (the small-size
/// path of `memcpy` itself, inlined). Larger payloads go to `memcpy`.
#[inline(always)]
pub(crate) fn copy_payload(dst: &mut [u8], src: &[u8]) {
    let n = src.len();
    if n > 64 {
        dst.copy_from_slice(src);
    } else if n >= 32 {
        dst[..32].copy_from_slice(&src[..32]);
        dst[n - 32..n].copy_from_slice(&src[n - 32..]);
    } else if n >= 16 {
        dst[..16].copy_from_slice(&src[..16]);
        dst[n - 16..n].copy_from_slice(&src[n - 16..]);
    } else if n >= 8 {
        dst[..8].copy_from_slice(&src[..8]);
        dst[n - 8..n].copy_from_slice(&src[n - 8..]);
    } else {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = *s;
        }
    }
}

pub(crate) use imp::{FlushBuf, RecvPool, SendPool};

#[cfg(feature = "alloc")]
mod imp {
    use super::Segment;
    use alloc::{boxed::Box, vec, vec::Vec};

    pub type Slots = Box<[Segment]>;
    pub type Acks = Box<[(u32, u32)]>;
    /// Send blocks are `mtu` bytes (header room, then the payload); receive
    /// blocks `mss`. Both sizes are runtime values here.
    pub type SendPool = Pool;
    pub type RecvPool = Pool;

    pub fn slots(n: usize) -> Slots {
        vec![Segment::default(); n].into_boxed_slice()
    }

    pub fn acks(n: usize) -> Acks {
        vec![(0, 0); n].into_boxed_slice()
    }

    /// The datagram being assembled by `flush`, `mtu` bytes.
    pub struct FlushBuf(Box<[u8]>);

    impl FlushBuf {
        pub fn new(mtu: usize) -> FlushBuf {
            FlushBuf(vec![0; mtu].into_boxed_slice())
        }
        #[inline]
        pub fn bytes(&mut self) -> &mut [u8] {
            &mut self.0
        }
        pub fn footprint(&self) -> usize {
            self.0.len()
        }
    }

    /// Payload blocks of `block` bytes, at most `max` of them, made on first
    /// use and recycled through a free list.
    pub struct Pool {
        bytes: Vec<u8>,
        free: Vec<u32>,
        block: usize,
        made: u32,
        max: u32,
    }

    impl Pool {
        pub fn new(block: usize, max: u32) -> Pool {
            Pool {
                bytes: Vec::new(),
                free: Vec::with_capacity(max as usize),
                block,
                made: 0,
                max,
            }
        }

        /// A free block, or `None` when all `max` are in use.
        #[inline]
        pub fn take(&mut self) -> Option<u32> {
            if let Some(id) = self.free.pop() {
                return Some(id);
            }
            if self.made == self.max {
                return None;
            }
            // Grow geometrically so that reaching the high-water mark costs
            // O(log max) allocations, never one per block.
            let want = (self.made as usize + 1) * self.block;
            if self.bytes.capacity() < want {
                let target = (want * 2).min(self.max as usize * self.block);
                self.bytes.reserve_exact(target - self.bytes.len());
            }
            self.bytes.resize(want, 0);
            self.made += 1;
            Some(self.made - 1)
        }

        /// Makes every block not made yet, written so that their pages are
        /// mapped now too: from here on `take` never allocates.
        pub fn make_all(&mut self) {
            let total = self.max as usize * self.block;
            self.bytes.reserve_exact(total - self.bytes.len());
            self.bytes.resize(total, 0);
            // Popped lowest first, the order `take` makes them in.
            self.free.extend((self.made..self.max).rev());
            self.made = self.max;
        }

        #[inline]
        pub fn give(&mut self, id: u32) {
            debug_assert!(id < self.made);
            self.free.push(id);
        }

        /// Bytes `start..start + len` of block `id`: one range check, on
        /// the whole pool; the caller keeps `start + len` within a block.
        #[inline]
        pub fn bytes(&self, id: u32, start: usize, len: usize) -> &[u8] {
            debug_assert!(id < self.made && start + len <= self.block);
            let at = id as usize * self.block + start;
            &self.bytes[at..at + len]
        }

        /// [`bytes`](Self::bytes), mutably.
        #[inline]
        pub fn bytes_mut(&mut self, id: u32, start: usize, len: usize) -> &mut [u8] {
            debug_assert!(id < self.made && start + len <= self.block);
            let at = id as usize * self.block + start;
            &mut self.bytes[at..at + len]
        }

        /// Gives every block back to the allocator when none is in use, so
        /// that the pool starts over as a new one. A block in use pins them
        /// all (blocks are named by index).
        pub fn release_if_unused(&mut self) {
            if self.made > 0 && self.free.len() == self.made as usize {
                self.bytes = Vec::new();
                self.free.clear();
                self.made = 0;
            }
        }

        /// Bytes held now (payload plus free list).
        pub fn footprint(&self) -> usize {
            self.bytes.capacity() + self.free.capacity() * 4
        }

        /// Bytes held once every block is in use.
        pub fn max_footprint(&self) -> usize {
            self.max as usize * (self.block + 4)
        }
    }
}

#[cfg(not(feature = "alloc"))]
mod imp {
    use super::Segment;
    use crate::constants::profile::{ACK_SLOTS, MSS_MAX, MTU_MAX, RCV_SLOTS, SND_SLOTS};

    const SLOTS_MAX: usize = if SND_SLOTS > RCV_SLOTS {
        SND_SLOTS
    } else {
        RCV_SLOTS
    };

    pub type Slots = [Segment; SLOTS_MAX];
    pub type Acks = [(u32, u32); ACK_SLOTS];
    /// Send blocks hold a header's room before the payload.
    pub type SendPool = Pool<MTU_MAX>;
    pub type RecvPool = Pool<MSS_MAX>;

    pub fn slots(n: usize) -> Slots {
        // The ring uses the first `n` slots; asking for more than the
        // profile holds is refused by `KcpConfig::validate` before we get here.
        assert!(n <= SLOTS_MAX, "ring larger than the compiled profile");
        [Segment::default(); SLOTS_MAX]
    }

    pub fn acks(_n: usize) -> Acks {
        [(0, 0); ACK_SLOTS]
    }

    /// The datagram being assembled by `flush`.
    pub struct FlushBuf([u8; MTU_MAX], usize);

    impl FlushBuf {
        pub fn new(mtu: usize) -> FlushBuf {
            FlushBuf([0; MTU_MAX], mtu)
        }
        #[inline]
        pub fn bytes(&mut self) -> &mut [u8] {
            &mut self.0[..self.1]
        }
        pub fn footprint(&self) -> usize {
            MTU_MAX
        }
    }

    /// `SLOTS_MAX` payload blocks of `BLOCK` bytes; block `i` belongs to
    /// whoever took it from the free list.
    pub struct Pool<const BLOCK: usize> {
        blocks: [[u8; BLOCK]; SLOTS_MAX],
        free: [u16; SLOTS_MAX],
        nfree: usize,
    }

    impl<const BLOCK: usize> Pool<BLOCK> {
        pub fn new(_block: usize, max: u32) -> Self {
            let max = (max as usize).min(SLOTS_MAX);
            let mut free = [0u16; SLOTS_MAX];
            for (i, f) in free.iter_mut().enumerate().take(max) {
                *f = (max - 1 - i) as u16;
            }
            Pool {
                blocks: [[0; BLOCK]; SLOTS_MAX],
                free,
                nfree: max,
            }
        }

        #[inline]
        pub fn take(&mut self) -> Option<u32> {
            if self.nfree == 0 {
                return None;
            }
            self.nfree -= 1;
            Some(self.free[self.nfree] as u32)
        }

        #[inline]
        pub fn give(&mut self, id: u32) {
            self.free[self.nfree] = id as u16;
            self.nfree += 1;
        }

        /// Bytes `start..start + len` of block `id`.
        #[inline]
        pub fn bytes(&self, id: u32, start: usize, len: usize) -> &[u8] {
            &self.blocks[id as usize][start..start + len]
        }

        /// [`bytes`](Self::bytes), mutably.
        #[inline]
        pub fn bytes_mut(&mut self, id: u32, start: usize, len: usize) -> &mut [u8] {
            &mut self.blocks[id as usize][start..start + len]
        }

        /// Storage is inline: every block exists already.
        pub fn make_all(&mut self) {}

        /// Storage is inline: nothing to give back.
        pub fn release_if_unused(&mut self) {}

        pub fn footprint(&self) -> usize {
            core::mem::size_of::<Self>()
        }

        pub fn max_footprint(&self) -> usize {
            core::mem::size_of::<Self>()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(feature = "alloc")]
    fn ring_capacity_is_a_power_of_two_and_wraps() {
        let mut r = Ring::with_capacity(100);
        assert_eq!(r.capacity(), 128);
        r.at_mut(u32::MAX).len = 7;
        assert_eq!(r.at(127).len, 7);
        r.at_mut(128).len = 9; // same slot as 0
        assert_eq!(r.at(0).len, 9);
    }

    #[test]
    fn pool_recycles_blocks_and_respects_its_maximum() {
        let mut p = RecvPool::new(16, 3);
        let a = p.take().unwrap();
        let b = p.take().unwrap();
        let c = p.take().unwrap();
        assert!(p.take().is_none());
        assert!(a != b && b != c && a != c);
        p.bytes_mut(b, 0, 3).copy_from_slice(b"abc");
        p.give(b);
        let d = p.take().unwrap();
        assert_eq!(d, b);
        assert_eq!(p.bytes(d, 0, 3), b"abc");
        assert!(p.take().is_none());
    }

    #[test]
    fn copy_payload_copies_every_length() {
        let src: [u8; 130] = core::array::from_fn(|i| i as u8 ^ 0x5a);
        for n in 0..=src.len() {
            let mut dst = [0u8; 132];
            copy_payload(&mut dst[1..1 + n], &src[..n]);
            assert_eq!(&dst[1..1 + n], &src[..n], "length {n}");
            assert_eq!(dst[0], 0);
            assert!(dst[1 + n..].iter().all(|&b| b == 0), "length {n}");
        }
    }

    #[test]
    fn ack_list_refuses_past_capacity() {
        let mut acks = AckList::with_capacity(2);
        assert!(acks.push(1, 10));
        assert!(acks.push(2, 20));
        let cap = acks.footprint() / 8;
        for i in 2..cap {
            assert!(acks.push(i as u32, 0));
        }
        assert!(!acks.push(99, 99));
        assert_eq!(acks.len(), cap);
        assert_eq!(acks.as_slice()[1], (2, 20));
        acks.clear();
        assert_eq!(acks.len(), 0);
    }
}
