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
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Buf;
use tokio::net::ToSocketAddrs;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, Semaphore};
use tokio::time::Instant;
use tracing::Instrument;

use super::chunks::ChunkBuf;
use super::config::{SessionConfig, RECV_CHUNK};
use super::deadlines::Deadlines;
use super::peek::{commands, is_first_flight};
use super::probes::{
    begin_linger, keep_alive, linger_deadline, next_half_open_probe, next_probe,
    next_window_answer, probe_shut_window, repeat_window_answer, HALF_OPEN_PROBE,
};
use super::session::{CloseReason, Cmd, Role, Session, Shared};
use super::stats::Counters;
use super::stream::KcpStream;
use super::udp::{Outbox, RecvBatch, UdpIo};
use crate::codec::peek_conv;
use crate::constants::{CMD_PUSH, CMD_WASK, IDLE_CHECK, OVERHEAD};
use crate::{Kcp, KcpError};

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

/// How long ACKs held for a reader's reply wait at most (see
/// `Endpoint::drive`), for a reader that takes the data but neither answers
/// nor reads again (an application busy elsewhere): the session's RTO less
/// its smoothed RTT and [`ACK_HOLD_MARGIN`], within
/// [`ACK_HOLD_MIN`]..=[`ACK_HOLD_MAX`]; tokio's timer may add a millisecond.
///
/// Why not a fixed, short bound: in a steady request/response exchange a
/// hold starts on every request, earlier than the session's next KCP
/// deadline (the `interval` tick, which sends held ACKs too), so the socket
/// task's one timer is moved earlier once per bound. At 1 ms that put
/// 36–43% of round trips at ~32 µs instead of 20 with the echo server in a
/// process of its own beside a busy CPU; at a fixed 5 ms, across processes,
/// ours had the lower p99 than tokio_kcp in 33 of 108 runs, against 54 of
/// 108 with this bound (20–25 ms on loopback, beyond the bench's 10 ms
/// tick; docs/benchmarks_async.md, "Across processes, taken apart").
///
/// Why this bound: a held ACK must reach the peer before the peer resends.
/// The peer's RTO is taken to be ours (the same `nodelay` settings both
/// ways, as KCP deployments use), and the ACK needs one way of the RTT to
/// get there: RTO − SRTT − margin leaves it the margin. A peer configured
/// with a lower minimum RTO than ours may resend when the application
/// answers late. With a minimum RTO of 10 ms (`test.cpp`'s fast mode) the
/// bound is [`ACK_HOLD_MIN`].
fn ack_hold_bound(rto_ms: u32, srtt_ms: u32) -> Duration {
    let ms = rto_ms
        .saturating_sub(srtt_ms)
        .saturating_sub(ACK_HOLD_MARGIN);
    Duration::from_millis(u64::from(ms)).clamp(ACK_HOLD_MIN, ACK_HOLD_MAX)
}

/// See [`ack_hold_bound`]. The longest hold: a reader busy elsewhere gets
/// its ACKs out within this, however long the RTO.
const ACK_HOLD_MAX: Duration = Duration::from_millis(25);
/// See [`ack_hold_bound`]. The shortest hold (the fixed bound it replaced).
const ACK_HOLD_MIN: Duration = Duration::from_millis(5);
/// See [`ack_hold_bound`]: milliseconds kept between the held ACK's
/// arrival and the peer's RTO (rounding and tokio's timer take up to 2).
const ACK_HOLD_MARGIN: u32 = 10;

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

/// A stream and its peer, as `accept` returns them.
pub(crate) type Accepted = (KcpStream, SocketAddr);

/// What the listener keeps of its socket tasks.
pub(crate) struct ListenerParts {
    pub accept_rx: mpsc::Receiver<Accepted>,
    /// One per socket task.
    pub cmd_tx: Vec<mpsc::UnboundedSender<Cmd>>,
    pub counters: Arc<Counters>,
    pub local: SocketAddr,
}

/// Binds `sockets` listening sockets to one address (with `SO_REUSEPORT`
/// when more than one) and spawns a task for each. The tasks share the
/// accept queue and the counters.
pub(crate) async fn listen<A: ToSocketAddrs>(
    addr: A,
    cfg: SessionConfig,
    sockets: usize,
) -> io::Result<ListenerParts> {
    cfg.validate()?;
    if sockets == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a listener needs at least one socket",
        ));
    }
    let addr = resolve(addr).await?;
    let reuse = sockets > 1;
    let first = UdpIo::bind_with(addr, &cfg, reuse)?;
    let local = first.local_addr();
    let mut ios = vec![first];
    for _ in 1..sockets {
        // Bound to the port the first one got (`addr` may name port 0).
        ios.push(UdpIo::bind_with(local, &cfg, true)?);
    }
    serve(ios, cfg).await
}

/// A listener on a socket the caller bound.
pub(crate) async fn listen_on(
    socket: std::net::UdpSocket,
    cfg: SessionConfig,
) -> io::Result<ListenerParts> {
    cfg.validate()?;
    if socket.local_addr()?.port() == 0 {
        // Nothing reaches a socket that was never bound.
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a listener's socket must be bound",
        ));
    }
    serve(vec![UdpIo::adopt(socket, &cfg)?], cfg).await
}

/// Spawns a listening task for each of `ios`, all bound to one address.
async fn serve(ios: Vec<UdpIo>, cfg: SessionConfig) -> io::Result<ListenerParts> {
    let local = ios[0].local_addr();
    let sockets = ios.len();
    let (accept_tx, accept_rx) = mpsc::channel(cfg.accept_backlog);
    let counters = Arc::new(Counters::default());
    let mut cmd_tx = Vec::with_capacity(sockets);
    for (i, io) in ios.into_iter().enumerate() {
        io.ready().await?;
        let ep = Endpoint::new(io, cfg.clone(), Some(accept_tx.clone()), counters.clone());
        cmd_tx.push(ep.cmd_tx.clone());
        let span = tracing::debug_span!("kcp_listener", %local, socket = i);
        tokio::spawn(ep.run().instrument(span));
    }
    Ok(ListenerParts {
        accept_rx,
        cmd_tx,
        counters,
        local,
    })
}

/// Opens a client session on a socket of its own and spawns its task.
pub(crate) async fn connect<A: ToSocketAddrs>(
    addr: A,
    cfg: SessionConfig,
) -> io::Result<KcpStream> {
    cfg.validate()?;
    let peer = resolve(addr).await?;
    let bind: SocketAddr = if peer.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let io = UdpIo::bind(bind, &cfg)?;
    open_client(io, peer, cfg).await
}

/// [`connect`] from a socket the caller bound.
pub(crate) async fn connect_with_socket<A: ToSocketAddrs>(
    socket: std::net::UdpSocket,
    addr: A,
    cfg: SessionConfig,
) -> io::Result<KcpStream> {
    cfg.validate()?;
    let peer = resolve(addr).await?;
    let io = UdpIo::adopt(socket, &cfg)?;
    open_client(io, peer, cfg).await
}

/// Connects `io` to `peer` and spawns the client's task.
async fn open_client(mut io: UdpIo, peer: SocketAddr, cfg: SessionConfig) -> io::Result<KcpStream> {
    io.connect(peer).await?;
    io.ready().await?;
    let conv = cfg.conv.unwrap_or_else(random_conv);
    let mut ep = Endpoint::new(io, cfg, None, Arc::new(Counters::default()));
    let stream = ep.open_client(peer, conv)?;
    let span = tracing::debug_span!("kcp_client", local = %ep.io.local_addr(), %peer, conv);
    tokio::spawn(ep.run().instrument(span));
    Ok(stream)
}

async fn resolve<A: ToSocketAddrs>(addr: A) -> io::Result<SocketAddr> {
    tokio::net::lookup_host(addr)
        .await?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address resolved"))
}

fn random_conv() -> u32 {
    loop {
        let c: u32 = rand::random();
        if c != 0 {
            return c;
        }
    }
}

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

    /// Does everything due for one session: layer timers, writes into KCP,
    /// reads out of it, `update`/`flush`, sending, and filing its next
    /// deadline. Returns why to close it, if it must go.
    fn drive(&mut self, id: u64, now: Instant) -> Option<(Option<CloseReason>, Ending)> {
        let now_ms = self.ms(now);
        let cfg = &*self.cfg;
        // A client's socket task serves this session alone (see the trim).
        let sole = self.sessions.len() == 1;
        let sess = self.sessions.get_mut(&id)?;
        sess.dirty = false;
        sess.shared.wake_pending.store(false, SeqCst);

        if let Some(since) = sess.lingering_since {
            if now >= linger_deadline(sess, since, cfg) {
                return Some((None, Ending::Finished));
            }
        } else if now >= sess.last_recv + cfg.idle_timeout {
            let msg = format!(
                "no datagram from the peer for {:?} (idle timeout)",
                cfg.idle_timeout
            );
            return Some((
                Some(CloseReason::new(io::ErrorKind::TimedOut, msg)),
                Ending::TimedOut,
            ));
        }
        let mut force = false;
        if sess.role == Role::Server && !sess.confirmed {
            if now >= sess.created + cfg.half_open_timeout {
                return Some((None, Ending::HalfOpen));
            }
            // The probe or its answer may be lost: ask again, less and
            // less often, until answered. A peer that keeps sending (its
            // first flight retransmitted, more data) gets the probe again
            // in the datagram that acknowledges it, at most every
            // `HALF_OPEN_PROBE`: no extra datagram, and at heavy loss the
            // session is not left to expire while the peer is plainly
            // there (it would then ignore the peer, which hears nothing
            // until its idle timeout).
            let timer_due = now >= next_half_open_probe(sess);
            let answer_due = sess.input_pending && now >= sess.last_probe + HALF_OPEN_PROBE;
            if timer_due || answer_due {
                sess.kcp.ask_window();
                sess.last_probe = now;
                if timer_due {
                    sess.half_open_probes = sess.half_open_probes.saturating_add(1);
                }
                force = true;
            }
        } else if let Some(stream) = sess.pending_stream.take() {
            let peer = sess.shared.peer;
            let Some(accept_tx) = &self.accept_tx else {
                return Some((None, Ending::Other));
            };
            match accept_tx.try_send((stream, peer)) {
                Ok(()) => Counters::add(&self.counters.sessions_accepted, 1),
                Err(TrySendError::Full(_)) => {
                    Counters::add(&self.counters.dropped_over_limit, 1);
                    tracing::debug!(%peer, "accept backlog full: session dropped");
                    return Some((None, Ending::Refused));
                }
                Err(TrySendError::Closed(_)) => return Some((None, Ending::Other)),
            }
        }
        let lingering = sess.lingering_since.is_some();
        if let Some(k) = keep_alive(cfg, sess.role).filter(|_| !lingering) {
            if now >= next_probe(sess, k, cfg) {
                sess.kcp.ask_window();
                sess.last_probe = now;
                sess.stats.keepalives_sent += 1;
                force = true;
            }
        }

        force |= probe_shut_window(sess, now);
        force |= repeat_window_answer(sess, now);

        let shutdown = sess.shared.write_shutdown.load(SeqCst);
        let wrote = match pump_writes(sess) {
            Ok(w) => w,
            Err(()) => return Some((Some(dead_link(cfg)), Ending::TimedOut)),
        };
        // A half-open session's data stays in KCP's receive window (which
        // bounds it) until the peer has answered: queueing it for a reader
        // that may never exist would let spoofed first flights make each
        // half-open session hold `recv_queue_limit` (in message mode, that
        // many messages of up to `max_message`) besides.
        //
        // With `ack_nodelay`, the ACKs of what arrived leave now, unless
        // this drive hands data to a reader that was waiting for it: then
        // they are held until the reader has had its turn, so that a reply
        // written at once leaves in the same datagram (one datagram each
        // way per request/response instead of two). The turn ends when the
        // application writes (its data takes the ACKs along), when the
        // reader finds its queue empty again (it did not answer: the stream
        // wakes the task, which sends the ACKs alone), or after
        // `ack_hold_bound` (an application busy elsewhere). The flag is set
        // before the data is handed over, so the reader cannot miss it.
        let acks_due = sess.input_pending && cfg.ack_nodelay;
        let was_held = std::mem::take(&mut sess.ack_deferred);
        // Data written already leaves now and takes the ACKs along.
        let flush_now = force || (wrote && cfg.flush_on_write);
        let may_hold = acks_due && !was_held && !flush_now;
        if may_hold {
            sess.shared.ack_held.store(true, SeqCst);
        }
        let was_shut = sess.kcp.window_full();
        let delivered = (sess.role == Role::Client || sess.confirmed) && pump_reads(sess);
        if was_shut && !sess.kcp.window_full() {
            // The reader reopened a shut window: KCP tells the peer once,
            // at this flush. If that is lost, a peer that is not ours (ikcp,
            // kcp-go) waits for its own probe, 7 s at first; so the answer
            // is repeated as a client's is, until the peer's data arrives.
            sess.window_told_at = Some(now);
            sess.window_answers_repeated = 0;
        }
        // The reader made room in a shut window (or the peer asked): KCP
        // tells the peer at its next flush, which without this would wait
        // for the next `interval` tick while the peer sits idle.
        force |= sess.kcp.tells_window();
        if may_hold && delivered {
            sess.ack_deferred = true;
        } else if may_hold || was_held {
            sess.shared.ack_held.store(false, SeqCst);
        }
        force |= was_held || (acks_due && !sess.ack_deferred);
        force |= wrote && cfg.flush_on_write;
        force |= sess.shared.flush_requested.swap(false, SeqCst);
        if !sess.ack_deferred {
            sess.input_pending = false;
        }
        std::mem::swap(sess.kcp.output_mut(), &mut self.tx);
        sess.kcp.update(now_ms);
        if force {
            sess.kcp.flush();
        }
        std::mem::swap(sess.kcp.output_mut(), &mut self.tx);
        // Every segment carries this side's free receive window: a half-open
        // session's stays shut once full (nothing is read), and from then on
        // the peer's window probes count as answers (see `Commands::answers`).
        if !sess.confirmed && !self.tx.lens.is_empty() && sess.kcp.window_full() {
            sess.told_shut = true;
        }
        // With FEC the datagrams sent are the framed ones, in `wire`. Each
        // buffer keeps its role (no swap), so each grows once to its own
        // largest flush and then never allocates again.
        #[cfg(feature = "fec")]
        let mut fec_deadline = None;
        #[cfg(feature = "fec")]
        let out = match sess.fec.as_mut() {
            Some(fec) => {
                let rto = sess.kcp.rto();
                fec_deadline = fec.encode(&self.tx, &mut self.wire, now_ms, rto, &self.counters);
                self.tx.clear();
                &mut self.wire
            }
            None => &mut self.tx,
        };
        #[cfg(not(feature = "fec"))]
        let out = &mut self.tx;
        if !out.lens.is_empty() {
            let r = self.io.send(sess.shared.peer, out);
            out.clear();
            Counters::add(&self.counters.datagrams_out, r.sent);
            Counters::add(&self.counters.send_errors, r.dropped);
            sess.stats.send_dropped += r.dropped;
            if r.refused && !sess.confirmed {
                let reason = CloseReason::new(io::ErrorKind::ConnectionRefused, REFUSED);
                return Some((Some(reason), Ending::Refused));
            }
        }
        if sess.kcp.is_dead() {
            return Some((Some(dead_link(cfg)), Ending::TimedOut));
        }
        if shutdown && sess.all_acked() {
            let waker = {
                let mut st = sess.shared.state();
                st.shutdown_done = true;
                st.shutdown_waker.take()
            };
            if let Some(w) = waker {
                w.wake();
            }
        }
        if !lingering && sess.finished() {
            // A session that heard nothing has nothing to acknowledge.
            if cfg.linger.is_zero() || !sess.confirmed {
                return Some((None, Ending::Finished));
            }
            begin_linger(sess, now, &self.counters);
        }
        let needs_much = sess.kcp.segments_held() as usize * cfg.kcp.mtu as usize > TRIM_SLACK;
        if plan_trim(sess, now, needs_much) {
            sess.kcp.shrink_to_fit();
            // The task's output buffers grew with the largest flush. They
            // are the task's, not the session's: a listener's serve every
            // session and stay (one set per socket); a client's socket
            // task has this session alone.
            if sole {
                self.tx.shrink_to_room();
                #[cfg(feature = "fec")]
                self.wire.shrink_to_room();
            }
        }
        let lingering = sess.lingering_since.is_some();
        sess.publish_stats();

        // File the next deadline. With nothing pending, `check` names a
        // time `IDLE_CHECK` ahead only to bound the gap between updates;
        // the session needs no wake-up then (input, a write or the layer's
        // own deadlines below drive it, and `update` copes with the gap),
        // which spares an idle listener one wake-up per session every 10 s.
        let wait = sess.kcp.check(now_ms).wrapping_sub(now_ms);
        let wait = if wait > i32::MAX as u32 { 0 } else { wait };
        let mut at = match sess.lingering_since {
            Some(since) => linger_deadline(sess, since, cfg),
            None => sess.last_recv + cfg.idle_timeout,
        };
        if wait < IDLE_CHECK {
            at = at.min(now + Duration::from_millis(wait as u64));
        }
        if sess.ack_deferred {
            at = at.min(now + ack_hold_bound(sess.kcp.rto(), sess.kcp.rtt()));
        }
        if sess.role == Role::Server && !sess.confirmed {
            at = at.min(sess.created + cfg.half_open_timeout);
            at = at.min(next_half_open_probe(sess));
        }
        if let Some(k) = keep_alive(cfg, sess.role).filter(|_| !lingering) {
            at = at.min(next_probe(sess, k, cfg));
        }
        if let Some(probe) = sess.window_probe_at {
            at = at.min(probe);
        }
        if let Some(repeat) = next_window_answer(sess) {
            at = at.min(repeat);
        }
        // Filed only once the session needs little: while it needs more
        // (a burst, a reader that stopped) the deadline only moves along.
        if let Some(trim) = sess.trim_at.filter(|_| !needs_much) {
            at = at.min(trim);
        }
        #[cfg(feature = "fec")]
        if let Some(d) = fec_deadline {
            let wait = d.wrapping_sub(now_ms).min(i32::MAX as u32);
            at = at.min(now + Duration::from_millis(wait as u64));
        }
        let at = self.timers.deadline_ms(at);
        self.timers.file(id, sess.deadline, at);
        sess.deadline = Some(at);
        None
    }
}

/// Whether `drive` should give the session's burst-sized buffers back now.
///
/// KCP's payload pools and a client's socket-task output buffers keep the
/// size of the largest burst so that a busy session allocates nothing; a
/// session that has gone quiet, or back to small messages (a game server's
/// session after loading a level), should not hold a window's worth (1.4 MB
/// each way with 1,024-segment windows) for the rest of its life. Every
/// drive at which the session's segments in use need more than
/// `TRIM_SLACK` moves the trim time to `TRIM_AFTER` ahead, without filing it
/// as a deadline; once the session needs less, the time is filed, and the
/// first drive at or after it trims if the session holds more than
/// `TRIM_GROWTH` over a new one's footprint. `Kcp::shrink_to_fit` releases
/// each pool with no block in use; a pool with one block in use stays whole
/// (blocks are named by index), and the next drive sets a new trim time a
/// second ahead. So a session that exchanges small messages with one always
/// in flight (a message interval shorter than the RTT) keeps its send pool:
/// a limit, documented in docs/net_performance.md.
///
/// `needs_much`: the segments the session holds need more than
/// `TRIM_SLACK` (segments held × MTU).
fn plan_trim(sess: &mut Session, now: Instant, needs_much: bool) -> bool {
    if needs_much {
        sess.trim_at = Some(now + TRIM_AFTER);
        return false;
    }
    if sess.kcp.memory_footprint() <= sess.trim_above {
        sess.trim_at = None;
        return false;
    }
    match sess.trim_at {
        Some(at) if now >= at => {
            sess.trim_at = None;
            true
        }
        Some(_) => false,
        None => {
            sess.trim_at = Some(now + TRIM_AFTER);
            false
        }
    }
}

const REFUSED: &str = "the peer's host reports its port closed (ICMP port unreachable)";

fn dead_link(cfg: &SessionConfig) -> CloseReason {
    CloseReason::new(
        io::ErrorKind::TimedOut,
        format!(
            "dead link: a segment was sent {} times without an ACK",
            cfg.kcp.dead_link
        ),
    )
}

/// What feeding a wire datagram to a session did.
struct Fed {
    /// The datagram was accepted (by KCP, or with FEC by the decoder).
    alive: bool,
    /// It answered something we sent (see
    /// [`Commands::answers`](super::peek::Commands::answers); only looked
    /// for while unconfirmed).
    answered: bool,
    /// A client that has heard no data yet: it carried a window probe
    /// (`WASK`). See [`repeat_window_answer`].
    asked: bool,
    /// It carried data (`PUSH`), looked for while window answers may be
    /// repeated.
    pushed: bool,
    /// What to look for, from the session's state before the datagram:
    /// unconfirmed (`look`, with `told_shut`), a client that heard no data
    /// yet (`waiting`), a window answer being repeated (`repeating`).
    look: bool,
    told_shut: bool,
    waiting: bool,
    repeating: bool,
}

impl Fed {
    fn watching(sess: &Session) -> Fed {
        Fed {
            alive: false,
            answered: false,
            asked: false,
            pushed: false,
            look: !sess.confirmed,
            told_shut: sess.told_shut,
            waiting: sess.role == Role::Client && !sess.heard_data,
            repeating: sess.window_told_at.is_some(),
        }
    }

    /// Adds what an accepted KCP datagram says, when the session looks for
    /// anything; otherwise it is not parsed again.
    fn note(&mut self, d: &[u8]) {
        self.alive = true;
        if !(self.look || self.waiting || self.repeating) {
            return;
        }
        let cmds = commands(d);
        self.answered |= self.look && cmds.answers(self.told_shut);
        self.asked |= self.waiting && cmds.has(CMD_WASK);
        self.pushed |= (self.waiting || self.repeating) && cmds.has(CMD_PUSH);
    }
}

/// Hands a wire datagram to a session: straight to `Kcp::input`, or with
/// FEC through the decoder, which may yield several KCP datagrams.
fn feed(sess: &mut Session, data: &[u8], now_ms: u32, counters: &Counters) -> Fed {
    let mut fed = Fed::watching(sess);
    // Updates happen only at `check` deadlines: without this, an ACK is
    // timed against the last update and the RTT reads near zero.
    sess.kcp.set_clock(now_ms);
    #[cfg(feature = "fec")]
    if let Some(fec) = sess.fec.as_mut() {
        let kcp = &mut sess.kcp;
        let mut refused = 0;
        let alive = fec.decode(now_ms, data, counters, |d| {
            if d.len() < OVERHEAD {
                return; // padding of an empty data shard
            }
            match kcp.input(d) {
                Ok(()) => fed.note(d),
                Err(_) => refused += 1,
            }
        });
        Counters::add(&counters.dropped_invalid, refused);
        fed.alive = alive;
        return fed;
    }
    let _ = (now_ms, counters);
    if sess.kcp.input(data).is_ok() {
        fed.note(data);
    }
    fed
}

/// Moves what the application wrote into KCP while it has room, giving the
/// writer its permits back. `Err` when the link is dead.
fn pump_writes(sess: &mut Session) -> Result<bool, ()> {
    let mut moved = false;
    loop {
        let mut item = match sess.front.take() {
            Some(item) => item,
            None => match sess.out_rx.try_recv() {
                Ok(item) => item,
                Err(_) => break,
            },
        };
        match sess.kcp.send(&item.data) {
            Ok(n) if n >= item.data.len() => {
                sess.sem.add_permits(item.permits);
                sess.stats.app_bytes_sent += n as u64;
                moved = true;
            }
            Ok(n) => {
                // Stream mode, KCP full after part of the chunk.
                item.data.advance(n);
                let back = n.min(item.permits);
                item.permits -= back;
                sess.sem.add_permits(back);
                sess.stats.app_bytes_sent += n as u64;
                moved |= n > 0;
                sess.front = Some(item);
                break;
            }
            Err(KcpError::BufferFull) => {
                sess.front = Some(item);
                break;
            }
            Err(KcpError::DeadLink) => {
                sess.front = Some(item);
                return Err(());
            }
            Err(e) => {
                // The stream checked sizes, so this is not expected; drop the
                // chunk rather than wedge the queue.
                tracing::debug!(error = %e, "chunk refused by KCP");
                sess.sem.add_permits(item.permits);
            }
        }
    }
    Ok(moved)
}

/// Hands what KCP has received in order to the reader while its queue has
/// room; when it is full, stops (KCP's window closes) and asks to be woken.
/// With the reader gone, the data is discarded. Returns whether a reader
/// whose queue was empty (one likely waiting) was handed data.
fn pump_reads(sess: &mut Session) -> bool {
    let stream = sess.shared.stream_mode;
    let was_waiting = sess.in_tx.capacity() == sess.in_tx.max_capacity();
    let mut delivered = false;
    while let Ok(size) = sess.kcp.peek_size() {
        let permit = match sess.in_tx.try_reserve() {
            Ok(p) => Some(p),
            Err(TrySendError::Closed(())) => None,
            Err(TrySendError::Full(())) => {
                sess.shared.rx_blocked.store(true, SeqCst);
                match sess.in_tx.try_reserve() {
                    Ok(p) => Some(p),
                    Err(TrySendError::Closed(())) => None,
                    Err(TrySendError::Full(())) => break,
                }
            }
        };
        // One copy, from KCP's receive buffer into the chunk the reader
        // gets: a whole message, or whole stream segments up to `RECV_CHUNK`
        // of the `size` bytes readable now (reading may make more readable;
        // they go in the next chunk, so a chunk never outgrows `max`).
        let mut read = false;
        let kcp = &mut sess.kcp;
        let until = size.min(RECV_CHUNK);
        let max = size.min(RECV_CHUNK + kcp.mss());
        let chunk = sess.in_chunks.fill(max, |chunk| {
            while kcp
                .recv_with(|piece, _| chunk.extend_from_slice(piece))
                .is_ok()
            {
                read = true;
                if !stream || chunk.len() >= until {
                    break;
                }
            }
        });
        if !read {
            break;
        }
        let n = chunk.len();
        sess.stats.app_bytes_received += n as u64;
        if let Some(p) = permit {
            if n > 0 || !stream {
                p.send(chunk);
                delivered = true;
            }
        }
    }
    delivered && was_waiting
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ack_hold_ends_before_the_peers_rto() {
        let ms = Duration::from_millis;
        // Loopback with ikcp's `nodelay` minimum RTO: the RTO less the margin.
        assert_eq!(ack_hold_bound(30, 0), ms(20));
        // A longer RTT leaves less: the ACK still has one way to go.
        assert_eq!(ack_hold_bound(30, 12), ms(8));
        assert_eq!(ack_hold_bound(30, 25), ACK_HOLD_MIN);
        // `test.cpp`'s fast mode (minimum RTO 10 ms), and RTT over RTO.
        assert_eq!(ack_hold_bound(10, 0), ACK_HOLD_MIN);
        assert_eq!(ack_hold_bound(10, 400), ACK_HOLD_MIN);
        // Before any RTT sample (RTO 200 ms) or on a slow path: capped.
        assert_eq!(ack_hold_bound(200, 0), ACK_HOLD_MAX);
        assert_eq!(ack_hold_bound(u32::MAX, 0), ACK_HOLD_MAX);
        for (rto, srtt) in [(30, 0), (60, 20), (100, 0), (45, 30)] {
            let hold = ack_hold_bound(rto, srtt).as_millis() as u32;
            assert!(
                hold == ACK_HOLD_MIN.as_millis() as u32 || hold + srtt + 2 < rto,
                "rto {rto} srtt {srtt}: hold {hold} ms"
            );
        }
    }
}
