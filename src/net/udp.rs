//! The UDP socket: creation with large buffers, and the two functions every
//! datagram goes through, [`UdpIo::send`] and [`UdpIo::poll_recv`].
//!
//! With the `batch-io` feature (on by default) both go through `quinn-udp`:
//! - **send**: a flush hands over all of one session's datagrams at once,
//!   back to back in one buffer. Runs of equal-size datagrams (a bulk
//!   flush is mostly `mtu`-sized segments), plus one shorter last one, go
//!   to the kernel in one `sendmsg` with UDP GSO (`UDP_SEGMENT`): up to 64
//!   datagrams per system call. Where the OS or the device refuses GSO,
//!   `quinn-udp` falls back to one datagram per call by itself.
//! - **receive**: `recvmmsg` fills up to [`RX_SLOTS`] buffers per call, and
//!   with UDP GRO each buffer may hold many datagrams of one sender, each
//!   `stride` bytes long but the last. Of the per-datagram control messages
//!   `quinn-udp` asks the kernel for, those KCP never reads (TOS byte,
//!   timestamp, destination address) are switched off again on Linux (see
//!   [`skip_unread_control_messages`]).
//!
//! Without the feature, one `sendto`/`recvfrom` per datagram.
//!
//! No `unsafe` here: the system calls are `quinn-udp`'s.

use std::io;
use std::net::SocketAddr;
use std::task::{Context, Poll};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

use super::config::SessionConfig;

/// Datagrams a session produced in one flush, back to back.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    pub buf: Vec<u8>,
    pub lens: Vec<usize>,
    /// The room it was made with: (datagrams, bytes).
    room: (usize, usize),
}

impl crate::KcpOutput for Outbox {
    fn output(&mut self, data: &[u8]) -> crate::KcpResult<usize> {
        self.buf.extend_from_slice(data);
        self.lens.push(data.len());
        Ok(data.len())
    }
}

impl Outbox {
    /// Room for `datagrams` datagrams of `bytes` in all. A socket task's
    /// buffers start with room for any burst of small messages (an FEC
    /// group closed early is data, empty packets and parity at once), so
    /// that only bulk flushes grow them; they keep their largest size until a
    /// session that grew in a burst is trimmed (`plan_trim` in
    /// `endpoint.rs`).
    pub fn with_room(datagrams: usize, bytes: usize) -> Outbox {
        Outbox {
            buf: Vec::with_capacity(bytes),
            lens: Vec::with_capacity(datagrams),
            room: (datagrams, bytes),
        }
    }

    pub fn clear(&mut self) {
        self.buf.clear();
        self.lens.clear();
    }

    /// Gives back what a burst grew beyond the room it was made with (when
    /// empty, as between drives).
    pub fn shrink_to_room(&mut self) {
        self.lens.shrink_to(self.room.0);
        self.buf.shrink_to(self.room.1);
    }
}

/// What a batch of sends did.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct SendReport {
    pub sent: u64,
    pub dropped: u64,
    /// A send on a connected socket reported ECONNREFUSED: an ICMP port
    /// unreachable came back from the peer. Never set on an unconnected
    /// (listener) socket: there the error, where the OS reports it at all
    /// (Linux only with `IP_RECVERR`, which we do not set), is left over
    /// from whichever destination drew the ICMP, not from this send's.
    pub refused: bool,
    /// System calls made.
    pub syscalls: u64,
}

/// Receive buffers filled per system call (`recvmmsg`).
#[cfg(feature = "batch-io")]
pub(crate) const RX_SLOTS: usize = 8;
#[cfg(not(feature = "batch-io"))]
pub(crate) const RX_SLOTS: usize = 1;

/// Most bytes in one GSO send: the UDP length field's limit, less headers.
const GSO_MAX_BYTES: usize = 65_000;
/// Most datagrams in one GSO send (Linux: `UDP_MAX_SEGMENTS`).
#[cfg(feature = "batch-io")]
const GSO_MAX_SEGMENTS: usize = 64;

/// Buffers for one receive call and what it filled.
#[derive(Debug, Default)]
pub(crate) struct RecvBatch {
    buf: Vec<u8>,
    /// Bytes per slot.
    slot: usize,
    /// Largest datagram accepted (the MTU).
    max_datagram: usize,
    /// Per filled slot: sender, bytes, and the length of each datagram in
    /// it (all but the last; = bytes without GRO).
    filled: Vec<(SocketAddr, usize, usize)>,
}

impl RecvBatch {
    /// Every datagram received, in order: `Ok(bytes)`, or `Err(len)` for
    /// one longer than the MTU (truncated or not, it is not KCP's).
    pub fn datagrams(&self) -> impl Iterator<Item = (SocketAddr, Result<&[u8], usize>)> + '_ {
        self.filled
            .iter()
            .enumerate()
            .flat_map(move |(i, &(from, len, stride))| {
                let slot = &self.buf[i * self.slot..i * self.slot + len];
                // `chunks` of an empty slot yields nothing, but an empty
                // datagram is one datagram.
                let stride = if len == 0 { 1 } else { stride.max(1) };
                let empty: &[u8] = &[];
                let first = (len == 0).then_some(empty);
                first.into_iter().chain(slot.chunks(stride)).map(move |d| {
                    if d.len() > self.max_datagram {
                        (from, Err(d.len()))
                    } else {
                        (from, Ok(d))
                    }
                })
            })
    }

    /// Datagrams in the batch.
    pub fn count(&self) -> usize {
        self.filled
            .iter()
            .map(|&(_, len, stride)| len.div_ceil(stride.max(1)).max(1))
            .sum()
    }
}

/// A UDP socket, connected (one peer, a client) or not (a listener).
#[derive(Debug)]
pub(crate) struct UdpIo {
    socket: UdpSocket,
    #[cfg(feature = "batch-io")]
    state: quinn_udp::UdpSocketState,
    connected: bool,
    local: SocketAddr,
}

impl UdpIo {
    /// A socket bound to `addr` with the configured buffer sizes.
    pub fn bind(addr: SocketAddr, cfg: &SessionConfig) -> io::Result<UdpIo> {
        Self::bind_with(addr, cfg, false)
    }

    /// A socket bound to `addr`; with `reuse_port`, `SO_REUSEPORT` is set
    /// first so that several sockets can share the address (Unix).
    pub fn bind_with(addr: SocketAddr, cfg: &SessionConfig, reuse_port: bool) -> io::Result<UdpIo> {
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        // Buffer sizes before `bind`, so that no datagram arrives into the
        // default-sized buffer.
        set_buffer_sizes(&socket, cfg);
        if reuse_port {
            set_reuse_port(&socket)?;
        }
        socket.bind(&addr.into())?;
        Self::register(socket.into())
    }

    /// A socket the caller bound (and possibly connected): made
    /// non-blocking, given the configured buffer sizes, and registered with
    /// the runtime. Must be called within a tokio runtime.
    pub fn adopt(socket: std::net::UdpSocket, cfg: &SessionConfig) -> io::Result<UdpIo> {
        set_buffer_sizes(&socket2::SockRef::from(&socket), cfg);
        Self::register(socket)
    }

    /// Makes `socket` non-blocking and registers it with the runtime.
    fn register(socket: std::net::UdpSocket) -> io::Result<UdpIo> {
        let options = socket2::SockRef::from(&socket);
        socket.set_nonblocking(true)?;
        let local = socket.local_addr()?;
        let connected = socket.peer_addr().is_ok();
        tracing::debug!(
            addr = %local,
            connected,
            rcvbuf = options.recv_buffer_size().unwrap_or(0),
            sndbuf = options.send_buffer_size().unwrap_or(0),
            "UDP socket ready"
        );
        let socket = UdpSocket::from_std(socket)?;
        #[cfg(feature = "batch-io")]
        let state = quinn_udp::UdpSocketState::new((&socket).into())?;
        #[cfg(all(feature = "batch-io", any(target_os = "linux", target_os = "android")))]
        skip_unread_control_messages(&socket, local.is_ipv6());
        Ok(UdpIo {
            socket,
            #[cfg(feature = "batch-io")]
            state,
            connected,
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
    /// tokio's `try_*` calls refuse to send before that, and the first
    /// flush would be dropped.
    pub async fn ready(&self) -> io::Result<()> {
        self.socket.writable().await
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// Receive buffers sized for this socket: `RX_SLOTS` slots of the MTU
    /// plus one byte (to see a longer datagram), or of 64 KiB when the
    /// kernel coalesces datagrams (GRO). Large ones are allocated zeroed,
    /// so pages never written cost no memory.
    pub fn recv_batch(&self, mtu: usize) -> RecvBatch {
        #[cfg(feature = "batch-io")]
        let slot = if self.state.gro_segments() > 1 {
            u16::MAX as usize + 1
        } else {
            mtu + 1
        };
        #[cfg(not(feature = "batch-io"))]
        let slot = mtu + 1;
        RecvBatch {
            buf: vec![0; slot * RX_SLOTS],
            slot,
            max_datagram: mtu,
            filled: Vec::with_capacity(RX_SLOTS),
        }
    }

    /// Receives what is waiting, up to `RX_SLOTS` buffers, into `batch`.
    pub fn poll_recv(&self, cx: &mut Context<'_>, batch: &mut RecvBatch) -> Poll<io::Result<()>> {
        batch.filled.clear();
        #[cfg(feature = "batch-io")]
        {
            use std::io::IoSliceMut;
            use tokio::io::Interest;
            loop {
                std::task::ready!(self.socket.poll_recv_ready(cx))?;
                let mut chunks = batch.buf.chunks_mut(batch.slot);
                let mut iovs: [IoSliceMut<'_>; RX_SLOTS] =
                    std::array::from_fn(|_| IoSliceMut::new(chunks.next().unwrap_or(&mut [])));
                let mut meta = [quinn_udp::RecvMeta::default(); RX_SLOTS];
                // A batch shorter than what one call can fill (`recvmmsg`
                // stops at the first datagram that is not there) emptied
                // the socket: say `WouldBlock` so that tokio clears the
                // readiness now, instead of after one more call that only
                // finds `EAGAIN` (half the receive calls of a ping-pong).
                // A datagram arriving meanwhile keeps it set (tokio
                // compares the readiness tick).
                let mut got = 0;
                let r = self.socket.try_io(Interest::READABLE, || {
                    let n = self
                        .state
                        .recv((&self.socket).into(), &mut iovs, &mut meta)?;
                    got = n;
                    if n < RX_SLOTS.min(quinn_udp::BATCH_SIZE) {
                        return Err(io::ErrorKind::WouldBlock.into());
                    }
                    Ok(n)
                });
                let r = match r {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock && got > 0 => Ok(got),
                    r => r,
                };
                match r {
                    Ok(n) => {
                        for m in &meta[..n] {
                            batch.filled.push((m.addr, m.len, m.stride));
                        }
                        return Poll::Ready(Ok(()));
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Poll::Ready(Err(e)),
                }
            }
        }
        #[cfg(not(feature = "batch-io"))]
        {
            let mut rb = tokio::io::ReadBuf::new(&mut batch.buf);
            let from = std::task::ready!(self.socket.poll_recv_from(cx, &mut rb))?;
            let len = rb.filled().len();
            batch.filled.push((from, len, len));
            Poll::Ready(Ok(()))
        }
    }

    /// Sends the datagrams of `out` to `peer`. A full socket buffer drops
    /// the rest (KCP retransmits what they carried); nothing blocks.
    pub fn send(&self, peer: SocketAddr, out: &Outbox) -> SendReport {
        let mut report = SendReport::default();
        let mut off = 0;
        let mut i = 0;
        while i < out.lens.len() {
            let (n, bytes) = self.run(&out.lens[i..]);
            let r = self.send_run(peer, &out.buf[off..off + bytes], out.lens[i], n);
            report.syscalls += 1;
            i += n;
            off += bytes;
            match r {
                Ok(()) => report.sent += n as u64,
                Err(e) => {
                    report.dropped += n as u64;
                    report.refused |=
                        self.connected && e.kind() == io::ErrorKind::ConnectionRefused;
                    if e.kind() == io::ErrorKind::WouldBlock {
                        // The buffer is full: the rest would fail as well.
                        report.dropped += (out.lens.len() - i) as u64;
                        break;
                    }
                    tracing::trace!(%peer, error = %e, "send failed");
                }
            }
        }
        report
    }

    /// How many datagrams from the front of `lens` go in one system call,
    /// and their bytes: with GSO a run of equal sizes plus one shorter.
    fn run(&self, lens: &[usize]) -> (usize, usize) {
        #[cfg(feature = "batch-io")]
        let max = self.state.max_gso_segments().min(GSO_MAX_SEGMENTS);
        #[cfg(not(feature = "batch-io"))]
        let max = 1;
        gso_run(lens, max)
    }

    /// Sends `n` datagrams of `seg` bytes (the last may be shorter), back to
    /// back in `data`, in one system call. A single datagram goes out with a
    /// plain `send`/`sendto`, a little cheaper than `sendmsg` with a control
    /// header (async ping-pong: about 3% less CPU per round trip).
    fn send_run(&self, peer: SocketAddr, data: &[u8], seg: usize, n: usize) -> io::Result<()> {
        #[cfg(feature = "batch-io")]
        if n > 1 {
            let t = quinn_udp::Transmit {
                destination: peer,
                ecn: None,
                contents: data,
                segment_size: Some(seg),
                src_ip: None,
            };
            return self.socket.try_io(tokio::io::Interest::WRITABLE, || {
                self.state.try_send((&self.socket).into(), &t)
            });
        }
        {
            let _ = (seg, n);
            let r = if self.connected {
                self.socket.try_send(data)
            } else {
                self.socket.try_send_to(data, peer)
            };
            r.map(|_| ())
        }
    }
}

/// The longest run at the front of `lens` (not empty) that one GSO send
/// can carry: at most `max` datagrams and `GSO_MAX_BYTES`, all of the first
/// one's size but the last, which may be shorter. Returns its datagrams and
/// bytes.
fn gso_run(lens: &[usize], max: usize) -> (usize, usize) {
    let seg = lens[0];
    let (mut n, mut bytes) = (1, seg);
    while n < lens.len() && n < max && bytes + lens[n] <= GSO_MAX_BYTES {
        let len = lens[n];
        if len > seg {
            break;
        }
        n += 1;
        bytes += len;
        if len < seg {
            break; // a shorter segment can only be the last
        }
    }
    (n, bytes)
}

/// The configured `SO_RCVBUF` / `SO_SNDBUF`, where given. The kernel may
/// cap them (`net.core.rmem_max`); a refusal only costs throughput, so it
/// is logged, not returned.
fn set_buffer_sizes(socket: &Socket, cfg: &SessionConfig) {
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
}

/// `quinn-udp` asks the kernel for control messages nothing here reads:
/// each is one more thing for the kernel to build per datagram and for
/// `quinn-udp` to parse, on the path of every round trip. Switched off
/// again after `UdpSocketState::new` (we send from the bound address and
/// never ask which one a datagram came to):
/// - the TOS byte / traffic class (`IP_RECVTOS`, `IPV6_RECVTCLASS`, for
///   ECN, which KCP does not use). It is also the one that no longer fits
///   `quinn-udp`'s control buffer beside a GRO segment size (the kernel
///   then flags the receive `MSG_CTRUNC`). About 0.2 µs less CPU per 64-byte
///   ping-pong round trip (16.4 → 16.2 µs, medians of 12 alternating runs);
/// - the receive timestamp (`SO_TIMESTAMPNS`) and the destination address
///   (`IP_PKTINFO`, `IPV6_RECVPKTINFO`): ping-pong p50 14.9–15.0 → 14.5–14.7
///   µs (five alternating runs of 20,000 round trips each; half of it from
///   either). `SO_TIMESTAMPNS` is worth it twice: while any socket on the
///   host asks for timestamps, the kernel stamps every packet it receives.
///
/// Failure only costs that, so it is logged, not returned.
#[cfg(all(feature = "batch-io", any(target_os = "linux", target_os = "android")))]
fn skip_unread_control_messages(socket: &UdpSocket, ipv6: bool) {
    use nix::sys::socket::{setsockopt, sockopt};
    let s = socket2::SockRef::from(socket);
    // An IPv6 socket gets the traffic class, and the TOS byte of IPv4
    // datagrams too unless it is v6-only (which refuses `IP_RECVTOS`).
    let (tos, pktinfo) = if ipv6 {
        let _ = s.set_recv_tos(false);
        (
            s.set_recv_tclass_v6(false),
            setsockopt(socket, sockopt::Ipv6RecvPacketInfo, &false),
        )
    } else {
        (
            s.set_recv_tos(false),
            setsockopt(socket, sockopt::Ipv4PacketInfo, &false),
        )
    };
    let stamp = setsockopt(socket, sockopt::ReceiveTimestampns, &false);
    if let Err(e) = tos {
        tracing::debug!(error = %e, "could not switch off IP_RECVTOS / IPV6_RECVTCLASS");
    }
    if let Err(e) = pktinfo.and(stamp) {
        tracing::debug!(error = %e, "could not switch off IP_PKTINFO / SO_TIMESTAMPNS");
    }
}

#[cfg(unix)]
fn set_reuse_port(socket: &Socket) -> io::Result<()> {
    socket.set_reuse_port(true)
}

#[cfg(not(unix))]
fn set_reuse_port(_socket: &Socket) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "SO_REUSEPORT is not available on this platform",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KcpOutput;

    /// `SO_RCVBUF` and `SO_SNDBUF` as the kernel reports them.
    fn buffer_sizes(s: socket2::SockRef<'_>) -> (usize, usize) {
        (s.recv_buffer_size().unwrap(), s.send_buffer_size().unwrap())
    }

    #[tokio::test]
    async fn bound_and_adopted_sockets_get_the_configured_buffer_sizes() {
        // Below the usual `rmem_max`/`wmem_max`, so the kernel does not cap them.
        let (rcv, snd) = (96 << 10, 48 << 10);
        let cfg = SessionConfig {
            socket_recv_buffer: Some(rcv),
            socket_send_buffer: Some(snd),
            ..SessionConfig::default()
        };
        // What a fresh socket asked for these sizes reports (Linux doubles
        // them), and what one asked for nothing does.
        let mk = || Socket::new(Domain::IPV4, Type::DGRAM, None).unwrap();
        let asked = mk();
        set_buffer_sizes(&asked, &cfg);
        let want = buffer_sizes((&asked).into());
        assert_ne!(
            want,
            buffer_sizes((&mk()).into()),
            "the kernel ignored the sizes: nothing to test"
        );
        let bound = UdpIo::bind(([127, 0, 0, 1], 0).into(), &cfg).unwrap();
        assert_eq!(buffer_sizes((&bound.socket).into()), want);
        let std = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let adopted = UdpIo::adopt(std, &cfg).unwrap();
        assert_eq!(buffer_sizes((&adopted.socket).into()), want);
    }

    #[test]
    fn an_outbox_gives_back_what_a_burst_grew() {
        let mut out = Outbox::with_room(32, 4096);
        for _ in 0..1000 {
            out.output(&[7; 1400]).unwrap();
        }
        assert!(out.buf.capacity() >= 1_400_000 && out.lens.capacity() >= 1000);
        out.clear();
        out.shrink_to_room();
        assert!(out.buf.capacity() < 8192, "{}", out.buf.capacity());
        assert!(out.lens.capacity() < 64, "{}", out.lens.capacity());
        // Still usable; room is room, not a limit.
        out.output(&[1; 10]).unwrap();
        assert_eq!(
            (out.buf.as_slice(), out.lens.as_slice()),
            (&[1u8; 10][..], &[10][..])
        );
    }

    #[test]
    fn gso_runs_are_equal_sizes_then_one_shorter() {
        assert_eq!(gso_run(&[1400, 1400, 1400, 600, 1400], 64), (4, 4800));
        assert_eq!(gso_run(&[1400, 1400], 1), (1, 1400));
        assert_eq!(gso_run(&[600, 1400, 1400], 64), (1, 600));
        assert_eq!(gso_run(&[1400, 1400, 1400], 2), (2, 2800));
        assert_eq!(gso_run(&[1400; 100], 64), (46, 46 * 1400));
        assert_eq!(gso_run(&[24], 64), (1, 24));
    }

    #[test]
    fn a_received_batch_splits_coalesced_datagrams() {
        let from: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let mut b = RecvBatch {
            buf: vec![0; 3 * 16],
            slot: 16,
            max_datagram: 5,
            filled: Vec::new(),
        };
        b.buf[..12].copy_from_slice(b"aaaabbbbcc..");
        b.buf[32..38].copy_from_slice(b"toolon");
        b.filled = vec![(from, 10, 4), (from, 0, 0), (from, 6, 6)];
        let got: Vec<_> = b.datagrams().map(|(_, d)| d).collect();
        let want: [Result<&[u8], usize>; 5] =
            [Ok(b"aaaa"), Ok(b"bbbb"), Ok(b"cc"), Ok(b""), Err(6)];
        assert_eq!(got, want);
        assert_eq!(b.count(), 5);
    }

    /// The options `skip_unread_control_messages` switches off are off.
    #[cfg(all(feature = "batch-io", any(target_os = "linux", target_os = "android")))]
    fn assert_unread_control_messages_off(socket: &UdpSocket, ipv6: bool) {
        use nix::sys::socket::{getsockopt, sockopt};
        let s = socket2::SockRef::from(socket);
        if ipv6 {
            assert!(!s.recv_tclass_v6().unwrap(), "IPV6_RECVTCLASS still on");
            assert!(
                !getsockopt(socket, sockopt::Ipv6RecvPacketInfo).unwrap(),
                "IPV6_RECVPKTINFO still on"
            );
        } else {
            assert!(!s.recv_tos().unwrap(), "IP_RECVTOS still on");
            assert!(
                !getsockopt(socket, sockopt::Ipv4PacketInfo).unwrap(),
                "IP_PKTINFO still on"
            );
        }
        assert!(
            !getsockopt(socket, sockopt::ReceiveTimestampns).unwrap(),
            "SO_TIMESTAMPNS still on"
        );
    }

    /// The TOS byte, timestamp and destination address are not asked for
    /// (see `skip_unread_control_messages`), and GRO still is: a GSO batch
    /// of three datagrams arrives as three datagrams.
    #[cfg(all(feature = "batch-io", any(target_os = "linux", target_os = "android")))]
    #[tokio::test]
    async fn receives_without_tos_and_still_splits_coalesced_datagrams() {
        let cfg = SessionConfig::default();
        let a = UdpIo::bind("127.0.0.1:0".parse().unwrap(), &cfg).unwrap();
        // The receiver on a socket the caller bound (`KcpListener::from_std`).
        let b = UdpIo::adopt(std::net::UdpSocket::bind("127.0.0.1:0").unwrap(), &cfg).unwrap();
        for io in [&a, &b] {
            assert_unread_control_messages_off(&io.socket, false);
        }
        let v6 = UdpIo::bind("[::1]:0".parse().unwrap(), &cfg);
        if let Ok(v6) = v6 {
            assert_unread_control_messages_off(&v6.socket, true);
        }
        a.ready().await.unwrap();
        b.ready().await.unwrap();
        let mut out = Outbox::default();
        for (i, len) in [(1u8, 1000), (2, 1000), (3, 600)] {
            crate::KcpOutput::output(&mut out, &vec![i; len]).unwrap();
        }
        let r = a.send(b.local_addr(), &out);
        assert_eq!((r.sent, r.dropped), (3, 0), "{r:?}");
        let mut batch = b.recv_batch(1400);
        let mut got: Vec<Vec<u8>> = Vec::new();
        let mut slots = 0;
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while got.len() < 3 && tokio::time::Instant::now() < deadline {
            let r = tokio::time::timeout_at(
                deadline,
                std::future::poll_fn(|cx| b.poll_recv(cx, &mut batch)),
            )
            .await;
            let Ok(Ok(())) = r else { break };
            slots += batch.filled.len();
            for (from, d) in batch.datagrams() {
                assert_eq!(from, a.local_addr());
                got.push(d.expect("no datagram over the MTU").to_vec());
            }
        }
        let want: Vec<Vec<u8>> = vec![vec![1; 1000], vec![2; 1000], vec![3; 600]];
        assert_eq!(got, want);
        if a.state.max_gso_segments() > 1 && b.state.gro_segments() > 1 {
            assert_eq!(slots, 1, "sent with GSO, not received coalesced");
        }
    }

    /// Where an unconnected socket reports ICMP errors (here: Linux with
    /// `IP_RECVERR` switched on for the test), a port unreachable from one
    /// destination fails the next send to any other. That send's datagram
    /// is lost (KCP retransmits it), but its peer must not be told its
    /// port is closed.
    #[cfg(all(feature = "batch-io", target_os = "linux"))]
    #[tokio::test]
    async fn a_listener_blames_no_peer_for_another_ones_closed_port() {
        let cfg = SessionConfig::default();
        let io = UdpIo::bind("127.0.0.1:0".parse().unwrap(), &cfg).unwrap();
        io.ready().await.unwrap();
        io.state
            .enable_transport_errors((&io.socket).into())
            .unwrap();
        let closed = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap(); // the socket is dropped: the port is closed
        let live = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let live = live.local_addr().unwrap();
        let mut out = Outbox::default();
        crate::KcpOutput::output(&mut out, &[1; 24]).unwrap();
        let mut failed = None;
        for _ in 0..200 {
            io.send(closed, &out);
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            let r = io.send(live, &out);
            if r.dropped > 0 {
                failed = Some(r);
                break;
            }
        }
        let r = failed.expect("no ICMP error surfaced on the socket");
        assert!(!r.refused, "{r:?}");
        // It was a port unreachable (only `closed` draws one; the error
        // names the ICMP's sender, not the port).
        let e = io
            .state
            .recv_transport_error((&io.socket).into())
            .unwrap()
            .expect("an ICMP error queued");
        assert_eq!(
            io::Error::from_raw_os_error(e.raw_errno).kind(),
            io::ErrorKind::ConnectionRefused
        );
    }
}
