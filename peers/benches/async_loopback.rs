//! Our tokio layer (`kcp_rs::net`) against `tokio_kcp` and TCP, in the same
//! run on the same machine, over 127.0.0.1:
//!
//! 1. **throughput**: 64 MiB one way, written in 64 KiB pieces, hashed
//!    (xxh3) at the receiver and compared with the sender's hash: a run that
//!    delivers wrong, missing or extra bytes aborts the bench.
//! 2. **ping-pong**: 64-byte round trips after a warm-up; p50, p99, p99.9,
//!    max.
//! 3. **idle**: 10 000 sessions on one listener that exchanged one message
//!    each, then idle: resident memory and CPU of the listener process and
//!    of the clients' process (each side in a child process of its own).
//!
//! ```text
//! cargo bench -p kcp-peers --bench async_loopback
//! ```
//! It prints markdown tables (recorded in `docs/benchmarks_async.md`).
//! Environment: `ASYNC_BENCH=throughput,pingpong,idle` (the scenarios to
//! run, default all), `ASYNC_BENCH_MB` (default 64), `ASYNC_BENCH_REPS`
//! (throughput runs per row, default 5), `ASYNC_BENCH_RTTS` (default
//! 10 000), `ASYNC_BENCH_SESSIONS` (default 10 000), `ASYNC_BENCH_IDLE_SECS`
//! (default 10), `ASYNC_BENCH_ROWS` (row numbers of the throughput and
//! ping-pong tables to run, e.g. `1,3`; default all),
//! `ASYNC_BENCH_PINGPONG=workers|main|processes|turns|turns-processes` (only
//! one of the five ping-pong tables: every side a task on one runtime's
//! workers; the client on the main thread; the echo server in a child
//! process of its own, as two programs would be; every row's connection on
//! one runtime, measured one round trip on each in turn; the same with each
//! echo server in a child process), `ASYNC_BENCH_PINGPONG_REPS` (runs per ping-pong row, interleaved
//! across rows, with a summary of medians and of ours against tokio_kcp run
//! by run, also split by whether the two p50s were level or far apart, as
//! different CPU placements make them; default 1), `ASYNC_BENCH_TURN`
//! (with `turns` and `turns-processes`: round trips on a connection per
//! turn, default 1), `ASYNC_BENCH_WORKERS`
//! (worker threads of every runtime, default 2), `ASYNC_BENCH_DIST` (set:
//! each ping-pong run also prints its 10th, 50th, 80th, 90th, 95th, 97th,
//! 98th, 99th and 99.5th percentiles in µs to stderr, one decimal, then
//! the shares of round trips over 17, 20 and 25 µs), `ASYNC_BENCH_SERIES`
//! (a directory: each ping-pong run's round trips, in order, one file per
//! run, for `scripts/pingpong-phases.py`), `ASYNC_BENCH_ECHO_ROWS` (with
//! `turns-processes`: for each row run, the 1-based position among the
//! rows run whose implementation answers it, e.g. `2,1` with rows `1,4`:
//! our client against tokio_kcp's echo server and the reverse; a row keeps
//! its client's name in the table), `ASYNC_BENCH_ECHO_CPUS` (with
//! `processes` and `turns-processes`: a CPU list for `taskset`, e.g. `1`,
//! to which each echo process pins itself, so that the kernel cannot place
//! one implementation's server better than the other's; run the bench
//! itself under `taskset -c 0` to pin the client).
//!
//! Every wait has a timeout; a row that times out says so instead of giving
//! a number.

use std::any::Any;
use std::io::{self, BufRead, BufReader, Write as _};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use kcp_rs::net::{KcpListener, KcpStream, SessionConfig};
use kcp_rs::KcpConfig;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::runtime::Runtime;
use tokio::time::timeout;
use tokio_kcp::{KcpConfig as TkConfig, KcpNoDelayConfig};
use xxhash_rust::xxh3::{xxh3_64, Xxh3};

#[path = "../../tests/support/proc_self.rs"]
mod proc_self;
use proc_self::{cpu_time, rss_kib};

/// Size of each `write_all` in the throughput run, for every
/// implementation: tokio_kcp refuses a single write of 128 segments or
/// more (~174 KB at MTU 1400).
const WRITE_CHUNK: usize = 64 << 10;
/// Round trips before measuring.
const WARMUP_RTTS: usize = 1_000;
/// Longest a ping-pong row runs (slow configurations do fewer round trips).
const PINGPONG_BUDGET: Duration = Duration::from_secs(10);
/// Longest one throughput run may take.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(60);
/// A throughput run longer than this is not repeated.
const SLOW_RUN: Duration = Duration::from_secs(5);
/// Longest a connection set-up may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const HELLO: &[u8; 8] = b"hello!!!";

fn main() {
    if let Ok(role) = std::env::var("ASYNC_BENCH_CHILD") {
        match role.strip_prefix("echo:") {
            Some(index) => echo_child(index.parse().expect("case index")),
            None => idle_child(&role),
        }
        return;
    }
    let scenarios =
        std::env::var("ASYNC_BENCH").unwrap_or_else(|_| "throughput,pingpong,idle".into());
    let run = |name: &str| scenarios.split(',').any(|s| s.trim() == name);
    println!("# async loopback: kcp_rs::net vs tokio_kcp vs TCP\n");
    println!("load average at start: {}", loadavg());
    let started = Instant::now();
    if run("throughput") {
        throughput_table();
    }
    if run("pingpong") {
        let mode = std::env::var("ASYNC_BENCH_PINGPONG").unwrap_or_default();
        for (name, topology) in [
            ("workers", Topology::Workers),
            ("main", Topology::Main),
            ("processes", Topology::Processes),
            ("turns", Topology::Turns),
            ("turns-processes", Topology::TurnsProcesses),
        ] {
            if mode.is_empty() || mode == name {
                pingpong_table(topology);
            }
        }
    }
    if run("idle") {
        idle_table();
    }
    println!(
        "\nload average at end: {}; whole run {:.0} s",
        loadavg(),
        started.elapsed().as_secs_f64()
    );
}

// ----- the implementations under test ------------------------------------------

/// An implementation and its settings.
#[derive(Clone)]
enum Imp {
    Ours(SessionConfig),
    TokioKcp {
        cfg: TkConfig,
        /// `SO_SNDBUF` / `SO_RCVBUF` asked for its sockets (`None`: the OS's).
        sock_buf: Option<usize>,
    },
    Tcp,
}

struct Case {
    name: &'static str,
    settings: &'static str,
    imp: Imp,
}

/// Ours with the settings both KCP rows share: ikcp `nodelay(1, 10, 2, 1)`,
/// windows 1024, MTU 1400, stream mode; the rest of `SessionConfig` is the
/// default (8 MiB socket buffers asked, flush on write, ACKs at once).
fn ours_fast() -> SessionConfig {
    SessionConfig {
        kcp: KcpConfig {
            stream: true,
            snd_wnd: 1024,
            rcv_wnd: 1024,
            mtu: 1400,
            ..KcpConfig::default().with_ikcp_nodelay(1, 10, 2, true)
        },
        ..SessionConfig::default()
    }
}

/// tokio_kcp with the same protocol settings, flushing on write and ACKing
/// on input as ours does by default.
fn tokio_kcp_fast() -> TkConfig {
    TkConfig {
        mtu: 1400,
        nodelay: KcpNoDelayConfig::fastest(),
        wnd_size: (1024, 1024),
        flush_write: true,
        flush_acks_input: true,
        stream: true,
        ..TkConfig::default()
    }
}

/// tokio_kcp with what `SessionConfig::default()` sets in ours: ikcp
/// `nodelay(1, 20, 2, 1)`, windows 128, MTU 1400, message mode.
fn tokio_kcp_like_our_default() -> TkConfig {
    TkConfig {
        nodelay: KcpNoDelayConfig {
            interval: 20,
            ..KcpNoDelayConfig::fastest()
        },
        wnd_size: (128, 128),
        flush_write: true,
        flush_acks_input: true,
        stream: false,
        ..TkConfig::default()
    }
}

/// The rows to run: all, or those whose row number (1-based, in the order
/// below) is listed in `ASYNC_BENCH_ROWS` (e.g. `1,3`).
fn cases() -> Vec<Case> {
    let rows: Option<Vec<usize>> = std::env::var("ASYNC_BENCH_ROWS")
        .ok()
        .map(|v| v.split(',').filter_map(|r| r.trim().parse().ok()).collect());
    all_cases()
        .into_iter()
        .enumerate()
        .filter(|(i, _)| rows.as_ref().map_or(true, |r| r.contains(&(i + 1))))
        .map(|(_, c)| c)
        .collect()
}

fn all_cases() -> Vec<Case> {
    vec![
        Case {
            name: "kcp_rs::net",
            settings: "nodelay(1,10,2,1), wnd 1024, mtu 1400, stream",
            imp: Imp::Ours(ours_fast()),
        },
        Case {
            name: "kcp_rs::net",
            settings: "the same in message mode",
            imp: Imp::Ours(SessionConfig {
                kcp: KcpConfig {
                    stream: false,
                    ..ours_fast().kcp
                },
                ..ours_fast()
            }),
        },
        Case {
            name: "kcp_rs::net",
            settings: "`SessionConfig::default()` (nodelay(1,20,2,1), wnd 128, message mode)",
            imp: Imp::Ours(SessionConfig::default()),
        },
        Case {
            name: "tokio_kcp 0.9",
            settings: "nodelay(1,10,2,1), wnd 1024, mtu 1400, stream, flush_write, flush_acks_input, 8 MiB socket buffers",
            imp: Imp::TokioKcp {
                cfg: tokio_kcp_fast(),
                sock_buf: Some(8 << 20),
            },
        },
        Case {
            name: "tokio_kcp 0.9",
            settings: "the same in message mode",
            imp: Imp::TokioKcp {
                cfg: TkConfig {
                    stream: false,
                    ..tokio_kcp_fast()
                },
                sock_buf: Some(8 << 20),
            },
        },
        Case {
            name: "tokio_kcp 0.9",
            settings: "stream mode, OS default socket buffers",
            imp: Imp::TokioKcp {
                cfg: tokio_kcp_fast(),
                sock_buf: None,
            },
        },
        Case {
            name: "tokio_kcp 0.9",
            settings: "`KcpConfig::default()` (nodelay(0,40,0,0), wnd 256, message mode, no flush on write/ACK)",
            imp: Imp::TokioKcp {
                cfg: TkConfig::default(),
                sock_buf: Some(8 << 20),
            },
        },
        Case {
            name: "TCP",
            settings: "tokio TcpStream, TCP_NODELAY",
            imp: Imp::Tcp,
        },
    ]
}

trait Duplex: AsyncRead + AsyncWrite + Unpin + Send {
    fn as_any(&self) -> &dyn Any;
}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Duplex for T {
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Our client's retransmissions and datagrams its socket could not take,
/// as "retransmits/send drops" (`None` for the other implementations).
fn ours_losses(c: &Conn) -> Option<String> {
    let st = (**c).as_any().downcast_ref::<KcpStream>()?.stats();
    Some(format!("{}/{}", st.kcp.retransmits, st.send_dropped))
}
type Conn = Box<dyn Duplex>;
/// What must outlive a connection (the listener).
type Guard = Box<dyn Any + Send>;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(env_or("ASYNC_BENCH_WORKERS", 2))
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Runs `f` as a task on the runtime's workers (not on the calling thread,
/// as `block_on` would), so that every side of a connection is a task.
fn on_workers<F>(rt: &Runtime, f: F) -> F::Output
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    match rt.block_on(rt.spawn(f)) {
        Ok(out) => out,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("task cancelled: {e}"),
    }
}

/// A UDP socket on `addr` with both buffers asked to be `buf` bytes.
fn udp_socket(addr: SocketAddr, buf: Option<usize>) -> io::Result<tokio::net::UdpSocket> {
    let s = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    if let Some(n) = buf {
        s.set_recv_buffer_size(n)?;
        s.set_send_buffer_size(n)?;
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    tokio::net::UdpSocket::from_std(s.into())
}

fn localhost() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A connected (client, server) pair: the client connects and says hello,
/// the server accepts and reads it.
async fn pair(imp: &Imp) -> io::Result<(Conn, Conn, Guard)> {
    let (mut c, mut s, guard): (Conn, Conn, Guard) = match imp {
        Imp::Ours(cfg) => {
            let l = KcpListener::bind(localhost(), cfg.clone()).await?;
            let mut c = KcpStream::connect(l.local_addr()?, cfg.clone()).await?;
            c.write_all(HELLO).await?;
            c.flush().await?;
            let (s, _) = l.accept().await?;
            (Box::new(c), Box::new(s), Box::new(l))
        }
        Imp::TokioKcp { cfg, sock_buf } => {
            let udp = udp_socket(localhost(), *sock_buf)?;
            let mut l = tokio_kcp::KcpListener::from_socket(*cfg, udp)
                .await
                .map_err(io::Error::from)?;
            let cu = udp_socket(localhost(), *sock_buf)?;
            let mut c = tokio_kcp::KcpStream::connect_with_socket(cfg, cu, l.local_addr()?)
                .await
                .map_err(io::Error::from)?;
            c.write_all(HELLO).await?;
            c.flush().await?;
            let (s, _) = l.accept().await.map_err(io::Error::from)?;
            (Box::new(c), Box::new(s), Box::new(l))
        }
        Imp::Tcp => {
            let l = tokio::net::TcpListener::bind(localhost()).await?;
            let c = tokio::net::TcpStream::connect(l.local_addr()?).await?;
            let (s, _) = l.accept().await?;
            c.set_nodelay(true)?;
            s.set_nodelay(true)?;
            let mut c: Conn = Box::new(c);
            c.write_all(HELLO).await?;
            (c, Box::new(s), Box::new(l))
        }
    };
    let mut hello = [0u8; HELLO.len()];
    s.read_exact(&mut hello).await?;
    if &hello != HELLO {
        return Err(io::Error::other("hello garbled"));
    }
    c.flush().await?;
    Ok((c, s, guard))
}

// ----- 1. throughput ----------------------------------------------------------

/// Deterministic pseudo-random bytes (SplitMix64), so that a shifted or
/// repeated piece changes the hash.
fn payload(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        v.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    v.truncate(len);
    v
}

/// Sends `data` from client to server; the elapsed time from the first
/// write to the last byte read, after checking length and hash.
async fn transfer(
    mut c: Conn,
    mut s: Conn,
    data: Arc<Vec<u8>>,
    want: u64,
) -> io::Result<(Duration, Conn)> {
    let len = data.len();
    let start = Instant::now();
    let writer = tokio::spawn(async move {
        for piece in data.chunks(WRITE_CHUNK) {
            c.write_all(piece).await?;
        }
        c.flush().await?;
        io::Result::Ok(c)
    });
    let mut hasher = Xxh3::new();
    let mut buf = vec![0u8; 256 << 10];
    let mut got = 0usize;
    while got < len {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("end of stream after {got} of {len} bytes"),
            ));
        }
        if got + n > len {
            return Err(io::Error::other(format!(
                "{} bytes more than sent",
                got + n - len
            )));
        }
        hasher.update(&buf[..n]);
        got += n;
    }
    let elapsed = start.elapsed();
    if hasher.digest() != want {
        return Err(io::Error::other(
            "the received bytes hash differently from the sent ones",
        ));
    }
    // The writer has handed everything over; keep its stream until here.
    let c = writer.await.map_err(io::Error::other)??;
    Ok((elapsed, c))
}

enum Outcome<T> {
    Done(T),
    TimedOut,
}

fn throughput_table() {
    let mb: usize = env_or("ASYNC_BENCH_MB", 64);
    let reps: usize = env_or("ASYNC_BENCH_REPS", 5).max(1);
    let data = Arc::new(payload(mb << 20));
    let want = xxh3_64(&data);
    println!("\n## Throughput: {mb} MiB one way, {WRITE_CHUNK}-byte writes, hash-checked, {reps} runs per row\n");
    println!("| implementation | settings | MB/s median | MB/s best | runs (s) | retransmits/send drops per run |");
    println!("| --- | --- | ---: | ---: | --- | --- |");
    for case in cases() {
        let rt = runtime();
        let mut secs = Vec::new();
        let mut losses = Vec::new();
        let mut timed_out = false;
        for _ in 0..reps {
            let (imp, data, name, settings) =
                (case.imp.clone(), data.clone(), case.name, case.settings);
            let out = on_workers(&rt, async move {
                let (c, s, guard) = timeout(CONNECT_TIMEOUT, pair(&imp))
                    .await
                    .expect("connect timed out")
                    .unwrap_or_else(|e| panic!("{name}: connect: {e}"));
                let r = timeout(TRANSFER_TIMEOUT, transfer(c, s, data, want)).await;
                drop(guard);
                match r {
                    Ok(Ok((d, c))) => Outcome::Done((d, ours_losses(&c))),
                    Ok(Err(e)) => panic!("{name} ({settings}): transfer failed: {e}"),
                    Err(_) => Outcome::TimedOut,
                }
            });
            match out {
                Outcome::Done((d, loss)) => {
                    secs.push(d.as_secs_f64());
                    losses.extend(loss);
                    // A slow row runs once: the bench must stay short.
                    if d > SLOW_RUN {
                        break;
                    }
                }
                Outcome::TimedOut => {
                    timed_out = true;
                    break;
                }
            }
        }
        rt.shutdown_timeout(Duration::from_secs(2));
        let bytes = (mb << 20) as f64;
        let mut rates: Vec<f64> = secs.iter().map(|s| bytes / s / 1e6).collect();
        rates.sort_by(f64::total_cmp);
        let runs = secs
            .iter()
            .map(|s| format!("{s:.2}"))
            .collect::<Vec<_>>()
            .join(", ");
        let losses = if losses.is_empty() {
            "n/a".to_string()
        } else {
            losses.join(", ")
        };
        if timed_out {
            println!(
                "| {} | {} | timed out ({} s) | | {runs} | {losses} |",
                case.name,
                case.settings,
                TRANSFER_TIMEOUT.as_secs()
            );
        } else {
            println!(
                "| {} | {} | {:.0} | {:.0} | {runs} | {losses} |",
                case.name,
                case.settings,
                rates[rates.len() / 2],
                rates[rates.len() - 1]
            );
        }
    }
    tokio_kcp_big_write_quirk();
}

/// What tokio_kcp does with one write of 256 KiB.
fn tokio_kcp_big_write_quirk() {
    let rt = runtime();
    let msg = rt.block_on(async {
        let imp = Imp::TokioKcp {
            cfg: tokio_kcp_fast(),
            sock_buf: None,
        };
        let (mut c, _s, _g) = timeout(CONNECT_TIMEOUT, pair(&imp))
            .await
            .expect("connect timed out")
            .expect("connect");
        match timeout(Duration::from_secs(5), c.write(&vec![0u8; 256 << 10])).await {
            Ok(Ok(n)) => format!("took {n} bytes"),
            Ok(Err(e)) => format!("fails: {e} ({:?})", e.kind()),
            Err(_) => "hangs (5 s)".to_string(),
        }
    });
    rt.shutdown_timeout(Duration::from_secs(2));
    println!("\ntokio_kcp, one `write` of 256 KiB in stream mode: {msg}");
}

// ----- 2. ping-pong -----------------------------------------------------------

/// Latencies of one ping-pong row, in µs.
struct PingPong {
    round_trips: usize,
    /// Times the OS took the CPU from one of this process's threads while
    /// it could still run, during the measured round trips (Linux; 0
    /// elsewhere).
    preempted: u64,
    p50: f64,
    p99: f64,
    p999: f64,
    max: f64,
    mean: f64,
}

/// `client_on_workers`: the client loop runs as a task on the runtime's
/// two workers like everything else; otherwise on the main thread
/// (`block_on`), a third thread that the runtime wakes from outside.
///
/// With `ASYNC_BENCH_PINGPONG_REPS` = n > 1, every row runs n times,
/// interleaved (rows 1, 4, 1, 4 … with the order reversed every other
/// repetition, so that no implementation always goes first after another
/// one's runtime was torn down), one table line per run, then a summary:
/// median p50 / p99 per row over the runs, and per repetition the p99 of
/// the first kcp_rs::net row against the first tokio_kcp row.
/// Where the ping-pong's client and echo server run.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Topology {
    /// Both are tasks on the same runtime's workers.
    Workers,
    /// The client on the main thread (`block_on`), the server a task.
    Main,
    /// The server in a child process with a runtime of its own, the client
    /// a task on this process's workers: two programs, as in production.
    Processes,
    /// Every row's connection on one runtime (all sides tasks, as in
    /// `Workers`), one round trip on each in turn: the machine's slow
    /// phases, which last hundreds of round trips and hit TCP as well,
    /// then fall on every row alike instead of on whichever ran when they
    /// came.
    Turns,
    /// `Turns` with every echo server in a child process of its own.
    TurnsProcesses,
}

fn pingpong_table(topology: Topology) {
    let rtts: usize = env_or("ASYNC_BENCH_RTTS", 10_000);
    let reps: usize = env_or("ASYNC_BENCH_PINGPONG_REPS", 1).max(1);
    println!(
        "\n## Ping-pong: 64-byte messages, {WARMUP_RTTS} warm-up round trips, then up to {rtts} (or {} s); \
         client {}{}\n",
        PINGPONG_BUDGET.as_secs(),
        match topology {
            Topology::Workers => "a task on the runtime's workers",
            Topology::Main => "on the main thread (`block_on`)",
            Topology::Processes =>
                "a task on the runtime's workers, echo server in a child process (its own runtime)",
            Topology::Turns =>
                "a task on the runtime's workers, every row's connection on that one runtime, \
                 one round trip on each in turn (`preempted`: the whole run's)",
            Topology::TurnsProcesses =>
                "a task on the runtime's workers, every row's connection on that one runtime, \
                 one round trip on each in turn, each echo server in a child process of its own \
                 (`preempted`: the whole run's, this process)",
        },
        if reps > 1 {
            format!("; {reps} interleaved runs per row")
        } else {
            String::new()
        }
    );
    println!("| implementation | settings | round trips | p50 µs | p99 µs | p99.9 µs | max µs | mean µs | preempted |");
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let cases = cases();
    // Per case, the results of its runs.
    let mut results: Vec<Vec<Option<PingPong>>> = cases.iter().map(|_| Vec::new()).collect();
    for rep in 0..reps {
        let mut order: Vec<usize> = (0..cases.len()).collect();
        if rep % 2 == 1 {
            order.reverse();
        }
        let turns = matches!(topology, Topology::Turns | Topology::TurnsProcesses);
        let runs: Vec<(usize, Result<PingPong, String>)> = if turns {
            let processes = topology == Topology::TurnsProcesses;
            order
                .iter()
                .copied()
                .zip(pingpong_turns(&cases, &order, rtts, processes))
                .collect()
        } else {
            order
                .into_iter()
                .map(|i| (i, pingpong_run(i, &cases[i], topology, rtts)))
                .collect()
        };
        for (i, r) in runs {
            let case = &cases[i];
            match &r {
                Ok(p) => println!(
                    "| {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {} |",
                    case.name,
                    case.settings,
                    p.round_trips,
                    p.p50,
                    p.p99,
                    p.p999,
                    p.max,
                    p.mean,
                    p.preempted
                ),
                Err(f) => println!("| {} | {} | {f} | | | | | | |", case.name, case.settings),
            }
            results[i].push(r.ok());
        }
    }
    if reps > 1 {
        pingpong_summary(&cases, &results);
    }
}

/// Medians over the repetitions, and ours against tokio_kcp run by run.
fn pingpong_summary(cases: &[Case], results: &[Vec<Option<PingPong>>]) {
    fn median(mut v: Vec<f64>) -> String {
        if v.is_empty() {
            return "-".into();
        }
        v.sort_by(f64::total_cmp);
        format!("{:.0}", v[v.len() / 2])
    }
    println!(
        "\n| implementation | settings | runs | p50 µs median | p99 µs median | p99 µs per run | preempted median |"
    );
    println!("| --- | --- | ---: | ---: | ---: | --- | ---: |");
    for (case, runs) in cases.iter().zip(results) {
        let ok: Vec<&PingPong> = runs.iter().flatten().collect();
        let per_run = runs
            .iter()
            .map(|r| {
                r.as_ref()
                    .map_or("failed".into(), |p| format!("{:.0}", p.p99))
            })
            .collect::<Vec<_>>()
            .join(", ");
        println!(
            "| {} | {} | {} | {} | {} | {per_run} | {} |",
            case.name,
            case.settings,
            ok.len(),
            median(ok.iter().map(|p| p.p50).collect()),
            median(ok.iter().map(|p| p.p99).collect()),
            median(ok.iter().map(|p| p.preempted as f64).collect()),
        );
    }
    let first = |prefix: &str| cases.iter().position(|c| c.name.starts_with(prefix));
    if let (Some(o), Some(t)) = (first("kcp_rs"), first("tokio_kcp")) {
        let runs: Vec<(&PingPong, &PingPong)> = results[o]
            .iter()
            .zip(&results[t])
            .filter_map(|(a, b)| Some((a.as_ref()?, b.as_ref()?)))
            .collect();
        println!(
            "\nours (\"{}\") vs tokio_kcp (\"{}\"), p99 run by run: {}",
            cases[o].settings,
            cases[t].settings,
            p99_verdict(&runs)
        );
        // A pair whose p50 is far below the other's in the same run had the
        // machine's faster placement (across processes on two CPUs: about
        // 30 against 60 µs), which then decides the run's p99 too.
        let far = PLACEMENT_P50_RATIO;
        // Level, ours far lower, tokio_kcp far lower.
        let mut by_p50: [Vec<(&PingPong, &PingPong)>; 3] = Default::default();
        for &(a, b) in &runs {
            let r = a.p50 / b.p50;
            let i = if r <= 1.0 / far {
                1
            } else if r >= far {
                2
            } else {
                0
            };
            by_p50[i].push((a, b));
        }
        println!(
            "by the runs' p50s: level (within {far}x): {}; ours far lower: {}; tokio_kcp far lower: {}",
            p99_verdict(&by_p50[0]),
            p99_verdict(&by_p50[1]),
            p99_verdict(&by_p50[2]),
        );
    }
}

/// Two pairs' p50s this far apart in one run had different placements on
/// the machine's CPUs (see `pingpong_summary`).
const PLACEMENT_P50_RATIO: f64 = 1.4;

/// "ours lower in n of m runs; median of ours ÷ tokio_kcp r", for runs of
/// (ours, tokio_kcp).
fn p99_verdict(runs: &[(&PingPong, &PingPong)]) -> String {
    let lower = runs.iter().filter(|(a, b)| a.p99 < b.p99).count();
    let mut ratios: Vec<f64> = runs.iter().map(|(a, b)| a.p99 / b.p99).collect();
    ratios.sort_by(f64::total_cmp);
    let median = ratios
        .get(ratios.len() / 2)
        .map_or("-".into(), |r| format!("{r:.2}"));
    format!(
        "ours lower in {lower} of {} runs; median of ours ÷ tokio_kcp {median}",
        runs.len()
    )
}

/// One ping-pong row on a fresh runtime.
fn pingpong_run(
    index: usize,
    case: &Case,
    topology: Topology,
    rtts: usize,
) -> Result<PingPong, String> {
    // The echo server of `Topology::Processes`, killed when this returns.
    let mut server = None;
    let mut server_addr = None;
    if topology == Topology::Processes {
        let (child, addr) = echo_server(index)?;
        server_addr = Some(addr);
        server = Some(child);
    }
    let rt = runtime();
    let (imp, name) = (case.imp.clone(), case.name);
    let client = async move {
        let (mut c, local) = client_conn(&imp, name, server_addr).await;
        let mut samples = Vec::with_capacity(rtts);
        let mut msg = [0u8; 64];
        let mut back = [0u8; 64];
        let start = Instant::now();
        let mut i = 0u64;
        let mut failure = None;
        let mut preempted_at_start = 0;
        while samples.len() < rtts && start.elapsed() < PINGPONG_BUDGET + Duration::from_secs(1) {
            msg[..8].copy_from_slice(&i.to_le_bytes());
            if i == WARMUP_RTTS as u64 {
                preempted_at_start = preemptions();
            }
            let d = match round_trip(&mut c, &msg, &mut back).await {
                Ok(d) => d,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            };
            assert_eq!(back, msg, "{name}: echo differs");
            if i >= WARMUP_RTTS as u64 {
                samples.push(d);
                if start.elapsed() > PINGPONG_BUDGET {
                    break;
                }
            }
            i += 1;
        }
        let preempted = preemptions().saturating_sub(preempted_at_start);
        drop(local);
        (samples, failure, preempted)
    };
    let r = match topology {
        Topology::Main => rt.block_on(client),
        _ => on_workers(&rt, client),
    };
    rt.shutdown_timeout(Duration::from_secs(2));
    drop(server);
    let (samples, failure, preempted) = r;
    outcome(case, samples, failure, preempted)
}

/// A row's result: why it failed, or its percentiles.
fn outcome(
    case: &Case,
    samples: Vec<Duration>,
    failure: Option<String>,
    preempted: u64,
) -> Result<PingPong, String> {
    match failure {
        Some(f) => Err(format!("{} then {f}", samples.len())),
        None if samples.is_empty() => Err("0 (warm-up took the budget)".into()),
        None => Ok(summarize(case, samples, preempted)),
    }
}

/// The server side of a connection made by [`pair`]: the listener and the
/// echo task, stopped when dropped.
struct LocalEcho {
    _guard: Guard,
    echo: tokio::task::JoinHandle<()>,
}

impl Drop for LocalEcho {
    fn drop(&mut self) {
        self.echo.abort();
    }
}

/// A client connection for `imp`: to the echo server at `addr` (a child
/// process), or without one, through [`pair`], with the server side
/// answered by an echo task on this runtime.
async fn client_conn(imp: &Imp, name: &str, addr: Option<SocketAddr>) -> (Conn, Option<LocalEcho>) {
    match addr {
        Some(addr) => {
            let c = timeout(CONNECT_TIMEOUT, connect(imp, addr))
                .await
                .expect("connect timed out")
                .unwrap_or_else(|e| panic!("{name}: connect: {e}"));
            (c, None)
        }
        None => {
            let (c, s, guard) = timeout(CONNECT_TIMEOUT, pair(imp))
                .await
                .expect("connect timed out")
                .unwrap_or_else(|e| panic!("{name}: connect: {e}"));
            let echo = tokio::spawn(echo(s));
            (
                c,
                Some(LocalEcho {
                    _guard: guard,
                    echo,
                }),
            )
        }
    }
}

/// `ASYNC_BENCH_ECHO_ROWS` (e.g. `2,1`): for the `i`-th row run, the
/// 1-based position among the rows run whose implementation answers it in
/// [`Topology::TurnsProcesses`], so that a client can be measured against
/// the other implementation's server (both speak plain KCP). Default: its
/// own.
fn echo_row(i: usize) -> usize {
    std::env::var("ASYNC_BENCH_ECHO_ROWS")
        .ok()
        .and_then(|v| v.split(',').nth(i)?.trim().parse::<usize>().ok())
        .map_or(i, |r| r.saturating_sub(1))
}

/// The echo server of row `index` in a child process (killed when the
/// handle is dropped), and its address.
fn echo_server(index: usize) -> Result<(ChildLines, SocketAddr), String> {
    let child = ChildLines::spawn(&format!("echo:{index}"), 1, 0);
    let Some(line) = child.wait_for("LISTENING ", Duration::from_secs(30)) else {
        return Err("echo server did not start".into());
    };
    let addr = line["LISTENING ".len()..]
        .parse::<SocketAddr>()
        .expect("address");
    Ok((child, addr))
}

/// One 64-byte round trip (write, flush, read the echo) and how long it
/// took, or why it failed; at most 5 s.
async fn round_trip(c: &mut Conn, msg: &[u8; 64], back: &mut [u8; 64]) -> Result<Duration, String> {
    let t = Instant::now();
    let one = async {
        c.write_all(msg).await?;
        c.flush().await?;
        c.read_exact(back).await?;
        io::Result::Ok(())
    };
    match timeout(Duration::from_secs(5), one).await {
        Ok(Ok(())) => Ok(t.elapsed()),
        Ok(Err(e)) => Err(format!("failed: {e}")),
        Err(_) => Err("a round trip took over 5 s".into()),
    }
}

/// [`Topology::Turns`] and [`Topology::TurnsProcesses`]: the rows `order`
/// names, each with a connection of its own on one fresh runtime (and,
/// with `processes`, each echo server in a child process of its own),
/// measured one round trip on each in turn (`ASYNC_BENCH_TURN` round trips
/// with it). Results in `order`'s order.
fn pingpong_turns(
    cases: &[Case],
    order: &[usize],
    rtts: usize,
    processes: bool,
) -> Vec<Result<PingPong, String>> {
    let mut servers = Vec::new();
    let mut addrs = vec![None; order.len()];
    if processes {
        for (&i, addr) in order.iter().zip(&mut addrs) {
            match echo_server(echo_row(i)) {
                Ok((child, a)) => {
                    servers.push(child);
                    *addr = Some(a);
                }
                Err(e) => return order.iter().map(|_| Err(e.clone())).collect(),
            }
        }
    }
    let rt = runtime();
    let imps: Vec<(Imp, &'static str, Option<SocketAddr>)> = order
        .iter()
        .zip(addrs)
        .map(|(&i, addr)| (cases[i].imp.clone(), cases[i].name, addr))
        .collect();
    let n = imps.len();
    let turn = env_or("ASYNC_BENCH_TURN", 1).max(1);
    let client = async move {
        let mut conns = Vec::with_capacity(n);
        let mut locals = Vec::with_capacity(n);
        for (imp, name, addr) in &imps {
            let (c, local) = client_conn(imp, name, *addr).await;
            conns.push(c);
            locals.push(local);
        }
        // Not `vec![…; n]`: a cloned `Vec` keeps none of the capacity.
        let mut samples: Vec<Vec<Duration>> = (0..n).map(|_| Vec::with_capacity(rtts)).collect();
        let mut failure: Vec<Option<String>> = vec![None; n];
        let mut msg = [0u8; 64];
        let mut back = [0u8; 64];
        let start = Instant::now();
        let mut preempted_at_start = 0;
        let total = (WARMUP_RTTS + rtts) as u64;
        'rounds: for first in (0..total).step_by(turn) {
            for (k, c) in conns.iter_mut().enumerate() {
                for i in first..(first + turn as u64).min(total) {
                    if i == WARMUP_RTTS as u64 && k == 0 {
                        preempted_at_start = preemptions();
                    }
                    if start.elapsed() > PINGPONG_BUDGET * n as u32 {
                        break 'rounds;
                    }
                    msg[..8].copy_from_slice(&i.to_le_bytes());
                    let d = match round_trip(c, &msg, &mut back).await {
                        Ok(d) => d,
                        Err(e) => {
                            failure[k] = Some(e);
                            break 'rounds;
                        }
                    };
                    assert_eq!(back, msg, "{}: echo differs", imps[k].1);
                    if i >= WARMUP_RTTS as u64 {
                        samples[k].push(d);
                    }
                }
            }
        }
        let preempted = preemptions().saturating_sub(preempted_at_start);
        drop(locals);
        (samples, failure, preempted)
    };
    let (samples, failure, preempted) = on_workers(&rt, client);
    rt.shutdown_timeout(Duration::from_secs(2));
    drop(servers);
    order
        .iter()
        .zip(samples.into_iter().zip(failure))
        .map(|(&i, (samples, failure))| outcome(&cases[i], samples, failure, preempted))
        .collect()
}

/// Percentiles of one row's round trips (and, with `ASYNC_BENCH_DIST`,
/// the distribution on stderr).
fn summarize(case: &Case, mut samples: Vec<Duration>, preempted: u64) -> PingPong {
    if let Some(dir) = std::env::var_os("ASYNC_BENCH_SERIES") {
        write_series(std::path::Path::new(&dir), case, &samples);
    }
    samples.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let pct = |p: f64| us(samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)]);
    if std::env::var_os("ASYNC_BENCH_DIST").is_some() {
        let ps = [0.10, 0.50, 0.80, 0.90, 0.95, 0.97, 0.98, 0.99, 0.995];
        let v: Vec<String> = ps.iter().map(|&p| format!("{:.1}", pct(p))).collect();
        // The tail as shares rather than one quantile: the p99 jumps when
        // the share above a few µs more than the body crosses 1%.
        let share =
            |t: f64| samples.iter().filter(|d| us(**d) > t).count() as f64 / samples.len() as f64;
        let over: Vec<String> = [17.0, 20.0, 25.0]
            .iter()
            .map(|&t| format!(">{t}: {:.2}%", 100.0 * share(t)))
            .collect();
        eprintln!(
            "dist {} ({}): {} | {}",
            case.name,
            case.settings,
            v.join(" "),
            over.join(" ")
        );
    }
    PingPong {
        round_trips: samples.len(),
        preempted,
        p50: pct(0.50),
        p99: pct(0.99),
        p999: pct(0.999),
        max: us(samples[samples.len() - 1]),
        mean: samples.iter().map(|d| us(*d)).sum::<f64>() / samples.len() as f64,
    }
}

/// `ASYNC_BENCH_SERIES`: one run's round trips in the order they happened
/// (µs, one per line) to `dir/NNN-<row>.txt`, NNN counting the runs of
/// this process, for `scripts/pingpong-phases.py`.
fn write_series(dir: &std::path::Path, case: &Case, samples: &[Duration]) {
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let row: String = case
        .name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let body: String = samples
        .iter()
        .map(|d| format!("{:.2}\n", d.as_secs_f64() * 1e6))
        .collect();
    let file = dir.join(format!("{run:03}-{row}.txt"));
    if let Err(e) = std::fs::write(&file, body) {
        eprintln!("ASYNC_BENCH_SERIES: {}: {e}", file.display());
    }
}

/// Echoes 64-byte messages until the connection fails.
async fn echo(mut s: Conn) {
    let mut b = [0u8; 64];
    loop {
        if s.read_exact(&mut b).await.is_err() {
            break;
        }
        if s.write_all(&b).await.is_err() || s.flush().await.is_err() {
            break;
        }
    }
}

/// A client connection to `addr`.
async fn connect(imp: &Imp, addr: SocketAddr) -> io::Result<Conn> {
    Ok(match imp {
        Imp::Ours(cfg) => Box::new(KcpStream::connect(addr, cfg.clone()).await?),
        Imp::TokioKcp { cfg, sock_buf } => {
            let u = udp_socket(localhost(), *sock_buf)?;
            Box::new(
                tokio_kcp::KcpStream::connect_with_socket(cfg, u, addr)
                    .await
                    .map_err(io::Error::from)?,
            )
        }
        Imp::Tcp => {
            let c = tokio::net::TcpStream::connect(addr).await?;
            c.set_nodelay(true)?;
            Box::new(c)
        }
    })
}

/// The child process of `Topology::Processes`: listens with row `index`'s
/// implementation, prints `LISTENING <addr>` and echoes every connection
/// until the parent kills it.
fn echo_child(index: usize) {
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(120));
        std::process::exit(3);
    });
    // `index` counts the rows the parent runs; the child inherits its
    // environment, `ASYNC_BENCH_ROWS` included, so `cases()` is the same list.
    let imp = cases()[index].imp.clone();
    if let Ok(cpus) = std::env::var("ASYNC_BENCH_ECHO_CPUS") {
        pin_to(&cpus);
    }
    let rt = runtime();
    rt.block_on(async move {
        let (addr, _guard): (SocketAddr, Guard) = match imp {
            Imp::Ours(cfg) => {
                let l = KcpListener::bind(localhost(), cfg).await.expect("bind");
                let addr = l.local_addr().expect("local_addr");
                let task = tokio::spawn(async move {
                    while let Ok((s, _)) = l.accept().await {
                        tokio::spawn(echo(Box::new(s)));
                    }
                });
                (addr, Box::new(task))
            }
            Imp::TokioKcp { cfg, sock_buf } => {
                let udp = udp_socket(localhost(), sock_buf).expect("bind");
                let mut l = tokio_kcp::KcpListener::from_socket(cfg, udp)
                    .await
                    .expect("listener");
                let addr = l.local_addr().expect("local_addr");
                let task = tokio::spawn(async move {
                    while let Ok((s, _)) = l.accept().await {
                        tokio::spawn(echo(Box::new(s)));
                    }
                });
                (addr, Box::new(task))
            }
            Imp::Tcp => {
                let l = tokio::net::TcpListener::bind(localhost())
                    .await
                    .expect("bind");
                let addr = l.local_addr().expect("local_addr");
                let task = tokio::spawn(async move {
                    while let Ok((s, _)) = l.accept().await {
                        if s.set_nodelay(true).is_ok() {
                            tokio::spawn(echo(Box::new(s)));
                        }
                    }
                });
                (addr, Box::new(task))
            }
        };
        println!("LISTENING {addr}");
        std::future::pending::<()>().await;
    });
}

// ----- 3. idle sessions ---------------------------------------------------------

/// The implementation the idle children run, by name.
fn idle_imp(name: &str, n: usize) -> Imp {
    match name {
        "ours" => Imp::Ours(SessionConfig {
            max_sessions: n + 10,
            max_sessions_per_ip: n + 10,
            accept_backlog: 1024,
            ..SessionConfig::default()
        }),
        "tokio_kcp" => Imp::TokioKcp {
            cfg: tokio_kcp_like_our_default(),
            sock_buf: None,
        },
        _ => panic!("unknown implementation {name}"),
    }
}

/// Pins this process's main thread, and so the threads it starts from now
/// on (the runtime's workers), to the CPUs in `cpus` (`taskset`'s list
/// syntax). Panics if `taskset` fails: a run that asked for pinning must
/// not measure unpinned.
fn pin_to(cpus: &str) {
    let status = Command::new("taskset")
        .args(["-p", "-c", cpus, &std::process::id().to_string()])
        .stdout(Stdio::null())
        .status()
        .expect("running taskset (util-linux)");
    assert!(status.success(), "taskset -p -c {cpus} failed: {status}");
}

struct ChildLines {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl ChildLines {
    fn spawn(role: &str, n: usize, idle: usize) -> ChildLines {
        let mut child = Command::new(std::env::current_exe().expect("current_exe"))
            .env("ASYNC_BENCH_CHILD", role)
            .env("ASYNC_BENCH_SESSIONS", n.to_string())
            .env("ASYNC_BENCH_IDLE_SECS", idle.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("child stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        ChildLines { child, lines }
    }

    fn wait_for(&self, prefix: &str, within: Duration) -> Option<String> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.starts_with(prefix) => return Some(l),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    }

    fn go(&mut self) {
        if let Some(stdin) = self.child.stdin.as_mut() {
            let _ = writeln!(stdin, "go");
        }
    }
}

impl Drop for ChildLines {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn field(line: &str, name: &str) -> String {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        .unwrap_or("?")
        .to_string()
}

fn idle_table() {
    let n: usize = env_or("ASYNC_BENCH_SESSIONS", 10_000);
    let idle: usize = env_or("ASYNC_BENCH_IDLE_SECS", 10);
    println!(
        "\n## Idle: {n} sessions on one listener, one message each way, then {idle} s idle\n\n\
         Listener and clients each in a child process (2 tokio worker threads); RSS growth from \
         before binding/connecting to after the exchange (+2 s), CPU (utime+stime) over the idle \
         period in % of one core.\n"
    );
    println!(
        "| implementation | settings | sessions held | set-up s | listener RSS Δ MiB | KiB/session | \
         listener CPU % | clients RSS Δ MiB | clients CPU % |"
    );
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let mut note = String::new();
    for (name, settings) in [
        ("ours", "`SessionConfig::default()`, `max_sessions` and `max_sessions_per_ip` raised to sessions + 10"),
        ("tokio_kcp", "nodelay(1,20,2,1), wnd 128, message mode, flush_write, flush_acks_input"),
    ] {
        let label = if name == "ours" { "kcp_rs::net" } else { "tokio_kcp 0.9" };
        let mut listener = ChildLines::spawn(&format!("listener:{name}"), n, idle);
        let Some(addr) = listener.wait_for("LISTENING ", Duration::from_secs(30)) else {
            println!("| {label} | {settings} | listener did not start | | | | | | |");
            continue;
        };
        let addr = addr["LISTENING ".len()..].to_string();
        let mut clients = ChildLines::spawn(&format!("clients:{name}:{addr}"), n, idle);
        let Some(ready) = clients.wait_for("READY ", Duration::from_secs(150)) else {
            println!("| {label} | {settings} | clients not ready within 150 s | | | | | | |");
            continue;
        };
        listener.go();
        clients.go();
        let within = Duration::from_secs(idle as u64 + 60);
        let l = listener.wait_for("RESULT ", within).unwrap_or_default();
        let c = clients.wait_for("RESULT ", within).unwrap_or_default();
        println!(
            "| {label} | {settings} | {} (clients: {} ok, {} failed) | {} | {} | {} | {} | {} | {} |",
            field(&l, "sessions"),
            field(&ready, "connected"),
            field(&ready, "failed"),
            field(&ready, "secs"),
            field(&l, "rss_mib"),
            field(&l, "kib_per_session"),
            field(&l, "cpu_percent"),
            field(&c, "rss_mib"),
            field(&c, "cpu_percent"),
        );
        if name == "ours" {
            note = format!(
                "\nkcp_rs::net listener datagrams during the idle period: {} in, {} out",
                field(&l, "datagrams_in"),
                field(&l, "datagrams_out")
            );
        }
    }
    println!("{note}");
}

/// A child process: `listener:<imp>` or `clients:<imp>:<addr>`.
fn idle_child(role: &str) {
    // Never outlive the parent for long.
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(300));
        std::process::exit(3);
    });
    let n: usize = env_or("ASYNC_BENCH_SESSIONS", 10_000);
    let idle: u64 = env_or("ASYNC_BENCH_IDLE_SECS", 10);
    let mut parts = role.splitn(3, ':');
    let side = parts.next().unwrap_or("");
    let imp = idle_imp(parts.next().unwrap_or(""), n);
    let rss0 = rss_kib();
    let rt = runtime();
    let held: Arc<Mutex<Vec<Conn>>> = Arc::new(Mutex::new(Vec::with_capacity(n)));
    let mut guard: Option<Guard> = None;
    let mut ours_listener: Option<Arc<KcpListener>> = None;
    match side {
        "listener" => {
            let (addr, g) = rt.block_on(idle_listen(&imp, held.clone(), &mut ours_listener));
            guard = Some(g);
            println!("LISTENING {addr}");
        }
        "clients" => {
            let addr: SocketAddr = parts
                .next()
                .and_then(|a| a.parse().ok())
                .expect("listener address");
            let start = Instant::now();
            let failed = rt.block_on(idle_connect(&imp, addr, n, held.clone()));
            println!(
                "READY connected={} failed={failed} secs={:.1}",
                held.lock().map(|v| v.len()).unwrap_or(0),
                start.elapsed().as_secs_f64()
            );
        }
        _ => panic!("unknown role {role}"),
    }
    // Wait for "go" (every client has exchanged its message).
    let mut line = String::new();
    let _ = io::stdin().read_line(&mut line);
    std::thread::sleep(Duration::from_secs(2));
    let rss1 = rss_kib();
    let stats0 = ours_listener.as_ref().map(|l| l.stats());
    let cpu0 = cpu_time();
    std::thread::sleep(Duration::from_secs(idle));
    let cpu = (cpu_time() - cpu0).as_secs_f64();
    let sessions = held.lock().map(|v| v.len()).unwrap_or(0);
    let mut extra = String::new();
    if let (Some(l), Some(s0)) = (&ours_listener, stats0) {
        let s1 = l.stats();
        extra = format!(
            " datagrams_in={} datagrams_out={}",
            s1.datagrams_in - s0.datagrams_in,
            s1.datagrams_out - s0.datagrams_out
        );
    }
    println!(
        "RESULT sessions={sessions} rss_mib={:.1} kib_per_session={:.1} cpu_percent={:.2}{extra}",
        rss1.saturating_sub(rss0) as f64 / 1024.0,
        rss1.saturating_sub(rss0) as f64 / n.max(1) as f64,
        cpu / idle as f64 * 100.0,
    );
    drop(guard);
    // Exit without tearing 10 000 sessions down one by one.
    std::process::exit(0);
}

/// Binds, and accepts in the background: each session reads 4 bytes,
/// echoes them and is kept in `held`.
async fn idle_listen(
    imp: &Imp,
    held: Arc<Mutex<Vec<Conn>>>,
    ours_out: &mut Option<Arc<KcpListener>>,
) -> (SocketAddr, Guard) {
    fn keep(held: Arc<Mutex<Vec<Conn>>>, mut s: Conn) {
        tokio::spawn(async move {
            let mut b = [0u8; 4];
            let ok = timeout(Duration::from_secs(30), async {
                s.read_exact(&mut b).await?;
                s.write_all(&b).await?;
                s.flush().await
            })
            .await;
            if matches!(ok, Ok(Ok(()))) {
                if let Ok(mut v) = held.lock() {
                    v.push(s);
                }
            }
        });
    }
    match imp {
        Imp::Ours(cfg) => {
            let l = Arc::new(
                KcpListener::bind(localhost(), cfg.clone())
                    .await
                    .expect("bind"),
            );
            let addr = l.local_addr().expect("local_addr");
            *ours_out = Some(l.clone());
            let task = tokio::spawn(async move {
                while let Ok((s, _)) = l.accept().await {
                    keep(held.clone(), Box::new(s));
                }
            });
            (addr, Box::new(task))
        }
        Imp::TokioKcp { cfg, sock_buf } => {
            let udp = udp_socket(localhost(), *sock_buf).expect("bind");
            let mut l = tokio_kcp::KcpListener::from_socket(*cfg, udp)
                .await
                .expect("listener");
            let addr = l.local_addr().expect("local_addr");
            let task = tokio::spawn(async move {
                while let Ok((s, _)) = l.accept().await {
                    keep(held.clone(), Box::new(s));
                }
            });
            (addr, Box::new(task))
        }
        Imp::Tcp => unreachable!("no idle run for TCP"),
    }
}

/// Opens `n` sessions to `addr`, 64 at a time; each sends 4 bytes and
/// waits for their echo. Returns how many failed.
async fn idle_connect(imp: &Imp, addr: SocketAddr, n: usize, held: Arc<Mutex<Vec<Conn>>>) -> usize {
    let mut failed = 0;
    let mut next = 0usize;
    let mut set = tokio::task::JoinSet::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while next < n || !set.is_empty() {
        while next < n && set.len() < 64 {
            let imp = imp.clone();
            let i = next as u32;
            set.spawn(async move {
                timeout(Duration::from_secs(20), async move {
                    let mut c = connect(&imp, addr).await?;
                    c.write_all(&i.to_le_bytes()).await?;
                    c.flush().await?;
                    let mut b = [0u8; 4];
                    c.read_exact(&mut b).await?;
                    if b != i.to_le_bytes() {
                        return Err(io::Error::other("echo differs"));
                    }
                    io::Result::Ok(c)
                })
                .await
            });
            next += 1;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match timeout(left, set.join_next()).await {
            Ok(Some(Ok(Ok(Ok(c))))) => {
                if let Ok(mut v) = held.lock() {
                    v.push(c);
                }
            }
            Ok(Some(_)) => failed += 1,
            Ok(None) => break,
            Err(_) => {
                // Out of time: count what is still pending as failed.
                failed += set.len() + (n - next);
                set.abort_all();
                break;
            }
        }
    }
    failed
}

// ----- helpers ----------------------------------------------------------------

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Involuntary context switches of all this process's threads so far: how
/// often the OS gave a CPU to someone else while a thread could still run
/// (on a shared machine, the main source of ping-pong outliers). Linux
/// only; 0 elsewhere.
fn preemptions() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .filter_map(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("nonvoluntary_ctxt_switches:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
        })
        .sum()
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}
