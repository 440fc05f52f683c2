//! Window announcements (`WINS`) lost on the way, where KCP alone would
//! wait seconds or give up:
//!
//! - a peer's window shuts (its application stops reading), reopens, and
//!   the one `WINS` that says so is lost. KCP itself would not ask again
//!   for 7 s (ikcp's first zero-window probe); the session layer asks one
//!   RTO after the window shut, doubling up to a second;
//! - a connecting peer's answers to the listener's half-open probe are
//!   lost several times over while it keeps sending: the listener must
//!   not let the session expire (it would then ignore the peer);
//! - a connecting peer fills the half-open session's receive window (which
//!   nobody reads until the session is confirmed) and every answer it
//!   sends to the listener's probe is lost: its own probes of the shut
//!   window must confirm the session;
//! - a quiet client (a small request, then it waits) never probes, and
//!   each of its answers to the listener's probes is lost: its repeats of
//!   the answer must confirm the session, and they stay bounded;
//! - ours is the receiver: its window shuts, reopens, and the `WINS` that
//!   says so is lost; a sender like ikcp asks only after 7 s, so the
//!   session repeats that `WINS`.
//!
//! The peer is a bare core [`Kcp`] on a std UDP socket, so the test decides
//! exactly when it reads and which datagrams it loses; in the last test it
//! is a [`KcpStream`] behind a relay that drops its `WINS` datagrams.
#![cfg(feature = "tokio")]

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use kcp_rs::codec::{Header, Segments};
use kcp_rs::constants::{CMD_PUSH, CMD_WASK, CMD_WINS};
use kcp_rs::net::{KcpListener, KcpStream, SessionConfig};
use kcp_rs::{Kcp, KcpConfig, KcpOutput, KcpResult};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BYTES: usize = 256 << 10;
/// Small, so a few segments shut it.
const PEER_RCV_WND: u16 = 16;

/// Sends to the listener; drops the next `lose_wins` datagrams that carry
/// a `WINS`.
struct Link {
    sock: UdpSocket,
    to: SocketAddr,
    lose_wins: u32,
    wins_lost: u32,
    /// Datagrams holding the conversation's first segment still to lose.
    lose_first: u32,
}

impl KcpOutput for Link {
    fn output(&mut self, data: &[u8]) -> KcpResult<usize> {
        if self.lose_first > 0 && carries(data, |h| h.cmd == CMD_PUSH && h.sn.get() == 0) {
            self.lose_first -= 1;
            return Ok(data.len());
        }
        if self.lose_wins > 0 && carries(data, |h| h.cmd == CMD_WINS) {
            self.lose_wins -= 1;
            self.wins_lost += 1;
            return Ok(data.len());
        }
        let _ = self.sock.send_to(data, self.to);
        Ok(data.len())
    }
}

/// Whether any segment of `datagram` satisfies `pick`.
fn carries(datagram: &[u8], pick: impl Fn(&Header) -> bool) -> bool {
    Segments::new(datagram)
        .map_while(Result::ok)
        .any(|(h, _)| pick(&h))
}

struct Peer {
    kcp: Kcp<Link>,
    start: Instant,
}

impl Peer {
    fn ms(&self) -> u32 {
        self.start.elapsed().as_millis() as u32
    }

    /// Feeds what arrived within ~5 ms to KCP and runs its clock.
    fn pump(&mut self) {
        let mut buf = [0u8; 2048];
        let deadline = Instant::now() + Duration::from_millis(5);
        while Instant::now() < deadline {
            match self.kcp.output().sock.recv_from(&mut buf) {
                Ok((n, _)) => {
                    let _ = self.kcp.input(&buf[..n]);
                }
                Err(_) => break,
            }
        }
        let now = self.ms();
        self.kcp.update(now);
    }

    /// Sends a 4-byte counter every `every` while pumping, until `stop` (or
    /// 20 s), as a game client would.
    fn send_every(&mut self, every: Duration, stop: &std::sync::mpsc::Receiver<()>) {
        let mut next = Instant::now();
        let mut sent = 0u32;
        while stop.try_recv().is_err() && self.start.elapsed() < Duration::from_secs(20) {
            if Instant::now() >= next {
                self.kcp.send(&sent.to_le_bytes()).unwrap();
                sent += 1;
                next += every;
            }
            self.pump();
        }
    }

    fn read_all(&mut self, out: &mut Vec<u8>) {
        let mut buf = vec![0u8; 1 << 16];
        while let Ok(n) = self.kcp.recv(&mut buf) {
            out.extend_from_slice(&buf[..n]);
        }
    }
}

impl Peer {
    fn new(server: SocketAddr, cfg: KcpConfig) -> Peer {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(2)))
            .unwrap();
        let link = Link {
            sock,
            to: server,
            lose_wins: 0,
            wins_lost: 0,
            lose_first: 0,
        };
        Peer {
            kcp: Kcp::with_config(0x5eed, link, cfg).unwrap(),
            start: Instant::now(),
        }
    }
}

fn run_peer(server: SocketAddr) -> (Vec<u8>, Duration, u32) {
    let cfg = KcpConfig {
        stream: true,
        rcv_wnd: PEER_RCV_WND,
        ..SessionConfig::default().kcp
    };
    let mut peer = Peer::new(server, cfg);
    peer.kcp.send(b"hi").unwrap();
    let give_up = Instant::now() + Duration::from_secs(40);
    let mut got = Vec::new();

    // Do not read until the server has filled the window.
    while peer.kcp.queued_recv() < u32::from(PEER_RCV_WND) {
        assert!(Instant::now() < give_up, "the window never filled");
        peer.pump();
    }
    // Let the server see the shut window (the ACKs carry it).
    for _ in 0..20 {
        peer.pump();
    }
    // Read: KCP announces the reopened window with one WINS; lose it.
    peer.kcp.output_mut().lose_wins = 1;
    peer.read_all(&mut got);
    let reopened = Instant::now();
    let before = got.len();
    let mut resumed = None;
    while got.len() < BYTES {
        assert!(Instant::now() < give_up, "stalled at {} bytes", got.len());
        peer.pump();
        peer.read_all(&mut got);
        if resumed.is_none() && got.len() > before {
            resumed = Some(reopened.elapsed());
        }
    }
    // Acknowledge the tail before leaving.
    for _ in 0..20 {
        peer.pump();
    }
    let lost = peer.kcp.output().wins_lost;
    (got, resumed.expect("data after the reopening"), lost)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_window_update_costs_about_a_second_not_seven() {
    let cfg = SessionConfig {
        kcp: KcpConfig {
            stream: true,
            ..SessionConfig::default().kcp
        },
        ..SessionConfig::default()
    };
    let listener = KcpListener::bind("127.0.0.1:0", cfg).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let peer = tokio::task::spawn_blocking(move || run_peer(addr));
    let (mut s, _) = listener.accept().await.unwrap();
    let data: Vec<u8> = (0..BYTES).map(|i| (i % 251) as u8).collect();
    let write = tokio::spawn(async move {
        s.write_all(&data).await.unwrap();
        s.shutdown().await.unwrap();
        s
    });
    let (got, resumed, lost) = tokio::time::timeout(Duration::from_secs(60), peer)
        .await
        .expect("peer finished")
        .unwrap();
    let s = write.await.unwrap();
    let expect: Vec<u8> = (0..BYTES).map(|i| (i % 251) as u8).collect();
    assert!(got == expect, "bytes differ");
    assert_eq!(lost, 1, "the reopening WINS was not the one lost");
    eprintln!(
        "resumed {resumed:?} after the window reopened; server saw window {} at the end",
        s.stats().remote_window
    );
    // ikcp's first probe comes 7 s after the window shut; ours one RTO
    // (200 ms at the default minimum) after, then every 0.4, 0.8, 1 s.
    assert!(
        resumed < Duration::from_secs(3),
        "took {resumed:?} to resume after a lost window update"
    );
}

/// How many of the connecting peer's answers to the half-open probe are
/// lost: more than the listener's timer alone repeats the probe within
/// `half_open_timeout` (at 0, 0.2, 0.6, 1.4 and 3.0 s of the default 5 s).
const ANSWERS_LOST: u32 = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_keeps_sending_is_confirmed_despite_lost_answers() {
    let cfg = SessionConfig::default();
    let listener = KcpListener::bind("127.0.0.1:0", cfg.clone()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let peer = tokio::task::spawn_blocking(move || {
        let mut peer = Peer::new(addr, cfg.kcp);
        peer.kcp.output_mut().lose_wins = ANSWERS_LOST;
        peer.send_every(Duration::from_millis(50), &stop_rx);
        peer.kcp.output().wins_lost
    });
    let started = Instant::now();
    let accepted = tokio::time::timeout(Duration::from_secs(8), listener.accept()).await;
    let waited = started.elapsed();
    let _ = stop_tx.send(());
    let lost = peer.await.unwrap();
    let st = listener.stats();
    assert_eq!(lost, ANSWERS_LOST, "the peer lost fewer answers than meant");
    let Ok(Ok((mut s, _))) = accepted else {
        panic!("not accepted within 8 s although the peer kept sending: {st:?}")
    };
    eprintln!("accepted after {waited:?} with {lost} answers lost; {st:?}");
    assert_eq!(st.half_open_expired, 0, "{st:?}");
    // Everything the peer sent before it was confirmed is there, in order.
    let mut first = [0u8; 4];
    tokio::io::AsyncReadExt::read_exact(&mut s, &mut first)
        .await
        .unwrap();
    assert_eq!(u32::from_le_bytes(first), 0);
}

/// The datagram holding a conversation's first segment is lost five times
/// over. KCP resends it only after an RTO that grows (200, 300, 450, 675,
/// 1012 ms with the session layer's default `nodelay`: 2.6 s); the listener
/// must open the session from the later datagrams of the first window,
/// which arrive meanwhile. (With a congestion window, as in
/// `KcpConfig::default()`, nothing follows the first segment until it is
/// acknowledged, and only its retransmission can open the session.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_first_datagram_does_not_delay_the_session() {
    let cfg = SessionConfig::default();
    let listener = KcpListener::bind("127.0.0.1:0", cfg.clone()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let peer = tokio::task::spawn_blocking(move || {
        let mut peer = Peer::new(addr, cfg.kcp);
        peer.kcp.output_mut().lose_first = 5;
        peer.send_every(Duration::from_millis(20), &stop_rx);
        peer.kcp.output().lose_first
    });
    let started = Instant::now();
    let accepted = tokio::time::timeout(Duration::from_secs(10), listener.accept()).await;
    let waited = started.elapsed();
    let Ok(Ok((mut s, _))) = accepted else {
        panic!("not accepted within 10 s: {:?}", listener.stats())
    };
    // Everything arrives, in order, from the very first message.
    let mut first = [0u8; 4];
    tokio::io::AsyncReadExt::read_exact(&mut s, &mut first)
        .await
        .unwrap();
    let _ = stop_tx.send(());
    let left = peer.await.unwrap();
    eprintln!("accepted after {waited:?}; {:?}", listener.stats());
    assert_eq!(u32::from_le_bytes(first), 0);
    assert_eq!(left, 0, "the first datagram was not lost five times");
    assert!(
        waited < Duration::from_millis(1200),
        "accepted only after {waited:?}: the session waited for the first datagram"
    );
}

/// A relay on loopback that forwards between one client and `server`,
/// dropping every datagram from the client that carries a `WINS`. Returns
/// its address and a counter of the datagrams dropped.
async fn drop_client_wins(
    server: SocketAddr,
) -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicU32>) {
    use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
    let dropped = std::sync::Arc::new(AtomicU32::new(0));
    let counter = dropped.clone();
    let addr = filtering_relay(server, move |up, d| {
        if up && carries(d, |h| h.cmd == CMD_WINS) {
            counter.fetch_add(1, Relaxed);
            return false;
        }
        true
    })
    .await;
    (addr, dropped)
}

/// A relay on loopback between one client and `server`: `pass(up,
/// datagram)` sees every datagram (`up`: from the client) and says whether
/// it goes on. Returns the address the client connects to.
async fn filtering_relay(
    server: SocketAddr,
    mut pass: impl FnMut(bool, &[u8]) -> bool + Send + 'static,
) -> SocketAddr {
    use tokio::net::UdpSocket;
    let front = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let back = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    back.connect(server).await.unwrap();
    let addr = front.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut up, mut down) = (vec![0u8; 2048], vec![0u8; 2048]);
        let mut client = None;
        loop {
            tokio::select! {
                r = front.recv_from(&mut up) => {
                    let Ok((n, from)) = r else { return };
                    client = Some(from);
                    if pass(true, &up[..n]) {
                        let _ = back.send(&up[..n]).await;
                    }
                }
                r = back.recv(&mut down) => {
                    let Ok(n) = r else { return };
                    if let Some(to) = client {
                        if pass(false, &down[..n]) {
                            let _ = front.send_to(&down[..n], to).await;
                        }
                    }
                }
            }
        }
    });
    addr
}

/// The listener hands a half-open session's data to no reader, so a client
/// that writes more than a window (128 segments) shuts that window within a
/// round trip and then only asks for it (a `WASK` one RTO later, then at
/// most every second). Here every `WINS` the client sends, that is every
/// answer to the listener's own probes, is lost; at 30% random loss each
/// way, one in two of them is (see `net_lossy_relay`). The client's window
/// probes, sent only because it heard the shut window, must confirm the
/// session: before they did, it stayed half-open, expired after
/// `half_open_timeout`, and the client waited out its idle timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_whose_answers_are_lost_is_confirmed_by_its_window_probes() {
    let cfg = SessionConfig::default();
    let listener = KcpListener::bind("127.0.0.1:0", cfg.clone()).await.unwrap();
    let (relay, wins_dropped) = drop_client_wins(listener.local_addr().unwrap()).await;
    let mut c = KcpStream::connect(relay, cfg.clone()).await.unwrap();
    let data: Vec<u8> = (0..BYTES).map(|i| (i % 241) as u8).collect();
    let sent = data.clone();
    let writer = tokio::spawn(async move {
        c.write_all(&sent).await.unwrap();
        c.shutdown().await.unwrap();
        c
    });
    // Well past `half_open_timeout`: an expired session is not reopened
    // (the client has nothing of its first window left to resend).
    let wait = cfg.half_open_timeout + Duration::from_secs(3);
    let accepted = tokio::time::timeout(wait, listener.accept()).await;
    let st = listener.stats();
    let Ok(Ok((mut s, _))) = accepted else {
        panic!(
            "not accepted within {wait:?} ({} WINS lost): {st:?}",
            wins_dropped.load(std::sync::atomic::Ordering::Relaxed)
        )
    };
    let mut got = vec![0u8; BYTES];
    tokio::time::timeout(Duration::from_secs(20), s.read_exact(&mut got))
        .await
        .expect("the data arrived")
        .unwrap();
    let c = writer.await.unwrap();
    let lost = wins_dropped.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!(
        "{lost} WINS lost; client saw window {}, {:?}",
        c.stats().remote_window,
        listener.stats()
    );
    assert!(got == data, "bytes differ");
    assert!(lost > 0, "the client answered no probe: nothing was tested");
    assert_eq!(listener.stats().half_open_expired, 0);
}

/// What [`drop_first_answers`] saw.
#[derive(Debug, Default)]
struct ProbeCounts {
    /// Datagrams from the listener carrying a window probe.
    wask_down: std::sync::atomic::AtomicU32,
    /// Datagrams from the client carrying a `WINS`: dropped, passed.
    wins_dropped: std::sync::atomic::AtomicU32,
    wins_passed: std::sync::atomic::AtomicU32,
}

/// A relay on loopback between one client and `server` that drops the
/// first datagram carrying a `WINS` that the client sends after each
/// window probe from the server: the answer KCP itself gives to every
/// probe. Anything else passes.
async fn drop_first_answers(server: SocketAddr) -> (SocketAddr, std::sync::Arc<ProbeCounts>) {
    use std::sync::atomic::Ordering::Relaxed;
    let counts = std::sync::Arc::new(ProbeCounts::default());
    let c = counts.clone();
    let mut drop_next = false;
    let addr = filtering_relay(server, move |up, d| {
        if !up {
            if carries(d, |h| h.cmd == CMD_WASK) {
                c.wask_down.fetch_add(1, Relaxed);
                drop_next = true;
            }
        } else if carries(d, |h| h.cmd == CMD_WINS) {
            if std::mem::take(&mut drop_next) {
                c.wins_dropped.fetch_add(1, Relaxed);
                return false;
            }
            c.wins_passed.fetch_add(1, Relaxed);
        }
        true
    })
    .await;
    (addr, counts)
}

/// A client that sends a small request and waits for the reply fills no
/// window and never probes one, so only the listener's timer probes (at 0,
/// 0.2, 0.6, 1.4 and 3.0 s) can confirm its session, each through one
/// `WASK` and the one `WINS` that KCP answers it with. Here every such
/// answer is lost (at 30% random loss each way about 2% of quiet clients
/// lost them all, see `net_lossy_relay`): the session expired half-open
/// and the client waited out its idle timeout. The client now repeats its
/// answer while it has heard no data, and the repeat confirms the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_client_whose_answers_are_lost_is_confirmed_by_their_repeats() {
    use std::sync::atomic::Ordering::Relaxed;
    let cfg = SessionConfig::default();
    let listener = KcpListener::bind("127.0.0.1:0", cfg.clone()).await.unwrap();
    let (relay, counts) = drop_first_answers(listener.local_addr().unwrap()).await;
    let mut c = KcpStream::connect(relay, cfg.clone()).await.unwrap();
    c.write_all(b"request!").await.unwrap();
    let wait = cfg.half_open_timeout + Duration::from_secs(1);
    let accepted = tokio::time::timeout(wait, listener.accept()).await;
    let st = listener.stats();
    let Ok(Ok((mut s, _))) = accepted else {
        panic!("not accepted within {wait:?} ({counts:?}): {st:?}")
    };
    let mut req = [0u8; 8];
    s.read_exact(&mut req).await.unwrap();
    assert_eq!(&req, b"request!");
    s.write_all(b"reply").await.unwrap();
    let mut reply = [0u8; 5];
    tokio::time::timeout(Duration::from_secs(5), c.read_exact(&mut reply))
        .await
        .expect("the reply arrived")
        .unwrap();
    assert_eq!(&reply, b"reply");
    eprintln!("{counts:?}; {:?}", listener.stats());
    assert!(
        counts.wins_dropped.load(Relaxed) >= 1,
        "no answer was lost: nothing was tested"
    );
    assert_eq!(listener.stats().half_open_expired, 0);
}

/// A listener played by a bare core [`Kcp`] on a std socket: it takes the
/// client's first datagram, then sends window probes and counts the
/// client's answers. A flood of probes (spoofed, say) must draw at most a
/// small constant of answers each, and once the peer has sent data, a
/// probe draws one answer as in plain KCP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_repeated_answers_are_bounded_and_stop_at_the_first_data() {
    const FLOOD: u32 = 20;
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(2)))
        .unwrap();
    let addr = sock.local_addr().unwrap();
    let mut c = KcpStream::connect(addr, SessionConfig::default())
        .await
        .unwrap();
    c.write_all(b"request!").await.unwrap();
    let server = tokio::task::spawn_blocking(move || {
        let mut buf = [0u8; 2048];
        let (n, client) = loop {
            if let Ok(r) = sock.recv_from(&mut buf) {
                break r;
            }
        };
        let conv = kcp_rs::codec::peek_conv(&buf[..n]).unwrap();
        let link = Link {
            sock: sock.try_clone().unwrap(),
            to: client,
            lose_wins: 0,
            wins_lost: 0,
            lose_first: 0,
        };
        let mut kcp = Kcp::with_config(conv, link, SessionConfig::default().kcp).unwrap();
        let start = Instant::now();
        let ms = || start.elapsed().as_millis() as u32;
        kcp.input(&buf[..n]).unwrap();
        kcp.update(ms());
        // Sends `probes` window probes 2 ms apart (data first, if any),
        // then listens until 700 ms after the last; returns the answers
        // counted, and those that came over 50 ms after the last probe.
        let mut round = |kcp: &mut Kcp<Link>, probes: u32, data: Option<&[u8]>| {
            if let Some(d) = data {
                kcp.send(d).unwrap();
            }
            let (mut answers, mut late) = (0, 0);
            let t0 = Instant::now();
            let mut sent = 0;
            let mut last = t0;
            while sent < probes || last.elapsed() < Duration::from_millis(700) {
                if sent < probes && t0.elapsed() >= Duration::from_millis(2 * u64::from(sent)) {
                    kcp.ask_window();
                    kcp.flush();
                    sent += 1;
                    last = Instant::now();
                }
                if let Ok((n, _)) = kcp.output().sock.recv_from(&mut buf) {
                    let wins = Segments::new(&buf[..n])
                        .map_while(Result::ok)
                        .filter(|(h, _)| h.cmd == CMD_WINS)
                        .count() as u32;
                    answers += wins;
                    if sent == probes && last.elapsed() > Duration::from_millis(50) {
                        late += wins;
                    }
                    let _ = kcp.input(&buf[..n]);
                }
                kcp.update(ms());
            }
            (answers, late)
        };
        let one = round(&mut kcp, 1, None);
        let flood = round(&mut kcp, FLOOD, None);
        let after_data = round(&mut kcp, 1, Some(b"reply"));
        (one, flood, after_data)
    });
    let (one, flood, after_data) = tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the fake listener finished")
        .unwrap();
    eprintln!(
        "(answers, of which late): {one:?} to one probe, {flood:?} to {FLOOD}, \
         {after_data:?} to one after data"
    );
    assert_eq!(one, (3, 2), "one probe: KCP's answer and two repeats");
    assert!(
        flood.0 <= 3 * FLOOD,
        "more than three answers per probe: {flood:?}"
    );
    assert_eq!(
        flood.1, 2,
        "a probe restarts the repeats, it does not add to them: {flood:?}"
    );
    assert_eq!(
        after_data,
        (1, 0),
        "after the first data: KCP's answer only"
    );
    let mut reply = [0u8; 5];
    c.read_exact(&mut reply).await.unwrap();
    assert_eq!(&reply, b"reply");
}

/// Ours is the receiver this time. Its application stops reading until
/// the receive window shuts, then reads, and the one `WINS` that says the
/// window reopened is lost on the way. The sender is a bare core, which,
/// like ikcp and kcp-go, asks about a shut window only after 7 s: the
/// session's repeats of that `WINS` must get it going well before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_receivers_lost_window_update_is_repeated() {
    let cfg = SessionConfig {
        kcp: KcpConfig {
            stream: true,
            rcv_wnd: PEER_RCV_WND,
            ..SessionConfig::default().kcp
        },
        recv_queue_limit: 16 << 10,
        ..SessionConfig::default()
    };
    let listener = KcpListener::bind("127.0.0.1:0", cfg).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (shut_tx, shut_rx) = tokio::sync::oneshot::channel::<()>();
    let peer = tokio::task::spawn_blocking(move || send_until_reopened(addr, shut_tx));
    let (mut s, _) = listener.accept().await.unwrap();
    // Read nothing until the sender has seen the window shut.
    tokio::time::timeout(Duration::from_secs(20), shut_rx)
        .await
        .expect("the window never shut")
        .unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    while got.len() < BYTES {
        let n = tokio::time::timeout(Duration::from_secs(20), s.read(&mut buf))
            .await
            .expect("the transfer stalled")
            .unwrap();
        got.extend_from_slice(&buf[..n]);
    }
    let expect: Vec<u8> = (0..BYTES).map(|i| (i % 251) as u8).collect();
    assert!(got == expect, "bytes differ");
    let (lost, reopened_after) = peer.await.unwrap();
    assert_eq!(lost, 1, "the reopening WINS was not lost");
    eprintln!("the sender saw the window reopen {reopened_after:?} after it shut");
    assert!(
        reopened_after < Duration::from_secs(3),
        "the sender waited {reopened_after:?}: the lost WINS was not repeated"
    );
}

/// Sends `BYTES` to `server` from a bare core. When the server's window
/// shuts it tells `shut` and loses the next datagram that carries a
/// `WINS`. Returns how many it lost and how long after the window shut the
/// sender saw it open again.
fn send_until_reopened(
    server: SocketAddr,
    shut: tokio::sync::oneshot::Sender<()>,
) -> (u32, Duration) {
    let cfg = KcpConfig {
        stream: true,
        ..SessionConfig::default().kcp
    };
    let mut peer = Peer::new(server, cfg);
    let data: Vec<u8> = (0..BYTES).map(|i| (i % 251) as u8).collect();
    let give_up = Instant::now() + Duration::from_secs(40);
    let (mut sent, mut lose, mut lost) = (0, 0u32, 0u32);
    let mut shut = Some(shut);
    let (mut shut_at, mut reopened_after) = (None, None);
    let mut buf = [0u8; 2048];
    while sent < data.len() || peer.kcp.wait_snd() > 0 {
        assert!(Instant::now() < give_up, "stalled: {sent} bytes queued");
        if sent < data.len() {
            if let Ok(n) = peer.kcp.send(&data[sent..data.len().min(sent + 4096)]) {
                sent += n;
            }
        }
        while let Ok((n, _)) = peer.kcp.output().sock.recv_from(&mut buf) {
            if lose > 0 && carries(&buf[..n], |h| h.cmd == CMD_WINS) {
                lose -= 1;
                lost += 1;
                continue;
            }
            let _ = peer.kcp.input(&buf[..n]);
        }
        let now = peer.ms();
        peer.kcp.update(now);
        let open = peer.kcp.remote_window() > 0;
        if shut_at.is_none() && !open {
            shut_at = Some(Instant::now());
            lose = 1;
            let _ = shut.take().map(|s| s.send(()));
        }
        if let (Some(at), None, true) = (shut_at, reopened_after, open) {
            reopened_after = Some(at.elapsed());
        }
    }
    (lost, reopened_after.expect("the window never reopened"))
}
