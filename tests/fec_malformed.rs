//! Malformed and hostile input never panics, never grows the decoder, and
//! is refused with an error value.
#![cfg(feature = "fec")]

use kcp_rs::fec::framing::{Packet, FEC_OVERHEAD, TYPE_DATA, TYPE_PARITY};
use kcp_rs::fec::{FecConfig, FecDecoder, FecEncoder, FecError};
use proptest::prelude::*;

fn valid_stream(cfg: FecConfig, count: usize) -> Vec<Vec<u8>> {
    let mut enc = FecEncoder::new(cfg).unwrap();
    let mut out = Vec::new();
    for i in 0..count {
        enc.encode(&vec![i as u8; 24 + i * 11 % 200], |p| out.push(p.to_vec()))
            .unwrap();
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(
        packets in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..1600), 1..40),
        now in any::<u32>(),
    ) {
        let cfg = FecConfig::balanced();
        let mut dec = FecDecoder::new(cfg).unwrap();
        for p in &packets {
            let _ = Packet::new_checked(&p[..]);
            let mut delivered = 0usize;
            let _ = dec.decode(now, p, |d| {
                assert!(d.len() <= cfg.max_kcp_datagram());
                delivered += 1;
            });
            prop_assert!(dec.groups_held() <= cfg.rx_groups);
        }
    }

    #[test]
    fn plausible_headers_with_random_bodies_never_panic(
        heads in proptest::collection::vec((any::<u32>(), prop_oneof![Just(TYPE_DATA), Just(TYPE_PARITY)], any::<u16>(), 0usize..300), 1..80),
    ) {
        let cfg = FecConfig::low_latency();
        let mut dec = FecDecoder::new(cfg).unwrap();
        for (seqid, kind, size, body) in heads {
            let mut p = Vec::with_capacity(FEC_OVERHEAD + body);
            p.extend_from_slice(&(seqid % 12).to_le_bytes());
            p.extend_from_slice(&kind.to_le_bytes());
            p.extend_from_slice(&size.to_le_bytes());
            p.extend((0..body).map(|i| (i as u8).wrapping_mul(31)));
            let _ = dec.decode(0, &p, |_| {});
            prop_assert!(dec.groups_held() <= cfg.rx_groups);
        }
    }

    #[test]
    fn corrupted_valid_streams_never_panic(
        flips in proptest::collection::vec((0usize..60, 0usize..400, any::<u8>()), 0..30),
        truncs in proptest::collection::vec((0usize..60, 0usize..400), 0..10),
    ) {
        let cfg = FecConfig::high_protection();
        let mut packets = valid_stream(cfg, 40);
        for (i, at, x) in flips {
            let p = &mut packets[i % 60];
            let at = at % p.len();
            p[at] ^= x;
        }
        for (i, len) in truncs {
            let p = &mut packets[i % 60];
            p.truncate(len.min(p.len()));
        }
        let mut dec = FecDecoder::new(cfg).unwrap();
        for p in &packets {
            let _ = dec.decode(0, p, |_| {});
        }
        prop_assert!(dec.groups_held() <= cfg.rx_groups);
    }
}

#[test]
fn a_flood_of_parity_and_random_seqids_stays_bounded() {
    let cfg = FecConfig::balanced();
    let mut dec = FecDecoder::new(cfg).unwrap();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..100_000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let seqid = (seed as u32) / 6 * 6 + 4; // always a parity position
        let mut p = vec![0u8; 6 + 100];
        p[..4].copy_from_slice(&seqid.to_le_bytes());
        p[4] = 0xF2;
        dec.decode(0, &p, |_| panic!("parity alone delivered data"))
            .unwrap();
        assert!(dec.groups_held() <= cfg.rx_groups);
    }
    // Real traffic still gets through afterwards.
    let mut got = 0;
    for p in valid_stream(cfg, 8) {
        let _ = dec.decode(0, &p, |_| got += 1);
    }
    assert_eq!(got, 8);
}

#[test]
fn errors_name_the_problem() {
    let cfg = FecConfig::balanced();
    let mut dec = FecDecoder::new(cfg).unwrap();
    let cases: [(&[u8], FecError); 4] = [
        (&[1, 2, 3], FecError::Truncated { len: 3 }),
        (&[0, 0, 0, 0, 0xF1, 0], FecError::Truncated { len: 6 }),
        (&[0, 0, 0, 0, 0x51, 0, 2, 0], FecError::UnknownType(0x51)),
        (
            &[0, 0, 0, 0, 0xF1, 0, 9, 0, 1],
            FecError::BadSize {
                size: 9,
                available: 3,
            },
        ),
    ];
    for (p, e) in cases {
        assert_eq!(dec.decode(0, p, |_| {}), Err(e));
        assert!(!e.to_string().is_empty());
    }
    assert_eq!(dec.stats().malformed, 4);
}
