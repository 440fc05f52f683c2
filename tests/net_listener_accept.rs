//! Accepting sessions: the plain core as a client, limits, garbage, half-open
//! expiry, the `incoming` stream.
#![cfg(feature = "tokio")]

use std::time::Duration;

use futures::StreamExt;
use kcp_rs::codec::Header;
use kcp_rs::constants::{CMD_ACK, CMD_PUSH};
use kcp_rs::net::{KcpListener, KcpStream, SessionConfig};
use kcp_rs::sequence::{Seq, Timestamp};
use kcp_rs::{Kcp, KcpConfig, KcpResult};
use tokio::net::UdpSocket;
use tokio::time::{sleep, timeout};

fn segment(conv: u32, cmd: u8, sn: u32, una: u32, data: &[u8]) -> Vec<u8> {
    let h = Header {
        conv,
        cmd,
        frg: 0,
        wnd: 128,
        ts: Timestamp::new(0),
        sn: Seq::new(sn),
        una: Seq::new(una),
        len: data.len() as u32,
    };
    let mut b = vec![0; Header::LEN];
    h.emit(&mut b);
    b.extend_from_slice(data);
    b
}

/// Waits until `f` holds, polling.
async fn eventually(mut f: impl FnMut() -> bool) {
    while !f() {
        sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_plain_core_client_over_a_raw_socket_is_accepted() {
    timeout(Duration::from_secs(20), async {
        let listener = KcpListener::bind("127.0.0.1:0", SessionConfig::default())
            .await
            .unwrap();
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        sock.connect(listener.local_addr().unwrap()).await.unwrap();
        // The sans-IO core, as an ikcp user would drive it: ikcp's default
        // configuration, conv 0x11223344, update every 10 ms.
        let out = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Vec<u8>>::new()));
        let o = out.clone();
        let mut kcp = Kcp::with_config(
            0x1122_3344,
            move |d: &[u8]| -> KcpResult<usize> {
                o.lock().unwrap().push(d.to_vec());
                Ok(d.len())
            },
            KcpConfig::default(),
        )
        .unwrap();
        kcp.send(b"hello from ikcp").unwrap();
        let client = async {
            let start = std::time::Instant::now();
            let mut buf = [0u8; 2048];
            let mut msg = [0u8; 64];
            loop {
                kcp.update(start.elapsed().as_millis() as u32);
                let pending: Vec<Vec<u8>> = out.lock().unwrap().drain(..).collect();
                for d in pending {
                    sock.send(&d).await.unwrap();
                }
                while let Ok(n) = sock.try_recv(&mut buf) {
                    kcp.input(&buf[..n]).unwrap();
                }
                if let Ok(n) = kcp.recv(&mut msg) {
                    return msg[..n].to_vec();
                }
                sleep(Duration::from_millis(10)).await;
            }
        };
        let server = async {
            let (mut s, peer) = listener.accept().await.unwrap();
            assert_eq!(s.conv(), 0x1122_3344);
            assert_eq!(peer, sock.local_addr().unwrap());
            let mut buf = [0u8; 64];
            let n = s.recv_msg(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], b"hello from ikcp");
            s.send_msg(b"hello from kcp-rs").await.unwrap();
            s
        };
        let (reply, _s) = tokio::join!(client, server);
        assert_eq!(reply, b"hello from kcp-rs");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn garbage_creates_no_session() {
    timeout(Duration::from_secs(20), async {
        let listener = KcpListener::bind("127.0.0.1:0", SessionConfig::default())
            .await
            .unwrap();
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        sock.connect(listener.local_addr().unwrap()).await.unwrap();
        let garbage: Vec<Vec<u8>> = vec![
            vec![],
            vec![1, 2, 3],
            vec![0xAB; 23],
            vec![0xFF; 200],                             // unknown command
            segment(7, CMD_ACK, 0, 0, b""),              // an ACK for nothing
            segment(7, CMD_PUSH, 500, 0, b"mid-stream"), // beyond the first window
            segment(7, CMD_PUSH, 0, 9, b"has received"), // una past the start
            {
                let mut d = segment(7, CMD_PUSH, 0, 0, b"x");
                d.truncate(d.len() - 1); // len runs past the end
                d
            },
        ];
        for g in &garbage {
            sock.send(g).await.unwrap();
        }
        eventually(|| listener.stats().datagrams_in == garbage.len() as u64).await;
        let st = listener.stats();
        assert_eq!(st.sessions_opened, 0, "{st:?}");
        assert_eq!(st.sessions_active, 0);
        assert_eq!(
            st.dropped_invalid + st.dropped_unknown,
            garbage.len() as u64
        );
        assert_eq!(st.dropped_invalid, 3, "{st:?}");
        assert_eq!(st.datagrams_out, 0, "garbage must not be answered");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn half_open_sessions_expire_unseen() {
    timeout(Duration::from_secs(20), async {
        let cfg = SessionConfig {
            half_open_timeout: Duration::from_millis(300),
            ..SessionConfig::default()
        };
        let mut listener = KcpListener::bind("127.0.0.1:0", cfg).await.unwrap();
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        sock.connect(listener.local_addr().unwrap()).await.unwrap();
        // A plausible first segment from a peer that never answers (or a
        // spoofed source).
        sock.send(&segment(42, CMD_PUSH, 0, 0, b"hi"))
            .await
            .unwrap();
        eventually(|| listener.stats().sessions_opened == 1).await;
        let mut buf = [0u8; 1500];
        let n = sock.recv(&mut buf).await.unwrap();
        assert!(
            n >= Header::LEN,
            "the server answers with an ACK and a probe"
        );
        eventually(|| listener.stats().half_open_expired == 1).await;
        let st = listener.stats();
        assert_eq!((st.sessions_active, st.sessions_accepted), (0, 0), "{st:?}");
        // Nothing was handed to accept.
        let waker = futures::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        assert!(listener.poll_accept(&mut cx).is_pending());
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn sessions_beyond_the_limits_are_refused() {
    timeout(Duration::from_secs(20), async {
        let cfg = SessionConfig {
            max_sessions: 3,
            idle_timeout: Duration::from_secs(2),
            ..SessionConfig::default()
        };
        let mut listener = KcpListener::bind("127.0.0.1:0", cfg.clone()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut clients = Vec::new();
        for i in 0..5u8 {
            let mut c = KcpStream::connect(addr, cfg.clone()).await.unwrap();
            c.send_msg(&[i]).await.unwrap();
            clients.push(c);
        }
        let mut accepted = Vec::new();
        let mut incoming = listener.incoming();
        for _ in 0..3 {
            accepted.push(incoming.next().await.unwrap().unwrap());
        }
        // The other two keep retransmitting into the limit and are never
        // accepted.
        let more = timeout(Duration::from_millis(500), incoming.next()).await;
        assert!(more.is_err(), "a fourth session was accepted");
        let st = listener.stats();
        assert_eq!(st.sessions_opened, 3, "{st:?}");
        assert!(st.dropped_over_limit > 0, "{st:?}");
        // The refused clients find out by their idle timeout.
        let mut timed_out = 0;
        for mut c in clients {
            let mut buf = [0u8; 8];
            let r = timeout(Duration::from_secs(5), c.recv_msg(&mut buf)).await;
            if let Ok(Err(e)) = r {
                assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
                timed_out += 1;
            }
        }
        assert_eq!(timed_out, 5, "nobody writes back, so all time out");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn per_address_limit() {
    timeout(Duration::from_secs(20), async {
        let cfg = SessionConfig {
            max_sessions_per_ip: 2,
            ..SessionConfig::default()
        };
        let listener = KcpListener::bind("127.0.0.1:0", cfg.clone()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut clients = Vec::new();
        for _ in 0..4 {
            let mut c = KcpStream::connect(addr, cfg.clone()).await.unwrap();
            c.send_msg(b"x").await.unwrap();
            clients.push(c);
        }
        let _a = listener.accept().await.unwrap();
        let _b = listener.accept().await.unwrap();
        eventually(|| listener.stats().dropped_over_limit > 0).await;
        assert_eq!(listener.stats().sessions_opened, 2);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn concurrent_accepts_each_get_a_session() {
    timeout(Duration::from_secs(20), async {
        let listener = std::sync::Arc::new(
            KcpListener::bind("127.0.0.1:0", SessionConfig::default())
                .await
                .unwrap(),
        );
        let addr = listener.local_addr().unwrap();
        let mut acceptors = Vec::new();
        for _ in 0..4 {
            let l = listener.clone();
            acceptors.push(tokio::spawn(
                async move { l.accept().await.unwrap().0.conv() },
            ));
        }
        let mut clients = Vec::new();
        for _ in 0..4 {
            let mut c = KcpStream::connect(addr, SessionConfig::default())
                .await
                .unwrap();
            c.send_msg(b"x").await.unwrap();
            clients.push(c);
        }
        let mut convs: Vec<u32> = Vec::new();
        for a in acceptors {
            convs.push(a.await.unwrap());
        }
        convs.sort();
        let mut want: Vec<u32> = clients.iter().map(|c| c.conv()).collect();
        want.sort();
        assert_eq!(convs, want);
    })
    .await
    .unwrap();
}
