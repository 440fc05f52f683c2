//! Errors of the protocol core.

use core::fmt;

/// Result type of the protocol core.
pub type KcpResult<T> = Result<T, KcpError>;

/// What went wrong in a call to the protocol core.
///
/// Errors caused by the network (`InvalidPacket`, `ConvMismatch`) leave the
/// session exactly as it was: the offending datagram is dropped whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KcpError {
    /// The caller's buffer cannot hold the next message; nothing was consumed.
    BufferTooSmall {
        /// Bytes the next message needs.
        needed: usize,
    },
    /// The send queue is full; try again after ACKs free room.
    BufferFull,
    /// A datagram was malformed: truncated header, `len` past the end,
    /// unknown command, or a fragment count the receive window cannot hold.
    InvalidPacket,
    /// A datagram was for another conversation.
    ConvMismatch {
        /// This session's conversation id.
        expected: u32,
        /// The id found in the datagram.
        found: u32,
    },
    /// A message needs more fragments than the receiver can reassemble.
    DataTooLarge {
        /// Largest message size in bytes for this configuration.
        max: usize,
    },
    /// Nothing to receive yet (or a message is still incomplete).
    WouldBlock,
    /// A segment was transmitted `dead_link` times without an ACK.
    DeadLink,
    /// The configuration cannot work; the message says which field.
    InvalidConfig(&'static str),
    /// The output callback failed.
    OutputFailed,
}

impl fmt::Display for KcpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KcpError::BufferTooSmall { needed } => {
                write!(
                    f,
                    "receive buffer too small: next message needs {needed} bytes"
                )
            }
            KcpError::BufferFull => f.write_str("send queue full"),
            KcpError::InvalidPacket => f.write_str("invalid KCP datagram"),
            KcpError::ConvMismatch { expected, found } => {
                write!(f, "datagram for conversation {found}, expected {expected}")
            }
            KcpError::DataTooLarge { max } => {
                write!(f, "message too large: at most {max} bytes in message mode")
            }
            KcpError::WouldBlock => f.write_str("no complete message available"),
            KcpError::DeadLink => f.write_str("link is dead: segment retransmitted too often"),
            KcpError::InvalidConfig(why) => write!(f, "invalid KCP configuration: {why}"),
            KcpError::OutputFailed => f.write_str("output callback failed"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for KcpError {}

#[cfg(feature = "std")]
impl From<KcpError> for std::io::Error {
    fn from(e: KcpError) -> Self {
        use std::io::ErrorKind;
        let kind = match e {
            KcpError::BufferFull | KcpError::WouldBlock => ErrorKind::WouldBlock,
            KcpError::DeadLink => ErrorKind::TimedOut,
            KcpError::InvalidConfig(_) | KcpError::DataTooLarge { .. } => ErrorKind::InvalidInput,
            KcpError::InvalidPacket | KcpError::ConvMismatch { .. } => ErrorKind::InvalidData,
            KcpError::BufferTooSmall { .. } => ErrorKind::InvalidInput,
            KcpError::OutputFailed => ErrorKind::BrokenPipe,
        };
        std::io::Error::new(kind, e)
    }
}
