//! `kcp_stateful`: an `arbitrary` sequence of operations on a pair.
//!
//! The operations drive both sessions' application and network sides
//! (each side writes with `send` or the zero-copy `send_with`, reads with
//! `input` + `recv` or the zero-copy `input_with` / `recv_with`, switched
//! by [`Op::Reader`] at any point, and [`Op::RecvWith`] mixes `recv_with`
//! with `recv`) and abuse the wire: loss, reordering, replays of recent
//! datagrams (also fed
//! back to their own sender), truncations, header fields overwritten and
//! bytes flipped, and a clock that stalls, jumps back or leaps across the
//! wrap. Invariants, checked throughout:
//!
//! - nothing panics and `input` / `input_with` / `send` / `send_with` /
//!   `recv` / `recv_with` fail only as documented, and `send_with` fills
//!   exactly the bytes it reports taken;
//! - every genuine datagram is accepted and no session emits a malformed one;
//! - memory stays within `memory_footprint_max`;
//! - `check` never names a time in the past, nor one far ahead when idle;
//! - data received on an untainted direction (see [`duo`](crate::duo)) is
//!   exactly what was sent next, in order, once, whichever call read it;
//!   the zero-copy calls keep message boundaries (see [`duo`](crate::duo)).
//!
//! Then the garbage stops and the wire turns honest: each untainted
//! direction must deliver everything ever sent on it, and then a fresh
//! message sent afterwards, within a bounded number of wake-ups.

use arbitrary::Arbitrary;

use crate::duo::{config, Duo, Reader};

/// Operations taken from one input at most.
const MAX_OPS: usize = 400;
/// Wake-ups allowed for each honest phase.
const SETTLE_LIMIT: usize = 20_000;

/// One run.
#[derive(Arbitrary, Debug)]
pub struct Scenario {
    /// Configuration, see [`config`].
    pub config: u8,
    /// Stream mode.
    pub stream: bool,
    /// Start sequence numbers at `u32::MAX - 8`.
    pub wrap_sn: bool,
    /// Initial clock.
    pub clock: u32,
    /// What happens.
    pub ops: Vec<Op>,
}

/// One step. `side` / `from` pick session 0 or 1; `from` is the sender of
/// the datagrams the step touches.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Op {
    /// Sends `len` bytes (a small length when the top bit is set).
    Send { side: bool, len: u16 },
    /// [`Op::Send`] through `send_with`, writing in place.
    SendWith { side: bool, len: u16 },
    /// One `recv` with a buffer of `cap` bytes (small when the top bit is set).
    Recv { side: bool, cap: u16 },
    /// Reads everything ready.
    RecvAll { side: bool },
    /// Delivers the next `n` datagrams in order.
    Deliver { from: bool, n: u8 },
    /// Loses the next `n` datagrams.
    Lose { from: bool, n: u8 },
    /// Swaps the next two datagrams.
    Swap { from: bool },
    /// Feeds a copy of a recent datagram to the receiver, or back to its
    /// own sender.
    Replay { from: bool, back: u8, reflect: bool },
    /// Feeds the first `keep` bytes of a recent datagram to the receiver.
    Truncate { from: bool, back: u8, keep: u16 },
    /// Overwrites one header field of one segment of a recent datagram
    /// (field: conv, cmd, frg, wnd, ts, sn, una, len), flips one byte, and
    /// feeds the result to the receiver.
    Mutate {
        from: bool,
        back: u8,
        seg: u8,
        field: u8,
        value: u32,
        flip_at: u16,
        flip: u8,
    },
    /// Moves the clock forward by `ms`.
    Advance { ms: u16 },
    /// Moves the clock by any amount, backwards too.
    Jump { delta: i32 },
    /// `update` at the current clock.
    Update { side: bool },
    /// `flush` without touching the clock.
    Flush { side: bool },
    /// `check` at the current clock.
    Check { side: bool },
    /// One `recv_with`.
    RecvWith { side: bool },
    /// `shrink_to_fit`: gives back payload pools with no block in use.
    Shrink { side: bool },
    /// From now on `side` takes datagrams with `input_with` (else `input`)
    /// and reads everything ready with `recv_with` (else `recv`); also for
    /// the honest phase at the end.
    Reader {
        side: bool,
        input_with: bool,
        recv_with: bool,
    },
}

/// Header field offsets and widths, in [`Op::Mutate`]'s order.
const FIELDS: [(usize, usize); 8] = [
    (0, 4),
    (4, 1),
    (5, 1),
    (6, 2),
    (8, 4),
    (12, 4),
    (16, 4),
    (20, 4),
];

/// The harness.
///
/// # Panics
/// When an invariant breaks (that is the point).
pub fn run(s: &Scenario) {
    run_pair(s);
}

/// [`run`], returning the pair at the end (for tests).
///
/// # Panics
/// When an invariant breaks.
pub fn run_pair(s: &Scenario) -> Duo {
    let mut cfg = config(s.config, s.stream);
    if s.wrap_sn {
        cfg.initial_sn = u32::MAX - 8;
    }
    let mut d = Duo::new(cfg, s.clock);
    let max_message = cfg.max_message();
    for op in s.ops.iter().take(MAX_OPS) {
        apply(&mut d, *op, max_message);
        d.check_memory();
    }

    // The wire turns honest.
    if !d.settle(SETTLE_LIMIT) {
        d.fail_unsettled("after the garbage");
    }
    for side in 0..2 {
        match d.send(side, 1 + max_message.min(3000) / 2) {
            Ok(_) | Err(kcp_rs::KcpError::DeadLink) => {}
            // A tainted direction may still hold forged-away segments.
            Err(_) if d.tainted(side) => {}
            Err(e) => panic!(
                "side {side} cannot send on a settled link: {e:?}: {}",
                d.describe()
            ),
        }
    }
    if !d.settle(SETTLE_LIMIT) {
        d.fail_unsettled("fresh messages");
    }
    d
}

fn apply(d: &mut Duo, op: Op, max_message: usize) {
    let idx = |b: bool| b as usize;
    match op {
        Op::Send { side, len } => {
            let len = small_or(len, (max_message + 64).max(1));
            let _ = d.send(idx(side), len);
        }
        Op::SendWith { side, len } => {
            let len = small_or(len, (max_message + 64).max(1));
            let _ = d.send_with(idx(side), len);
        }
        Op::Recv { side, cap } => {
            let _ = d.recv(idx(side), small_or(cap, usize::MAX));
        }
        Op::RecvAll { side } => d.recv_all(idx(side)),
        Op::Deliver { from, n } => d.deliver(idx(from), n as usize),
        Op::Lose { from, n } => d.lose(idx(from), n as usize),
        Op::Swap { from } => d.swap(idx(from)),
        Op::Replay {
            from,
            back,
            reflect,
        } => {
            if let Some(g) = d.recent(idx(from), back as usize) {
                let to = if reflect { idx(from) } else { 1 - idx(from) };
                let _ = d.inject(to, &g);
            }
        }
        Op::Truncate { from, back, keep } => {
            if let Some(g) = d.recent(idx(from), back as usize) {
                let keep = keep as usize % (g.len() + 1);
                let _ = d.inject(1 - idx(from), &g[..keep]);
            }
        }
        Op::Mutate {
            from,
            back,
            seg,
            field,
            value,
            flip_at,
            flip,
        } => {
            if let Some(mut g) = d.recent(idx(from), back as usize) {
                mutate(&mut g, seg, field, value, flip_at, flip);
                let _ = d.inject(1 - idx(from), &g);
            }
        }
        Op::Advance { ms } => d.now = d.now.wrapping_add(ms as u32),
        Op::Jump { delta } => d.now = d.now.wrapping_add(delta as u32),
        Op::Update { side } => d.update(idx(side)),
        Op::Flush { side } => d.flush(idx(side)),
        Op::Check { side } => {
            d.check(idx(side));
        }
        Op::RecvWith { side } => {
            let _ = d.recv_with(idx(side));
        }
        Op::Shrink { side } => {
            let k = &mut d.k[idx(side)];
            let held = (k.segments_held(), k.wait_snd(), k.peek_size().ok());
            let before = k.memory_footprint();
            let released = k.shrink_to_fit();
            assert_eq!(k.memory_footprint(), before - released);
            // Nothing the session holds may go with the storage.
            assert_eq!(held, (k.segments_held(), k.wait_snd(), k.peek_size().ok()));
        }
        Op::Reader {
            side,
            input_with,
            recv_with,
        } => {
            d.reader[idx(side)] = Reader {
                input_with,
                recv_with,
            }
        }
    }
    d.collect();
}

/// `v & 0xff` when the top bit is set, else `v` below `limit`.
fn small_or(v: u16, limit: usize) -> usize {
    if v & 0x8000 != 0 {
        (v & 0xff) as usize
    } else {
        v as usize % limit.max(1)
    }
}

fn mutate(g: &mut [u8], seg: u8, field: u8, value: u32, flip_at: u16, flip: u8) {
    // Offsets of the segment headers, walking the `len` fields.
    let mut starts = Vec::new();
    let mut at = 0usize;
    while at + 24 <= g.len() {
        starts.push(at);
        let len = u32::from_le_bytes([g[at + 20], g[at + 21], g[at + 22], g[at + 23]]);
        at = at.saturating_add(24).saturating_add(len as usize);
    }
    if !starts.is_empty() {
        let start = starts[seg as usize % starts.len()];
        let (off, width) = FIELDS[field as usize % FIELDS.len()];
        g[start + off..start + off + width].copy_from_slice(&value.to_le_bytes()[..width]);
    }
    if flip != 0 && !g.is_empty() {
        let i = flip_at as usize % g.len();
        g[i] ^= flip;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(config: u8, stream: bool, ops: Vec<Op>) -> Scenario {
        Scenario {
            config,
            stream,
            wrap_sn: true,
            clock: u32::MAX - 1000,
            ops,
        }
    }

    /// Sends, losses, replays, a backward jump and a leap, in every config.
    fn rough_ops() -> Vec<Op> {
        use Op::*;
        let mut ops = vec![
            Send {
                side: false,
                len: 3000,
            },
            Send {
                side: true,
                len: 0x8005,
            },
            SendWith {
                side: false,
                len: 2000,
            },
            Update { side: false },
            Update { side: true },
            Shrink { side: false },
            Shrink { side: true },
            Advance { ms: 30 },
            Update { side: false },
            Update { side: true },
            Lose { from: false, n: 1 },
            Deliver { from: false, n: 2 },
            Replay {
                from: false,
                back: 0,
                reflect: false,
            },
            Replay {
                from: true,
                back: 1,
                reflect: true,
            },
            Truncate {
                from: false,
                back: 0,
                keep: 30,
            },
            Mutate {
                from: true,
                back: 0,
                seg: 0,
                field: 3,
                value: 0,
                flip_at: 0,
                flip: 0,
            },
            Mutate {
                from: false,
                back: 1,
                seg: 1,
                field: 4,
                value: 7,
                flip_at: 9,
                flip: 0x40,
            },
            Jump { delta: -5_000 },
            Update { side: false },
            Check { side: false },
            Jump { delta: i32::MAX },
            Update { side: true },
            Recv {
                side: true,
                cap: 0x8001,
            },
            RecvAll { side: false },
            Flush { side: true },
        ];
        let again = ops.clone();
        ops.extend(again);
        ops
    }

    #[test]
    fn rough_scenarios_settle_in_every_configuration() {
        for config in 0..8 {
            for stream in [false, true] {
                run(&scenario(config, stream, rough_ops()));
            }
        }
    }

    #[test]
    fn rough_scenarios_settle_with_every_reader() {
        for config in 0..8 {
            for stream in [false, true] {
                for bits in 1..16u8 {
                    let reader = |side: bool, shift: u8| Op::Reader {
                        side,
                        input_with: bits >> shift & 1 != 0,
                        recv_with: bits >> shift & 2 != 0,
                    };
                    let mut ops = vec![reader(false, 0), reader(true, 2)];
                    ops.extend(rough_ops());
                    // Halfway, a copying read, one zero-copy read, and
                    // every reader swapped: queued data meets the other call.
                    let half = ops.len() / 2;
                    ops.insert(half, reader(true, 0));
                    ops.insert(half, reader(false, 2));
                    ops.insert(half, Op::RecvWith { side: true });
                    ops.insert(
                        half,
                        Op::Recv {
                            side: true,
                            cap: 0x8010,
                        },
                    );
                    let d = run_pair(&scenario(config, stream, ops));
                    assert!(
                        d.zero_copy_bytes(0) + d.zero_copy_bytes(1) > 0,
                        "config {config} stream {stream} readers {bits:04b}: nothing zero-copy"
                    );
                }
            }
        }
    }

    #[test]
    fn mutate_touches_the_chosen_field_of_the_chosen_segment() {
        let mut g = vec![0u8; 24 + 2 + 24];
        g[20] = 2; // first segment carries 2 bytes
        mutate(&mut g, 1, 5, 0xdead_beef, 0, 0);
        assert_eq!(&g[26 + 12..26 + 16], &0xdead_beef_u32.to_le_bytes());
        mutate(&mut g, 0, 1, 0x1234, 3, 0xff);
        assert_eq!(g[4], 0x34);
        assert_eq!(g[3], 0xff);
    }

    /// The input with which this target found `flush` skipping a segment
    /// due after a clock jump of about 2^31 ms (fixed in 7102146), kept as
    /// operations: a seed file decodes to other operations once `Op` gains
    /// variants.
    fn clock_jump_floor_scenario() -> Scenario {
        use Op::*;
        Scenario {
            config: 4,
            stream: true,
            wrap_sn: true,
            clock: 2234723578,
            ops: vec![
                Advance { ms: 65535 },
                Check { side: true },
                Send {
                    side: true,
                    len: 61830,
                },
                Update { side: true },
                Update { side: true },
                Update { side: true },
                Update { side: true },
                Update { side: true },
                Update { side: true },
                Update { side: true },
                Update { side: true },
                RecvAll { side: false },
                Recv {
                    side: true,
                    cap: 50981,
                },
                Send {
                    side: true,
                    len: 65535,
                },
                Check { side: true },
                Check { side: true },
                Check { side: true },
                Check { side: true },
                Check { side: true },
                Check { side: true },
                Check { side: true },
                Send {
                    side: true,
                    len: 61830,
                },
                Update { side: true },
                Update { side: false },
                Update { side: true },
                Update { side: true },
                Update { side: true },
                Update { side: true },
                Update { side: true },
                Update { side: true },
                Recv {
                    side: true,
                    cap: 50981,
                },
                Recv {
                    side: true,
                    cap: 50981,
                },
                Send {
                    side: true,
                    len: 65535,
                },
                Check { side: true },
                Check { side: true },
                Check { side: true },
                Check { side: true },
                Check { side: true },
                Check { side: true },
                Check { side: true },
                Send {
                    side: true,
                    len: 61830,
                },
                Update { side: true },
                Update { side: true },
                Update { side: true },
                Update { side: true },
                Flush { side: true },
                Update { side: true },
                Update { side: true },
                Update { side: true },
                Update { side: true },
                Update { side: true },
                Update { side: true },
                Update { side: true },
                Update { side: true },
                Update { side: true },
                Update { side: true },
                Check { side: true },
                Update { side: true },
                Update { side: true },
                Update { side: true },
                Update { side: true },
                Update { side: true },
                Update { side: true },
                Update { side: true },
                Update { side: true },
                Jump { delta: -1060540367 },
                RecvAll { side: false },
                Check { side: true },
                Check { side: true },
                Check { side: true },
                Check { side: true },
                Check { side: true },
                Check { side: true },
                Check { side: true },
                Check { side: true },
                Send {
                    side: true,
                    len: 61830,
                },
                Update { side: true },
                Update { side: true },
                Update { side: true },
                Update { side: true },
                Update { side: true },
                Update { side: true },
                Update { side: true },
                Check { side: true },
                Check { side: true },
                Check { side: true },
                Check { side: true },
                Jump { delta: -242855154 },
                Update { side: true },
                Update { side: true },
                Update { side: true },
                Update { side: true },
                Flush { side: true },
                Update { side: true },
                Update { side: true },
                Swap { from: true },
                Jump { delta: -953849053 },
                Send {
                    side: true,
                    len: 65535,
                },
                Recv {
                    side: false,
                    cap: 0,
                },
            ],
        }
    }

    #[test]
    fn clock_jump_regression_settles() {
        run(&clock_jump_floor_scenario());
    }

    #[test]
    fn arbitrary_bytes_decode_to_a_scenario() {
        let bytes: Vec<u8> = (0..2048u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        let s = Scenario::arbitrary(&mut arbitrary::Unstructured::new(&bytes)).unwrap();
        assert!(!s.ops.is_empty());
        run(&s);
    }
}
