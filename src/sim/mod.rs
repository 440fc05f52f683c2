//! Deterministic network simulation for tests, examples and benchmarks.
//!
//! - [`link`]: an in-memory one-way link with seeded loss, delay, jitter,
//!   reordering and duplication, and [`Pair`], two sessions
//!   joined by two such links under a virtual clock (quinn's test `Pair`);
//! - `relay` (with the `tokio` feature): the same faults applied to real UDP
//!   datagrams by an in-process relay on loopback.
//!
//! Everything is driven by a [`Rng`] seeded by the caller, so a failing run
//! can be replayed exactly.

pub mod link;
#[cfg(feature = "tokio")]
pub mod relay;
mod rng;

pub use link::{Link, LinkConfig, LinkStats, Outbox, Pair};
pub use rng::Rng;
