//! A game client: joins a `game_server`, receives its state updates for a
//! while, and prints the latency it observed (server clock to arrival:
//! meaningful on one host or with synced clocks) and missed / late updates.
//!
//! ```text
//! cargo run --release --example game_server -- --listen 127.0.0.1:4100 &
//! cargo run --release --example game_client -- --connect 127.0.0.1:4100 --seconds 5
//! ```
//!
//! With `--fec K,M` on the server, give the client the same (and build both
//! with `--features fec`).

use std::io;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

// Shared with game_server.rs, whose server half this binary does not use.
#[allow(dead_code)]
#[path = "game/proto.rs"]
mod game;

#[derive(Parser, Debug)]
#[command(about = "KCP game client: measures update latency from a game_server")]
struct Args {
    /// UDP address of the game server.
    #[arg(long, default_value = "127.0.0.1:4100")]
    connect: String,
    /// Name sent in JOIN.
    #[arg(long, default_value = "player")]
    name: String,
    /// Seconds to play.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// An update older than this on arrival counts as late, ms.
    #[arg(long, default_value_t = 100)]
    late_ms: u64,
    /// Forward error correction, K data + M parity shards per group: the
    /// server's `--fec`. Needs the `fec` feature (`--features fec`).
    #[arg(long, value_name = "K,M", value_parser = game::parse_fec)]
    fec: Option<(usize, usize)>,
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("game_client: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> io::Result<()> {
    let addr = tokio::net::lookup_host(&args.connect)
        .await?
        .next()
        .ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "address resolves to nothing")
        })?;
    let config = game::session_config(args.fec)?;
    println!("joining {addr} as {} for {} s", args.name, args.seconds);
    let report = game::play(
        addr,
        config,
        &args.name,
        Duration::from_secs(args.seconds),
        Duration::from_millis(args.late_ms),
        true,
    )
    .await?;
    println!("done: {}", report.line());
    Ok(())
}
