//! A KCP echo server: every byte a client sends comes back.
//!
//! ```text
//! cargo run --example echo_server -- [ADDR] [WINDOW]
//! ```
//! ADDR defaults to 127.0.0.1:4000; WINDOW (segments, both directions)
//! defaults to the preset's 128. Set `RUST_LOG`-style filtering through
//! your own subscriber if you want the `tracing` events.

use kcp_rs::net::{KcpListener, SessionConfig};
use kcp_rs::KcpConfig;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:4000".into());
    let mut config = SessionConfig::default();
    if let Some(w) = args.next().and_then(|w| w.parse().ok()) {
        config.kcp = KcpConfig {
            snd_wnd: w,
            rcv_wnd: w,
            ..config.kcp
        };
    }
    let listener = KcpListener::bind(&addr, config).await?;
    println!("echo server on {}", listener.local_addr()?);
    loop {
        let (mut stream, peer) = listener.accept().await?;
        println!("session {:#010x} from {peer}", stream.conv());
        tokio::spawn(async move {
            let (mut r, mut w) = stream.split();
            // KCP has no FIN: the copy ends when the peer goes quiet for
            // `idle_timeout` (an error), which is how this session ends.
            let n = tokio::io::copy(&mut r, &mut w).await;
            println!(
                "session from {peer} ended: {n:?}; stats {:?}",
                stream.stats()
            );
        });
    }
}
