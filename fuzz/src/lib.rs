//! Fuzz harnesses for kcp-rs, shared by the libFuzzer targets in
//! `fuzz_targets/`, the seed generator (`examples/seeds.rs`) and the unit
//! tests at the bottom of each module (`cargo test` in `fuzz/`), which run
//! every harness on the committed seeds so that a harness that can no longer
//! fail, or always fails, shows up without a fuzzing run.
//!
//! - [`codec`]: header parse/emit and the segment iterator on arbitrary bytes;
//! - [`input`]: arbitrary datagrams into one session of a pair that already
//!   exchanged messages, then a clean exchange with its real peer;
//! - [`stateful`]: an `arbitrary` sequence of operations on a pair (sends,
//!   receives, loss, reordering, replayed, truncated and mutated datagrams,
//!   clock jumps), then an honest link until everything sent is delivered;
//! - [`fec`]: the FEC decoder on genuine, lost, replayed, mutated and
//!   arbitrary packets, then a fresh group that must be recovered;
//! - [`demux`]: datagrams over loopback into the tokio layer's real
//!   listeners (plain and FEC), which must stay alive, within their session
//!   limits, and accept only sessions that answered a probe.
//!
//! [`duo`] holds what the two session harnesses share: the pair, an honest
//! FIFO wire, a ledger of what each side genuinely sent (to tell harmless
//! garbage from garbage that legitimately corrupts an unauthenticated
//! protocol) and a model of the application data in flight.

#![forbid(unsafe_code)]

pub mod codec;
pub mod demux;
pub mod duo;
pub mod fec;
pub mod input;
pub mod stateful;
