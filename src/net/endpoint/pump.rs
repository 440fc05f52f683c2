//! Bytes between a session's KCP and its handles: datagrams fed in,
//! writes taken from the handles' queue, reads handed to the reader.

use std::sync::atomic::Ordering::SeqCst;

use bytes::Buf;
use tokio::sync::mpsc::error::TrySendError;

#[cfg(feature = "fec")]
use crate::constants::OVERHEAD;
use crate::constants::{CMD_PUSH, CMD_WASK};
use crate::net::config::RECV_CHUNK;
use crate::net::peek::commands;
use crate::net::session::{Role, Session};
use crate::net::stats::Counters;
use crate::KcpError;

/// What feeding a wire datagram to a session did.
pub(super) struct Fed {
    /// The datagram was accepted (by KCP, or with FEC by the decoder).
    pub(super) alive: bool,
    /// It answered something we sent (see
    /// [`Commands::answers`](crate::net::peek::Commands::answers); only looked
    /// for while unconfirmed).
    pub(super) answered: bool,
    /// A client that has heard no data yet: it carried a window probe
    /// (`WASK`). See
    /// [`repeat_window_answer`](crate::net::probes::repeat_window_answer).
    pub(super) asked: bool,
    /// It carried data (`PUSH`), looked for while window answers may be
    /// repeated.
    pub(super) pushed: bool,
    /// What to look for, from the session's state before the datagram:
    /// unconfirmed (`look`, with `told_shut`), a client that heard no data
    /// yet (`waiting`), a window answer being repeated (`repeating`).
    look: bool,
    told_shut: bool,
    waiting: bool,
    repeating: bool,
}

impl Fed {
    fn watching(sess: &Session) -> Fed {
        Fed {
            alive: false,
            answered: false,
            asked: false,
            pushed: false,
            look: !sess.confirmed,
            told_shut: sess.told_shut,
            waiting: sess.role == Role::Client && !sess.heard_data,
            repeating: sess.window_told_at.is_some(),
        }
    }

    /// Adds what an accepted KCP datagram says, when the session looks for
    /// anything; otherwise it is not parsed again.
    fn note(&mut self, d: &[u8]) {
        self.alive = true;
        if !(self.look || self.waiting || self.repeating) {
            return;
        }
        let cmds = commands(d);
        self.answered |= self.look && cmds.answers(self.told_shut);
        self.asked |= self.waiting && cmds.has(CMD_WASK);
        self.pushed |= (self.waiting || self.repeating) && cmds.has(CMD_PUSH);
    }
}

/// Hands a wire datagram to a session: straight to `Kcp::input`, or with
/// FEC through the decoder, which may yield several KCP datagrams.
pub(super) fn feed(sess: &mut Session, data: &[u8], now_ms: u32, counters: &Counters) -> Fed {
    let mut fed = Fed::watching(sess);
    // Updates happen only at `check` deadlines: without this, an ACK is
    // timed against the last update and the RTT reads near zero.
    sess.kcp.set_clock(now_ms);
    #[cfg(feature = "fec")]
    if let Some(fec) = sess.fec.as_mut() {
        let kcp = &mut sess.kcp;
        let mut refused = 0;
        let alive = fec.decode(now_ms, data, counters, |d| {
            if d.len() < OVERHEAD {
                return; // padding of an empty data shard
            }
            match kcp.input(d) {
                Ok(()) => fed.note(d),
                Err(_) => refused += 1,
            }
        });
        Counters::add(&counters.dropped_invalid, refused);
        fed.alive = alive;
        return fed;
    }
    let _ = (now_ms, counters);
    if sess.kcp.input(data).is_ok() {
        fed.note(data);
    }
    fed
}

/// Moves what the application wrote into KCP while it has room, giving the
/// writer its permits back. `Err` when the link is dead.
pub(super) fn pump_writes(sess: &mut Session) -> Result<bool, ()> {
    let mut moved = false;
    loop {
        let mut item = match sess.front.take() {
            Some(item) => item,
            None => match sess.out_rx.try_recv() {
                Ok(item) => item,
                Err(_) => break,
            },
        };
        match sess.kcp.send(&item.data) {
            Ok(n) if n >= item.data.len() => {
                sess.sem.add_permits(item.permits);
                sess.stats.app_bytes_sent += n as u64;
                moved = true;
            }
            Ok(n) => {
                // Stream mode, KCP full after part of the chunk.
                item.data.advance(n);
                let back = n.min(item.permits);
                item.permits -= back;
                sess.sem.add_permits(back);
                sess.stats.app_bytes_sent += n as u64;
                moved |= n > 0;
                sess.front = Some(item);
                break;
            }
            Err(KcpError::BufferFull) => {
                sess.front = Some(item);
                break;
            }
            Err(KcpError::DeadLink) => {
                sess.front = Some(item);
                return Err(());
            }
            Err(e) => {
                // The stream checked sizes, so this is not expected; drop the
                // chunk rather than wedge the queue.
                tracing::debug!(error = %e, "chunk refused by KCP");
                sess.sem.add_permits(item.permits);
            }
        }
    }
    Ok(moved)
}

/// Hands what KCP has received in order to the reader while its queue has
/// room; when it is full, stops (KCP's window closes) and asks to be woken.
/// With the reader gone, the data is discarded. Returns whether a reader
/// whose queue was empty (one likely waiting) was handed data.
pub(super) fn pump_reads(sess: &mut Session) -> bool {
    let stream = sess.shared.stream_mode;
    let was_waiting = sess.in_tx.capacity() == sess.in_tx.max_capacity();
    let mut delivered = false;
    while let Ok(size) = sess.kcp.peek_size() {
        let permit = match sess.in_tx.try_reserve() {
            Ok(p) => Some(p),
            Err(TrySendError::Closed(())) => None,
            Err(TrySendError::Full(())) => {
                sess.shared.rx_blocked.store(true, SeqCst);
                match sess.in_tx.try_reserve() {
                    Ok(p) => Some(p),
                    Err(TrySendError::Closed(())) => None,
                    Err(TrySendError::Full(())) => break,
                }
            }
        };
        // One copy, from KCP's receive buffer into the chunk the reader
        // gets: a whole message, or whole stream segments up to `RECV_CHUNK`
        // of the `size` bytes readable now (reading may make more readable;
        // they go in the next chunk, so a chunk never outgrows `max`).
        let mut read = false;
        let kcp = &mut sess.kcp;
        let until = size.min(RECV_CHUNK);
        let max = size.min(RECV_CHUNK + kcp.mss());
        let chunk = sess.in_chunks.fill(max, |chunk| {
            while kcp
                .recv_with(|piece, _| chunk.extend_from_slice(piece))
                .is_ok()
            {
                read = true;
                if !stream || chunk.len() >= until {
                    break;
                }
            }
        });
        if !read {
            break;
        }
        let n = chunk.len();
        sess.stats.app_bytes_received += n as u64;
        if let Some(p) = permit {
            if n > 0 || !stream {
                p.send(chunk);
                delivered = true;
            }
        }
    }
    delivered && was_waiting
}
