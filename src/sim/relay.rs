//! [`UdpRelay`]: an in-process UDP relay on loopback that applies a
//! [`Link`]'s seeded faults (loss, delay, jitter, reordering, duplication)
//! to real datagrams between clients and a server.
//!
//! ```text
//!  client ──▶ relay.addr() ══ to_server link ══▶ back socket ──▶ server
//!  client ◀── relay.addr() ◀═ to_client link ══ back socket ◀── server
//! ```
//!
//! Each client address gets a back socket of its own, so the server sees one
//! peer per client, and a pair of links seeded from the relay's seed and
//! the client's arrival order: the same datagrams in the same order meet the
//! same fate. Datagrams in transit are capped ([`RelayConfig::max_in_flight`]);
//! beyond that they are dropped and counted. The relay runs as one task and
//! stops when dropped or [`stop`](UdpRelay::stop)ped.
//!
//! ```no_run
//! use kcp_rs::sim::relay::{RelayConfig, UdpRelay};
//! use kcp_rs::sim::LinkConfig;
//!
//! # async fn demo(server: std::net::SocketAddr) -> std::io::Result<()> {
//! let relay = UdpRelay::start(server, RelayConfig::symmetric(LinkConfig::lossy(0.1), 7)).await?;
//! // Clients connect to relay.addr() instead of the server.
//! let client_target = relay.addr();
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::ReadBuf;
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;
use tokio::time::{Instant, Sleep};

use super::{Link, LinkConfig, LinkStats};

/// Faults and limits of a [`UdpRelay`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RelayConfig {
    /// Faults on the way from clients to the server.
    pub to_server: LinkConfig,
    /// Faults on the way from the server to clients.
    pub to_client: LinkConfig,
    /// Seed of every link's randomness.
    pub seed: u64,
    /// Datagrams held in transit (delayed) at most, over all links.
    pub max_in_flight: usize,
    /// Clients (source addresses) served at most; datagrams from more are
    /// dropped.
    pub max_clients: usize,
}

impl RelayConfig {
    /// The same faults both ways.
    pub fn symmetric(link: LinkConfig, seed: u64) -> Self {
        RelayConfig {
            to_server: link,
            to_client: link,
            seed,
            max_in_flight: 65_536,
            max_clients: 1024,
        }
    }

    /// No faults: a plain forwarder.
    pub fn perfect() -> Self {
        Self::symmetric(LinkConfig::perfect(), 0)
    }
}

/// What a relay did, summed over its clients.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// The links from clients to the server.
    pub to_server: LinkStats,
    /// The links from the server to clients.
    pub to_client: LinkStats,
    /// Datagrams dropped because too many were in transit, too many
    /// clients, or the relay was a black hole.
    pub refused: u64,
    /// Clients seen.
    pub clients: usize,
}

/// An in-process UDP relay with seeded faults; see the [module docs](self).
#[derive(Debug)]
pub struct UdpRelay {
    addr: SocketAddr,
    control: Arc<Control>,
    task: JoinHandle<()>,
}

#[derive(Debug, Default)]
struct Control {
    blackhole: AtomicBool,
    stats: Mutex<RelayStats>,
}

/// Receive buffer asked for on the relay's sockets. The kernel's default
/// (about 200 KiB) overflows in a bulk burst, and those drops would add
/// loss the seeded model did not choose: bursty, unseeded, and unlike the
/// loss a test asked for.
const RELAY_RECV_BUFFER: usize = 4 << 20;

/// Asks for [`RELAY_RECV_BUFFER`]; the kernel may grant less
/// (`net.core.rmem_max`), which only makes kernel drops likelier again.
fn roomy(sock: &std::net::UdpSocket) {
    let _ = socket2::SockRef::from(sock).set_recv_buffer_size(RELAY_RECV_BUFFER);
}

impl UdpRelay {
    /// Starts a relay on `127.0.0.1` (or `::1` for an IPv6 server) that
    /// forwards to `server`.
    ///
    /// # Errors
    /// When the front socket cannot be bound.
    pub async fn start(server: SocketAddr, config: RelayConfig) -> io::Result<UdpRelay> {
        let front_std = std::net::UdpSocket::bind(loopback(server))?;
        roomy(&front_std);
        front_std.set_nonblocking(true)?;
        let front_tx = front_std.try_clone()?;
        let front = UdpSocket::from_std(front_std)?;
        let addr = front.local_addr()?;
        let control = Arc::new(Control::default());
        let mut state = Relay {
            front,
            front_tx,
            server,
            cfg: config,
            start: Instant::now(),
            clients: HashMap::new(),
            order: Vec::new(),
            control: control.clone(),
            sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
            buf: vec![0; 65_536],
            refused: 0,
        };
        let task = tokio::spawn(async move { poll_fn(|cx| state.poll_run(cx)).await });
        Ok(UdpRelay {
            addr,
            control,
            task,
        })
    }

    /// The address clients send to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Drops every datagram both ways while `on`: the peers vanish from
    /// each other's view without closing anything.
    pub fn set_blackhole(&self, on: bool) {
        self.control.blackhole.store(on, Ordering::SeqCst);
    }

    /// Counters so far (refreshed as the relay works).
    pub fn stats(&self) -> RelayStats {
        *self.control.stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stops forwarding and closes the sockets.
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for UdpRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn loopback(like: SocketAddr) -> SocketAddr {
    if like.is_ipv4() {
        (std::net::Ipv4Addr::LOCALHOST, 0).into()
    } else {
        (std::net::Ipv6Addr::LOCALHOST, 0).into()
    }
}

struct Client {
    back: UdpSocket,
    /// The same socket for sending: a std handle sends at once, where
    /// tokio's `try_send` waits for the reactor's first writable event.
    back_tx: std::net::UdpSocket,
    up: Link,
    down: Link,
}

struct Relay {
    front: UdpSocket,
    front_tx: std::net::UdpSocket,
    server: SocketAddr,
    cfg: RelayConfig,
    start: Instant,
    clients: HashMap<SocketAddr, Client>,
    order: Vec<SocketAddr>,
    control: Arc<Control>,
    sleep: Pin<Box<Sleep>>,
    buf: Vec<u8>,
    refused: u64,
}

impl Relay {
    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn in_flight(&self) -> usize {
        self.clients
            .values()
            .map(|c| c.up.in_transit() + c.down.in_transit())
            .sum()
    }

    fn admit(&mut self) -> bool {
        if self.control.blackhole.load(Ordering::SeqCst)
            || self.in_flight() >= self.cfg.max_in_flight
        {
            self.refused += 1;
            return false;
        }
        true
    }

    fn client(&mut self, from: SocketAddr) -> Option<&mut Client> {
        if !self.clients.contains_key(&from) {
            if self.clients.len() >= self.cfg.max_clients {
                return None;
            }
            let back = std::net::UdpSocket::bind(loopback(self.server)).ok()?;
            back.connect(self.server).ok()?;
            roomy(&back);
            back.set_nonblocking(true).ok()?;
            let back_tx = back.try_clone().ok()?;
            let back = UdpSocket::from_std(back).ok()?;
            let n = self.order.len() as u64;
            let seed = self.cfg.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            self.clients.insert(
                from,
                Client {
                    back,
                    back_tx,
                    up: Link::new(self.cfg.to_server, seed),
                    down: Link::new(self.cfg.to_client, seed ^ 0xD0D0),
                },
            );
            self.order.push(from);
        }
        self.clients.get_mut(&from)
    }

    fn poll_run(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            let mut work = false;
            let now = self.now_ms();
            let mut buf = std::mem::take(&mut self.buf);
            // Clients to the server.
            for _ in 0..64 {
                let mut rb = ReadBuf::new(&mut buf);
                match self.front.poll_recv_from(cx, &mut rb) {
                    Poll::Ready(Ok(from)) => {
                        work = true;
                        let len = rb.filled().len();
                        if !self.admit() {
                            continue;
                        }
                        match self.client(from) {
                            Some(c) => c.up.send(now, &buf[..len]),
                            None => self.refused += 1,
                        }
                    }
                    Poll::Ready(Err(_)) => work = true,
                    Poll::Pending => break,
                }
            }
            // The server to clients.
            for i in 0..self.order.len() {
                let from = self.order[i];
                for _ in 0..64 {
                    let mut rb = ReadBuf::new(&mut buf);
                    let Some(c) = self.clients.get_mut(&from) else {
                        break;
                    };
                    match c.back.poll_recv_from(cx, &mut rb) {
                        Poll::Ready(Ok(_)) => {
                            work = true;
                            let len = rb.filled().len();
                            if !self.admit() {
                                continue;
                            }
                            if let Some(c) = self.clients.get_mut(&from) {
                                c.down.send(now, &buf[..len]);
                            }
                        }
                        Poll::Ready(Err(_)) => work = true,
                        Poll::Pending => break,
                    }
                }
            }
            self.buf = buf;
            // Deliver what is due.
            let mut stats = RelayStats {
                refused: self.refused,
                clients: self.clients.len(),
                ..RelayStats::default()
            };
            for (addr, c) in &mut self.clients {
                let (front, back) = (&self.front_tx, &c.back_tx);
                c.up.deliver(now, |d| {
                    let _ = back.send(d);
                });
                c.down.deliver(now, |d| {
                    let _ = front.send_to(d, *addr);
                });
                add(&mut stats.to_server, c.up.stats());
                add(&mut stats.to_client, c.down.stats());
            }
            *self.control.stats.lock().unwrap_or_else(|p| p.into_inner()) = stats;
            if work {
                continue;
            }
            if self.in_flight() > 0 {
                // Look again in a millisecond (links count whole ms).
                let at = Instant::now() + Duration::from_millis(1);
                self.sleep.as_mut().reset(at);
                if self.sleep.as_mut().poll(cx).is_ready() {
                    continue;
                }
            }
            return Poll::Pending;
        }
    }
}

fn add(sum: &mut LinkStats, s: LinkStats) {
    sum.sent += s.sent;
    sum.dropped += s.dropped;
    sum.duplicated += s.duplicated;
    sum.delivered += s.delivered;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn forwards_both_ways_and_drops_seeded() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let relay = UdpRelay::start(server.local_addr().unwrap(), RelayConfig::perfect())
            .await
            .unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        client.connect(relay.addr()).await.unwrap();
        client.send(b"up").await.unwrap();
        let mut buf = [0u8; 16];
        let (n, back) = server.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"up");
        server.send_to(b"down", back).await.unwrap();
        let n = client.recv(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"down");
        relay.set_blackhole(true);
        client.send(b"lost").await.unwrap();
        let r = tokio::time::timeout(Duration::from_millis(100), server.recv_from(&mut buf)).await;
        assert!(r.is_err(), "black hole forwarded a datagram");
        assert_eq!(relay.stats().refused, 1);
        relay.stop();
    }

    #[tokio::test]
    async fn loss_and_delay_apply() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let cfg = RelayConfig::symmetric(
            LinkConfig {
                loss: 0.5,
                delay: 30,
                ..LinkConfig::perfect()
            },
            3,
        );
        let relay = UdpRelay::start(server.local_addr().unwrap(), cfg)
            .await
            .unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        client.connect(relay.addr()).await.unwrap();
        let start = Instant::now();
        for i in 0..200u8 {
            client.send(&[i]).await.unwrap();
        }
        let mut buf = [0u8; 4];
        let mut got = 0;
        server.recv_from(&mut buf).await.unwrap();
        assert!(start.elapsed() >= Duration::from_millis(25));
        got += 1;
        while let Ok(Ok(_)) =
            tokio::time::timeout(Duration::from_millis(200), server.recv_from(&mut buf)).await
        {
            got += 1;
        }
        assert!((60..140).contains(&got), "{got} of 200 at 50% loss");
        let st = relay.stats();
        assert_eq!(st.to_server.sent, 200);
        assert_eq!(st.to_server.delivered, got);
    }
}
