//! A game server: accepts many clients and broadcasts the world's state to
//! all of them 30 times a second, each update a frame of
//! `Framed<KcpStream, LengthDelimitedCodec>` carrying a sequence number and
//! the server's clock. See `examples/game/proto.rs` for the format.
//!
//! ```text
//! # everything in one process for a few seconds: server, lossy relay, 8 clients
//! cargo run --release --example game_server -- --demo
//! # the same with FEC, 2 data + 1 parity shards per group
//! cargo run --release --features fec --example game_server -- --demo --fec 2,1
//! # or separately
//! cargo run --release --example game_server -- --listen 127.0.0.1:4100
//! cargo run --release --example game_client -- --connect 127.0.0.1:4100
//! ```

use std::io;
use std::process::ExitCode;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use kcp_rs::net::KcpListener;
use kcp_rs::sim::relay::{RelayConfig, UdpRelay};
use kcp_rs::sim::LinkConfig;

// Shared with game_client.rs.
#[allow(dead_code)]
#[path = "game/proto.rs"]
mod game;

use game::ServerStats;

#[derive(Parser, Debug)]
#[command(about = "KCP game server: state broadcast at --rate Hz to every client")]
struct Args {
    /// UDP address to accept clients on.
    #[arg(long, default_value = "127.0.0.1:4100")]
    listen: String,
    /// Updates per second.
    #[arg(long, default_value_t = 30)]
    rate: u32,
    /// Run a server, a lossy relay and --clients clients in this process
    /// for --seconds, then print what each client saw.
    #[arg(long)]
    demo: bool,
    /// Demo: clients.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Demo: seconds the clients play.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Demo: probability that the relay loses a datagram, each way.
    #[arg(long, default_value = "0.05", value_parser = game::parse_probability)]
    loss: f64,
    /// Demo: one-way delay of the relay, ms (plus up to --jitter more).
    #[arg(long, default_value_t = 15)]
    delay: u32,
    /// Demo: extra random one-way delay, 0..=JITTER ms.
    #[arg(long, default_value_t = 10)]
    jitter: u32,
    /// Demo: an update older than this on arrival counts as late, ms.
    #[arg(long, default_value_t = 100)]
    late_ms: u64,
    /// Forward error correction, K data + M parity shards per group; clients
    /// must use the same. Needs the `fec` feature (`--features fec`).
    #[arg(long, value_name = "K,M", value_parser = game::parse_fec)]
    fec: Option<(usize, usize)>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let r = if args.demo {
        demo(&args).await
    } else {
        serve(&args).await
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("game_server: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Serves until Ctrl-C, with a status line every second.
async fn serve(args: &Args) -> io::Result<()> {
    let listener = KcpListener::bind(&args.listen, game::session_config(args.fec)?).await?;
    println!(
        "game server on {} at {} updates/s, {}; Ctrl-C to stop",
        listener.local_addr()?,
        args.rate,
        fec_label(args.fec),
    );
    let stats = Arc::new(ServerStats::default());
    let mut server = tokio::spawn(game::serve(listener, args.rate, stats.clone()));
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tokio::select! {
            r = &mut server => return r.map_err(io::Error::other)?,
            _ = tokio::signal::ctrl_c() => {
                server.abort();
                println!("stopping: {}", status(&stats));
                return Ok(());
            }
            _ = tick.tick() => println!("{}", status(&stats)),
        }
    }
}

fn fec_label(fec: Option<(usize, usize)>) -> String {
    match fec {
        Some((k, m)) => format!("FEC {k}+{m}"),
        None => "no FEC".into(),
    }
}

fn status(stats: &ServerStats) -> String {
    format!(
        "tick {:>6}  clients {:>3} (joined {})  updates sent {}  skipped {}  retransmitted segments {}",
        stats.ticks.load(Relaxed),
        stats.clients.load(Relaxed),
        stats.joined.load(Relaxed),
        stats.sent.load(Relaxed),
        stats.skipped.load(Relaxed),
        stats.retransmits.load(Relaxed),
    )
}

/// Server, relay and clients in one process.
async fn demo(args: &Args) -> io::Result<()> {
    let config = game::session_config(args.fec)?;
    let listener = KcpListener::bind("127.0.0.1:0", config.clone()).await?;
    let server_addr = listener.local_addr()?;
    let link = LinkConfig {
        loss: args.loss,
        duplicate: 0.0,
        delay: args.delay,
        jitter: args.jitter,
        fifo: false,
    };
    let relay = UdpRelay::start(server_addr, RelayConfig::symmetric(link, 3)).await?;
    println!(
        "game server on {server_addr} at {} updates/s, {}; {} clients through a relay with {:.0}% loss, \
         {}..{} ms one way, for {} s",
        args.rate,
        fec_label(args.fec),
        args.clients,
        args.loss * 100.0,
        args.delay,
        args.delay + args.jitter,
        args.seconds
    );
    let stats = Arc::new(ServerStats::default());
    let server = tokio::spawn(game::serve(listener, args.rate, stats.clone()));
    let play = Duration::from_secs(args.seconds);
    let late = Duration::from_millis(args.late_ms);
    let clients: Vec<_> = (0..args.clients)
        .map(|i| {
            let (addr, config) = (relay.addr(), config.clone());
            tokio::spawn(async move {
                let name = format!("player{i}");
                game::play(addr, config, &name, play, late, false).await
            })
        })
        .collect();
    let mut failed = 0;
    let mut all = Vec::new();
    let mut fec_recovered = 0;
    for (i, c) in clients.into_iter().enumerate() {
        // `play` returns after `play`; the margin covers a stuck session.
        match tokio::time::timeout(play + Duration::from_secs(10), c).await {
            Ok(Ok(Ok(r))) => {
                println!("client {i}: {}", r.line());
                all.extend_from_slice(&r.latencies_ms);
                fec_recovered += r.fec_recovered;
            }
            Ok(Ok(Err(e))) => {
                failed += 1;
                println!("client {i}: failed: {e}");
            }
            Ok(Err(e)) => {
                failed += 1;
                println!("client {i}: task failed: {e}");
            }
            Err(_) => {
                failed += 1;
                println!("client {i}: did not finish");
            }
        }
    }
    server.abort();
    all.sort_by(f64::total_cmp);
    let overall = game::ClientReport {
        latencies_ms: all,
        ..Default::default()
    };
    let rs = relay.stats();
    println!(
        "all clients: latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms over {} updates, \
         {fec_recovered} datagrams rebuilt from FEC parity",
        overall.latency(0.5),
        overall.latency(0.99),
        overall.latency(1.0),
        overall.latencies_ms.len()
    );
    println!("server: {}", status(&stats));
    println!(
        "relay: {} datagrams, {} lost",
        rs.to_server.sent + rs.to_client.sent,
        rs.to_server.dropped + rs.to_client.dropped
    );
    if failed > 0 {
        return Err(io::Error::other(format!("{failed} clients failed")));
    }
    Ok(())
}
