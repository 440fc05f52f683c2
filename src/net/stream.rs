//! [`KcpStream`]: one KCP session as `AsyncRead + AsyncWrite`, plus message
//! calls and split halves.

use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::ToSocketAddrs;
use tokio::sync::{mpsc, Semaphore, TryAcquireError};
use tokio_util::sync::PollSemaphore;

use super::chunks::ChunkBuf;
use super::config::SessionConfig;
use super::session::{Cmd, Outgoing, Shared};
use super::stats::SessionStats;

/// Largest piece of a stream-mode write handed to the socket task at once.
const WRITE_CHUNK: usize = 64 * 1024;

/// A KCP session with a peer: a reliable, ordered byte stream (and, in
/// message mode, a reliable message channel) over UDP.
///
/// Made by [`KcpStream::connect`] or [`KcpListener::accept`](super::KcpListener::accept).
/// It implements [`AsyncRead`] and [`AsyncWrite`], so `tokio::io::copy`,
/// `BufReader` and `tokio_util::codec::Framed` work on it.
///
/// # Writing
/// A write is taken as far as the send queue
/// ([`SessionConfig::send_queue_limit`]) has room, and returns `Pending`
/// when it has none; writers are woken as the peer's ACKs free room. Writes
/// of any size work: `write_all` of a gigabyte is cut into what fits.
///
/// In message mode (`KcpConfig::stream == false`, the default),
/// [`send_msg`](Self::send_msg) sends one message that the peer's
/// [`recv_msg`](Self::recv_msg) returns whole; a plain `write` sends each
/// call's bytes (up to [`KcpConfig::max_message`](crate::KcpConfig::max_message))
/// as one message, and `read` returns the concatenation, so byte-stream
/// users need not care.
///
/// # How a session ends
/// KCP has no FIN: nothing on the wire says "closed".
/// - [`shutdown`](tokio::io::AsyncWriteExt::shutdown) waits until every byte
///   written is acknowledged, then refuses further writes. The peer sees
///   nothing: its reads go on waiting.
/// - Dropping the stream (both halves) keeps the session until what was
///   written is acknowledged (or the link is found dead). It then lingers
///   for a short while ([`SessionConfig::linger`]), acknowledging the
///   peer's retransmissions in case the ACK of its last segment was lost,
///   and is removed. The peer sees nothing either.
/// - A peer that is gone (crashed, dropped its session, unplugged) is
///   noticed after [`SessionConfig::idle_timeout`] without a datagram from
///   it: reads and writes then fail with [`io::ErrorKind::TimedOut`]. A
///   segment retransmitted `dead_link` times fails them the same way,
///   sometimes sooner. With [`SessionConfig::keep_alive`] a live peer always
///   answers in time, so only a vanished one times out.
///
/// So a protocol on top of KCP should say itself when it is done (a length
/// prefix, an end message), as the examples do.
///
/// # Errors
/// Once the session is closed every call fails with the reason: `TimedOut`
/// (idle timeout or dead link), `ConnectionRefused` (an ICMP port
/// unreachable before the server ever answered), `ConnectionAborted` (the
/// socket task or its runtime ended), `BrokenPipe` (write after shutdown).
pub struct KcpStream {
    read: ReadState,
    write: WriteState,
}

/// The reading half of a [`KcpStream`], from [`KcpStream::into_split`].
pub struct OwnedReadHalf {
    read: ReadState,
}

/// The writing half of a [`KcpStream`], from [`KcpStream::into_split`].
pub struct OwnedWriteHalf {
    write: WriteState,
}

/// The borrowed reading half of a [`KcpStream`], from [`KcpStream::split`].
pub struct ReadHalf<'a> {
    read: &'a mut ReadState,
}

/// The borrowed writing half of a [`KcpStream`], from [`KcpStream::split`].
pub struct WriteHalf<'a> {
    write: &'a mut WriteState,
}

impl KcpStream {
    /// Opens a session with the KCP peer at `addr` from a new UDP socket
    /// bound to an ephemeral port.
    ///
    /// KCP has no handshake: this returns as soon as the socket is ready,
    /// before the peer has heard anything. The conversation id is
    /// `config.conv`, or a random non-zero one. If nothing answers, reads and
    /// writes fail after `idle_timeout` (or at once with `ConnectionRefused`
    /// when the peer's host reports the port closed).
    ///
    /// # Errors
    /// An invalid `config` (`InvalidInput`), a name that does not resolve,
    /// or a socket that cannot be created.
    ///
    /// # Cancel safety
    /// Cancelling drops the socket; no session is left behind.
    ///
    /// ```no_run
    /// use kcp_rs::net::{KcpStream, SessionConfig};
    /// use tokio::io::{AsyncReadExt, AsyncWriteExt};
    ///
    /// # async fn demo() -> std::io::Result<()> {
    /// let mut s = KcpStream::connect("127.0.0.1:4000", SessionConfig::default()).await?;
    /// s.write_all(b"ping").await?;
    /// let mut buf = [0u8; 4];
    /// s.read_exact(&mut buf).await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect<A: ToSocketAddrs>(
        addr: A,
        config: SessionConfig,
    ) -> io::Result<KcpStream> {
        super::endpoint::connect(addr, config).await
    }

    /// [`connect`](Self::connect) through a UDP socket the caller made:
    /// bound to a chosen local address or port, or with options set
    /// beforehand. The socket is connected to `addr`, switched to
    /// non-blocking mode and given the configured buffer sizes; the session
    /// owns it from then on. Must be called within a tokio runtime.
    ///
    /// ```no_run
    /// use kcp_rs::net::{KcpStream, SessionConfig};
    ///
    /// # async fn demo() -> std::io::Result<()> {
    /// let socket = std::net::UdpSocket::bind("0.0.0.0:5000")?; // a fixed source port
    /// let s = KcpStream::connect_with_socket(socket, "127.0.0.1:4000", SessionConfig::default())
    ///     .await?;
    /// assert_eq!(s.local_addr()?.port(), 5000);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`connect`](Self::connect); also a socket of another address
    /// family than `addr`'s. (A socket not bound yet is bound by the
    /// kernel when it connects, as with `connect`.)
    ///
    /// # Cancel safety
    /// Cancelling drops the socket; no session is left behind.
    pub async fn connect_with_socket<A: ToSocketAddrs>(
        socket: std::net::UdpSocket,
        addr: A,
        config: SessionConfig,
    ) -> io::Result<KcpStream> {
        super::endpoint::connect_with_socket(socket, addr, config).await
    }

    pub(crate) fn new(
        shared: Arc<Shared>,
        cmd: mpsc::UnboundedSender<Cmd>,
        sem: Arc<Semaphore>,
        out_tx: mpsc::UnboundedSender<Outgoing>,
        in_rx: mpsc::Receiver<Bytes>,
    ) -> KcpStream {
        let handle = Handle { shared, cmd };
        KcpStream {
            read: ReadState {
                h: handle.clone(),
                rx: in_rx,
                front: None,
            },
            write: WriteState {
                h: handle,
                sem: PollSemaphore::new(sem.clone()),
                sem_arc: sem,
                tx: out_tx,
                chunks: ChunkBuf::default(),
                shut: false,
            },
        }
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.read.h.shared.peer)
    }

    /// The local address of the UDP socket.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.read.h.shared.local)
    }

    /// The conversation id.
    pub fn conv(&self) -> u32 {
        self.read.h.shared.conv
    }

    /// Counters of this session, as of the socket task's last look at it.
    pub fn stats(&self) -> SessionStats {
        self.read.h.stats()
    }

    /// Bytes written but not yet handed to KCP, plus KCP's unacknowledged
    /// segments counted as full (`mss` bytes each): an upper bound of what is
    /// still on its way to the peer. 0 once everything was acknowledged.
    pub fn send_queue_len(&self) -> usize {
        self.write.queue_len()
    }

    /// Splits into owned halves that can move to different tasks.
    ///
    /// The session ends (see [How a session ends](Self#how-a-session-ends))
    /// when both are dropped. A dropped read half discards what arrives
    /// later; a dropped write half does not end the session.
    /// [`OwnedReadHalf::reunite`] puts the halves back together.
    pub fn into_split(self) -> (OwnedReadHalf, OwnedWriteHalf) {
        (
            OwnedReadHalf { read: self.read },
            OwnedWriteHalf { write: self.write },
        )
    }

    /// Splits into borrowed halves, for reading and writing concurrently in
    /// one task.
    pub fn split(&mut self) -> (ReadHalf<'_>, WriteHalf<'_>) {
        (
            ReadHalf {
                read: &mut self.read,
            },
            WriteHalf {
                write: &mut self.write,
            },
        )
    }

    /// Sends one message (message mode only), waiting for room in the send
    /// queue.
    ///
    /// # Errors
    /// `InvalidInput` in stream mode or for a message larger than
    /// [`KcpConfig::max_message`](crate::KcpConfig::max_message); the close
    /// reason once the session is closed; `BrokenPipe` after shutdown.
    ///
    /// # Cancel safety
    /// Cancel safe: if cancelled, the message was not queued.
    ///
    /// ```no_run
    /// # async fn demo(s: &mut kcp_rs::net::KcpStream) -> std::io::Result<()> {
    /// s.send_msg(b"one message").await?;
    /// let mut buf = vec![0u8; 64 * 1024];
    /// let n = s.recv_msg(&mut buf).await?;
    /// println!("got {:?}", &buf[..n]);
    /// # Ok(()) }
    /// ```
    pub async fn send_msg(&mut self, msg: &[u8]) -> io::Result<()> {
        poll_fn(|cx| self.write.poll_send_msg(cx, msg)).await
    }

    /// Polls to send one message; see [`send_msg`](Self::send_msg).
    pub fn poll_send_msg(&mut self, cx: &mut Context<'_>, msg: &[u8]) -> Poll<io::Result<()>> {
        self.write.poll_send_msg(cx, msg)
    }

    /// Sends one message if the send queue has room now.
    ///
    /// # Errors
    /// `WouldBlock` when it has not; otherwise as [`send_msg`](Self::send_msg).
    pub fn try_send_msg(&mut self, msg: &[u8]) -> io::Result<()> {
        self.write.try_send_msg(msg)
    }

    /// Receives the next message (message mode only) into `buf`, returning
    /// its length.
    ///
    /// # Errors
    /// `InvalidInput` in stream mode, or when the message is longer than
    /// `buf` (it stays queued: call again with a buffer of
    /// [`KcpConfig::max_message`](crate::KcpConfig::max_message) bytes); the
    /// close reason once the session is closed.
    ///
    /// # Cancel safety
    /// Cancel safe: no message is lost if cancelled.
    pub async fn recv_msg(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        poll_fn(|cx| self.read.poll_recv_msg(cx, buf)).await
    }

    /// Polls to receive one message; see [`recv_msg`](Self::recv_msg).
    pub fn poll_recv_msg(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        self.read.poll_recv_msg(cx, buf)
    }

    /// Receives a message if one is ready.
    ///
    /// # Errors
    /// `WouldBlock` when none is; otherwise as [`recv_msg`](Self::recv_msg).
    pub fn try_recv_msg(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read.try_recv_msg(buf)
    }

    /// Writes as much of `buf` as the send queue has room for now.
    ///
    /// # Errors
    /// `WouldBlock` when it has none; the close reason once closed.
    pub fn try_write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write.try_write(buf)
    }

    /// Reads what has arrived, without waiting.
    ///
    /// # Errors
    /// `WouldBlock` when nothing has; the close reason once closed.
    pub fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read.try_read(buf)
    }
}

impl std::fmt::Debug for KcpStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = &self.read.h.shared;
        f.debug_struct("KcpStream")
            .field("conv", &s.conv)
            .field("local", &s.local)
            .field("peer", &s.peer)
            .finish()
    }
}

impl OwnedReadHalf {
    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.read.h.shared.peer)
    }

    /// The conversation id.
    pub fn conv(&self) -> u32 {
        self.read.h.shared.conv
    }

    /// Counters of the session.
    pub fn stats(&self) -> SessionStats {
        self.read.h.stats()
    }

    /// Receives the next message; see [`KcpStream::recv_msg`].
    ///
    /// # Errors
    /// As [`KcpStream::recv_msg`].
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn recv_msg(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        poll_fn(|cx| self.read.poll_recv_msg(cx, buf)).await
    }

    /// Polls to receive one message; see [`KcpStream::recv_msg`].
    pub fn poll_recv_msg(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        self.read.poll_recv_msg(cx, buf)
    }

    /// Puts the stream back together from the two halves
    /// [`into_split`](KcpStream::into_split) made of it.
    ///
    /// # Errors
    /// [`ReuniteError`], holding both halves unchanged, when `other`
    /// belongs to another stream.
    // The error hands both halves back by value, as tokio's does; it is no
    // larger than the stream the `Ok` side returns, on a once-per-stream call.
    #[allow(clippy::result_large_err)]
    pub fn reunite(self, other: OwnedWriteHalf) -> Result<KcpStream, ReuniteError> {
        if Arc::ptr_eq(&self.read.h.shared, &other.write.h.shared) {
            Ok(KcpStream {
                read: self.read,
                write: other.write,
            })
        } else {
            Err(ReuniteError(self, other))
        }
    }
}

impl OwnedWriteHalf {
    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.write.h.shared.peer)
    }

    /// Bytes still on their way; see [`KcpStream::send_queue_len`].
    pub fn send_queue_len(&self) -> usize {
        self.write.queue_len()
    }

    /// Sends one message; see [`KcpStream::send_msg`].
    ///
    /// # Errors
    /// As [`KcpStream::send_msg`].
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn send_msg(&mut self, msg: &[u8]) -> io::Result<()> {
        poll_fn(|cx| self.write.poll_send_msg(cx, msg)).await
    }

    /// Polls to send one message; see [`KcpStream::send_msg`].
    pub fn poll_send_msg(&mut self, cx: &mut Context<'_>, msg: &[u8]) -> Poll<io::Result<()>> {
        self.write.poll_send_msg(cx, msg)
    }

    /// [`OwnedReadHalf::reunite`] from this side.
    ///
    /// # Errors
    /// [`ReuniteError`] when `other` belongs to another stream.
    #[allow(clippy::result_large_err)] // see `OwnedReadHalf::reunite`
    pub fn reunite(self, other: OwnedReadHalf) -> Result<KcpStream, ReuniteError> {
        other.reunite(self)
    }
}

/// The halves given to [`OwnedReadHalf::reunite`] came from two different
/// streams; both are handed back.
pub struct ReuniteError(pub OwnedReadHalf, pub OwnedWriteHalf);

impl std::fmt::Debug for ReuniteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ReuniteError")
            .field(&self.0.conv())
            .field(&self.1.write.h.shared.conv)
            .finish()
    }
}

impl std::fmt::Display for ReuniteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("tried to reunite halves that are not from the same stream")
    }
}

impl std::error::Error for ReuniteError {}

// ----- AsyncRead / AsyncWrite -------------------------------------------------

macro_rules! impl_read {
    ($t:ty, $($field:tt)+) => {
        impl AsyncRead for $t {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                self.get_mut().$($field)+.poll_read(cx, buf)
            }
        }
    };
}

macro_rules! impl_write {
    ($t:ty, $($field:tt)+) => {
        impl AsyncWrite for $t {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                self.get_mut().$($field)+.poll_write(cx, buf)
            }

            /// Pushes queued data onto the wire now (whatever
            /// `flush_on_write` says); does not wait for ACKs.
            fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                self.get_mut().$($field)+.flush();
                Poll::Ready(Ok(()))
            }

            /// Waits until everything written is acknowledged by the peer,
            /// then refuses further writes. Sends nothing to the peer (KCP
            /// has no FIN).
            fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                self.get_mut().$($field)+.poll_shutdown(cx)
            }
        }
    };
}

impl_read!(KcpStream, read);
impl_read!(OwnedReadHalf, read);
impl_read!(ReadHalf<'_>, read);
impl_write!(KcpStream, write);
impl_write!(OwnedWriteHalf, write);
impl_write!(WriteHalf<'_>, write);

// ----- internals --------------------------------------------------------------

#[derive(Clone, Debug)]
struct Handle {
    shared: Arc<Shared>,
    cmd: mpsc::UnboundedSender<Cmd>,
}

impl Handle {
    /// Asks the socket task to look at the session (at most one request
    /// queued at a time).
    fn wake(&self) {
        if !self.shared.wake_pending.swap(true, SeqCst) {
            let _ = self.cmd.send(Cmd::Wake(self.shared.id));
        }
    }

    fn stats(&self) -> SessionStats {
        self.shared.state().stats
    }
}

struct ReadState {
    h: Handle,
    rx: mpsc::Receiver<Bytes>,
    /// A chunk partly read, or a message too long for the last buffer.
    front: Option<Bytes>,
}

impl ReadState {
    fn after_recv(&self) {
        if self.h.shared.rx_blocked.swap(false, SeqCst) {
            self.h.wake();
        }
    }

    /// The reader found its queue empty: if the task holds ACKs back for
    /// its answer, there is none coming; let them go.
    fn on_empty(&self) {
        let held = &self.h.shared.ack_held;
        if held.load(Relaxed) && held.swap(false, SeqCst) {
            self.h.wake();
        }
    }

    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Bytes>> {
        if let Some(b) = self.front.take() {
            return Poll::Ready(Ok(b));
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(b)) => {
                self.after_recv();
                Poll::Ready(Ok(b))
            }
            Poll::Ready(None) => Poll::Ready(Err(self.h.shared.close_error())),
            Poll::Pending => {
                self.on_empty();
                Poll::Pending
            }
        }
    }

    fn try_chunk(&mut self) -> io::Result<Bytes> {
        if let Some(b) = self.front.take() {
            return Ok(b);
        }
        match self.rx.try_recv() {
            Ok(b) => {
                self.after_recv();
                Ok(b)
            }
            Err(mpsc::error::TryRecvError::Empty) => {
                self.on_empty();
                Err(io::ErrorKind::WouldBlock.into())
            }
            Err(mpsc::error::TryRecvError::Disconnected) => Err(self.h.shared.close_error()),
        }
    }

    /// Copies `chunk` into `buf`, keeping what does not fit.
    fn fill(&mut self, mut chunk: Bytes, buf: &mut ReadBuf<'_>) {
        let n = chunk.len().min(buf.remaining());
        buf.put_slice(&chunk[..n]);
        chunk.advance(n);
        if !chunk.is_empty() {
            self.front = Some(chunk);
        }
    }

    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            let chunk = ready!(self.poll_chunk(cx))?;
            if chunk.is_empty() {
                continue; // an empty message carries no bytes
            }
            self.fill(chunk, buf);
            break;
        }
        // Take what else is already here, without waiting.
        while buf.remaining() > 0 && self.front.is_none() {
            match self.rx.try_recv() {
                Ok(chunk) => {
                    self.after_recv();
                    self.fill(chunk, buf);
                }
                Err(_) => break,
            }
        }
        Poll::Ready(Ok(()))
    }

    fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut rb = ReadBuf::new(buf);
        loop {
            let chunk = self.try_chunk()?;
            if !chunk.is_empty() {
                self.fill(chunk, &mut rb);
                break;
            }
        }
        Ok(rb.filled().len())
    }

    fn message_mode(&self) -> io::Result<()> {
        if self.h.shared.stream_mode {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "messages need message mode (KcpConfig::stream = false)",
            ));
        }
        Ok(())
    }

    fn deliver(&mut self, msg: Bytes, buf: &mut [u8]) -> io::Result<usize> {
        if msg.len() > buf.len() {
            let (n, cap) = (msg.len(), buf.len());
            self.front = Some(msg);
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("message of {n} bytes does not fit a buffer of {cap}"),
            ));
        }
        buf[..msg.len()].copy_from_slice(&msg);
        Ok(msg.len())
    }

    fn poll_recv_msg(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        self.message_mode()?;
        let msg = ready!(self.poll_chunk(cx))?;
        Poll::Ready(self.deliver(msg, buf))
    }

    fn try_recv_msg(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.message_mode()?;
        let msg = self.try_chunk()?;
        self.deliver(msg, buf)
    }
}

impl Drop for ReadState {
    fn drop(&mut self) {
        self.h.shared.reader_alive.store(false, SeqCst);
        self.h.wake();
    }
}

struct WriteState {
    h: Handle,
    sem: PollSemaphore,
    sem_arc: Arc<Semaphore>,
    tx: mpsc::UnboundedSender<Outgoing>,
    /// Where each write's chunk is copied to.
    chunks: ChunkBuf,
    shut: bool,
}

impl WriteState {
    fn check_open(&self) -> io::Result<()> {
        if self.shut {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the write half was shut down",
            ));
        }
        Ok(())
    }

    fn queue(&mut self, data: &[u8], permits: usize) -> io::Result<()> {
        let item = Outgoing {
            data: self.chunks.copy(data),
            permits,
        };
        if self.tx.send(item).is_err() {
            return Err(self.h.shared.close_error());
        }
        self.h.wake();
        Ok(())
    }

    /// Bytes this write may take, and the permits it must hold first.
    fn plan(&self, len: usize) -> (usize, usize) {
        let s = &self.h.shared;
        if s.stream_mode {
            let want = len.min(WRITE_CHUNK).min(s.send_limit);
            (want, 1)
        } else {
            let want = len.min(s.max_message);
            (want, want.clamp(1, s.send_limit))
        }
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        self.check_open()?;
        let (want, need) = self.plan(buf.len());
        let Some(mut permit) = ready!(self.sem.poll_acquire_many(cx, need as u32)) else {
            return Poll::Ready(Err(self.h.shared.close_error()));
        };
        let n = if self.h.shared.stream_mode {
            // Take whatever else is free now, up to `want`.
            let extra = (want - 1).min(self.sem_arc.available_permits());
            if extra > 0 {
                if let Ok(p) = self.sem_arc.clone().try_acquire_many_owned(extra as u32) {
                    permit.merge(p);
                }
            }
            permit.num_permits()
        } else {
            want
        };
        let permits = permit.num_permits();
        permit.forget();
        Poll::Ready(self.queue(&buf[..n], permits).map(|()| n))
    }

    fn try_write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.check_open()?;
        let (want, need) = self.plan(buf.len());
        let stream = self.h.shared.stream_mode;
        let got = if stream {
            want.min(self.sem_arc.available_permits()).max(1)
        } else {
            need
        };
        let permit = match self.sem_arc.clone().try_acquire_many_owned(got as u32) {
            Ok(p) => p,
            Err(TryAcquireError::NoPermits) => return Err(io::ErrorKind::WouldBlock.into()),
            Err(TryAcquireError::Closed) => return Err(self.h.shared.close_error()),
        };
        let n = if stream { got } else { want };
        permit.forget();
        self.queue(&buf[..n], got)?;
        Ok(n)
    }

    fn check_message(&self, msg: &[u8]) -> io::Result<usize> {
        self.check_open()?;
        let s = &self.h.shared;
        if s.stream_mode {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "messages need message mode (KcpConfig::stream = false)",
            ));
        }
        if msg.len() > s.max_message {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "message of {} bytes is larger than the largest, {}",
                    msg.len(),
                    s.max_message
                ),
            ));
        }
        Ok(msg.len().clamp(1, s.send_limit))
    }

    fn poll_send_msg(&mut self, cx: &mut Context<'_>, msg: &[u8]) -> Poll<io::Result<()>> {
        let need = self.check_message(msg)?;
        let Some(permit) = ready!(self.sem.poll_acquire_many(cx, need as u32)) else {
            return Poll::Ready(Err(self.h.shared.close_error()));
        };
        permit.forget();
        Poll::Ready(self.queue(msg, need))
    }

    fn try_send_msg(&mut self, msg: &[u8]) -> io::Result<()> {
        let need = self.check_message(msg)?;
        match self.sem_arc.clone().try_acquire_many_owned(need as u32) {
            Ok(p) => p.forget(),
            Err(TryAcquireError::NoPermits) => return Err(io::ErrorKind::WouldBlock.into()),
            Err(TryAcquireError::Closed) => return Err(self.h.shared.close_error()),
        }
        self.queue(msg, need)
    }

    fn flush(&self) {
        if !self.h.shared.flush_on_write {
            self.h.shared.flush_requested.store(true, SeqCst);
            self.h.wake();
        }
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.shut {
            self.shut = true;
            self.h.shared.write_shutdown.store(true, SeqCst);
            self.h.wake();
        }
        let mut st = self.h.shared.state();
        if st.shutdown_done {
            return Poll::Ready(Ok(()));
        }
        if let Some(reason) = &st.closed {
            return Poll::Ready(Err(reason.to_error()));
        }
        st.shutdown_waker = Some(cx.waker().clone());
        Poll::Pending
    }

    fn queue_len(&self) -> usize {
        let s = &self.h.shared;
        let waiting = s
            .send_limit
            .saturating_sub(self.sem_arc.available_permits());
        let unacked = s.state().stats.unacked_segments as usize;
        waiting + unacked * s.mss
    }
}

impl Drop for WriteState {
    fn drop(&mut self) {
        self.h.shared.writer_alive.store(false, SeqCst);
        self.h.wake();
    }
}
