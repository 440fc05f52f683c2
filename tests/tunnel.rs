//! The `tunnel` example end to end, in process: a TCP app talks to the
//! tunnel client, which carries each connection over KCP through a lossy
//! [`UdpRelay`] to the tunnel server, which connects to a TCP target.
//!
//! ```text
//!  test ──TCP──▶ tunnel client ══ KCP ══▶ UdpRelay (loss, reordering) ══▶ tunnel server ──TCP──▶ target
//! ```
//!
//! The bulk test moves `KCP_TUNNEL_BYTES` bytes (default 50 MB) each way
//! through an echo target and checks both directions by hash; with the `fec`
//! feature, a second one does the same with FEC 4+2 and checks that parity
//! rebuilt lost datagrams.
#![cfg(feature = "tokio")]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kcp_rs::net::KcpListener;
use kcp_rs::sim::relay::{RelayConfig, UdpRelay};
use kcp_rs::sim::LinkConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::timeout;

#[allow(dead_code)]
#[path = "../examples/tunnel/core.rs"]
mod tunnel;

use tunnel::{Mode, TunnelStats};

const BODY: &str = "hello through KCP\n";

/// A tunnel client and server joined through a relay, aborted on drop.
struct Tunnel {
    /// Where applications connect (the tunnel client's TCP side).
    addr: SocketAddr,
    relay: UdpRelay,
    client: Arc<TunnelStats>,
    server: Arc<TunnelStats>,
    tasks: Vec<JoinHandle<std::io::Result<()>>>,
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn tunnel_to(target: SocketAddr, link: LinkConfig) -> Tunnel {
    tunnel_with_fec(target, link, None).await
}

/// [`tunnel_to`] with `fec`'s (data, parity) shards at both ends.
async fn tunnel_with_fec(
    target: SocketAddr,
    link: LinkConfig,
    fec: Option<(usize, usize)>,
) -> Tunnel {
    let config = tunnel::session_config(Mode::Fast, 1400, 512, 512, fec).unwrap();
    let listener = KcpListener::bind("127.0.0.1:0", config.clone())
        .await
        .unwrap();
    let relay = UdpRelay::start(
        listener.local_addr().unwrap(),
        RelayConfig::symmetric(link, 11),
    )
    .await
    .unwrap();
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let client = Arc::new(TunnelStats::new(fec));
    let server = Arc::new(TunnelStats::new(fec));
    let tasks = vec![
        tokio::spawn(tunnel::run_server(
            listener,
            target.to_string(),
            server.clone(),
        )),
        tokio::spawn(tunnel::run_client(
            tcp,
            relay.addr(),
            config,
            client.clone(),
        )),
    ];
    Tunnel {
        addr,
        relay,
        client,
        server,
        tasks,
    }
}

/// 10% loss, 10–30 ms one way, reordering, 1% duplicates.
fn lossy() -> LinkConfig {
    LinkConfig {
        delay: 10,
        ..LinkConfig::lossy(0.10)
    }
}

/// Serves `GET /` with [`BODY`], then closes (HTTP/1.0 style).
async fn http_target() -> (SocketAddr, JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 8192 {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let resp = if req.starts_with(b"GET / ") {
                    format!(
                        "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{BODY}",
                        BODY.len()
                    )
                } else {
                    "HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_string()
                };
                let _ = s.write_all(resp.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    (addr, task)
}

/// Echoes each connection until its EOF, then closes its side.
async fn echo_target() -> (SocketAddr, JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.into_split();
                if tokio::io::copy(&mut r, &mut w).await.is_ok() {
                    let _ = w.shutdown().await;
                }
            });
        }
    });
    (addr, task)
}

async fn get(addr: SocketAddr) -> std::io::Result<String> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: test\r\n\r\n").await?;
    let mut resp = Vec::new();
    // Ends only if the target's close travels back through the tunnel.
    s.read_to_end(&mut resp).await?;
    Ok(String::from_utf8_lossy(&resp).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_get_through_a_lossy_tunnel() {
    timeout(Duration::from_secs(60), async {
        let (target, _t) = http_target().await;
        let tun = tunnel_to(target, lossy()).await;
        let gets: Vec<_> = (0..8).map(|_| tokio::spawn(get(tun.addr))).collect();
        let want = format!(
            "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{BODY}",
            BODY.len()
        );
        for g in gets {
            let resp = g.await.unwrap().unwrap();
            assert_eq!(resp, want);
        }
        assert_eq!(tun.client.opened(), 8);
        // Every connection ended on both sides once both FINs passed.
        timeout(Duration::from_secs(10), async {
            while tun.client.active() + tun.server.active() > 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("connections still open after both sides closed");
        assert_eq!(tun.server.opened(), 8);
        assert_eq!(
            tun.client.failed.load(std::sync::atomic::Ordering::Relaxed),
            0
        );
        println!("client: {}", tun.client.report());
        println!("relay: {:?}", tun.relay.stats());
    })
    .await
    .expect("test timed out");
}

/// Moves `KCP_TUNNEL_BYTES` (default 50 MB) each way through an echo target
/// and compares hashes of what was sent and what came back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_echo_through_a_lossy_tunnel_is_intact() {
    let tun = bulk_echo(None).await;
    let k = tun.client.kcp_totals();
    assert!(
        k.kcp.retransmits + k.kcp.fast_retransmits > 0,
        "no loss was repaired: {k:?}"
    );
}

/// The bulk echo with FEC 4+2 at both ends (`--fec 4,2`): the bytes are
/// intact and both ends rebuilt datagrams the relay lost from parity.
#[cfg(feature = "fec")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_echo_through_a_lossy_tunnel_with_fec_is_intact() {
    let tun = bulk_echo(Some((4, 2))).await;
    let (c, s) = (tun.client.kcp_totals(), tun.server.kcp_totals());
    // The client's sessions receive the echo, the server's the upload.
    assert!(c.fec_recovered > 0, "client rebuilt nothing: {c:?}");
    assert!(s.fec_recovered > 0, "server rebuilt nothing: {s:?}");
    assert!(c.fec_parity_sent > 0 && s.fec_parity_sent > 0);
}

/// Moves `KCP_TUNNEL_BYTES` (default 50 MB) each way through an echo target
/// over [`lossy`] with `fec`, checks length and hash of the echo, and
/// returns the tunnel for its counters.
async fn bulk_echo(fec: Option<(usize, usize)>) -> Tunnel {
    let bytes: u64 = std::env::var("KCP_TUNNEL_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000_000);
    timeout(Duration::from_secs(240), async {
        let (target, _t) = echo_target().await;
        let tun = tunnel_with_fec(target, lossy(), fec).await;
        let start = Instant::now();
        let s = TcpStream::connect(tun.addr).await.unwrap();
        let (mut r, mut w) = s.into_split();
        let writer = tokio::spawn(async move {
            let mut hash = Fnv::default();
            let mut buf = vec![0u8; 64 * 1024];
            let mut off = 0;
            while off < bytes {
                let n = (bytes - off).min(buf.len() as u64) as usize;
                pattern(off, &mut buf[..n]);
                hash.write(&buf[..n]);
                w.write_all(&buf[..n]).await.unwrap();
                off += n as u64;
            }
            // EOF travels as a FIN: the echo target then closes its side,
            // which comes back as our EOF.
            w.shutdown().await.unwrap();
            hash.0
        });
        let mut hash = Fnv::default();
        let mut buf = vec![0u8; 64 * 1024];
        let mut got = 0u64;
        loop {
            let n = r.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            hash.write(&buf[..n]);
            got += n as u64;
        }
        let sent = writer.await.unwrap();
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{got} bytes each way in {secs:.1} s ({:.2} MB/s)\nclient: {}\nserver: {}\nrelay: {:?}",
            got as f64 / secs / 1e6,
            tun.client.report(),
            tun.server.report(),
            tun.relay.stats()
        );
        assert_eq!(got, bytes, "echo length");
        assert_eq!(hash.0, sent, "echo hash");
        tun
    })
    .await
    .expect("test timed out")
}

/// A target that speaks first is reached before the app writes anything:
/// the tunnel client opens the session with an `OPEN` frame at once.
#[tokio::test]
async fn target_that_speaks_first() {
    timeout(Duration::from_secs(30), async {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = l.local_addr().unwrap();
        let _t = tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let _ = s.write_all(b"220 ready\r\n").await;
                let mut buf = [0u8; 6];
                if s.read_exact(&mut buf).await.is_ok() && &buf == b"QUIT\r\n" {
                    let _ = s.write_all(b"221 bye\r\n").await;
                }
            }
        });
        let tun = tunnel_to(target, lossy()).await;
        let mut s = TcpStream::connect(tun.addr).await.unwrap();
        let mut banner = [0u8; 11];
        s.read_exact(&mut banner).await.unwrap();
        assert_eq!(&banner, b"220 ready\r\n");
        s.write_all(b"QUIT\r\n").await.unwrap();
        let mut rest = String::new();
        s.read_to_string(&mut rest).await.unwrap();
        assert_eq!(rest, "221 bye\r\n");
    })
    .await
    .expect("test timed out");
}

/// When the server side cannot reach its target, the app's connection is
/// closed promptly (an `RST` frame), not left hanging.
#[tokio::test]
async fn unreachable_target_closes_the_app_connection() {
    timeout(Duration::from_secs(30), async {
        // A port that was just free: connecting to it is refused.
        let target = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let tun = tunnel_to(target, LinkConfig::perfect()).await;
        let start = Instant::now();
        let mut s = TcpStream::connect(tun.addr).await.unwrap();
        let mut buf = [0u8; 16];
        let r = s.read(&mut buf).await;
        assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
        timeout(Duration::from_secs(5), async {
            while tun.client.failed.load(std::sync::atomic::Ordering::Relaxed) == 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the client side did not count the failure");
    })
    .await
    .expect("test timed out");
}

/// FNV-1a, 64 bits: the same over any chunking of the same bytes.
#[derive(Clone, Copy)]
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn write(&mut self, data: &[u8]) {
        for &b in data {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x100_0000_01b3);
        }
    }
}

/// The test stream's bytes at offset `off`, the same whatever the chunking.
fn pattern(mut off: u64, buf: &mut [u8]) {
    let mut i = 0;
    while i < buf.len() {
        let mut x = (off / 8).wrapping_add(0x9E37_79B9_7F4A_7C15);
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        let word = (x ^ (x >> 31)).to_le_bytes();
        let start = (off % 8) as usize;
        let n = (8 - start).min(buf.len() - i);
        buf[i..i + n].copy_from_slice(&word[start..start + n]);
        i += n;
        off += n as u64;
    }
}
