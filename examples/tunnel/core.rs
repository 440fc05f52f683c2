//! TCP over KCP, as kcptun does it: the logic of the `tunnel` example, kept
//! apart from its command line so that `tests/tunnel.rs` runs the same code.
//!
//! ```text
//!  app ──TCP──▶ tunnel client ══ KCP over UDP (one session per TCP connection) ══▶ tunnel server ──TCP──▶ target
//! ```
//!
//! # Wire format
//! KCP has no FIN and no "connection refused": a session just goes quiet.
//! So each session carries frames ([`LengthDelimitedCodec`]: a 4-byte
//! big-endian length, then the frame), the first byte of a frame being its
//! kind:
//!
//! | kind | from | meaning |
//! |---|---|---|
//! | `OPEN` (0) + version | client | first frame: opens the session at once, so that a target that speaks first (SSH, SMTP) is reached before the app writes anything |
//! | `DATA` (1) + bytes | both | bytes read from the sender's TCP side |
//! | `FIN` (2) | both | the sender's TCP side reached end of file: shut down the write side of ours |
//! | `RST` (3) | both | the sender's TCP side failed, or the target could not be reached: drop ours |
//!
//! A connection is done when both directions have passed a `FIN` (or one
//! failed). Both ends must use stream mode, the same MTU and the same FEC
//! shard counts (or both none); every session config made by
//! [`session_config`] with the same arguments does.
//!
//! # Back-pressure
//! Each direction is one loop that reads a chunk and awaits its write: a
//! slow TCP reader stops the KCP reader, whose queue fills, which closes
//! KCP's receive window, which stops the peer; a slow KCP link makes the
//! KCP write wait, which stops reading TCP. Nothing buffers without bound.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use kcp_rs::net::{KcpListener, KcpStream, OwnedReadHalf, OwnedWriteHalf, SessionConfig};
use kcp_rs::{KcpConfig, SessionStats};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};

/// Kind of an `OPEN` frame.
const OPEN: u8 = 0;
/// Kind of a `DATA` frame.
const DATA: u8 = 1;
/// Kind of a `FIN` frame.
const FIN: u8 = 2;
/// Kind of an `RST` frame.
const RST: u8 = 3;
/// Protocol version carried by `OPEN`.
const VERSION: u8 = 1;
/// Bytes read from TCP per `DATA` frame at most.
const CHUNK: usize = 32 * 1024;
/// How long the server waits for a session's `OPEN`, and for the target's
/// TCP connect.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// The KCP preset of a tunnel (`--mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// ikcp's fast mode ([`KcpConfig::fast`]): `nodelay`, 20 ms interval,
    /// fast resend after 2 duplicate ACKs, no congestion control.
    Fast,
    /// ikcp's defaults ([`KcpConfig::default`]): 100 ms interval, RTO
    /// doubling, congestion control. Polite, and slow on a lossy path.
    Normal,
}

impl FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Mode, String> {
        match s {
            "fast" => Ok(Mode::Fast),
            "normal" => Ok(Mode::Normal),
            _ => Err(format!("unknown mode {s:?}: use fast or normal")),
        }
    }
}

/// The session configuration both ends of a tunnel use: `mode`'s preset in
/// stream mode, with the given MTU and windows (in segments), and `fec`'s
/// `(data, parity)` shards of Reed-Solomon FEC (kcp-go's framing; its
/// 8 bytes of header come out of `mtu`).
///
/// # Errors
/// `InvalidInput` when the result cannot work (see
/// [`SessionConfig::validate`]); `Unsupported` for `fec` in a build
/// without the `fec` feature.
pub fn session_config(
    mode: Mode,
    mtu: u32,
    snd_wnd: u16,
    rcv_wnd: u16,
    fec: Option<(usize, usize)>,
) -> io::Result<SessionConfig> {
    let preset = match mode {
        Mode::Fast => KcpConfig::fast(),
        Mode::Normal => KcpConfig::default(),
    };
    let config = SessionConfig {
        kcp: KcpConfig {
            mtu,
            snd_wnd,
            rcv_wnd,
            stream: true,
            ..preset
        },
        #[cfg(feature = "fec")]
        fec: fec
            .map(|(k, m)| kcp_rs::fec::FecConfig::new(k, m))
            .transpose()?,
        ..SessionConfig::default()
    };
    #[cfg(not(feature = "fec"))]
    if let Some((k, m)) = fec {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "--fec {k},{m} needs the `fec` feature, which this build lacks: \
                 cargo run --release --features fec --example tunnel -- ... --fec {k},{m}"
            ),
        ));
    }
    config.validate()?;
    Ok(config)
}

/// Parses `--fec K,M`: `K` data and `M` parity shards per group.
///
/// # Errors
/// A message for the command line when `s` is not two positive counts
/// summing to at most 256.
pub fn parse_fec(s: &str) -> Result<(usize, usize), String> {
    let err = || format!("{s:?} is not K,M (data and parity shards, e.g. 4,2)");
    let (k, m) = s.split_once(',').ok_or_else(err)?;
    let k: usize = k.trim().parse().map_err(|_| err())?;
    let m: usize = m.trim().parse().map_err(|_| err())?;
    if k == 0 || m == 0 || k + m > 256 {
        return Err("FEC needs K >= 1, M >= 1 and K + M <= 256".into());
    }
    Ok((k, m))
}

/// Accepts TCP connections on `tcp` and carries each over its own KCP
/// session to the tunnel server at `server`. Runs until `tcp` fails.
///
/// # Errors
/// When accepting a TCP connection fails.
pub async fn run_client(
    tcp: TcpListener,
    server: SocketAddr,
    config: SessionConfig,
    stats: Arc<TunnelStats>,
) -> io::Result<()> {
    loop {
        let (conn, peer) = tcp.accept().await?;
        let (config, stats) = (config.clone(), stats.clone());
        tokio::spawn(async move {
            if let Err(e) = client_conn(conn, server, config, &stats).await {
                stats.failed.fetch_add(1, Relaxed);
                eprintln!("tunnel: connection from {peer}: {e}");
            }
        });
    }
}

/// Accepts KCP sessions on `listener` and connects each to the TCP
/// address `target`. Runs until the listener fails.
///
/// # Errors
/// When the listener's socket task has ended.
pub async fn run_server(
    listener: KcpListener,
    target: String,
    stats: Arc<TunnelStats>,
) -> io::Result<()> {
    let target = Arc::<str>::from(target);
    loop {
        let (kcp, peer) = listener.accept().await?;
        let (target, stats) = (target.clone(), stats.clone());
        tokio::spawn(async move {
            if let Err(e) = server_conn(kcp, &target, &stats).await {
                stats.failed.fetch_add(1, Relaxed);
                eprintln!("tunnel: session from {peer}: {e}");
            }
        });
    }
}

/// Counters of a tunnel, live sessions included; shared by its connections.
#[derive(Debug, Default)]
pub struct TunnelStats {
    /// Connections that ended with an error (unreachable target, dead link,
    /// reset).
    pub failed: AtomicU64,
    /// Bytes read from TCP and sent through KCP.
    pub bytes_to_kcp: AtomicU64,
    /// Bytes received through KCP and written to TCP.
    pub bytes_to_tcp: AtomicU64,
    /// The FEC shard counts the sessions use, for [`report`](Self::report).
    fec: Option<(usize, usize)>,
    sessions: Mutex<Sessions>,
}

#[derive(Debug, Default)]
struct Sessions {
    next_id: u64,
    opened: u64,
    live: HashMap<u64, SessionStats>,
    /// Counters of the sessions that ended, summed.
    closed: SessionStats,
}

impl TunnelStats {
    /// Counters for a tunnel whose sessions use `fec` (see
    /// [`session_config`]); [`Default`] is for a tunnel without FEC.
    pub fn new(fec: Option<(usize, usize)>) -> TunnelStats {
        TunnelStats {
            fec,
            ..TunnelStats::default()
        }
    }

    /// Connections opened so far.
    pub fn opened(&self) -> u64 {
        self.lock().opened
    }

    /// Connections open now.
    pub fn active(&self) -> usize {
        self.lock().live.len()
    }

    /// The KCP counters of every session, ended and live, summed (`rtt_ms`
    /// is the largest of the live sessions').
    pub fn kcp_totals(&self) -> SessionStats {
        let s = self.lock();
        let mut sum = s.closed;
        for st in s.live.values() {
            add(&mut sum, st);
            sum.rtt_ms = sum.rtt_ms.max(st.rtt_ms);
        }
        sum
    }

    /// One paragraph for a person: connections, bytes, RTT, loss repair
    /// (retransmissions, and datagrams FEC rebuilt).
    pub fn report(&self) -> String {
        let s = self.lock();
        let mut sum = s.closed;
        let (mut rtt_sum, mut rtt_max) = (0u64, 0u32);
        for st in s.live.values() {
            add(&mut sum, st);
            rtt_sum += st.rtt_ms as u64;
            rtt_max = rtt_max.max(st.rtt_ms);
        }
        let mut out = format!(
            "connections: {} active, {} opened, {} failed; bytes: {} tcp->kcp, {} kcp->tcp\n",
            s.live.len(),
            s.opened,
            self.failed.load(Relaxed),
            self.bytes_to_kcp.load(Relaxed),
            self.bytes_to_tcp.load(Relaxed),
        );
        if s.live.is_empty() {
            out.push_str("rtt: no live session; ");
        } else {
            let _ = write!(
                out,
                "rtt: avg {} ms, max {} ms over live sessions; ",
                rtt_sum / s.live.len() as u64,
                rtt_max
            );
        }
        let _ = write!(
            out,
            "kcp: {} datagrams out, {} in, {} segments sent, {} retransmitted on timeout, \
             {} fast-retransmitted, {} duplicates received; ",
            sum.kcp.out_datagrams,
            sum.kcp.in_datagrams,
            sum.kcp.out_segments,
            sum.kcp.retransmits,
            sum.kcp.fast_retransmits,
            sum.kcp.duplicate_segments,
        );
        match self.fec {
            Some((k, m)) => {
                let _ = write!(
                    out,
                    "fec {k}+{m}: {} datagrams recovered, {} parity sent, {} parity received, \
                     {} dropped",
                    sum.fec_recovered,
                    sum.fec_parity_sent,
                    sum.fec_parity_received,
                    sum.fec_dropped,
                );
            }
            None => out.push_str("fec: off"),
        }
        out
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Sessions> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn open(&self) -> u64 {
        let mut s = self.lock();
        let id = s.next_id;
        s.next_id += 1;
        s.opened += 1;
        s.live.insert(id, SessionStats::default());
        id
    }

    fn update(&self, id: u64, st: SessionStats) {
        if let Some(slot) = self.lock().live.get_mut(&id) {
            *slot = st;
        }
    }

    fn close(&self, id: u64, st: SessionStats) {
        let mut s = self.lock();
        s.live.remove(&id);
        add(&mut s.closed, &st);
    }
}

fn add(sum: &mut SessionStats, st: &SessionStats) {
    let (s, k) = (&mut sum.kcp, &st.kcp);
    s.out_datagrams += k.out_datagrams;
    s.in_datagrams += k.in_datagrams;
    s.out_segments += k.out_segments;
    s.retransmits += k.retransmits;
    s.fast_retransmits += k.fast_retransmits;
    s.duplicate_segments += k.duplicate_segments;
    sum.app_bytes_sent += st.app_bytes_sent;
    sum.app_bytes_received += st.app_bytes_received;
    sum.fec_recovered += st.fec_recovered;
    sum.fec_parity_sent += st.fec_parity_sent;
    sum.fec_parity_received += st.fec_parity_received;
    sum.fec_dropped += st.fec_dropped;
}

// ----- one connection ---------------------------------------------------------

type FrameRx = FramedRead<OwnedReadHalf, LengthDelimitedCodec>;
type FrameTx = FramedWrite<OwnedWriteHalf, LengthDelimitedCodec>;

fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_length(4)
        .max_frame_length(CHUNK + 1)
        .new_codec()
}

fn frames(kcp: KcpStream) -> (FrameRx, FrameTx) {
    let (r, w) = kcp.into_split();
    (FramedRead::new(r, codec()), FramedWrite::new(w, codec()))
}

async fn client_conn(
    tcp: TcpStream,
    server: SocketAddr,
    config: SessionConfig,
    stats: &TunnelStats,
) -> io::Result<()> {
    let _ = tcp.set_nodelay(true);
    let kcp = KcpStream::connect(server, config).await?;
    let (rx, mut tx) = frames(kcp);
    tx.send(Bytes::from_static(&[OPEN, VERSION])).await?;
    pipe(tcp, rx, tx, stats).await
}

async fn server_conn(kcp: KcpStream, target: &str, stats: &TunnelStats) -> io::Result<()> {
    let (mut rx, mut tx) = frames(kcp);
    let first = tokio::time::timeout(OPEN_TIMEOUT, rx.next())
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no OPEN frame"))?
        .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "session ended"))??;
    if first[..] != [OPEN, VERSION] {
        let _ = tx.send(Bytes::from_static(&[RST])).await;
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "first frame is not OPEN of protocol version 1",
        ));
    }
    let tcp = match tokio::time::timeout(OPEN_TIMEOUT, TcpStream::connect(target)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => {
            let _ = tx.send(Bytes::from_static(&[RST])).await;
            return Err(io::Error::new(e.kind(), format!("target {target}: {e}")));
        }
        Err(_) => {
            let _ = tx.send(Bytes::from_static(&[RST])).await;
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("target {target}: connect timed out"),
            ));
        }
    };
    let _ = tcp.set_nodelay(true);
    pipe(tcp, rx, tx, stats).await
}

/// Copies both ways until both have ended (or one failed).
async fn pipe(tcp: TcpStream, rx: FrameRx, tx: FrameTx, stats: &TunnelStats) -> io::Result<()> {
    let id = stats.open();
    let (tcp_r, tcp_w) = tcp.into_split();
    let mut rx = rx;
    let r = tokio::try_join!(
        tcp_to_kcp(tcp_r, tx, stats),
        kcp_to_tcp(&mut rx, tcp_w, id, stats)
    );
    stats.close(id, rx.get_ref().stats());
    r.map(|_| ())
}

async fn tcp_to_kcp(
    mut tcp: tokio::net::tcp::OwnedReadHalf,
    mut tx: FrameTx,
    stats: &TunnelStats,
) -> io::Result<()> {
    let mut buf = BytesMut::with_capacity(CHUNK + 1);
    loop {
        buf.reserve(CHUNK + 1);
        buf.put_u8(DATA);
        let n = match (&mut tcp).take(CHUNK as u64).read_buf(&mut buf).await {
            Ok(n) => n,
            Err(e) => {
                let _ = tx.send(Bytes::from_static(&[RST])).await;
                return Err(e);
            }
        };
        if n == 0 {
            tx.send(Bytes::from_static(&[FIN])).await?;
            // What was sent stays queued in the session until acknowledged,
            // even after this half is dropped.
            return Ok(());
        }
        tx.send(buf.split().freeze()).await?;
        stats.bytes_to_kcp.fetch_add(n as u64, Relaxed);
    }
}

async fn kcp_to_tcp(
    rx: &mut FrameRx,
    mut tcp: tokio::net::tcp::OwnedWriteHalf,
    id: u64,
    stats: &TunnelStats,
) -> io::Result<()> {
    let mut refresh = tokio::time::interval(Duration::from_secs(1));
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // `next` is cancel safe: the frame being read stays in `rx`.
        let frame = tokio::select! {
            f = rx.next() => f,
            _ = refresh.tick() => {
                stats.update(id, rx.get_ref().stats());
                continue;
            }
        };
        let frame = frame.ok_or_else(|| {
            io::Error::new(io::ErrorKind::UnexpectedEof, "the KCP session ended")
        })??;
        match frame.first() {
            Some(&DATA) => {
                tcp.write_all(&frame[1..]).await?;
                stats
                    .bytes_to_tcp
                    .fetch_add(frame.len() as u64 - 1, Relaxed);
            }
            Some(&FIN) => {
                tcp.shutdown().await?;
                return Ok(());
            }
            Some(&RST) => {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionReset,
                    "the other end of the tunnel reset the connection",
                ))
            }
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("unexpected frame {:?}", frame.first()),
                ))
            }
        }
    }
}
