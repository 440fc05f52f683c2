//! # kcp-rs
//!
//! KCP is an ARQ protocol over UDP that trades 10–20% more bandwidth than
//! TCP for round-trip latency 30–40% lower on average and far lower at the
//! tail: it retransmits earlier, backs off less, and can skip congestion
//! control. This crate implements it in layers:
//!
//! ```text
//!   KcpListener / KcpStream      tokio feature: streams over one UDP socket
//!          │  socket task: demultiplex by (peer, conv), session deadlines
//!   fec::{FecEncoder, FecDecoder}   fec feature: Reed-Solomon, kcp-go framing
//!          │
//!   Kcp<O: KcpOutput>            protocol state machine: no socket, no clock,
//!          │                     no allocation after construction, no_std
//!   codec::Header                24-byte wire header, ikcp byte for byte
//! ```
//!
//! The core is sans-IO: you call [`Kcp::input`] with datagrams, [`Kcp::update`]
//! with the time, and it hands datagrams to your [`KcpOutput`].
//!
//! ```
//! use kcp_rs::{Kcp, KcpConfig, KcpResult};
//! use std::{cell::RefCell, rc::Rc};
//!
//! // Two sessions joined by in-memory queues.
//! let a_to_b = Rc::new(RefCell::new(Vec::<Vec<u8>>::new()));
//! let b_to_a = Rc::new(RefCell::new(Vec::<Vec<u8>>::new()));
//! let (q1, q2) = (a_to_b.clone(), b_to_a.clone());
//! let mut a = Kcp::with_config(7, move |d: &[u8]| -> KcpResult<usize> {
//!     q1.borrow_mut().push(d.to_vec()); Ok(d.len())
//! }, KcpConfig::fast())?;
//! let mut b = Kcp::with_config(7, move |d: &[u8]| -> KcpResult<usize> {
//!     q2.borrow_mut().push(d.to_vec()); Ok(d.len())
//! }, KcpConfig::fast())?;
//!
//! a.send(b"ping")?;
//! let mut buf = [0u8; 64];
//! for now in (0..200).step_by(10) {
//!     a.update(now);
//!     b.update(now);
//!     for d in a_to_b.borrow_mut().drain(..) { b.input(&d)?; }
//!     for d in b_to_a.borrow_mut().drain(..) { a.input(&d)?; }
//!     if let Ok(n) = b.recv(&mut buf) {
//!         assert_eq!(&buf[..n], b"ping");
//!         return Ok(());
//!     }
//! }
//! panic!("not delivered");
//! # Ok::<(), kcp_rs::KcpError>(())
//! ```
//!
//! ## Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `std` | yes | heap buffers sized from the configuration, `std::error::Error` |
//! | `tokio` | yes | the async session layer |
//! | `fec` | no | Reed-Solomon FEC compatible with kcp-go |
//! | `small-buffers` | no | a small fixed buffer profile for the no-alloc build |
//!
//! Without default features the core is `#![no_std]` and needs no allocator:
//! every buffer is an array inside [`Kcp`], sized by
//! [`constants::profile`]. That makes a `Kcp` large (about 760 KiB in the
//! default profile, 38 KiB with `small-buffers`): put it in a `static` or on
//! a thread with a big stack, not in a small task's frame. With `alloc`
//! (implied by `std`) buffers are sized from the configuration instead and
//! payload blocks are made on first use, up to the windows, then recycled;
//! [`KcpConfig::preallocate`] makes them all at construction, for a session
//! that must never call the allocator once built.
#![cfg_attr(not(any(feature = "std", test)), no_std)]
#![warn(missing_docs)]
#![forbid(unsafe_code)]

#[cfg(feature = "alloc")]
extern crate alloc;

pub mod codec;
pub mod config;
pub mod constants;
pub mod error;
/// Tuning guide: what each knob trades, presets, FEC by loss rate, socket
/// buffers and how to read the statistics.
#[doc = include_str!("../docs/tuning.md")]
pub mod guide {}
#[cfg(feature = "fec")]
pub mod fec;
mod kcp;
#[cfg(feature = "tokio")]
pub mod net;
mod segment;
pub mod sequence;
#[cfg(feature = "std")]
pub mod sim;
pub mod stats;
mod storage;

pub use config::KcpConfig;
pub use error::{KcpError, KcpResult};
pub use kcp::{Kcp, KcpOutput};
#[cfg(feature = "tokio")]
pub use net::{KcpListener, KcpStream, ListenerStats, SessionConfig, SessionStats};
pub use stats::KcpStats;

/// The README's examples, compiled as doctests so they cannot rot.
#[cfg(all(doctest, feature = "tokio", feature = "fec"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
