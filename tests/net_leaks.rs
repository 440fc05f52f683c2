//! No leaks: after 1 000 connect / exchange / close cycles every session is
//! gone on both sides: the listener counts none active, and the clients'
//! sockets (and their tasks) are closed.
#![cfg(feature = "tokio")]

use std::time::Duration;

use kcp_rs::net::{KcpListener, KcpStream, SessionConfig};
use tokio::time::{sleep, timeout};

#[cfg(target_os = "linux")]
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

#[cfg(not(target_os = "linux"))]
fn open_fds() -> usize {
    0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_cycles_leave_nothing_behind() {
    const CYCLES: usize = 1000;
    const PARALLEL: usize = 20;
    timeout(Duration::from_secs(120), async {
        let listener = KcpListener::bind("127.0.0.1:0", SessionConfig::default())
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let fds_before = open_fds();
        let server = tokio::spawn(async move {
            for _ in 0..CYCLES {
                let (mut s, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    let n = s.recv_msg(&mut buf).await.unwrap();
                    s.send_msg(&buf[..n]).await.unwrap();
                    // Dropped here: the session goes once the echo is acked.
                });
            }
            listener
        });
        let mut workers = Vec::new();
        for w in 0..PARALLEL {
            workers.push(tokio::spawn(async move {
                for i in (w..CYCLES).step_by(PARALLEL) {
                    let mut c = KcpStream::connect(addr, SessionConfig::default())
                        .await
                        .unwrap();
                    let msg = (i as u32).to_le_bytes();
                    c.send_msg(&msg).await.unwrap();
                    let mut buf = [0u8; 64];
                    let n = c.recv_msg(&mut buf).await.unwrap();
                    assert_eq!(&buf[..n], &msg);
                }
            }));
        }
        for w in workers {
            w.await.unwrap();
        }
        let listener = server.await.unwrap();
        loop {
            let st = listener.stats();
            if st.sessions_active == 0 && open_fds() <= fds_before {
                assert_eq!(st.sessions_opened, CYCLES as u64, "{st:?}");
                assert_eq!(st.sessions_accepted, CYCLES as u64, "{st:?}");
                assert_eq!(st.sessions_closed, CYCLES as u64, "{st:?}");
                assert_eq!(st.timed_out, 0, "{st:?}");
                break;
            }
            sleep(Duration::from_millis(20)).await;
        }
        // The listener's own socket goes with it.
        drop(listener);
        loop {
            if open_fds() < fds_before || cfg!(not(target_os = "linux")) {
                break;
            }
            sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
}
