//! Writes the seed corpora to `fuzz/seeds/<target>/`:
//!
//! ```text
//! cargo run --manifest-path fuzz/Cargo.toml --example seeds
//! ```
//!
//! - `kcp_input`: for a spread of flag bytes (some with the victim on the
//!   zero-copy `input_with`), the peer's genuine datagrams
//!   from the prelude (replays), plus hand-made segments with the right conv
//!   (window probes, a zero window, an ACK from far in the past, data at and
//!   beyond the receive window);
//! - `codec_header`: single genuine datagrams;
//! - `kcp_stateful` and `fec_decode`: pseudo-random byte strings, which
//!   `arbitrary` decodes into operation sequences;
//! - `listener_demux`: the first pseudo-random byte strings that decode
//!   into inputs with a first flight followed by a reply from the same
//!   socket (a session confirmed), a burst, FEC-framed datagrams, and a
//!   long mixed sequence.
//!
//! Deterministic: running it twice writes the same files.

use std::fs;
use std::path::{Path, PathBuf};

use arbitrary::{Arbitrary, Unstructured};
use kcp_rs::codec::Header;
use kcp_rs::constants::{CMD_ACK, CMD_PUSH, CMD_WASK, CMD_WINS};
use kcp_rs::sequence::{Seq, Timestamp};
use kcp_rs_fuzz::demux::{Datagram, DemuxInput, DemuxOp};
use kcp_rs_fuzz::duo::CONV;
use kcp_rs_fuzz::input::{encode, prelude, victim};

fn main() -> std::io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let dir = |t: &str| -> std::io::Result<PathBuf> {
        let d = root.join(t);
        fs::create_dir_all(&d)?;
        Ok(d)
    };
    let (input, codec) = (dir("kcp_input")?, dir("codec_header")?);
    let (stateful, fec) = (dir("kcp_stateful")?, dir("fec_decode")?);
    let demux = dir("listener_demux")?;

    for flags in [
        0x00u8, 0x01, 0x02, 0x03, 0x05, 0x0a, 0x0d, 0x13, 0x22, 0x31, 0x46, 0x7f,
        // The victim on `input_with` / `recv_with`.
        0x80, 0x81, 0x83, 0x8a, 0xb1, 0xd3,
    ] {
        let d = prelude(flags);
        let peer = 1 - victim(flags);
        let genuine: Vec<Vec<u8>> = (0..6).filter_map(|i| d.recent(peer, i)).collect();
        let refs: Vec<&[u8]> = genuine.iter().map(Vec::as_slice).collect();
        fs::write(
            input.join(format!("replay-{flags:02x}")),
            encode(flags, &refs),
        )?;
        // The victim's reader does not change what its peer sends.
        for (i, g) in genuine.iter().take(2).enumerate() {
            if flags & 0x80 == 0 {
                fs::write(codec.join(format!("genuine-{flags:02x}-{i}")), g)?;
            }
        }

        let sn = if flags & 0x10 != 0 { u32::MAX - 2 } else { 0 };
        let crafted = crafted(sn);
        let refs: Vec<&[u8]> = crafted.iter().map(Vec::as_slice).collect();
        fs::write(
            input.join(format!("crafted-{flags:02x}")),
            encode(flags, &refs),
        )?;
    }

    let mut x = 0x2545_f491_4f6c_dd1du64;
    for (i, len) in [64usize, 256, 1024, 4096].into_iter().enumerate() {
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect();
        fs::write(stateful.join(format!("random-{i}")), &bytes)?;
        fs::write(fec.join(format!("random-{i}")), &bytes)?;
    }
    for (name, bytes) in demux_seeds() {
        fs::write(demux.join(name), bytes)?;
    }
    println!("seeds written to {}", root.display());
    Ok(())
}

/// Hand-made datagrams with the right conv, sequence numbers near `sn`.
fn crafted(sn: u32) -> Vec<Vec<u8>> {
    let seg = |cmd, frg, wnd, ts: u32, s: u32, una: u32, data: &[u8]| {
        let h = Header {
            conv: CONV,
            cmd,
            frg,
            wnd,
            ts: Timestamp::new(ts),
            sn: Seq::new(s),
            una: Seq::new(una),
            len: data.len() as u32,
        };
        let mut b = vec![0u8; Header::LEN];
        h.emit(&mut b);
        b.extend_from_slice(data);
        b
    };
    let mut two = seg(CMD_WASK, 0, 128, 0, 0, sn, &[]);
    two.extend(seg(CMD_WINS, 0, 0, 0, 0, sn, &[]));
    vec![
        two,
        seg(CMD_ACK, 0, 128, 0x8000_0000, sn, sn, &[]),
        seg(
            CMD_ACK,
            0,
            128,
            1,
            sn.wrapping_add(1),
            sn.wrapping_add(5),
            &[],
        ),
        seg(CMD_PUSH, 1, 128, 0, sn.wrapping_add(3), sn, b"first of two"),
        seg(CMD_PUSH, 0, 128, 0, sn.wrapping_add(200), sn, b"far ahead"),
        seg(CMD_WINS, 0, 1, 0, 0, sn, &[]),
    ]
}

/// For each kind of `listener_demux` input, the first of a deterministic
/// series of pseudo-random byte strings that decodes into one.
fn demux_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let confirm = |ops: &[DemuxOp]| {
        ops.iter().enumerate().any(|(i, op)| match op {
            DemuxOp::Send {
                sock,
                to_fec: false,
                wrap: None,
                datagram:
                    Datagram::FirstFlight {
                        cut: None,
                        flip: None,
                        ..
                    },
            } => ops[i + 1..].iter().any(
                |o| matches!(o, DemuxOp::Reply { sock: s, to_fec: false } if s % 6 == sock % 6),
            ),
            _ => false,
        })
    };
    let burst = |ops: &[DemuxOp]| ops.iter().any(|o| matches!(o, DemuxOp::Burst { .. }));
    let fec = |ops: &[DemuxOp]| {
        ops.iter()
            .filter(|o| {
                matches!(
                    o,
                    DemuxOp::Send {
                        to_fec: true,
                        wrap: Some(_),
                        ..
                    }
                )
            })
            .count()
            >= 2
    };
    let long = |ops: &[DemuxOp]| ops.len() >= 24;
    type Wanted<'a> = &'a dyn Fn(&[DemuxOp]) -> bool;
    let kinds: [(&str, Wanted); 4] = [
        ("confirm", &confirm),
        ("burst", &burst),
        ("fec", &fec),
        ("long", &long),
    ];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut seeds = Vec::new();
    for (name, wanted) in kinds {
        let len = if name == "long" { 2048 } else { 256 };
        loop {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x >> 32) as u8
                })
                .collect();
            // As libfuzzer-sys decodes it.
            let Ok(input) = DemuxInput::arbitrary_take_rest(Unstructured::new(&bytes)) else {
                continue;
            };
            if wanted(&input.ops) {
                seeds.push((name, bytes));
                break;
            }
        }
    }
    seeds
}
