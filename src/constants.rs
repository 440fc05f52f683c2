//! Protocol constants (from ikcp 1.7) and the compiled buffer profile.

/// Size of a KCP segment header on the wire.
pub const OVERHEAD: usize = 24;

/// Data segment.
pub const CMD_PUSH: u8 = 81;
/// Acknowledgement of one segment.
pub const CMD_ACK: u8 = 82;
/// Window probe: "tell me your window".
pub const CMD_WASK: u8 = 83;
/// Window announcement: "this is my window".
pub const CMD_WINS: u8 = 84;

/// Minimum RTO with `nodelay`.
pub const RTO_NDL: u32 = 30;
/// Minimum RTO without `nodelay`.
pub const RTO_MIN: u32 = 100;
/// RTO before the first RTT sample.
pub const RTO_DEF: u32 = 200;
/// Upper bound of the RTO.
pub const RTO_MAX: u32 = 60_000;

/// ikcp's default send window.
pub const WND_SND: u16 = 32;
/// ikcp's default receive window, and its fragment limit.
pub const WND_RCV: u16 = 128;
/// ikcp's default MTU.
pub const MTU_DEF: u32 = 1400;
/// ikcp's default flush interval in milliseconds.
pub const INTERVAL_DEF: u32 = 100;
/// ikcp clamps the interval to this range; we refuse values outside it.
pub const INTERVAL_MIN: u32 = 10;
/// See [`INTERVAL_MIN`].
pub const INTERVAL_MAX: u32 = 5000;
/// A segment is declared lost for good after this many transmissions.
pub const DEADLINK: u32 = 20;
/// Initial slow-start threshold.
pub const THRESH_INIT: u32 = 2;
/// Smallest slow-start threshold.
pub const THRESH_MIN: u32 = 2;
/// First window-probe wait (7 s).
pub const PROBE_INIT: u32 = 7_000;
/// Largest window-probe wait (120 s).
pub const PROBE_LIMIT: u32 = 120_000;
/// A segment is fast-resent at most while its transmissions stay within this.
pub const FASTACK_LIMIT: u32 = 5;

/// `update` re-synchronises its flush clock when it is this far off (ikcp).
pub const CLOCK_JUMP: i32 = 10_000;

/// How far ahead `check` looks when the session has nothing to do at all.
///
/// ikcp caps every wait at one `interval`, which makes idle sessions wake up
/// 10 to 100 times a second for nothing; we only promise to be asked again
/// before the flush clock would be considered to have jumped.
pub const IDLE_CHECK: u32 = (CLOCK_JUMP as u32) - 1;

/// Largest window the wire can describe (`wnd` is 16 bits).
pub const WND_LIMIT: u16 = u16::MAX;

/// Compiled capacities of the no-alloc build (fixed arrays inside `Kcp`).
///
/// With the `alloc` feature buffers are sized from the configuration at
/// construction instead, and these only bound what a configuration may ask.
pub mod profile {
    #[cfg(not(feature = "small-buffers"))]
    mod values {
        /// Largest MTU the fixed buffers hold.
        pub const MTU_MAX: usize = 1500;
        /// Send ring slots (in flight plus queued), a power of two.
        pub const SND_SLOTS: usize = 256;
        /// Receive ring slots (out of order plus unread), a power of two.
        pub const RCV_SLOTS: usize = 256;
        /// Largest send window.
        pub const SND_WND_MAX: u16 = 128;
        /// Largest receive window (half the receive ring).
        pub const RCV_WND_MAX: u16 = 128;
    }
    #[cfg(feature = "small-buffers")]
    mod values {
        /// Largest MTU the fixed buffers hold.
        pub const MTU_MAX: usize = 576;
        /// Send ring slots (in flight plus queued), a power of two.
        pub const SND_SLOTS: usize = 32;
        /// Receive ring slots (out of order plus unread), a power of two.
        pub const RCV_SLOTS: usize = 32;
        /// Largest send window.
        pub const SND_WND_MAX: u16 = 16;
        /// Largest receive window (half the receive ring).
        pub const RCV_WND_MAX: u16 = 16;
    }
    pub use values::*;
    /// Largest segment payload the fixed buffers hold.
    pub const MSS_MAX: usize = MTU_MAX - super::OVERHEAD;
    /// Pending ACKs kept between two flushes.
    pub const ACK_SLOTS: usize = RCV_SLOTS;
}

/// Capacities of the heap build: generous, but a configuration cannot ask
/// for gigabytes by accident.
#[cfg(feature = "alloc")]
pub mod heap {
    /// Largest MTU (a UDP payload over IPv4 cannot be larger).
    pub const MTU_MAX: usize = 65_507;
    /// Largest window in either direction.
    pub const WND_MAX: u16 = 32_768;
}
