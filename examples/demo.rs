//! The tour: a KCP echo server behind a lossy link, several clients pushing
//! megabytes through it and checking every byte that comes back, and a
//! ping-pong probe measuring round trips while they do.
//!
//! ```text
//! cargo run --release --example demo
//! cargo run --release --example demo -- --loss 0.2 --clients 16 --size 2M
//! cargo run --release --features fec --example demo -- --fec 4,2
//! cargo run --release --example demo -- --help
//! ```
//!
//! Everything runs in this process, on loopback:
//!
//! ```text
//!  client 1..N ──┐                                   ┌── echo session 1..N
//!  ping probe  ──┼─▶ UdpRelay (loss, delay, jitter,  ├── echo session (ping)
//!                │   reordering, duplicates) ───────▶│   KcpListener
//! ```
//!
//! Each client writes `--size` bytes generated from its own seed and reads
//! the echo back, comparing every byte with the same generator, so a byte
//! lost, duplicated or reordered by KCP would be caught at its offset. The
//! run exits 0 only when every client got every byte back intact.

use std::io::{self, IsTerminal, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use kcp_rs::net::{KcpListener, KcpStream, SessionConfig, SessionStats};
use kcp_rs::sim::relay::{RelayConfig, RelayStats, UdpRelay};
use kcp_rs::sim::LinkConfig;
use kcp_rs::KcpConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Parser, Debug)]
#[command(
    about = "KCP over a lossy loopback relay: echo clients verified byte for byte, RTT probe, summary",
    long_about = None
)]
struct Args {
    /// Clients transferring at the same time.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Bytes each client sends and gets back (suffixes K, M, G: 4M).
    #[arg(long, default_value = "4M", value_parser = parse_size)]
    size: u64,
    /// Probability that the relay loses a datagram, each way.
    #[arg(long, default_value_t = 0.10)]
    loss: f64,
    /// Fixed one-way delay of the relay, in ms.
    #[arg(long, default_value_t = 20)]
    delay: u32,
    /// Extra random one-way delay, 0..=JITTER ms; it reorders datagrams.
    #[arg(long, default_value_t = 20)]
    jitter: u32,
    /// Probability that the relay delivers a datagram twice.
    #[arg(long, default_value_t = 0.01)]
    duplicate: f64,
    /// KCP preset: `fast` (ikcp's nodelay 1/20/2/1) or `normal` (ikcp's
    /// defaults: 100 ms interval, congestion control; slow under loss).
    #[arg(long, value_enum, default_value_t = Mode::Fast)]
    mode: Mode,
    /// Send and receive windows, in segments (default: the preset's).
    #[arg(long)]
    window: Option<u16>,
    /// Forward error correction, K data + M parity shards per group (kcp-go
    /// framing; needs the `fec` feature: `--features fec`). Default: off.
    #[arg(long, value_name = "K,M", value_parser = parse_fec)]
    fec: Option<(usize, usize)>,
    /// Seed of the relay's randomness: the same seed loses the same datagrams.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Give up (exit 1) after this many seconds.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
    /// No live progress line.
    #[arg(long)]
    quiet: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    Fast,
    Normal,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("demo: {e}");
            ExitCode::from(2)
        }
    }
}

/// Runs the demo; `Ok(false)` when a byte was not verified in time.
async fn run(args: Args) -> io::Result<bool> {
    if !(0.0..1.0).contains(&args.loss) || !(0.0..=1.0).contains(&args.duplicate) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "--loss must be within 0..1 and --duplicate within 0..=1",
        ));
    }
    let config = session_config(&args)?;
    let listener = KcpListener::bind("127.0.0.1:0", config.clone()).await?;
    let server_addr = listener.local_addr()?;
    let link = LinkConfig {
        loss: args.loss,
        duplicate: args.duplicate,
        delay: args.delay,
        jitter: args.jitter,
        fifo: false,
    };
    let relay = UdpRelay::start(server_addr, RelayConfig::symmetric(link, args.seed)).await?;
    let total = args.size * args.clients as u64;
    println!(
        "KCP echo server on {server_addr}, lossy relay on {} ({:.0}% loss, {}..{} ms one way, \
         reordering, {:.0}% duplicates)",
        relay.addr(),
        args.loss * 100.0,
        args.delay,
        args.delay + args.jitter,
        args.duplicate * 100.0,
    );
    println!(
        "{} clients x {} echoed and verified ({} each way), mode {:?}, window {}/{} segments, mtu {}, {}",
        args.clients,
        human_bytes(args.size),
        human_bytes(total),
        args.mode,
        config.kcp.snd_wnd,
        config.kcp.rcv_wnd,
        config.kcp.mtu,
        match args.fec {
            Some((k, m)) => format!("FEC {k}+{m}"),
            None => "no FEC".into(),
        },
    );

    let server_sessions = Arc::new(Mutex::new(Vec::new()));
    let server = tokio::spawn(echo_server(listener, server_sessions.clone()));
    let progress = Arc::new(Progress::default());
    let started = Instant::now();

    let ping = tokio::spawn(ping_probe(relay.addr(), config.clone(), progress.clone()));
    let mut clients = Vec::with_capacity(args.clients);
    for id in 0..args.clients {
        clients.push(tokio::spawn(bulk_client(
            id as u64,
            relay.addr(),
            config.clone(),
            args.size,
            progress.clone(),
        )));
    }
    let shower = tokio::spawn(show_progress(
        progress.clone(),
        total,
        args.clients,
        started,
        !args.quiet,
    ));

    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.timeout);
    let mut reports = Vec::with_capacity(clients.len());
    let mut failures = Vec::new();
    for (id, c) in clients.into_iter().enumerate() {
        match tokio::time::timeout_at(deadline, c).await {
            Ok(Ok(Ok(r))) => reports.push(r),
            Ok(Ok(Err(e))) => failures.push(format!("client {id}: {e}")),
            Ok(Err(e)) => failures.push(format!("client {id}: task failed: {e}")),
            Err(_) => failures.push(format!(
                "client {id}: not done after {} s (--timeout)",
                args.timeout
            )),
        }
    }
    let elapsed = started.elapsed();
    progress.done.store(true, Relaxed);
    let _ = shower.await;
    let rtts = match tokio::time::timeout(Duration::from_secs(2), ping).await {
        Ok(Ok(Ok(rtts))) => rtts,
        Ok(Ok(Err(e))) => {
            failures.push(format!("ping probe: {e}"));
            Vec::new()
        }
        _ => {
            failures.push("ping probe did not stop".into());
            Vec::new()
        }
    };
    server.abort();

    let server_stats: Vec<SessionStats> = server_sessions
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    print_summary(
        &reports,
        &server_stats,
        &rtts,
        relay.stats(),
        elapsed,
        &args,
    );
    let verified: u64 = reports.iter().map(|r| r.verified).sum();
    if failures.is_empty() && verified == total {
        println!("OK: all {} verified", human_bytes(total));
        return Ok(true);
    }
    for f in &failures {
        println!("FAILED {f}");
    }
    println!(
        "FAILED: {} of {} verified",
        human_bytes(verified),
        human_bytes(total)
    );
    Ok(false)
}

fn session_config(args: &Args) -> io::Result<SessionConfig> {
    let preset = match args.mode {
        Mode::Fast => KcpConfig::fast(),
        Mode::Normal => KcpConfig::default(),
    };
    let mut kcp = KcpConfig {
        // Stream mode packs the clients' writes into full segments.
        stream: true,
        ..preset
    };
    if let Some(w) = args.window {
        kcp.snd_wnd = w;
        kcp.rcv_wnd = w;
    }
    let config = SessionConfig {
        kcp,
        // A relay that loses everything for a while should fail the run
        // well within --timeout rather than after the default 30 s.
        idle_timeout: Duration::from_secs(args.timeout.clamp(5, 30)),
        // The 8 bytes of FEC header come out of `kcp.mtu`: datagrams on the
        // wire stay at most `mtu` bytes.
        #[cfg(feature = "fec")]
        fec: args
            .fec
            .map(|(k, m)| kcp_rs::fec::FecConfig::new(k, m))
            .transpose()?,
        ..SessionConfig::default()
    };
    #[cfg(not(feature = "fec"))]
    if let Some((k, m)) = args.fec {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "--fec {k},{m} needs the `fec` feature, which this build lacks: \
                 cargo run --release --features fec --example demo -- --fec {k},{m}"
            ),
        ));
    }
    config.validate()?;
    Ok(config)
}

// ----- traffic ----------------------------------------------------------------

/// Live counters the progress line reads.
#[derive(Default)]
struct Progress {
    verified: AtomicU64,
    clients_done: AtomicUsize,
    pings: AtomicU64,
    last_rtt_us: AtomicU64,
    done: AtomicBool,
}

/// What one bulk client saw.
struct ClientReport {
    id: u64,
    verified: u64,
    elapsed: Duration,
    stats: SessionStats,
}

/// Echoes every session's bytes back, recording each session's counters.
async fn echo_server(listener: KcpListener, sessions: Arc<Mutex<Vec<SessionStats>>>) {
    while let Ok((stream, _peer)) = listener.accept().await {
        let sessions = sessions.clone();
        tokio::spawn(async move {
            let slot = {
                let mut s = sessions.lock().unwrap_or_else(|p| p.into_inner());
                s.push(SessionStats::default());
                s.len() - 1
            };
            let (mut r, mut w) = stream.into_split();
            let mut buf = vec![0u8; 64 * 1024];
            // KCP has no FIN: this ends when the demo stops (or the client
            // goes quiet for `idle_timeout`).
            while let Ok(n) = r.read(&mut buf).await {
                if n == 0 || w.write_all(&buf[..n]).await.is_err() {
                    break;
                }
                sessions.lock().unwrap_or_else(|p| p.into_inner())[slot] = r.stats();
            }
        });
    }
}

/// Sends `size` bytes of client `id`'s pattern and checks the echo.
async fn bulk_client(
    id: u64,
    addr: SocketAddr,
    config: SessionConfig,
    size: u64,
    progress: Arc<Progress>,
) -> io::Result<ClientReport> {
    let started = Instant::now();
    let stream = KcpStream::connect(addr, config).await?;
    let (mut r, mut w) = stream.into_split();
    let seed = 0x5EED_0000 + id;
    let writer = tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        let mut off = 0;
        while off < size {
            let n = (size - off).min(buf.len() as u64) as usize;
            pattern(seed, off, &mut buf[..n]);
            w.write_all(&buf[..n]).await?;
            off += n as u64;
        }
        // Keep the write half (and so the session) until the echo is read.
        Ok::<_, io::Error>(w)
    });
    let mut got = vec![0u8; 64 * 1024];
    let mut want = vec![0u8; 64 * 1024];
    let mut off = 0;
    while off < size {
        let n = r.read(&mut got).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "session ended early",
            ));
        }
        if off + n as u64 > size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("echo is longer than the {size} bytes sent"),
            ));
        }
        pattern(seed, off, &mut want[..n]);
        if let Some(i) = got[..n].iter().zip(&want[..n]).position(|(a, b)| a != b) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "byte {} of the echo differs from what was sent",
                    off + i as u64
                ),
            ));
        }
        off += n as u64;
        progress.verified.fetch_add(n as u64, Relaxed);
    }
    let _w = writer.await.map_err(io::Error::other)??;
    progress.clients_done.fetch_add(1, Relaxed);
    Ok(ClientReport {
        id,
        verified: off,
        elapsed: started.elapsed(),
        stats: r.stats(),
    })
}

/// Client `seed`'s byte stream at offset `off`: the same bytes whatever the
/// chunking, different for every client.
fn pattern(seed: u64, mut off: u64, buf: &mut [u8]) {
    let mut i = 0;
    while i < buf.len() {
        let word = splitmix(seed ^ (off / 8).wrapping_mul(0x9E37_79B9_7F4A_7C15)).to_le_bytes();
        let start = (off % 8) as usize;
        let n = (8 - start).min(buf.len() - i);
        buf[i..i + n].copy_from_slice(&word[start..start + n]);
        i += n;
        off += n as u64;
    }
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Sends a 16-byte ping every 20 ms on its own session until the bulk
/// clients are done, and returns the round-trip times.
async fn ping_probe(
    addr: SocketAddr,
    config: SessionConfig,
    progress: Arc<Progress>,
) -> io::Result<Vec<Duration>> {
    let mut s = KcpStream::connect(addr, config).await?;
    let mut rtts = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seq = 0u64;
    while !progress.done.load(Relaxed) {
        tick.tick().await;
        seq += 1;
        let mut ping = [0u8; 16];
        ping[..8].copy_from_slice(&seq.to_be_bytes());
        let sent = Instant::now();
        s.write_all(&ping).await?;
        let mut pong = [0u8; 16];
        // Bounded, so a stuck probe cannot outlive the demo.
        tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut pong))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no pong in 10 s"))??;
        if pong != ping {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("pong {seq} differs from its ping"),
            ));
        }
        let rtt = sent.elapsed();
        rtts.push(rtt);
        progress.pings.fetch_add(1, Relaxed);
        progress.last_rtt_us.store(rtt.as_micros() as u64, Relaxed);
    }
    Ok(rtts)
}

// ----- output -----------------------------------------------------------------

/// Redraws one status line (on a terminal) or prints one a second.
async fn show_progress(
    progress: Arc<Progress>,
    total: u64,
    clients: usize,
    started: Instant,
    enabled: bool,
) {
    if !enabled {
        return;
    }
    let tty = io::stderr().is_terminal();
    // Redraw five times a second on a terminal; a line a second in a log.
    let every = if tty { 1 } else { 5 };
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    tick.tick().await;
    for n in 1u64.. {
        tick.tick().await;
        if progress.done.load(Relaxed) {
            break;
        }
        if n % every != 0 {
            continue;
        }
        let verified = progress.verified.load(Relaxed);
        let secs = started.elapsed().as_secs_f64();
        let line = format!(
            "[{secs:5.1} s] {:>9} / {} verified ({:3.0}%)  {:6.2} MB/s  clients done {}/{}  pings {}  last rtt {:.0} ms",
            human_bytes(verified),
            human_bytes(total),
            verified as f64 * 100.0 / total.max(1) as f64,
            verified as f64 / secs / 1e6,
            progress.clients_done.load(Relaxed),
            clients,
            progress.pings.load(Relaxed),
            progress.last_rtt_us.load(Relaxed) as f64 / 1000.0,
        );
        let mut err = io::stderr().lock();
        let _ = if tty {
            write!(err, "\r{line}\x1b[K")
        } else {
            writeln!(err, "{line}")
        };
        let _ = err.flush();
    }
    if tty {
        let _ = write!(io::stderr(), "\r\x1b[K");
    }
}

fn print_summary(
    reports: &[ClientReport],
    server: &[SessionStats],
    rtts: &[Duration],
    relay: RelayStats,
    elapsed: Duration,
    args: &Args,
) {
    let (clients, size) = (args.clients, args.size);
    println!();
    println!(
        "{:>6} {:>10} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9} {:>9}",
        "client",
        "verified",
        "time s",
        "MB/s",
        "srtt ms",
        "retrans",
        "fast re",
        "dup segs",
        "fec rec"
    );
    let mut sum = SessionStats::default();
    for r in reports {
        let st = &r.stats;
        println!(
            "{:>6} {:>10} {:>8.2} {:>8.2} {:>8} {:>8} {:>9} {:>9} {:>9}",
            r.id,
            human_bytes(r.verified),
            r.elapsed.as_secs_f64(),
            r.verified as f64 / r.elapsed.as_secs_f64() / 1e6,
            st.rtt_ms,
            st.kcp.retransmits,
            st.kcp.fast_retransmits,
            st.kcp.duplicate_segments,
            st.fec_recovered,
        );
        add(&mut sum, st);
    }
    let mut srv = SessionStats::default();
    for st in server {
        add(&mut srv, st);
    }
    let verified: u64 = reports.iter().map(|r| r.verified).sum();
    let secs = elapsed.as_secs_f64();
    println!();
    println!(
        "delivered and verified   {} of {} in {secs:.2} s: {:.2} MB/s each way ({} clients x {})",
        human_bytes(verified),
        human_bytes(size * clients as u64),
        verified as f64 / secs / 1e6,
        reports.len(),
        human_bytes(size),
    );
    if rtts.is_empty() {
        println!("ping rtt                 no samples");
    } else {
        let mut ms: Vec<f64> = rtts.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
        ms.sort_by(f64::total_cmp);
        println!(
            "ping rtt (under load)    p50 {:.1} ms  p90 {:.1} ms  p99 {:.1} ms  max {:.1} ms  ({} pings)",
            percentile(&ms, 0.50),
            percentile(&ms, 0.90),
            percentile(&ms, 0.99),
            ms[ms.len() - 1],
            ms.len(),
        );
    }
    println!(
        "clients -> server        {} datagrams, {} segments, {} retransmitted on timeout, {} fast-retransmitted",
        sum.kcp.out_datagrams, sum.kcp.out_segments, sum.kcp.retransmits, sum.kcp.fast_retransmits,
    );
    println!(
        "server -> clients        {} datagrams, {} segments, {} retransmitted on timeout, {} fast-retransmitted",
        srv.kcp.out_datagrams, srv.kcp.out_segments, srv.kcp.retransmits, srv.kcp.fast_retransmits,
    );
    println!(
        "duplicates received      {} segments at the clients, {} at the server (dropped by KCP)",
        sum.kcp.duplicate_segments, srv.kcp.duplicate_segments,
    );
    let lost = relay.to_server.dropped + relay.to_client.dropped;
    let sent = relay.to_server.sent + relay.to_client.sent;
    println!(
        "relay                    {sent} datagrams, {lost} lost ({:.1}%), {} duplicated, {} refused (queue full)",
        lost as f64 * 100.0 / sent.max(1) as f64,
        relay.to_server.duplicated + relay.to_client.duplicated,
        relay.refused,
    );
    match args.fec {
        Some((k, m)) => {
            println!(
                "{:<24} {} datagrams at the clients, {} at the server (lost by the relay, rebuilt from parity)",
                format!("FEC {k}+{m} recovered"),
                sum.fec_recovered,
                srv.fec_recovered,
            );
            println!(
                "{:<24} {} sent by the clients, {} by the server; {} + {} packets dropped by the decoders (duplicates, late data already rebuilt)",
                format!("FEC {k}+{m} parity"),
                sum.fec_parity_sent,
                srv.fec_parity_sent,
                sum.fec_dropped,
                srv.fec_dropped,
            );
        }
        None if cfg!(feature = "fec") => {
            println!("FEC                      off (try --fec 4,2)");
        }
        None => println!(
            "FEC                      off (cargo run --release --features fec --example demo -- --fec 4,2)"
        ),
    }
}

fn add(sum: &mut SessionStats, st: &SessionStats) {
    sum.kcp.out_datagrams += st.kcp.out_datagrams;
    sum.kcp.out_segments += st.kcp.out_segments;
    sum.kcp.retransmits += st.kcp.retransmits;
    sum.kcp.fast_retransmits += st.kcp.fast_retransmits;
    sum.kcp.duplicate_segments += st.kcp.duplicate_segments;
    sum.fec_recovered += st.fec_recovered;
    sum.fec_parity_sent += st.fec_parity_sent;
    sum.fec_parity_received += st.fec_parity_received;
    sum.fec_dropped += st.fec_dropped;
}

/// The `q` quantile of sorted `v` (nearest rank).
fn percentile(v: &[f64], q: f64) -> f64 {
    let i = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len());
    v[i - 1]
}

fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.2} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, 'k' | 'K')) => (&s[..i], 1u64 << 10),
        Some((i, 'm' | 'M')) => (&s[..i], 1 << 20),
        Some((i, 'g' | 'G')) => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (examples: 500000, 512K, 4M)"))?;
    if n.is_nan() || n <= 0.0 {
        return Err("the size must be positive".into());
    }
    Ok((n * mult as f64) as u64)
}

fn parse_fec(s: &str) -> Result<(usize, usize), String> {
    let err = || format!("{s:?} is not K,M (data and parity shards, e.g. 10,3)");
    let (k, m) = s.split_once(',').ok_or_else(err)?;
    let k: usize = k.trim().parse().map_err(|_| err())?;
    let m: usize = m.trim().parse().map_err(|_| err())?;
    if k == 0 || m == 0 || k + m > 256 {
        return Err("FEC needs K >= 1, M >= 1 and K + M <= 256".into());
    }
    Ok((k, m))
}
