//! Forward error correction between the socket and a session's
//! [`Kcp`](crate::Kcp) (the `fec` feature): the encoder frames what the core
//! outputs, the decoder sits before `Kcp::input`.

use std::io;

use super::stats::{Counters, SessionStats};
use super::udp::Outbox;
use crate::fec::{FecConfig, FecDecoder, FecDecoderStats, FecEncoder};
use crate::KcpOutput;

/// A session's FEC encoder and decoder.
pub(crate) struct FecState {
    enc: FecEncoder,
    dec: FecDecoder,
}

impl FecState {
    pub fn new(cfg: FecConfig) -> io::Result<FecState> {
        let invalid = |e: crate::fec::FecError| io::Error::new(io::ErrorKind::InvalidInput, e);
        Ok(FecState {
            enc: FecEncoder::new(cfg).map_err(invalid)?,
            dec: FecDecoder::new(cfg).map_err(invalid)?,
        })
    }

    /// Frames every KCP datagram of `kcp_out` into `wire` (data packets, and
    /// parity after each full group), then closes the open group if it has
    /// waited `rto / group_wait_divisor` and [`FecConfig::early_close`] is
    /// on. Returns when the open group must be closed at the latest
    /// (`None`: no group open, or early close off).
    pub fn encode(
        &mut self,
        kcp_out: &Outbox,
        wire: &mut Outbox,
        now_ms: u32,
        rto_ms: u32,
        counters: &Counters,
    ) -> Option<u32> {
        let parity0 = self.enc.stats().parity_packets;
        let mut emit = |p: &[u8]| {
            let _ = wire.output(p);
        };
        let mut off = 0;
        for &len in &kcp_out.lens {
            let d = &kcp_out.buf[off..off + len];
            off += len;
            // Cannot fail: the core's MTU leaves room for the FEC header.
            if let Err(e) = self.enc.encode(d, &mut emit) {
                tracing::debug!(error = %e, "FEC encoder refused a datagram");
            }
        }
        let deadline = self.enc.poll(now_ms, rto_ms, &mut emit);
        let parity = self.enc.stats().parity_packets - parity0;
        Counters::add(&counters.fec_parity_sent, parity);
        deadline
    }

    /// Decodes one FEC packet and hands every KCP datagram it yields (its
    /// own, and any rebuilt from parity) to `deliver`. `false` when the
    /// decoder refused the packet.
    pub fn decode(
        &mut self,
        now_ms: u32,
        packet: &[u8],
        counters: &Counters,
        deliver: impl FnMut(&[u8]),
    ) -> bool {
        let before = *self.dec.stats();
        let r = self.dec.decode(now_ms, packet, deliver);
        let after = self.dec.stats();
        Counters::add(&counters.fec_recovered, after.recovered - before.recovered);
        Counters::add(
            &counters.fec_parity_received,
            after.parity_packets - before.parity_packets,
        );
        Counters::add(&counters.fec_dropped, dropped(after) - dropped(&before));
        if let Err(e) = &r {
            tracing::trace!(error = %e, "FEC packet refused");
        }
        r.is_ok()
    }

    /// Copies the FEC counters into a session's stats.
    pub fn publish(&self, stats: &mut SessionStats) {
        let d = self.dec.stats();
        stats.fec_recovered = d.recovered;
        stats.fec_parity_received = d.parity_packets;
        stats.fec_dropped = dropped(d);
        stats.fec_parity_sent = self.enc.stats().parity_packets;
    }
}

fn dropped(d: &FecDecoderStats) -> u64 {
    d.malformed + d.duplicates
}
