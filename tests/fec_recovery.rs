//! Recovery: every loss pattern of a group, exhaustively for the presets.
#![cfg(feature = "fec")]

use kcp_rs::fec::{FecConfig, FecDecoder, FecEncoder};

/// Datagram `i` of a test stream: lengths vary so that padding matters.
fn datagram(i: usize) -> Vec<u8> {
    let len = 24 + (i * 53) % 300;
    (0..len).map(|j| (i * 7 + j * 13) as u8).collect()
}

/// The packets of one group starting at datagram `first`.
fn group(cfg: FecConfig, enc: &mut FecEncoder, first: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for i in first..first + cfg.data_shards {
        enc.encode(&datagram(i), |p| out.push(p.to_vec())).unwrap();
    }
    assert_eq!(out.len(), cfg.group_len());
    out
}

/// Feeds the packets kept by `mask` (bit set = lost) in the given order and
/// returns what was delivered.
fn deliver(cfg: FecConfig, packets: &[Vec<u8>], lost: u32, order: &[usize]) -> Vec<Vec<u8>> {
    let mut dec = FecDecoder::new(cfg).unwrap();
    let mut got = Vec::new();
    for &i in order {
        if lost & (1 << i) == 0 {
            dec.decode(0, &packets[i], |d| got.push(d.to_vec()))
                .unwrap();
        }
    }
    got
}

fn sorted(mut v: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    v.sort();
    v
}

fn check_every_pattern(cfg: FecConfig) {
    let (k, m, n) = (cfg.data_shards, cfg.parity_shards, cfg.group_len());
    let mut enc = FecEncoder::new(cfg).unwrap();
    // The second group, so that the encoder's buffers hold stale bytes.
    let _ = group(cfg, &mut enc, 0);
    let packets = group(cfg, &mut enc, k);
    let all: Vec<Vec<u8>> = (k..2 * k).map(datagram).collect();
    let forward: Vec<usize> = (0..n).collect();
    let backward: Vec<usize> = (0..n).rev().collect();
    let mut recovered_patterns = 0;
    for lost in 0u32..(1 << n) {
        let lost_count = lost.count_ones() as usize;
        let arrived: Vec<Vec<u8>> = (0..k)
            .filter(|i| lost & (1 << i) == 0)
            .map(|i| all[i].clone())
            .collect();
        for order in [&forward, &backward] {
            let got = deliver(cfg, &packets, lost, order);
            if lost_count <= m {
                assert_eq!(
                    sorted(got),
                    sorted(all.clone()),
                    "{k}+{m}: loss pattern {lost:#b} not recovered exactly"
                );
            } else {
                assert_eq!(
                    sorted(got),
                    sorted(arrived.clone()),
                    "{k}+{m}: loss pattern {lost:#b} must deliver what arrived, once"
                );
            }
        }
        if lost_count <= m && lost & ((1 << k) - 1) != 0 {
            recovered_patterns += 1;
        }
    }
    assert!(recovered_patterns > 0);
}

#[test]
fn every_pattern_low_latency() {
    check_every_pattern(FecConfig::low_latency());
}

#[test]
fn every_pattern_balanced() {
    check_every_pattern(FecConfig::balanced());
}

#[test]
fn every_pattern_high_protection() {
    check_every_pattern(FecConfig::high_protection());
}

#[test]
fn every_pattern_bandwidth_efficient() {
    check_every_pattern(FecConfig::bandwidth_efficient());
}

#[test]
fn data_is_delivered_before_its_group_completes() {
    let cfg = FecConfig::high_protection();
    let mut enc = FecEncoder::new(cfg).unwrap();
    let packets = group(cfg, &mut enc, 0);
    let mut dec = FecDecoder::new(cfg).unwrap();
    for (i, p) in packets[..cfg.data_shards].iter().enumerate() {
        let mut got = Vec::new();
        dec.decode(0, p, |d| got.push(d.to_vec())).unwrap();
        assert_eq!(got, [datagram(i)], "data packet {i} held back");
    }
}

#[test]
fn a_group_closed_early_recovers_its_real_data() {
    let cfg = FecConfig::balanced(); // 4 + 2
    let mut enc = FecEncoder::new(cfg).unwrap();
    let mut packets = Vec::new();
    enc.encode(&datagram(0), |p| packets.push(p.to_vec()))
        .unwrap();
    assert_eq!(enc.flush_group(|p| packets.push(p.to_vec())), 3);
    assert_eq!(packets.len(), 6);
    // Lose the only real data packet and one empty one.
    for lost in [0b000011u32, 0b001001, 0b100001] {
        let order: Vec<usize> = (0..6).collect();
        let got = deliver(cfg, &packets, lost, &order);
        assert_eq!(got, [datagram(0)], "pattern {lost:#b}");
    }
}

/// Groups closed after `j` datagrams, every loss pattern of up to `m + 2`
/// packets, both orders: the
/// decoder holds the shards that arrived plus, once any empty packet
/// arrived, every empty position (each names the group's first), and
/// rebuilds all `j` datagrams when that makes `k` shards, each delivered
/// once; otherwise exactly the datagrams that arrived.
#[test]
fn every_loss_pattern_of_groups_closed_early() {
    for cfg in [
        FecConfig::low_latency(),
        FecConfig::balanced(),
        FecConfig::high_protection(),
        FecConfig::bandwidth_efficient(),
    ] {
        let (k, n) = (cfg.data_shards, cfg.group_len());
        for j in 1..k {
            let mut enc = FecEncoder::new(cfg).unwrap();
            let mut packets = Vec::new();
            for i in 0..j {
                enc.encode(&datagram(i), |p| packets.push(p.to_vec()))
                    .unwrap();
            }
            assert_eq!(enc.flush_group(|p| packets.push(p.to_vec())), k - j);
            assert_eq!(packets.len(), n);
            let forward: Vec<usize> = (0..n).collect();
            let backward: Vec<usize> = (0..n).rev().collect();
            // Up to m + 2 losses: every pattern that recovers, and enough
            // that do not (more would only take longer).
            let patterns =
                (0u32..(1 << n)).filter(|l| l.count_ones() as usize <= cfg.parity_shards + 2);
            for lost in patterns {
                let arrived = |i: usize| lost & (1 << i) == 0;
                let empty_seen = (j..k).any(arrived);
                let held = (0..n)
                    .filter(|&i| arrived(i) || (empty_seen && (j..k).contains(&i)))
                    .count();
                let expected: Vec<Vec<u8>> = if held >= k {
                    (0..j).map(datagram).collect()
                } else {
                    (0..j).filter(|&i| arrived(i)).map(datagram).collect()
                };
                for order in [&forward, &backward] {
                    let got = deliver(cfg, &packets, lost, order);
                    assert_eq!(
                        sorted(got),
                        expected,
                        "{k}+{} closed after {j}, lost {lost:#b}",
                        cfg.parity_shards
                    );
                }
            }
        }
    }
}

#[test]
fn recovery_across_the_seqid_wrap() {
    let cfg = FecConfig::new(10, 3).unwrap();
    let n = cfg.group_len() as u32;
    let wrap = u32::MAX / n * n;
    let mut enc = FecEncoder::with_first_seqid(cfg, wrap - 2 * n).unwrap();
    let mut dec = FecDecoder::new(cfg).unwrap();
    let mut got = Vec::new();
    let mut seqids = Vec::new();
    let mut sent = 0;
    for i in 0..60 {
        let mut packets = Vec::new();
        enc.encode(&datagram(i), |p| packets.push(p.to_vec()))
            .unwrap();
        for p in packets {
            seqids.push(u32::from_le_bytes([p[0], p[1], p[2], p[3]]));
            sent += 1;
            // Lose the first and fourth data packet of every group.
            if sent % 13 == 1 || sent % 13 == 4 {
                continue;
            }
            dec.decode(0, &p, |d| got.push(d.to_vec())).unwrap();
        }
    }
    assert!(seqids.contains(&(wrap - 1)) && seqids.contains(&0));
    assert_eq!(sorted(got), sorted((0..60).map(datagram).collect()));
    assert_eq!(dec.stats().recovered, 12);
}

#[test]
fn reordered_groups_within_the_window_still_recover() {
    let cfg = FecConfig::balanced();
    let mut enc = FecEncoder::new(cfg).unwrap();
    let g0 = group(cfg, &mut enc, 0);
    let g1 = group(cfg, &mut enc, 4);
    let g2 = group(cfg, &mut enc, 8);
    let mut dec = FecDecoder::new(cfg).unwrap();
    let mut got = Vec::new();
    // Interleave three groups (rx_groups = 3), losing data 0 of each.
    for i in 1..6 {
        for g in [&g2, &g0, &g1] {
            dec.decode(0, &g[i], |d| got.push(d.to_vec())).unwrap();
        }
    }
    assert_eq!(sorted(got), sorted((0..12).map(datagram).collect()));
    assert_eq!(dec.stats().recovered, 3);
}
