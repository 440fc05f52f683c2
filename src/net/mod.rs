//! The tokio session layer: [`KcpListener`] and [`KcpStream`] over UDP.
//!
//! ```text
//!  KcpStream ──(send queue: semaphore of bytes + channel)──▶ ┐
//!  KcpStream ◀──(bounded channel of received chunks)──────── │ socket task
//!                                                            │  demux by (peer, conv)
//!  UDP socket ◀──────────────── datagrams ─────────────────▶ │  deadlines, one timer
//!                                                            ┘  Kcp per session
//! ```
//!
//! One task per UDP socket ([`endpoint`](self) internals) owns every
//! session's [`Kcp`](crate::Kcp): no lock is taken on the datagram path and
//! sessions are not tasks. It reads a bounded batch of datagrams per
//! wake-up, hands each to its session by `(peer address, conv)` (a std
//! `HashMap`: the keys come from the network, so they get SipHash), drives
//! the sessions touched, and files each session's next deadline (what
//! `Kcp::check` names, or the layer's idle/keep-alive/half-open deadline) in
//! an ordered set; tokio's timer wheel holds one entry per socket task, for
//! the earliest. An idle session costs no CPU.
//!
//! **FEC** (the `fec` feature, [`SessionConfig::fec`]): the encoder frames
//! what each session's core outputs as kcp-go FEC packets (the core's MTU
//! gives up the 8 header bytes), and the decoder sits before `Kcp::input`.
//! kcp-go's parity packets carry no conv, so with FEC on sessions are keyed
//! by peer address alone, as kcp-go keys them; both ends must agree on the
//! FEC settings.
//!
//! **Back-pressure, both ways.** A writer takes permits from a semaphore of
//! [`SessionConfig::send_queue_limit`] bytes before its bytes are queued,
//! and gets them back as KCP takes the bytes, which it does as ACKs free its
//! window: a writer to a slow peer returns `Pending`. The task takes data out
//! of KCP only while the reader's bounded queue has room; otherwise KCP's
//! advertised window closes and the peer stops. Nothing grows without bound.
//!
//! **Opening.** [`KcpStream::connect`] uses a socket of its own and returns
//! at once (KCP has no handshake). A listener opens a session for a datagram
//! that looks like a conversation's first flight, within its limits, and
//! hands it to `accept` once the peer has answered a window probe. The probe
//! is repeated on a doubling timer, and also (at most every 200 ms) in the
//! datagram that acknowledges each further datagram from the peer, so a
//! peer that keeps sending is confirmed even when several answers are lost.
//! Nothing reads a session before `accept`, so a peer that writes more than
//! a window shuts it; once the session has announced that, the peer's own
//! window probe (`WASK`, which a KCP peer sends only after hearing a shut
//! window) confirms it too. Our client, until the server's first data,
//! repeats its answer to each probe 100 and 300 ms later (at most two more
//! per probe), so a client that sends a little and waits is confirmed even
//! when its one answer is lost.
//!
//! **Shut windows.** When the peer's receive window is shut and data waits,
//! the session asks for it one RTO later, then twice as long after each ask
//! up to a second: ikcp alone waits 7 s, then 10.5 s …, and the peer's
//! single announcement that its window reopened may be lost. The core stays
//! ikcp's; these are the layer's own timers, and every KCP peer answers.
//!
//! **Ending.** KCP has no FIN; see [`KcpStream`'s docs](KcpStream#how-a-session-ends).
//! A vanished peer is noticed within [`SessionConfig::idle_timeout`]. A
//! finished session lingers, like TCP's TIME_WAIT but for at most
//! [`SessionConfig::linger`], acknowledging what the peer retransmits.
//!
//! **Observability.** `tracing` events at `debug` on session open and
//! close (with the reason), at `trace` for each dropped datagram; counters
//! in [`SessionStats`] and [`ListenerStats`].

mod chunks;
mod config;
mod deadlines;
mod endpoint;
#[cfg(feature = "fec")]
mod fec;
mod listener;
mod peek;
mod probes;
mod session;
mod stats;
mod stream;
mod udp;

pub use config::SessionConfig;
pub use listener::{Incoming, KcpListener};
pub use stats::{ListenerStats, SessionStats};
pub use stream::{KcpStream, OwnedReadHalf, OwnedWriteHalf, ReadHalf, ReuniteError, WriteHalf};
