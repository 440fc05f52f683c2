//! The UDP socket: creation with large buffers, and the one function every
//! outgoing datagram goes through.
//!
//! Batched I/O (GSO / `sendmmsg`, e.g. through `quinn-udp`) plugs in at
//! [`UdpIo::send`]: a flush hands it all of one session's datagrams at once,
//! contiguous in one buffer and all `mtu` long but the last, which is the
//! shape GSO wants.

use std::io;
use std::net::SocketAddr;
use std::task::{Context, Poll};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::ReadBuf;
use tokio::net::UdpSocket;

use super::config::SessionConfig;

/// Datagrams a session produced in one flush, back to back.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    pub buf: Vec<u8>,
    pub lens: Vec<usize>,
}

impl crate::KcpOutput for Outbox {
    fn output(&mut self, data: &[u8]) -> crate::KcpResult<usize> {
        self.buf.extend_from_slice(data);
        self.lens.push(data.len());
        Ok(data.len())
    }
}

impl Outbox {
    pub fn clear(&mut self) {
        self.buf.clear();
        self.lens.clear();
    }
}

/// What a batch of sends did.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct SendReport {
    pub sent: u64,
    pub dropped: u64,
    /// A send reported ECONNREFUSED (an ICMP port unreachable came back).
    pub refused: bool,
}

/// A UDP socket, connected (one peer, a client) or not (a listener).
#[derive(Debug)]
pub(crate) struct UdpIo {
    socket: UdpSocket,
    connected: bool,
    local: SocketAddr,
}

impl UdpIo {
    /// A socket bound to `addr` with the configured buffer sizes.
    pub fn bind(addr: SocketAddr, cfg: &SessionConfig) -> io::Result<UdpIo> {
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        if let Some(n) = cfg.socket_recv_buffer {
            if let Err(e) = socket.set_recv_buffer_size(n) {
                tracing::debug!(error = %e, "could not set SO_RCVBUF");
            }
        }
        if let Some(n) = cfg.socket_send_buffer {
            if let Err(e) = socket.set_send_buffer_size(n) {
                tracing::debug!(error = %e, "could not set SO_SNDBUF");
            }
        }
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        tracing::debug!(
            %addr,
            rcvbuf = socket.recv_buffer_size().unwrap_or(0),
            sndbuf = socket.send_buffer_size().unwrap_or(0),
            "UDP socket bound"
        );
        let socket = UdpSocket::from_std(socket.into())?;
        let local = socket.local_addr()?;
        Ok(UdpIo {
            socket,
            connected: false,
            local,
        })
    }

    /// Restricts the socket to one peer: datagrams from others are filtered
    /// by the kernel, and ICMP errors (port unreachable) are reported.
    pub async fn connect(&mut self, peer: SocketAddr) -> io::Result<()> {
        self.socket.connect(peer).await?;
        self.connected = true;
        self.local = self.socket.local_addr()?;
        Ok(())
    }

    /// Waits until the reactor has reported the socket writable once:
    /// tokio's `try_send*` refuse to send before that, and the first flush
    /// would be dropped.
    pub async fn ready(&self) -> io::Result<()> {
        self.socket.writable().await
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    pub fn is_connected(&self) -> bool {
        self.connected
    }

    pub fn poll_recv_from(
        &self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<SocketAddr>> {
        self.socket.poll_recv_from(cx, buf)
    }

    /// Sends the datagrams of `out` to `peer`. A full socket buffer drops
    /// the rest (KCP retransmits what they carried); nothing blocks.
    pub fn send(&self, peer: SocketAddr, out: &Outbox) -> SendReport {
        let mut report = SendReport::default();
        let mut off = 0;
        for &len in &out.lens {
            let d = &out.buf[off..off + len];
            off += len;
            let r = if self.connected {
                self.socket.try_send(d)
            } else {
                self.socket.try_send_to(d, peer)
            };
            match r {
                Ok(_) => report.sent += 1,
                Err(e) => {
                    report.dropped += 1;
                    report.refused |= e.kind() == io::ErrorKind::ConnectionRefused;
                    if e.kind() != io::ErrorKind::WouldBlock {
                        tracing::trace!(%peer, error = %e, "send failed");
                    }
                }
            }
        }
        report
    }
}
