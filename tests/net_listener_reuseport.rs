//! `KcpListener::bind_reuseport`: several sockets on one address, one
//! accept queue, summed stats.
#![cfg(feature = "tokio")]

use std::io::ErrorKind;
use std::time::Duration;

use kcp_rs::net::{KcpListener, KcpStream, SessionConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_spread_over_sockets_are_all_accepted_and_echoed() {
    timeout(Duration::from_secs(30), async {
        let cfg = SessionConfig::default();
        let listener = KcpListener::bind_reuseport("127.0.0.1:0", cfg.clone(), 3)
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        assert_ne!(addr.port(), 0);
        const CLIENTS: usize = 40;
        let server = tokio::spawn(async move {
            let mut tasks = Vec::new();
            for _ in 0..CLIENTS {
                let (mut s, _) = listener.accept().await.unwrap();
                tasks.push(tokio::spawn(async move {
                    let mut buf = vec![0u8; 20_000];
                    s.read_exact(&mut buf).await.unwrap();
                    s.write_all(&buf).await.unwrap();
                    s.shutdown().await.unwrap();
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
            listener
        });
        let mut clients = Vec::new();
        for i in 0..CLIENTS {
            let cfg = cfg.clone();
            clients.push(tokio::spawn(async move {
                let data = vec![i as u8; 20_000];
                let mut c = KcpStream::connect(addr, cfg).await.unwrap();
                c.write_all(&data).await.unwrap();
                let mut back = vec![0u8; data.len()];
                c.read_exact(&mut back).await.unwrap();
                assert!(back == data, "client {i}");
            }));
        }
        for c in clients {
            c.await.unwrap();
        }
        let listener = server.await.unwrap();
        let st = listener.stats();
        assert_eq!(st.sessions_opened, CLIENTS as u64, "{st:?}");
        assert_eq!(st.sessions_accepted, CLIENTS as u64, "{st:?}");
        assert_eq!(st.dropped_unknown, 0, "{st:?}");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn max_sessions_holds_across_sockets() {
    timeout(Duration::from_secs(20), async {
        let cfg = SessionConfig {
            max_sessions: 5,
            ..SessionConfig::default()
        };
        let listener = KcpListener::bind_reuseport("127.0.0.1:0", cfg.clone(), 2)
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let mut clients = Vec::new();
        for _ in 0..12 {
            let mut c = KcpStream::connect(addr, cfg.clone()).await.unwrap();
            c.send_msg(b"hi").await.unwrap();
            clients.push(c);
            // One at a time: the limit is exact when sessions do not open
            // on two sockets at the same instant.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let st = listener.stats();
        assert_eq!(st.sessions_opened, 5, "{st:?}");
        assert!(st.dropped_over_limit > 0, "{st:?}");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn zero_sockets_is_invalid_input() {
    let e = KcpListener::bind_reuseport("127.0.0.1:0", SessionConfig::default(), 0)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
}
