//! The session layer's own deadlines for a session, besides what
//! `Kcp::check` names: keep-alive probes, the half-open probe and its
//! repeats, asks for a shut window, repeated window answers, and the end of
//! linger. Each returns a time or says whether something is due now; the
//! socket task files the earliest (see `Endpoint::drive`).

use std::io;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio::time::Instant;

use super::config::SessionConfig;
use super::session::{CloseReason, Role, Session};
use super::stats::Counters;

/// How long a half-open session waits for an answer to its first window
/// probe before repeating it; the wait doubles after each repeat (200, 400,
/// 800 ms …), so a silent source draws only a handful of probes before
/// `half_open_timeout`.
pub(super) const HALF_OPEN_PROBE: Duration = Duration::from_millis(200);

/// When a window answer (`WINS`) is repeated, after the probe arrived (a
/// client before the peer's first data) or the window reopened, until the
/// peer's next data (see [`repeat_window_answer`]).
const WINDOW_ANSWER_REPEATS: [Duration; 2] =
    [Duration::from_millis(100), Duration::from_millis(300)];

/// The longest wait between two asks for a shut window (see
/// `probe_shut_window`): a peer whose application stopped reading costs a
/// 24-byte probe a second at most.
const WINDOW_PROBE_MAX: Duration = Duration::from_secs(1);

/// A lingering session leaves once nothing has arrived for four RTOs, but
/// not sooner than this after the last datagram (or after it finished).
const LINGER_QUIET_MIN: Duration = Duration::from_millis(500);

/// A finished session stays in the demultiplexing map, acknowledging what
/// the peer retransmits (the ACK of its last segment may have been lost),
/// until [`linger_deadline`]. For the application and the counters it is
/// closed now.
pub(super) fn begin_linger(sess: &mut Session, now: Instant, counters: &Counters) {
    sess.lingering_since = Some(now);
    let (peer, conv) = (sess.shared.peer, sess.shared.conv);
    sess.shared.close(CloseReason::new(
        io::ErrorKind::ConnectionAborted,
        "session closed",
    ));
    Counters::add(&counters.sessions_lingering, 1);
    Counters::add(&counters.sessions_closed, 1);
    counters.sessions_active.fetch_sub(1, Relaxed);
    tracing::debug!(%peer, conv, "session closed, lingering");
}

/// When a lingering session leaves: once nothing has arrived for four RTOs
/// (at least [`LINGER_QUIET_MIN`]), so that a retransmission answered by a
/// lost ACK is answered again, and at the latest
/// [`SessionConfig::linger`] after it finished.
pub(super) fn linger_deadline(sess: &Session, since: Instant, cfg: &SessionConfig) -> Instant {
    let quiet = Duration::from_millis(4 * u64::from(sess.kcp.rto())).max(LINGER_QUIET_MIN);
    (since.max(sess.last_recv) + quiet).min(since + cfg.linger)
}

/// Asks a peer whose window is shut for it again, sooner than KCP would.
///
/// ikcp's own probe waits 7 s, then 10.5 s, 15.75 s …, and the peer's
/// announcement that its window reopened is a single `WINS`: when that one
/// datagram is lost, the transfer stalls for seconds, and at heavy loss a
/// lost probe or answer or two outlast the idle timeout. So while the
/// window is shut and data waits, the session asks one RTO after it shut,
/// then twice as long after each ask, up to [`WINDOW_PROBE_MAX`]. A `WASK`
/// is 24 bytes and every KCP implementation answers it. Returns whether a
/// probe is due now.
pub(super) fn probe_shut_window(sess: &mut Session, now: Instant) -> bool {
    if sess.kcp.remote_window() != 0 || sess.kcp.wait_snd() == 0 {
        sess.window_probe_at = None;
        sess.window_probes = 0;
        return false;
    }
    let rto = Duration::from_millis(u64::from(sess.kcp.rto()));
    let wait = |probes: u8| doubled(rto, probes).min(WINDOW_PROBE_MAX);
    let at = *sess.window_probe_at.get_or_insert(now + wait(0));
    if now < at {
        return false;
    }
    sess.kcp.ask_window();
    sess.window_probes = sess.window_probes.saturating_add(1);
    sess.window_probe_at = Some(now + wait(sess.window_probes));
    true
}

/// Repeats a client's answer to a window probe while the peer has sent no
/// data, so that a listener still holding the session half-open hears it.
///
/// A client that sends a small request and waits for the reply never fills
/// a window and never probes one, so the listener confirms it only through
/// its own probes (at 0, 0.2, 0.6, 1.4 and 3.0 s), each of which needs the
/// probe and its one answer to get through: at 30% loss each way about 2%
/// of such clients were never accepted. So until the peer's first `PUSH`
/// (a half-open listener sends none), the client sends the `WINS` that KCP
/// answered a `WASK` with again [`WINDOW_ANSWER_REPEATS`] after it. Each
/// received `WASK` draws at most that many more 24-byte answers (a new one
/// restarts the schedule, it does not add to it), and the listener's side
/// costs nothing: it sends no more probes.
///
/// The same repeats follow the `WINS` that tells the peer a shut receive
/// window reopened (the reader caught up), in either role: a sender that
/// is not ours (ikcp, kcp-go) would otherwise, when that one datagram is
/// lost, wait for its own zero-window probe, 7 s at first. Returns whether
/// a repeat is due now.
pub(super) fn repeat_window_answer(sess: &mut Session, now: Instant) -> bool {
    let Some(at) = next_window_answer(sess) else {
        sess.window_told_at = None;
        return false;
    };
    if now < at {
        return false;
    }
    sess.kcp.tell_window();
    sess.window_answers_repeated += 1;
    true
}

/// When the session repeats its window answer next (see
/// [`repeat_window_answer`]), if it does.
pub(super) fn next_window_answer(sess: &Session) -> Option<Instant> {
    let told = sess.window_told_at?;
    let after = WINDOW_ANSWER_REPEATS.get(usize::from(sess.window_answers_repeated))?;
    Some(told + *after)
}

/// When a half-open session repeats its window probe: [`HALF_OPEN_PROBE`]
/// after the first one, then twice as long after each repeat.
pub(super) fn next_half_open_probe(sess: &Session) -> Instant {
    sess.last_probe + doubled(HALF_OPEN_PROBE, sess.half_open_probes)
}

/// `base` doubled `times` times (at most 16: the probes' backoff).
fn doubled(base: Duration, times: u8) -> Duration {
    base * (1u32 << times.min(16))
}

/// After how much silence a session probes its peer. The connecting side
/// probes at [`SessionConfig::keep_alive`]; a listener's session answers
/// those probes and probes itself only halfway between `keep_alive` and
/// `idle_timeout` (at most `2 × keep_alive`), for peers that send no
/// keep-alive of their own (ikcp, kcp-go). Between two of our own ends,
/// only the client's probes travel, which halves an idle listener's
/// traffic.
pub(super) fn keep_alive(cfg: &SessionConfig, role: Role) -> Option<Duration> {
    let k = cfg.keep_alive?;
    Some(match role {
        Role::Client => k,
        Role::Server => (k * 2).min((k + cfg.idle_timeout) / 2).max(k),
    })
}

/// When a session probes next: `k` after the last datagram heard, or, while
/// a probe is unanswered (lost, or its answer was), `keep_alive / 5` after
/// it, so that a long keep-alive still gets several tries before
/// `idle_timeout`.
pub(super) fn next_probe(sess: &Session, k: Duration, cfg: &SessionConfig) -> Instant {
    if sess.last_probe > sess.last_recv {
        sess.last_probe + cfg.keep_alive.unwrap_or(k) / 5
    } else {
        sess.last_recv + k
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listener_probes_later_than_its_clients() {
        let s = Duration::from_secs;
        let cfg = SessionConfig::default();
        assert_eq!(keep_alive(&cfg, Role::Client), Some(s(20)));
        assert_eq!(keep_alive(&cfg, Role::Server), Some(s(25)));
        let quick = SessionConfig {
            keep_alive: Some(Duration::from_millis(300)),
            idle_timeout: Duration::from_millis(1500),
            ..cfg.clone()
        };
        assert_eq!(
            keep_alive(&quick, Role::Server),
            Some(Duration::from_millis(600))
        );
        let off = SessionConfig {
            keep_alive: None,
            ..cfg
        };
        assert_eq!(keep_alive(&off, Role::Server), None);
    }
}
