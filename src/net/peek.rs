//! What the session layer reads in a datagram itself, besides handing it
//! to the core: whether a datagram for no known session opens one, and
//! which commands an accepted one carries (for half-open confirmation and
//! window-answer repeats).

use crate::codec::Segments;
use crate::constants::{CMD_ACK, CMD_PUSH, CMD_WASK, CMD_WINS};
use crate::KcpConfig;

/// Whether a datagram for no known session looks like the first flight of a
/// new one: only PUSH segments, the sender has received nothing
/// (`una == initial_sn`), and every `sn` within the first receive window.
///
/// ikcp (and kcp-go, and this crate) start a conversation by sending data
/// from `sn = initial_sn` (0 in ikcp); nothing else precedes it (the
/// initial remote window is non-zero, so no window probe either). The
/// datagram holding the very first segment is not required: when it is
/// lost, KCP resends it only after an RTO that doubles with each loss
/// (3 s after four losses in the default mode), and every later datagram
/// of the first window, dropped meanwhile, would be lost work. A session
/// opened by a later one holds it until the first arrives. A client that
/// keeps retransmitting into a session this side already closed reopens
/// one only while it is still in its first window and has received
/// nothing from this side.
pub(crate) fn is_first_flight(data: &[u8], cfg: &KcpConfig) -> bool {
    let mut any = false;
    for seg in Segments::new(data) {
        let Ok((h, _)) = seg else {
            return false;
        };
        if h.cmd != CMD_PUSH || h.una.get() != cfg.initial_sn {
            return false;
        }
        if h.sn.get().wrapping_sub(cfg.initial_sn) >= cfg.rcv_wnd as u32 {
            return false;
        }
        any = true;
    }
    any
}

/// [`Commands::answers`] of one datagram.
#[cfg(test)]
pub(super) fn is_answer(data: &[u8], told_shut: bool) -> bool {
    commands(data).answers(told_shut)
}

/// The commands a datagram carries, one bit each: what the session layer
/// looks for in a datagram KCP accepted, found in one walk over it.
#[derive(Clone, Copy, Default)]
pub(super) struct Commands(u8);

impl Commands {
    pub(super) fn has(self, cmd: u8) -> bool {
        self.0 & Self::bit(cmd) != 0
    }

    fn bit(cmd: u8) -> u8 {
        1 << (cmd.wrapping_sub(CMD_PUSH) & 7)
    }

    /// Whether the datagram answers something we sent: an ACK, a WINS after our
    /// window probe, or, once we have announced a shut receive window
    /// (`told_shut`), a WASK.
    ///
    /// A KCP peer asks for a window only when the last one it heard was zero
    /// (its initial remote window is the default receive window, never zero;
    /// this crate's clients also ask as a keep-alive, but only after
    /// `keep_alive` of silence), so its WASK then says that it heard us as
    /// plainly as a WINS does. ikcp and kcp-go ask 7 s after they heard the
    /// window shut, this crate's clients one RTO after. This
    /// matters for a half-open session: it hands nothing to a reader, so a
    /// peer that sends a window's worth of data shuts it within a round trip,
    /// and from then on sends only window probes, at most one a second from
    /// this crate's clients (see [`probe_shut_window`](super::probes::probe_shut_window)). If only a WINS
    /// confirmed the session, each of those would confirm it only through a
    /// three-datagram exchange (their WASK, our WINS and WASK, their WINS): at
    /// 30% loss each way one in three, and a session could expire although
    /// the peer was plainly there. Neither a WASK nor a WINS proves more than
    /// that the peer speaks KCP: a blind spoofer can send either.
    pub(super) fn answers(self, told_shut: bool) -> bool {
        self.has(CMD_ACK) || self.has(CMD_WINS) || (told_shut && self.has(CMD_WASK))
    }
}

/// The [`Commands`] of a datagram (of its segments up to the first damaged
/// one).
pub(super) fn commands(data: &[u8]) -> Commands {
    Segments::new(data)
        .map_while(Result::ok)
        .fold(Commands(0), |set, (h, _)| {
            Commands(set.0 | Commands::bit(h.cmd))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Header;
    use crate::constants::{CMD_WASK, OVERHEAD};
    use crate::net::udp::Outbox;
    use crate::sequence::{Seq, Timestamp};
    use crate::Kcp;

    fn seg(cmd: u8, sn: u32, una: u32) -> Vec<u8> {
        let h = Header {
            conv: 9,
            cmd,
            frg: 0,
            wnd: 128,
            ts: Timestamp::new(0),
            sn: Seq::new(sn),
            una: Seq::new(una),
            len: 0,
        };
        let mut b = vec![0; OVERHEAD];
        h.emit(&mut b);
        b
    }

    #[test]
    fn first_flight_rules() {
        let cfg = KcpConfig::default();
        assert!(is_first_flight(&seg(CMD_PUSH, 0, 0), &cfg));
        let mut two = seg(CMD_PUSH, 1, 0);
        two.extend(seg(CMD_PUSH, 0, 0));
        assert!(is_first_flight(&two, &cfg));
        // A later segment of the first window (the first one was lost).
        assert!(is_first_flight(&seg(CMD_PUSH, 1, 0), &cfg));
        assert!(is_first_flight(&seg(CMD_PUSH, 127, 0), &cfg));
        // Beyond the first window, data already received, not data, too far.
        assert!(!is_first_flight(&seg(CMD_PUSH, 128, 0), &cfg));
        assert!(!is_first_flight(&seg(CMD_PUSH, 0, 3), &cfg));
        assert!(!is_first_flight(&seg(CMD_ACK, 0, 0), &cfg));
        assert!(!is_first_flight(&seg(CMD_WASK, 0, 0), &cfg));
        let mut far = seg(CMD_PUSH, 0, 0);
        far.extend(seg(CMD_PUSH, 500, 0));
        assert!(!is_first_flight(&far, &cfg));
        // Truncated, garbage.
        assert!(!is_first_flight(&seg(CMD_PUSH, 0, 0)[..20], &cfg));
        assert!(!is_first_flight(&[0xff; 64], &cfg));
        // Initial sn other than 0.
        let cfg = KcpConfig {
            initial_sn: u32::MAX - 1,
            ..cfg
        };
        assert!(is_first_flight(
            &seg(CMD_PUSH, u32::MAX - 1, u32::MAX - 1),
            &cfg
        ));
        assert!(!is_first_flight(&seg(CMD_PUSH, 0, 0), &cfg));
    }

    /// `Kcp::ask_window` (added for the keep-alive) sends a WASK at the
    /// next flush, and the peer answers with WINS at once.
    #[test]
    fn ask_window_is_answered_with_wins() {
        let cfg = KcpConfig::fast();
        let mut a = Kcp::with_config(9, Outbox::default(), cfg).unwrap();
        let mut b = Kcp::with_config(9, Outbox::default(), cfg).unwrap();
        a.update(0);
        b.update(0);
        assert!(a.check(5) > 1000, "idle before the probe");
        a.ask_window();
        assert_eq!(a.check(5), 20, "the probe leaves at the next tick");
        a.update(20);
        let out = std::mem::take(a.output_mut());
        assert_eq!(out.lens.len(), 1);
        let wask = Segments::new(&out.buf).next().unwrap().unwrap().0;
        assert_eq!(wask.cmd, CMD_WASK);
        b.input(&out.buf).unwrap();
        assert_eq!(b.check(21), 21, "the answer is due at once");
        b.update(21);
        assert!(is_answer(&b.output().buf, false));
    }

    #[test]
    fn answers_are_acks_and_window_reports() {
        for told_shut in [false, true] {
            assert!(is_answer(&seg(CMD_ACK, 0, 0), told_shut));
            assert!(is_answer(&seg(CMD_WINS, 0, 0), told_shut));
            assert!(!is_answer(&seg(CMD_PUSH, 0, 0), told_shut));
        }
        // A window probe answers only a shut window we announced.
        assert!(!is_answer(&seg(CMD_WASK, 0, 0), false));
        assert!(is_answer(&seg(CMD_WASK, 0, 0), true));
        let mut push_then_ask = seg(CMD_PUSH, 3, 0);
        push_then_ask.extend(seg(CMD_WASK, 0, 0));
        assert!(is_answer(&push_then_ask, true));
    }
}
