//! Targeted behaviour of the core, one property per test: message
//! boundaries, buffer errors, limits, flow control, timers and `check`.
#![cfg(feature = "std")] // the simulation needs std

mod support;

use kcp_rs::codec::{Header, Segments};
use kcp_rs::constants::{CMD_PUSH, CMD_WASK, CMD_WINS};
use kcp_rs::sim::{Outbox, Rng};
use kcp_rs::{Kcp, KcpConfig, KcpError};
use support::SimKcp;

const CONV: u32 = 77;

fn kcp(cfg: KcpConfig) -> SimKcp {
    Kcp::with_config(CONV, Outbox::default(), cfg).unwrap()
}

/// Datagrams `k` has output since the last call.
fn take(k: &mut SimKcp) -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    k.output_mut().drain(|d| v.push(d.to_vec()));
    v
}

/// `(cmd, sn, wnd, len)` of every segment in `dgrams`.
fn segments(dgrams: &[Vec<u8>]) -> Vec<Header> {
    dgrams
        .iter()
        .flat_map(|d| Segments::new(d).map(|s| s.unwrap().0).collect::<Vec<_>>())
        .collect()
}

fn pushes(dgrams: &[Vec<u8>]) -> Vec<u32> {
    segments(dgrams)
        .into_iter()
        .filter(|h| h.cmd == CMD_PUSH)
        .map(|h| h.sn.get())
        .collect()
}

/// Updates both at `clock` and exchanges everything, losslessly.
fn exchange(a: &mut SimKcp, b: &mut SimKcp, clock: u32) {
    a.update(clock);
    for d in take(a) {
        b.input(&d).unwrap();
    }
    b.update(clock);
    for d in take(b) {
        a.input(&d).unwrap();
    }
}

/// Runs lossless exchanges every 10 ms from `*clock` until `done`.
fn until(
    a: &mut SimKcp,
    b: &mut SimKcp,
    clock: &mut u32,
    mut done: impl FnMut(&mut SimKcp, &mut SimKcp) -> bool,
) {
    let start = *clock;
    while !done(a, b) {
        *clock += 10;
        exchange(a, b, *clock);
        assert!(*clock - start < 120_000, "condition never met");
    }
}

// ----- messages and buffers -------------------------------------------------

#[test]
fn message_boundaries_are_kept() {
    let (mut a, mut b) = (kcp(KcpConfig::fast()), kcp(KcpConfig::fast()));
    let msgs: [&[u8]; 5] = [b"a", b"", b"bb", &[7u8; 3000], b"ccc"];
    for m in msgs {
        assert_eq!(a.send(m), Ok(m.len()));
    }
    let mut clock = 0;
    until(&mut a, &mut b, &mut clock, |_, b| b.queued_recv() >= 7);
    let mut buf = [0u8; 8192];
    for m in msgs {
        assert_eq!(b.peek_size(), Ok(m.len()));
        let n = b.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], m);
    }
    assert_eq!(b.recv(&mut buf), Err(KcpError::WouldBlock));
    assert_eq!(b.peek_size(), Err(KcpError::WouldBlock));
}

#[test]
fn buffer_too_small_leaves_the_message_in_place() {
    let (mut a, mut b) = (kcp(KcpConfig::fast()), kcp(KcpConfig::fast()));
    let big: Vec<u8> = (0..2000u32).map(|i| i as u8).collect();
    a.send(&big).unwrap();
    a.send(b"next").unwrap();
    let mut clock = 0;
    until(&mut a, &mut b, &mut clock, |_, b| b.queued_recv() == 3);
    let mut small = [0u8; 1999];
    for _ in 0..3 {
        assert_eq!(
            b.recv(&mut small),
            Err(KcpError::BufferTooSmall { needed: 2000 })
        );
        assert_eq!(b.peek_size(), Ok(2000));
        assert_eq!(b.queued_recv(), 3);
    }
    assert_eq!(
        b.recv(&mut []),
        Err(KcpError::BufferTooSmall { needed: 2000 })
    );
    let mut buf = [0u8; 2000];
    assert_eq!(b.recv(&mut buf), Ok(2000));
    assert_eq!(&buf[..], &big[..]);
    assert_eq!(b.recv(&mut buf), Ok(4));
    assert_eq!(&buf[..4], b"next");
}

#[test]
fn peek_size_waits_for_every_fragment() {
    let cfg = KcpConfig::fast();
    let (mut a, mut b) = (kcp(cfg), kcp(cfg));
    let msg = vec![5u8; 3 * cfg.mss() + 10]; // 4 fragments, one per datagram
    a.send(&msg).unwrap();
    a.update(0);
    let dgrams = take(&mut a);
    assert_eq!(pushes(&dgrams), vec![0, 1, 2, 3]);
    assert_eq!(dgrams.len(), 4);
    for d in &dgrams[1..] {
        b.input(d).unwrap();
    }
    assert_eq!(
        b.peek_size(),
        Err(KcpError::WouldBlock),
        "first fragment missing"
    );
    assert_eq!(b.recv(&mut [0u8; 8000]), Err(KcpError::WouldBlock));
    b.input(&dgrams[0]).unwrap();
    assert_eq!(b.peek_size(), Ok(msg.len()));
    let mut buf = vec![0u8; msg.len()];
    assert_eq!(b.recv(&mut buf), Ok(msg.len()));
    assert_eq!(buf, msg);

    // Only the last fragment missing: still nothing.
    let msg2 = vec![6u8; 2 * cfg.mss() + 1];
    a.send(&msg2).unwrap();
    a.update(cfg.interval);
    let dgrams = take(&mut a);
    for d in &dgrams[..2] {
        b.input(d).unwrap();
    }
    assert_eq!(b.queued_recv(), 2);
    assert_eq!(b.peek_size(), Err(KcpError::WouldBlock));
    b.input(&dgrams[2]).unwrap();
    assert_eq!(b.peek_size(), Ok(msg2.len()));
}

#[test]
fn data_too_large_at_the_fragment_limit() {
    for (rcv_wnd, frags) in [(128u16, 127usize), (16, 15), (2, 1), (1, 1)] {
        let cfg = KcpConfig {
            rcv_wnd,
            ..KcpConfig::default()
        };
        let (mut a, mut b) = (kcp(cfg), kcp(cfg));
        let mss = cfg.mss();
        let max = frags * mss;
        assert_eq!(cfg.max_message(), max);
        assert_eq!(
            a.send(&vec![0u8; max + 1]),
            Err(KcpError::DataTooLarge { max })
        );
        assert_eq!(a.wait_snd(), 0, "a refused message queues nothing");
        // The largest message is accepted and delivered whole.
        let msg: Vec<u8> = (0..max).map(|i| (i % 253) as u8).collect();
        assert_eq!(a.send(&msg), Ok(max));
        assert_eq!(a.wait_snd(), frags as u32);
        let mut clock = 0;
        let mut buf = vec![0u8; max];
        let mut got = None;
        until(&mut a, &mut b, &mut clock, |_, b| {
            if let Ok(n) = b.recv(&mut buf) {
                got = Some(n);
            }
            got.is_some()
        });
        assert_eq!(got, Some(max));
        assert!(buf == msg);
    }
}

#[test]
fn buffer_full_and_room_after_acks() {
    for stream in [false, true] {
        let cfg = KcpConfig {
            stream,
            ..KcpConfig::default()
        };
        let (mut a, mut b) = (kcp(cfg), kcp(cfg));
        let mss = cfg.mss();
        let slots = a.send_capacity() / mss;
        assert!(slots >= cfg.snd_wnd as usize);
        let seg = vec![1u8; mss];
        for i in 0..slots {
            assert_eq!(a.send(&seg), Ok(mss), "segment {i} of {slots}");
        }
        assert_eq!(a.send_capacity(), 0);
        assert_eq!(a.wait_snd(), slots as u32);
        assert_eq!(a.send(b"x"), Err(KcpError::BufferFull));
        assert_eq!(
            a.send(&[]),
            if stream {
                Ok(0)
            } else {
                Err(KcpError::BufferFull)
            }
        );
        assert_eq!(a.wait_snd(), slots as u32, "a refused send queues nothing");
        // ACKs free room; what was queued arrives intact.
        let mut clock = 0;
        let mut received = 0;
        let mut buf = vec![0u8; 4 * mss];
        until(&mut a, &mut b, &mut clock, |a, b| {
            while let Ok(n) = b.recv(&mut buf) {
                assert!(buf[..n].iter().all(|&x| x == 1));
                received += n;
            }
            a.send_capacity() >= 3 * mss
        });
        if stream {
            // A write larger than the room is taken in part.
            let room = a.send_capacity();
            assert_eq!(a.send(&vec![1u8; room + 500]), Ok(room));
            assert_eq!(a.send(b"x"), Err(KcpError::BufferFull));
        } else {
            assert_eq!(a.send(&vec![1u8; 3 * mss]), Ok(3 * mss));
        }
        until(&mut a, &mut b, &mut clock, |a, b| {
            while let Ok(n) = b.recv(&mut buf) {
                received += n;
            }
            a.wait_snd() == 0
        });
        assert!(received >= slots * mss);
    }
}

#[test]
fn stream_mode_coalesces_and_reads_across_segments() {
    let cfg = KcpConfig {
        stream: true,
        ..KcpConfig::fast()
    };
    let (mut a, mut b) = (kcp(cfg), kcp(cfg));
    let mut data = vec![0u8; 5000];
    Rng::new(1).fill(&mut data);
    // 500 writes of 10 bytes fill whole segments, not 500 of them.
    for chunk in data.chunks(10) {
        assert_eq!(a.send(chunk), Ok(10));
    }
    assert_eq!(a.wait_snd() as usize, data.len().div_ceil(cfg.mss()));
    a.update(0);
    let dgrams = take(&mut a);
    let segs = segments(&dgrams);
    assert_eq!(segs.len(), 4);
    assert!(segs[..3]
        .iter()
        .all(|h| h.len as usize == cfg.mss() && h.frg == 0));
    for d in &dgrams {
        b.input(d).unwrap();
    }
    // Partial reads, then one read spanning three segments fills the buffer.
    let mut buf = [0u8; 7];
    assert_eq!(b.peek_size(), Ok(5000));
    assert_eq!(b.recv(&mut buf), Ok(7));
    assert_eq!(buf, data[..7]);
    assert_eq!(b.peek_size(), Ok(4993));
    let mut big = vec![0u8; 4000];
    assert_eq!(b.recv(&mut big), Ok(4000));
    assert!(big == data[7..4007]);
    let mut rest = vec![0u8; 10_000];
    assert_eq!(b.recv(&mut rest), Ok(993));
    assert!(rest[..993] == data[4007..]);
    assert_eq!(b.recv(&mut rest), Err(KcpError::WouldBlock));

    // A segment already sent is never appended to.
    a.send(b"abc").unwrap();
    a.update(cfg.interval);
    a.send(b"def").unwrap();
    assert_eq!(a.wait_snd(), 4 + 1 + 1);
}

#[test]
fn wait_snd_counts_queued_and_in_flight() {
    let cfg = KcpConfig::default(); // cwnd starts at 1: most stay queued
    let (mut a, mut b) = (kcp(cfg), kcp(cfg));
    assert_eq!(a.wait_snd(), 0);
    for i in 0..10u8 {
        a.send(&[i]).unwrap();
    }
    assert_eq!(a.wait_snd(), 10);
    // As in ikcp, cwnd is 0 until the end of the first flush.
    a.update(0);
    assert!(take(&mut a).is_empty());
    a.update(cfg.interval);
    assert_eq!(pushes(&take(&mut a)).len(), 1, "slow start sends one");
    assert_eq!(a.wait_snd(), 10, "in flight still counts");
    let mut clock = 0;
    let mut last = 10;
    until(&mut a, &mut b, &mut clock, |a, _| {
        assert!(a.wait_snd() <= last, "wait_snd only falls");
        last = a.wait_snd();
        last == 0
    });
}

// ----- timers -----------------------------------------------------------------

/// Drives `a` alone (its peer never answers) by `check` only; returns the
/// clock at each transmission of sn `sn`.
fn transmissions(cfg: KcpConfig, count: usize) -> (Vec<u32>, SimKcp) {
    let mut a = kcp(cfg);
    a.send(b"into the void").unwrap();
    let mut clock = 1_000u32;
    let mut times = Vec::new();
    let mut iterations = 0;
    loop {
        a.update(clock);
        for d in take(&mut a) {
            assert_eq!(pushes(&[d]), vec![0]);
            times.push(clock);
        }
        if times.len() >= count {
            break;
        }
        let next = a.check(clock);
        assert!(
            next.wrapping_sub(clock) <= i32::MAX as u32,
            "check went back"
        );
        assert!(
            next != clock,
            "check asked for a wake-up now, right after update"
        );
        clock = next;
        iterations += 1;
        assert!(
            iterations < 2 * count + 10,
            "{iterations} iterations for {count} sends"
        );
    }
    (times, a)
}

fn gaps(times: &[u32]) -> Vec<u32> {
    times.windows(2).map(|w| w[1].wrapping_sub(w[0])).collect()
}

#[test]
fn rto_doubles_without_nodelay() {
    let cfg = KcpConfig {
        interval: 10,
        ..KcpConfig::default()
    };
    let (times, _) = transmissions(cfg, 8);
    // RTO 200 before any sample, plus RTO/8 on the first send; then ×2.
    assert_eq!(gaps(&times), vec![225, 400, 800, 1600, 3200, 6400, 12800]);
}

#[test]
fn rto_grows_by_half_with_nodelay() {
    let cfg = KcpConfig {
        interval: 10,
        ..KcpConfig::fast()
    };
    let (times, _) = transmissions(cfg, 6);
    assert_eq!(gaps(&times), vec![200, 300, 450, 675, 1012]);
}

#[test]
fn rto_grows_gently_with_nodelay_level_2() {
    let cfg = KcpConfig::default().with_ikcp_nodelay(2, 10, 0, true);
    let (times, _) = transmissions(cfg, 6);
    // + rx_rto / 2 each time.
    assert_eq!(gaps(&times), vec![200, 300, 400, 500, 600]);
}

#[test]
fn dead_link_after_dead_link_transmissions() {
    for dead_link in [1u32, 5, 20] {
        let cfg = KcpConfig {
            dead_link,
            ..KcpConfig::default()
        };
        let (times, mut a) = transmissions(cfg, dead_link as usize);
        assert!(a.is_dead());
        assert_eq!(a.stats().out_segments, dead_link as u64);
        assert_eq!(times.len(), dead_link as usize);
        assert_eq!(a.send(b"more"), Err(KcpError::DeadLink));
        let (_, b) = transmissions(cfg, dead_link as usize - 1);
        assert!(
            dead_link == 1 || !b.is_dead(),
            "dead one transmission early"
        );
    }
}

/// A dead session the application keeps polling must not misbehave: the
/// segment's RTO keeps growing and must neither overflow nor wrap.
#[test]
fn long_dead_session_keeps_backing_off() {
    for cfg in [KcpConfig::default(), KcpConfig::fast()] {
        let (times, a) = transmissions(cfg, 60);
        assert!(a.is_dead());
        let g = gaps(&times);
        assert!(g.windows(2).all(|w| w[1] >= w[0]), "backoff shrank: {g:?}");
        // Capped at the half range, where a later resend time still reads
        // as later (ikcp would wrap into the past, then overflow).
        assert!(g.iter().all(|&x| x <= i32::MAX as u32), "{g:?}");
        assert_eq!(g.last(), Some(&(i32::MAX as u32)), "{g:?}");
    }
}

/// With `resend = n`, a segment is retransmitted after `n` ACK datagrams
/// for later segments, long before its RTO; with one fewer it is not.
#[test]
fn fast_resend_after_duplicate_acks() {
    for resend in [1u32, 2, 3] {
        for acks in [resend - 1, resend] {
            let cfg = KcpConfig {
                resend,
                interval: 10,
                ..KcpConfig::fast()
            };
            let (mut a, mut b) = (kcp(cfg), kcp(cfg));
            let full = vec![3u8; cfg.mss()];
            for _ in 0..=acks {
                a.send(&full).unwrap();
            }
            a.update(0);
            let dgrams = take(&mut a);
            assert_eq!(dgrams.len(), acks as usize + 1);
            // sn 0 is lost; each later one arrives and is ACKed alone.
            for (i, d) in dgrams[1..].iter().enumerate() {
                b.input(d).unwrap();
                b.update(10 * i as u32);
                for ack in take(&mut b) {
                    a.input(&ack).unwrap();
                }
            }
            a.update(20); // well before the 200 ms RTO
            let again = pushes(&take(&mut a));
            if acks >= resend {
                assert_eq!(again, vec![0], "resend {resend}, {acks} ACKs");
                assert_eq!(a.stats().fast_retransmits, 1);
            } else {
                assert!(again.is_empty(), "resend {resend}, {acks} ACKs: {again:?}");
                assert_eq!(a.stats().fast_retransmits, 0);
            }
        }
    }
}

#[test]
fn zero_window_probe_and_reopen() {
    let cfg = KcpConfig {
        rcv_wnd: 8,
        ..KcpConfig::fast()
    };
    let (mut a, mut b) = (kcp(KcpConfig::fast()), kcp(cfg));
    for i in 0..30u32 {
        a.send(&i.to_le_bytes()).unwrap();
    }
    // b never reads: its queue fills and it advertises a zero window.
    let mut clock = 0u32;
    let mut closed_at = None;
    let mut wask_at = Vec::new();
    let mut wins_wnd = Vec::new();
    while clock < 20_000 {
        clock += 10;
        a.update(clock);
        let from_a = take(&mut a);
        for h in segments(&from_a) {
            if h.cmd == CMD_WASK {
                wask_at.push(clock);
            }
        }
        for d in &from_a {
            b.input(d).unwrap();
        }
        b.update(clock);
        let from_b = take(&mut b);
        for h in segments(&from_b) {
            if h.cmd == CMD_WINS {
                wins_wnd.push((clock, h.wnd));
            }
        }
        for d in &from_b {
            a.input(d).unwrap();
        }
        if closed_at.is_none() && a.remote_window() == 0 {
            closed_at = Some(clock);
        }
    }
    let closed_at = closed_at.expect("window never closed");
    assert_eq!(b.queued_recv(), 8);
    assert!(a.wait_snd() > 0);
    // The first probe 7 s after the window closed, the next 10.5 s later.
    assert!(!wask_at.is_empty());
    let first = wask_at[0] - closed_at;
    assert!(
        (7_000..=7_020).contains(&first),
        "first WASK {first} ms after closing"
    );
    assert!(wask_at.len() == 1 || wask_at[1] - wask_at[0] >= 10_500);
    // b answered each probe with its (still zero) window.
    assert!(wins_wnd.iter().all(|&(_, w)| w == 0));
    assert!(!wins_wnd.is_empty());

    // The application reads: b tells a at once, and the rest flows.
    let mut buf = [0u8; 4];
    let mut got = Vec::new();
    while let Ok(n) = b.recv(&mut buf) {
        got.push(u32::from_le_bytes(buf[..n].try_into().unwrap()));
    }
    clock += 10;
    b.update(clock);
    let told: Vec<_> = segments(&take(&mut b))
        .into_iter()
        .filter(|h| h.cmd == CMD_WINS)
        .collect();
    assert_eq!(told.len(), 1, "a WINS right after the read");
    assert!(told[0].wnd > 0);
    until(&mut a, &mut b, &mut clock, |_, b| {
        while let Ok(n) = b.recv(&mut buf) {
            got.push(u32::from_le_bytes(buf[..n].try_into().unwrap()));
        }
        got.len() == 30
    });
    assert_eq!(got, (0..30).collect::<Vec<_>>());
}

// ----- check ------------------------------------------------------------------

#[test]
fn check_before_the_first_update_is_now() {
    let a = kcp(KcpConfig::default());
    assert_eq!(a.check(12_345), 12_345);
}

#[test]
fn idle_check_is_seconds_ahead() {
    for cfg in [KcpConfig::default(), KcpConfig::fast()] {
        let (mut a, mut b) = (kcp(cfg), kcp(cfg));
        a.send(b"hello").unwrap();
        let mut clock = 0;
        until(&mut a, &mut b, &mut clock, |a, b| {
            a.wait_snd() == 0 && b.peek_size().is_ok()
        });
        b.recv(&mut [0u8; 8]).unwrap();
        clock += cfg.interval;
        exchange(&mut a, &mut b, clock); // last ACKs out
        for k in [&a, &b] {
            let ahead = k.check(clock).wrapping_sub(clock);
            assert!(ahead >= 5_000, "idle session wakes after {ahead} ms");
        }
    }
}

/// An overdue retransmission while the flush clock is ahead: `check` names
/// the flush time, not "now" (ikcp's `check` returns now, and a loop that
/// trusts it spins until the next flush).
#[test]
fn check_names_the_flush_that_does_the_work() {
    let cfg = KcpConfig::default(); // interval 100, first RTO 225
    let mut a = kcp(cfg);
    a.send(b"x").unwrap();
    a.update(0); // cwnd 0: nothing yet
    a.update(100);
    assert_eq!(pushes(&take(&mut a)), vec![0]);
    a.update(300);
    assert!(take(&mut a).is_empty());
    // The retransmission is due at 325, the next flush at 400.
    for now in [326, 350, 399] {
        assert_eq!(a.check(now), 400, "at {now}");
        a.update(now);
        assert!(
            take(&mut a).is_empty(),
            "update at {now} did work check did not name"
        );
    }
    a.update(400);
    assert_eq!(pushes(&take(&mut a)), vec![0]);
}

/// A lossy transfer driven only by `check` and the network's delivery
/// times: no iteration sleeps for zero twice in a row, updates are rarely
/// idle, and every message arrives.
#[test]
fn check_driven_loop_delivers_everything_without_spinning() {
    for cfg in [KcpConfig::default(), KcpConfig::fast()] {
        let (mut a, mut b) = (kcp(cfg), kcp(cfg));
        let mut rng = Rng::new(5);
        // In transit: (deliver at, to b?, datagram).
        let mut net: Vec<(u32, bool, Vec<u8>)> = Vec::new();
        let total = 3_000u32;
        let mut sent = 0;
        let mut got = 0u32;
        let mut clock = 0u32;
        let (mut iterations, mut zero_sleeps, mut idle_updates, mut updates) = (0, 0, 0, 0);
        let mut buf = [0u8; 64];
        a.update(0);
        b.update(0);
        while got < total {
            while sent < total && a.send(&sent.to_le_bytes()).is_ok() {
                sent += 1;
            }
            // Next event: a timer or a delivery.
            let next = [a.check(clock), b.check(clock)]
                .into_iter()
                .chain(net.iter().map(|(t, _, _)| *t))
                .min_by_key(|t| t.wrapping_sub(clock))
                .unwrap();
            if next == clock {
                zero_sleeps += 1;
            }
            clock = next;
            let (due, later): (Vec<_>, Vec<_>) = net.drain(..).partition(|(t, _, _)| *t == clock);
            net = later;
            for (_, to_b, d) in due {
                let k = if to_b { &mut b } else { &mut a };
                k.input(&d).unwrap();
            }
            for (k, to_b) in [(&mut a, true), (&mut b, false)] {
                if k.check(clock) != clock {
                    continue;
                }
                updates += 1;
                let before = *k.stats();
                k.update(clock);
                let out = take(k);
                if out.is_empty() && *k.stats() == before {
                    idle_updates += 1;
                }
                for d in out {
                    if !rng.chance(0.1) {
                        net.push((clock + rng.range(20, 40) as u32, to_b, d));
                    }
                }
            }
            while let Ok(n) = b.recv(&mut buf) {
                assert_eq!(u32::from_le_bytes(buf[..n].try_into().unwrap()), got);
                got += 1;
            }
            iterations += 1;
            assert!(
                iterations < 100_000,
                "spinning: {iterations} iterations, {got} received"
            );
        }
        assert!(
            zero_sleeps * 2 <= iterations,
            "{zero_sleeps} zero sleeps in {iterations} iterations"
        );
        // Updates that neither sent nor changed anything: only the one
        // that arms the zero-window probe timer may be idle.
        assert!(
            idle_updates * 50 <= updates,
            "{idle_updates} of {updates} updates did nothing"
        );
    }
}

/// A driver that updates only at `check` deadlines must refresh the clock
/// before `input`, or RTT samples are taken against a stale time.
#[test]
fn set_clock_before_input_measures_true_rtt() {
    use kcp_rs::sim::Outbox;
    let rtt_seen = |refresh: bool| {
        let cfg = KcpConfig::fast();
        let mut a = Kcp::with_config(5, Outbox::default(), cfg).unwrap();
        let mut b = Kcp::with_config(5, Outbox::default(), cfg).unwrap();
        a.send(b"ping").unwrap();
        a.update(0); // PUSH leaves with ts = 0
        let mut wire = Vec::new();
        a.output_mut().drain(|d| wire.push(d.to_vec()));
        b.update(50);
        for d in wire.drain(..) {
            b.input(&d).unwrap();
        }
        b.flush(); // ACK echoes ts = 0
        b.output_mut().drain(|d| wire.push(d.to_vec()));
        // The ACK arrives at t = 100; `a` has not been updated since t = 0.
        if refresh {
            a.set_clock(100);
        }
        for d in wire.drain(..) {
            a.input(&d).unwrap();
        }
        assert_eq!(a.wait_snd(), 0, "the ACK was taken");
        a.rtt()
    };
    assert_eq!(rtt_seen(true), 100);
    assert_eq!(rtt_seen(false), 0, "a stale clock yields no useful sample");
}
