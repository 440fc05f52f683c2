//! Request/response over loopback: with `ack_nodelay` and `flush_on_write`
//! (the defaults) a reply written at once carries the ACK of the request, so
//! a ping-pong round trip costs about two datagrams, not four (a bare ACK
//! each way, then the data). Also: data nobody answers is still
//! acknowledged at once, and data answered late is acknowledged before the
//! peer's RTO.
#![cfg(feature = "tokio")]

use std::time::Duration;

use kcp_rs::net::{KcpListener, KcpStream, SessionConfig};
use kcp_rs::KcpConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{timeout, Instant};

const ROUNDS: u64 = 300;

fn stream_config() -> SessionConfig {
    SessionConfig {
        kcp: KcpConfig {
            stream: true,
            ..SessionConfig::default().kcp
        },
        ..SessionConfig::default()
    }
}

/// Runs `ROUNDS` 64-byte round trips against an echo task and returns the
/// datagrams the listener's socket saw (in + out) per round trip.
async fn datagrams_per_round_trip(cfg: SessionConfig) -> f64 {
    let listener = KcpListener::bind("127.0.0.1:0", cfg.clone()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut c = KcpStream::connect(addr, cfg).await.unwrap();
    c.write_all(&[0u8; 64]).await.unwrap();
    let (mut s, _) = listener.accept().await.unwrap();
    let echo = tokio::spawn(async move {
        let mut b = [0u8; 64];
        s.read_exact(&mut b).await?;
        loop {
            s.write_all(&b).await?;
            s.flush().await?;
            s.read_exact(&mut b).await?;
        }
        #[allow(unreachable_code)]
        std::io::Result::Ok(())
    });
    let mut back = [0u8; 64];
    c.read_exact(&mut back).await.unwrap();
    // Let the last ACKs of the set-up settle before counting.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let before = listener.stats();
    let mut msg = [0u8; 64];
    for i in 0..ROUNDS {
        msg[..8].copy_from_slice(&i.to_le_bytes());
        c.write_all(&msg).await.unwrap();
        c.flush().await.unwrap();
        c.read_exact(&mut back).await.unwrap();
        assert_eq!(back, msg);
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let after = listener.stats();
    echo.abort();
    let st = c.stats();
    assert_eq!(st.kcp.retransmits, 0, "loopback lost nothing: {st:?}");
    let n =
        (after.datagrams_in - before.datagrams_in) + (after.datagrams_out - before.datagrams_out);
    let per = n as f64 / ROUNDS as f64;
    eprintln!("{per:.2} datagrams per round trip");
    per
}

/// Runs the ping-pong in stream and message mode as tasks on the current
/// runtime and checks the datagrams per round trip against `most`.
async fn replies_carry_acks(most: f64) {
    for cfg in [SessionConfig::default(), stream_config()] {
        // The client is a task too (the test's own future is polled only
        // between batches of tasks on this runtime).
        let per = timeout(
            Duration::from_secs(20),
            tokio::spawn(datagrams_per_round_trip(cfg)),
        )
        .await
        .expect("ping-pong timed out")
        .unwrap();
        assert!(per <= most, "{per:.2} datagrams per round trip");
    }
}

#[tokio::test]
async fn a_reply_carries_the_ack_current_thread() {
    // Four without piggybacking: a bare ACK and the data, each way.
    replies_carry_acks(2.2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_carries_the_ack_two_workers() {
    // Whichever worker runs which task, the reply carries the ACK.
    replies_carry_acks(2.5).await;
}

/// A connected (client, server) pair with `SessionConfig::default()` but
/// KCP's `interval` tick at `interval_ms`; the client has said `first`
/// and the server read it.
async fn pair_with_interval(interval_ms: u32) -> (KcpStream, KcpStream) {
    let cfg = SessionConfig {
        kcp: KcpConfig {
            interval: interval_ms,
            ..SessionConfig::default().kcp
        },
        ..SessionConfig::default()
    };
    let listener = KcpListener::bind("127.0.0.1:0", cfg.clone()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut c = KcpStream::connect(addr, cfg).await.unwrap();
    c.write_all(b"first").await.unwrap();
    let (mut s, _) = listener.accept().await.unwrap();
    let mut b = [0u8; 5];
    s.read_exact(&mut b).await.unwrap();
    (c, s)
}

/// Writes `msg` and returns how long until the peer acknowledged it.
async fn acknowledged_after(c: &mut KcpStream, msg: &[u8]) -> Duration {
    let t = Instant::now();
    c.write_all(msg).await.unwrap();
    while c.send_queue_len() > 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    t.elapsed()
}

/// A message nobody answers (the reader is not even reading) is
/// acknowledged without waiting for the `interval` tick or a
/// retransmission.
#[tokio::test]
async fn unanswered_data_is_acknowledged_at_once() {
    timeout(Duration::from_secs(20), async {
        let (mut c, s) = pair_with_interval(100).await;
        for round in 0..20 {
            // The tick is 100 ms; an ACK left for it would take that long.
            let waited = acknowledged_after(&mut c, b"one way").await;
            assert!(
                waited < Duration::from_millis(60),
                "round {round}: acknowledged after {waited:?}"
            );
        }
        assert_eq!(c.stats().kcp.retransmits, 0);
        drop(s);
    })
    .await
    .expect("timed out");
}

/// A reader that takes a request and answers only 300 ms later: the ACKs
/// held for its answer leave on their own, long before the `interval` tick
/// (200 ms here, which would send them too) and the client's RTO (about
/// the interval on loopback), so the client resends nothing.
#[tokio::test]
async fn a_late_answer_does_not_make_the_peer_resend() {
    timeout(Duration::from_secs(20), async {
        let (mut c, mut s) = pair_with_interval(200).await;
        let server = tokio::spawn(async move {
            let mut b = [0u8; 5];
            // Waiting for the request: its ACK is held for the answer.
            while s.read_exact(&mut b).await.is_ok() {
                tokio::time::sleep(Duration::from_millis(300)).await;
                if s.write_all(&b).await.is_err() {
                    break;
                }
            }
        });
        const ROUNDS: u32 = 5;
        let mut acked_in = Vec::new();
        for _ in 0..ROUNDS {
            acked_in.push(acknowledged_after(&mut c, b"again").await);
            let mut back = [0u8; 5];
            c.read_exact(&mut back).await.unwrap();
            assert_eq!(&back, b"again");
        }
        server.abort();
        let st = c.stats();
        eprintln!("acknowledged after {acked_in:?}; rto {} ms", st.rto_ms);
        // Released by the hold's bound (25 ms at most), not by the tick
        // or the answer.
        assert!(
            acked_in.iter().all(|d| *d < Duration::from_millis(80)),
            "{acked_in:?}"
        );
        // One resend is allowed for a scheduling stall on a loaded machine;
        // a hold past the RTO would make one in every round.
        assert!(
            st.kcp.retransmits <= 1,
            "{} resends in {ROUNDS} rounds",
            st.kcp.retransmits
        );
    })
    .await
    .expect("timed out");
}
