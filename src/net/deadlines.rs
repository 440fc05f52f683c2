//! The socket task's session deadlines: at most one per session, and one
//! tokio timer for the earliest of them.
//!
//! The sessions' deadlines sit in an ordered set of `(deadline, session)`;
//! only the earliest is registered with tokio's timer wheel, as one
//! [`Sleep`] that is reset when the earliest changes. Filing costs
//! O(log n) and an idle session costs nothing between its deadlines.
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
use std::task::{Context, Poll};

use tokio::time::{sleep_until, Instant, Sleep};

pub(crate) struct Deadlines {
    set: BTreeSet<(Instant, u64)>,
    sleep: Pin<Box<Sleep>>,
    /// The deadline `sleep` is set to; `None` before the first.
    armed: Option<Instant>,
}

impl Deadlines {
    pub fn new() -> Deadlines {
        Deadlines {
            set: BTreeSet::new(),
            sleep: Box::pin(sleep_until(Instant::now())),
            armed: None,
        }
    }

    /// Files session `id` at `at`, in place of its deadline `old`.
    pub fn file(&mut self, id: u64, old: Option<Instant>, at: Instant) {
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
    pub fn remove(&mut self, id: u64, at: Instant) {
        self.set.remove(&(at, id));
    }

    /// The next session whose deadline is at or before `now` (taken out of
    /// the set), or `Pending` with the task's waker registered for the
    /// earliest deadline. With nothing filed it registers nothing: only the
    /// task itself files deadlines, and it polls again after filing.
    pub fn poll_expired(&mut self, now: Instant, cx: &mut Context<'_>) -> Poll<u64> {
        let Some(&(at, id)) = self.set.first() else {
            return Poll::Pending;
        };
        if at > now {
            if self.armed != Some(at) {
                self.sleep.as_mut().reset(at);
                self.armed = Some(at);
            }
            // tokio fires a sleep at the first millisecond tick at or after
            // its deadline, so `Ready` means `at` has passed.
            if self.sleep.as_mut().poll(cx).is_pending() {
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
    use std::time::Duration;

    fn noop_cx() -> Context<'static> {
        Context::from_waker(std::task::Waker::noop())
    }

    #[tokio::test]
    async fn earliest_first_and_refiling_replaces() {
        let mut d = Deadlines::new();
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        d.file(1, None, ms(30));
        d.file(2, None, ms(10));
        d.file(3, None, ms(20));
        // Session 2 moves later, session 1 earlier: the old ones are gone.
        d.file(2, Some(ms(10)), ms(40));
        d.file(1, Some(ms(30)), ms(5));
        assert_eq!(d.len(), 3);
        let mut cx = noop_cx();
        assert_eq!(d.poll_expired(ms(4), &mut cx), Poll::Pending);
        assert_eq!(d.poll_expired(ms(25), &mut cx), Poll::Ready(1));
        assert_eq!(d.poll_expired(ms(25), &mut cx), Poll::Ready(3));
        assert_eq!(d.poll_expired(ms(25), &mut cx), Poll::Pending);
        d.remove(2, ms(40));
        assert_eq!(d.len(), 0);
        assert_eq!(d.poll_expired(ms(100), &mut cx), Poll::Pending);
        // Filing the same deadline again is a no-op.
        d.file(4, None, ms(50));
        d.file(4, Some(ms(50)), ms(50));
        assert_eq!(d.len(), 1);
    }

    #[tokio::test]
    async fn the_sleep_wakes_the_task_at_the_earliest_deadline() {
        let mut d = Deadlines::new();
        let t0 = Instant::now();
        d.file(7, None, t0 + Duration::from_millis(50));
        d.file(8, None, t0 + Duration::from_millis(80));
        let got = std::future::poll_fn(|cx| d.poll_expired(Instant::now(), cx)).await;
        assert_eq!(got, 7);
        assert!(Instant::now() >= t0 + Duration::from_millis(50));
        assert!(Instant::now() < t0 + Duration::from_millis(80));
        let got = std::future::poll_fn(|cx| d.poll_expired(Instant::now(), cx)).await;
        assert_eq!(got, 8);
    }
}
