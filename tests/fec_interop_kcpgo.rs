//! Interop with kcp-go 5.6's FEC (10 data + 3 parity, no encryption) over
//! loopback UDP, both ways: our client against kcp-go's echo server, and
//! kcp-go's client against our echo server.
//!
//! The Go peer (`peers/go/fecpeer`) is built by `scripts/build-go-peer.sh`;
//! a missing Go toolchain or kcp-go fails these tests. Each side drops a few
//! of its outgoing packets on purpose so that the other side's decoder must
//! recover them from parity; both sides' recovery counters are checked.
//! Every wait is bounded; the Go process dies with the test (stdin EOF,
//! its own timeout, or `kill` on drop).
#![cfg(feature = "fec")]

use std::collections::VecDeque;
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use kcp_rs::fec::{framing, FecConfig, FecDecoder, FecEncoder};
use kcp_rs::{Kcp, KcpConfig, KcpError, KcpOutput, KcpResult};

#[path = "support/go_peer.rs"]
mod go_peer;
use go_peer::{message, stat, GoPeer};

const DATA_SHARDS: usize = 10;
const PARITY_SHARDS: usize = 3;
const MESSAGES: usize = 200;
/// kcp-go's default MTU; FEC takes 8 bytes of it.
const LINK_MTU: u32 = 1400;
/// Outgoing FEC packet `i` is dropped when `i % 9 == 4`: at most two per
/// group of 13, always recoverable.
const DROP_OUT: (u64, u64) = (9, 4);
/// Incoming FEC packet `i` is dropped when `i % 11 == 5`.
const DROP_IN: (u64, u64) = (11, 5);

fn stream() -> Vec<u8> {
    (0..MESSAGES).flat_map(message).collect()
}

fn fec_config() -> FecConfig {
    FecConfig::new(DATA_SHARDS, PARITY_SHARDS).expect("10+3 is valid")
}

/// kcp-go's session settings in the peer: `SetNoDelay(1, 10, 2, 1)`,
/// `SetWindowSize(128, 128)`, MTU 1400 minus the FEC header.
fn kcp_config() -> KcpConfig {
    KcpConfig {
        mtu: FecConfig::kcp_mtu(LINK_MTU),
        snd_wnd: 128,
        rcv_wnd: 128,
        ..KcpConfig::default().with_ikcp_nodelay(1, 10, 2, true)
    }
}

/// KCP output: FEC-encode, drop a few packets on purpose, send.
struct FecLink {
    sock: UdpSocket,
    peer: SocketAddr,
    enc: FecEncoder,
    sent: u64,
    dropped: u64,
}

impl FecLink {
    fn send(sock: &UdpSocket, peer: SocketAddr, sent: &mut u64, dropped: &mut u64, p: &[u8]) {
        *sent += 1;
        if *sent % DROP_OUT.0 == DROP_OUT.1 {
            *dropped += 1;
            return;
        }
        let _ = sock.send_to(p, peer);
    }

    /// Closes a group that waited a quarter RTO.
    fn poll(&mut self, now: u32, rto: u32) {
        let FecLink {
            sock,
            peer,
            enc,
            sent,
            dropped,
        } = self;
        enc.poll(now, rto, |p| Self::send(sock, *peer, sent, dropped, p));
    }
}

impl KcpOutput for FecLink {
    fn output(&mut self, data: &[u8]) -> KcpResult<usize> {
        let FecLink {
            sock,
            peer,
            enc,
            sent,
            dropped,
        } = self;
        enc.encode(data, |p| Self::send(sock, *peer, sent, dropped, p))
            .map_err(|_| KcpError::OutputFailed)?;
        Ok(data.len())
    }
}

/// Our side: a socket, a KCP session behind FEC, created from the first
/// data packet when serving.
struct Endpoint {
    sock: UdpSocket,
    kcp: Option<Kcp<FecLink>>,
    dec: FecDecoder,
    received: u64,
    start: Instant,
}

impl Endpoint {
    fn bind() -> Endpoint {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
        sock.set_read_timeout(Some(Duration::from_millis(1)))
            .expect("read timeout");
        Endpoint {
            sock,
            kcp: None,
            dec: FecDecoder::new(fec_config()).expect("decoder"),
            received: 0,
            start: Instant::now(),
        }
    }

    fn now(&self) -> u32 {
        self.start.elapsed().as_millis() as u32
    }

    fn connect(&mut self, conv: u32, peer: SocketAddr) {
        let link = FecLink {
            sock: self.sock.try_clone().expect("clone socket"),
            peer,
            enc: FecEncoder::new(fec_config()).expect("encoder"),
            sent: 0,
            dropped: 0,
        };
        self.kcp = Some(Kcp::with_config(conv, link, kcp_config()).expect("kcp config"));
    }

    /// Reads what arrived, runs KCP and FEC timers, hands each received
    /// message to `on_message` with the session to answer on.
    fn pump(&mut self, mut on_message: impl FnMut(&mut Kcp<FecLink>, &[u8])) {
        let mut buf = [0u8; 2048];
        loop {
            let (n, from) = match self.sock.recv_from(&mut buf) {
                Ok(r) => r,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
                Err(e) => panic!("recv: {e}"),
            };
            let packet = &buf[..n];
            if self.kcp.is_none() {
                // Serving: the first data packet names the conversation.
                let conv = match framing::Packet::new_checked(packet) {
                    Ok(p) if p.kcp_bytes().len() >= 24 => kcp_rs::codec::peek_conv(p.kcp_bytes()),
                    _ => None,
                };
                match conv {
                    Some(conv) => self.connect(conv, from),
                    None => continue,
                }
            }
            self.received += 1;
            if self.received % DROP_IN.0 == DROP_IN.1 {
                continue;
            }
            let now = self.now();
            let Some(kcp) = self.kcp.as_mut() else {
                continue;
            };
            let _ = self.dec.decode(now, packet, |d| {
                let _ = kcp.input(d);
            });
        }
        let now = self.now();
        let Some(kcp) = self.kcp.as_mut() else { return };
        let mut msg = vec![0u8; 1 << 16];
        while let Ok(n) = kcp.recv(&mut msg) {
            on_message(kcp, &msg[..n]);
        }
        kcp.update(now);
        let rto = kcp.rto();
        kcp.output_mut().poll(now, rto);
    }
}

#[test]
fn our_client_echoes_through_kcp_go_server() {
    let peer = GoPeer::spawn(&["server", "-addr", "127.0.0.1:0"]);
    let listen = peer.line_starting("LISTEN", Duration::from_secs(20));
    let addr: SocketAddr = listen[7..].trim().parse().expect("listen address");

    let mut ep = Endpoint::bind();
    ep.connect(0x1234_5678, addr);
    let expected = stream();
    let mut got = Vec::with_capacity(expected.len());
    let mut next = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.len() < expected.len() {
        assert!(
            Instant::now() < deadline,
            "echo incomplete: {} of {} bytes",
            got.len(),
            expected.len()
        );
        let kcp = ep.kcp.as_mut().expect("connected");
        while next < MESSAGES && kcp.wait_snd() < 256 {
            match kcp.send(&message(next)) {
                Ok(_) => next += 1,
                Err(KcpError::BufferFull) => break,
                Err(e) => panic!("send: {e}"),
            }
        }
        ep.pump(|_, m| got.extend_from_slice(m));
    }
    assert!(got == expected, "echoed bytes differ");

    // Keep answering until kcp-go's session idles out and reports.
    let end = loop {
        if let Some(line) = peer.try_line() {
            if line.starts_with("SESSION_END") {
                break line;
            }
        }
        assert!(
            Instant::now() < deadline + Duration::from_secs(10),
            "no SESSION_END"
        );
        ep.pump(|_, _| {});
    };
    let link = ep.kcp.as_ref().expect("connected").output();
    eprintln!(
        "ours: sent {} FEC packets, dropped {}; decoder {:?}",
        link.sent,
        link.dropped,
        ep.dec.stats()
    );
    assert!(link.dropped > 0);
    assert!(
        link.enc.stats().empty_packets > 0,
        "no group was closed early: the empty data packets went untested"
    );
    assert!(
        stat(&end, "recovered") > 0,
        "kcp-go recovered nothing from our parity: {end}"
    );
    assert_eq!(stat(&end, "fec_errs"), 0, "{end}");
    assert!(
        ep.dec.stats().recovered > 0,
        "we recovered nothing from kcp-go's parity"
    );
    assert_eq!(ep.dec.stats().malformed, 0);
}

#[test]
fn kcp_go_client_echoes_through_our_server() {
    let mut ep = Endpoint::bind();
    let addr = ep.sock.local_addr().expect("local addr").to_string();
    let mut peer = GoPeer::spawn(&["client", "-addr", &addr, "-n", &MESSAGES.to_string()]);
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut backlog: VecDeque<Vec<u8>> = VecDeque::new();
    let status = loop {
        assert!(Instant::now() < deadline, "kcp-go client did not finish");
        ep.pump(|_, m| backlog.push_back(m.to_vec()));
        // Drain the echo backlog on every turn, not only when a message
        // arrives: the last messages may meet a full send queue after the
        // client has nothing more to send.
        if let Some(kcp) = ep.kcp.as_mut() {
            while let Some(front) = backlog.front() {
                match kcp.send(front) {
                    Ok(_) => drop(backlog.pop_front()),
                    Err(KcpError::BufferFull) => break,
                    Err(e) => panic!("echo: {e}"),
                }
            }
        }
        if let Some(status) = peer.try_wait() {
            break status;
        }
    };
    let ok = peer.line_starting("OK", Duration::from_secs(1));
    assert!(status.success(), "kcp-go client failed: {status}");
    let echoed: Option<usize> = ok.split_whitespace().nth(1).and_then(|n| n.parse().ok());
    assert_eq!(echoed, Some(stream().len()), "{ok}");
    let link = ep.kcp.as_ref().expect("session created").output();
    eprintln!(
        "ours: sent {} FEC packets, dropped {}; decoder {:?}; kcp-go: {ok}",
        link.sent,
        link.dropped,
        ep.dec.stats()
    );
    assert!(stat(&ok, "recovered") > 0, "kcp-go recovered nothing: {ok}");
    assert!(
        ep.dec.stats().recovered > 0,
        "we recovered nothing from kcp-go's parity"
    );
    assert_eq!(ep.dec.stats().malformed, 0);
}
