//! Zero allocations per packet: steady-state encode and lossless decode,
//! counted by a global allocator. Also measures what a recovery costs.
//!
//! Counting is per thread, so tests running in parallel do not disturb
//! each other. The allocator is the only `unsafe` in the FEC work: a
//! `GlobalAlloc` impl cannot be written without it, and it only forwards
//! to `System`.
#![cfg(feature = "fec")]

use kcp_rs::fec::{FecConfig, FecDecoder, FecEncoder};

#[path = "support/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::Counting;

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by `f` on this thread.
fn allocations(f: impl FnOnce()) -> u64 {
    let before = counting_alloc::allocations();
    f();
    counting_alloc::allocations() - before
}

const PRESETS: [fn() -> FecConfig; 4] = [
    FecConfig::low_latency,
    FecConfig::balanced,
    FecConfig::high_protection,
    FecConfig::bandwidth_efficient,
];

/// A stream of `count` datagrams of 24..1392 bytes, encoded, in a buffer
/// made before counting starts.
fn encoded(cfg: FecConfig, count: usize) -> Vec<Vec<u8>> {
    let mut enc = FecEncoder::new(cfg).unwrap();
    let mut out = Vec::new();
    for i in 0..count {
        enc.encode(&datagram(i), |p| out.push(p.to_vec())).unwrap();
    }
    out
}

fn datagram(i: usize) -> Vec<u8> {
    vec![i as u8; 24 + (i * 389) % 1368]
}

#[test]
fn steady_state_encode_allocates_nothing() {
    for preset in PRESETS {
        let cfg = preset();
        let inputs: Vec<Vec<u8>> = (0..2000).map(datagram).collect();
        let mut enc = FecEncoder::new(cfg).unwrap();
        let mut bytes = 0usize;
        enc.encode(&inputs[0], |p| bytes += p.len()).unwrap();
        let n = allocations(|| {
            for d in &inputs {
                enc.encode(d, |p| bytes += p.len()).unwrap();
            }
            // Closing groups early and polling allocate nothing either.
            enc.encode(&inputs[1], |p| bytes += p.len()).unwrap();
            enc.poll(0, 200, |p| bytes += p.len());
            enc.poll(100, 200, |p| bytes += p.len());
            enc.flush_group(|p| bytes += p.len());
        });
        assert!(bytes > 0);
        assert_eq!(n, 0, "{cfg:?}: {n} allocations while encoding");
    }
}

#[test]
fn lossless_decode_allocates_nothing() {
    for preset in PRESETS {
        let cfg = preset();
        let packets = encoded(cfg, 3000);
        let mut dec = FecDecoder::new(cfg).unwrap();
        let mut delivered = 0usize;
        let n = allocations(|| {
            for p in &packets {
                dec.decode(0, p, |_| delivered += 1).unwrap();
            }
        });
        assert_eq!(delivered, 3000);
        assert_eq!(n, 0, "{cfg:?}: {n} allocations while decoding");
    }
}

/// What recovery costs: `reed-solomon-erasure` inverts a decode matrix the
/// first time it meets a loss pattern and caches it (LRU, 254 entries);
/// a recovery with a cached pattern allocates nothing.
#[test]
fn recovery_allocates_only_for_new_loss_patterns() {
    for preset in PRESETS {
        let cfg = preset();
        let n = cfg.group_len();
        let packets = encoded(cfg, cfg.data_shards * 200);
        let mut dec = FecDecoder::new(cfg).unwrap();
        let feed = |dec: &mut FecDecoder, groups: std::ops::Range<usize>| {
            for (i, p) in packets.iter().enumerate() {
                // Lose the first data packet of the selected groups.
                if !groups.contains(&(i / n)) || i % n == 0 {
                    continue;
                }
                dec.decode(0, p, |_| {}).unwrap();
            }
        };
        let cold = allocations(|| feed(&mut dec, 0..1));
        let warm = allocations(|| feed(&mut dec, 1..200));
        assert_eq!(dec.stats().recovered, 200);
        eprintln!(
            "{}+{}: first recovery of a loss pattern {cold} allocations, next 199 recoveries {warm}",
            cfg.data_shards, cfg.parity_shards
        );
        assert!(cold > 0, "the counter must see the codec's allocations");
        assert_eq!(warm, 0);
    }
}

/// Groups closed early after one datagram, with the group's last empty
/// packet lost (held from the first one) or, in every other group, the
/// datagram, the first empty packet and the last parity lost (recovered
/// only because the empty positions are filled in): after the first
/// recovery, nothing.
#[test]
fn early_closed_groups_decode_without_allocating() {
    for preset in PRESETS {
        let cfg = preset();
        let (k, n) = (cfg.data_shards, cfg.group_len());
        if k < 3 {
            continue; // needs two empty packets per group
        }
        let mut enc = FecEncoder::new(cfg).unwrap();
        let mut packets = Vec::new();
        for i in 0..200 {
            enc.encode(&datagram(i), |p| packets.push(p.to_vec()))
                .unwrap();
            enc.flush_group(|p| packets.push(p.to_vec()));
        }
        let mut dec = FecDecoder::new(cfg).unwrap();
        let lost = |i: usize| {
            let (group, pos) = (i / n, i % n);
            if group % 2 == 0 {
                pos == k - 1
            } else {
                pos <= 1 || pos == n - 1
            }
        };
        let mut delivered = 0;
        let mut feed = |dec: &mut FecDecoder, groups: std::ops::Range<usize>| {
            for (i, p) in packets.iter().enumerate() {
                if groups.contains(&(i / n)) && !lost(i) {
                    dec.decode(0, p, |_| delivered += 1).unwrap();
                }
            }
        };
        feed(&mut dec, 0..2);
        let warm = allocations(|| feed(&mut dec, 2..200));
        assert_eq!(delivered, 200, "{cfg:?}");
        assert_eq!(dec.stats().recovered, 100);
        assert!(dec.stats().inferred_empty >= 200);
        assert_eq!(warm, 0, "{cfg:?}: {warm} allocations");
    }
}
