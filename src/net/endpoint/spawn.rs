//! Binding sockets and spawning their tasks: listeners (one task per
//! socket, sharing an accept queue) and clients (a socket each).

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use tokio::net::ToSocketAddrs;
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::net::config::SessionConfig;
use crate::net::session::Cmd;
use crate::net::stats::Counters;
use crate::net::stream::KcpStream;
use crate::net::udp::UdpIo;

use super::Endpoint;

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
