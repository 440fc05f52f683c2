//! `listener_demux`: the real [`KcpListener`]'s datagram demultiplexer,
//! driven through the public API over loopback.
//!
//! One process-wide current-thread tokio runtime holds two listeners on
//! `127.0.0.1:0`, one plain and one with FEC (2 + 1), both with small limits
//! ([`MAX_SESSIONS`], [`MAX_PER_IP`], [`FEC_LIMITS`], [`BACKLOG`],
//! [`HALF_OPEN`]), six client UDP sockets on three source IPs
//! (`127.0.0.1`–`127.0.0.3`, two ports each) and, per listener, one
//! legitimate [`KcpStream`] session made once and accepted. State carries
//! over from one input to the next (as the listener's would), so each input
//! is a burst of traffic into a listener that already holds whatever
//! earlier inputs left.
//!
//! An input is an `arbitrary` [`DemuxInput`]: up to [`MAX_DATAGRAMS`]
//! datagrams from chosen sockets to a chosen listener — first flights (PUSH
//! from `sn = 0`, `una = 0`, mutated: cut, a byte flipped), bursts of them
//! over consecutive convs, segments with any header fields, raw bytes,
//! kcp-go FEC data and parity packets — honest replies to what a listener
//! sent a socket (WINS for its WASK, ACK for its PUSH, which is what
//! confirms a half-open session), turns of the runtime, and whether to hold
//! the sessions accepted. After each chunk of datagrams the runtime runs until
//! the listener has read them all (`datagrams_in`), within [`READ_TIMEOUT`].
//!
//! Invariants, after every input:
//!
//! - the socket tasks are alive: they read every datagram sent (a panic in
//!   a task or a lost datagram shows as a timeout), and every
//!   [`ECHO_EVERY`] inputs a message makes the round trip on each
//!   legitimate session within [`READ_TIMEOUT`];
//! - `sessions_active ≤ max_sessions` and `opened − closed = active`;
//! - no source IP over `max_sessions_per_ip`: every [`CENSUS_EVERY`]
//!   inputs by a census (the sessions that answer a window probe at
//!   once); after every input, sessions opened during it ≤ the cap × the
//!   source IPs it and the previous input used + sessions closed during it;
//! - nothing is accepted unless it answered a probe: every session
//!   `accept` yields is from a fuzzing socket and a key (socket and conv,
//!   or socket alone with FEC) that sent, after an earlier datagram, a
//!   datagram that can confirm it (with an ACK or WINS segment; with FEC,
//!   any packet, since parity can rebuild anything), one such datagram per
//!   accepted session; `sessions_accepted` equals what `accept` yielded;
//! - the process RSS stays below [`RSS_LIMIT_KB`].

use std::cell::RefCell;
use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::task::Poll;
use std::time::{Duration, Instant};

use arbitrary::{Arbitrary, Unstructured};
use kcp_rs::codec::{peek_conv, Header, Segments};
use kcp_rs::constants::{CMD_ACK, CMD_PUSH, CMD_WASK, CMD_WINS, OVERHEAD};
use kcp_rs::fec::framing::{Packet, ShardKind, TYPE_DATA, TYPE_PARITY};
use kcp_rs::fec::FecConfig;
use kcp_rs::net::{KcpListener, KcpStream, ListenerStats, SessionConfig};
use kcp_rs::sequence::{Seq, Timestamp};
use tokio::runtime::Runtime;

/// Most sessions per listener.
pub const MAX_SESSIONS: usize = 20;
/// Most sessions per source IP.
pub const MAX_PER_IP: usize = 8;
/// Confirmed sessions waiting for `accept`.
pub const BACKLOG: usize = 4;
/// A half-open session's lifetime.
pub const HALF_OPEN: Duration = Duration::from_millis(300);
/// `(max_sessions, max_sessions_per_ip)` of the FEC listener, which keys
/// sessions by address alone: six sockets and the legitimate client can
/// pass both.
pub const FEC_LIMITS: (usize, usize) = (4, 2);
/// Data and parity shards of the FEC listener.
const FEC_SHARDS: (usize, usize) = (2, 1);
/// Inputs between two censuses of the sessions (see the module docs).
pub const CENSUS_EVERY: u64 = 8;
/// How long a key a session spoke for is asked in a census.
const HINT_TTL: Duration = Duration::from_secs(2);
/// Operations per input at most.
pub const MAX_OPS: usize = 128;
/// Datagrams sent per input at most.
pub const MAX_DATAGRAMS: usize = 64;
/// Longest datagram sent (past the 1400-byte MTU, to be refused).
pub const MAX_LEN: usize = 1600;
/// How long the listener may take to read what was sent, or an echo.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Inputs between two echo round trips on the legitimate sessions.
pub const ECHO_EVERY: u64 = 16;
/// Process RSS cap.
pub const RSS_LIMIT_KB: u64 = 1 << 20;
/// Source IPs of the fuzzing sockets (the legitimate clients use .1).
const IPS: [Ipv4Addr; 3] = [
    Ipv4Addr::new(127, 0, 0, 1),
    Ipv4Addr::new(127, 0, 0, 2),
    Ipv4Addr::new(127, 0, 0, 3),
];
/// Fuzzing sockets: two ports per IP.
const SOCKETS: usize = 6;
/// Accepted sessions held at most.
const HELD: usize = 6;
/// Datagrams kept per socket for `Reply`.
const INBOX: usize = 32;
/// A small set of convs, so that inputs hit the same keys.
const POOL: [u32; 4] = [1, 2, 0x1234_5678, u32::MAX];

/// One input.
#[derive(Debug)]
pub struct DemuxInput {
    pub ops: Vec<DemuxOp>,
}

/// Operations read one after the other until the bytes run out (at most
/// [`MAX_OPS`]); a `Vec`'s own encoding would let one long byte string
/// swallow the input.
impl<'a> Arbitrary<'a> for DemuxInput {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let mut ops = Vec::new();
        while !u.is_empty() && ops.len() < MAX_OPS {
            let Ok(op) = DemuxOp::arbitrary(u) else { break };
            ops.push(op);
        }
        Ok(DemuxInput { ops })
    }
}

/// One step.
#[derive(Arbitrary, Debug)]
pub enum DemuxOp {
    /// One datagram from socket `sock` to the plain listener or
    /// (`to_fec`) the FEC one; `wrap` frames it as a FEC data packet with
    /// that seqid first.
    Send {
        sock: u8,
        to_fec: bool,
        wrap: Option<u32>,
        datagram: Datagram,
    },
    /// `n` first flights from `sock` for convs `conv, conv + 1, …`.
    Burst {
        sock: u8,
        to_fec: bool,
        conv: u32,
        n: u8,
    },
    /// What an honest client answers to what the listener sent `sock`: a
    /// WINS for each WASK, an ACK for each PUSH.
    Reply { sock: u8, to_fec: bool },
    /// Keep the sessions accepted by the end of this input (at most
    /// six in all) instead of dropping them.
    Hold,
    /// Drop the held sessions.
    Release,
    /// Let the runtime take a few turns (the listener reads part of what
    /// was sent so far; other datagrams wait in its socket).
    Yield { turns: u8 },
}

/// A datagram's content.
#[derive(Arbitrary, Debug)]
pub enum Datagram {
    /// PUSH segments `0..segs` (`frg` counting down), `una = 0`, `len`
    /// bytes of data each, then cut to `cut` bytes and one byte flipped.
    FirstFlight {
        conv: Conv,
        segs: u8,
        len: u8,
        wnd: u16,
        ts: u32,
        cut: Option<u16>,
        flip: Option<(u16, u8)>,
    },
    /// Segments with any header fields.
    Segments { conv: Conv, segs: Vec<Seg> },
    /// A FEC parity packet.
    Parity { seqid: u32, bytes: Vec<u8> },
    /// Anything.
    Raw(Vec<u8>),
}

/// A conversation id.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Conv {
    /// The legitimate session's conv (of the listener the datagram goes to).
    Legit,
    /// One of four fixed convs, so that inputs hit the same keys.
    Pool(u8),
    Any(u32),
}

/// A segment; `cmd` below 200 picks one of the four commands.
#[derive(Arbitrary, Debug)]
pub struct Seg {
    pub cmd: u8,
    pub frg: u8,
    pub wnd: u16,
    pub ts: u32,
    pub sn: u32,
    pub una: u32,
    /// Overrides the `len` field (the data stays `data` bytes long).
    pub len: Option<u32>,
    pub data: u8,
}

thread_local! {
    static WORLD: RefCell<Option<World>> = const { RefCell::new(None) };
}

/// Runs one input against the process-wide listeners.
///
/// # Panics
/// When an invariant breaks (see the module docs).
pub fn run(input: &DemuxInput) {
    WORLD.with(|w| {
        let mut w = w.borrow_mut();
        let world = w.get_or_insert_with(World::new);
        world.run(input);
    });
}

/// The plain and the FEC listener's counters (for diagnostics).
pub fn listener_stats() -> [ListenerStats; 2] {
    WORLD.with(|w| {
        let mut w = w.borrow_mut();
        let world = w.get_or_insert_with(World::new);
        [
            world.sides[0].listener.stats(),
            world.sides[1].listener.stats(),
        ]
    })
}

/// One listener, its legitimate session and what the harness knows of it.
struct Side {
    listener: KcpListener,
    addr: SocketAddr,
    fec: bool,
    /// Legitimate client and its accepted server end.
    client: KcpStream,
    server: KcpStream,
    /// Keys that sent a datagram: `(socket, conv)`, conv 0 with FEC.
    seen: HashSet<(usize, u32)>,
    /// Datagrams per key that could have confirmed a session.
    answers: HashMap<(usize, u32), u64>,
    /// Datagrams sent, to compare with `datagrams_in`.
    sent: u64,
    /// Sessions `accept` yielded, legitimate one included.
    accepted: u64,
    held: Vec<(IpAddr, KcpStream)>,
    /// Keys a session of this listener spoke for, and when last.
    hints: HashMap<(usize, u32), Instant>,
    max_sessions: usize,
    max_per_ip: usize,
    /// Next seqid of `Reply`'s FEC packets, per socket.
    seqid: [u32; SOCKETS],
}

struct World {
    rt: Runtime,
    sides: [Side; 2],
    socks: Vec<UdpSocket>,
    /// Their addresses.
    addrs: Vec<SocketAddr>,
    /// What each socket received, with its sender.
    inbox: Vec<VecDeque<(SocketAddr, Vec<u8>)>>,
    /// Source IPs (indices into [`IPS`]) each listener got datagrams from
    /// in the last input: a datagram may be read during the next one.
    last_ips: [HashSet<usize>; 2],
    inputs: u64,
}

impl World {
    fn new() -> World {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let sides = rt.block_on(async { [Side::new(false).await, Side::new(true).await] });
        let mut socks = Vec::new();
        for i in 0..SOCKETS {
            let s = UdpSocket::bind((IPS[i / 2], 0)).expect("bind a client socket");
            s.set_nonblocking(true).expect("non-blocking");
            socks.push(s);
        }
        let addrs = socks
            .iter()
            .map(|s| s.local_addr().expect("local address"))
            .collect();
        World {
            rt,
            sides,
            socks,
            addrs,
            inbox: vec![VecDeque::new(); SOCKETS],
            last_ips: [HashSet::new(), HashSet::new()],
            inputs: 0,
        }
    }

    fn run(&mut self, input: &DemuxInput) {
        let rt = &self.rt;
        let (sides, socks, inbox) = (&mut self.sides, &self.socks, &mut self.inbox);
        let (addrs, last_ips) = (&self.addrs, &mut self.last_ips);
        rt.block_on(async {
            let before = [sides[0].listener.stats(), sides[1].listener.stats()];
            let mut ips_used = [HashSet::new(), HashSet::new()];
            let mut budget = MAX_DATAGRAMS;
            let mut hold = false;
            for op in &input.ops {
                if budget == 0 {
                    break;
                }
                match op {
                    DemuxOp::Send {
                        sock,
                        to_fec,
                        wrap,
                        datagram,
                    } => {
                        let side = &mut sides[*to_fec as usize];
                        let s = *sock as usize % SOCKETS;
                        let mut d = datagram.build(side.client.conv());
                        if let Some(seqid) = wrap {
                            d = fec_data(*seqid, &d);
                        }
                        side.send(socks, s, &d);
                        ips_used[*to_fec as usize].insert(s / 2);
                        budget -= 1;
                    }
                    DemuxOp::Burst {
                        sock,
                        to_fec,
                        conv,
                        n,
                    } => {
                        let side = &mut sides[*to_fec as usize];
                        let s = *sock as usize % SOCKETS;
                        for i in 0..(*n as usize % 16 + 1).min(budget) {
                            let c = conv.wrapping_add(i as u32);
                            let mut d = first_flight(c, 1, 8, 128, 0);
                            if side.fec {
                                d = fec_data(i as u32, &d);
                            }
                            side.send(socks, s, &d);
                            budget -= 1;
                        }
                        ips_used[*to_fec as usize].insert(s / 2);
                    }
                    DemuxOp::Reply { sock, to_fec } => {
                        let s = *sock as usize % SOCKETS;
                        let side = &mut sides[*to_fec as usize];
                        side.caught_up().await;
                        drain(socks, inbox, sides);
                        let side = &mut sides[*to_fec as usize];
                        let from = side.addr;
                        let got: Vec<Vec<u8>> = inbox[s]
                            .iter()
                            .filter(|(a, _)| *a == from)
                            .map(|(_, d)| d.clone())
                            .collect();
                        inbox[s].retain(|(a, _)| *a != from);
                        for d in got {
                            if budget == 0 {
                                break;
                            }
                            let Some(mut r) = side.reply_to(&d) else {
                                continue;
                            };
                            if side.fec {
                                r = fec_data(side.seqid[s], &r);
                                side.seqid[s] = side.seqid[s].wrapping_add(1);
                            }
                            side.send(socks, s, &r);
                            ips_used[*to_fec as usize].insert(s / 2);
                            budget -= 1;
                        }
                    }
                    DemuxOp::Hold => hold = true,
                    DemuxOp::Release => {
                        sides[0].held.clear();
                        sides[1].held.clear();
                    }
                    DemuxOp::Yield { turns } => {
                        for _ in 0..turns % 8 {
                            tokio::task::yield_now().await;
                        }
                    }
                }
            }
            for (i, side) in sides.iter_mut().enumerate() {
                side.caught_up().await;
                let ips = ips_used[i].union(&last_ips[i]).count();
                side.check(&before[i], addrs, ips, hold);
            }
            *last_ips = ips_used;
            drain(socks, inbox, sides);
        });
        if self.inputs.is_multiple_of(CENSUS_EVERY) {
            let (sides, socks, inbox) = (&mut self.sides, &self.socks, &mut self.inbox);
            rt.block_on(census(socks, inbox, sides));
        }
        self.inputs += 1;
        if self.inputs % ECHO_EVERY == 1 {
            let n = self.inputs;
            for side in self.sides.iter_mut() {
                rt.block_on(side.echo(n));
            }
        }
        if self.inputs % 8 == 1 {
            let rss = rss_kb();
            assert!(rss < RSS_LIMIT_KB, "RSS {rss} kB over {RSS_LIMIT_KB} kB");
        }
    }
}

impl Side {
    async fn new(fec: bool) -> Side {
        let limits = if fec {
            FEC_LIMITS
        } else {
            (MAX_SESSIONS, MAX_PER_IP)
        };
        let mut cfg = SessionConfig {
            // Neither side probes or times out on its own: between inputs
            // the runtime does not run, and a legitimate session must not
            // end for that.
            idle_timeout: Duration::from_secs(3600),
            keep_alive: None,
            half_open_timeout: HALF_OPEN,
            max_sessions: limits.0,
            max_sessions_per_ip: limits.1,
            accept_backlog: BACKLOG,
            socket_recv_buffer: Some(1 << 20),
            socket_send_buffer: Some(1 << 20),
            ..SessionConfig::default()
        };
        if fec {
            cfg.fec = Some(FecConfig::new(FEC_SHARDS.0, FEC_SHARDS.1).expect("2 + 1"));
        }
        let listener = KcpListener::bind("127.0.0.1:0", cfg.clone())
            .await
            .expect("bind the listener");
        let addr = listener.local_addr().expect("local address");
        let mut client = KcpStream::connect(addr, cfg).await.expect("connect");
        client.send_msg(b"hello").await.expect("first message");
        let (mut server, _) = tokio::time::timeout(READ_TIMEOUT, listener.accept())
            .await
            .expect("the legitimate session is accepted in time")
            .expect("accept");
        let mut buf = [0u8; 16];
        let n = server.recv_msg(&mut buf).await.expect("first message");
        assert_eq!(&buf[..n], b"hello");
        Side {
            listener,
            addr,
            fec,
            client,
            server,
            seen: HashSet::new(),
            answers: HashMap::new(),
            sent: 0,
            accepted: 1,
            held: Vec::new(),
            hints: HashMap::new(),
            max_sessions: limits.0,
            max_per_ip: limits.1,
            seqid: [0; SOCKETS],
        }
    }

    /// Sends `d` from socket `s`, noting whether it can confirm a session.
    fn send(&mut self, socks: &[UdpSocket], s: usize, d: &[u8]) {
        let key = if self.fec {
            Some((s, 0))
        } else {
            peek_conv(d).filter(|_| d.len() >= OVERHEAD).map(|c| (s, c))
        };
        if let Some(key) = key {
            if !self.seen.insert(key) && (self.fec || is_answer(d)) {
                *self.answers.entry(key).or_insert(0) += 1;
            }
        }
        match socks[s].send_to(d, self.addr) {
            Ok(_) => self.sent += 1,
            // Loopback does not refuse a datagram; if it ever does, the
            // listener simply never sees it.
            Err(e) => eprintln!("send from socket {s}: {e}"),
        }
    }

    /// Runs the runtime until the listener has read everything sent: the
    /// fuzzing sockets' datagrams and the legitimate client's.
    async fn caught_up(&self) {
        let start = Instant::now();
        loop {
            let st = self.listener.stats();
            let legit = self.legit_sent();
            if st.datagrams_in >= self.sent + legit {
                return;
            }
            assert!(
                start.elapsed() < READ_TIMEOUT,
                "the {} listener read {} of {} + {legit} datagrams in {READ_TIMEOUT:?}: its task died or lost some ({st:?})",
                if self.fec { "FEC" } else { "plain" },
                st.datagrams_in,
                self.sent,
            );
            tokio::task::yield_now().await;
        }
    }

    /// Datagrams the legitimate client sent. With FEC the count of the
    /// empty data packets that close a group early is not published, but
    /// every closed group is `k + m` packets (`m` of them parity), so this
    /// is exact but for the data packets of the group still open, at most
    /// `k - 1` (1 here): they are not counted until their group closes.
    fn legit_sent(&self) -> u64 {
        let c = self.client.stats();
        let sent = if self.fec {
            let (k, m) = (FEC_SHARDS.0 as u64, FEC_SHARDS.1 as u64);
            let groups = c.fec_parity_sent / m;
            groups * (k + m) + c.kcp.out_datagrams.saturating_sub(groups * k)
        } else {
            c.kcp.out_datagrams
        };
        sent - c.send_dropped
    }

    /// The KCP bytes of a datagram this listener sent (none for parity).
    fn kcp_of(&self, d: &[u8]) -> Option<Vec<u8>> {
        if !self.fec {
            return Some(d.to_vec());
        }
        let p = Packet::new_checked(d).ok()?;
        (p.header().kind == ShardKind::Data).then(|| p.kcp_bytes().to_vec())
    }

    /// `(conv, cmd)` of each segment of a datagram this listener sent.
    fn segments_of(&self, d: &[u8]) -> Vec<(u32, u8)> {
        let Some(kcp) = self.kcp_of(d) else {
            return Vec::new();
        };
        Segments::new(&kcp)
            .map_while(Result::ok)
            .map(|(h, _)| (h.conv, h.cmd))
            .collect()
    }

    /// The honest answer to a datagram the listener sent: WINS for each
    /// WASK, ACK for each PUSH.
    fn reply_to(&self, d: &[u8]) -> Option<Vec<u8>> {
        let kcp = self.kcp_of(d)?;
        let mut out = Vec::new();
        for seg in Segments::new(&kcp) {
            let Ok((h, _)) = seg else { break };
            let (cmd, sn) = match h.cmd {
                CMD_WASK => (CMD_WINS, 0),
                CMD_PUSH => (CMD_ACK, h.sn.get()),
                _ => continue,
            };
            out.extend(segment(h.conv, cmd, 0, 128, h.ts.get(), sn, 0, None, &[]));
        }
        (!out.is_empty()).then_some(out)
    }

    /// Invariants after an input; takes what `accept` has.
    fn check(&mut self, before: &ListenerStats, addrs: &[SocketAddr], ips_used: usize, hold: bool) {
        let name = if self.fec { "FEC" } else { "plain" };
        let mut got = Vec::new();
        while let Some(r) = poll_now(&mut self.listener) {
            got.push(r.expect("accept"));
        }
        for (stream, peer) in got {
            self.accepted += 1;
            let conv = if self.fec { 0 } else { stream.conv() };
            let s = addrs.iter().position(|a| *a == peer).unwrap_or_else(|| {
                panic!("{name} listener accepted a session from {peer}, not a fuzzing socket")
            });
            let n = self.answers.get_mut(&(s, conv)).filter(|n| **n > 0);
            let Some(n) = n else {
                panic!(
                    "{name} listener accepted {peer} conv {} although it never sent a datagram that could answer a probe",
                    stream.conv()
                );
            };
            *n -= 1;
            if hold && self.held.len() < HELD {
                self.held.push((peer.ip(), stream));
            }
        }
        let st = self.listener.stats();
        assert_eq!(
            st.sessions_accepted, self.accepted,
            "{name}: sessions_accepted is not what accept yielded"
        );
        assert!(
            st.sessions_active as usize <= self.max_sessions,
            "{name}: {} sessions active, max_sessions {}",
            st.sessions_active,
            self.max_sessions
        );
        assert_eq!(
            st.sessions_opened - st.sessions_closed,
            st.sessions_active,
            "{name}: opened - closed != active"
        );
        let opened = st.sessions_opened - before.sessions_opened;
        let closed = st.sessions_closed - before.sessions_closed;
        assert!(
            opened <= (self.max_per_ip * ips_used) as u64 + closed,
            "{name}: {opened} sessions opened from {ips_used} IPs with {closed} closed: an IP went over max_sessions_per_ip {}",
            self.max_per_ip
        );
        let mut buf = [0u8; 2048];
        self.held.retain_mut(|(_, s)| loop {
            match s.try_recv_msg(&mut buf) {
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(_) => return false,
            }
        });
        for ip in IPS {
            let n = self.held.iter().filter(|(i, _)| *i == ip).count();
            assert!(
                n <= self.max_per_ip,
                "{name}: {n} live sessions held from {ip}"
            );
        }
    }

    /// A message each way on the legitimate session.
    async fn echo(&mut self, n: u64) {
        let name = if self.fec { "FEC" } else { "plain" };
        let msg = format!("echo {n}");
        let mut buf = [0u8; 64];
        let round = async {
            self.client.send_msg(msg.as_bytes()).await?;
            let k = self.server.recv_msg(&mut buf).await?;
            assert_eq!(&buf[..k], msg.as_bytes(), "{name}: echo garbled");
            self.server.send_msg(&buf[..k]).await?;
            let k = self.client.recv_msg(&mut buf).await?;
            assert_eq!(&buf[..k], msg.as_bytes(), "{name}: echo garbled");
            io::Result::Ok(())
        };
        match tokio::time::timeout(READ_TIMEOUT, round).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("{name}: the legitimate session failed: {e}"),
            Err(_) => panic!("{name}: no echo on the legitimate session within {READ_TIMEOUT:?}"),
        }
    }
}

/// What `accept` has ready now, without waiting.
fn poll_now(l: &mut KcpListener) -> Option<io::Result<(KcpStream, SocketAddr)>> {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    match l.poll_accept(&mut cx) {
        Poll::Ready(r) => Some(r),
        Poll::Pending => None,
    }
}

/// Reads what every socket received into its inbox (the newest
/// [`INBOX`]), noting in the sending listener's `hints` each key a session
/// spoke for, and returns the keys that sent a WINS (answered a WASK).
fn drain(
    socks: &[UdpSocket],
    inbox: &mut [VecDeque<(SocketAddr, Vec<u8>)>],
    sides: &mut [Side; 2],
) -> [HashSet<(usize, u32)>; 2] {
    let mut wins = [HashSet::new(), HashSet::new()];
    let mut buf = [0u8; 2048];
    let now = Instant::now();
    for (s, (sock, q)) in socks.iter().zip(inbox.iter_mut()).enumerate() {
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            let d = &buf[..n];
            if let Some(i) = sides.iter().position(|x| x.addr == from) {
                for (conv, cmd) in sides[i].segments_of(d) {
                    sides[i].hints.insert((s, conv), now);
                    if cmd == CMD_WINS {
                        wins[i].insert((s, conv));
                    }
                }
            }
            if q.len() == INBOX {
                q.pop_front();
            }
            q.push_back((from, d.to_vec()));
        }
    }
    wins
}

/// Asks every session the listeners may hold from the fuzzing sockets
/// (every key a session spoke for in the last [`HINT_TTL`]) for its window
/// and counts the answers per source IP. A WASK cannot open a session, and
/// only session `(socket, conv)` answers one from that socket for that
/// conv, so the keys that answer existed at once (none could open during
/// the census): their number per IP, plus the legitimate session on
/// 127.0.0.1, is at most `max_sessions_per_ip`.
async fn census(
    socks: &[UdpSocket],
    inbox: &mut [VecDeque<(SocketAddr, Vec<u8>)>],
    sides: &mut [Side; 2],
) {
    drain(socks, inbox, sides);
    let now = Instant::now();
    for side in sides.iter_mut() {
        side.hints.retain(|_, t| now.duration_since(*t) < HINT_TTL);
        let keys: Vec<(usize, u32)> = side.hints.keys().copied().collect();
        for (s, conv) in keys {
            let mut d = segment(conv, CMD_WASK, 0, 128, 0, 0, 0, None, &[]);
            if side.fec {
                d = fec_data(side.seqid[s], &d);
                side.seqid[s] = side.seqid[s].wrapping_add(1);
            }
            side.send(socks, s, &d);
        }
        side.caught_up().await;
    }
    let wins = drain(socks, inbox, sides);
    for (side, wins) in sides.iter().zip(wins) {
        let name = if side.fec { "FEC" } else { "plain" };
        for (i, ip) in IPS.iter().enumerate() {
            let n = wins.iter().filter(|(s, _)| s / 2 == i).count() + (i == 0) as usize;
            assert!(
                n <= side.max_per_ip,
                "{name}: {n} sessions from {ip} answered a window probe at once (legitimate one included), max_sessions_per_ip {}",
                side.max_per_ip
            );
        }
    }
}

impl Datagram {
    /// The bytes; `legit` is the legitimate session's conv.
    pub fn build(&self, legit: u32) -> Vec<u8> {
        let conv = |c: &Conv| match *c {
            Conv::Legit => legit,
            Conv::Pool(i) => POOL[i as usize % POOL.len()],
            Conv::Any(c) => c,
        };
        let mut d = match self {
            Datagram::FirstFlight {
                conv: c,
                segs,
                len,
                wnd,
                ts,
                cut,
                flip,
            } => {
                let mut d = first_flight(conv(c), *segs as u32 % 8 + 1, *len as usize, *wnd, *ts);
                if let Some(cut) = cut {
                    d.truncate(*cut as usize);
                }
                if let Some((at, x)) = flip {
                    if !d.is_empty() {
                        let i = *at as usize % d.len();
                        d[i] ^= x;
                    }
                }
                d
            }
            Datagram::Segments { conv: c, segs } => {
                let mut d = Vec::new();
                for s in segs.iter().take(8) {
                    let cmd = if s.cmd < 200 {
                        [CMD_PUSH, CMD_ACK, CMD_WASK, CMD_WINS][s.cmd as usize % 4]
                    } else {
                        s.cmd
                    };
                    let data = vec![0x5a; s.data as usize];
                    d.extend(segment(
                        conv(c),
                        cmd,
                        s.frg,
                        s.wnd,
                        s.ts,
                        s.sn,
                        s.una,
                        s.len,
                        &data,
                    ));
                }
                d
            }
            Datagram::Parity { seqid, bytes } => {
                let mut d = seqid.to_le_bytes().to_vec();
                d.extend(TYPE_PARITY.to_le_bytes());
                d.extend(bytes);
                d
            }
            Datagram::Raw(bytes) => bytes.clone(),
        };
        d.truncate(MAX_LEN);
        d
    }
}

/// A conversation's first datagram: PUSH `0..segs`, `una = 0`.
pub fn first_flight(conv: u32, segs: u32, len: usize, wnd: u16, ts: u32) -> Vec<u8> {
    let data = vec![0xa5; len];
    let mut d = Vec::new();
    for sn in 0..segs {
        let frg = (segs - 1 - sn) as u8;
        d.extend(segment(conv, CMD_PUSH, frg, wnd, ts, sn, 0, None, &data));
    }
    d
}

/// One segment; `len` overrides the header's length field.
#[allow(clippy::too_many_arguments)]
pub fn segment(
    conv: u32,
    cmd: u8,
    frg: u8,
    wnd: u16,
    ts: u32,
    sn: u32,
    una: u32,
    len: Option<u32>,
    data: &[u8],
) -> Vec<u8> {
    let h = Header {
        conv,
        cmd,
        frg,
        wnd,
        ts: Timestamp::new(ts),
        sn: Seq::new(sn),
        una: Seq::new(una),
        len: len.unwrap_or(data.len() as u32),
    };
    let mut b = vec![0u8; Header::LEN];
    h.emit(&mut b);
    b.extend_from_slice(data);
    b
}

/// A kcp-go FEC data packet carrying `kcp`.
pub fn fec_data(seqid: u32, kcp: &[u8]) -> Vec<u8> {
    let mut d = seqid.to_le_bytes().to_vec();
    d.extend(TYPE_DATA.to_le_bytes());
    d.extend(((kcp.len() + 2) as u16).to_le_bytes());
    d.extend_from_slice(kcp);
    d
}

/// Whether a datagram carries an ACK or WINS segment, as the listener
/// decides that a half-open session's peer answered.
fn is_answer(d: &[u8]) -> bool {
    Segments::new(d)
        .map_while(Result::ok)
        .any(|(h, _)| h.cmd == CMD_ACK || h.cmd == CMD_WINS)
}

/// This process's resident set, from `/proc/self/status` (0 elsewhere).
fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}
