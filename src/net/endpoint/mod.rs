//! The socket task: one per UDP socket. It reads datagrams, demultiplexes
//! them by `(peer address, conv)` into sessions, drives every session's
//! [`Kcp`] at the deadlines it names (one tokio timer per
//! task, see [`Deadlines`]), and moves bytes between the
//! sessions and their stream handles.
//!
//! Each wake-up does bounded work: at most [`CMD_BATCH`] commands,
//! [`RECV_BATCH`] datagrams and [`TIMER_BATCH`] expired timers per pass, and
//! [`MAX_PASSES`] passes, then it yields, so one busy socket cannot starve
//! the runtime. Sessions touched during a pass (by a datagram, a handle or a
//! timer) are driven once at the end of it, so a burst of datagrams for one
//! session is answered with one flush (one batch of ACKs). When that data
//! goes to a reader that was waiting for it, the ACKs are held until the
//! reader has had its turn (see `Endpoint::drive`), so that a reply written
//! at once carries them: a request/response costs one datagram each way.
//!
//! Time: a `u32` millisecond clock counted from the task's start (wrapping
//! after 49 days, as KCP expects). After driving a session the task asks
//! `Kcp::check` when the session next has work and files the session in
//! [`Deadlines`] at that time, or earlier for the layer's own deadlines
//! (idle timeout, keep-alive, half-open expiry, end of linger). An idle
//! session is filed about ten seconds ahead (or at its keep-alive) and costs
//! nothing between.
//!
//! Linger: a session whose handles are gone and whose data is all
//! acknowledged is closed for the application and the counters, but stays
//! in the demultiplexing map (see [`SessionConfig::linger`]): the ACK of
//! the peer's last segment may have been lost, and its retransmissions must
//! still be answered. It sends no keep-alive and leaves at
//! `linger_deadline`.

use std::collections::HashMap;
use std::future::poll_fn;
use std::hash::{BuildHasherDefault, Hasher};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::{mpsc, Semaphore};
use tokio::time::Instant;

use super::chunks::ChunkBuf;
use super::config::SessionConfig;
use super::deadlines::Deadlines;
use super::peek::is_first_flight;
use super::session::{CloseReason, Cmd, Role, Session, Shared};
use super::stats::Counters;
use super::stream::KcpStream;
use super::udp::{Outbox, RecvBatch, UdpIo};
use crate::codec::peek_conv;
use crate::constants::OVERHEAD;
use crate::Kcp;

mod drive;
mod pump;
mod spawn;

use pump::feed;
pub(crate) use spawn::{connect, connect_with_socket, listen, listen_on, Accepted, ListenerParts};

/// Hashes the task's own session ids, which count up from 1: a multiply
/// (Fibonacci hashing) spreads them over the table's bits. Maps keyed by
/// what the network sends keep std's keyed SipHash; this one is looked up
/// several times per datagram, where SipHash cost about 20 ns a time.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ b as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, id: u64) {
        self.0 = id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// Commands taken per pass.
pub(crate) const CMD_BATCH: usize = 256;
/// Datagrams read per pass (at least; one receive call may bring more).
pub(crate) const RECV_BATCH: usize = 64;
/// Expired timers taken per pass.
pub(crate) const TIMER_BATCH: usize = 256;
/// Passes per wake-up before yielding to the runtime.
pub(crate) const MAX_PASSES: usize = 4;

/// Initial room of the socket task's output buffers (`Outbox::with_room`):
/// datagrams, and bytes of FEC-framed ones.
const OUTBOX_DATAGRAMS: usize = 32;
#[cfg(feature = "fec")]
const OUTBOX_BYTES: usize = 4096;

/// A session whose buffers grew in a burst gives them back once it has
/// needed no more than `TRIM_SLACK` for this long (see `plan_trim`).
const TRIM_AFTER: Duration = Duration::from_secs(1);
/// Payload a session may need at once (segments held × MTU) and still count
/// as needing little: above it, a burst is under way.
const TRIM_SLACK: usize = 64 * 1024;
/// Growth over a new session's footprint below which nothing is given back.
/// Pools grow by doubling, so a session whose need stays within
/// `TRIM_SLACK` can hold up to about twice that in each direction; four
/// times leaves such a session alone (no wake-up, no regrowth) while a real
/// burst (1.4 MB each way with 1,024-segment windows) is still caught.
const TRIM_GROWTH: usize = 4 * TRIM_SLACK;

/// How a session ended, for the counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ending {
    /// No handle left and everything acknowledged.
    Finished,
    TimedOut,
    HalfOpen,
    Refused,
    Other,
}

pub(crate) struct Endpoint {
    io: UdpIo,
    cfg: Arc<SessionConfig>,
    /// By the task's own session ids (not from the network: a cheap hash).
    sessions: HashMap<u64, Session, BuildHasherDefault<IdHasher>>,
    by_key: HashMap<(SocketAddr, u32), u64>,
    per_ip: HashMap<IpAddr, usize>,
    timers: Deadlines,
    cmd_rx: mpsc::UnboundedReceiver<Cmd>,
    cmd_tx: mpsc::UnboundedSender<Cmd>,
    accept_tx: Option<mpsc::Sender<Accepted>>,
    dirty: Vec<u64>,
    rx: RecvBatch,
    tx: Outbox,
    /// FEC packets made from `tx`.
    #[cfg(feature = "fec")]
    wire: Outbox,
    counters: Arc<Counters>,
    next_id: u64,
}

impl Endpoint {
    fn new(
        io: UdpIo,
        cfg: SessionConfig,
        accept_tx: Option<mpsc::Sender<Accepted>>,
        counters: Arc<Counters>,
    ) -> Endpoint {
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        // A datagram longer than the MTU is not KCP's (see
        // `UdpIo::recv_batch`).
        let rx = io.recv_batch(cfg.kcp.mtu as usize);
        // Only FEC makes bursts of small datagrams from one small message
        // (an early-closed group); without it, room for the lengths is all
        // that is worth holding from the start.
        #[cfg(feature = "fec")]
        let wire = match cfg.fec {
            Some(_) => Outbox::with_room(OUTBOX_DATAGRAMS, OUTBOX_BYTES),
            None => Outbox::default(),
        };
        Endpoint {
            io,
            cfg: Arc::new(cfg),
            sessions: HashMap::default(),
            by_key: HashMap::new(),
            per_ip: HashMap::new(),
            timers: Deadlines::new(Instant::now()),
            cmd_rx,
            cmd_tx,
            accept_tx,
            dirty: Vec::new(),
            rx,
            tx: Outbox::with_room(OUTBOX_DATAGRAMS, 0),
            #[cfg(feature = "fec")]
            wire,
            counters,
            next_id: 1,
        }
    }

    async fn run(mut self) {
        poll_fn(|cx| self.poll_run(cx)).await;
        tracing::debug!("socket task ended");
    }

    fn ms(&self, t: Instant) -> u32 {
        // Truncation is the intended wrap-around of KCP's clock.
        self.timers.now_ms(t) as u32
    }

    fn listening(&self) -> bool {
        self.accept_tx.as_ref().is_some_and(|t| !t.is_closed())
    }

    fn poll_run(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        for _ in 0..MAX_PASSES {
            let now = Instant::now();
            let mut work = 0;
            // Whether the commands and the socket were read until `Pending`
            // (their wakers are registered), not cut off by a batch limit.
            let mut drained = false;
            for _ in 0..CMD_BATCH {
                match self.cmd_rx.poll_recv(cx) {
                    Poll::Ready(Some(cmd)) => {
                        work += 1;
                        self.on_cmd(cmd);
                    }
                    _ => {
                        drained = true;
                        break;
                    }
                }
            }
            let mut recv_drained = false;
            let mut batch = std::mem::take(&mut self.rx);
            let mut received = 0;
            while received < RECV_BATCH {
                match self.io.poll_recv(cx, &mut batch) {
                    Poll::Ready(Ok(())) => {
                        work += 1;
                        received += batch.count().max(1);
                        for (from, d) in batch.datagrams() {
                            match d {
                                Ok(d) => self.on_datagram(from, d, now),
                                Err(len) => {
                                    // Longer than the MTU: not ours.
                                    Counters::add(&self.counters.datagrams_in, 1);
                                    Counters::add(&self.counters.dropped_invalid, 1);
                                    tracing::trace!(peer = %from, len, "dropped: longer than the MTU");
                                }
                            }
                        }
                    }
                    Poll::Ready(Err(e)) => {
                        work += 1;
                        received += 1;
                        self.on_recv_error(e);
                    }
                    Poll::Pending => {
                        recv_drained = true;
                        break;
                    }
                }
            }
            drained &= recv_drained;
            self.rx = batch;
            work += self.poll_timers(now, cx);
            self.drive_dirty(now);
            if self.sessions.is_empty() && !self.listening() {
                return Poll::Ready(());
            }
            // Nothing came in, but sessions made outside a pass (a client's
            // at `connect`) were driven just now: their deadlines must be
            // polled to arm the timer.
            if work == 0 && self.poll_timers(now, cx) == 0 {
                return Poll::Pending;
            }
            // Commands and datagrams that come from now on wake the task,
            // so another pass would only find them empty; the timers
            // `drive_dirty` moved must still be polled (that registers
            // them).
            if drained && self.poll_timers(now, cx) == 0 {
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    fn on_cmd(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Wake(id) => self.mark_dirty(id),
            Cmd::ListenerClosed => {
                self.accept_tx = None;
                let waiting: Vec<u64> = self
                    .sessions
                    .iter()
                    .filter(|(_, s)| s.pending_stream.is_some())
                    .map(|(id, _)| *id)
                    .collect();
                for id in waiting {
                    self.close(id, None, Ending::Other);
                }
            }
        }
    }

    fn mark_dirty(&mut self, id: u64) {
        if let Some(s) = self.sessions.get_mut(&id) {
            if !s.dirty {
                s.dirty = true;
                self.dirty.push(id);
            }
        }
    }

    fn on_recv_error(&mut self, e: io::Error) {
        tracing::trace!(error = %e, "recv failed");
        if e.kind() == io::ErrorKind::ConnectionRefused {
            self.on_refused();
        }
    }

    /// On a connected socket an ICMP port unreachable comes back as
    /// ECONNREFUSED from the next send or receive: the peer's port is
    /// closed. Believe it only while the peer has never answered (a stale
    /// ICMP must not end a live session).
    fn on_refused(&mut self) {
        if self.io.is_connected() {
            let refused: Vec<u64> = self
                .sessions
                .iter()
                .filter(|(_, s)| !s.confirmed)
                .map(|(id, _)| *id)
                .collect();
            for id in refused {
                let reason = CloseReason::new(io::ErrorKind::ConnectionRefused, REFUSED);
                self.close(id, Some(reason), Ending::Refused);
            }
        }
    }

    fn on_datagram(&mut self, from: SocketAddr, data: &[u8], now: Instant) {
        Counters::add(&self.counters.datagrams_in, 1);
        let key = if self.fec_on() {
            (from, 0)
        } else {
            match peek_conv(data) {
                Some(c) if data.len() >= OVERHEAD => (from, c),
                _ => {
                    Counters::add(&self.counters.dropped_invalid, 1);
                    tracing::trace!(peer = %from, len = data.len(), "dropped: shorter than a header");
                    return;
                }
            }
        };
        let Some(&id) = self.by_key.get(&key) else {
            self.try_open(from, data, now);
            return;
        };
        let now_ms = self.ms(now);
        let Some(sess) = self.sessions.get_mut(&id) else {
            return;
        };
        let fed = feed(sess, data, now_ms, &self.counters);
        if !fed.alive {
            Counters::add(&self.counters.dropped_invalid, 1);
            tracing::trace!(peer = %from, conv = sess.shared.conv, "dropped: refused by the session");
            return;
        }
        sess.last_recv = now;
        sess.input_pending = true;
        if !sess.confirmed && (sess.role == Role::Client || fed.answered) {
            sess.confirmed = true;
        }
        if fed.pushed {
            sess.heard_data = true;
            sess.window_told_at = None;
        } else if fed.asked {
            // Repeats restart from this probe: at most
            // `WINDOW_ANSWER_REPEATS.len()` more answers for each one.
            sess.window_told_at = Some(now);
            sess.window_answers_repeated = 0;
        }
        self.mark_dirty(id);
    }

    /// A datagram for no known session: open one if it is a plausible first
    /// flight and the limits allow.
    fn try_open(&mut self, from: SocketAddr, data: &[u8], now: Instant) {
        let first = self.first_kcp_datagram(data);
        let conv = first.and_then(|d| peek_conv(d).filter(|_| d.len() >= OVERHEAD));
        let (Some(first), Some(conv)) = (first, conv) else {
            Counters::add(&self.counters.dropped_unknown, 1);
            tracing::trace!(peer = %from, "dropped: no such session");
            return;
        };
        if !self.listening() || !is_first_flight(first, &self.cfg.kcp) {
            Counters::add(&self.counters.dropped_unknown, 1);
            tracing::trace!(peer = %from, conv, "dropped: no such session");
            return;
        }
        let from_ip = self.per_ip.get(&from.ip()).copied().unwrap_or(0);
        // `sessions_active` counts the sessions of every socket of the
        // listener (they share the counters).
        // Lingering sessions count against the cap too.
        let active = (self.counters.sessions_active.load(Relaxed)
            + self.counters.sessions_lingering.load(Relaxed)) as usize;
        if active >= self.cfg.max_sessions || from_ip >= self.cfg.max_sessions_per_ip {
            Counters::add(&self.counters.dropped_over_limit, 1);
            tracing::trace!(peer = %from, conv, "dropped: session limit reached");
            return;
        }
        let Ok((mut sess, stream)) = self.new_session(from, conv, Role::Server, now) else {
            return;
        };
        if !feed(&mut sess, data, self.ms(now), &self.counters).alive {
            Counters::add(&self.counters.dropped_invalid, 1);
            return;
        }
        // Learn at once whether the peer is really there: every KCP peer
        // answers a window probe.
        sess.kcp.ask_window();
        sess.pending_stream = Some(stream);
        sess.input_pending = true;
        tracing::debug!(peer = %from, conv, "session opened");
        self.insert(sess);
    }

    /// Whether FEC frames this endpoint's datagrams.
    fn fec_on(&self) -> bool {
        #[cfg(feature = "fec")]
        return self.cfg.fec.is_some();
        #[cfg(not(feature = "fec"))]
        false
    }

    /// The demultiplexing key of a session: `(peer, conv)`, or with FEC
    /// `(peer, 0)`: kcp-go's parity packets carry no conv, so sessions are
    /// told apart by address alone, as kcp-go does.
    fn session_key(&self, peer: SocketAddr, conv: u32) -> (SocketAddr, u32) {
        if self.fec_on() {
            (peer, 0)
        } else {
            (peer, conv)
        }
    }

    /// The KCP datagram a wire datagram carries: itself, or with FEC the
    /// one in a data packet (`None` for parity or a malformed packet).
    fn first_kcp_datagram<'d>(&self, data: &'d [u8]) -> Option<&'d [u8]> {
        #[cfg(feature = "fec")]
        if self.fec_on() {
            use crate::fec::framing::{self, Packet, ShardKind};
            let p = Packet::new_checked(data).ok()?;
            if p.header().kind != ShardKind::Data {
                return None;
            }
            return framing::kcp_bytes_of_shard(&data[framing::HEADER_LEN..]);
        }
        Some(data)
    }

    fn open_client(&mut self, peer: SocketAddr, conv: u32) -> io::Result<KcpStream> {
        let (sess, stream) = self.new_session(peer, conv, Role::Client, Instant::now())?;
        tracing::debug!(%peer, conv, "session opened");
        self.insert(sess);
        Ok(stream)
    }

    fn new_session(
        &mut self,
        peer: SocketAddr,
        conv: u32,
        role: Role,
        now: Instant,
    ) -> io::Result<(Session, KcpStream)> {
        let cfg = &self.cfg;
        let kcp = Kcp::with_config(conv, Outbox::default(), cfg.core_config())?;
        let trim_above = kcp.memory_footprint() + TRIM_GROWTH;
        #[cfg(feature = "fec")]
        let fec = match cfg.fec {
            Some(f) => Some(Box::new(super::fec::FecState::new(f)?)),
            None => None,
        };
        let id = self.next_id;
        self.next_id += 1;
        let shared = Arc::new(Shared::new(id, conv, peer, self.io.local_addr(), cfg));
        let sem = Arc::new(Semaphore::new(cfg.send_queue_limit));
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        let (in_tx, in_rx) = mpsc::channel(cfg.recv_queue_chunks());
        let stream = KcpStream::new(
            shared.clone(),
            self.cmd_tx.clone(),
            sem.clone(),
            out_tx,
            in_rx,
        );
        let sess = Session {
            shared,
            kcp,
            role,
            sem,
            out_rx,
            front: None,
            in_tx,
            in_chunks: ChunkBuf::default(),
            pending_stream: None,
            deadline: None,
            created: now,
            last_recv: now,
            last_probe: now,
            confirmed: false,
            told_shut: false,
            heard_data: false,
            window_told_at: None,
            window_answers_repeated: 0,
            dirty: false,
            input_pending: false,
            ack_deferred: false,
            half_open_probes: 0,
            window_probe_at: None,
            window_probes: 0,
            lingering_since: None,
            trim_at: None,
            trim_above,
            stats: Default::default(),
            #[cfg(feature = "fec")]
            fec,
        };
        Ok((sess, stream))
    }

    fn insert(&mut self, sess: Session) {
        let id = sess.shared.id;
        let peer = sess.shared.peer;
        let key = self.session_key(peer, sess.shared.conv);
        self.by_key.insert(key, id);
        *self.per_ip.entry(peer.ip()).or_insert(0) += 1;
        self.sessions.insert(id, sess);
        Counters::add(&self.counters.sessions_opened, 1);
        Counters::add(&self.counters.sessions_active, 1);
        self.mark_dirty(id);
    }

    fn close(&mut self, id: u64, reason: Option<CloseReason>, ending: Ending) {
        let Some(mut sess) = self.sessions.remove(&id) else {
            return;
        };
        let (peer, conv) = (sess.shared.peer, sess.shared.conv);
        let key = self.session_key(peer, conv);
        self.by_key.remove(&key);
        if let Some(n) = self.per_ip.get_mut(&peer.ip()) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&peer.ip());
            }
        }
        if let Some(at) = sess.deadline.take() {
            self.timers.remove(id, at);
        }
        let c = &self.counters;
        if sess.lingering_since.is_some() {
            // Counted as closed, and its handles told, when it finished.
            c.sessions_lingering.fetch_sub(1, Relaxed);
            tracing::debug!(%peer, conv, ?ending, "linger ended");
            return;
        }
        Counters::add(&c.sessions_closed, 1);
        c.sessions_active.fetch_sub(1, Relaxed);
        match ending {
            Ending::TimedOut => Counters::add(&c.timed_out, 1),
            Ending::HalfOpen => Counters::add(&c.half_open_expired, 1),
            _ => {}
        }
        sess.publish_stats();
        match reason {
            Some(r) => {
                tracing::debug!(%peer, conv, reason = %r, "session closed");
                sess.shared.close(r);
            }
            None => {
                tracing::debug!(%peer, conv, ?ending, "session closed");
                sess.shared.close(CloseReason::new(
                    io::ErrorKind::ConnectionAborted,
                    "session closed",
                ));
            }
        }
        // Dropping `sess` closes the send semaphore and the reader's channel.
    }

    /// Marks the sessions whose deadline passed (at most `TIMER_BATCH`) to
    /// be driven; returns how many. Polling also registers the wheel's
    /// waker for the next deadline.
    fn poll_timers(&mut self, now: Instant, cx: &mut Context<'_>) -> usize {
        let now_ms = self.timers.now_ms(now);
        let mut expired = 0;
        while expired < TIMER_BATCH {
            let Poll::Ready(id) = self.timers.poll_expired(now_ms, cx) else {
                break;
            };
            expired += 1;
            if let Some(s) = self.sessions.get_mut(&id) {
                s.deadline = None;
            }
            self.mark_dirty(id);
        }
        expired
    }

    fn drive_dirty(&mut self, now: Instant) {
        let mut list = std::mem::take(&mut self.dirty);
        for id in list.drain(..) {
            if let Some((reason, ending)) = self.drive(id, now) {
                self.close(id, reason, ending);
            }
        }
        if self.dirty.is_empty() {
            self.dirty = list; // keep the allocation
        }
    }
}

const REFUSED: &str = "the peer's host reports its port closed (ICMP port unreachable)";
