//! One session as the socket task sees it, and the state it shares with the
//! stream handles.
//!
//! The [`Kcp`] lives in [`Session`], owned by the socket task: only that task
//! ever touches it. The stream side reaches the task through
//! - a semaphore of `send_queue_limit` byte permits and an unbounded channel
//!   of [`Outgoing`] chunks: a writer first takes permits for its bytes, so
//!   the channel never holds more than the limit; the task gives permits back
//!   as KCP accepts the bytes, which happens as ACKs free KCP's window;
//! - a bounded channel of received chunks: the task takes data out of KCP
//!   only while it has room, so a slow reader closes KCP's window;
//! - [`Shared`]: flags, the close reason, a stats snapshot, and the
//!   shutdown waker.
//!
//! A stream asks the task to look at its session by sending `Cmd::Wake`
//! at most once until the task has done so (`wake_pending`), so the command
//! channel holds at most one entry per session.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;
use std::{fmt, io};

use bytes::Bytes;
use tokio::sync::{mpsc, Semaphore};
use tokio::time::Instant;

use super::chunks::ChunkBuf;
use super::stats::SessionStats;
use super::stream::KcpStream;
use super::udp::Outbox;
use crate::Kcp;

/// Commands from handles to the socket task.
#[derive(Debug)]
pub(crate) enum Cmd {
    /// Look at this session: data to send, room to receive, a handle dropped,
    /// a shutdown or flush request.
    Wake(u64),
    /// The listener was dropped: accept nothing more.
    ListenerClosed,
}

/// A chunk written by the application, with the permits it holds.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub data: Bytes,
    pub permits: usize,
}

/// Why a session ended, replayed to every later call on its handles.
#[derive(Clone, Debug)]
pub(crate) struct CloseReason {
    pub kind: io::ErrorKind,
    pub msg: String,
}

impl CloseReason {
    pub fn new(kind: io::ErrorKind, msg: impl Into<String>) -> Self {
        CloseReason {
            kind,
            msg: msg.into(),
        }
    }

    pub fn to_error(&self) -> io::Error {
        io::Error::new(self.kind, self.msg.clone())
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

#[derive(Debug, Default)]
pub(crate) struct SharedState {
    pub closed: Option<CloseReason>,
    pub shutdown_done: bool,
    pub shutdown_waker: Option<Waker>,
    pub stats: SessionStats,
}

/// State shared by a session's handles and the socket task.
#[derive(Debug)]
pub(crate) struct Shared {
    pub id: u64,
    pub conv: u32,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub stream_mode: bool,
    pub max_message: usize,
    pub mss: usize,
    pub send_limit: usize,
    pub flush_on_write: bool,
    /// A `Cmd::Wake` for this session is queued.
    pub wake_pending: AtomicBool,
    /// The task found the reader's queue full and waits to be woken.
    pub rx_blocked: AtomicBool,
    pub reader_alive: AtomicBool,
    pub writer_alive: AtomicBool,
    pub write_shutdown: AtomicBool,
    pub flush_requested: AtomicBool,
    /// The task holds ACKs back until the reader has had its turn: a reader
    /// that finds its queue empty clears this and wakes the task.
    pub ack_held: AtomicBool,
    state: Mutex<SharedState>,
}

impl Shared {
    pub fn new(
        id: u64,
        conv: u32,
        peer: SocketAddr,
        local: SocketAddr,
        cfg: &super::SessionConfig,
    ) -> Self {
        let kcp = &cfg.core_config();
        Shared {
            id,
            conv,
            peer,
            local,
            stream_mode: kcp.stream,
            max_message: kcp.max_message(),
            mss: kcp.mss(),
            send_limit: cfg.send_queue_limit,
            flush_on_write: cfg.flush_on_write,
            wake_pending: AtomicBool::new(false),
            rx_blocked: AtomicBool::new(false),
            reader_alive: AtomicBool::new(true),
            writer_alive: AtomicBool::new(true),
            write_shutdown: AtomicBool::new(false),
            flush_requested: AtomicBool::new(false),
            ack_held: AtomicBool::new(false),
            state: Mutex::new(SharedState::default()),
        }
    }

    /// The state; a poisoned lock is taken over (nothing in it can be left
    /// half-updated by a panic).
    pub fn state(&self) -> MutexGuard<'_, SharedState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The error every call sees once the session is closed.
    pub fn close_error(&self) -> io::Error {
        match &self.state().closed {
            Some(r) => r.to_error(),
            None => io::Error::new(io::ErrorKind::ConnectionAborted, "session closed"),
        }
    }

    /// Records why the session ended (the first reason wins) and wakes a
    /// pending shutdown.
    pub fn close(&self, reason: CloseReason) {
        let waker = {
            let mut st = self.state();
            if st.closed.is_none() {
                st.closed = Some(reason);
            }
            st.shutdown_waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// Where a session came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    Client,
    Server,
}

/// A session as the socket task holds it.
pub(crate) struct Session {
    pub shared: Arc<Shared>,
    pub kcp: Kcp<Outbox>,
    pub role: Role,
    pub sem: Arc<Semaphore>,
    pub out_rx: mpsc::UnboundedReceiver<Outgoing>,
    /// A chunk KCP took only part of (stream mode) or had no room for.
    pub front: Option<Outgoing>,
    pub in_tx: mpsc::Sender<Bytes>,
    /// Where each delivery's chunk is gathered.
    pub in_chunks: ChunkBuf,
    /// The stream, until the session is confirmed and handed to `accept`.
    pub pending_stream: Option<KcpStream>,
    /// Where the session is filed in the task's [`Deadlines`](super::deadlines::Deadlines).
    pub deadline: Option<super::deadlines::Ms>,
    pub created: Instant,
    pub last_recv: Instant,
    pub last_probe: Instant,
    /// The peer answered something we sent (server) or sent anything at all
    /// (client): not half-open.
    pub confirmed: bool,
    /// Unconfirmed, and has sent datagrams announcing a zero receive
    /// window: the peer's window probes now count as answers (see
    /// `peek::Commands::answers`).
    pub told_shut: bool,
    /// Client only: a `PUSH` from the peer arrived (it has accepted us,
    /// or never needed to). Until then its window probes may be a
    /// half-open listener's, and each answer is repeated.
    pub heard_data: bool,
    /// When our window answer (`WINS`) that may need repeating went out:
    /// a client's, before `heard_data`, to a window probe (`WASK`), or the
    /// one announcing that the reader reopened a shut receive window; set
    /// while repeats are still due (until the peer's next data), with how
    /// many were sent (see `probes::repeat_window_answer`).
    pub window_told_at: Option<Instant>,
    pub window_answers_repeated: u8,
    /// In the task's dirty list.
    pub dirty: bool,
    /// Datagrams arrived since the last flush.
    pub input_pending: bool,
    /// ACKs are held back to give the reader a chance to answer first (see
    /// `Endpoint::drive`); the next drive flushes them, whatever happens.
    pub ack_deferred: bool,
    /// Window probes repeated while half-open (the first one not counted):
    /// each repeat doubles the wait for the next.
    pub half_open_probes: u8,
    /// While the peer's window is shut with data waiting: when to ask for
    /// it next, and how many times it was asked (each doubles the wait).
    pub window_probe_at: Option<Instant>,
    pub window_probes: u8,
    /// When the session finished and began to linger (see
    /// `SessionConfig::linger`): it only acknowledges from then on.
    pub lingering_since: Option<Instant>,
    /// When to give the buffers of a burst back if the session keeps
    /// needing little of them (see `endpoint::plan_trim`).
    pub trim_at: Option<Instant>,
    /// The footprint above which the core's buffers are worth giving back.
    pub trim_above: usize,
    pub stats: SessionStats,
    /// FEC encoder and decoder, when configured.
    #[cfg(feature = "fec")]
    pub fec: Option<Box<super::fec::FecState>>,
}

impl Session {
    /// Nothing more to send and no handle left: the session may go.
    pub fn finished(&self) -> bool {
        !self.shared.reader_alive.load(SeqCst)
            && !self.shared.writer_alive.load(SeqCst)
            && self.pending_stream.is_none()
            && self.front.is_none()
            && self.out_rx.is_empty()
            && self.kcp.wait_snd() == 0
    }

    /// Everything written was handed to KCP and acknowledged.
    pub fn all_acked(&self) -> bool {
        self.front.is_none() && self.out_rx.is_empty() && self.kcp.wait_snd() == 0
    }

    pub fn publish_stats(&mut self) {
        let k = &self.kcp;
        self.stats.kcp = *k.stats();
        self.stats.rtt_ms = k.rtt();
        self.stats.rto_ms = k.rto();
        self.stats.cwnd = k.cwnd();
        self.stats.remote_window = k.remote_window();
        self.stats.unacked_segments = k.wait_snd();
        self.stats.core_memory_bytes = k.memory_footprint();
        #[cfg(feature = "fec")]
        if let Some(fec) = &self.fec {
            fec.publish(&mut self.stats);
        }
        self.shared.state().stats = self.stats;
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // Reached without a reason when the task itself is dropped (runtime
        // shut down): the handles must not wait forever.
        self.shared.close(CloseReason::new(
            io::ErrorKind::ConnectionAborted,
            "the socket task ended (runtime shut down)",
        ));
        self.sem.close();
    }
}
