//! A TCP-over-KCP tunnel, like kcptun: TCP connections to the client side
//! come out of the server side, each carried by its own KCP session.
//!
//! ```text
//! # on the far host: KCP on UDP 4000, out to a local web server
//! cargo run --release --example tunnel -- server --listen 0.0.0.0:4000 --target 127.0.0.1:8080
//! # on the near host: TCP 1080 in, KCP to the far host
//! cargo run --release --example tunnel -- client --listen 127.0.0.1:1080 --target FARHOST:4000
//! curl http://127.0.0.1:1080/
//! ```
//!
//! Both ends must agree on `--mtu` and `--fec` (the defaults do).
//! `--fec K,M` (Reed-Solomon, kcp-go's framing) needs the `fec` feature:
//! `cargo run --release --features fec --example tunnel -- ... --fec 4,2`. Statistics (connections, bytes, RTT, retransmissions) are
//! printed every `--stats-interval` seconds, on SIGUSR1 and at exit
//! (Ctrl-C or SIGTERM). The tunnel's frame format and shutdown rules are in
//! `examples/tunnel/core.rs`.

use std::io;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use kcp_rs::net::KcpListener;
use tokio::net::TcpListener;

// Shared with tests/tunnel.rs, which uses a few accessors this binary does not.
#[allow(dead_code)]
#[path = "core.rs"]
mod tunnel;

use tunnel::{Mode, TunnelStats};

#[derive(Parser, Debug)]
#[command(about = "TCP over KCP, one KCP session per TCP connection (like kcptun)")]
struct Args {
    #[command(subcommand)]
    side: Side,
    /// KCP preset: fast (ikcp's nodelay 1/20/2/1) or normal (ikcp's defaults).
    #[arg(long, global = true, default_value = "fast")]
    mode: Mode,
    /// Forward error correction, K data + M parity shards per group (e.g.
    /// 4,2). Both ends must agree. Needs the `fec` feature (`--features fec`).
    #[arg(long, global = true, value_name = "K,M", value_parser = tunnel::parse_fec)]
    fec: Option<(usize, usize)>,
    /// Largest UDP datagram KCP sends, header included. Both ends must agree.
    #[arg(long, global = true, default_value_t = 1400)]
    mtu: u32,
    /// Send window, in segments.
    #[arg(long, global = true, default_value_t = 512)]
    sndwnd: u16,
    /// Receive window, in segments.
    #[arg(long, global = true, default_value_t = 512)]
    rcvwnd: u16,
    /// Print statistics every this many seconds (0: only on SIGUSR1 and at exit).
    #[arg(long, global = true, default_value_t = 0)]
    stats_interval: u64,
}

#[derive(Subcommand, Debug)]
enum Side {
    /// Accept TCP on --listen, carry each connection over KCP to --target.
    Client {
        /// TCP address to accept applications on.
        #[arg(long)]
        listen: String,
        /// UDP address of the tunnel server.
        #[arg(long)]
        target: String,
    },
    /// Accept KCP on --listen, connect each session to the TCP --target.
    Server {
        /// UDP address to accept tunnel clients on.
        #[arg(long)]
        listen: String,
        /// TCP address each session is connected to.
        #[arg(long)]
        target: String,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tunnel: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> io::Result<()> {
    let config = tunnel::session_config(args.mode, args.mtu, args.sndwnd, args.rcvwnd, args.fec)?;
    let stats = Arc::new(TunnelStats::new(args.fec));
    let fec = match args.fec {
        Some((k, m)) => format!("fec {k}+{m}"),
        None => "no fec".into(),
    };
    let work = match args.side {
        Side::Client { listen, target } => {
            let server = resolve(&target).await?;
            let tcp = TcpListener::bind(&listen).await?;
            println!(
                "tunnel client: tcp {} -> kcp {server} (mode {:?}, mtu {}, windows {}/{}, {fec})",
                tcp.local_addr()?,
                args.mode,
                args.mtu,
                args.sndwnd,
                args.rcvwnd
            );
            tokio::spawn(tunnel::run_client(tcp, server, config, stats.clone()))
        }
        Side::Server { listen, target } => {
            let listener = KcpListener::bind(&listen, config).await?;
            println!(
                "tunnel server: kcp {} -> tcp {target} (mode {:?}, mtu {}, windows {}/{}, {fec})",
                listener.local_addr()?,
                args.mode,
                args.mtu,
                args.sndwnd,
                args.rcvwnd
            );
            tokio::spawn(tunnel::run_server(listener, target, stats.clone()))
        }
    };
    let r = serve(work, &stats, args.stats_interval).await;
    println!("{}", stats.report());
    r
}

/// Waits for the tunnel to fail or for Ctrl-C / SIGTERM, printing the
/// statistics on SIGUSR1 and every `interval` seconds.
async fn serve(
    mut work: tokio::task::JoinHandle<io::Result<()>>,
    stats: &TunnelStats,
    interval: u64,
) -> io::Result<()> {
    let mut tick = tokio::time::interval(Duration::from_secs(interval.max(1)));
    tick.tick().await;
    let mut signals = Signals::new()?;
    loop {
        tokio::select! {
            r = &mut work => return r.map_err(io::Error::other)?,
            _ = tick.tick(), if interval > 0 => println!("{}", stats.report()),
            s = signals.next() => match s {
                Signal::Report => println!("{}", stats.report()),
                Signal::Stop => {
                    println!("stopping");
                    work.abort();
                    return Ok(());
                }
            },
        }
    }
}

async fn resolve(addr: &str) -> io::Result<SocketAddr> {
    tokio::net::lookup_host(addr).await?.next().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{addr} resolves to nothing"),
        )
    })
}

enum Signal {
    Report,
    Stop,
}

#[cfg(unix)]
struct Signals {
    usr1: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    fn new() -> io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            usr1: signal(SignalKind::user_defined1())?,
            term: signal(SignalKind::terminate())?,
        })
    }

    async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.usr1.recv() => Signal::Report,
            _ = self.term.recv() => Signal::Stop,
            _ = tokio::signal::ctrl_c() => Signal::Stop,
        }
    }
}

#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn new() -> io::Result<Signals> {
        Ok(Signals)
    }

    async fn next(&mut self) -> Signal {
        let _ = tokio::signal::ctrl_c().await;
        Signal::Stop
    }
}
