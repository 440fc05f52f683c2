//! [`KcpListener`]: a UDP socket that accepts KCP sessions.

use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::net::ToSocketAddrs;
use tokio::sync::{mpsc, Mutex};

use super::config::SessionConfig;
use super::endpoint::{self, Accepted};
use super::session::Cmd;
use super::stats::{Counters, ListenerStats};
use super::stream::KcpStream;

/// A KCP server: one UDP socket, many sessions.
///
/// A session opens when a datagram from an unknown `(address, conv)` looks
/// like the first flight of a conversation (PUSH segments starting at the
/// first sequence number) and the limits allow
/// ([`SessionConfig::max_sessions`], [`max_sessions_per_ip`](SessionConfig::max_sessions_per_ip)).
/// It is handed to [`accept`](Self::accept) once the peer has answered a
/// window probe (one round trip): sessions opened by stray or spoofed
/// datagrams expire after [`half_open_timeout`](SessionConfig::half_open_timeout)
/// without the application ever seeing them.
///
/// Dropping the listener stops accepting; sessions already accepted go on.
/// The socket closes when the listener and every session are gone.
///
/// ```no_run
/// use kcp_rs::net::{KcpListener, SessionConfig};
///
/// # async fn demo() -> std::io::Result<()> {
/// let listener = KcpListener::bind("0.0.0.0:4000", SessionConfig::default()).await?;
/// loop {
///     let (mut stream, peer) = listener.accept().await?;
///     tokio::spawn(async move {
///         let (mut r, mut w) = stream.split();
///         let _ = tokio::io::copy(&mut r, &mut w).await;
///     });
/// }
/// # }
/// ```
pub struct KcpListener {
    accept_rx: Mutex<mpsc::Receiver<Accepted>>,
    cmd_tx: Vec<mpsc::UnboundedSender<Cmd>>,
    counters: Arc<Counters>,
    local: SocketAddr,
}

impl KcpListener {
    /// Binds a UDP socket to `addr` and starts its socket task.
    ///
    /// # Errors
    /// An invalid `config` (`InvalidInput`), an address that does not
    /// resolve, or a socket that cannot be bound.
    pub async fn bind<A: ToSocketAddrs>(addr: A, config: SessionConfig) -> io::Result<KcpListener> {
        Self::from_parts(endpoint::listen(addr, config, 1).await?)
    }

    /// Binds `sockets` UDP sockets to the same address with `SO_REUSEPORT`,
    /// each driven by a task of its own, so that a server on a
    /// multi-threaded runtime spreads its sessions over the cores.
    ///
    /// The kernel picks the socket of each datagram by a hash of its source
    /// and destination, so all of one client's datagrams reach the same
    /// socket and session. Sessions from every socket come out of the one
    /// [`accept`](Self::accept), and [`stats`](Self::stats) sums over the
    /// sockets. [`max_sessions`](SessionConfig::max_sessions) bounds the
    /// listener's total (it may be passed by up to `sockets - 1` when
    /// sessions open on several sockets at the same instant);
    /// [`max_sessions_per_ip`](SessionConfig::max_sessions_per_ip) holds
    /// per socket. With `sockets == 1` this is [`bind`](Self::bind).
    ///
    /// After the listener is dropped, a socket closes once its own sessions
    /// are gone, and the kernel then sends the datagrams it received to the
    /// remaining sockets, which do not know the sessions of the closed one
    /// (they are dropped; such a session ends by its idle timeout). This
    /// only concerns sessions still open after the listener was dropped.
    ///
    /// ```no_run
    /// use kcp_rs::net::{KcpListener, SessionConfig};
    ///
    /// # async fn demo() -> std::io::Result<()> {
    /// let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    /// let listener =
    ///     KcpListener::bind_reuseport("0.0.0.0:4000", SessionConfig::default(), cores).await?;
    /// let (stream, peer) = listener.accept().await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`bind`](Self::bind); `InvalidInput` when `sockets` is 0;
    /// `Unsupported` on platforms without `SO_REUSEPORT` when `sockets > 1`.
    pub async fn bind_reuseport<A: ToSocketAddrs>(
        addr: A,
        config: SessionConfig,
        sockets: usize,
    ) -> io::Result<KcpListener> {
        Self::from_parts(endpoint::listen(addr, config, sockets).await?)
    }

    /// A listener on a UDP socket the caller made: bound to an address
    /// [`bind`](Self::bind) cannot express (a device, a port handed over
    /// by a service manager), or with options set beforehand. The socket is
    /// switched to non-blocking mode and given the configured buffer sizes.
    /// Must be called within a tokio runtime.
    ///
    /// ```no_run
    /// use kcp_rs::net::{KcpListener, SessionConfig};
    ///
    /// # async fn demo() -> std::io::Result<()> {
    /// let socket = std::net::UdpSocket::bind("0.0.0.0:4000")?;
    /// let listener = KcpListener::from_std(socket, SessionConfig::default()).await?;
    /// let (stream, peer) = listener.accept().await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// An invalid `config` or a socket not bound to a port (`InvalidInput`),
    /// or one that cannot be registered with the runtime.
    pub async fn from_std(
        socket: std::net::UdpSocket,
        config: SessionConfig,
    ) -> io::Result<KcpListener> {
        Self::from_parts(endpoint::listen_on(socket, config).await?)
    }

    fn from_parts(parts: endpoint::ListenerParts) -> io::Result<KcpListener> {
        Ok(KcpListener {
            accept_rx: Mutex::new(parts.accept_rx),
            cmd_tx: parts.cmd_tx,
            counters: parts.counters,
            local: parts.local,
        })
    }

    /// Waits for the next session.
    ///
    /// Several tasks may call it at once; each session goes to one of them.
    ///
    /// # Errors
    /// `ConnectionAborted` when the socket task has ended (its runtime shut
    /// down).
    ///
    /// # Cancel safety
    /// Cancel safe: a session is never lost by cancelling.
    pub async fn accept(&self) -> io::Result<(KcpStream, SocketAddr)> {
        let mut rx = self.accept_rx.lock().await;
        poll_fn(|cx| poll_accept_rx(&mut rx, cx)).await
    }

    /// Polls for the next session; see [`accept`](Self::accept).
    pub fn poll_accept(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<(KcpStream, SocketAddr)>> {
        poll_accept_rx(self.accept_rx.get_mut(), cx)
    }

    /// The accepted sessions as a [`futures_core::Stream`].
    ///
    /// ```no_run
    /// # use kcp_rs::net::{KcpListener, SessionConfig};
    /// # async fn demo() -> std::io::Result<()> {
    /// use futures::StreamExt;
    /// let mut listener = KcpListener::bind("0.0.0.0:4000", SessionConfig::default()).await?;
    /// let mut incoming = listener.incoming();
    /// while let Some(stream) = incoming.next().await {
    ///     let stream = stream?;
    ///     println!("session from {}", stream.peer_addr()?);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn incoming(&mut self) -> Incoming<'_> {
        Incoming { listener: self }
    }

    /// The local address of the socket.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }

    /// Totals of the socket task (of all of them, after
    /// [`bind_reuseport`](Self::bind_reuseport)): datagrams, drops, sessions.
    pub fn stats(&self) -> ListenerStats {
        self.counters.snapshot()
    }
}

impl std::fmt::Debug for KcpListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KcpListener")
            .field("local", &self.local)
            .finish()
    }
}

impl Drop for KcpListener {
    fn drop(&mut self) {
        for tx in &self.cmd_tx {
            let _ = tx.send(Cmd::ListenerClosed);
        }
    }
}

fn poll_accept_rx(
    rx: &mut mpsc::Receiver<Accepted>,
    cx: &mut Context<'_>,
) -> Poll<io::Result<(KcpStream, SocketAddr)>> {
    rx.poll_recv(cx).map(|r| {
        r.ok_or_else(|| io::Error::new(io::ErrorKind::ConnectionAborted, "the socket task ended"))
    })
}

/// Accepted sessions as a stream; from [`KcpListener::incoming`].
#[derive(Debug)]
pub struct Incoming<'a> {
    listener: &'a mut KcpListener,
}

impl futures_core::Stream for Incoming<'_> {
    type Item = io::Result<KcpStream>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut()
            .listener
            .poll_accept(cx)
            .map(|r| Some(r.map(|(s, _)| s)))
    }
}
