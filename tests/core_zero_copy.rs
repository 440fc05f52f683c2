//! The zero-copy paths, `send_with`, `input_with` and `recv_with`: the
//! reader sees exactly the stream `send` + `input` + `recv` would give (in
//! order, once, message boundaries kept) over a lossy, reordering,
//! duplicating link, and data that arrives in order really is handed over
//! from the datagram.
#![cfg(feature = "std")] // the simulation needs std

mod support;

use kcp_rs::sim::{Link, LinkConfig, Outbox, Rng};
use kcp_rs::{Kcp, KcpConfig, KcpError};

const STEP_MS: u64 = 5;

/// What a reader put together from `(piece, end)` calls.
#[derive(Default)]
struct Reader {
    messages: Vec<Vec<u8>>,
    partial: Vec<u8>,
    pieces: usize,
    /// Pieces whose bytes lay inside the datagram being input.
    in_place: usize,
}

impl Reader {
    fn take(&mut self, piece: &[u8], end: bool, datagram: Option<&[u8]>) {
        self.pieces += 1;
        if let Some(d) = datagram {
            let range = d.as_ptr_range();
            if !piece.is_empty() && range.contains(&piece.as_ptr()) {
                self.in_place += 1;
            }
        }
        self.partial.extend_from_slice(piece);
        if end {
            self.messages.push(std::mem::take(&mut self.partial));
        }
    }
}

/// How the sender queues its data.
#[derive(Clone, Copy, PartialEq)]
enum Sender {
    /// `send`, from the caller's buffer.
    Copying,
    /// `send_with`, written into KCP's buffer.
    InPlace,
}

/// Queues what is left of `msg` from byte `off` on; returns the bytes
/// taken (stream mode may take part), or `None` when there was no room.
fn send_from(a: &mut Kcp<Outbox>, msg: &[u8], off: usize, how: Sender) -> Option<usize> {
    let rest = &msg[off..];
    let r = match how {
        Sender::Copying => a.send(rest),
        Sender::InPlace => {
            let mut at = 0;
            let r = a.send_with(rest.len(), |piece| {
                piece.copy_from_slice(&rest[at..at + piece.len()]);
                at += piece.len();
            });
            // `fill` saw exactly the bytes reported taken.
            assert_eq!(at, *r.as_ref().unwrap_or(&0), "fill and result disagree");
            r
        }
    };
    match r {
        Ok(n) => Some(n),
        Err(KcpError::BufferFull) => None,
        Err(e) => panic!("send: {e}"),
    }
}

/// Sends `msgs` from `a` to `b` over lossy links; `b` reads with
/// `input_with`. Returns the reader, and `b` for inspection.
fn transfer(
    cfg: KcpConfig,
    link: LinkConfig,
    seed: u64,
    msgs: &[Vec<u8>],
) -> (Reader, Kcp<Outbox>) {
    transfer_sent(cfg, link, seed, msgs, Sender::Copying).0
}

/// [`transfer`], the sender queuing as `how` says; also returns how many
/// calls took only part of what they were given.
fn transfer_sent(
    cfg: KcpConfig,
    link: LinkConfig,
    seed: u64,
    msgs: &[Vec<u8>],
    how: Sender,
) -> ((Reader, Kcp<Outbox>), usize) {
    let mut a = Kcp::with_config(7, Outbox::default(), cfg).unwrap();
    let mut b = Kcp::with_config(7, Outbox::default(), cfg).unwrap();
    let (mut ab, mut ba) = (Link::new(link, seed), Link::new(link, seed ^ 0x55));
    let mut reader = Reader::default();
    let total: usize = msgs.iter().map(Vec::len).sum();
    let (mut next, mut off, mut partial, mut now) = (0, 0, 0, 0u64);
    let delivered = |r: &Reader| r.messages.iter().map(Vec::len).sum::<usize>() + r.partial.len();
    while if cfg.stream {
        delivered(&reader) < total
    } else {
        reader.messages.len() < msgs.len()
    } {
        while next < msgs.len() {
            let Some(n) = send_from(&mut a, &msgs[next], off, how) else {
                break;
            };
            off += n;
            if off < msgs[next].len() {
                partial += 1;
                continue;
            }
            (next, off) = (next + 1, 0);
        }
        now += STEP_MS;
        ab.deliver(now, |d| {
            b.input_with(d, |piece, end| reader.take(piece, end, Some(d)))
                .unwrap();
        });
        ba.deliver(now, |d| a.input(d).unwrap());
        a.update(now as u32);
        b.update(now as u32);
        a.output_mut().drain(|d| ab.send(now, d));
        b.output_mut().drain(|d| ba.send(now, d));
        assert!(
            now < 3_600_000,
            "stalled: {} of {}",
            reader.messages.len(),
            msgs.len()
        );
    }
    assert!(ab.stats().dropped > 0 || link.loss == 0.0);
    ((reader, b), partial)
}

fn mixed_messages(seed: u64, cfg: &KcpConfig) -> Vec<Vec<u8>> {
    let msgs = support::messages(&mut Rng::new(seed), 600, cfg.mss(), 6);
    assert!(msgs.iter().any(|m| m.len() > 2 * cfg.mss()));
    assert!(msgs.iter().any(Vec::is_empty));
    msgs
}

#[test]
fn input_with_keeps_messages_whole_and_in_order_over_a_bad_link() {
    let cfg = KcpConfig::fast();
    for seed in 1..=4 {
        let msgs = mixed_messages(seed, &cfg);
        let (reader, mut b) = transfer(cfg, LinkConfig::lossy(0.2), seed, &msgs);
        assert_eq!(reader.messages.len(), msgs.len(), "seed {seed}");
        for (i, (got, want)) in reader.messages.iter().zip(&msgs).enumerate() {
            assert!(got == want, "seed {seed}: message {i} differs");
        }
        assert!(reader.partial.is_empty());
        // Everything went through the callback; nothing is left for recv.
        assert_eq!(b.recv(&mut [0u8; 64]), Err(KcpError::WouldBlock));
        // Both paths were taken: reordering stored some, order let others
        // through in place.
        assert!(reader.in_place > 0, "seed {seed}: nothing handed in place");
        assert!(
            reader.in_place < reader.pieces,
            "seed {seed}: nothing came from the buffer"
        );
    }
}

#[test]
fn input_with_in_stream_mode_delivers_every_byte_once() {
    let cfg = KcpConfig {
        stream: true,
        ..KcpConfig::fast()
    };
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 31 % 253) as u8).collect();
    // Uneven writes, so segments are topped up and cut at odd places.
    let mut msgs = Vec::new();
    let mut at = 0;
    let mut rng = Rng::new(9);
    while at < data.len() {
        let n = (rng.range(1, 5000) as usize).min(data.len() - at);
        msgs.push(data[at..at + n].to_vec());
        at += n;
    }
    let (reader, _) = transfer(cfg, LinkConfig::lossy(0.1), 3, &msgs);
    let got: Vec<u8> = reader.messages.concat();
    assert_eq!(got.len(), data.len());
    assert!(got == data, "stream content differs");
    assert!(reader.in_place > 0);
}

#[test]
fn on_a_perfect_link_every_whole_message_is_read_in_place() {
    let cfg = KcpConfig::fast();
    let msgs: Vec<Vec<u8>> = (0..2000u32)
        .map(|i| vec![i as u8; 1 + (i as usize * 37) % cfg.mss()])
        .collect();
    let (reader, _) = transfer(cfg, LinkConfig::perfect(), 1, &msgs);
    assert_eq!(reader.messages, msgs);
    assert_eq!(reader.in_place, msgs.len(), "some were copied first");
}

#[test]
fn recv_with_hands_one_message_and_keeps_the_window_honest() {
    let cfg = KcpConfig {
        rcv_wnd: 32,
        ..KcpConfig::fast()
    };
    let mut a = Kcp::with_config(1, Outbox::default(), cfg).unwrap();
    let mut b = Kcp::with_config(1, Outbox::default(), cfg).unwrap();
    let mss = cfg.mss();
    let big: Vec<u8> = (0..3 * mss + 10).map(|i| i as u8).collect();
    a.send(&big).unwrap();
    a.send(b"tail").unwrap();
    for now in [0u32, 10] {
        a.update(now);
        a.output_mut().drain(|d| b.input(d).unwrap());
    }
    let mut pieces = Vec::new();
    let n = b
        .recv_with(|p, end| pieces.push((p.to_vec(), end)))
        .unwrap();
    assert_eq!(n, big.len());
    assert_eq!(pieces.len(), 4, "one piece per fragment");
    assert_eq!(
        pieces.iter().map(|(_, e)| *e).collect::<Vec<_>>(),
        [false, false, false, true]
    );
    assert_eq!(pieces.concat_bytes(), big);
    // The second message is still queued, for either reader.
    assert_eq!(b.peek_size(), Ok(4));
    let mut buf = [0u8; 8];
    assert_eq!(b.recv(&mut buf), Ok(4));
    assert_eq!(
        b.recv_with(|_, _| panic!("nothing left")),
        Err(KcpError::WouldBlock)
    );

    // A reader that stops lets the window shut, as with recv.
    for _ in 0..cfg.rcv_wnd {
        a.send(b"x").unwrap();
    }
    a.update(20);
    a.output_mut().drain(|d| b.input(d).unwrap());
    b.update(20);
    let mut announced = None;
    b.output_mut()
        .drain(|d| announced = Some(u16::from_le_bytes([d[6], d[7]])));
    assert_eq!(announced, Some(0), "a full queue announces a shut window");
    assert_eq!(b.recv_with(|p, _| assert_eq!(p, b"x")), Ok(1));
    assert!(b.tells_window(), "reading from a full window reopens it");
}

#[test]
fn an_incomplete_message_waits_until_its_last_fragment() {
    let cfg = KcpConfig::fast();
    let mut a = Kcp::with_config(1, Outbox::default(), cfg).unwrap();
    let mut b = Kcp::with_config(1, Outbox::default(), cfg).unwrap();
    let big = vec![5u8; 2 * cfg.mss() + 1];
    a.send(&big).unwrap();
    a.update(0);
    let mut dgrams = Vec::new();
    a.output_mut().drain(|d| dgrams.push(d.to_vec()));
    assert_eq!(dgrams.len(), 3);
    let mut got = Vec::new();
    let mut ends = 0;
    for (i, d) in dgrams.iter().enumerate() {
        let n = b
            .input_with(d, |p, end| {
                got.extend_from_slice(p);
                ends += end as usize;
            })
            .unwrap();
        if i < 2 {
            assert_eq!(
                n, 0,
                "fragment {i} handed over before the message was whole"
            );
        } else {
            assert_eq!(n, big.len());
        }
    }
    assert_eq!((got, ends), (big, 1));
}

#[test]
fn send_with_gives_the_messages_send_gives_over_a_bad_link() {
    let cfg = KcpConfig::fast();
    for seed in 1..=3 {
        let msgs = mixed_messages(seed, &cfg);
        let ((reader, _), _) =
            transfer_sent(cfg, LinkConfig::lossy(0.2), seed, &msgs, Sender::InPlace);
        assert_eq!(reader.messages.len(), msgs.len(), "seed {seed}");
        for (i, (got, want)) in reader.messages.iter().zip(&msgs).enumerate() {
            assert!(got == want, "seed {seed}: message {i} differs");
        }
    }
}

#[test]
fn send_with_in_stream_mode_resumes_where_it_was_cut() {
    // A send queue of a few hundred kilobytes at most.
    let cfg = KcpConfig {
        stream: true,
        snd_wnd: 32,
        rcv_wnd: 32,
        ..KcpConfig::fast()
    };
    let room = Kcp::with_config(1, Outbox::default(), cfg)
        .unwrap()
        .send_capacity();
    let data: Vec<u8> = (0..600_000u32).map(|i| (i * 7 % 251) as u8).collect();
    // Writes larger than the send queue's room, and small ones that top up
    // the last segment.
    let mut msgs = Vec::new();
    let (mut at, mut rng) = (0, Rng::new(4));
    while at < data.len() {
        let n = if rng.chance(0.3) {
            room + 1000
        } else {
            rng.range(1, 700) as usize
        };
        let n = n.min(data.len() - at);
        msgs.push(data[at..at + n].to_vec());
        at += n;
    }
    let ((reader, _), partial) =
        transfer_sent(cfg, LinkConfig::lossy(0.1), 5, &msgs, Sender::InPlace);
    assert!(partial > 0, "no write was cut: the test proves nothing");
    let got: Vec<u8> = reader.messages.concat();
    assert_eq!(got.len(), data.len());
    assert!(got == data, "stream content differs");
}

#[test]
fn send_with_fills_one_piece_per_segment_and_only_what_it_takes() {
    let cfg = KcpConfig::fast();
    let mss = cfg.mss();
    let mut a = Kcp::with_config(1, Outbox::default(), cfg).unwrap();
    let mut pieces = Vec::new();
    let len = 2 * mss + 100;
    assert_eq!(a.send_with(len, |p| pieces.push(p.len())), Ok(len));
    assert_eq!(pieces, [mss, mss, 100]);
    // Leave two free slots: a three-segment message is refused whole,
    // before `fill` sees anything; a one-segment one still fits.
    for _ in 0..a.send_capacity() / mss - 2 {
        a.send_with(1, |p| p[0] = 9).unwrap();
    }
    assert_eq!(a.send_capacity(), 2 * mss);
    let mut called = false;
    assert_eq!(
        a.send_with(len, |_| called = true),
        Err(KcpError::BufferFull)
    );
    assert_eq!(
        a.send_with(cfg.max_message() + 1, |_| called = true),
        Err(KcpError::DataTooLarge {
            max: cfg.max_message()
        })
    );
    assert!(!called);
    assert_eq!(a.send_with(5, |p| p.copy_from_slice(b"hello")), Ok(5));
    assert_eq!(a.send_capacity(), mss);

    // Stream mode: the first piece tops up the last queued segment, and
    // only what there is room for is taken.
    let cfg = KcpConfig {
        stream: true,
        ..KcpConfig::fast()
    };
    let mut s = Kcp::with_config(1, Outbox::default(), cfg).unwrap();
    assert_eq!(s.send_with(10, |p| p.fill(1)), Ok(10));
    let free = s.send_capacity() / mss;
    let mut pieces = Vec::new();
    let taken = s.send_with(10 * mss * free, |p| pieces.push(p.len()));
    assert_eq!(taken, Ok(mss - 10 + free * mss));
    assert_eq!(pieces.len(), 1 + free);
    assert_eq!(pieces[0], mss - 10);
    assert!(pieces[1..].iter().all(|&n| n == mss));
    assert_eq!(s.send_with(1, |_| called = true), Err(KcpError::BufferFull));
    assert!(!called);
}

#[test]
fn input_with_refuses_what_input_refuses_and_hands_nothing() {
    let mut b = Kcp::new(1, Outbox::default());
    let mut called = false;
    assert_eq!(
        b.input_with(&[0u8; 10], |_, _| called = true),
        Err(KcpError::InvalidPacket)
    );
    let mut d = [0u8; 24 + 3];
    d[..4].copy_from_slice(&2u32.to_le_bytes()); // another conversation
    d[4] = 81;
    d[20] = 3;
    assert_eq!(
        b.input_with(&d, |_, _| called = true),
        Err(KcpError::ConvMismatch {
            expected: 1,
            found: 2
        })
    );
    assert!(!called);
    // A replayed datagram is acknowledged again but not handed over twice.
    d[..4].copy_from_slice(&1u32.to_le_bytes());
    let mut count = 0;
    assert_eq!(b.input_with(&d, |_, _| count += 1), Ok(3));
    assert_eq!(b.input_with(&d, |_, _| count += 1), Ok(0));
    assert_eq!(count, 1);
    assert_eq!(b.stats().duplicate_segments, 1);
}

trait ConcatBytes {
    fn concat_bytes(&self) -> Vec<u8>;
}

impl ConcatBytes for Vec<(Vec<u8>, bool)> {
    fn concat_bytes(&self) -> Vec<u8> {
        self.iter().flat_map(|(p, _)| p.iter().copied()).collect()
    }
}
