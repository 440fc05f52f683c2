//! The session layer with FEC (`SessionConfig::fec`): echoes through a
//! seeded lossy relay arrive whole, once and in order, with losses rebuilt
//! from parity; a FEC end and a plain end do not talk.
#![cfg(all(feature = "tokio", feature = "fec"))]

use std::io::ErrorKind;
use std::time::Duration;

use kcp_rs::fec::FecConfig;
use kcp_rs::net::{KcpListener, KcpStream, SessionConfig};
use kcp_rs::sim::relay::{RelayConfig, UdpRelay};
use kcp_rs::sim::LinkConfig;
use tokio::io::AsyncWriteExt;
use tokio::time::timeout;

#[path = "support/relay_echo.rs"]
mod relay_echo;
use relay_echo::echo_through_relay;

fn fec_config(fec: FecConfig) -> SessionConfig {
    SessionConfig {
        fec: Some(fec),
        ..SessionConfig::default()
    }
}

/// Echoes `bytes` through a relay losing `loss` of the datagrams both ways
/// and checks that both ends rebuilt losses from parity and count them.
async fn echo_through(loss: f64, bytes: usize, seed: u64, fec: FecConfig) {
    let data: Vec<u8> = (0..bytes).map(|i| (i * 13 % 251) as u8).collect();
    let relay = RelayConfig::symmetric(LinkConfig::lossy(loss), seed);
    let echo = echo_through_relay(fec_config(fec), relay, &data).await;
    let (cs, ss, rs) = (echo.client, echo.server, echo.relay);
    let ls = echo.listener.stats();
    eprintln!(
        "loss {loss} FEC {}+{}: relay dropped {}/{} up, {}/{} down; client: recovered {} parity sent {} received {} dropped {} retransmits {}; \
         server: recovered {} parity sent {} received {} dropped {} retransmits {}; listener recovered {}",
        fec.data_shards,
        fec.parity_shards,
        rs.to_server.dropped,
        rs.to_server.sent,
        rs.to_client.dropped,
        rs.to_client.sent,
        cs.fec_recovered,
        cs.fec_parity_sent,
        cs.fec_parity_received,
        cs.fec_dropped,
        cs.kcp.retransmits,
        ss.fec_recovered,
        ss.fec_parity_sent,
        ss.fec_parity_received,
        ss.fec_dropped,
        ss.kcp.retransmits,
        ls.fec_recovered,
    );
    assert!(rs.to_server.dropped > 0 && rs.to_client.dropped > 0);
    // Both ends rebuilt lost datagrams from parity, and say so.
    assert!(cs.fec_recovered > 0, "client recovered nothing: {cs:?}");
    assert!(ss.fec_recovered > 0, "server recovered nothing: {ss:?}");
    assert!(cs.fec_parity_sent > 0 && ss.fec_parity_received > 0);
    assert!(ss.fec_parity_sent > 0 && cs.fec_parity_received > 0);
    // The listener's totals include the server session's counts.
    assert!(ls.fec_recovered >= ss.fec_recovered);
    assert!(ls.fec_parity_sent >= ss.fec_parity_sent);
    assert!(ls.fec_parity_received >= ss.fec_parity_received);
    // The relay duplicates 1%: the decoder drops copies it already has.
    assert!(cs.fec_dropped + ss.fec_dropped > 0);
}

#[tokio::test]
async fn echo_at_10_percent_loss_with_fec_10_3() {
    let fec = FecConfig::new(10, 3).unwrap();
    timeout(
        Duration::from_secs(60),
        echo_through(0.10, 1 << 20, 11, fec),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn echo_at_20_percent_loss_with_fec_4_2() {
    timeout(
        Duration::from_secs(90),
        echo_through(0.20, 512 << 10, 21, FecConfig::balanced()),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn messages_keep_their_boundaries_with_fec() {
    timeout(Duration::from_secs(60), async {
        let cfg = fec_config(FecConfig::low_latency());
        let listener = KcpListener::bind("127.0.0.1:0", cfg.clone()).await.unwrap();
        let relay = UdpRelay::start(
            listener.local_addr().unwrap(),
            RelayConfig::symmetric(LinkConfig::lossy(0.15), 3),
        )
        .await
        .unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 1 << 16];
            for i in 0..300u32 {
                let n = s.recv_msg(&mut buf).await.unwrap();
                assert_eq!(n, 1 + (i as usize * 211) % 6000, "message {i}");
                assert!(buf[..n].iter().all(|&b| b == i as u8));
            }
            s.stats()
        });
        let mut c = KcpStream::connect(relay.addr(), cfg).await.unwrap();
        for i in 0..300u32 {
            c.send_msg(&vec![i as u8; 1 + (i as usize * 211) % 6000])
                .await
                .unwrap();
        }
        let ss = server.await.unwrap();
        assert!(ss.fec_recovered > 0, "{ss:?}");
    })
    .await
    .unwrap();
}

/// The MTU stays the size on the wire: FEC takes its 8 bytes from KCP.
#[tokio::test]
async fn fec_packets_fit_the_configured_mtu() {
    timeout(Duration::from_secs(20), async {
        let cfg = fec_config(FecConfig::balanced());
        assert_eq!(cfg.core_config().mtu, cfg.kcp.mtu - 8);
        let peer = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut c = KcpStream::connect(peer.local_addr().unwrap(), cfg.clone())
            .await
            .unwrap();
        c.write_all(&vec![7u8; 20_000]).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let mut seen = 0;
        while seen < 10 {
            let n = peer.recv(&mut buf).await.unwrap();
            assert!(n <= cfg.kcp.mtu as usize, "{n} > mtu");
            // A kcp-go FEC header: type 0xF1 (data) or 0xF2 (parity).
            assert!(buf[4] == 0xF1 || buf[4] == 0xF2, "{:?}", &buf[..8]);
            seen += 1;
        }
    })
    .await
    .unwrap();
}

/// A lone message on a quiet session: its group is closed after a fraction
/// of the RTO (nine marked empty packets, then parity) with early close on,
/// and left open, as kcp-go does, with it off.
#[tokio::test]
async fn a_waiting_group_is_closed_only_with_early_close() {
    timeout(Duration::from_secs(20), async {
        for early_close in [true, false] {
            let fec = FecConfig {
                early_close,
                ..FecConfig::bandwidth_efficient() // 10 + 2
            };
            let cfg = fec_config(fec);
            let peer = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let mut c = KcpStream::connect(peer.local_addr().unwrap(), cfg)
                .await
                .unwrap();
            c.send_msg(b"hello").await.unwrap();
            let mut seen = Vec::new();
            let mut buf = [0u8; 2048];
            // Nothing acknowledges: KCP resends at its RTO, which is longer
            // than the group's wait, and a few times in a second.
            let window = tokio::time::sleep(Duration::from_millis(1000));
            tokio::pin!(window);
            while seen.len() < 12 {
                tokio::select! {
                    r = peer.recv(&mut buf) => seen.push(buf[..r.unwrap()].to_vec()),
                    _ = &mut window => break,
                }
            }
            let parity = seen.iter().filter(|p| p[4] == 0xF2).count();
            if early_close {
                assert_eq!(seen.len(), 12, "{seen:?}");
                // The message, and a resend if the machine is slow, then
                // empty packets naming the first empty position.
                let data = seen.iter().take_while(|p| p.len() > 24).count();
                assert!((1..10).contains(&data), "{data}");
                for (i, p) in seen.iter().enumerate() {
                    assert_eq!(p[..4], (i as u32).to_le_bytes());
                    if (data..10).contains(&i) {
                        assert_eq!(p.len(), 24);
                        assert_eq!(p[4..10], [0xF1, 0, 2, 0, 0xE5, data as u8]);
                    }
                }
                assert_eq!(parity, 2);
            } else {
                assert!(!seen.is_empty() && seen.len() < 10, "{}", seen.len());
                assert_eq!(parity, 0);
                assert!(seen.iter().all(|p| p.len() > 24), "an empty packet");
            }
        }
    })
    .await
    .unwrap();
}

/// FEC at one end only: nothing gets through, and the client times out.
#[tokio::test]
async fn fec_at_one_end_only_times_out() {
    timeout(Duration::from_secs(20), async {
        let quick = |fec: Option<FecConfig>| SessionConfig {
            fec,
            idle_timeout: Duration::from_millis(1500),
            keep_alive: Some(Duration::from_millis(300)),
            ..SessionConfig::default()
        };
        for (server, client) in [
            (Some(FecConfig::balanced()), None),
            (None, Some(FecConfig::balanced())),
        ] {
            let listener = KcpListener::bind("127.0.0.1:0", quick(server))
                .await
                .unwrap();
            let mut c = KcpStream::connect(listener.local_addr().unwrap(), quick(client))
                .await
                .unwrap();
            c.send_msg(b"hello").await.unwrap();
            let mut buf = [0u8; 8];
            let e = c.recv_msg(&mut buf).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
            let st = listener.stats();
            assert_eq!(st.sessions_opened, 0, "{st:?}");
            assert!(st.dropped_unknown + st.dropped_invalid > 0, "{st:?}");
        }
    })
    .await
    .unwrap();
}

#[test]
fn fec_settings_are_validated() {
    let mut cfg = fec_config(FecConfig::balanced());
    assert!(cfg.validate().is_ok());
    cfg.fec = Some(FecConfig {
        max_packet: 1000,
        ..FecConfig::balanced()
    });
    assert_eq!(cfg.validate().unwrap_err().kind(), ErrorKind::InvalidInput);
    cfg.fec = Some(FecConfig {
        parity_shards: 0,
        ..FecConfig::balanced()
    });
    assert_eq!(cfg.validate().unwrap_err().kind(), ErrorKind::InvalidInput);
}
