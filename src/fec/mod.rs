//! Forward error correction: Reed-Solomon parity framed like kcp-go's FEC.
//!
//! KCP repairs a loss by retransmitting, which costs at least one RTO (or a
//! few later ACKs with fast resend). FEC repairs it without a round trip:
//! the sender groups every `k` KCP datagrams, adds `m` parity packets
//! computed with Reed-Solomon over GF(2^8), and the receiver rebuilds any
//! `m` lost packets of a group from the others. The price is `m / k` more
//! packets on the wire.
//!
//! The framing is kcp-go's (v5.6, no encryption), byte for byte, so either
//! end may be kcp-go with `ListenWithOptions(addr, nil, k, m)` or
//! `DialWithOptions(addr, nil, k, m)`. See [`framing`] for the layout. As in
//! kcp-go:
//!
//! - data packets go out at once; parity follows a group's last data packet;
//! - seqids count every packet and wrap at the largest multiple of `k + m`
//!   below 2^32, so a group never straddles the wrap;
//! - each shard is `size ‖ KCP bytes`, zero-padded to the group's longest
//!   for coding; parity packets are that long and have no size of their own;
//! - the KCP MTU gives up 8 bytes to the FEC header
//!   ([`FecConfig::kcp_mtu`]);
//! - the decoder keeps a few groups (kcp-go: `3 × (k + m)` packets) and
//!   forgets a group 60 s after it started.
//!
//! Three things are ours: [`FecEncoder::poll`] closes a group that waited
//! too long on a quiet link (with empty data packets kcp-go accepts); the
//! decoder holds all of a closed group's empty packets as soon as one
//! arrives, so a lost empty packet costs no parity; and it remembers
//! completed groups, so late copies are dropped instead of being handed to
//! KCP again.
//!
//! Both halves are sans-IO, like [`Kcp`](crate::Kcp): they take bytes and a
//! time, and hand bytes to a closure. Their buffers are allocated once, at
//! construction.
//!
//! ```
//! use kcp_rs::fec::{FecConfig, FecDecoder, FecEncoder};
//! use kcp_rs::{Kcp, KcpConfig, KcpResult};
//! use std::{cell::RefCell, rc::Rc};
//!
//! let fec = FecConfig::balanced();
//! let cfg = KcpConfig { mtu: FecConfig::kcp_mtu(1400), ..KcpConfig::fast() };
//! let wire = Rc::new(RefCell::new(Vec::<Vec<u8>>::new()));
//! let (w, enc) = (wire.clone(), Rc::new(RefCell::new(FecEncoder::new(fec)?)));
//! let mut a = Kcp::with_config(1, move |d: &[u8]| -> KcpResult<usize> {
//!     enc.borrow_mut()
//!         .encode(d, |p| w.borrow_mut().push(p.to_vec()))
//!         .map_err(|_| kcp_rs::KcpError::OutputFailed)?;
//!     Ok(d.len())
//! }, cfg)?;
//! let mut b = Kcp::with_config(1, |d: &[u8]| -> KcpResult<usize> { Ok(d.len()) }, cfg)?;
//! let mut dec = FecDecoder::new(fec)?;
//!
//! a.send(b"hello through FEC")?;
//! a.update(0);
//! a.update(20);
//! for packet in wire.borrow_mut().drain(..) {
//!     dec.decode(20, &packet, |kcp| { let _ = b.input(kcp); })?;
//! }
//! let mut buf = [0u8; 64];
//! let n = b.recv(&mut buf)?;
//! assert_eq!(&buf[..n], b"hello through FEC");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod config;
mod decoder;
mod encoder;
pub mod framing;

pub use config::{
    FecConfig, FecError, DEFAULT_EXPIRE_MS, DEFAULT_GROUP_WAIT_DIVISOR, DEFAULT_MAX_PACKET,
    DEFAULT_RX_GROUPS, MAX_PACKET_LIMIT, MAX_RX_GROUPS, MAX_SHARDS,
};
pub use decoder::{FecDecoder, FecDecoderStats};
pub use encoder::{FecEncoder, FecEncoderStats};
