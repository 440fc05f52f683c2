//! A session that sends now and then (a game's inputs, a chat, keep-alive
//! traffic) must still measure the round trip correctly.
//!
//! Known bug, hence `#[ignore]`: the socket task hands a datagram to
//! `Kcp::input` without first advancing the session's clock, and KCP (like
//! ikcp) measures an ACK's RTT as `current - ts`, `current` being the time
//! of the last `update`. Since the task only calls `update` at the deadline
//! `check` names (the RTO while a segment is in flight), an ACK that beats
//! the RTO is measured against the send time: RTT 0. The smoothed RTT
//! collapses, the RTO falls to its 30 ms floor, and on any path slower than
//! that every sparse message is retransmitted once for nothing. kcp-go reads
//! the clock inside `Input` for this reason.
//!
//! Run it with `cargo test --test rtt_sparse_sender -- --ignored`.

use std::time::Duration;

use kcp_rs::net::{KcpListener, KcpStream, SessionConfig};
use kcp_rs::sim::relay::{RelayConfig, UdpRelay};
use kcp_rs::sim::LinkConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{sleep, timeout};

#[tokio::test]
#[ignore = "known bug: the session clock is stale at input, so sparse senders measure RTT ~0"]
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
