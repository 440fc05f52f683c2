//! A session that sends now and then (a game's inputs, a chat, keep-alive
//! traffic) must still measure the round trip correctly.
//!
//! Regression test: KCP (like ikcp) measures an ACK's RTT as `current - ts`,
//! `current` being the session's clock. The socket task calls `update` only
//! at the deadline `check` names (the RTO while a segment is in flight), so
//! it must refresh the clock (`Kcp::set_clock`) before `input`; otherwise an
//! ACK that beats the RTO is measured against the send time (RTT 0), the RTO
//! collapses to its floor and every sparse message is retransmitted once for
//! nothing. kcp-go reads the clock inside `Input` for the same reason.
#![cfg(feature = "tokio")]

use std::time::Duration;

use kcp_rs::net::{KcpListener, KcpStream, SessionConfig};
use kcp_rs::sim::relay::{RelayConfig, UdpRelay};
use kcp_rs::sim::LinkConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{sleep, timeout};

#[tokio::test]
async fn sparse_sender_measures_rtt_and_does_not_retransmit() {
    timeout(Duration::from_secs(20), async {
        let l = KcpListener::bind("127.0.0.1:0", SessionConfig::default())
            .await
            .unwrap();
        // Lossless, 25 ms each way: RTT 50 ms.
        let link = LinkConfig {
            delay: 25,
            ..LinkConfig::perfect()
        };
        let relay = UdpRelay::start(l.local_addr().unwrap(), RelayConfig::symmetric(link, 1))
            .await
            .unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut b = [0u8; 4];
            while s.read_exact(&mut b).await.is_ok() {
                s.write_all(&b).await.unwrap();
            }
        });
        let mut c = KcpStream::connect(relay.addr(), SessionConfig::default())
            .await
            .unwrap();
        for _ in 0..10 {
            c.write_all(b"ping").await.unwrap();
            let mut b = [0u8; 4];
            c.read_exact(&mut b).await.unwrap();
            sleep(Duration::from_millis(150)).await;
        }
        let st = c.stats();
        server.abort();
        assert!(
            (40..=100).contains(&st.rtt_ms),
            "smoothed RTT {} ms on a 50 ms path: {st:?}",
            st.rtt_ms
        );
        assert_eq!(
            st.kcp.retransmits, 0,
            "retransmissions on a lossless path: {st:?}"
        );
    })
    .await
    .unwrap();
}
