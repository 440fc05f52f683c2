//! Two KCP cores over the in-memory lossy link: 2 MB of messages with 10%
//! loss, 20–40 ms of reordering delay and 1% duplicates in each direction,
//! on a virtual clock. Prints what arrived (verified byte for byte), the
//! RTT the sender measured, per-message latency and retransmissions.
//!
//! ```text
//! cargo run --release --example lossy_link
//! ```

use std::time::Instant;

use kcp_rs::sim::{Link, LinkConfig, Pair, Rng};
use kcp_rs::{KcpConfig, KcpError};

const TOTAL_BYTES: usize = 2 * 1024 * 1024;
const STEP_MS: u64 = 5;

/// Byte `j` of message `i`: every message is different and self-checking.
fn byte(i: usize, j: usize) -> u8 {
    (i.wrapping_mul(131) ^ j.wrapping_mul(7)) as u8
}

fn main() -> Result<(), KcpError> {
    let started = Instant::now();
    let cfg = KcpConfig::fast();
    let link = LinkConfig::lossy(0.10);
    let mut p = Pair::new(1, cfg, cfg, Link::new(link, 1), Link::new(link, 2), 0)?;

    // Message sizes: 4 bytes (the index) up to 4 segments, 2 MB in all.
    let mut rng = Rng::new(7);
    let mut sizes = Vec::new();
    let mut total = 0;
    while total < TOTAL_BYTES {
        let len = rng.range(4, 4 * cfg.mss() as u64) as usize;
        sizes.push(len);
        total += len;
    }

    let mut sent_at = Vec::with_capacity(sizes.len());
    let mut latency = Vec::with_capacity(sizes.len());
    let mut msg = vec![0u8; cfg.max_message()];
    let mut buf = vec![0u8; cfg.max_message()];
    let (mut delivered_bytes, mut received) = (0usize, 0usize);

    while received < sizes.len() {
        // Offer messages while the send queue takes them.
        while sent_at.len() < sizes.len() {
            let i = sent_at.len();
            let len = sizes[i];
            for (j, b) in msg[..len].iter_mut().enumerate() {
                *b = byte(i, j);
            }
            msg[..4].copy_from_slice(&(i as u32).to_le_bytes());
            match p.a.send(&msg[..len]) {
                Ok(_) => sent_at.push(p.now()),
                Err(KcpError::BufferFull) => break,
                Err(e) => return Err(e),
            }
        }
        p.step(STEP_MS);
        loop {
            match p.b.recv(&mut buf) {
                Ok(n) => {
                    let i = u32::from_le_bytes(buf[..4].try_into().expect("4 bytes")) as usize;
                    assert_eq!(i, received, "out of order");
                    assert_eq!(n, sizes[i], "length of message {i}");
                    assert!(
                        (4..n).all(|j| buf[j] == byte(i, j)),
                        "content of message {i}"
                    );
                    latency.push(p.now() - sent_at[i]);
                    delivered_bytes += n;
                    received += 1;
                }
                Err(KcpError::WouldBlock) => break,
                Err(e) => return Err(e),
            }
        }
    }

    let (min, max) = (
        latency.iter().min().copied().unwrap_or(0),
        latency.iter().max().copied().unwrap_or(0),
    );
    let avg = latency.iter().sum::<u64>() as f64 / latency.len() as f64;
    let s = p.a.stats();
    let (ab, ba) = (p.ab.stats(), p.ba.stats());
    let virtual_s = p.now() as f64 / 1000.0;

    println!("lossy link: 10% loss, 20-40 ms delay with reordering, 1% duplicates, both ways");
    println!(
        "delivered   {delivered_bytes} bytes in {received} messages, in order, content verified"
    );
    println!(
        "virtual     {virtual_s:.2} s ({:.0} KiB/s goodput)",
        delivered_bytes as f64 / 1024.0 / virtual_s
    );
    println!(
        "rtt         {} ms smoothed, rto {} ms",
        p.a.rtt(),
        p.a.rto()
    );
    println!(
        "latency     min {min} / avg {avg:.1} / max {max} ms (send to recv, virtual; includes time queued behind earlier messages)"
    );
    println!(
        "sender      {} segments out: {} timeout retransmits, {} fast retransmits",
        s.out_segments, s.retransmits, s.fast_retransmits
    );
    println!(
        "links       a->b {} sent, {} lost, {} duplicated; b->a {} sent, {} lost",
        ab.sent, ab.dropped, ab.duplicated, ba.sent, ba.dropped
    );
    println!(
        "real time   {:.0} ms",
        started.elapsed().as_secs_f64() * 1000.0
    );
    Ok(())
}
