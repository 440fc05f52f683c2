//! Soak: data through the in-process lossy UDP relay over loopback (20% loss
//! both ways, reordering jitter, duplicates), in message mode and in stream
//! mode, both directions at once, checked byte for byte at the end.
//!
//! `KCP_SOAK_BYTES` sets the bytes each mode carries, half in each direction
//! (default 16 MiB: a few seconds in debug). The full run, documented with its
//! result in `docs/security.md`:
//!
//! ```text
//! KCP_SOAK_BYTES=1073741824 cargo test --release --test reliability_soak -- --nocapture
//! ```
#![cfg(feature = "tokio")]

use std::time::{Duration, Instant};

use kcp_rs::net::{KcpListener, KcpStream, ListenerStats, SessionConfig};
use kcp_rs::sim::relay::{RelayConfig, UdpRelay};
use kcp_rs::sim::LinkConfig;
use kcp_rs::KcpConfig;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::timeout;

const FNV_INIT: u64 = 0xcbf2_9ce4_8422_2325;

fn fnv1a(hash: &mut u64, data: &[u8]) {
    for &b in data {
        *hash ^= b as u64;
        *hash = hash.wrapping_mul(0x100_0000_01b3);
    }
}

/// The byte at offset `off` of the stream seeded `seed`: what the receiver
/// compares each byte with, so a corruption is reported where it happened.
fn pattern_byte(seed: u64, off: u64) -> u8 {
    let x = off.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seed;
    (x >> 29) as u8
}

fn fill(seed: u64, off: u64, buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b = pattern_byte(seed, off + i as u64);
    }
}

fn soak_bytes() -> u64 {
    std::env::var("KCP_SOAK_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16 << 20)
}

/// A generous bound: a minute plus 100 KB/s (debug on a loaded 2-core CI
/// machine does several MB/s through the relay).
fn time_limit(bytes: u64) -> Duration {
    Duration::from_secs(60 + bytes / 100_000)
}

/// 20% loss each way, 2–10 ms delay that reorders, 2% duplicates.
fn hostile_link() -> LinkConfig {
    LinkConfig {
        loss: 0.2,
        duplicate: 0.02,
        delay: 2,
        jitter: 8,
        fifo: false,
    }
}

fn config(stream: bool) -> SessionConfig {
    SessionConfig {
        kcp: KcpConfig {
            stream,
            ..KcpConfig::fast()
        },
        // A dead link would end the test with TimedOut instead of a hang.
        idle_timeout: Duration::from_secs(20),
        ..SessionConfig::default()
    }
}

struct Rig {
    listener: KcpListener,
    relay: UdpRelay,
}

async fn rig(cfg: &SessionConfig, seed: u64) -> Rig {
    let listener = KcpListener::bind("127.0.0.1:0", cfg.clone()).await.unwrap();
    let relay = UdpRelay::start(
        listener.local_addr().unwrap(),
        RelayConfig::symmetric(hostile_link(), seed),
    )
    .await
    .unwrap();
    Rig { listener, relay }
}

async fn wait_no_sessions(listener: &KcpListener) -> ListenerStats {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let st = listener.stats();
        if st.sessions_active == 0 || Instant::now() > until {
            return st;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ----- stream mode -------------------------------------------------------------

/// Writes `bytes` of the pattern seeded `seed`, then waits until all is
/// acknowledged, and drops the writer. Returns the hash of what was written.
async fn write_pattern<W: AsyncWrite + Unpin>(mut w: W, seed: u64, bytes: u64) -> u64 {
    let mut h = FNV_INIT;
    let mut buf = vec![0u8; 48 * 1024 + 7]; // odd size: writes straddle segments
    let mut off = 0;
    while off < bytes {
        let n = (bytes - off).min(buf.len() as u64) as usize;
        fill(seed, off, &mut buf[..n]);
        fnv1a(&mut h, &buf[..n]);
        w.write_all(&buf[..n]).await.expect("write");
        off += n as u64;
    }
    w.shutdown().await.expect("shutdown (all acknowledged)");
    h
}

/// Reads exactly `bytes`, comparing every byte with the pattern, and drops
/// the reader. Returns the hash of what was read.
async fn read_pattern<R: AsyncRead + Unpin>(mut r: R, seed: u64, bytes: u64) -> u64 {
    let mut h = FNV_INIT;
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0u64;
    while got < bytes {
        let n = r.read(&mut buf).await.expect("read");
        assert!(n > 0, "end of stream after {got} of {bytes} bytes");
        assert!(got + n as u64 <= bytes, "more bytes than were sent");
        for (i, &b) in buf[..n].iter().enumerate() {
            let off = got + i as u64;
            assert_eq!(
                b,
                pattern_byte(seed, off),
                "stream {seed}: byte {off} differs"
            );
        }
        fnv1a(&mut h, &buf[..n]);
        got += n as u64;
    }
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_stream_mode_both_ways() {
    let total = soak_bytes();
    let each = total / 2;
    let cfg = config(true);
    let rig = rig(&cfg, 0x5EED_0001).await;
    let relay_addr = rig.relay.addr();
    let start = Instant::now();
    let run = async {
        let client = KcpStream::connect(relay_addr, cfg.clone()).await.unwrap();
        let (cr, cw) = client.into_split();
        let c_write = tokio::spawn(write_pattern(cw, 1, each));
        let c_read = tokio::spawn(read_pattern(cr, 2, each));
        let (server, _) = rig.listener.accept().await.unwrap();
        let (sr, sw) = server.into_split();
        let s_write = tokio::spawn(write_pattern(sw, 2, each));
        let s_read = tokio::spawn(read_pattern(sr, 1, each));
        // Each half is dropped as soon as its own part is done: a side
        // whose two halves are gone lingers (`SessionConfig::linger`) and
        // acknowledges the peer's retransmissions, so a lost last ACK does
        // not leave the peer's shutdown waiting (see docs/security.md).
        let (cw, cr) = (c_write.await.unwrap(), c_read.await.unwrap());
        let (sw, sr) = (s_write.await.unwrap(), s_read.await.unwrap());
        ((cw, sr), (sw, cr))
    };
    let ((up_sent, up_got), (down_sent, down_got)) = timeout(time_limit(total), run)
        .await
        .expect("stream soak did not finish in time");
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(up_sent, up_got, "client→server hash differs");
    assert_eq!(down_sent, down_got, "server→client hash differs");
    report("stream", total, secs, &rig);
    let st = wait_no_sessions(&rig.listener).await;
    assert_eq!(st.sessions_active, 0, "sessions left behind: {st:?}");
}

// ----- message mode ------------------------------------------------------------

/// Length of message `i`: mostly small, some one to a few segments, some
/// up to 40 KiB (30 fragments), and every 97th empty.
fn msg_len(i: u64) -> usize {
    let x = i.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40;
    match i % 97 {
        50 => 0,
        _ => match x % 8 {
            0..=3 => 12 + (x % 300) as usize,
            4..=6 => 12 + (x % 3000) as usize,
            _ => 12 + (x % 40_000) as usize,
        },
    }
}

/// Messages whose lengths add up to at least `bytes`.
fn msg_count(bytes: u64) -> u64 {
    let (mut n, mut sum) = (0, 0);
    while sum < bytes {
        sum += msg_len(n) as u64;
        n += 1;
    }
    n
}

/// Message `i` of flow `seed`: its index and length, then the pattern.
fn build_msg(seed: u64, i: u64, buf: &mut Vec<u8>) {
    let len = msg_len(i);
    buf.resize(len, 0);
    if len == 0 {
        return;
    }
    buf[..8].copy_from_slice(&i.to_le_bytes());
    buf[8..12].copy_from_slice(&(len as u32).to_le_bytes());
    fill(seed ^ i, 0, &mut buf[12..]);
}

async fn send_msgs(mut w: kcp_rs::net::OwnedWriteHalf, seed: u64, count: u64) -> u64 {
    let mut h = FNV_INIT;
    let mut buf = Vec::new();
    for i in 0..count {
        build_msg(seed, i, &mut buf);
        fnv1a(&mut h, &buf);
        w.send_msg(&buf).await.expect("send_msg");
    }
    w.shutdown().await.expect("shutdown (all acknowledged)");
    h
}

/// Receives `count` messages and checks that each is the next one, whole.
async fn recv_msgs(mut r: kcp_rs::net::OwnedReadHalf, seed: u64, count: u64, max: usize) -> u64 {
    let mut h = FNV_INIT;
    let mut buf = vec![0u8; max];
    let mut want = Vec::new();
    for i in 0..count {
        let n = r.recv_msg(&mut buf).await.expect("recv_msg");
        build_msg(seed, i, &mut want);
        if n >= 12 {
            let idx = u64::from_le_bytes(buf[..8].try_into().unwrap());
            assert_eq!(
                idx, i,
                "flow {seed}: message {idx} arrived where {i} was due"
            );
        }
        assert_eq!(
            n,
            want.len(),
            "flow {seed}: message {i} has the wrong length"
        );
        assert!(buf[..n] == want[..], "flow {seed}: message {i} differs");
        fnv1a(&mut h, &buf[..n]);
    }
    // Nothing more may follow (a duplicate would show up here).
    let extra = timeout(Duration::from_millis(300), r.recv_msg(&mut buf)).await;
    assert!(
        !matches!(extra, Ok(Ok(_))),
        "flow {seed}: a message arrived after the last one"
    );
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_message_mode_both_ways() {
    let total = soak_bytes();
    let count = msg_count(total / 2);
    let cfg = config(false);
    let max = cfg.kcp.max_message();
    assert!(msg_len(7) <= max && 12 + 40_000 <= max);
    let rig = rig(&cfg, 0x5EED_0002).await;
    let relay_addr = rig.relay.addr();
    let start = Instant::now();
    let run = async {
        let client = KcpStream::connect(relay_addr, cfg.clone()).await.unwrap();
        let (cr, cw) = client.into_split();
        let c_send = tokio::spawn(send_msgs(cw, 3, count));
        let c_recv = tokio::spawn(recv_msgs(cr, 4, count, max));
        let (server, _) = rig.listener.accept().await.unwrap();
        let (sr, sw) = server.into_split();
        let s_send = tokio::spawn(send_msgs(sw, 4, count));
        let s_recv = tokio::spawn(recv_msgs(sr, 3, count, max));
        // Each half dropped as soon as its own part is done, as in stream
        // mode.
        let (cw, cr) = (c_send.await.unwrap(), c_recv.await.unwrap());
        let (sw, sr) = (s_send.await.unwrap(), s_recv.await.unwrap());
        ((cw, sr), (sw, cr))
    };
    let ((up_sent, up_got), (down_sent, down_got)) = timeout(time_limit(total), run)
        .await
        .expect("message soak did not finish in time");
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(up_sent, up_got, "client→server hash differs");
    assert_eq!(down_sent, down_got, "server→client hash differs");
    eprintln!("message soak: {count} messages each way");
    report("message", total, secs, &rig);
    let st = wait_no_sessions(&rig.listener).await;
    assert_eq!(st.sessions_active, 0, "sessions left behind: {st:?}");
}

/// Prints the run's figures and checks the relay really was hostile.
fn report(mode: &str, total: u64, secs: f64, rig: &Rig) {
    let r = rig.relay.stats();
    let l = rig.listener.stats();
    eprintln!(
        "{mode} soak: {total} bytes ({} each way) in {secs:.1} s = {:.2} MB/s; \
         relay to_server {:?}, to_client {:?}, refused {}; listener {l:?}",
        total / 2,
        total as f64 / secs / 1e6,
        r.to_server,
        r.to_client,
        r.refused
    );
    for (dir, s) in [("to_server", r.to_server), ("to_client", r.to_client)] {
        let loss = s.dropped as f64 / s.sent.max(1) as f64;
        assert!(
            (0.15..0.25).contains(&loss),
            "{dir}: loss {loss:.3} is not the 20% asked for ({s:?})"
        );
        assert!(s.duplicated > 0, "{dir}: no duplicates ({s:?})");
    }
}
