//! A KCP echo client: sends BYTES bytes to an echo server, checks that they
//! come back, and prints the throughput and the session's counters.
//!
//! ```text
//! cargo run --release --example echo_server &
//! cargo run --release --example echo_client -- [ADDR] [BYTES] [WINDOW]
//! ```
//! ADDR defaults to 127.0.0.1:4000, BYTES to 10 MB, WINDOW (segments, both
//! directions) to the preset's 128.

use std::time::Instant;

use kcp_rs::net::{KcpStream, SessionConfig};
use kcp_rs::KcpConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:4000".into());
    let bytes: usize = args
        .next()
        .and_then(|b| b.parse().ok())
        .unwrap_or(10_000_000);
    let mut config = SessionConfig::default();
    if let Some(w) = args.next().and_then(|w| w.parse().ok()) {
        config.kcp = KcpConfig {
            snd_wnd: w,
            rcv_wnd: w,
            ..config.kcp
        };
    }
    let stream = KcpStream::connect(&addr, config).await?;
    println!("session {:#010x} to {addr}", stream.conv());
    let (mut r, mut w) = stream.into_split();
    let start = Instant::now();
    let writer = tokio::spawn(async move {
        let chunk: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
        let mut sent = 0;
        while sent < bytes {
            let n = (bytes - sent).min(chunk.len());
            w.write_all(&chunk[..n]).await?;
            sent += n;
        }
        // Waits until the server has acknowledged every byte.
        w.shutdown().await?;
        Ok::<_, std::io::Error>(w)
    });
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0;
    while got < bytes {
        let n = r.read(&mut buf).await?;
        for (i, &b) in buf[..n].iter().enumerate() {
            if b != ((got + i) % (64 * 1024) % 251) as u8 {
                return Err(std::io::Error::other(format!("byte {} differs", got + i)));
            }
        }
        got += n;
    }
    let secs = start.elapsed().as_secs_f64();
    writer.await.map_err(std::io::Error::other)??;
    let st = r.stats();
    println!(
        "{bytes} bytes echoed in {secs:.2} s: {:.1} MB/s each way",
        bytes as f64 / secs / 1e6
    );
    println!(
        "rtt {} ms, rto {} ms, datagrams out {} in {}, retransmits {}, fast retransmits {}, socket drops {}",
        st.rtt_ms,
        st.rto_ms,
        st.kcp.out_datagrams,
        st.kcp.in_datagrams,
        st.kcp.retransmits,
        st.kcp.fast_retransmits,
        st.send_dropped
    );
    Ok(())
}
