//! One session's turn: what the socket task does for a session that a
//! datagram, a handle or a deadline touched.

use std::io;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use tokio::sync::mpsc::error::TrySendError;
use tokio::time::Instant;

use crate::constants::IDLE_CHECK;
use crate::net::config::SessionConfig;
use crate::net::probes::{
    begin_linger, keep_alive, linger_deadline, next_half_open_probe, next_probe,
    next_window_answer, probe_shut_window, repeat_window_answer, HALF_OPEN_PROBE,
};
use crate::net::session::{CloseReason, Role, Session};
use crate::net::stats::Counters;

use super::pump::{pump_reads, pump_writes};
use super::{Ending, Endpoint, REFUSED, TRIM_AFTER, TRIM_SLACK};

impl Endpoint {
    /// Does everything due for one session: layer timers, writes into KCP,
    /// reads out of it, `update`/`flush`, sending, and filing its next
    /// deadline. Returns why to close it, if it must go.
    pub(super) fn drive(&mut self, id: u64, now: Instant) -> Option<(Option<CloseReason>, Ending)> {
        let now_ms = self.ms(now);
        let cfg = &*self.cfg;
        // A client's socket task serves this session alone (see the trim).
        let sole = self.sessions.len() == 1;
        let sess = self.sessions.get_mut(&id)?;
        sess.dirty = false;
        sess.shared.wake_pending.store(false, SeqCst);

        if let Some(since) = sess.lingering_since {
            if now >= linger_deadline(sess, since, cfg) {
                return Some((None, Ending::Finished));
            }
        } else if now >= sess.last_recv + cfg.idle_timeout {
            let msg = format!(
                "no datagram from the peer for {:?} (idle timeout)",
                cfg.idle_timeout
            );
            return Some((
                Some(CloseReason::new(io::ErrorKind::TimedOut, msg)),
                Ending::TimedOut,
            ));
        }
        let mut force = false;
        if sess.role == Role::Server && !sess.confirmed {
            if now >= sess.created + cfg.half_open_timeout {
                return Some((None, Ending::HalfOpen));
            }
            // The probe or its answer may be lost: ask again, less and
            // less often, until answered. A peer that keeps sending (its
            // first flight retransmitted, more data) gets the probe again
            // in the datagram that acknowledges it, at most every
            // `HALF_OPEN_PROBE`: no extra datagram, and at heavy loss the
            // session is not left to expire while the peer is plainly
            // there (it would then ignore the peer, which hears nothing
            // until its idle timeout).
            let timer_due = now >= next_half_open_probe(sess);
            let answer_due = sess.input_pending && now >= sess.last_probe + HALF_OPEN_PROBE;
            if timer_due || answer_due {
                sess.kcp.ask_window();
                sess.last_probe = now;
                if timer_due {
                    sess.half_open_probes = sess.half_open_probes.saturating_add(1);
                }
                force = true;
            }
        } else if let Some(stream) = sess.pending_stream.take() {
            let peer = sess.shared.peer;
            let Some(accept_tx) = &self.accept_tx else {
                return Some((None, Ending::Other));
            };
            match accept_tx.try_send((stream, peer)) {
                Ok(()) => Counters::add(&self.counters.sessions_accepted, 1),
                Err(TrySendError::Full(_)) => {
                    Counters::add(&self.counters.dropped_over_limit, 1);
                    tracing::debug!(%peer, "accept backlog full: session dropped");
                    return Some((None, Ending::Refused));
                }
                Err(TrySendError::Closed(_)) => return Some((None, Ending::Other)),
            }
        }
        let lingering = sess.lingering_since.is_some();
        if let Some(k) = keep_alive(cfg, sess.role).filter(|_| !lingering) {
            if now >= next_probe(sess, k, cfg) {
                sess.kcp.ask_window();
                sess.last_probe = now;
                sess.stats.keepalives_sent += 1;
                force = true;
            }
        }

        force |= probe_shut_window(sess, now);
        force |= repeat_window_answer(sess, now);

        let shutdown = sess.shared.write_shutdown.load(SeqCst);
        let wrote = match pump_writes(sess) {
            Ok(w) => w,
            Err(()) => return Some((Some(dead_link(cfg)), Ending::TimedOut)),
        };
        // A half-open session's data stays in KCP's receive window (which
        // bounds it) until the peer has answered: queueing it for a reader
        // that may never exist would let spoofed first flights make each
        // half-open session hold `recv_queue_limit` (in message mode, that
        // many messages of up to `max_message`) besides.
        //
        // With `ack_nodelay`, the ACKs of what arrived leave now, unless
        // this drive hands data to a reader that was waiting for it: then
        // they are held until the reader has had its turn, so that a reply
        // written at once leaves in the same datagram (one datagram each
        // way per request/response instead of two). The turn ends when the
        // application writes (its data takes the ACKs along), when the
        // reader finds its queue empty again (it did not answer: the stream
        // wakes the task, which sends the ACKs alone), or after
        // `ack_hold_bound` (an application busy elsewhere). The flag is set
        // before the data is handed over, so the reader cannot miss it.
        let acks_due = sess.input_pending && cfg.ack_nodelay;
        let was_held = std::mem::take(&mut sess.ack_deferred);
        // Data written already leaves now and takes the ACKs along.
        let flush_now = force || (wrote && cfg.flush_on_write);
        let may_hold = acks_due && !was_held && !flush_now;
        if may_hold {
            sess.shared.ack_held.store(true, SeqCst);
        }
        let was_shut = sess.kcp.window_full();
        let delivered = (sess.role == Role::Client || sess.confirmed) && pump_reads(sess);
        if was_shut && !sess.kcp.window_full() {
            // The reader reopened a shut window: KCP tells the peer once,
            // at this flush. If that is lost, a peer that is not ours (ikcp,
            // kcp-go) waits for its own probe, 7 s at first; so the answer
            // is repeated as a client's is, until the peer's data arrives.
            sess.window_told_at = Some(now);
            sess.window_answers_repeated = 0;
        }
        // The reader made room in a shut window (or the peer asked): KCP
        // tells the peer at its next flush, which without this would wait
        // for the next `interval` tick while the peer sits idle.
        force |= sess.kcp.tells_window();
        if may_hold && delivered {
            sess.ack_deferred = true;
        } else if may_hold || was_held {
            sess.shared.ack_held.store(false, SeqCst);
        }
        force |= was_held || (acks_due && !sess.ack_deferred);
        force |= wrote && cfg.flush_on_write;
        force |= sess.shared.flush_requested.swap(false, SeqCst);
        if !sess.ack_deferred {
            sess.input_pending = false;
        }
        std::mem::swap(sess.kcp.output_mut(), &mut self.tx);
        sess.kcp.update(now_ms);
        if force {
            sess.kcp.flush();
        }
        std::mem::swap(sess.kcp.output_mut(), &mut self.tx);
        // Every segment carries this side's free receive window: a half-open
        // session's stays shut once full (nothing is read), and from then on
        // the peer's window probes count as answers (see `Commands::answers`).
        if !sess.confirmed && !self.tx.lens.is_empty() && sess.kcp.window_full() {
            sess.told_shut = true;
        }
        // With FEC the datagrams sent are the framed ones, in `wire`. Each
        // buffer keeps its role (no swap), so each grows once to its own
        // largest flush and then never allocates again.
        #[cfg(feature = "fec")]
        let mut fec_deadline = None;
        #[cfg(feature = "fec")]
        let out = match sess.fec.as_mut() {
            Some(fec) => {
                let rto = sess.kcp.rto();
                fec_deadline = fec.encode(&self.tx, &mut self.wire, now_ms, rto, &self.counters);
                self.tx.clear();
                &mut self.wire
            }
            None => &mut self.tx,
        };
        #[cfg(not(feature = "fec"))]
        let out = &mut self.tx;
        if !out.lens.is_empty() {
            let r = self.io.send(sess.shared.peer, out);
            out.clear();
            Counters::add(&self.counters.datagrams_out, r.sent);
            Counters::add(&self.counters.send_errors, r.dropped);
            sess.stats.send_dropped += r.dropped;
            if r.refused && !sess.confirmed {
                let reason = CloseReason::new(io::ErrorKind::ConnectionRefused, REFUSED);
                return Some((Some(reason), Ending::Refused));
            }
        }
        if sess.kcp.is_dead() {
            return Some((Some(dead_link(cfg)), Ending::TimedOut));
        }
        if shutdown && sess.all_acked() {
            let waker = {
                let mut st = sess.shared.state();
                st.shutdown_done = true;
                st.shutdown_waker.take()
            };
            if let Some(w) = waker {
                w.wake();
            }
        }
        if !lingering && sess.finished() {
            // A session that heard nothing has nothing to acknowledge.
            if cfg.linger.is_zero() || !sess.confirmed {
                return Some((None, Ending::Finished));
            }
            begin_linger(sess, now, &self.counters);
        }
        let needs_much = sess.kcp.segments_held() as usize * cfg.kcp.mtu as usize > TRIM_SLACK;
        if plan_trim(sess, now, needs_much) {
            sess.kcp.shrink_to_fit();
            // The task's output buffers grew with the largest flush. They
            // are the task's, not the session's: a listener's serve every
            // session and stay (one set per socket); a client's socket
            // task has this session alone.
            if sole {
                self.tx.shrink_to_room();
                #[cfg(feature = "fec")]
                self.wire.shrink_to_room();
            }
        }
        let lingering = sess.lingering_since.is_some();
        sess.publish_stats();

        // File the next deadline. With nothing pending, `check` names a
        // time `IDLE_CHECK` ahead only to bound the gap between updates;
        // the session needs no wake-up then (input, a write or the layer's
        // own deadlines below drive it, and `update` copes with the gap),
        // which spares an idle listener one wake-up per session every 10 s.
        let wait = sess.kcp.check(now_ms).wrapping_sub(now_ms);
        let wait = if wait > i32::MAX as u32 { 0 } else { wait };
        let mut at = match sess.lingering_since {
            Some(since) => linger_deadline(sess, since, cfg),
            None => sess.last_recv + cfg.idle_timeout,
        };
        if wait < IDLE_CHECK {
            at = at.min(now + Duration::from_millis(wait as u64));
        }
        if sess.ack_deferred {
            at = at.min(now + ack_hold_bound(sess.kcp.rto(), sess.kcp.rtt()));
        }
        if sess.role == Role::Server && !sess.confirmed {
            at = at.min(sess.created + cfg.half_open_timeout);
            at = at.min(next_half_open_probe(sess));
        }
        if let Some(k) = keep_alive(cfg, sess.role).filter(|_| !lingering) {
            at = at.min(next_probe(sess, k, cfg));
        }
        if let Some(probe) = sess.window_probe_at {
            at = at.min(probe);
        }
        if let Some(repeat) = next_window_answer(sess) {
            at = at.min(repeat);
        }
        // Filed only once the session needs little: while it needs more
        // (a burst, a reader that stopped) the deadline only moves along.
        if let Some(trim) = sess.trim_at.filter(|_| !needs_much) {
            at = at.min(trim);
        }
        #[cfg(feature = "fec")]
        if let Some(d) = fec_deadline {
            let wait = d.wrapping_sub(now_ms).min(i32::MAX as u32);
            at = at.min(now + Duration::from_millis(wait as u64));
        }
        let at = self.timers.deadline_ms(at);
        self.timers.file(id, sess.deadline, at);
        sess.deadline = Some(at);
        None
    }
}

/// How long ACKs held for a reader's reply wait at most (see
/// `Endpoint::drive`), for a reader that takes the data but neither answers
/// nor reads again (an application busy elsewhere): the session's RTO less
/// its smoothed RTT and [`ACK_HOLD_MARGIN`], within
/// [`ACK_HOLD_MIN`]..=[`ACK_HOLD_MAX`]; tokio's timer may add a millisecond.
///
/// Why not a fixed, short bound: in a steady request/response exchange a
/// hold starts on every request, earlier than the session's next KCP
/// deadline (the `interval` tick, which sends held ACKs too), so the socket
/// task's one timer is moved earlier once per bound. At 1 ms that put
/// 36–43% of round trips at ~32 µs instead of 20 with the echo server in a
/// process of its own beside a busy CPU; at a fixed 5 ms, across processes,
/// ours had the lower p99 than tokio_kcp in 33 of 108 runs, against 54 of
/// 108 with this bound (20–25 ms on loopback, beyond the bench's 10 ms
/// tick; docs/benchmarks_async.md, "Across processes, taken apart").
///
/// Why this bound: a held ACK must reach the peer before the peer resends.
/// The peer's RTO is taken to be ours (the same `nodelay` settings both
/// ways, as KCP deployments use), and the ACK needs one way of the RTT to
/// get there: RTO − SRTT − margin leaves it the margin. A peer configured
/// with a lower minimum RTO than ours may resend when the application
/// answers late. With a minimum RTO of 10 ms (`test.cpp`'s fast mode) the
/// bound is [`ACK_HOLD_MIN`].
fn ack_hold_bound(rto_ms: u32, srtt_ms: u32) -> Duration {
    let ms = rto_ms
        .saturating_sub(srtt_ms)
        .saturating_sub(ACK_HOLD_MARGIN);
    Duration::from_millis(u64::from(ms)).clamp(ACK_HOLD_MIN, ACK_HOLD_MAX)
}

/// See [`ack_hold_bound`]. The longest hold: a reader busy elsewhere gets
/// its ACKs out within this, however long the RTO.
const ACK_HOLD_MAX: Duration = Duration::from_millis(25);
/// See [`ack_hold_bound`]. The shortest hold (the fixed bound it replaced).
const ACK_HOLD_MIN: Duration = Duration::from_millis(5);
/// See [`ack_hold_bound`]: milliseconds kept between the held ACK's
/// arrival and the peer's RTO (rounding and tokio's timer take up to 2).
const ACK_HOLD_MARGIN: u32 = 10;

/// Whether `drive` should give the session's burst-sized buffers back now.
///
/// KCP's payload pools and a client's socket-task output buffers keep the
/// size of the largest burst so that a busy session allocates nothing; a
/// session that has gone quiet, or back to small messages (a game server's
/// session after loading a level), should not hold a window's worth (1.4 MB
/// each way with 1,024-segment windows) for the rest of its life. Every
/// drive at which the session's segments in use need more than
/// `TRIM_SLACK` moves the trim time to `TRIM_AFTER` ahead, without filing it
/// as a deadline; once the session needs less, the time is filed, and the
/// first drive at or after it trims if the session holds more than
/// `TRIM_GROWTH` over a new one's footprint. `Kcp::shrink_to_fit` releases
/// each pool with no block in use; a pool with one block in use stays whole
/// (blocks are named by index), and the next drive sets a new trim time a
/// second ahead. So a session that exchanges small messages with one always
/// in flight (a message interval shorter than the RTT) keeps its send pool:
/// a limit, documented in docs/net_performance.md.
///
/// `needs_much`: the segments the session holds need more than
/// `TRIM_SLACK` (segments held × MTU).
fn plan_trim(sess: &mut Session, now: Instant, needs_much: bool) -> bool {
    if needs_much {
        sess.trim_at = Some(now + TRIM_AFTER);
        return false;
    }
    if sess.kcp.memory_footprint() <= sess.trim_above {
        sess.trim_at = None;
        return false;
    }
    match sess.trim_at {
        Some(at) if now >= at => {
            sess.trim_at = None;
            true
        }
        Some(_) => false,
        None => {
            sess.trim_at = Some(now + TRIM_AFTER);
            false
        }
    }
}

fn dead_link(cfg: &SessionConfig) -> CloseReason {
    CloseReason::new(
        io::ErrorKind::TimedOut,
        format!(
            "dead link: a segment was sent {} times without an ACK",
            cfg.kcp.dead_link
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ack_hold_ends_before_the_peers_rto() {
        let ms = Duration::from_millis;
        // Loopback with ikcp's `nodelay` minimum RTO: the RTO less the margin.
        assert_eq!(ack_hold_bound(30, 0), ms(20));
        // A longer RTT leaves less: the ACK still has one way to go.
        assert_eq!(ack_hold_bound(30, 12), ms(8));
        assert_eq!(ack_hold_bound(30, 25), ACK_HOLD_MIN);
        // `test.cpp`'s fast mode (minimum RTO 10 ms), and RTT over RTO.
        assert_eq!(ack_hold_bound(10, 0), ACK_HOLD_MIN);
        assert_eq!(ack_hold_bound(10, 400), ACK_HOLD_MIN);
        // Before any RTT sample (RTO 200 ms) or on a slow path: capped.
        assert_eq!(ack_hold_bound(200, 0), ACK_HOLD_MAX);
        assert_eq!(ack_hold_bound(u32::MAX, 0), ACK_HOLD_MAX);
        for (rto, srtt) in [(30, 0), (60, 20), (100, 0), (45, 30)] {
            let hold = ack_hold_bound(rto, srtt).as_millis() as u32;
            assert!(
                hold == ACK_HOLD_MIN.as_millis() as u32 || hold + srtt + 2 < rto,
                "rto {rto} srtt {srtt}: hold {hold} ms"
            );
        }
    }
}
