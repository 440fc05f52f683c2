//! Through a seeded lossy relay on loopback: every byte arrives once, in
//! order, at 10% and 30% loss (with jitter, reordering and duplicates).
//!
//! With the default configuration: the listener's sessions must also leave
//! half-open within the default `half_open_timeout` at 30% loss. They once
//! did not in about 1 run in 80 under load (the client had shut the
//! unread half-open window and only its answers to the listener's probes,
//! one in three of which got through, could confirm the session; see
//! `net_lost_probes::a_peer_whose_answers_are_lost_is_confirmed_by_its_window_probes`),
//! and the test then gave the listener 20 s.
#![cfg(feature = "tokio")]

use std::time::Duration;

use kcp_rs::net::{KcpListener, KcpStream, SessionConfig};
use kcp_rs::sim::relay::{RelayConfig, UdpRelay};
use kcp_rs::sim::LinkConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

#[path = "support/relay_echo.rs"]
mod relay_echo;
use relay_echo::echo_through_relay;

async fn transfer_through(loss: f64, bytes: usize, seed: u64) {
    let data: Vec<u8> = (0..bytes).map(|i| (i * 7 % 253) as u8).collect();
    let relay = RelayConfig::symmetric(LinkConfig::lossy(loss), seed);
    let echo = echo_through_relay(SessionConfig::default(), relay, &data).await;
    let (st, server_stats, rs) = (echo.client, echo.server, echo.relay);
    eprintln!(
        "loss {loss}: relay dropped {}/{} up, {}/{} down, {} duplicated; client retransmits {} fast {}, server retransmits {} fast {}",
        rs.to_server.dropped,
        rs.to_server.sent,
        rs.to_client.dropped,
        rs.to_client.sent,
        rs.to_server.duplicated + rs.to_client.duplicated,
        st.kcp.retransmits,
        st.kcp.fast_retransmits,
        server_stats.kcp.retransmits,
        server_stats.kcp.fast_retransmits,
    );
    assert!(rs.to_server.dropped > 0 && rs.to_client.dropped > 0);
    assert!(st.kcp.retransmits + st.kcp.fast_retransmits > 0);
    // Duplicates reached KCP and were recognised, not delivered twice.
    assert!(st.kcp.duplicate_segments + server_stats.kcp.duplicate_segments > 0);
}

#[tokio::test]
async fn every_byte_once_in_order_at_10_percent_loss() {
    timeout(Duration::from_secs(60), transfer_through(0.10, 1 << 20, 10))
        .await
        .unwrap();
}

#[tokio::test]
async fn every_byte_once_in_order_at_30_percent_loss() {
    timeout(
        Duration::from_secs(90),
        transfer_through(0.30, 256 << 10, 30),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn messages_survive_loss_whole_and_in_order() {
    timeout(Duration::from_secs(60), async {
        let cfg = SessionConfig::default();
        let listener = KcpListener::bind("127.0.0.1:0", cfg.clone()).await.unwrap();
        let relay = UdpRelay::start(
            listener.local_addr().unwrap(),
            RelayConfig::symmetric(LinkConfig::lossy(0.2), 5),
        )
        .await
        .unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 1 << 16];
            for i in 0..200u32 {
                let n = s.recv_msg(&mut buf).await.unwrap();
                assert_eq!(n, (i as usize * 97) % 5000, "message {i}");
                assert!(buf[..n].iter().all(|&b| b == i as u8));
            }
        });
        let mut c = KcpStream::connect(relay.addr(), cfg).await.unwrap();
        for i in 0..200u32 {
            c.send_msg(&vec![i as u8; (i as usize * 97) % 5000])
                .await
                .unwrap();
        }
        server.await.unwrap();
    })
    .await
    .unwrap();
}

/// Many connections opened at once through 30% loss each way, each client
/// writing 256 KiB at once, as `every_byte_once_in_order_at_30_percent_loss`
/// does: with the default `half_open_timeout`, every one must be accepted
/// (none may expire half-open). Prints how long the listener took to
/// accept them. `KCP_OPENS` sets the number of connections (default 240,
/// 12 at a time) and `KCP_OPEN_BYTES` what each client writes after its
/// 8-byte id (default 256 KiB; a few bytes, which leave the listener's
/// window open, play a client that sends a request and waits); run with
/// `--release --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: hundreds of connections, about a minute"]
async fn opens_at_30_percent_loss_are_all_accepted() {
    use std::sync::{Arc, Mutex};
    use std::time::Instant;
    const AT_ONCE: usize = 12;
    let opens: usize = std::env::var("KCP_OPENS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(240);
    let bytes: usize = std::env::var("KCP_OPEN_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256 << 10);
    let cfg = SessionConfig::default();
    let listener = KcpListener::bind("127.0.0.1:0", cfg.clone()).await.unwrap();
    let server = listener.local_addr().unwrap();
    let started: Arc<Mutex<Vec<Option<Instant>>>> = Arc::new(Mutex::new(vec![None; opens]));
    let waits: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let (st, w) = (started.clone(), waits.clone());
    let acceptor = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let accepted = Instant::now();
            let (st, w) = (st.clone(), w.clone());
            tokio::spawn(async move {
                let mut id = [0u8; 8];
                if s.read_exact(&mut id).await.is_err() {
                    return;
                }
                let i = u64::from_le_bytes(id) as usize;
                let t0 = st.lock().unwrap()[i].expect("started");
                w.lock()
                    .unwrap()
                    .push(accepted.saturating_duration_since(t0));
                // Keep reading, as an application would, until the client
                // goes.
                let mut sink = vec![0u8; 64 << 10];
                while matches!(s.read(&mut sink).await, Ok(n) if n > 0) {}
            });
        }
    });
    let mut expired_total = 0;
    let mut round = 0;
    while round * AT_ONCE < opens {
        let relay = UdpRelay::start(
            server,
            RelayConfig::symmetric(LinkConfig::lossy(0.30), 1000 + round as u64),
        )
        .await
        .unwrap();
        let before = waits.lock().unwrap().len();
        let ids: Vec<usize> = (round * AT_ONCE..((round + 1) * AT_ONCE).min(opens)).collect();
        let mut clients = Vec::new();
        for &i in &ids {
            let (addr, cfg, st) = (relay.addr(), cfg.clone(), started.clone());
            clients.push(tokio::spawn(async move {
                let mut c = KcpStream::connect(addr, cfg).await.unwrap();
                st.lock().unwrap()[i] = Some(Instant::now());
                // The id in a message of its own, so that the server
                // reads it as soon as the first segment is in.
                let _ = c.write_all(&(i as u64).to_le_bytes()).await;
                let _ = c.write_all(&vec![0u8; bytes]).await;
                std::future::pending::<()>().await;
            }));
        }
        let until = Instant::now() + Duration::from_secs(8);
        while waits.lock().unwrap().len() < before + ids.len() && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let got = waits.lock().unwrap().len() - before;
        expired_total += ids.len() - got;
        for c in clients {
            c.abort();
        }
        round += 1;
    }
    acceptor.abort();
    let mut w = waits.lock().unwrap().clone();
    w.sort();
    let pct = |p: f64| w[((w.len() as f64 * p) as usize).min(w.len() - 1)];
    eprintln!(
        "{opens} opens at 30% loss, {bytes} bytes each: {} accepted, {expired_total} not within 8 s; \
         accept after p50 {:?}, p90 {:?}, p99 {:?}, max {:?}; over 1 s: {}, over 2 s: {}, over 3 s: {}",
        w.len(),
        pct(0.5),
        pct(0.9),
        pct(0.99),
        w.last().copied().unwrap_or_default(),
        w.iter().filter(|d| **d > Duration::from_secs(1)).count(),
        w.iter().filter(|d| **d > Duration::from_secs(2)).count(),
        w.iter().filter(|d| **d > Duration::from_secs(3)).count(),
    );
    assert_eq!(
        expired_total, 0,
        "connections not accepted: {expired_total} of {opens}"
    );
}
