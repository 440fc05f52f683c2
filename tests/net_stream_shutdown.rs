//! How sessions end: shutdown semantics, a vanished peer, a refused port,
//! dropped streams and runtimes.
#![cfg(feature = "tokio")]

use std::io::ErrorKind;
use std::time::{Duration, Instant};

use kcp_rs::net::{KcpListener, KcpStream, SessionConfig};
use kcp_rs::sim::relay::{RelayConfig, UdpRelay};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{sleep, timeout};

fn quick() -> SessionConfig {
    SessionConfig {
        idle_timeout: Duration::from_millis(1500),
        keep_alive: Some(Duration::from_millis(300)),
        ..SessionConfig::default()
    }
}

#[tokio::test]
async fn shutdown_waits_for_every_ack_then_refuses_writes() {
    timeout(Duration::from_secs(20), async {
        let listener = KcpListener::bind("127.0.0.1:0", quick()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let data = vec![0x5A_u8; 2 << 20];
        let n = data.len();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; n];
            s.read_exact(&mut buf).await.unwrap();
            assert!(buf.iter().all(|&b| b == 0x5A));
            // KCP has no FIN: after the client's shutdown nothing arrives;
            // the read waits...
            let mut one = [0u8; 1];
            let r = timeout(Duration::from_millis(300), s.read(&mut one)).await;
            assert!(r.is_err(), "a read returned after the peer's shutdown");
            s
        });
        let mut c = KcpStream::connect(addr, quick()).await.unwrap();
        c.write_all(&data).await.unwrap();
        c.shutdown().await.unwrap();
        // Everything was acknowledged when shutdown returned.
        assert_eq!(c.send_queue_len(), 0);
        assert_eq!(c.stats().unacked_segments, 0);
        assert!(c.stats().app_bytes_sent >= n as u64);
        let e = c.write(b"more").await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::BrokenPipe);
        // Shutdown again is fine.
        c.shutdown().await.unwrap();
        let mut s = server.await.unwrap();
        // ...until the client's session is gone: then the server's keep-alive
        // probes go unanswered and its read times out.
        let start = Instant::now();
        drop(c);
        let mut one = [0u8; 1];
        let e = s.read(&mut one).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
        // Bound: idle_timeout (1.5 s) after the last datagram heard, with
        // generous slack for a loaded 2-core CI machine; without the timeout
        // the read would wait for the test's 20 s limit.
        assert!(
            start.elapsed() < Duration::from_secs(6),
            "{:?}",
            start.elapsed()
        );
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_vanished_peer_fails_reads_writes_and_shutdown_with_timed_out() {
    timeout(Duration::from_secs(20), async {
        let listener = KcpListener::bind("127.0.0.1:0", quick()).await.unwrap();
        let relay = UdpRelay::start(listener.local_addr().unwrap(), RelayConfig::perfect())
            .await
            .unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).await.unwrap();
            s.write_all(&buf).await.unwrap();
            // Keep the session (and the listener) alive past the test.
            sleep(Duration::from_secs(10)).await;
        });
        let mut c = KcpStream::connect(relay.addr(), quick()).await.unwrap();
        c.write_all(b"hello").await.unwrap();
        let mut buf = [0u8; 5];
        c.read_exact(&mut buf).await.unwrap();
        // The peer vanishes: nothing gets through any more.
        relay.set_blackhole(true);
        let start = Instant::now();
        c.write_all(b"lost").await.unwrap(); // queued: accepted locally
        let e = c.read(&mut buf).await.unwrap_err();
        let took = start.elapsed();
        assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
        // Bound: idle_timeout (1.5 s) after the last datagram heard, with
        // generous slack for a loaded 2-core CI machine (timers fire late,
        // the runtime is shared); a missing idle timeout would still fail it
        // (the read would wait for the test's 20 s limit).
        assert!(took <= Duration::from_millis(1500 * 3), "{took:?}");
        let e = c.write(b"x").await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut);
        let e = c.shutdown().await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut);
        server.abort();
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn keep_alive_keeps_a_quiet_session() {
    timeout(Duration::from_secs(20), async {
        let listener = KcpListener::bind("127.0.0.1:0", quick()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut c = KcpStream::connect(addr, quick()).await.unwrap();
        c.send_msg(b"hi").await.unwrap();
        let (mut s, _) = listener.accept().await.unwrap();
        // Quiet for twice the idle timeout: the probes keep it open.
        sleep(Duration::from_secs(3)).await;
        assert!(c.stats().keepalives_sent > 0 || s.stats().keepalives_sent > 0);
        let mut buf = [0u8; 8];
        let n = s.recv_msg(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"hi");
        s.send_msg(b"still here").await.unwrap();
        let mut buf = [0u8; 16];
        let n = c.recv_msg(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"still here");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn without_keep_alive_a_quiet_session_times_out() {
    timeout(Duration::from_secs(20), async {
        let cfg = SessionConfig {
            keep_alive: None,
            idle_timeout: Duration::from_millis(500),
            ..SessionConfig::default()
        };
        let listener = KcpListener::bind("127.0.0.1:0", cfg.clone()).await.unwrap();
        let mut c = KcpStream::connect(listener.local_addr().unwrap(), cfg)
            .await
            .unwrap();
        c.send_msg(b"hi").await.unwrap();
        let (_s, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 8];
        let e = c.recv_msg(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut);
        // The listener's session times out too, an idle timeout after the
        // client's last datagram: the client may have repeated its answer
        // to a window probe up to 300 ms after the last one it heard.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while listener.stats().sessions_active != 0 && tokio::time::Instant::now() < deadline {
            sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(listener.stats().sessions_active, 0);
        assert_eq!(listener.stats().timed_out, 1);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_closed_port_is_connection_refused() {
    timeout(Duration::from_secs(20), async {
        // Bind and drop, so the port is (very likely) closed.
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut c = KcpStream::connect(port, SessionConfig::default())
            .await
            .unwrap();
        c.send_msg(b"anyone?").await.unwrap();
        let mut buf = [0u8; 8];
        let e = c.recv_msg(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e}");
    })
    .await
    .unwrap();
}

#[test]
fn dropping_the_runtime_fails_handles_without_panicking() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (listener, mut client) = rt.block_on(async {
        let listener = KcpListener::bind("127.0.0.1:0", SessionConfig::default())
            .await
            .unwrap();
        let mut c = KcpStream::connect(listener.local_addr().unwrap(), SessionConfig::default())
            .await
            .unwrap();
        c.send_msg(b"x").await.unwrap();
        (listener, c)
    });
    drop(rt);
    let rt2 = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt2.block_on(async {
        let mut buf = [0u8; 8];
        let e = client.recv_msg(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConnectionAborted);
        let e = client.send_msg(b"y").await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConnectionAborted);
        // A session accepted before the runtime went may still be queued;
        // it is dead too. Then accept fails.
        let e = loop {
            match listener.accept().await {
                Ok((mut s, _)) => {
                    // What arrived before is still readable; then the error.
                    let e = loop {
                        if let Err(e) = s.recv_msg(&mut buf).await {
                            break e;
                        }
                    };
                    assert_eq!(e.kind(), ErrorKind::ConnectionAborted);
                }
                Err(e) => break e,
            }
        };
        assert_eq!(e.kind(), ErrorKind::ConnectionAborted);
    });
    drop(client);
    drop(listener);
}

#[tokio::test]
async fn a_dropped_stream_still_delivers_what_was_written() {
    timeout(Duration::from_secs(20), async {
        let listener = KcpListener::bind("127.0.0.1:0", quick()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut c = KcpStream::connect(addr, quick()).await.unwrap();
        let data = vec![3u8; 300_000];
        c.write_all(&data).await.unwrap();
        drop(c); // no shutdown: the session lingers until acknowledged
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; data.len()];
        s.read_exact(&mut buf).await.unwrap();
        assert!(buf == data);
    })
    .await
    .unwrap();
}
