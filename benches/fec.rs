//! FEC throughput: our encoder and recovery for each preset with 1400-byte
//! shards, beside `reed-solomon-erasure` doing the same coding raw, plus
//! kcp-go's own benchmark shape (10+3, 1500-byte packets) for comparison
//! with `go test -bench FEC` on kcp-go. Results and the command are in
//! docs/fec.md.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use kcp_rs::fec::{FecConfig, FecDecoder, FecEncoder};
use reed_solomon_erasure::galois_8::ReedSolomon;

/// Shard length: the size field plus a 1398-byte KCP datagram.
const SHARD: usize = 1400;
const DATAGRAM: usize = SHARD - 2;

fn presets() -> [(&'static str, FecConfig); 4] {
    [
        ("2+1", FecConfig::low_latency()),
        ("4+2", FecConfig::balanced()),
        ("8+4", FecConfig::high_protection()),
        ("10+2", FecConfig::bandwidth_efficient()),
    ]
}

fn datagram(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i * 31 + j * 7) as u8).collect()
}

/// One encoded group whose first `lose` data packets are dropped.
fn lossy_group(cfg: FecConfig, lose: usize) -> Vec<Vec<u8>> {
    let mut enc = FecEncoder::new(cfg).unwrap();
    let mut out = Vec::new();
    for i in 0..cfg.data_shards {
        enc.encode(&datagram(i, DATAGRAM), |p| out.push(p.to_vec()))
            .unwrap();
    }
    out.drain(..lose);
    out
}

/// Feeds `group` to `dec` as group number `round`, rewriting the seqids so
/// every round is a new group.
fn feed(dec: &mut FecDecoder, group: &mut [Vec<u8>], n: usize, lost: usize, round: u32) -> usize {
    let base = round.wrapping_mul(n as u32) % (u32::MAX / n as u32 * n as u32);
    let mut delivered = 0;
    for (i, p) in group.iter_mut().enumerate() {
        p[..4].copy_from_slice(&(base + (lost + i) as u32).to_le_bytes());
        delivered += dec
            .decode(0, p, |d| {
                black_box(d);
            })
            .unwrap();
    }
    delivered
}

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("fec_encode_group");
    for (name, cfg) in presets() {
        let k = cfg.data_shards;
        g.throughput(Throughput::Bytes((k * DATAGRAM) as u64));
        let inputs: Vec<Vec<u8>> = (0..k).map(|i| datagram(i, DATAGRAM)).collect();
        let mut enc = FecEncoder::new(cfg).unwrap();
        g.bench_function(BenchmarkId::new("ours", name), |b| {
            b.iter(|| {
                let mut bytes = 0;
                for d in &inputs {
                    enc.encode(d, |p| bytes += p.len()).unwrap();
                }
                black_box(bytes)
            })
        });
        let rs = ReedSolomon::new(k, cfg.parity_shards).unwrap();
        let data: Vec<Vec<u8>> = (0..k).map(|i| datagram(i, SHARD)).collect();
        let mut parity = vec![vec![0u8; SHARD]; cfg.parity_shards];
        g.bench_function(BenchmarkId::new("raw_rs", name), |b| {
            b.iter(|| {
                rs.encode_sep(&data, &mut parity).unwrap();
                black_box(&parity);
            })
        });
    }
    g.finish();
}

fn recover(c: &mut Criterion) {
    let mut g = c.benchmark_group("fec_recover_group");
    for (name, cfg) in presets() {
        let (k, m, n) = (cfg.data_shards, cfg.parity_shards, cfg.group_len());
        g.throughput(Throughput::Bytes((k * DATAGRAM) as u64));
        // Worst case: m data shards lost, rebuilt from all m parity shards.
        let mut group = lossy_group(cfg, m);
        let mut dec = FecDecoder::new(cfg).unwrap();
        let mut round = 0u32;
        g.bench_function(BenchmarkId::new("ours", name), |b| {
            b.iter(|| {
                round = round.wrapping_add(1);
                let delivered = feed(&mut dec, &mut group, n, m, round);
                assert_eq!(delivered, k);
            })
        });
        let rs = ReedSolomon::new(k, m).unwrap();
        let mut shards: Vec<Vec<u8>> = (0..n).map(|i| datagram(i, SHARD)).collect();
        {
            let (data, parity) = shards.split_at_mut(k);
            rs.encode_sep(data, parity).unwrap();
        }
        g.bench_function(BenchmarkId::new("raw_rs", name), |b| {
            b.iter(|| {
                let mut views: Vec<(&mut [u8], bool)> = shards
                    .iter_mut()
                    .enumerate()
                    .map(|(i, s)| (&mut s[..], i >= m))
                    .collect();
                rs.reconstruct_data(&mut views).unwrap();
                black_box(&views);
            })
        });
        // Lossless: what a receiver pays per group when nothing is lost.
        let mut whole = lossy_group(cfg, 0);
        let mut dec = FecDecoder::new(cfg).unwrap();
        g.bench_function(BenchmarkId::new("ours_lossless", name), |b| {
            b.iter(|| {
                round = round.wrapping_add(1);
                feed(&mut dec, &mut whole, n, 0, round)
            })
        });
    }
    g.finish();
}

/// kcp-go's `BenchmarkFECEncode` / `BenchmarkFECDecode` shape: 10+3,
/// 1500-byte packets, per packet; the decoder loses one packet in 13.
fn kcp_go_shape(c: &mut Criterion) {
    let cfg = FecConfig::new(10, 3).unwrap();
    let mut g = c.benchmark_group("fec_per_packet_10+3_1500B");
    g.throughput(Throughput::Bytes(1500));
    let input = datagram(0, 1500 - 8);
    let mut enc = FecEncoder::new(cfg).unwrap();
    g.bench_function("encode", |b| {
        b.iter(|| {
            let mut bytes = 0;
            enc.encode(&input, |p| bytes += p.len()).unwrap();
            black_box(bytes)
        })
    });
    // A long stream with one loss per group at varying positions.
    let mut enc = FecEncoder::new(cfg).unwrap();
    let mut packets = Vec::new();
    for i in 0..10 * 1000 {
        enc.encode(&datagram(i, 1500 - 8), |p| packets.push(p.to_vec()))
            .unwrap();
    }
    let kept: Vec<Vec<u8>> = packets
        .into_iter()
        .enumerate()
        .filter(|(i, _)| i % 13 != (i / 13) % 13)
        .map(|(_, p)| p)
        .collect();
    let mut dec = FecDecoder::new(cfg).unwrap();
    let mut at = 0usize;
    let mut lap = 0u32;
    g.bench_function("decode_1_in_13_lost", |b| {
        b.iter(|| {
            if at == kept.len() {
                // Start the stream over as new groups.
                at = 0;
                lap += 1;
                dec = FecDecoder::new(cfg).unwrap();
            }
            let p = &kept[at];
            at += 1;
            dec.decode(lap, p, |d| {
                black_box(d);
            })
            .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, encode, recover, kcp_go_shape);
criterion_main!(benches);
