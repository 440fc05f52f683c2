//! A session that carried a burst gives its burst-sized buffers back once it
//! has needed little for a second, whether it went quiet or went on with
//! small messages: with 1,024-segment windows KCP's payload blocks alone
//! reach ~1.4 MB each way, which such a session must not keep for the rest
//! of its life. Afterwards the session still works, and a session that
//! never grew past a few blocks is left alone.
#![cfg(feature = "tokio")]

use std::time::Duration;

use kcp_rs::net::{KcpListener, KcpStream, SessionConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BURST: usize = 4 << 20;
/// The session layer's trim threshold: growth over a new session's
/// footprint below which nothing is given back (`TRIM_GROWTH` in
/// `src/net/endpoint.rs`).
const TRIM_GROWTH: usize = 4 * 64 * 1024;

#[path = "support/bulk_config.rs"]
mod bulk_config;

/// The bulk configuration with a small receive queue, so that a reader
/// that stops reading closes the window within 64 KiB plus KCP's own
/// receive window (see [`burst`]).
fn config() -> SessionConfig {
    SessionConfig {
        recv_queue_limit: 64 << 10,
        ..bulk_config::bulk_config()
    }
}

/// A client connected to `listener` and the session accepted for it.
async fn connected(listener: &KcpListener) -> (KcpStream, KcpStream) {
    let addr = listener.local_addr().unwrap();
    let mut c = KcpStream::connect(addr, config()).await.unwrap();
    c.write_all(b"x").await.unwrap();
    let (mut s, _) = listener.accept().await.unwrap();
    s.read_exact(&mut [0u8; 1]).await.unwrap();
    (c, s)
}

fn pattern(len: usize, seed: usize) -> Vec<u8> {
    (0..len).map(|i| ((i + seed) % 251) as u8).collect()
}

/// Writes `data` on `from`, reads it whole on `to` and compares.
async fn carry(from: &mut KcpStream, to: &mut KcpStream, data: &[u8]) {
    let mut got = vec![0u8; data.len()];
    let (w, r) = tokio::join!(from.write_all(data), to.read_exact(&mut got));
    w.unwrap();
    r.unwrap();
    assert!(got == data, "bytes differ");
}

/// Writes `data` on `from` while `to` reads nothing until its own payload
/// blocks have grown by a window's worth, then reads it whole and
/// compares. How many segments a session holds at once in a transfer that
/// reads as it goes depends on timing (on a quick loopback sometimes only
/// a few dozen); a reader that stops closes the receive window, so the
/// sender queues until KCP is full and the receiver holds a whole window.
async fn burst(from: &mut KcpStream, to: &mut KcpStream, data: &[u8], small_held: usize) {
    let mut got = vec![0u8; data.len()];
    let grown = |s: &KcpStream| s.stats().core_memory_bytes > small_held + 1_000_000;
    let write = from.write_all(data);
    let read = async {
        // `from` is borrowed by the write; the stats of the receiving side
        // grow as well (its whole window queued), and are what it can see.
        let full = eventually(Duration::from_secs(10), || grown(to)).await;
        (full, to.read_exact(&mut got).await)
    };
    let (w, (full, r)) = tokio::join!(write, read);
    w.unwrap();
    r.unwrap();
    assert!(full, "the receive window never filled");
    assert!(got == data, "bytes differ");
}

/// Polls `what` every 50 ms until it holds, for at most `within`.
async fn eventually(within: Duration, mut what: impl FnMut() -> bool) -> bool {
    let end = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < end {
        if what() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    what()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_session_gives_its_burst_buffers_back() {
    let listener = KcpListener::bind("127.0.0.1:0", config()).await.unwrap();

    // A small exchange: what a session that never carried a burst holds.
    let (small_c, _small_s) = connected(&listener).await;
    let small_held = small_c.stats().core_memory_bytes;
    assert!(small_held > 0, "stats publish the footprint");

    let (mut c, mut s) = connected(&listener).await;
    burst(&mut c, &mut s, &pattern(BURST, 1), small_held).await;

    // Right after the burst the sender holds far more than the small
    // session. (How much the receiver's pool grows depends on how many
    // datagrams a receive call batches: with `batch-io` about as much,
    // without it far less.)
    let held = (c.stats().core_memory_bytes, s.stats().core_memory_bytes);
    assert!(
        held.0 > small_held + 500_000,
        "after {BURST} bytes: {held:?}, small session {small_held}"
    );

    // A second later both are back to at most the small session's; a side
    // that grew less than the layer's trim threshold (4 × 64 KiB over a new
    // session) keeps what it has, by design.
    let kept = |now: usize, grown: usize| {
        now <= small_held || (grown <= small_held + TRIM_GROWTH && now == grown)
    };
    let back = eventually(Duration::from_secs(5), || {
        kept(c.stats().core_memory_bytes, held.0) && kept(s.stats().core_memory_bytes, held.1)
    })
    .await;
    assert!(
        back,
        "still held after 5 s: {} / {} (small session {small_held})",
        c.stats().core_memory_bytes,
        s.stats().core_memory_bytes
    );
    // The small session had nothing worth giving back and kept its blocks.
    assert_eq!(small_c.stats().core_memory_bytes, small_held);

    // Both ways still work, and grow again.
    burst(&mut s, &mut c, &pattern(BURST, 7), small_held).await;
    burst(&mut c, &mut s, &pattern(BURST, 9), small_held).await;
    assert!(c.stats().core_memory_bytes > small_held + 500_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_messages_after_a_burst_do_not_keep_its_buffers() {
    let listener = KcpListener::bind("127.0.0.1:0", config()).await.unwrap();
    let (mut c, mut s) = connected(&listener).await;
    let before = c.stats().core_memory_bytes;
    burst(&mut c, &mut s, &pattern(BURST, 3), before).await;
    burst(&mut s, &mut c, &pattern(BURST, 5), before).await;
    // Each end sent 4 MiB: both send pools grew.
    let burst = (c.stats().core_memory_bytes, s.stats().core_memory_bytes);
    assert!(
        burst.0 > before + 500_000 && burst.1 > before + 500_000,
        "{burst:?}"
    );

    // A request and its answer every 50 ms, never a quiet second: both ends
    // must still give the burst's buffers back, keeping a few blocks.
    let few = before + 16 * 1400;
    // A trim that finds a block in use (a message in flight) is tried
    // again a second later: allow several.
    let end = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut i = 0;
    let back = loop {
        let held = (c.stats().core_memory_bytes, s.stats().core_memory_bytes);
        if held.0 <= few && held.1 <= few {
            break true;
        }
        if tokio::time::Instant::now() > end {
            break false;
        }
        let ask = pattern(16, i);
        carry(&mut c, &mut s, &ask).await;
        carry(&mut s, &mut c, &ask).await;
        i += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        back,
        "still held after 10 s of small messages: {} / {} (before the burst {before})",
        c.stats().core_memory_bytes,
        s.stats().core_memory_bytes
    );
    // The trim came during the exchange, not before it (a trim takes a
    // second; each round at least 50 ms).
    assert!(i >= 5, "the exchange ran {i} rounds");
}
