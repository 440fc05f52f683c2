//! Echo over real loopback sockets: one client, many concurrent clients with
//! hashed bulk data, message mode.
#![cfg(feature = "tokio")]

use std::time::Duration;

use kcp_rs::net::{KcpListener, KcpStream, SessionConfig};
use kcp_rs::KcpConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

fn fnv1a(hash: &mut u64, data: &[u8]) {
    for &b in data {
        *hash ^= b as u64;
        *hash = hash.wrapping_mul(0x100_0000_01b3);
    }
}

const FNV_INIT: u64 = 0xcbf2_9ce4_8422_2325;

/// Deterministic pseudo-random bytes for client `seed`.
fn pattern(seed: u64, off: u64, buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        let x = (off + i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seed;
        *b = (x >> 29) as u8;
    }
}

/// Accepts forever, echoing every byte back.
async fn echo_server(cfg: SessionConfig) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = KcpListener::bind("127.0.0.1:0", cfg).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    (addr, task)
}

#[tokio::test]
async fn echo_one_client() {
    timeout(Duration::from_secs(20), async {
        let (addr, server) = echo_server(SessionConfig::default()).await;
        let mut c = KcpStream::connect(addr, SessionConfig::default())
            .await
            .unwrap();
        assert_ne!(c.conv(), 0);
        assert_eq!(c.peer_addr().unwrap(), addr);
        c.write_all(b"hello kcp").await.unwrap();
        let mut buf = [0u8; 9];
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hello kcp");
        let st = c.stats();
        assert!(
            st.kcp.in_datagrams > 0 && st.kcp.out_datagrams > 0,
            "{st:?}"
        );
        server.abort();
    })
    .await
    .unwrap();
}

/// Clients each send `KCP_TEST_BYTES` bytes (default 1 MiB; the brief's
/// 10 MB is `KCP_TEST_BYTES=10000000`) and check the echo by hash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_concurrent_clients_hashed() {
    let clients: usize = std::env::var("KCP_TEST_CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let bytes: u64 = std::env::var("KCP_TEST_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1 << 20);
    let limit = Duration::from_secs(60 + bytes * clients as u64 / 5_000_000);
    timeout(limit, async move {
        let cfg = SessionConfig::default();
        let (addr, server) = echo_server(cfg.clone()).await;
        let start = std::time::Instant::now();
        let mut tasks = Vec::new();
        for i in 0..clients {
            let cfg = cfg.clone();
            tasks.push(tokio::spawn(async move {
                let s = KcpStream::connect(addr, cfg).await.unwrap();
                let (mut r, mut w) = s.into_split();
                let writer = tokio::spawn(async move {
                    let mut h = FNV_INIT;
                    let mut buf = vec![0u8; 32 * 1024];
                    let mut off = 0u64;
                    while off < bytes {
                        let n = (bytes - off).min(buf.len() as u64) as usize;
                        pattern(i as u64, off, &mut buf[..n]);
                        fnv1a(&mut h, &buf[..n]);
                        w.write_all(&buf[..n]).await.unwrap();
                        off += n as u64;
                    }
                    w.shutdown().await.unwrap();
                    h
                });
                let mut h = FNV_INIT;
                let mut got = 0u64;
                let mut buf = vec![0u8; 64 * 1024];
                while got < bytes {
                    let n = r.read(&mut buf).await.unwrap();
                    assert!(n > 0);
                    fnv1a(&mut h, &buf[..n]);
                    got += n as u64;
                }
                assert_eq!(got, bytes);
                assert_eq!(writer.await.unwrap(), h, "client {i}: echo differs");
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let secs = start.elapsed().as_secs_f64();
        eprintln!(
            "{clients} clients x {bytes} B echoed in {secs:.2} s: {:.1} MB/s each way",
            (clients as u64 * bytes) as f64 / secs / 1e6
        );
        server.abort();
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn message_mode_delivers_exact_messages() {
    timeout(Duration::from_secs(20), async {
        let listener = KcpListener::bind("127.0.0.1:0", SessionConfig::default())
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let max = KcpConfig::fast().max_message();
        let sizes: Vec<usize> = vec![0, 1, 2, 100, 1375, 1376, 1377, 5000, 65_536, max];
        let expect = sizes.clone();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; max];
            for (i, &len) in expect.iter().enumerate() {
                let n = s.recv_msg(&mut buf).await.unwrap();
                assert_eq!(n, len, "message {i}");
                assert!(buf[..n].iter().all(|&b| b == i as u8));
                s.send_msg(&buf[..n]).await.unwrap();
            }
        });
        let mut c = KcpStream::connect(addr, SessionConfig::default())
            .await
            .unwrap();
        for (i, &len) in sizes.iter().enumerate() {
            c.send_msg(&vec![i as u8; len]).await.unwrap();
        }
        let too_big = vec![0u8; max + 1];
        let e = c.send_msg(&too_big).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
        let mut buf = vec![0u8; max];
        for (i, &len) in sizes.iter().enumerate() {
            // A buffer too small keeps the message for the next call.
            if len > 1 {
                let e = c.recv_msg(&mut buf[..1]).await.unwrap_err();
                assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
            }
            let n = c.recv_msg(&mut buf).await.unwrap();
            assert_eq!(n, len, "echo {i}");
            assert!(buf[..n].iter().all(|&b| b == i as u8));
        }
        server.await.unwrap();
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn stream_mode_echo() {
    timeout(Duration::from_secs(20), async {
        let cfg = SessionConfig {
            kcp: KcpConfig {
                stream: true,
                ..KcpConfig::fast()
            },
            ..SessionConfig::default()
        };
        let (addr, server) = echo_server(cfg.clone()).await;
        let mut c = KcpStream::connect(addr, cfg).await.unwrap();
        let e = c.send_msg(b"x").await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
        // Many small writes coalesce; one large write is cut to fit.
        for i in 0..1000u32 {
            c.write_all(&i.to_le_bytes()).await.unwrap();
        }
        // The echo comes back while we write: read concurrently, as with TCP.
        let big = vec![7u8; 3 << 20];
        let (mut r, mut w) = c.split();
        let write = async {
            w.write_all(&big).await.unwrap();
        };
        let read = async {
            let mut head = vec![0u8; 4000];
            r.read_exact(&mut head).await.unwrap();
            for i in 0..1000u32 {
                assert_eq!(head[i as usize * 4..][..4], i.to_le_bytes());
            }
            let mut back = vec![0u8; big.len()];
            r.read_exact(&mut back).await.unwrap();
            assert!(back == big);
        };
        tokio::join!(write, read);
        server.abort();
    })
    .await
    .unwrap();
}

/// Owned halves put back together, as with tokio's `TcpStream`: halves of
/// two streams are refused and handed back intact, the right pair makes a
/// stream that still carries data both ways.
#[tokio::test]
async fn owned_halves_reunite() {
    timeout(Duration::from_secs(20), async {
        let (addr, server) = echo_server(SessionConfig::default()).await;
        let cfg = SessionConfig::default();
        let a = KcpStream::connect(addr, cfg.clone()).await.unwrap();
        let b = KcpStream::connect(addr, cfg).await.unwrap();
        let (a_conv, b_conv) = (a.conv(), b.conv());
        let (ar, aw) = a.into_split();
        let (br, bw) = b.into_split();

        let err = ar.reunite(bw).unwrap_err();
        assert!(err.to_string().contains("not from the same stream"));
        let (ar, bw) = (err.0, err.1);
        assert_eq!((ar.conv(), bw.peer_addr().unwrap()), (a_conv, addr));
        let err = aw.reunite(br).unwrap_err();
        let (br, aw) = (err.0, err.1);

        let mut a = ar.reunite(aw).unwrap();
        let mut b = bw.reunite(br).unwrap();
        assert_eq!((a.conv(), b.conv()), (a_conv, b_conv));
        for (s, msg) in [(&mut a, b"through a"), (&mut b, b"through b")] {
            s.write_all(msg).await.unwrap();
            let mut buf = [0u8; 9];
            s.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, msg);
        }
        server.abort();
    })
    .await
    .unwrap();
}
