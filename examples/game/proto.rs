//! The game examples' shared part: the update format, the server's
//! broadcast loop and the client's measuring loop.
//!
//! Every message is a frame of [`LengthDelimitedCodec`] (4-byte length,
//! then the body) over a [`KcpStream`]: `Framed` does the framing, KCP the
//! reliability.
//!
//! - client → server: `JOIN name` first (it also opens the session: a KCP
//!   listener only sees a client once it has sent something), `BYE` last;
//! - server → client: state updates, [`Update::encode`]d: sequence number,
//!   server time (µs since the Unix epoch; the latency a client computes is
//!   only meaningful when both run on one host or on synced clocks), and
//!   the position of every entity.
//!
//! A real game server never lets a slow client hold the others back, and
//! never queues stale state: a client whose send queue already holds more
//! than [`MAX_QUEUED`] bytes skips updates until it drains. The client sees
//! the skip as a gap in the sequence numbers ("missed").

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use kcp_rs::net::{KcpListener, KcpStream, SessionConfig};
use tokio::sync::broadcast;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

/// Entities in the world; each update carries all of them.
pub const ENTITIES: usize = 16;
/// A client whose send queue holds more than this skips updates.
pub const MAX_QUEUED: usize = 16 * 1024;
/// Header of an update: sequence number, server time, entity count.
const HEADER: usize = 8 + 8 + 2;
/// An entity: id, x, y.
const ENTITY: usize = 4 + 4 + 4;

/// One state update.
#[derive(Clone, Debug, PartialEq)]
pub struct Update {
    /// Counts up by one per tick.
    pub seq: u64,
    /// When the server made it, in µs since the Unix epoch.
    pub server_us: u64,
    /// `(id, x, y)` of each entity.
    pub entities: Vec<(u32, f32, f32)>,
}

impl Update {
    /// The world at tick `seq`: entities circling at different speeds.
    pub fn at(seq: u64) -> Update {
        let t = seq as f32 / 30.0;
        let entities = (0..ENTITIES as u32)
            .map(|id| {
                let r = 10.0 + id as f32;
                let w = 0.2 + id as f32 * 0.05;
                (id, r * (w * t).cos(), r * (w * t).sin())
            })
            .collect();
        Update {
            seq,
            server_us: now_us(),
            entities,
        }
    }

    /// The frame body.
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(HEADER + ENTITY * self.entities.len());
        b.put_u64(self.seq);
        b.put_u64(self.server_us);
        b.put_u16(self.entities.len() as u16);
        for &(id, x, y) in &self.entities {
            b.put_u32(id);
            b.put_f32(x);
            b.put_f32(y);
        }
        b.freeze()
    }

    /// Parses a frame body, refusing one of the wrong length.
    ///
    /// # Errors
    /// `InvalidData` when `b` is not an update.
    pub fn decode(b: &[u8]) -> io::Result<Update> {
        let bad = || io::Error::new(io::ErrorKind::InvalidData, "malformed update");
        let head = b.get(..HEADER).ok_or_else(bad)?;
        let u64_at = |i: usize| u64::from_be_bytes(head[i..i + 8].try_into().unwrap_or_default());
        let n = u16::from_be_bytes([head[16], head[17]]) as usize;
        let body = &b[HEADER..];
        if body.len() != n * ENTITY {
            return Err(bad());
        }
        let entities = body
            .chunks_exact(ENTITY)
            .map(|e| {
                let word = |i: usize| [e[i], e[i + 1], e[i + 2], e[i + 3]];
                (
                    u32::from_be_bytes(word(0)),
                    f32::from_be_bytes(word(4)),
                    f32::from_be_bytes(word(8)),
                )
            })
            .collect();
        Ok(Update {
            seq: u64_at(0),
            server_us: u64_at(8),
            entities,
        })
    }
}

/// Microseconds since the Unix epoch.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(64 * 1024)
        .new_codec()
}

// ----- server -------------------------------------------------------------------

/// What the server did, over all clients.
#[derive(Debug, Default)]
pub struct ServerStats {
    /// Ticks so far (updates made).
    pub ticks: AtomicU64,
    /// Clients connected now.
    pub clients: AtomicUsize,
    /// Clients that joined so far.
    pub joined: AtomicU64,
    /// Updates sent, over all clients.
    pub sent: AtomicU64,
    /// Updates skipped because a client's queue was full.
    pub skipped: AtomicU64,
    /// Segments the server retransmitted (timeout + fast), over all
    /// clients: the loss KCP repaired.
    pub retransmits: AtomicU64,
}

/// Makes `rate` updates a second and sends each to every client that
/// joined on `listener`, until the listener fails.
///
/// # Errors
/// When the listener's socket task has ended.
pub async fn serve(listener: KcpListener, rate: u32, stats: Arc<ServerStats>) -> io::Result<()> {
    // A few updates of slack; a client further behind skips (Lagged).
    let (tx, _) = broadcast::channel::<Bytes>(8);
    let ticker = {
        let (tx, stats) = (tx.clone(), stats.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1) / rate.max(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            for seq in 0.. {
                tick.tick().await;
                stats.ticks.fetch_add(1, Relaxed);
                // No receiver (no client yet) is fine.
                let _ = tx.send(Update::at(seq).encode());
            }
        })
    };
    let r = loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => break Err(e),
        };
        let (rx, stats) = (tx.subscribe(), stats.clone());
        tokio::spawn(async move {
            stats.clients.fetch_add(1, Relaxed);
            if let Err(e) = serve_client(stream, rx, &stats).await {
                eprintln!("game server: client {peer}: {e}");
            }
            stats.clients.fetch_sub(1, Relaxed);
        });
    };
    ticker.abort();
    r
}

async fn serve_client(
    stream: KcpStream,
    mut updates: broadcast::Receiver<Bytes>,
    stats: &ServerStats,
) -> io::Result<()> {
    let mut framed = Framed::new(stream, codec());
    let join = tokio::time::timeout(Duration::from_secs(5), framed.next())
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no JOIN within 5 s"))?
        .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "session ended"))??;
    if !join.starts_with(b"JOIN ") {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "first frame is not JOIN",
        ));
    }
    stats.joined.fetch_add(1, Relaxed);
    let mut retransmits = 0;
    loop {
        tokio::select! {
            u = updates.recv() => match u {
                Ok(u) if framed.get_ref().send_queue_len() > MAX_QUEUED => {
                    let _ = u;
                    stats.skipped.fetch_add(1, Relaxed);
                }
                Ok(u) => {
                    framed.send(u).await?;
                    stats.sent.fetch_add(1, Relaxed);
                    let k = framed.get_ref().stats().kcp;
                    let now = k.retransmits + k.fast_retransmits;
                    stats.retransmits.fetch_add(now - retransmits, Relaxed);
                    retransmits = now;
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    stats.skipped.fetch_add(n, Relaxed);
                }
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            },
            // `next` is cancel safe: a partly read frame stays in `framed`.
            m = framed.next() => match m {
                Some(Ok(m)) if &m[..] == b"BYE" => return Ok(()),
                Some(Ok(_)) => {} // inputs would go here
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            },
        }
    }
}

// ----- client -------------------------------------------------------------------

/// What one client observed.
#[derive(Clone, Debug, Default)]
pub struct ClientReport {
    /// Updates received.
    pub received: u64,
    /// Updates the server skipped for this client (gaps in `seq`).
    pub missed: u64,
    /// Updates that arrived later than `late` after the server made them.
    pub late: u64,
    /// Latency of every update, server time to arrival, sorted.
    pub latencies_ms: Vec<f64>,
    /// Duplicate segments received (retransmissions that were not needed).
    pub duplicates: u64,
    /// Datagrams lost on the way and rebuilt from FEC parity (0 without FEC).
    pub fec_recovered: u64,
}

impl ClientReport {
    /// The `q` quantile of the latencies (nearest rank), 0 without any.
    pub fn latency(&self, q: f64) -> f64 {
        let v = &self.latencies_ms;
        if v.is_empty() {
            return 0.0;
        }
        let i = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len());
        v[i - 1]
    }

    /// One line: counts and latency percentiles.
    pub fn line(&self) -> String {
        format!(
            "{:>5} updates  missed {:>3}  late {:>3}  latency p50 {:>5.1} ms  p99 {:>6.1} ms  max {:>6.1} ms  dup segs {}  fec rec {}",
            self.received,
            self.missed,
            self.late,
            self.latency(0.50),
            self.latency(0.99),
            self.latency(1.0),
            self.duplicates,
            self.fec_recovered,
        )
    }
}

/// Joins the server at `addr` as `name` and records updates for `play`;
/// prints a line a second when `verbose`.
///
/// # Errors
/// When the session fails, no update arrives in all of `play`, or an
/// update is malformed.
pub async fn play(
    addr: SocketAddr,
    config: SessionConfig,
    name: &str,
    play: Duration,
    late: Duration,
    verbose: bool,
) -> io::Result<ClientReport> {
    let stream = KcpStream::connect(addr, config).await?;
    let mut framed = Framed::new(stream, codec());
    framed
        .send(Bytes::from(format!("JOIN {name}").into_bytes()))
        .await?;
    let start = Instant::now();
    let end = tokio::time::Instant::from_std(start + play);
    let mut report = ClientReport::default();
    let mut last_seq: Option<u64> = None;
    let mut next_line = start + Duration::from_secs(1);
    let late_us = late.as_micros() as u64;
    loop {
        let frame = tokio::select! {
            f = framed.next() => f,
            _ = tokio::time::sleep_until(end) => break,
        };
        let Some(frame) = frame else {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "session ended",
            ));
        };
        let u = Update::decode(&frame?)?;
        let latency_us = now_us().saturating_sub(u.server_us);
        report.received += 1;
        report.latencies_ms.push(latency_us as f64 / 1000.0);
        if latency_us > late_us {
            report.late += 1;
        }
        if let Some(prev) = last_seq {
            report.missed += u.seq.saturating_sub(prev + 1);
        }
        last_seq = Some(u.seq);
        if verbose && Instant::now() >= next_line {
            next_line += Duration::from_secs(1);
            let mut snapshot = report.clone();
            snapshot.latencies_ms.sort_by(f64::total_cmp);
            println!(
                "[{:4.1} s] {}",
                start.elapsed().as_secs_f64(),
                snapshot.line()
            );
        }
    }
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        framed.send(Bytes::from_static(b"BYE")),
    )
    .await;
    let st = framed.get_ref().stats();
    report.duplicates = st.kcp.duplicate_segments;
    report.fec_recovered = st.fec_recovered;
    report.latencies_ms.sort_by(f64::total_cmp);
    if report.received == 0 {
        return Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no update in {play:?}"),
        ));
    }
    Ok(report)
}

/// The session configuration of both ends: the default (fast preset,
/// message mode), with `fec`'s `(data, parity)` shards of Reed-Solomon FEC
/// when given. Server and clients must agree on `fec`.
///
/// # Errors
/// `InvalidInput` for shard counts that cannot work; `Unsupported` for
/// `fec` in a build without the `fec` feature.
pub fn session_config(fec: Option<(usize, usize)>) -> io::Result<SessionConfig> {
    #[cfg(feature = "fec")]
    let config = SessionConfig {
        fec: fec
            .map(|(k, m)| kcp_rs::fec::FecConfig::new(k, m))
            .transpose()?,
        ..SessionConfig::default()
    };
    #[cfg(not(feature = "fec"))]
    let config = match fec {
        None => SessionConfig::default(),
        Some((k, m)) => {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "--fec {k},{m} needs the `fec` feature, which this build lacks: \
                     cargo run --release --features fec --example game_server -- ... --fec {k},{m}"
                ),
            ))
        }
    };
    config.validate()?;
    Ok(config)
}

/// Parses `--fec K,M`: `K` data and `M` parity shards per group.
pub fn parse_fec(s: &str) -> Result<(usize, usize), String> {
    let err = || format!("{s:?} is not K,M (data and parity shards, e.g. 2,1)");
    let (k, m) = s.split_once(',').ok_or_else(err)?;
    let k: usize = k.trim().parse().map_err(|_| err())?;
    let m: usize = m.trim().parse().map_err(|_| err())?;
    if k == 0 || m == 0 || k + m > 256 {
        return Err("FEC needs K >= 1, M >= 1 and K + M <= 256".into());
    }
    Ok((k, m))
}

/// Parses `"0.05"` as a probability.
pub fn parse_probability(s: &str) -> Result<f64, String> {
    let p: f64 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    if (0.0..1.0).contains(&p) {
        Ok(p)
    } else {
        Err("must be within 0..1".into())
    }
}
