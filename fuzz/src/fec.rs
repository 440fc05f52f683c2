//! `fec_decode`: a FEC decoder fed genuine packets (lost, reordered,
//! replayed) mixed with mutated and arbitrary ones.
//!
//! Invariants, checked on every packet:
//!
//! - `decode` never panics; when it errs it delivers nothing, when it
//!   succeeds it returns the number of datagrams it delivered;
//! - it never delivers an empty datagram or one longer than
//!   `max_kcp_datagram`, and never holds more than `rx_groups` groups;
//! - until a packet that is not byte for byte a genuine one is accepted,
//!   everything delivered is a datagram the encoder was given.
//!
//! At the end, once every group held has expired: a fresh group that loses
//! up to `m` of its packets delivers each of its `k` datagrams exactly once.

use std::collections::{HashSet, VecDeque};

use arbitrary::Arbitrary;
use kcp_rs::fec::{FecConfig, FecDecoder, FecEncoder};

/// Operations taken from one input at most.
const MAX_OPS: usize = 400;
/// Recent genuine packets kept for replays and mutations.
const HISTORY: usize = 64;

/// One run.
#[derive(Arbitrary, Debug)]
pub struct FecScenario {
    /// Configuration, see [`config`].
    pub config: u8,
    /// The encoder's first seqid (rounded down to a group by the encoder).
    pub first_seqid: u32,
    /// The decoder's clock at the start.
    pub clock: u32,
    /// Which packets of the final fresh group are lost (at most `m`).
    pub final_loss: u64,
    /// What happens.
    pub ops: Vec<FecOp>,
}

/// One step.
#[derive(Arbitrary, Debug)]
pub enum FecOp {
    /// Encodes a datagram of `len` bytes (0 and too long are refused).
    Encode { len: u16 },
    /// Closes the open group with empty data packets.
    Flush,
    /// Decodes the next `n` packets in order.
    Deliver { n: u8 },
    /// Loses the next `n` packets.
    Lose { n: u8 },
    /// Swaps the next two packets.
    Swap,
    /// Decodes a copy of a recent genuine packet.
    Replay { back: u8 },
    /// Decodes a recent genuine packet with its seqid, type or size field
    /// overwritten (`field` 0–2), one byte flipped and its length cut.
    Mutate {
        back: u8,
        field: u8,
        value: u32,
        flip_at: u16,
        flip: u8,
        keep: u16,
    },
    /// Decodes arbitrary bytes.
    Raw { bytes: Vec<u8> },
    /// Moves the clock forward.
    Advance { ms: u16 },
}

/// Presets 2+1, 4+2, 8+4 and 10+2 with kcp-go's limits, and the same with
/// 64-byte packets, one group held and a 1 s expiry.
pub fn config(choice: u8) -> FecConfig {
    let base = match choice % 4 {
        0 => FecConfig::low_latency(),
        1 => FecConfig::balanced(),
        2 => FecConfig::high_protection(),
        _ => FecConfig::bandwidth_efficient(),
    };
    if choice & 4 == 0 {
        return base;
    }
    FecConfig {
        max_packet: 64,
        rx_groups: 1,
        expire_ms: 1000,
        ..base
    }
}

struct Run {
    cfg: FecConfig,
    enc: FecEncoder,
    dec: FecDecoder,
    now: u32,
    wire: VecDeque<Vec<u8>>,
    history: VecDeque<Vec<u8>>,
    genuine_packets: HashSet<Vec<u8>>,
    genuine_data: HashSet<Vec<u8>>,
    next_id: u32,
    tainted: bool,
}

impl Run {
    fn new(cfg: FecConfig, first_seqid: u32, now: u32) -> Run {
        let (Ok(enc), Ok(dec)) = (
            FecEncoder::with_first_seqid(cfg, first_seqid),
            FecDecoder::new(cfg),
        ) else {
            panic!("harness config {cfg:?} refused");
        };
        Run {
            cfg,
            enc,
            dec,
            now,
            wire: VecDeque::new(),
            history: VecDeque::new(),
            genuine_packets: HashSet::new(),
            genuine_data: HashSet::new(),
            next_id: 0,
            tainted: false,
        }
    }

    /// Encodes datagram number `next_id`, `len` bytes long.
    fn encode(&mut self, len: usize) {
        let id = self.next_id;
        let data: Vec<u8> = (0..len)
            .map(|j| (id.wrapping_mul(31).wrapping_add(j as u32 * 7) >> 1) as u8)
            .collect();
        let mut out = Vec::new();
        match self.enc.encode(&data, |p| out.push(p.to_vec())) {
            Ok(()) => {
                assert!(!data.is_empty() && data.len() <= self.cfg.max_kcp_datagram());
                self.next_id += 1;
                self.genuine_data.insert(data);
            }
            Err(_) => assert!(data.is_empty() || data.len() > self.cfg.max_kcp_datagram()),
        }
        self.sent(out);
    }

    fn sent(&mut self, packets: Vec<Vec<u8>>) {
        for p in packets {
            self.genuine_packets.insert(p.clone());
            if self.history.len() == HISTORY {
                self.history.pop_front();
            }
            self.history.push_back(p.clone());
            self.wire.push_back(p);
        }
    }

    /// Decodes one packet, checking the invariants; returns what came out.
    fn decode(&mut self, packet: &[u8]) -> Vec<Vec<u8>> {
        let mut got: Vec<Vec<u8>> = Vec::new();
        let res = self.dec.decode(self.now, packet, |d| got.push(d.to_vec()));
        match res {
            Ok(n) => {
                assert_eq!(n, got.len(), "decode's count differs from its deliveries");
                if !self.genuine_packets.contains(packet) {
                    self.tainted = true;
                }
            }
            Err(e) => assert!(got.is_empty(), "decode erred ({e:?}) but delivered"),
        }
        for d in &got {
            assert!(
                !d.is_empty() && d.len() <= self.cfg.max_kcp_datagram(),
                "delivered a {}-byte datagram",
                d.len()
            );
            if !self.tainted {
                assert!(
                    self.genuine_data.contains(d),
                    "delivered a datagram nobody sent: {d:?}"
                );
            }
        }
        assert!(self.dec.groups_held() <= self.cfg.rx_groups);
        got
    }

    fn recent(&self, back: u8) -> Option<Vec<u8>> {
        let h = &self.history;
        if h.is_empty() {
            return None;
        }
        h.get(h.len() - 1 - back as usize % h.len()).cloned()
    }
}

/// The harness.
///
/// # Panics
/// When an invariant breaks (that is the point).
pub fn run(s: &FecScenario) {
    let cfg = config(s.config);
    let mut r = Run::new(cfg, s.first_seqid, s.clock);
    for op in s.ops.iter().take(MAX_OPS) {
        match op {
            FecOp::Encode { len } => r.encode(*len as usize % (cfg.max_kcp_datagram() + 2)),
            FecOp::Flush => {
                let mut out = Vec::new();
                r.enc.flush_group(|p| out.push(p.to_vec()));
                r.sent(out);
            }
            FecOp::Deliver { n } => {
                for _ in 0..*n {
                    let Some(p) = r.wire.pop_front() else { break };
                    r.decode(&p);
                }
            }
            FecOp::Lose { n } => {
                let n = (*n as usize).min(r.wire.len());
                r.wire.drain(..n);
            }
            FecOp::Swap => {
                if r.wire.len() >= 2 {
                    r.wire.swap(0, 1);
                }
            }
            FecOp::Replay { back } => {
                if let Some(p) = r.recent(*back) {
                    r.decode(&p);
                }
            }
            FecOp::Mutate {
                back,
                field,
                value,
                flip_at,
                flip,
                keep,
            } => {
                if let Some(mut p) = r.recent(*back) {
                    let v = value.to_le_bytes();
                    match field % 3 {
                        0 => p[0..4].copy_from_slice(&v),
                        1 => p[4..6].copy_from_slice(&v[..2]),
                        _ if p.len() >= 8 => p[6..8].copy_from_slice(&v[..2]),
                        _ => {}
                    }
                    let i = *flip_at as usize % p.len();
                    p[i] ^= flip;
                    p.truncate(*keep as usize % (p.len() + 1));
                    r.decode(&p);
                }
            }
            FecOp::Raw { bytes } => {
                r.decode(bytes);
            }
            FecOp::Advance { ms } => r.now = r.now.wrapping_add(*ms as u32),
        }
    }

    // Everything held expires; then a fresh group must come through.
    let mut out = Vec::new();
    r.enc.flush_group(|p| out.push(p.to_vec()));
    r.now = r.now.wrapping_add(cfg.expire_ms).wrapping_add(1);
    r.wire.clear();
    r.tainted = false;
    r.genuine_data.clear();
    let n = cfg.group_len();
    let lengths: Vec<usize> = (0..cfg.data_shards)
        .map(|i| 1 + (i * 37 + s.first_seqid as usize) % cfg.max_kcp_datagram())
        .collect();
    for &len in &lengths {
        r.encode(len);
    }
    let fresh: Vec<Vec<u8>> = r.wire.drain(..).collect();
    assert_eq!(
        fresh.len(),
        n,
        "a full group is k data and m parity packets"
    );
    let mut lost = 0;
    let mut got = Vec::new();
    for (i, p) in fresh.iter().enumerate() {
        if lost < cfg.parity_shards && s.final_loss >> (i % 64) & 1 == 1 {
            lost += 1;
            continue;
        }
        got.extend(r.decode(p));
    }
    let mut want: Vec<Vec<u8>> = r.genuine_data.iter().cloned().collect();
    want.sort();
    got.sort();
    assert_eq!(
        got, want,
        "a fresh group losing {lost} of {n} packets was not delivered exactly once"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(config: u8, ops: Vec<FecOp>) -> FecScenario {
        FecScenario {
            config,
            first_seqid: u32::MAX - 20,
            clock: u32::MAX - 100,
            final_loss: 0b1011,
            ops,
        }
    }

    #[test]
    fn lossy_mutated_runs_recover_in_every_configuration() {
        use FecOp::*;
        for config in 0..8 {
            let ops = vec![
                Encode { len: 40 },
                Encode { len: 300 },
                Encode { len: 1 },
                Lose { n: 1 },
                Deliver { n: 3 },
                Replay { back: 1 },
                Mutate {
                    back: 0,
                    field: 0,
                    value: 7,
                    flip_at: 9,
                    flip: 1,
                    keep: 2000,
                },
                Raw {
                    bytes: vec![0, 0, 0, 0, 0xf2, 0, 1, 2, 3],
                },
                Flush,
                Advance { ms: 500 },
                Swap,
                Deliver { n: 20 },
            ];
            run(&scenario(config, ops));
        }
    }

    #[test]
    #[should_panic(expected = "nobody sent")]
    fn a_delivery_that_was_never_encoded_is_caught() {
        let cfg = config(0);
        let mut r = Run::new(cfg, 0, 0);
        // A well-formed data packet the harness believes genuine, carrying
        // a datagram the encoder was never given.
        let packet = [0, 0, 0, 0, 0xf1, 0, 5, 0, b'a', b'b', b'c'];
        r.genuine_packets.insert(packet.to_vec());
        r.decode(&packet);
    }
}
