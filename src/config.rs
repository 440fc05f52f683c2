//! Session configuration: ikcp's knobs as one plain struct with presets.

use crate::constants::*;
use crate::error::{KcpError, KcpResult};

/// Tuning of one KCP session.
///
/// [`KcpConfig::default`] is ikcp's default (conservative, TCP-like);
/// [`KcpConfig::fast`] is ikcp's recommended low-latency mode. Both ends of a
/// conversation should use the same `mtu` and `stream` setting; the other
/// fields only affect the local sender and may differ.
///
/// ```
/// use kcp_rs::KcpConfig;
/// let cfg = KcpConfig { mtu: 1200, ..KcpConfig::fast() };
/// assert!(cfg.validate().is_ok());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KcpConfig {
    /// Largest datagram `output` receives, header included (ikcp: 1400).
    pub mtu: u32,
    /// Flush period in milliseconds, 10..=5000 (ikcp: 100). Lower sends ACKs
    /// and retransmissions sooner at the cost of more wake-ups.
    pub interval: u32,
    /// Faster retransmission: minimum RTO 30 ms instead of 100, no extra
    /// RTO/8 on first send, and RTO growth ×1.5 instead of ×2 per timeout.
    pub nodelay: bool,
    /// Resend a segment once this many later segments were ACKed (0 = off).
    pub resend: u32,
    /// Disable congestion control: send at the full window regardless of loss.
    pub nc: bool,
    /// Send window in segments (ikcp: 32).
    pub snd_wnd: u16,
    /// Receive window in segments (ikcp: 128).
    pub rcv_wnd: u16,
    /// Stream mode: no message boundaries, small writes are coalesced.
    pub stream: bool,
    /// ikcp's `nodelay` level 2: timeouts grow by half the smoothed RTO
    /// instead of half the segment's own RTO (gentler backoff). Needs `nodelay`.
    pub gentle_backoff: bool,
    /// Lower bound of the RTO in milliseconds; `None` picks ikcp's rule
    /// (30 with `nodelay`, 100 without).
    pub min_rto: Option<u32>,
    /// A segment is fast-resent only while it was sent at most this many
    /// times (ikcp: 5); 0 removes the limit.
    pub fast_limit: u32,
    /// Transmissions of one segment after which the link is dead (ikcp: 20).
    pub dead_link: u32,
    /// First sequence number sent. ikcp starts at 0; tests use values near
    /// `u32::MAX` to exercise wraparound. Both ends must agree.
    pub initial_sn: u32,
    /// Make every payload block at construction instead of on first use,
    /// so that the session never calls the allocator again, not even in
    /// its first burst (for threads that must not allocate once set up).
    /// The session then holds [`Kcp::memory_footprint_max`] from the
    /// start and [`Kcp::shrink_to_fit`] keeps it. Off by default: blocks
    /// are made on first use and recycled, so an idle session stays small.
    /// Without the `alloc` feature storage is inline and this changes
    /// nothing.
    ///
    /// [`Kcp::memory_footprint_max`]: crate::Kcp::memory_footprint_max
    /// [`Kcp::shrink_to_fit`]: crate::Kcp::shrink_to_fit
    pub preallocate: bool,
}

impl Default for KcpConfig {
    fn default() -> Self {
        KcpConfig {
            mtu: fit::mtu(MTU_DEF),
            interval: INTERVAL_DEF,
            nodelay: false,
            resend: 0,
            nc: false,
            snd_wnd: fit::snd(WND_SND),
            rcv_wnd: fit::rcv(WND_RCV),
            stream: false,
            gentle_backoff: false,
            min_rto: None,
            fast_limit: FASTACK_LIMIT,
            dead_link: DEADLINK,
            initial_sn: 0,
            preallocate: false,
        }
    }
}

impl KcpConfig {
    /// ikcp's "fast mode": `nodelay(1, 20, 2, 1)` with 128/128 windows.
    pub fn fast() -> Self {
        KcpConfig {
            interval: 20,
            nodelay: true,
            resend: 2,
            nc: true,
            snd_wnd: fit::snd(128),
            rcv_wnd: fit::rcv(128),
            ..Self::default()
        }
    }

    /// The exact equivalent of ikcp's `ikcp_nodelay(kcp, nodelay, interval,
    /// resend, nc)` applied to `self`: level 0 off, 1 on, 2 on with gentle
    /// backoff. The interval is clamped to 10..=5000 as ikcp does.
    pub fn with_ikcp_nodelay(mut self, nodelay: u32, interval: u32, resend: u32, nc: bool) -> Self {
        self.nodelay = nodelay > 0;
        self.gentle_backoff = nodelay >= 2;
        self.interval = interval.clamp(INTERVAL_MIN, INTERVAL_MAX);
        self.resend = resend;
        self.nc = nc;
        self
    }

    /// Largest payload of one segment.
    pub fn mss(&self) -> usize {
        self.mtu as usize - OVERHEAD
    }

    /// Fragments a message may have: fewer than the receive window, and at
    /// most ikcp's 127 so that an ikcp peer can reassemble it.
    pub fn max_fragments(&self) -> usize {
        (self.rcv_wnd.min(WND_RCV) as usize)
            .saturating_sub(1)
            .max(1)
    }

    /// Largest message in message mode.
    pub fn max_message(&self) -> usize {
        self.max_fragments() * self.mss()
    }

    /// Whether a segment sent `xmit` times may still be fast-resent.
    pub fn fast_resend_allowed(&self, xmit: u32) -> bool {
        xmit <= self.fast_limit || self.fast_limit == 0
    }

    /// The effective minimum RTO.
    pub fn effective_min_rto(&self) -> u32 {
        self.min_rto
            .unwrap_or(if self.nodelay { RTO_NDL } else { RTO_MIN })
    }

    /// Checks that the configuration can work with this build's buffers.
    ///
    /// # Errors
    /// [`KcpError::InvalidConfig`] naming the first field that cannot work.
    pub fn validate(&self) -> KcpResult<()> {
        let (mtu_max, snd_max, rcv_max) = limits();
        if (self.mtu as usize) < OVERHEAD + 1 {
            return Err(KcpError::InvalidConfig(
                "mtu must be at least 25 (header + 1 byte)",
            ));
        }
        if self.mtu as usize > mtu_max {
            return Err(KcpError::InvalidConfig("mtu exceeds what the buffers hold"));
        }
        if !(INTERVAL_MIN..=INTERVAL_MAX).contains(&self.interval) {
            return Err(KcpError::InvalidConfig(
                "interval must be within 10..=5000 ms",
            ));
        }
        if self.snd_wnd == 0 || self.rcv_wnd == 0 {
            return Err(KcpError::InvalidConfig("windows must be at least 1"));
        }
        if self.snd_wnd > snd_max {
            return Err(KcpError::InvalidConfig(
                "snd_wnd exceeds the compiled capacity",
            ));
        }
        if self.rcv_wnd > rcv_max {
            return Err(KcpError::InvalidConfig(
                "rcv_wnd exceeds the compiled capacity",
            ));
        }
        if self.dead_link == 0 {
            return Err(KcpError::InvalidConfig("dead_link must be at least 1"));
        }
        if let Some(rto) = self.min_rto {
            if rto == 0 || rto > RTO_MAX {
                return Err(KcpError::InvalidConfig(
                    "min_rto must be within 1..=60000 ms",
                ));
            }
        }
        Ok(())
    }
}

/// Presets fitted to the build: unchanged with `alloc`; without it, clamped
/// to the compiled profile so that the presets stay valid (only the
/// `small-buffers` profile is smaller than ikcp's defaults).
mod fit {
    #[cfg(feature = "alloc")]
    pub const fn mtu(v: u32) -> u32 {
        v
    }
    #[cfg(feature = "alloc")]
    pub const fn snd(v: u16) -> u16 {
        v
    }
    #[cfg(feature = "alloc")]
    pub const fn rcv(v: u16) -> u16 {
        v
    }
    #[cfg(not(feature = "alloc"))]
    use crate::constants::profile;
    #[cfg(not(feature = "alloc"))]
    pub const fn mtu(v: u32) -> u32 {
        let max = profile::MTU_MAX as u32;
        if v < max {
            v
        } else {
            max
        }
    }
    #[cfg(not(feature = "alloc"))]
    pub const fn snd(v: u16) -> u16 {
        if v < profile::SND_WND_MAX {
            v
        } else {
            profile::SND_WND_MAX
        }
    }
    #[cfg(not(feature = "alloc"))]
    pub const fn rcv(v: u16) -> u16 {
        if v < profile::RCV_WND_MAX {
            v
        } else {
            profile::RCV_WND_MAX
        }
    }
}

#[cfg(feature = "alloc")]
fn limits() -> (usize, u16, u16) {
    (heap::MTU_MAX, heap::WND_MAX, heap::WND_MAX)
}

#[cfg(not(feature = "alloc"))]
fn limits() -> (usize, u16, u16) {
    (profile::MTU_MAX, profile::SND_WND_MAX, profile::RCV_WND_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(any(feature = "alloc", not(feature = "small-buffers")))]
    fn defaults_match_ikcp() {
        let c = KcpConfig::default();
        assert_eq!(
            (c.mtu, c.interval, c.snd_wnd, c.rcv_wnd),
            (1400, 100, 32, 128)
        );
        assert!(!c.nodelay && !c.nc && !c.stream);
        assert_eq!(c.resend, 0);
        assert_eq!(c.effective_min_rto(), 100);
        assert!(c.validate().is_ok());
    }

    #[test]
    #[cfg(any(feature = "alloc", not(feature = "small-buffers")))]
    fn fast_matches_ikcp_fast_mode() {
        let c = KcpConfig::fast();
        assert_eq!(
            (c.interval, c.resend, c.snd_wnd, c.rcv_wnd),
            (20, 2, 128, 128)
        );
        assert!(c.nodelay && c.nc);
        assert_eq!(c.effective_min_rto(), 30);
        assert!(c.validate().is_ok());
    }

    #[test]
    fn presets_are_valid_in_every_build() {
        assert!(KcpConfig::default().validate().is_ok());
        assert!(KcpConfig::fast().validate().is_ok());
    }

    #[test]
    fn unworkable_configs_are_refused() {
        let bad = [
            KcpConfig {
                mtu: 24,
                ..Default::default()
            },
            KcpConfig {
                mtu: 1_000_000,
                ..Default::default()
            },
            KcpConfig {
                interval: 9,
                ..Default::default()
            },
            KcpConfig {
                interval: 5001,
                ..Default::default()
            },
            KcpConfig {
                snd_wnd: 0,
                ..Default::default()
            },
            KcpConfig {
                rcv_wnd: 0,
                ..Default::default()
            },
            KcpConfig {
                dead_link: 0,
                ..Default::default()
            },
            KcpConfig {
                min_rto: Some(0),
                ..Default::default()
            },
            KcpConfig {
                rcv_wnd: u16::MAX,
                ..Default::default()
            },
        ];
        for c in bad {
            assert!(
                matches!(c.validate(), Err(KcpError::InvalidConfig(_))),
                "{c:?}"
            );
        }
        assert!(KcpConfig {
            mtu: 25,
            ..Default::default()
        }
        .validate()
        .is_ok());
    }

    #[test]
    fn ikcp_nodelay_levels() {
        let c = KcpConfig::default().with_ikcp_nodelay(2, 10, 2, true);
        assert!(c.nodelay && c.gentle_backoff && c.nc);
        assert_eq!((c.interval, c.resend), (10, 2));
        let c = KcpConfig::default().with_ikcp_nodelay(0, 1, 0, false);
        assert_eq!(c.interval, 10);
        assert!(!c.nodelay);
    }

    #[test]
    fn fragment_limit_follows_receive_window() {
        let ikcp = KcpConfig {
            rcv_wnd: 128,
            ..Default::default()
        };
        assert_eq!(ikcp.max_fragments(), 127);
        let small = KcpConfig {
            rcv_wnd: 16,
            ..Default::default()
        };
        assert_eq!(small.max_fragments(), 15);
    }
}
