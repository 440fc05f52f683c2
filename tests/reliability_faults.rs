//! Faults: a peer that vanishes (black-holed link, or its runtime dropped
//! mid-transfer), a peer that restarts with the same conv, a closed port
//! behind one of a listener's sessions, an application that stops reading.
//! Each must end in a clear `io::Error` or a clean close within the
//! documented bound (`idle_timeout`, or `dead_link` retransmissions), never
//! a panic, a hang or a leak: every test ends with the listener's
//! `sessions_active` back at zero.
#![cfg(feature = "tokio")]

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use kcp_rs::net::{KcpListener, KcpStream, ListenerStats, SessionConfig};
use kcp_rs::sim::relay::{RelayConfig, UdpRelay};
use kcp_rs::sim::Outbox;
use kcp_rs::{Kcp, KcpConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UdpSocket;
use tokio::time::timeout;

#[path = "support/proc_self.rs"]
mod proc_self;
use proc_self::rss_kib;

/// The back-pressure test measures the process's memory: one test at a time.
/// (An async mutex: each test has its own runtime, and the guard is held
/// across awaits.)
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const IDLE: Duration = Duration::from_secs(2);
/// Slack on top of `idle_timeout` for timers and a loaded CI machine.
const SLACK: Duration = Duration::from_secs(2);

fn config(stream: bool) -> SessionConfig {
    SessionConfig {
        kcp: KcpConfig {
            stream,
            ..KcpConfig::fast()
        },
        idle_timeout: IDLE,
        keep_alive: Some(Duration::from_millis(500)),
        half_open_timeout: Duration::from_secs(1),
        ..SessionConfig::default()
    }
}

async fn wait_for(
    listener: &KcpListener,
    within: Duration,
    ok: impl Fn(&ListenerStats) -> bool,
) -> ListenerStats {
    let until = Instant::now() + within;
    loop {
        let st = listener.stats();
        if ok(&st) || Instant::now() > until {
            return st;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads until an error; panics on end-of-stream or a deadline.
async fn read_until_error(s: &mut (impl AsyncReadExt + Unpin), within: Duration) -> std::io::Error {
    let mut buf = vec![0u8; 64 * 1024];
    timeout(within, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) => panic!("end of stream: KCP has no FIN, a read should fail instead"),
                Ok(_) => {}
                Err(e) => return e,
            }
        }
    })
    .await
    .expect("the read did not fail within the bound: hang")
}

/// Writes until an error; panics on a deadline.
async fn write_until_error(
    s: &mut (impl AsyncWriteExt + Unpin),
    within: Duration,
) -> std::io::Error {
    let buf = vec![7u8; 16 * 1024];
    timeout(within, async {
        loop {
            if let Err(e) = s.write_all(&buf).await {
                return e;
            }
        }
    })
    .await
    .expect("the write did not fail within the bound: hang")
}

/// A client in a runtime of its own on a thread of its own: it connects to
/// `addr` and writes a byte stream forever. `kill` drops its runtime
/// mid-transfer, as a crashed or killed peer process would, and returns how
/// long dropping took.
struct RemoteWriter {
    kill: std_mpsc::Sender<()>,
    done: std_mpsc::Receiver<Duration>,
    local: SocketAddr,
}

impl RemoteWriter {
    fn start(addr: SocketAddr, cfg: SessionConfig) -> RemoteWriter {
        let (kill, kill_rx) = std_mpsc::channel();
        let (done_tx, done) = std_mpsc::channel();
        let (local_tx, local_rx) = std_mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            rt.spawn(async move {
                let mut s = KcpStream::connect(addr, cfg).await.unwrap();
                let _ = local_tx.send(s.local_addr().unwrap());
                let buf = vec![1u8; 32 * 1024];
                while s.write_all(&buf).await.is_ok() {}
            });
            let _ = kill_rx.recv();
            let t = Instant::now();
            drop(rt);
            let _ = done_tx.send(t.elapsed());
        });
        let local = local_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("remote client");
        RemoteWriter { kill, done, local }
    }

    fn kill(self) -> Duration {
        self.kill.send(()).unwrap();
        self.done
            .recv_timeout(Duration::from_secs(10))
            .expect("dropping the runtime hung")
    }
}

// ----- a peer that vanishes ----------------------------------------------------

/// A client that never writes, to a port where nothing answers: its only
/// traffic is the keep-alive its own timer sends, and its read must still
/// fail with `TimedOut` within `idle_timeout` (the timer of a session that
/// no datagram, write or command ever drove must fire).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_writes_to_a_silent_peer_times_out() {
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let started = Instant::now();
    let mut client = KcpStream::connect(silent.local_addr().unwrap(), config(false))
        .await
        .unwrap();
    let e = read_until_error(&mut client, IDLE + SLACK).await;
    assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
    assert!(started.elapsed() >= IDLE, "timed out before idle_timeout");
    // The keep-alive went out: the silent socket got window probes.
    silent.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 64];
    let (n, _) = silent
        .recv_from(&mut buf)
        .expect("no keep-alive probe arrived");
    assert_eq!(buf[4], 83, "not a WASK: {:?}", &buf[..n]);
}

/// The link goes black mid-transfer in both directions: the server's read
/// and write fail with `TimedOut` within `idle_timeout` (a dead link may be
/// noticed sooner), the client's too, and nothing is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blackholed_peer_fails_both_ends_with_timed_out() {
    let cfg = config(true);
    let listener = KcpListener::bind("127.0.0.1:0", cfg.clone()).await.unwrap();
    let relay = UdpRelay::start(listener.local_addr().unwrap(), RelayConfig::perfect())
        .await
        .unwrap();
    timeout(Duration::from_secs(30), async {
        let client = KcpStream::connect(relay.addr(), cfg.clone()).await.unwrap();
        let (mut cr, mut cw) = client.into_split();
        cw.write_all(&[9u8; 100_000]).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let (mut sr, mut sw) = server.into_split();
        let mut got = vec![0u8; 100_000];
        sr.read_exact(&mut got).await.unwrap();

        relay.set_blackhole(true);
        let t = Instant::now();
        let bound = IDLE + SLACK;
        let (sre, swe, cre, cwe) = tokio::join!(
            read_until_error(&mut sr, bound),
            write_until_error(&mut sw, bound),
            read_until_error(&mut cr, bound),
            write_until_error(&mut cw, bound),
        );
        let took = t.elapsed();
        eprintln!(
            "black hole: both ends failed within {took:?}: server read {sre}, client write {cwe}"
        );
        for e in [&sre, &swe, &cre, &cwe] {
            assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
        }
        assert!(took <= bound, "{took:?}");
        drop((sr, sw, cr, cw));
        let st = wait_for(&listener, Duration::from_secs(2), |s| {
            s.sessions_active == 0
        })
        .await;
        assert_eq!(st.sessions_active, 0, "{st:?}");
        assert_eq!(st.timed_out, 1, "{st:?}");
    })
    .await
    .expect("test hung");
}

/// The client's runtime is dropped mid-transfer (a killed process): the
/// drop returns promptly without a panic, and the server's read fails with
/// `TimedOut` within `idle_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_runtime_dropped_mid_transfer() {
    let cfg = config(true);
    let listener = KcpListener::bind("127.0.0.1:0", cfg.clone()).await.unwrap();
    timeout(Duration::from_secs(30), async {
        let remote = RemoteWriter::start(listener.local_addr().unwrap(), cfg.clone());
        let (mut server, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        let mut got = 0;
        while got < 1 << 20 {
            got += server.read(&mut buf).await.unwrap();
        }
        let dropped_in = tokio::task::spawn_blocking(move || remote.kill())
            .await
            .unwrap();
        let t = Instant::now();
        let e = read_until_error(&mut server, IDLE + SLACK).await;
        eprintln!(
            "peer runtime dropped after {got} bytes: drop took {dropped_in:?}; \
             server read failed after {:?}: {e}",
            t.elapsed()
        );
        assert!(dropped_in < Duration::from_secs(2), "{dropped_in:?}");
        assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
        drop(server);
        let st = wait_for(&listener, Duration::from_secs(2), |s| {
            s.sessions_active == 0
        })
        .await;
        assert_eq!(st.sessions_active, 0, "{st:?}");
    })
    .await
    .expect("test hung");
}

/// Our own listener's runtime is dropped mid-transfer: no panic, no hang,
/// and the client's read and write fail with `TimedOut` (or
/// `ConnectionRefused`, should the closed port be reported) in time.
#[test]
fn listener_runtime_dropped_mid_transfer() {
    let cfg = config(true);
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = server_rt
        .block_on(KcpListener::bind("127.0.0.1:0", cfg.clone()))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    server_rt.spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    let client = client_rt.block_on(async {
        let mut c = KcpStream::connect(addr, cfg.clone()).await.unwrap();
        c.write_all(&[5u8; 200_000]).await.unwrap();
        let mut back = vec![0u8; 100_000];
        c.read_exact(&mut back).await.unwrap();
        c
    });
    let t = Instant::now();
    drop(server_rt);
    let dropped_in = t.elapsed();
    assert!(dropped_in < Duration::from_secs(2), "{dropped_in:?}");
    client_rt.block_on(async move {
        let mut c = client;
        let t = Instant::now();
        let (mut r, mut w) = c.split();
        let (re, we) = tokio::join!(
            read_until_error(&mut r, IDLE + SLACK),
            write_until_error(&mut w, IDLE + SLACK)
        );
        eprintln!(
            "listener runtime dropped in {dropped_in:?}; client failed after {:?}: read {re}, write {we}",
            t.elapsed()
        );
        for e in [re, we] {
            assert!(
                matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::ConnectionRefused),
                "{e}"
            );
        }
    });
}

// ----- a peer that restarts ----------------------------------------------------

/// A peer restarts with the same conv from a new port (what a restarted
/// client gets by default): a new session, which works; the old one times
/// out by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_with_same_conv_from_a_new_port() {
    let cfg = SessionConfig {
        conv: Some(0xC0FFEE),
        ..config(false)
    };
    let listener = KcpListener::bind("127.0.0.1:0", cfg.clone()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    timeout(Duration::from_secs(30), async {
        let first = RemoteWriter::start(addr, cfg.clone());
        let (mut old, from_old) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 256 * 1024];
        assert!(old.read(&mut buf).await.unwrap() > 0);
        tokio::task::spawn_blocking(move || first.kill())
            .await
            .unwrap();

        let mut again = KcpStream::connect(addr, cfg.clone()).await.unwrap();
        assert_eq!(again.conv(), 0xC0FFEE);
        again.send_msg(b"I am back").await.unwrap();
        let (mut new, from_new) = listener.accept().await.unwrap();
        assert_ne!(from_old, from_new);
        let n = new.recv_msg(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"I am back");
        new.send_msg(b"welcome").await.unwrap();
        let n = again.recv_msg(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"welcome");

        let e = read_until_error(&mut old, IDLE + SLACK).await;
        assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
        // The new session outlived the old one's timeout.
        again.send_msg(b"still").await.unwrap();
        let n = new.recv_msg(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"still");
        drop((old, new, again));
        let st = wait_for(&listener, Duration::from_secs(3), |s| {
            s.sessions_active == 0
        })
        .await;
        eprintln!("restart from a new port: {st:?}");
        assert_eq!(st.sessions_active, 0, "{st:?}");
    })
    .await
    .expect("test hung");
}

/// A bare core client over a UDP socket we control, so that it can be
/// "restarted" (a fresh `Kcp`, same conv) on the same port.
struct CoreClient {
    kcp: Kcp<Outbox>,
    start: Instant,
}

impl CoreClient {
    fn new(conv: u32, cfg: KcpConfig) -> CoreClient {
        CoreClient {
            kcp: Kcp::with_config(conv, Outbox::default(), cfg).unwrap(),
            start: Instant::now(),
        }
    }

    /// Drives the core for `dur`, handing every message received to `on_msg`.
    async fn run(&mut self, sock: &UdpSocket, dur: Duration, on_msg: &mut impl FnMut(&[u8])) {
        let until = Instant::now() + dur;
        let mut buf = vec![0u8; 65_536];
        let mut msg = vec![0u8; 256 * 1024];
        while Instant::now() < until {
            self.kcp.update(self.start.elapsed().as_millis() as u32);
            self.kcp.output_mut().drain(|d| {
                let _ = sock.try_send(d);
            });
            if let Ok(Ok(n)) = timeout(Duration::from_millis(10), sock.recv(&mut buf)).await {
                let _ = self.kcp.input(&buf[..n]);
            }
            while let Ok(n) = self.kcp.recv(&mut msg) {
                on_msg(&msg[..n]);
            }
        }
    }
}

/// A peer restarts with the same conv on the same port: to the listener the
/// datagrams belong to the old session, whose sequence numbers are far
/// ahead. KCP cannot tell (no handshake): the new peer's first messages
/// look like duplicates and are acknowledged but not delivered. What must
/// hold: nothing delivered to the server application that the restarted
/// peer did not send in that order, no panic, no hang, and no leak once
/// both sides stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_with_same_conv_on_the_same_port() {
    let cfg = config(false);
    let conv = 0xBEEF;
    let listener = KcpListener::bind("127.0.0.1:0", cfg.clone()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    timeout(Duration::from_secs(30), async {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        sock.connect(addr).await.unwrap();
        let mut first = CoreClient::new(conv, cfg.kcp);
        for i in 0..40u32 {
            first.kcp.send(format!("old {i}").as_bytes()).unwrap();
        }
        first
            .run(&sock, Duration::from_millis(300), &mut |_| {})
            .await;
        let (mut server, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 256 * 1024];
        for i in 0..40u32 {
            let n = server.recv_msg(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], format!("old {i}").as_bytes());
        }

        // Restart: a fresh core, same conv, same socket.
        let mut second = CoreClient::new(conv, cfg.kcp);
        for i in 0..60u32 {
            second.kcp.send(format!("new {i}").as_bytes()).unwrap();
        }
        let server_task = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                match server.recv_msg(&mut buf).await {
                    Ok(n) => got.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
                    Err(e) => return (got, e),
                }
            }
        });
        second
            .run(&sock, Duration::from_millis(1500), &mut |_| {})
            .await;
        drop(sock); // the restarted peer goes away too
        let (got, e) = timeout(IDLE + SLACK + Duration::from_secs(2), server_task)
            .await
            .expect("the old session did not end")
            .unwrap();
        eprintln!(
            "restart on the same port, same conv: server delivered {} of 60 new messages \
             (first: {:?}), then {e}",
            got.len(),
            got.first()
        );
        // Whatever was delivered is a contiguous, in-order run of what the
        // restarted peer sent.
        if let Some(first) = got.first() {
            let start: u32 = first.strip_prefix("new ").expect(first).parse().unwrap();
            for (k, m) in got.iter().enumerate() {
                assert_eq!(
                    m,
                    &format!("new {}", start + k as u32),
                    "out of order or foreign"
                );
            }
        }
        assert!(matches!(e.kind(), ErrorKind::TimedOut), "{e}");
        let st = wait_for(&listener, Duration::from_secs(3), |s| {
            s.sessions_active == 0
        })
        .await;
        assert_eq!(st.sessions_active, 0, "{st:?}");
    })
    .await
    .expect("test hung");
}

// ----- a closed port behind one session ----------------------------------------

/// Three clients; one's process dies (its port closes, so the listener's
/// datagrams to it draw ICMP port unreachable). The other two go on
/// transferring undisturbed, the dead one's server side fails with
/// `TimedOut`, and the listener keeps working for new sessions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_port_does_not_disturb_other_sessions() {
    let cfg = config(true);
    let listener = KcpListener::bind("127.0.0.1:0", cfg.clone()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    timeout(Duration::from_secs(40), async {
        let doomed = RemoteWriter::start(addr, cfg.clone());
        let doomed_addr = doomed.local;
        let mut live = Vec::new();
        for _ in 0..2 {
            live.push(KcpStream::connect(addr, cfg.clone()).await.unwrap());
        }
        for c in &mut live {
            c.write_all(b"hi").await.unwrap();
        }
        let mut servers = Vec::new();
        for _ in 0..3 {
            servers.push(listener.accept().await.unwrap());
        }
        let i = servers
            .iter()
            .position(|(_, a)| *a == doomed_addr)
            .expect("doomed session");
        let (mut dead_srv, _) = servers.remove(i);
        tokio::task::spawn_blocking(move || doomed.kill())
            .await
            .unwrap();
        // The listener writes to the closed port.
        let dead_write = tokio::spawn(async move {
            let e = write_until_error(&mut dead_srv, IDLE + SLACK).await;
            (e, dead_srv)
        });

        // Echo on the two live sessions while that happens. Each client is
        // paired with its own server side, found by address: `accept`
        // yields sessions in the order their peers answered the window
        // probe, not in the order the clients connected. (Paired by
        // position, the first pair to finish dropped a server session the
        // other pair's client still echoed through, and that pair's server
        // side lost its client: an idle timeout that looked like a
        // disturbed session, in about 2 runs of 12.)
        let mut echoes = Vec::new();
        for mut c in live {
            let me = c.local_addr().unwrap();
            let j = servers
                .iter()
                .position(|(_, a)| *a == me)
                .expect("no server session for a live client");
            let (mut s, _) = servers.swap_remove(j);
            echoes.push(tokio::spawn(async move {
                let mut hi = [0u8; 2];
                s.read_exact(&mut hi).await.unwrap();
                let (mut r, mut w) = s.split();
                let echo = async { tokio::io::copy(&mut r, &mut w).await };
                let drive = async {
                    let data: Vec<u8> = (0..400_000u32).map(|x| (x * 7) as u8).collect();
                    let (mut cr, mut cw) = c.split();
                    let write = async {
                        cw.write_all(&data).await.unwrap();
                    };
                    let mut back = vec![0u8; data.len()];
                    let read = async {
                        cr.read_exact(&mut back).await.unwrap();
                    };
                    tokio::join!(write, read);
                    assert!(back == data, "echo differs");
                };
                tokio::select! {
                    r = echo => panic!("echo ended early: {r:?}"),
                    _ = drive => {}
                }
            }));
        }
        for e in echoes {
            e.await.expect("a live session was disturbed");
        }
        let (e, dead_srv) = dead_write.await.unwrap();
        assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
        let st = listener.stats();
        eprintln!("closed port behind one session: {e}; {st:?}");
        assert_eq!(st.timed_out, 1, "{st:?}");
        drop(dead_srv);

        // Still accepting.
        let mut c = KcpStream::connect(addr, cfg.clone()).await.unwrap();
        c.write_all(b"new").await.unwrap();
        let (mut s, _) = listener.accept().await.unwrap();
        let mut b = [0u8; 3];
        s.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"new");
        drop((c, s));
        let st = wait_for(&listener, Duration::from_secs(5), |s| {
            s.sessions_active == 0
        })
        .await;
        assert_eq!(st.sessions_active, 0, "{st:?}");
    })
    .await
    .expect("test hung");
}

// ----- an application that stops reading --------------------------------------

/// The server application accepts and then stops reading while the client
/// writes as fast as it can. The writer must be held back (writes go
/// `Pending`) after at most the send queue, KCP's windows and the server's
/// receive queue; memory stays flat while it waits; and once the reader
/// resumes every byte arrives in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_reader_holds_the_writer_and_memory_flat() {
    let _g = SERIAL.lock().await;
    let cfg = config(true);
    let listener = KcpListener::bind("127.0.0.1:0", cfg.clone()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let k = cfg.kcp;
    // What may be in flight before the writer must stop: its own queue, its
    // KCP send buffer and window, the server's KCP receive buffers and the
    // reader's queue (stream mode: bytes).
    let allowance = cfg.send_queue_limit
        + (k.snd_wnd as usize + 128) * k.mss()
        + 2 * k.rcv_wnd as usize * k.mss()
        + cfg.recv_queue_limit
        + 64 * 1024;
    timeout(Duration::from_secs(40), async {
        let mut client = KcpStream::connect(addr, cfg.clone()).await.unwrap();
        client.write_all(b"x").await.unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        let mut one = [0u8; 1];
        server.read_exact(&mut one).await.unwrap();

        // Write until a write stays pending for a while. Byte `o` of the
        // stream is `o % 251`.
        let data_at = |from: usize| -> Vec<u8> { (from..from + 32 * 1024).map(|o| (o % 251) as u8).collect() };
        let mut written = 0usize;
        loop {
            match timeout(Duration::from_millis(500), client.write(&data_at(written))).await {
                Ok(Ok(n)) => written += n,
                Ok(Err(e)) => panic!("write failed: {e}"),
                Err(_) => break, // pending: held back
            }
            assert!(written <= allowance, "writer not held back after {written} bytes");
        }
        let rss_held = rss_kib();
        // Stay stalled for a while: nothing may grow.
        let mut late = 0;
        for _ in 0..6 {
            if let Ok(Ok(n)) = timeout(Duration::from_millis(500), client.write(&data_at(written))).await {
                late += n;
                written += n;
            }
        }
        let rss_after = rss_kib();
        let sst = server.stats();
        let cst = client.stats();
        eprintln!(
            "stopped reader: writer held after {written} bytes (allowance {allowance}), {late} more \
             in 3 s; RSS {rss_held} KiB -> {rss_after} KiB; client unacked {} segs, \
             server remote window {}, client sees window {}",
            cst.unacked_segments, sst.remote_window, cst.remote_window
        );
        assert!(written <= allowance, "{written} > {allowance}");
        assert!(
            rss_after <= rss_held + 4 * 1024,
            "memory grew while stalled: {rss_held} -> {rss_after} KiB"
        );
        // The session is alive (keep-alives flowed past idle_timeout).
        assert!(server.stats().kcp.in_datagrams > 0);

        // Resume reading: every byte arrives, in order.
        let reader = tokio::spawn(async move {
            let mut got = 0usize;
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = server.read(&mut buf).await.unwrap();
                for (i, &b) in buf[..n].iter().enumerate() {
                    assert_eq!(b, ((got + i) % 251) as u8, "byte {} differs", got + i);
                }
                got += n;
                if n == 0 || got >= 4 << 20 {
                    return got;
                }
            }
        });
        // The writer continues where it was held, finishing 4 MiB.
        while written < 4 << 20 {
            let mut d = data_at(written);
            d.truncate((4 << 20) - written);
            written += client.write(&d).await.unwrap();
        }
        assert_eq!(reader.await.unwrap(), 4 << 20);
        drop(client);
        let st = wait_for(&listener, Duration::from_secs(5), |s| s.sessions_active == 0).await;
        assert_eq!(st.sessions_active, 0, "{st:?}");
    })
    .await
    .expect("test hung");
}

// ----- the last ACK ------------------------------------------------------------

/// A session whose handles are gone and whose own data is acknowledged
/// lingers (`SessionConfig::linger`, like TCP's TIME_WAIT) before removal.
/// Without that, if the ACK of the peer's last segment was lost, the peer's
/// retransmissions reached no session (`dropped_unknown`) and were never
/// acknowledged: the peer's `shutdown` (or dead-link detection) failed with
/// `TimedOut` although every byte was delivered. Found by `reliability_soak`
/// (stream mode, about 1 run in 4 when each side dropped its halves as soon
/// as its own part was done).
///
/// Deterministic reproduction: a bare core client sends a message while
/// ignoring the ACKs (they are "lost"); the server application reads it and
/// drops its stream; then the client listens again. Its retransmission
/// should be acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_ack_lost_after_the_server_closed_is_repeated() {
    let cfg = config(false);
    let listener = KcpListener::bind("127.0.0.1:0", cfg.clone()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    timeout(Duration::from_secs(20), async {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        sock.connect(addr).await.unwrap();
        let mut client = CoreClient::new(0xACC, cfg.kcp);
        client.kcp.send(b"first").unwrap();
        client
            .run(&sock, Duration::from_millis(300), &mut |_| {})
            .await;
        let (mut server, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 1024];
        let n = server.recv_msg(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"first");
        assert_eq!(client.kcp.wait_snd(), 0, "first not acknowledged");

        // The last message; its ACKs are lost on the way back.
        client.kcp.send(b"last").unwrap();
        client.kcp.update(client.start.elapsed().as_millis() as u32);
        client.kcp.flush();
        client.kcp.output_mut().drain(|d| {
            let _ = sock.try_send(d);
        });
        let n = server.recv_msg(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"last");
        drop(server); // the server application is done
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut lost = vec![0u8; 2048];
        while let Ok(Ok(_)) = timeout(Duration::from_millis(50), sock.recv(&mut lost)).await {}

        // The client retransmits "last" and listens.
        client.run(&sock, Duration::from_secs(2), &mut |_| {}).await;
        let st = listener.stats();
        eprintln!(
            "after the lost last ACK: client unacked {}; {st:?}",
            client.kcp.wait_snd()
        );
        assert_eq!(
            client.kcp.wait_snd(),
            0,
            "the retransmitted last segment was never acknowledged: {st:?}"
        );
        // The linger ends on its own, without a keep-alive or a timeout.
        let st = wait_for(&listener, Duration::from_secs(5), |s| {
            s.sessions_lingering == 0
        })
        .await;
        assert_eq!(
            (st.sessions_lingering, st.sessions_active),
            (0, 0),
            "{st:?}"
        );
        assert_eq!((st.sessions_closed, st.timed_out), (1, 0), "{st:?}");
    })
    .await
    .expect("test hung");
}
