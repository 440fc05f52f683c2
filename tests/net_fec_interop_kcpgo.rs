//! `KcpStream` / `KcpListener` with FEC against kcp-go 5.6 (10 data + 3
//! parity, no encryption), both ways, through a seeded lossy relay so that
//! both decoders must rebuild lost packets from parity.
//!
//! The Go peer (`peers/go/fecpeer`, an echo server or a client that checks
//! its echo) is built by `scripts/build-go-peer.sh`; a missing Go toolchain
//! or kcp-go fails these tests. Every wait is bounded; the Go process dies
//! with the test (stdin EOF, its own timeout, or `kill` on drop).
#![cfg(all(feature = "tokio", feature = "fec"))]

use std::net::SocketAddr;
use std::time::Duration;

use kcp_rs::fec::FecConfig;
use kcp_rs::net::{KcpListener, KcpStream, SessionConfig};
use kcp_rs::sim::relay::{RelayConfig, UdpRelay};
use kcp_rs::sim::LinkConfig;
use kcp_rs::KcpConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

#[path = "support/go_peer.rs"]
mod go_peer;
use go_peer::{message, stat, GoPeer};

const MESSAGES: usize = 200;
const LOSS: f64 = 0.05;

/// What the Go peer is tuned to: `SetNoDelay(1, 10, 2, 1)`, windows of
/// 128, message mode, MTU 1400, FEC 10 + 3.
fn config() -> SessionConfig {
    SessionConfig {
        kcp: KcpConfig {
            mtu: 1400,
            snd_wnd: 128,
            rcv_wnd: 128,
            stream: false,
            ..KcpConfig::default().with_ikcp_nodelay(1, 10, 2, true)
        },
        fec: Some(FecConfig::new(10, 3).unwrap()),
        ..SessionConfig::default()
    }
}

/// Our `KcpStream` client against kcp-go's echo server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_stream_against_kcp_go_server() {
    let go = tokio::task::spawn_blocking(|| {
        let go = GoPeer::spawn(&["server", "-addr", "127.0.0.1:0"]);
        let line = go.line_starting("LISTEN ", Duration::from_secs(60));
        let addr: SocketAddr = line["LISTEN ".len()..].trim().parse().unwrap();
        (go, addr)
    });
    let (go, go_addr) = timeout(Duration::from_secs(90), go).await.unwrap().unwrap();
    let relay = UdpRelay::start(go_addr, RelayConfig::symmetric(LinkConfig::lossy(LOSS), 41))
        .await
        .unwrap();
    let stats = timeout(Duration::from_secs(40), async {
        let c = KcpStream::connect(relay.addr(), config()).await.unwrap();
        let sent: Vec<u8> = (0..MESSAGES).flat_map(message).collect();
        let (mut r, mut w) = c.into_split();
        let send = async {
            for i in 0..MESSAGES {
                w.send_msg(&message(i)).await.unwrap();
            }
        };
        let recv = async {
            let mut got = vec![0u8; sent.len()];
            r.read_exact(&mut got).await.unwrap();
            got
        };
        let ((), got) = tokio::join!(send, recv);
        assert!(got == sent, "the echo differs");
        r.stats()
    })
    .await
    .expect("echo through kcp-go timed out");
    eprintln!("ours: {stats:?}");
    assert!(stats.fec_recovered > 0, "we recovered nothing: {stats:?}");
    assert!(stats.fec_parity_received > 0 && stats.fec_parity_sent > 0);
    // kcp-go reports its own recoveries when the session idles out (3 s).
    let end = tokio::task::spawn_blocking(move || {
        let l = go.line_starting("SESSION_END", Duration::from_secs(20));
        drop(go);
        l
    });
    let end = timeout(Duration::from_secs(30), end)
        .await
        .unwrap()
        .unwrap();
    assert!(
        stat(&end, "recovered") > 0,
        "kcp-go recovered nothing: {end}"
    );
    assert_eq!(stat(&end, "fec_errs"), 0, "{end}");
}

/// kcp-go's client against our `KcpListener` echo server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kcp_go_client_against_our_listener() {
    let listener = KcpListener::bind("127.0.0.1:0", config()).await.unwrap();
    let relay = UdpRelay::start(
        listener.local_addr().unwrap(),
        RelayConfig::symmetric(LinkConfig::lossy(LOSS), 42),
    )
    .await
    .unwrap();
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 65536];
        let total: usize = (0..MESSAGES).map(|i| message(i).len()).sum();
        let mut echoed = 0;
        while echoed < total {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0);
            s.write_all(&buf[..n]).await.unwrap();
            echoed += n;
        }
        // No shutdown: the Go client exits once it has its echo, and the
        // ACKs of our last segments may be lost with nobody left to resend.
        (s.stats(), listener)
    });
    let addr = relay.addr().to_string();
    let ok = tokio::task::spawn_blocking(move || {
        let go = GoPeer::spawn(&["client", "-addr", &addr, "-n", &MESSAGES.to_string()]);
        go.line_starting("OK ", Duration::from_secs(60))
    });
    let ok = timeout(Duration::from_secs(90), ok)
        .await
        .expect("kcp-go client timed out")
        .unwrap();
    let (stats, listener) = timeout(Duration::from_secs(20), server)
        .await
        .unwrap()
        .unwrap();
    let ls = listener.stats();
    eprintln!("ours: {stats:?}\nlistener: {ls:?}");
    assert!(stat(&ok, "recovered") > 0, "kcp-go recovered nothing: {ok}");
    assert!(stats.fec_recovered > 0, "we recovered nothing: {stats:?}");
    assert_eq!(ls.sessions_accepted, 1);
    assert!(ls.fec_recovered >= stats.fec_recovered);
}
