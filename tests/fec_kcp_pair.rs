//! End to end: two `Kcp` sessions joined through FEC over a lossy link.
#![cfg(feature = "fec")]

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use kcp_rs::fec::{FecConfig, FecDecoder, FecEncoder};
use kcp_rs::{Kcp, KcpConfig, KcpError, KcpResult};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

type Wire = Rc<RefCell<VecDeque<Vec<u8>>>>;
type Output = Box<dyn FnMut(&[u8]) -> KcpResult<usize>>;

struct Side {
    kcp: Kcp<Output>,
    enc: Rc<RefCell<FecEncoder>>,
    dec: FecDecoder,
    out: Wire,
}

fn side(fec: FecConfig, cfg: KcpConfig) -> Side {
    let out: Wire = Rc::default();
    let enc = Rc::new(RefCell::new(FecEncoder::new(fec).unwrap()));
    let (o, e) = (out.clone(), enc.clone());
    let output: Output = Box::new(move |d: &[u8]| {
        e.borrow_mut()
            .encode(d, |p| o.borrow_mut().push_back(p.to_vec()))
            .map_err(|_| KcpError::OutputFailed)?;
        Ok(d.len())
    });
    Side {
        kcp: Kcp::with_config(9, output, cfg).unwrap(),
        enc,
        dec: FecDecoder::new(fec).unwrap(),
        out,
    }
}

fn message(i: usize) -> Vec<u8> {
    (0..1 + (i * 211) % 3000).map(|j| (i + j) as u8).collect()
}

/// Sends `count` messages each way at `loss`; returns (ticks, recovered).
fn run(fec: FecConfig, loss: f64, count: usize, seed: u64) -> (u32, u64) {
    let cfg = KcpConfig {
        mtu: FecConfig::kcp_mtu(1400),
        ..KcpConfig::fast()
    };
    let mut a = side(fec, cfg);
    let mut b = side(fec, cfg);
    let mut rng = SmallRng::seed_from_u64(seed);
    let (mut next_a, mut next_b) = (0, 0);
    let (mut got_a, mut got_b) = (Vec::new(), Vec::new());
    let mut buf = vec![0u8; 1 << 16];
    let mut now = 0u32;
    while got_a.len() < count || got_b.len() < count {
        assert!(
            now < 120_000,
            "stalled: {} and {} of {count}",
            got_a.len(),
            got_b.len()
        );
        for (s, next) in [(&mut a, &mut next_a), (&mut b, &mut next_b)] {
            while *next < count && s.kcp.send(&message(*next)).is_ok() {
                *next += 1;
            }
            s.kcp.update(now);
            let rto = s.kcp.rto();
            let out = s.out.clone();
            s.enc
                .borrow_mut()
                .poll(now, rto, |p| out.borrow_mut().push_back(p.to_vec()));
        }
        let (a_out, b_out) = (a.out.clone(), b.out.clone());
        for (from, to, got) in [(a_out, &mut b, &mut got_b), (b_out, &mut a, &mut got_a)] {
            let packets: Vec<Vec<u8>> = from.borrow_mut().drain(..).collect();
            for p in packets {
                if rng.gen_bool(loss) {
                    continue;
                }
                let kcp = &mut to.kcp;
                to.dec
                    .decode(now, &p, |d| {
                        let _ = kcp.input(d);
                    })
                    .unwrap();
            }
            while let Ok(n) = to.kcp.recv(&mut buf) {
                got.push(buf[..n].to_vec());
            }
        }
        now += 10;
    }
    for got in [&got_a, &got_b] {
        assert_eq!(got.len(), count);
        for (i, m) in got.iter().enumerate() {
            assert!(*m == message(i), "message {i} differs");
        }
    }
    (now, a.dec.stats().recovered + b.dec.stats().recovered)
}

#[test]
fn everything_arrives_at_20_percent_loss() {
    for fec in [
        FecConfig::low_latency(),
        FecConfig::balanced(),
        FecConfig::high_protection(),
        FecConfig::bandwidth_efficient(),
    ] {
        let (ms, recovered) = run(fec, 0.20, 300, 7);
        eprintln!(
            "{}+{} at 20% loss: 300 messages each way in {ms} virtual ms, {recovered} recovered by FEC",
            fec.data_shards, fec.parity_shards
        );
        assert!(recovered > 0);
    }
}

#[test]
fn lossless_link_needs_no_recovery() {
    let (_, recovered) = run(FecConfig::balanced(), 0.0, 100, 1);
    assert_eq!(recovered, 0);
}
