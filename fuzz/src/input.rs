//! `kcp_input`: arbitrary datagrams into a session that is mid-conversation.
//!
//! Input layout: one flags byte, then datagrams, each a little-endian `u16`
//! length followed by that many bytes (the last one may be shorter than its
//! length says; it is taken as it is).
//!
//! | flags bit | meaning |
//! |---|---|
//! | 0 | stream mode |
//! | 1 | the victim is side 1 (else side 0) |
//! | 2–3 | configuration, see [`config`] |
//! | 4 | sequence numbers start at `u32::MAX - 2` (wrap during the prelude) |
//! | 5 | the victim flushes after each datagram and its reply reaches the peer |
//! | 6 | the clock starts just below `u32::MAX` |
//! | 7 | the victim takes datagrams with `input_with` and reads with `recv_with` (else `input` and `recv`), from the prelude on |
//!
//! The pair first exchanges a few messages both ways (one of several
//! fragments) until both are idle. The datagrams then go to the victim's
//! `input` (or `input_with`, whose hand-over is checked as in
//! [`duo`](crate::duo): what forged data it delivers must be recognised as
//! forged, and it keeps message boundaries). Afterwards: no panic, memory within bound, and a fresh message
//! each way over an honest wire must arrive, exactly, unless the garbage
//! forged data into that direction (see [`duo`](crate::duo)). The victim's
//! own direction cannot be forged into while it has nothing in flight, so
//! its message must always arrive.

use crate::duo::{config, Duo, Reader};

/// Datagrams taken from one input at most.
const MAX_DATAGRAMS: usize = 64;
/// Wake-ups allowed for the honest exchanges.
const SETTLE_LIMIT: usize = 20_000;

/// Builds the pair `flags` describes and runs the prelude exchange.
pub fn prelude(flags: u8) -> Duo {
    let mut cfg = config(flags >> 2, flags & 1 != 0);
    if flags & 0x10 != 0 {
        cfg.initial_sn = u32::MAX - 2;
    }
    let now = if flags & 0x40 != 0 { u32::MAX - 500 } else { 0 };
    let mut d = Duo::new(cfg, now);
    if flags & 0x80 != 0 {
        d.reader[victim(flags)] = Reader {
            input_with: true,
            recv_with: true,
        };
    }
    let mss = d.k[0].mss();
    for (side, len) in [(0, 5), (1, 1), (0, 2 * mss + mss / 2), (1, 0), (1, 40)] {
        if let Err(e) = d.send(side, len) {
            panic!("prelude send refused: {e:?}");
        }
    }
    if !d.settle(SETTLE_LIMIT) {
        d.fail_unsettled("prelude");
    }
    d
}

/// The victim side `flags` names.
pub fn victim(flags: u8) -> usize {
    (flags >> 1 & 1) as usize
}

/// Splits the input after the flags byte into datagrams.
pub fn datagrams(mut rest: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        if rest.len() < 2 {
            let d = rest;
            rest = &[];
            return Some(d);
        }
        let len = u16::from_le_bytes([rest[0], rest[1]]) as usize;
        let body = &rest[2..];
        let (d, tail) = body.split_at(len.min(body.len()));
        rest = tail;
        Some(d)
    })
    .take(MAX_DATAGRAMS)
}

/// Frames datagrams the way [`datagrams`] reads them (for seeds and tests).
pub fn encode(flags: u8, dgrams: &[&[u8]]) -> Vec<u8> {
    let mut out = vec![flags];
    for d in dgrams {
        out.extend_from_slice(&(d.len() as u16).to_le_bytes());
        out.extend_from_slice(d);
    }
    out
}

/// The harness.
///
/// # Panics
/// When an invariant breaks (that is the point).
pub fn run(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mut d = prelude(flags);
    let v = victim(flags);
    for g in datagrams(rest) {
        let _ = d.inject(v, g);
        d.check_memory();
        if flags & 0x20 != 0 {
            d.now = d.now.wrapping_add(10);
            d.update(v);
            d.deliver(v, usize::MAX);
        }
    }
    assert!(
        !d.tainted(v),
        "garbage tainted the victim's own direction with nothing in flight"
    );
    for side in [v, 1 - v] {
        if let Err(e) = d.send(side, 100) {
            panic!(
                "side {side} cannot send after garbage: {e:?}: {}",
                d.describe()
            );
        }
    }
    if !d.settle(SETTLE_LIMIT) {
        d.fail_unsettled("after garbage");
    }
    d.check_memory();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_round_trips_and_tolerates_short_tails() {
        let enc = encode(3, &[b"abc", b"", b"de"]);
        let got: Vec<_> = datagrams(&enc[1..]).collect();
        assert_eq!(got, [&b"abc"[..], b"", b"de"]);
        let got: Vec<_> = datagrams(&[2, 0, 1, 2, 7]).collect();
        assert_eq!(got, [&[1u8, 2][..], &[7]]);
    }

    #[test]
    fn every_flag_combination_survives_replays_of_the_peer() {
        for flags in 0..=0xff {
            let d = prelude(flags);
            let peer = 1 - victim(flags);
            let replay: Vec<Vec<u8>> = (0..8).filter_map(|i| d.recent(peer, i)).collect();
            let refs: Vec<&[u8]> = replay.iter().map(Vec::as_slice).collect();
            run(&encode(flags, &refs));
        }
    }

    #[test]
    fn forged_data_into_the_victim_is_tolerated_but_not_checked() {
        // A PUSH with the right conv at sn 0 carrying garbage: message mode,
        // victim side 1, which then receives it as data.
        let mut h = kcp_rs::codec::Header {
            conv: crate::duo::CONV,
            cmd: kcp_rs::constants::CMD_PUSH,
            frg: 0,
            wnd: 128,
            ts: kcp_rs::sequence::Timestamp::new(0),
            sn: kcp_rs::sequence::Seq::new(0),
            una: kcp_rs::sequence::Seq::new(0),
            len: 3,
        };
        let mut dgram = vec![0u8; 27];
        for sn in [2u32, 3, 4, 1000] {
            h.sn = kcp_rs::sequence::Seq::new(sn);
            h.emit(&mut dgram);
            run(&encode(0b10, &[&dgram]));
            run(&encode(0x82, &[&dgram]));
        }
    }

    #[test]
    fn the_zero_copy_victim_reads_with_input_with() {
        for flags in [0x80u8, 0x81, 0x83, 0x8a, 0xd3] {
            let d = prelude(flags);
            let v = victim(flags);
            assert!(d.zero_copy_bytes(v) > 0, "flags {flags:02x}");
            assert_eq!(d.zero_copy_bytes(1 - v), 0, "flags {flags:02x}");
        }
    }
}
