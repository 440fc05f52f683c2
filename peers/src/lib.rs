//! # kcp-peers
//!
//! Other KCP implementations as oracles and peers for `kcp-rs`, kept out of
//! the main crate so that building it never needs a C toolchain or libclang.
//!
//! - [`Ikcp`]: the C reference (ikcp 1.7, compiled by kcp-sys) behind a safe
//!   wrapper with the method names of [`kcp_rs::Kcp`], driven by a virtual
//!   clock;
//! - [`Peer`]: the calls a test script makes, implemented by both, so one
//!   script can drive either implementation;
//! - [`describe`]: a datagram decoded header by header, for failure messages.
//!
//! The tests (golden traces, interop over the seeded lossy link), benchmarks
//! and the latency example live beside this crate.

pub mod ikcp;

use std::fmt::Write as _;

use kcp_rs::codec::Segments;
use kcp_rs::sim::Outbox;
use kcp_rs::{Kcp, KcpError};

pub use ikcp::{Ikcp, IkcpError};

/// The calls a test script makes on a session, shared by both
/// implementations.
pub trait Peer {
    /// Queues `data`; `Ok(n)` bytes taken, `Err` with a description.
    ///
    /// # Errors
    /// The implementation refused the message.
    fn send(&mut self, data: &[u8]) -> Result<usize, String>;
    /// Reads the next message (or stream bytes) into `buf`; `None` when
    /// nothing is ready.
    fn recv(&mut self, buf: &mut [u8]) -> Option<usize>;
    /// Feeds one datagram from the peer.
    ///
    /// # Errors
    /// The implementation refused the datagram.
    fn input(&mut self, data: &[u8]) -> Result<(), String>;
    /// Advances the clock.
    fn update(&mut self, now: u32);
    /// Flushes now.
    fn flush(&mut self);
    /// Hands the datagrams output so far to `f`.
    fn drain(&mut self, f: &mut dyn FnMut(&[u8]));
    /// Segments in flight plus queued.
    fn wait_snd(&self) -> u32;
    /// Size of the next message, if complete.
    fn peek_size(&self) -> Option<usize>;
    /// Queues a message of `len` bytes that `fill` writes in place, in
    /// pieces (see [`Kcp::send_with`]). Ours does it without copying; the
    /// default fills a buffer and [`send`](Self::send)s it.
    ///
    /// # Errors
    /// The implementation refused the message.
    fn send_with(&mut self, len: usize, fill: &mut dyn FnMut(&mut [u8])) -> Result<usize, String> {
        let mut buf = vec![0u8; len];
        fill(&mut buf);
        self.send(&buf)
    }
    /// Feeds one datagram and hands every message now complete to `read`
    /// as `(piece, end)`, returning the bytes handed over. Ours does it
    /// without copying ([`Kcp::input_with`]); the default reads each
    /// message into a buffer with [`recv`](Self::recv).
    ///
    /// # Errors
    /// The implementation refused the datagram.
    fn input_with(
        &mut self,
        data: &[u8],
        read: &mut dyn FnMut(&[u8], bool),
    ) -> Result<usize, String> {
        self.input(data)?;
        let mut total = 0;
        let mut buf = Vec::new();
        while let Some(size) = self.peek_size() {
            buf.resize(size.max(1), 0);
            let n = self.recv(&mut buf).ok_or("recv after peek_size")?;
            read(&buf[..n], true);
            total += n;
        }
        Ok(total)
    }
}

impl Peer for Ikcp {
    fn send(&mut self, data: &[u8]) -> Result<usize, String> {
        Ikcp::send(self, data).map_err(|e| e.to_string())
    }
    fn recv(&mut self, buf: &mut [u8]) -> Option<usize> {
        Ikcp::recv(self, buf).ok()
    }
    fn input(&mut self, data: &[u8]) -> Result<(), String> {
        Ikcp::input(self, data).map_err(|e| e.to_string())
    }
    fn update(&mut self, now: u32) {
        Ikcp::update(self, now)
    }
    fn flush(&mut self) {
        Ikcp::flush(self)
    }
    fn drain(&mut self, f: &mut dyn FnMut(&[u8])) {
        Ikcp::drain(self, f)
    }
    fn wait_snd(&self) -> u32 {
        Ikcp::wait_snd(self)
    }
    fn peek_size(&self) -> Option<usize> {
        Ikcp::peek_size(self).ok()
    }
}

impl Peer for Kcp<Outbox> {
    fn send(&mut self, data: &[u8]) -> Result<usize, String> {
        Kcp::send(self, data).map_err(|e| e.to_string())
    }
    fn recv(&mut self, buf: &mut [u8]) -> Option<usize> {
        match Kcp::recv(self, buf) {
            Ok(n) => Some(n),
            Err(KcpError::WouldBlock | KcpError::BufferTooSmall { .. }) => None,
            Err(_) => None,
        }
    }
    fn input(&mut self, data: &[u8]) -> Result<(), String> {
        Kcp::input(self, data).map_err(|e| e.to_string())
    }
    fn update(&mut self, now: u32) {
        Kcp::update(self, now)
    }
    fn flush(&mut self) {
        Kcp::flush(self)
    }
    fn drain(&mut self, f: &mut dyn FnMut(&[u8])) {
        self.output_mut().drain(f)
    }
    fn wait_snd(&self) -> u32 {
        Kcp::wait_snd(self)
    }
    fn peek_size(&self) -> Option<usize> {
        Kcp::peek_size(self).ok()
    }
    fn input_with(
        &mut self,
        data: &[u8],
        read: &mut dyn FnMut(&[u8], bool),
    ) -> Result<usize, String> {
        Kcp::input_with(self, data, read).map_err(|e| e.to_string())
    }
    fn send_with(&mut self, len: usize, fill: &mut dyn FnMut(&mut [u8])) -> Result<usize, String> {
        Kcp::send_with(self, len, fill).map_err(|e| e.to_string())
    }
}

/// A datagram decoded segment by segment, one header per line, for failure
/// messages: `PUSH conv=1 frg=0 wnd=128 ts=100 sn=0 una=0 len=3`.
pub fn describe(datagram: &[u8]) -> String {
    let mut s = format!("{} bytes:", datagram.len());
    for seg in Segments::new(datagram) {
        match seg {
            Ok((h, body)) => {
                let cmd = match h.cmd {
                    81 => "PUSH",
                    82 => "ACK ",
                    83 => "WASK",
                    84 => "WINS",
                    _ => "????",
                };
                let _ = write!(
                    s,
                    "\n  {cmd} conv={} frg={} wnd={} ts={} sn={} una={} len={}",
                    h.conv,
                    h.frg,
                    h.wnd,
                    h.ts.get(),
                    h.sn.get(),
                    h.una.get(),
                    h.len
                );
                if !body.is_empty() {
                    let head = &body[..body.len().min(8)];
                    let _ = write!(
                        s,
                        " data={head:02x?}{}",
                        if body.len() > 8 { "…" } else { "" }
                    );
                }
            }
            Err(e) => {
                let _ = write!(s, "\n  undecodable: {e}");
                break;
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_names_every_header_field() {
        let mut k = Ikcp::new(4);
        k.send(b"0123456789").unwrap();
        k.update(0);
        k.update(100);
        let d = k.take_output().remove(0);
        let s = describe(&d);
        assert!(
            s.contains("PUSH conv=4 frg=0 wnd=128 ts=100 sn=0 una=0 len=10"),
            "{s}"
        );
        assert!(describe(&d[..30]).contains("undecodable"));
    }
}
