//! FEC parameters: shard counts, buffer sizes and the decoder's limits.

use core::fmt;

use super::framing::{FEC_OVERHEAD, HEADER_LEN};

/// Largest number of shards (data + parity) in one group: the order of
/// GF(2^8), the field `reed-solomon-erasure`'s `galois_8` works in.
pub const MAX_SHARDS: usize = 256;

/// Largest FEC packet kcp-go handles (its `mtuLimit`), and our default.
pub const DEFAULT_MAX_PACKET: usize = 1500;

/// Largest FEC packet the framing can describe: the size field is a `u16`
/// counting itself plus the KCP bytes.
pub const MAX_PACKET_LIMIT: usize = HEADER_LEN + u16::MAX as usize;

/// Groups the decoder keeps by default. kcp-go keeps `3 × (k + m)` packets,
/// which is three full groups.
pub const DEFAULT_RX_GROUPS: usize = 3;

/// Largest `rx_groups` accepted: the decoder scans its groups linearly.
pub const MAX_RX_GROUPS: usize = 64;

/// Age after which the decoder forgets an incomplete group: kcp-go's
/// `fecExpire`, 60 s.
pub const DEFAULT_EXPIRE_MS: u32 = 60_000;

/// Default divisor of the RTO that bounds how long a partly filled group may
/// wait before [`FecEncoder::poll`](super::FecEncoder::poll) closes it.
pub const DEFAULT_GROUP_WAIT_DIVISOR: u32 = 4;

/// Smallest `max_packet`: the FEC header, the size field and one KCP header.
const MIN_PACKET: usize = FEC_OVERHEAD + crate::constants::OVERHEAD;

/// Parameters of a FEC encoder or decoder.
///
/// Both ends must use the same `data_shards` and `parity_shards`; the other
/// fields are local. kcp-go takes the two counts as the last arguments of
/// `ListenWithOptions` / `DialWithOptions`.
///
/// ```
/// use kcp_rs::fec::FecConfig;
///
/// let cfg = FecConfig::balanced();
/// assert_eq!((cfg.data_shards, cfg.parity_shards), (4, 2));
/// let custom = FecConfig::new(10, 3)?; // kcp-go's usual 10+3
/// assert_eq!(custom.group_len(), 13);
/// assert!(FecConfig::new(0, 3).is_err());
/// # Ok::<(), kcp_rs::fec::FecError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FecConfig {
    /// Data shards per group (`k`): the KCP datagrams protected together.
    pub data_shards: usize,
    /// Parity shards per group (`m`): up to `m` lost shards of a group are
    /// recovered. Overhead is `m / k` extra packets.
    pub parity_shards: usize,
    /// Largest FEC packet, header included (kcp-go: 1500). Both buffers
    /// and the largest KCP datagram follow from it.
    pub max_packet: usize,
    /// Groups the decoder keeps at once. More tolerates more reordering;
    /// memory is `rx_groups × (k + m) × max_packet` bytes.
    pub rx_groups: usize,
    /// The decoder forgets a group this many milliseconds after its first
    /// packet arrived.
    pub expire_ms: u32,
    /// Whether [`FecEncoder::poll`](super::FecEncoder::poll) closes partly
    /// filled groups (default `true`). The session layer calls `poll` after
    /// every flush, so this is its switch. Off, a group's parity leaves only
    /// after its `k`-th datagram, as kcp-go does: no empty packets, but on
    /// sparse traffic a loss then waits for the group to fill, often longer
    /// than KCP's own retransmission (docs/latency.md: fast mode with 10+2
    /// reached a 400 ms maximum RTT without early close, 282 ms with it).
    /// Turn it off only for traffic that fills groups within a fraction of
    /// the RTT, or to keep a kcp-go peer's `KCPInErrors` counter quiet.
    pub early_close: bool,
    /// [`FecEncoder::poll`](super::FecEncoder::poll) closes a partly filled
    /// group once it has waited `rto / group_wait_divisor` milliseconds
    /// (default 4). A shorter wait repairs a loss sooner but closes more
    /// groups, each costing up to `k - 1` empty packets and `m` parity
    /// packets; docs/latency.md measures 2, 4, 8 and 16.
    pub group_wait_divisor: u32,
}

impl FecConfig {
    /// `k` data and `m` parity shards with default limits.
    ///
    /// # Errors
    /// [`FecError::InvalidConfig`] when `k` or `m` is 0 or `k + m` exceeds
    /// [`MAX_SHARDS`].
    pub fn new(data_shards: usize, parity_shards: usize) -> Result<Self, FecError> {
        let cfg = Self::preset(data_shards, parity_shards);
        cfg.validate()?;
        Ok(cfg)
    }

    /// 2 data + 1 parity: small groups that close quickly, 50% overhead.
    pub fn low_latency() -> Self {
        Self::preset(2, 1)
    }

    /// 4 data + 2 parity: 50% overhead, survives two losses in six.
    pub fn balanced() -> Self {
        Self::preset(4, 2)
    }

    /// 8 data + 4 parity: 50% overhead, survives bursts of four.
    pub fn high_protection() -> Self {
        Self::preset(8, 4)
    }

    /// 10 data + 2 parity: 20% overhead for links with light random loss.
    pub fn bandwidth_efficient() -> Self {
        Self::preset(10, 2)
    }

    /// `k` and `m` with default limits, unchecked (the presets are valid).
    fn preset(data_shards: usize, parity_shards: usize) -> Self {
        FecConfig {
            data_shards,
            parity_shards,
            max_packet: DEFAULT_MAX_PACKET,
            rx_groups: DEFAULT_RX_GROUPS,
            expire_ms: DEFAULT_EXPIRE_MS,
            early_close: true,
            group_wait_divisor: DEFAULT_GROUP_WAIT_DIVISOR,
        }
    }

    /// Shards per group, `k + m`.
    pub fn group_len(&self) -> usize {
        self.data_shards + self.parity_shards
    }

    /// Largest KCP datagram the encoder accepts: `max_packet - 8`.
    pub fn max_kcp_datagram(&self) -> usize {
        self.max_packet.saturating_sub(FEC_OVERHEAD)
    }

    /// Largest shard (size field + KCP bytes, or parity): `max_packet - 6`.
    pub fn max_shard(&self) -> usize {
        self.max_packet.saturating_sub(HEADER_LEN)
    }

    /// The KCP MTU to configure so that FEC packets fit `link_mtu`: the
    /// 8 bytes of FEC header and size field are taken from it, as kcp-go
    /// does with `ReserveBytes(8)`. kcp-go's default MTU of 1400 gives
    /// KCP datagrams of at most 1392 bytes.
    ///
    /// ```
    /// assert_eq!(kcp_rs::fec::FecConfig::kcp_mtu(1400), 1392);
    /// ```
    pub fn kcp_mtu(link_mtu: u32) -> u32 {
        link_mtu.saturating_sub(FEC_OVERHEAD as u32)
    }

    /// Checks that the codec and the framing can work with these values.
    ///
    /// # Errors
    /// [`FecError::InvalidConfig`] naming the first field that cannot work.
    pub fn validate(&self) -> Result<(), FecError> {
        if self.data_shards == 0 {
            return Err(FecError::InvalidConfig("data_shards must be at least 1"));
        }
        if self.parity_shards == 0 {
            return Err(FecError::InvalidConfig("parity_shards must be at least 1"));
        }
        if self.group_len() > MAX_SHARDS {
            return Err(FecError::InvalidConfig(
                "data_shards + parity_shards must be at most 256 (GF(2^8))",
            ));
        }
        if self.max_packet < MIN_PACKET {
            return Err(FecError::InvalidConfig(
                "max_packet must hold the FEC header, the size field and a KCP header (32 bytes)",
            ));
        }
        if self.max_packet > MAX_PACKET_LIMIT {
            return Err(FecError::InvalidConfig(
                "max_packet exceeds what the 16-bit size field can describe (65541 bytes)",
            ));
        }
        if self.rx_groups == 0 || self.rx_groups > MAX_RX_GROUPS {
            return Err(FecError::InvalidConfig("rx_groups must be within 1..=64"));
        }
        if self.expire_ms == 0 {
            return Err(FecError::InvalidConfig("expire_ms must be at least 1"));
        }
        if self.group_wait_divisor == 0 {
            return Err(FecError::InvalidConfig(
                "group_wait_divisor must be at least 1",
            ));
        }
        Ok(())
    }
}

/// What went wrong in a FEC call.
///
/// Errors about a packet leave the decoder exactly as it was: the packet is
/// dropped whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FecError {
    /// The configuration cannot work; the message says which field.
    InvalidConfig(&'static str),
    /// A packet is shorter than its header (6 bytes, 8 for a data packet).
    Truncated {
        /// Length of the packet.
        len: usize,
    },
    /// A packet is longer than `max_packet`.
    TooLarge {
        /// Length of the packet.
        len: usize,
        /// The configured `max_packet`.
        max: usize,
    },
    /// The type field is neither 0xF1 (data) nor 0xF2 (parity).
    UnknownType(u16),
    /// A data packet's size field is below 2 or runs past the packet.
    BadSize {
        /// The size field.
        size: u16,
        /// Bytes after the 6-byte header.
        available: usize,
    },
    /// The type does not match the shard index `seqid % (k + m)`: a peer
    /// with other shard counts, or a forged packet.
    ShardMismatch {
        /// The packet's seqid.
        seqid: u32,
    },
    /// The packet's length disagrees with the shards of its group already
    /// held (parity shards of different lengths, or a data shard longer
    /// than the group's parity).
    InconsistentGroup {
        /// The packet's seqid.
        seqid: u32,
    },
    /// The KCP datagram handed to the encoder is empty or longer than
    /// [`FecConfig::max_kcp_datagram`].
    PayloadSize {
        /// Length of the datagram.
        len: usize,
        /// Largest length accepted.
        max: usize,
    },
}

impl fmt::Display for FecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FecError::InvalidConfig(why) => write!(f, "invalid FEC configuration: {why}"),
            FecError::Truncated { len } => write!(f, "FEC packet truncated: {len} bytes"),
            FecError::TooLarge { len, max } => {
                write!(f, "FEC packet of {len} bytes exceeds the maximum of {max}")
            }
            FecError::UnknownType(t) => write!(f, "unknown FEC packet type {t:#06x}"),
            FecError::BadSize { size, available } => write!(
                f,
                "FEC data packet size field {size} invalid for {available} bytes of shard"
            ),
            FecError::ShardMismatch { seqid } => write!(
                f,
                "FEC packet {seqid}: type does not match its shard index (different k+m?)"
            ),
            FecError::InconsistentGroup { seqid } => write!(
                f,
                "FEC packet {seqid}: length inconsistent with the rest of its group"
            ),
            FecError::PayloadSize { len, max } => {
                write!(
                    f,
                    "KCP datagram of {len} bytes cannot be encoded (1..={max})"
                )
            }
        }
    }
}

impl std::error::Error for FecError {}

impl From<FecError> for std::io::Error {
    fn from(e: FecError) -> Self {
        use std::io::ErrorKind;
        let kind = match e {
            FecError::InvalidConfig(_) | FecError::PayloadSize { .. } => ErrorKind::InvalidInput,
            FecError::Truncated { .. }
            | FecError::TooLarge { .. }
            | FecError::UnknownType(_)
            | FecError::BadSize { .. }
            | FecError::ShardMismatch { .. }
            | FecError::InconsistentGroup { .. } => ErrorKind::InvalidData,
        };
        std::io::Error::new(kind, e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid() {
        for (cfg, k, m) in [
            (FecConfig::low_latency(), 2, 1),
            (FecConfig::balanced(), 4, 2),
            (FecConfig::high_protection(), 8, 4),
            (FecConfig::bandwidth_efficient(), 10, 2),
        ] {
            assert_eq!((cfg.data_shards, cfg.parity_shards), (k, m));
            assert_eq!(cfg.validate(), Ok(()));
        }
    }

    #[test]
    fn custom_shard_counts_up_to_the_field_order() {
        assert!(FecConfig::new(1, 1).is_ok());
        assert!(FecConfig::new(10, 3).is_ok());
        assert!(FecConfig::new(200, 56).is_ok());
        assert!(FecConfig::new(200, 57).is_err());
    }

    #[test]
    fn bad_values_are_refused() {
        let base = FecConfig::balanced();
        let bad = [
            FecConfig {
                data_shards: 0,
                ..base
            },
            FecConfig {
                parity_shards: 0,
                ..base
            },
            FecConfig {
                max_packet: 31,
                ..base
            },
            FecConfig {
                max_packet: MAX_PACKET_LIMIT + 1,
                ..base
            },
            FecConfig {
                rx_groups: 0,
                ..base
            },
            FecConfig {
                rx_groups: 65,
                ..base
            },
            FecConfig {
                expire_ms: 0,
                ..base
            },
            FecConfig {
                group_wait_divisor: 0,
                ..base
            },
        ];
        for c in bad {
            assert!(
                matches!(c.validate(), Err(FecError::InvalidConfig(_))),
                "{c:?}"
            );
        }
        assert!(FecConfig {
            max_packet: 32,
            ..base
        }
        .validate()
        .is_ok());
    }

    #[test]
    fn errors_map_to_io_kinds() {
        use std::io::ErrorKind;
        let e: std::io::Error = FecError::InvalidConfig("x").into();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        let e: std::io::Error = FecError::Truncated { len: 3 }.into();
        assert_eq!(e.kind(), ErrorKind::InvalidData);
        assert!(e.to_string().contains("truncated"));
    }
}
