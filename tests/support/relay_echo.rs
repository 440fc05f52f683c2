//! A bulk echo through a lossy relay on loopback, for the tests that check
//! what loss does to a session: the client writes, the server echoes
//! everything back, and both directions are compared byte for byte.
#![allow(dead_code)] // each test binary uses a different subset

use std::time::Duration;

use kcp_rs::net::{KcpListener, KcpStream, SessionConfig, SessionStats};
use kcp_rs::sim::relay::{RelayConfig, RelayStats, UdpRelay};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

/// What an echo left behind, for the caller's own checks.
pub struct RelayEcho {
    pub client: SessionStats,
    pub server: SessionStats,
    pub relay: RelayStats,
    /// Kept open until the caller has read its totals.
    pub listener: KcpListener,
}

/// Sends `data` from a client through a relay set up by `relay` to a
/// listener's session, which echoes it back. Panics unless the server
/// received exactly `data` and the client got exactly `data` back, with
/// nothing after it for 200 ms (no byte lost, reordered or duplicated).
pub async fn echo_through_relay(cfg: SessionConfig, relay: RelayConfig, data: &[u8]) -> RelayEcho {
    let bytes = data.len();
    let listener = KcpListener::bind("127.0.0.1:0", cfg.clone()).await.unwrap();
    let relay = UdpRelay::start(listener.local_addr().unwrap(), relay)
        .await
        .unwrap();
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; bytes];
        s.read_exact(&mut buf).await.unwrap();
        // Echo it back, so both directions see the loss.
        s.write_all(&buf).await.unwrap();
        s.shutdown().await.unwrap();
        (buf, s.stats(), listener)
    });
    let mut c = KcpStream::connect(relay.addr(), cfg).await.unwrap();
    let (mut r, mut w) = c.split();
    let send = async {
        w.write_all(data).await.unwrap();
        w.shutdown().await.unwrap();
    };
    let recv = async {
        let mut back = vec![0u8; bytes];
        r.read_exact(&mut back).await.unwrap();
        let extra = timeout(Duration::from_millis(200), r.read(&mut [0u8; 1])).await;
        assert!(extra.is_err(), "bytes beyond the echo arrived");
        back
    };
    let ((), back) = tokio::join!(send, recv);
    let (got, server, listener) = server.await.unwrap();
    assert!(got == data, "server received different bytes");
    assert!(back == data, "client received different bytes");
    RelayEcho {
        client: c.stats(),
        server,
        relay: relay.stats(),
        listener,
    }
}
