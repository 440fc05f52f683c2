//! Listener abuse: floods of garbage, random conversations and valid-looking
//! first flights from many source addresses and ports, and replays of a
//! legitimate session's datagrams. The listener must hold its caps
//! (`max_sessions`, `max_sessions_per_ip`, checked through `ListenerStats`),
//! let half-open sessions expire, keep its memory bounded, hand nothing from
//! the flood to `accept`, and keep serving the legitimate session.
//!
//! Sources are plain UDP sockets on several loopback addresses (Linux routes
//! all of 127.0.0.0/8 to `lo`), so one test can play many hosts.
#![cfg(feature = "tokio")]

use std::net::{Ipv4Addr, SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kcp_rs::codec::Header;
use kcp_rs::constants::{CMD_PUSH, OVERHEAD};
use kcp_rs::net::{KcpListener, KcpStream, ListenerStats, SessionConfig};
use kcp_rs::sequence::{Seq, Timestamp};
use kcp_rs::sim::Rng;
use tokio::net::UdpSocket;
use tokio::time::timeout;

#[path = "support/proc_self.rs"]
mod proc_self;
use proc_self::{cpu_time, rss_kib};

/// The tests measure the process's memory and CPU: one at a time.
/// (An async mutex: each test has its own runtime, and the guard is held
/// across awaits.)
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn header(conv: u32, cmd: u8, frg: u8, sn: u32, una: u32, len: usize) -> [u8; OVERHEAD] {
    let mut b = [0u8; OVERHEAD];
    Header {
        conv,
        cmd,
        frg,
        wnd: 128,
        ts: Timestamp::new(0),
        sn: Seq::new(sn),
        una: Seq::new(una),
        len: len as u32,
    }
    .emit(&mut b);
    b
}

/// A uniform integer in `0..n` (`n > 0`).
fn below(rng: &mut Rng, n: usize) -> usize {
    (rng.next_u64() % n as u64) as usize
}

// ----- the flood ---------------------------------------------------------------

/// What a flood did.
#[derive(Debug, Default)]
struct FloodCounts {
    sent: AtomicU64,
}

/// A flood from `sockets` (bound on loopback addresses) to `target`, on a
/// thread of its own, until `stop`. A mix of
/// - garbage of random length (0..1500 bytes, some shorter than a header),
/// - random headers (random conv, cmd, sn, una, len),
/// - valid-looking first flights (PUSH, sn = una = 0, a fresh random conv),
/// - full-size PUSH segments following those first flights (sn 1..120,
///   fragments of large messages), to fill whatever a half-open session
///   buffers.
struct Flood {
    stop: Arc<AtomicBool>,
    counts: Arc<FloodCounts>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Flood {
    fn start(sockets: Vec<StdUdpSocket>, target: SocketAddr, seed: u64) -> Flood {
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(FloodCounts::default());
        let (st, ct) = (stop.clone(), counts.clone());
        let thread = std::thread::spawn(move || {
            let mut rng = Rng::new(seed);
            let mut convs: Vec<(usize, u32, u32)> = Vec::new(); // (socket, conv, next sn)
            let mut buf = vec![0u8; 1500];
            let mss = 1400 - OVERHEAD;
            while !st.load(Ordering::Relaxed) {
                for _ in 0..64 {
                    let s = below(&mut rng, sockets.len());
                    let len = match below(&mut rng, 10) {
                        0..=1 => {
                            let n = below(&mut rng, 1500);
                            rng.fill(&mut buf[..n]);
                            n
                        }
                        2..=3 => {
                            let n = below(&mut rng, 200);
                            let h = header(
                                rng.next_u64() as u32,
                                rng.next_u64() as u8,
                                rng.next_u64() as u8,
                                rng.next_u64() as u32,
                                rng.next_u64() as u32,
                                if rng.chance(0.5) {
                                    n
                                } else {
                                    rng.next_u64() as usize
                                },
                            );
                            buf[..OVERHEAD].copy_from_slice(&h);
                            rng.fill(&mut buf[OVERHEAD..OVERHEAD + n]);
                            OVERHEAD + n
                        }
                        4..=6 => {
                            let conv = rng.next_u64() as u32 | 1;
                            let n = below(&mut rng, mss);
                            buf[..OVERHEAD].copy_from_slice(&header(conv, CMD_PUSH, 0, 0, 0, n));
                            rng.fill(&mut buf[OVERHEAD..OVERHEAD + n]);
                            if convs.len() < 4096 {
                                convs.push((s, conv, 1));
                            }
                            OVERHEAD + n
                        }
                        _ => {
                            let Some(i) = (!convs.is_empty()).then(|| below(&mut rng, convs.len()))
                            else {
                                continue;
                            };
                            let (s, conv, sn) = convs[i];
                            if sn >= 120 {
                                convs.swap_remove(i);
                                continue;
                            }
                            convs[i].2 += 1;
                            // Fragments of 119-segment messages: frg counts down.
                            let frg = (119 - sn) as u8;
                            buf[..OVERHEAD]
                                .copy_from_slice(&header(conv, CMD_PUSH, frg, sn, 0, mss));
                            rng.fill(&mut buf[OVERHEAD..OVERHEAD + mss]);
                            let _ = sockets[s].send_to(&buf[..OVERHEAD + mss], target);
                            ct.sent.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                    };
                    let _ = sockets[s].send_to(&buf[..len], target);
                    ct.sent.fetch_add(1, Ordering::Relaxed);
                }
                // A flood, but one that leaves the legitimate traffic a core
                // on a 2-core machine: yield between bursts.
                std::thread::sleep(Duration::from_micros(200));
            }
        });
        Flood {
            stop,
            counts,
            thread: Some(thread),
        }
    }

    fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("flood thread panicked");
        }
        self.counts.sent.load(Ordering::Relaxed)
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// `ports` sockets on each of the loopback addresses `127.0.0.<ips>`.
fn sources(ips: std::ops::RangeInclusive<u8>, ports: usize) -> Vec<StdUdpSocket> {
    let mut v = Vec::new();
    for last in ips {
        for _ in 0..ports {
            v.push(
                StdUdpSocket::bind((Ipv4Addr::new(127, 0, 0, last), 0)).expect("bind 127.0.0.x"),
            );
        }
    }
    v
}

// ----- legitimate traffic ------------------------------------------------------

/// Accepts sessions and drains whatever they send, answering each 8-byte
/// "done" marker (all ones) with one byte, and dropping the session at a
/// "bye" marker (8 × 0xee).
fn sink_server(listener: Arc<KcpListener>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 256 * 1024];
                loop {
                    match s.recv_msg(&mut buf).await {
                        Ok(8) if buf[..8] == [0xff; 8] => {
                            if s.send_msg(b"k").await.is_err() {
                                return;
                            }
                        }
                        Ok(8) if buf[..8] == [0xee; 8] => return,
                        Ok(_) => {}
                        Err(_) => return,
                    }
                }
            });
        }
    })
}

/// Sends `bytes` in 16 KiB messages and waits for the server's receipt.
/// Returns how long it took.
async fn transfer(s: &mut KcpStream, bytes: usize) -> Duration {
    let start = Instant::now();
    let msg = vec![0x5au8; 16 * 1024];
    let mut sent = 0;
    while sent < bytes {
        s.send_msg(&msg).await.expect("legit send_msg");
        sent += msg.len();
    }
    s.send_msg(&[0xff; 8]).await.unwrap();
    let mut ack = [0u8; 8];
    let n = s.recv_msg(&mut ack).await.expect("legit receipt");
    assert_eq!(&ack[..n], b"k");
    start.elapsed()
}

/// Tells the sink server to drop its end, waits until that is acknowledged,
/// and drops this end.
async fn bye(mut s: KcpStream) {
    use tokio::io::AsyncWriteExt;
    s.send_msg(&[0xee; 8]).await.unwrap();
    s.shutdown().await.unwrap();
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

fn abuse_config() -> SessionConfig {
    SessionConfig {
        max_sessions: 64,
        max_sessions_per_ip: 16,
        half_open_timeout: Duration::from_millis(500),
        ..SessionConfig::default()
    }
}

/// Upper bound of what one half-open session can hold: KCP's receive window
/// full of segments, plus the reader's queue (in message mode, a count of
/// messages up to `max_message` each), plus 64 KiB of fixed structures.
fn per_session_bound(cfg: &SessionConfig) -> u64 {
    let k = &cfg.kcp;
    let window = 2 * k.rcv_wnd as u64 * k.mss() as u64;
    let queue_msgs = cfg.recv_queue_limit.div_ceil(16 * 1024) as u64;
    window + queue_msgs * k.max_message() as u64 + 64 * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flood_holds_caps_expires_half_open_and_spares_the_legit_session() {
    let _g = SERIAL.lock().await;
    let cfg = abuse_config();
    let listener = Arc::new(KcpListener::bind("127.0.0.1:0", cfg.clone()).await.unwrap());
    let addr = listener.local_addr().unwrap();
    let server = sink_server(listener.clone());
    let legit_bytes = 8 << 20;

    timeout(Duration::from_secs(90), async {
        let mut legit = KcpStream::connect(addr, cfg.clone()).await.unwrap();
        let quiet = transfer(&mut legit, legit_bytes).await;
        let base = listener.stats();
        assert_eq!((base.sessions_active, base.sessions_accepted), (1, 1), "{base:?}");
        let rss0 = rss_kib();
        let cpu0 = cpu_time();
        let t0 = Instant::now();

        // Phase 1: one source address, 40 ports. At most 16 sessions from it.
        let flood = Flood::start(sources(2..=2, 40), addr, 1);
        let mut peak1 = 0;
        let until = Instant::now() + Duration::from_millis(1500);
        while Instant::now() < until {
            peak1 = peak1.max(listener.stats().sessions_active);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let sent1 = flood.stop();
        let st1 = listener.stats();
        eprintln!("phase 1 (one IP): {sent1} datagrams, peak sessions {peak1}, {st1:?}");
        assert!(peak1 <= 1 + 16, "per-IP cap broken: {peak1} sessions");
        assert!(peak1 == 1 + 16, "the flood never reached the per-IP cap ({peak1}): it tests nothing");
        assert!(st1.dropped_over_limit > 0, "{st1:?}");

        // Phase 2: eight addresses, 16 ports each, while the legit session
        // transfers. At most 64 sessions in all.
        let flood = Flood::start(sources(3..=10, 16), addr, 2);
        let peak2 = Arc::new(AtomicU64::new(0));
        let rss_peak = Arc::new(AtomicU64::new(0));
        let watch = {
            let (l, p, r) = (listener.clone(), peak2.clone(), rss_peak.clone());
            tokio::spawn(async move {
                loop {
                    p.fetch_max(l.stats().sessions_active, Ordering::Relaxed);
                    r.fetch_max(rss_kib(), Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        };
        let flooded = timeout(Duration::from_secs(60), transfer(&mut legit, legit_bytes))
            .await
            .expect("the legitimate transfer did not complete during the flood");
        // Keep flooding a little longer so the caps are held for a while.
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let sent2 = flood.stop();
        let flood_secs = t0.elapsed().as_secs_f64();
        let cpu = cpu_time() - cpu0;
        watch.abort();
        let (peak2, rss_peak) = (peak2.load(Ordering::Relaxed), rss_peak.load(Ordering::Relaxed));
        let st2 = listener.stats();
        eprintln!("phase 2 (8 IPs): {sent2} datagrams, peak sessions {peak2}, {st2:?}");
        assert!(peak2 <= 64, "max_sessions broken: {peak2} sessions");
        assert!(peak2 >= 60, "the flood never came near max_sessions ({peak2}): it tests nothing");

        // Memory: bounded by the caps (and far below them in practice).
        let grew = rss_peak.saturating_sub(rss0);
        let bound = 64 * per_session_bound(&cfg) / 1024;
        eprintln!(
            "RSS {rss0} KiB before, peak {rss_peak} KiB during the flood (+{grew} KiB; \
             cap-derived bound {bound} KiB, {} KiB per session worst case)",
            per_session_bound(&cfg) / 1024
        );
        assert!(grew <= bound, "memory grew {grew} KiB, beyond what the caps allow ({bound} KiB)");

        let ratio = flooded.as_secs_f64() / quiet.as_secs_f64();
        eprintln!(
            "legit {} MiB: {quiet:?} quiet, {flooded:?} under the flood (ratio {ratio:.2}); \
             flood {:.0} datagrams/s for {flood_secs:.1} s; process CPU {cpu:?} ({:.0}% of one core)",
            legit_bytes >> 20,
            (sent1 + sent2) as f64 / flood_secs,
            cpu.as_secs_f64() / flood_secs * 100.0
        );

        // Half-open sessions expire: back to the legitimate session alone.
        let st = wait_for(&listener, Duration::from_secs(5), |s| s.sessions_active == 1).await;
        eprintln!("after the flood: {st:?}");
        assert_eq!(st.sessions_active, 1, "half-open sessions did not expire: {st:?}");
        assert_eq!(st.sessions_accepted, 1, "a flood session reached accept: {st:?}");
        assert_eq!(
            st.half_open_expired,
            st.sessions_opened - 1,
            "every flood session should have ended as half-open: {st:?}"
        );
        assert!(st.dropped_invalid + st.dropped_unknown > 0, "{st:?}");

        // The legitimate session still works, and ends cleanly.
        transfer(&mut legit, 64 * 1024).await;
        bye(legit).await;
        let st = wait_for(&listener, Duration::from_secs(10), |s| s.sessions_active == 0).await;
        assert_eq!(st.sessions_active, 0, "sessions left behind: {st:?}");
    })
    .await
    .expect("abuse test did not finish in time");
    server.abort();
}

// ----- what one spoofed source can make the listener hold and send -------------

/// A non-answering source (a spoofed address, as far as the listener can
/// tell) opens half-open sessions and pushes as much data into them as they
/// take: full-size fragments of the largest messages. What a half-open
/// session holds must stay within KCP's own receive buffers (it is never
/// handed to `accept`, so nothing should be queued for a reader).
///
/// Failed before commit 0ea62b1 ("net: leave a half-open session's data in
/// KCP until the peer answers"): 3142 KiB per half-open session (16 messages
/// of 127 fragments in the message-mode reader queue) against 344 KiB of
/// KCP buffers, about 30 GiB at the default `max_sessions`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_sessions_buffer_no_more_than_the_kcp_window() {
    let _g = SERIAL.lock().await;
    let sessions = 16u32;
    let cfg = SessionConfig {
        half_open_timeout: Duration::from_secs(10),
        ..SessionConfig::default()
    };
    let listener = KcpListener::bind("127.0.0.1:0", cfg.clone()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let k = cfg.kcp;
    let mss = k.mss();
    let frags = k.max_fragments() as u32;
    // Enough segments to fill the receive window and the reader's queue
    // several times over.
    let per_session =
        (cfg.recv_queue_limit.div_ceil(16 * 1024) as u32 + 4) * frags + 2 * k.rcv_wnd as u32;
    let rss0 = rss_kib();
    timeout(Duration::from_secs(60), async {
        let src = UdpSocket::bind("127.0.0.11:0").await.unwrap();
        let mut dgram = vec![0x33u8; OVERHEAD + mss];
        let mut sent = 0u64;
        for conv in 1..=sessions {
            for sn in 0..per_session {
                // Messages of `frags` fragments from sn 0: frg counts down.
                let frg = (frags - 1 - sn % frags) as u8;
                dgram[..OVERHEAD].copy_from_slice(&header(conv, CMD_PUSH, frg, sn, 0, mss));
                src.send_to(&dgram, addr).await.unwrap();
                sent += 1;
                if sent.is_multiple_of(64) {
                    // Do not overrun the listener's socket buffer.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
        // Let the socket task catch up.
        let st = wait_for(&listener, Duration::from_secs(20), |s| s.datagrams_in >= sent * 9 / 10).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let rss = rss_kib();
        let grew = rss.saturating_sub(rss0);
        let window = (2 * k.rcv_wnd as u64 * mss as u64) / 1024;
        eprintln!(
            "{sessions} half-open sessions, {sent} datagrams sent ({} per session): RSS +{grew} KiB \
             = {} KiB per session (KCP receive buffers: {window} KiB); {st:?}",
            per_session,
            grew / sessions as u64
        );
        assert_eq!(st.sessions_active, sessions as u64, "{st:?}");
        assert_eq!(st.sessions_accepted, 0, "{st:?}");
        assert!(
            grew / (sessions as u64) <= window + 128,
            "a half-open session holds {} KiB, more than KCP's receive buffers ({window} KiB): \
             data is queued for a reader that does not exist yet",
            grew / sessions as u64
        );
    })
    .await
    .expect("half-open buffer test did not finish in time");
}

/// A source that never answers gets a bounded number of datagrams back for
/// the one datagram that opened a half-open session (its ACK with the first
/// window probe, then the probe repeated 200, 400, 800 ms … apart until
/// `half_open_timeout`): the listener's reflection factor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_towards_a_silent_source_is_bounded() {
    let _g = SERIAL.lock().await;
    let cfg = SessionConfig {
        half_open_timeout: Duration::from_secs(2),
        ..SessionConfig::default()
    };
    let listener = KcpListener::bind("127.0.0.1:0", cfg.clone()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    timeout(Duration::from_secs(20), async {
        let victim = UdpSocket::bind("127.0.0.12:0").await.unwrap();
        let first = header(7, CMD_PUSH, 0, 0, 0, 0);
        let sent = Instant::now();
        victim.send_to(&first, addr).await.unwrap();
        let (mut n, mut bytes) = (0u64, 0u64);
        let mut arrivals = Vec::new();
        let mut buf = [0u8; 2048];
        let until = sent + cfg.half_open_timeout + Duration::from_millis(1500);
        while let Ok(Ok((len, _))) = timeout(
            until.saturating_duration_since(Instant::now()),
            victim.recv_from(&mut buf),
        )
        .await
        {
            n += 1;
            bytes += len as u64;
            arrivals.push(sent.elapsed().as_millis());
        }
        let st = listener.stats();
        eprintln!(
            "one {}-byte first flight from a silent source: {n} datagrams, {bytes} bytes back \
             within half_open_timeout {:?} (payload amplification {:.1}x), at {arrivals:?} ms; \
             {st:?}",
            first.len(),
            cfg.half_open_timeout,
            bytes as f64 / first.len() as f64
        );
        assert_eq!(st.half_open_expired, 1, "{st:?}");
        assert_eq!(st.sessions_active, 0, "{st:?}");
        // The ACK with the first probe, then repeats at 200, 600, 1400 ms
        // (the wait doubling each time), nothing after expiry: 4 datagrams
        // for a 2 s timeout, where a fixed 200 ms interval sent 10.
        let (mut most, mut at, mut gap) = (1u64, 200u128, 200u128);
        while at < cfg.half_open_timeout.as_millis() {
            most += 1;
            gap *= 2;
            at += gap;
        }
        assert_eq!(most, 4);
        assert!(n >= 1, "the first flight was not even acknowledged");
        assert!(
            n <= most,
            "{n} datagrams back, more than {most}: {arrivals:?} ms"
        );
        // An ACK and a WASK, then a WASK per repeat.
        let most_bytes = 2 * OVERHEAD as u64 + (most - 1) * OVERHEAD as u64;
        assert!(
            bytes <= most_bytes,
            "{bytes} bytes back, more than {most_bytes}"
        );
    })
    .await
    .expect("reflection test did not finish in time");
}

// ----- replays -----------------------------------------------------------------

/// A forwarder between a client and the server that records every datagram
/// the client sends. Its back socket is the client's address as the server
/// sees it, so it can also replay into the live session.
struct Tap {
    front: SocketAddr,
    back: Arc<UdpSocket>,
    captured: Arc<Mutex<Vec<Vec<u8>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Tap {
    async fn start(server: SocketAddr) -> Tap {
        let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        back.connect(server).await.unwrap();
        let captured = Arc::new(Mutex::new(Vec::new()));
        let (f, b, c) = (front.clone(), back.clone(), captured.clone());
        let task = tokio::spawn(async move {
            let mut client = None;
            let (mut up, mut down) = (vec![0u8; 65_536], vec![0u8; 65_536]);
            loop {
                tokio::select! {
                    r = f.recv_from(&mut up) => {
                        let Ok((n, from)) = r else { continue };
                        client = Some(from);
                        c.lock().unwrap().push(up[..n].to_vec());
                        let _ = b.send(&up[..n]).await;
                    }
                    r = b.recv(&mut down) => {
                        let Ok(n) = r else { continue };
                        if let Some(to) = client {
                            let _ = f.send_to(&down[..n], to).await;
                        }
                    }
                }
            }
        });
        Tap {
            front: front.local_addr().unwrap(),
            back,
            captured,
            task,
        }
    }
}

/// Every datagram of a legitimate exchange, replayed twice into the live
/// session from its own address (as a spoofer or an on-path attacker
/// could), then twice from another port.
///
/// Into the live session: nothing is delivered twice, nothing breaks.
///
/// From another port: KCP has no handshake and nothing in a KCP answer
/// proves that its sender received anything, so the replay (which contains
/// the client's WINS answers to the server's window probe) is a complete
/// conversation opening: the listener may hand it to `accept` and deliver
/// the replayed messages again (see docs/security.md). What the library
/// bounds: at most one session for it, and it ends with `TimedOut` once the
/// replayer goes quiet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_datagrams_create_nothing_harmful() {
    let _g = SERIAL.lock().await;
    let cfg = SessionConfig {
        half_open_timeout: Duration::from_millis(500),
        idle_timeout: Duration::from_secs(2),
        keep_alive: Some(Duration::from_millis(400)),
        ..SessionConfig::default()
    };
    let listener = KcpListener::bind("127.0.0.1:0", cfg.clone()).await.unwrap();
    let server_addr = listener.local_addr().unwrap();
    let tap = Tap::start(server_addr).await;
    timeout(Duration::from_secs(30), async {
        let mut client = KcpStream::connect(tap.front, cfg.clone()).await.unwrap();
        let msgs: Vec<Vec<u8>> = (0..50u32)
            .map(|i| {
                let mut m = vec![i as u8; 100 + (i as usize * 997) % 5000];
                m[..4].copy_from_slice(&i.to_le_bytes());
                m
            })
            .collect();
        for m in &msgs {
            client.send_msg(m).await.unwrap();
        }
        let (mut server, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; cfg.kcp.max_message()];
        for (i, m) in msgs.iter().enumerate() {
            let n = server.recv_msg(&mut buf).await.unwrap();
            assert!(buf[..n] == m[..], "message {i} differs");
        }
        // Let the last ACKs settle, then take the capture.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let captured = tap.captured.lock().unwrap().clone();
        assert!(
            captured.len() >= 10,
            "captured only {} datagrams",
            captured.len()
        );

        // Into the live session, from its own address, twice.
        let dup0 = server.stats().kcp;
        for _ in 0..2 {
            for d in &captured {
                tap.back.send(d).await.unwrap();
            }
        }
        let extra = timeout(Duration::from_millis(500), server.recv_msg(&mut buf)).await;
        assert!(
            extra.is_err(),
            "a replayed datagram was delivered again: {extra:?}"
        );
        let st = listener.stats();
        assert_eq!(
            st.sessions_opened, 1,
            "a replay into the session opened another: {st:?}"
        );
        eprintln!(
            "replayed {} datagrams ×2 into the live session: nothing delivered; core counters \
             before {dup0:?}, after {:?}",
            captured.len(),
            server.stats().kcp
        );
        client.send_msg(b"after the replay").await.unwrap();
        let n = server.recv_msg(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"after the replay");
        server.send_msg(b"and back").await.unwrap();
        let n = client.recv_msg(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"and back");

        // From another port, twice.
        let before = listener.stats();
        let other = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        for _ in 0..2 {
            for d in &captured {
                other.send_to(d, server_addr).await.unwrap();
            }
        }
        let replayed = timeout(Duration::from_millis(1000), listener.accept()).await;
        let mut delivered = 0;
        let ended = match replayed {
            Ok(Ok((mut s, from))) => {
                assert_eq!(from, other.local_addr().unwrap());
                // Whatever it delivers, it must end by itself once the
                // replayer is quiet.
                let end = timeout(cfg.idle_timeout + Duration::from_secs(3), async {
                    loop {
                        match s.recv_msg(&mut buf).await {
                            Ok(_) => delivered += 1,
                            Err(e) => return e,
                        }
                    }
                })
                .await
                .expect("the replayed session did not end after idle_timeout");
                assert_eq!(end.kind(), std::io::ErrorKind::TimedOut, "{end}");
                Some(end)
            }
            _ => None,
        };
        let st = wait_for(&listener, cfg.idle_timeout + Duration::from_secs(3), |s| {
            s.sessions_active == 1
        })
        .await;
        eprintln!(
            "replayed {} datagrams ×2 from another port: accepted: {}, {delivered} of {} old \
             messages delivered again, ended with {:?}; {st:?}",
            captured.len(),
            ended.is_some(),
            msgs.len(),
            ended.map(|e| e.kind())
        );
        assert!(st.sessions_opened - before.sessions_opened <= 1, "{st:?}");
        assert_eq!(
            st.sessions_active, 1,
            "the replayed session did not end: {st:?}"
        );
        assert!(delivered <= msgs.len(), "more messages than were ever sent");

        // The live session kept working all along (keep-alives).
        server.send_msg(b"still here").await.unwrap();
        let n = client.recv_msg(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"still here");
    })
    .await
    .expect("replay test did not finish in time");
    tap.task.abort();
}
