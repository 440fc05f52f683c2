//! [`SessionConfig`]: the protocol's knobs plus the session layer's.

use std::io;
use std::time::Duration;

use crate::KcpConfig;

/// Configuration of a [`KcpListener`](super::KcpListener) and of the
/// sessions it accepts, or of one [`KcpStream`](super::KcpStream) made by
/// `connect`.
///
/// A plain struct with a preset: start from [`SessionConfig::default`] and
/// change what you need.
///
/// ```
/// use kcp_rs::net::SessionConfig;
/// use std::time::Duration;
///
/// let cfg = SessionConfig {
///     idle_timeout: Duration::from_secs(10),
///     max_sessions: 50_000,
///     ..SessionConfig::default()
/// };
/// assert!(cfg.validate().is_ok());
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct SessionConfig {
    /// The protocol configuration of every session. Both ends must agree on
    /// `mtu`, `stream` and `initial_sn`.
    ///
    /// Default: [`KcpConfig::fast`] in message mode (`stream: false`), so
    /// that [`send_msg`](super::KcpStream::send_msg) works and ikcp peers in
    /// their default mode interoperate. Stream mode coalesces small writes
    /// into full segments (fewer datagrams for chatty byte streams) but has
    /// no message boundaries.
    pub kcp: KcpConfig,
    /// Conversation id used by [`KcpStream::connect`](super::KcpStream::connect);
    /// `None` picks a random non-zero one. Ignored by listeners, which take
    /// the id their peer chose.
    pub conv: Option<u32>,
    /// A session that receives no valid datagram for this long is closed;
    /// its reads and writes fail with [`io::ErrorKind::TimedOut`]. This is
    /// the bound within which a vanished peer is noticed. Keep it above
    /// [`keep_alive`](Self::keep_alive) by a few `keep_alive / 5` (the
    /// interval of repeated probes) so that a live but quiet peer is not
    /// dropped. Default: 30 s.
    pub idle_timeout: Duration,
    /// When nothing has been received for this long, ask the peer for its
    /// window (a KCP `WASK` segment, which every KCP implementation answers
    /// with `WINS`): cheap traffic that keeps a quiet session, and NAT
    /// mappings on the way, alive. `None` disables it, and then a quiet
    /// session ends after `idle_timeout`. A probe still unanswered is
    /// repeated every `keep_alive / 5`, so one lost probe does not end the
    /// session. Default: 20 s.
    ///
    /// The connecting side ([`KcpStream::connect`](super::KcpStream::connect))
    /// probes at this interval. A listener's sessions answer those probes
    /// and probe only after longer without a datagram (halfway between
    /// `keep_alive` and `idle_timeout`, at most twice `keep_alive`), which
    /// keeps peers without keep-alives of their own (ikcp, kcp-go) while an
    /// idle listener serving our own clients sends only answers.
    pub keep_alive: Option<Duration>,
    /// A session created by a peer's first datagram that has not answered
    /// anything we sent within this time is removed silently (it was never
    /// handed to `accept`). An answer is an ACK or a `WINS`, or, once the
    /// session has announced a full receive window (nothing reads it until
    /// it is confirmed), a `WASK`: a peer asks for a window only after
    /// hearing it shut. The listener sends its window probe with the
    /// first ACK and repeats it after 200 ms, then 400, 800 ms … (at 0.2,
    /// 0.6, 1.4, 3.0 s, …), so a spoofed first datagram draws a handful of
    /// datagrams back (5 within the default). Default: 5 s.
    pub half_open_timeout: Duration,
    /// How long at most a finished session stays behind, like TCP's
    /// TIME_WAIT. A session finishes when its handles are dropped and
    /// everything it sent is acknowledged; if the ACK of the peer's last
    /// segment was lost, the peer retransmits it, and a session removed at
    /// once would leave those retransmissions unanswered (the peer's
    /// `shutdown` would fail with `TimedOut` although everything arrived).
    ///
    /// A lingering session only acknowledges: it feeds what arrives to KCP
    /// (new data is acknowledged and discarded, as for a dropped reader),
    /// sends no keep-alive, and leaves once nothing has arrived for four
    /// retransmission timeouts (at least 500 ms), and at the latest
    /// `linger` after it finished. It no longer counts in
    /// [`ListenerStats::sessions_active`](super::ListenerStats::sessions_active)
    /// but in `sessions_lingering`, and it still counts against
    /// [`max_sessions`](Self::max_sessions) and
    /// [`max_sessions_per_ip`](Self::max_sessions_per_ip), so sessions
    /// opened and finished in a loop cannot hold more than the caps. Until
    /// it leaves, a datagram from the same address with the same conv goes
    /// to it, not to a new session. A session that never heard from its
    /// peer does not linger. Zero turns lingering off. Default: 3 s.
    pub linger: Duration,
    /// Most sessions one listener holds, half-open and lingering ones
    /// included. Datagrams that would open more are dropped and counted.
    /// Default: 10 000.
    pub max_sessions: usize,
    /// Most sessions one source IP address may hold on a listener.
    /// Default: 1 000.
    pub max_sessions_per_ip: usize,
    /// Sessions confirmed but not yet taken by `accept`. A session that
    /// finds the backlog full is dropped. Default: 128.
    pub accept_backlog: usize,
    /// Bytes a stream buffers beyond KCP's own send window before `write`
    /// returns `Pending` (and `try_write` `WouldBlock`). Writers wake as ACKs
    /// free room. Default: 256 KiB.
    pub send_queue_limit: usize,
    /// Bytes received in order and waiting for the application beyond KCP's
    /// own receive window (in message mode: about `recv_queue_limit / 16 KiB`
    /// messages). When it is full the session stops taking data out of KCP,
    /// KCP's advertised window closes and the peer stops sending.
    /// Default: 256 KiB.
    pub recv_queue_limit: usize,
    /// Flush at once after a write instead of at the next `interval` tick:
    /// lower latency, more (smaller) datagrams. Default: on.
    pub flush_on_write: bool,
    /// Flush at once after datagrams arrive, so ACKs leave immediately (and
    /// new data as soon as ACKs open the window) instead of at the next
    /// `interval` tick. Needed for high throughput. One exception: when the
    /// data goes to a reader that was waiting for it, the ACKs wait for the
    /// reader's turn, so that a reply written at once carries them (one
    /// datagram each way per request and response); a reader that answers
    /// late lets them go after the `interval` tick or the session's RTO
    /// less its RTT and 10 ms (5–25 ms), whichever comes first.
    /// Default: on.
    pub ack_nodelay: bool,
    /// `SO_SNDBUF` requested for the UDP socket (`None`: the OS default).
    /// The kernel may cap it (Linux: `net.core.wmem_max`). Default: 8 MiB.
    pub socket_send_buffer: Option<usize>,
    /// `SO_RCVBUF` requested for the UDP socket (`None`: the OS default).
    /// With the OS default (about 200 KiB on Linux) a bulk transfer over
    /// loopback overruns the buffer and most datagrams are lost. The kernel
    /// may cap it (Linux: `net.core.rmem_max`). Default: 8 MiB.
    pub socket_recv_buffer: Option<usize>,
    /// Reed-Solomon forward error correction, framed like kcp-go's
    /// (`ListenWithOptions(addr, nil, k, m)` / `DialWithOptions`). `None`
    /// (the default) sends plain KCP datagrams.
    ///
    /// With FEC on, every KCP datagram goes out inside a FEC data packet
    /// and each group of `data_shards` packets is followed by
    /// `parity_shards` parity packets; the receiver rebuilds lost datagrams
    /// from the parity without waiting for a retransmission. As kcp-go does
    /// (`ReserveBytes(8)`), the 8 bytes of FEC header come out of
    /// [`kcp.mtu`](KcpConfig::mtu), which stays the size of the datagrams
    /// on the wire: each KCP datagram is at most `mtu - 8` bytes.
    ///
    /// **Both ends must agree** on whether FEC is on and on its
    /// `data_shards` and `parity_shards`. The two framings do not mix: a
    /// plain KCP datagram is not a FEC packet (KCP's command byte is never
    /// a FEC type) and a FEC packet's seqid is read as a wrong conversation
    /// id, so with FEC on at one end only nothing gets through. The sessions
    /// time out after [`idle_timeout`](Self::idle_timeout) (or a client sees
    /// a listener drop everything: `dropped_invalid` / `dropped_unknown` in
    /// [`ListenerStats`](super::ListenerStats)). With other shard counts,
    /// packets at positions the decoder does not expect are refused and
    /// counted in [`SessionStats::fec_dropped`](super::SessionStats::fec_dropped);
    /// parity coded for another group size can rebuild garbage, which KCP
    /// usually refuses (its header no longer parses or names another
    /// conversation) but cannot always detect: KCP has no checksum, and
    /// neither has kcp-go's FEC without encryption.
    ///
    /// kcp-go's parity packets carry no conversation id, so with FEC on a
    /// listener tells sessions apart by the peer's address alone (as kcp-go
    /// does): one session per client address and port, whatever conv it
    /// uses. A datagram from that address for another conv is refused by
    /// the session.
    ///
    /// A session closes a partly filled group once it has waited a quarter
    /// of the RTO (empty packets, then parity), so that a loss on sparse
    /// traffic is repaired before KCP would retransmit it;
    /// [`FecConfig::early_close`](crate::fec::FecConfig::early_close) and
    /// [`group_wait_divisor`](crate::fec::FecConfig::group_wait_divisor)
    /// switch and tune this. For latency-bound sparse traffic prefer
    /// [`FecConfig::high_protection`](crate::fec::FecConfig::high_protection)
    /// (8+4): with one or two parity shards a few lost datagrams in ten
    /// thousand still wait for KCP's retransmission (docs/tuning.md, "FEC by
    /// loss rate").
    ///
    /// Memory per session: the encoder holds `k + m` packets and the
    /// decoder `rx_groups × (k + m)` shards of `max_packet` bytes (about
    /// 36 KiB with [`FecConfig::balanced`](crate::fec::FecConfig::balanced)).
    #[cfg(feature = "fec")]
    pub fec: Option<crate::fec::FecConfig>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            kcp: KcpConfig {
                stream: false,
                ..KcpConfig::fast()
            },
            conv: None,
            idle_timeout: Duration::from_secs(30),
            keep_alive: Some(Duration::from_secs(20)),
            half_open_timeout: Duration::from_secs(5),
            linger: Duration::from_secs(3),
            max_sessions: 10_000,
            max_sessions_per_ip: 1_000,
            accept_backlog: 128,
            send_queue_limit: 256 * 1024,
            recv_queue_limit: 256 * 1024,
            flush_on_write: true,
            ack_nodelay: true,
            socket_send_buffer: Some(8 << 20),
            socket_recv_buffer: Some(8 << 20),
            #[cfg(feature = "fec")]
            fec: None,
        }
    }
}

impl SessionConfig {
    /// Checks that the configuration can work.
    ///
    /// # Errors
    /// [`io::ErrorKind::InvalidInput`] naming the first field that cannot
    /// work, including those of [`KcpConfig::validate`].
    pub fn validate(&self) -> io::Result<()> {
        self.kcp.validate()?;
        let bad = |why: &str| Err(io::Error::new(io::ErrorKind::InvalidInput, why.to_string()));
        if self.idle_timeout.is_zero() {
            return bad("idle_timeout must be positive");
        }
        if self.half_open_timeout.is_zero() {
            return bad("half_open_timeout must be positive");
        }
        if self.keep_alive.is_some_and(|k| k.is_zero()) {
            return bad("keep_alive must be positive");
        }
        if self.max_sessions == 0 || self.max_sessions_per_ip == 0 {
            return bad("session limits must be at least 1");
        }
        if self.accept_backlog == 0 {
            return bad("accept_backlog must be at least 1");
        }
        if self.send_queue_limit == 0 || self.send_queue_limit > u32::MAX as usize {
            return bad("send_queue_limit must be within 1..=u32::MAX");
        }
        if self.recv_queue_limit == 0 {
            return bad("recv_queue_limit must be at least 1");
        }
        #[cfg(feature = "fec")]
        if let Some(fec) = &self.fec {
            if let Err(e) = fec.validate() {
                return bad(&format!("fec: {e}"));
            }
            if self.kcp.mtu as usize > fec.max_packet {
                return bad("fec.max_packet must be at least kcp.mtu");
            }
            self.core_config().validate()?;
        }
        Ok(())
    }

    /// The configuration each session's [`Kcp`](crate::Kcp) is built
    /// with: [`kcp`](Self::kcp), less the FEC header's 8 bytes of MTU when
    /// [`fec`](Self::fec) is on.
    pub fn core_config(&self) -> KcpConfig {
        #[cfg(feature = "fec")]
        if self.fec.is_some() {
            return KcpConfig {
                mtu: crate::fec::FecConfig::kcp_mtu(self.kcp.mtu),
                ..self.kcp
            };
        }
        self.kcp
    }

    /// Chunks the reader's queue holds (see `recv_queue_limit`).
    pub(crate) fn recv_queue_chunks(&self) -> usize {
        self.recv_queue_limit.div_ceil(RECV_CHUNK).max(2)
    }
}

/// Largest piece of a byte stream handed to the reader at once.
pub(crate) const RECV_CHUNK: usize = 16 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_message_mode() {
        let c = SessionConfig::default();
        assert!(c.validate().is_ok());
        assert!(!c.kcp.stream);
        assert!(c.keep_alive.unwrap() < c.idle_timeout);
    }

    #[test]
    fn unworkable_configs_are_refused() {
        let base = SessionConfig::default();
        let bad = [
            SessionConfig {
                idle_timeout: Duration::ZERO,
                ..base.clone()
            },
            SessionConfig {
                max_sessions: 0,
                ..base.clone()
            },
            SessionConfig {
                send_queue_limit: 0,
                ..base.clone()
            },
            SessionConfig {
                kcp: KcpConfig {
                    interval: 1,
                    ..KcpConfig::fast()
                },
                ..base.clone()
            },
        ];
        for c in bad {
            let e = c.validate().unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{c:?}");
        }
    }
}
