//! The socket task's session deadlines: at most one per session, and one
//! tokio timer for the earliest of them.
//!
//! The sessions' deadlines sit in an ordered set of `(deadline, session)`;
//! only the earliest is registered with tokio's timer wheel, as one
//! [`Sleep`]. It is reset when the earliest moves earlier, or when it
//! fires; an earliest that moves later keeps the sleep where it is: one
//! wake-up for nothing, later, instead of a timer re-registration each time
//! a busy session's deadline moves later and back (its idle deadline, then
//! its next resend time, on every round trip). Filing costs
//! O(log n) and an idle session costs nothing between its deadlines.
//!
//! Deadlines are whole milliseconds since the task's epoch, rounded up
//! (tokio's timers have that resolution anyway): a session whose next
//! deadline is the same KCP tick on every drive files nothing again, where
//! `Instant`s that differ by microseconds were refiled on every drive, a
//! remove and an insert in the set each time.
//!
//! Why not `tokio_util`'s `DelayQueue`, which this replaced: its own wheel
//! advances only when its sleep fires. A busy session moves its deadline
//! forward on every drive, so relative to the stale wheel time the deadline
//! soon lands in the wheel's second level, whose slots are 64 ms wide, and
//! the sleep is set to the slot's start: the task was woken by its timer
//! every 64 ms for nothing (seen in syscall traces of the ping-pong bench).
//! Such a wake-up, in the same reactor turn as a datagram for another
//! task, leaves two tasks runnable, and tokio then wakes a second worker,
//! which often took the exchange over: the round trips then crossed
//! threads, and the 99th percentile rose with two workers while it matched
//! tokio_kcp's with one.

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::time::{sleep_until, Instant, Sleep};

/// A time as milliseconds since a task's epoch.
pub(crate) type Ms = u64;

pub(crate) struct Deadlines {
    epoch: Instant,
    set: BTreeSet<(Ms, u64)>,
    sleep: Pin<Box<Sleep>>,
    /// The deadline `sleep` is set to; `None` before the first.
    armed: Option<Ms>,
    /// The waker `sleep` was last polled with, since it was last set: while
    /// the task's waker and the deadline stay the same, the sleep need not
    /// be polled again (a poll re-registers the waker, and the task asks up
    /// to three times per pass).
    polled_with: Option<Waker>,
}

impl Deadlines {
    pub fn new(epoch: Instant) -> Deadlines {
        Deadlines {
            epoch,
            set: BTreeSet::new(),
            sleep: Box::pin(sleep_until(epoch)),
            armed: None,
            polled_with: None,
        }
    }

    /// `t` in milliseconds since the epoch, rounded down: the present.
    pub fn now_ms(&self, t: Instant) -> Ms {
        t.saturating_duration_since(self.epoch).as_millis() as Ms
    }

    /// `t` in milliseconds since the epoch, rounded up: a deadline, never
    /// early.
    pub fn deadline_ms(&self, t: Instant) -> Ms {
        let d = t.saturating_duration_since(self.epoch);
        d.as_millis() as Ms + !d.subsec_nanos().is_multiple_of(1_000_000) as Ms
    }

    /// Files session `id` at `at`, in place of its deadline `old`.
    pub fn file(&mut self, id: u64, old: Option<Ms>, at: Ms) {
        if old == Some(at) {
            return;
        }
        // The old one goes first, so the set's size never crosses a node
        // boundary here (which would split a node, and allocate, only to
        // merge it again).
        if let Some(old) = old {
            self.set.remove(&(old, id));
        }
        self.set.insert((at, id));
    }

    /// Removes session `id`'s deadline `at`.
    pub fn remove(&mut self, id: u64, at: Ms) {
        self.set.remove(&(at, id));
    }

    /// The next session whose deadline is at or before `now` (taken out of
    /// the set), or `Pending` with the task's waker registered for the
    /// earliest deadline. With nothing filed it registers nothing: only the
    /// task itself files deadlines, and it polls again after filing.
    pub fn poll_expired(&mut self, now: Ms, cx: &mut Context<'_>) -> Poll<u64> {
        let Some(&(at, id)) = self.set.first() else {
            return Poll::Pending;
        };
        if at > now {
            // A sleep armed earlier than `at` and not yet due is kept: it
            // wakes the task once for nothing. Moved later, it would have to
            // move back when the next deadline is earlier again, and tokio
            // re-registers a sleep moved earlier: in a ping-pong a session
            // goes from its resend time to its idle deadline and back on
            // every round trip. One that has fired is reset, so it is never
            // taken for `at`'s.
            let keep = self
                .armed
                .is_some_and(|a| a == at || (now < a && a < at && !self.sleep.is_elapsed()));
            if !keep {
                self.sleep
                    .as_mut()
                    .reset(self.epoch + Duration::from_millis(at));
                self.armed = Some(at);
                self.polled_with = None;
            }
            let registered = self
                .polled_with
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()));
            // tokio fires a sleep at the first millisecond tick at or after
            // its deadline, so an elapsed sleep means `at` has passed.
            if registered {
                if !self.sleep.is_elapsed() {
                    return Poll::Pending;
                }
            } else if self.sleep.as_mut().poll(cx).is_pending() {
                self.polled_with = Some(cx.waker().clone());
                return Poll::Pending;
            }
        }
        self.set.pop_first();
        Poll::Ready(id)
    }

    /// Sessions filed.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.set.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noop_cx() -> Context<'static> {
        Context::from_waker(std::task::Waker::noop())
    }

    #[tokio::test]
    async fn earliest_first_and_refiling_replaces() {
        let mut d = Deadlines::new(Instant::now());
        d.file(1, None, 30);
        d.file(2, None, 10);
        d.file(3, None, 20);
        // Session 2 moves later, session 1 earlier: the old ones are gone.
        d.file(2, Some(10), 40);
        d.file(1, Some(30), 5);
        assert_eq!(d.len(), 3);
        let mut cx = noop_cx();
        assert_eq!(d.poll_expired(4, &mut cx), Poll::Pending);
        assert_eq!(d.poll_expired(25, &mut cx), Poll::Ready(1));
        assert_eq!(d.poll_expired(25, &mut cx), Poll::Ready(3));
        assert_eq!(d.poll_expired(25, &mut cx), Poll::Pending);
        d.remove(2, 40);
        assert_eq!(d.len(), 0);
        assert_eq!(d.poll_expired(100, &mut cx), Poll::Pending);
        // Filing the same deadline again is a no-op.
        d.file(4, None, 50);
        d.file(4, Some(50), 50);
        assert_eq!(d.len(), 1);
    }

    /// Random filing, refiling and removal of many sessions against a
    /// plain map: what expires is exactly what is due, earliest first, and
    /// a refiled or removed session's old deadline never fires.
    #[tokio::test]
    async fn many_sessions_against_a_model() {
        let mut d = Deadlines::new(Instant::now());
        let mut model: std::collections::HashMap<u64, Ms> = Default::default();
        let mut cx = noop_cx();
        let mut rng = crate::sim::Rng::new(11);
        // Days after the epoch: the real sleep must never fire here, the
        // virtual `now` alone decides.
        let mut now: Ms = 1_000_000_000;
        for _ in 0..20_000 {
            let id = rng.range(1, 500);
            match rng.range(0, 9) {
                0 => {
                    if let Some(at) = model.remove(&id) {
                        d.remove(id, at);
                    }
                }
                1..=6 => {
                    let at = now + rng.range(0, 200);
                    d.file(id, model.get(&id).copied(), at);
                    model.insert(id, at);
                }
                _ => {
                    now += rng.range(0, 30);
                    let mut due: Vec<(Ms, u64)> = model
                        .iter()
                        .filter(|&(_, &at)| at <= now)
                        .map(|(&id, &at)| (at, id))
                        .collect();
                    due.sort();
                    for (_, want) in due {
                        assert_eq!(d.poll_expired(now, &mut cx), Poll::Ready(want));
                        model.remove(&want);
                    }
                    assert_eq!(d.poll_expired(now, &mut cx), Poll::Pending);
                }
            }
            assert_eq!(d.len(), model.len());
        }
    }

    #[tokio::test]
    async fn deadlines_round_up_and_the_present_rounds_down() {
        let epoch = Instant::now();
        let d = Deadlines::new(epoch);
        let at = |us| epoch + Duration::from_micros(us);
        assert_eq!(d.deadline_ms(at(0)), 0);
        assert_eq!(d.deadline_ms(at(1)), 1);
        assert_eq!(d.deadline_ms(at(1_000)), 1);
        assert_eq!(d.deadline_ms(at(1_001)), 2);
        assert_eq!(d.now_ms(at(1_999)), 1);
        assert_eq!(d.now_ms(epoch - Duration::from_millis(5)), 0);
    }

    /// A deadline moved later keeps the earlier sleep (no re-registration),
    /// and that sleep's firing does not expire the session before its time.
    #[tokio::test(start_paused = true)]
    async fn a_deadline_moved_later_keeps_the_sleep_and_is_not_early() {
        let t0 = Instant::now();
        let mut d = Deadlines::new(t0);
        let mut cx = noop_cx();
        d.file(1, None, 50);
        assert_eq!(d.poll_expired(0, &mut cx), Poll::Pending);
        d.file(1, Some(50), 200);
        assert_eq!(d.poll_expired(0, &mut cx), Poll::Pending);
        assert_eq!(d.armed, Some(50), "moved later: the sleep stays");
        let mut polls = 0;
        let id = std::future::poll_fn(|cx| {
            polls += 1;
            let now = d.now_ms(Instant::now());
            d.poll_expired(now, cx)
        })
        .await;
        assert_eq!(id, 1);
        assert!(Instant::now() >= t0 + Duration::from_millis(200));
        assert_eq!(d.armed, Some(200));
        // The first poll, the wake-up at 50 ms for nothing, the one at 200.
        assert_eq!(polls, 3);
        // Moved earlier, the sleep follows at once.
        d.file(2, None, 400);
        assert_eq!(d.poll_expired(200, &mut cx), Poll::Pending);
        d.file(2, Some(400), 300);
        assert_eq!(d.poll_expired(200, &mut cx), Poll::Pending);
        assert_eq!(d.armed, Some(300));
    }

    #[tokio::test]
    async fn the_sleep_wakes_the_task_at_the_earliest_deadline() {
        let t0 = Instant::now();
        let mut d = Deadlines::new(t0);
        d.file(7, None, 50);
        d.file(8, None, 80);
        async fn next(d: &mut Deadlines) -> u64 {
            std::future::poll_fn(|cx| {
                let now = d.now_ms(Instant::now());
                d.poll_expired(now, cx)
            })
            .await
        }
        assert_eq!(next(&mut d).await, 7);
        assert!(Instant::now() >= t0 + Duration::from_millis(50));
        assert!(Instant::now() < t0 + Duration::from_millis(80));
        assert_eq!(next(&mut d).await, 8);
    }
}
