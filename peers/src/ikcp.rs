//! A safe, clock-free wrapper around the C reference implementation, ikcp.
//!
//! kcp-sys compiles the unmodified upstream `ikcp.c` (with
//! `IKCP_FASTACK_CONSERVE`) into a static library; its own safe layer forces
//! stream mode and reads the wall clock, so we declare the few `ikcp_*`
//! functions we need ourselves and drive them with a virtual clock, exactly
//! as our [`Kcp`](kcp_rs::Kcp) is driven.
//!
//! [`Ikcp`] owns one `ikcpcb`. Its output callback appends each datagram to a
//! queue that the wrapper owns and hands to ikcp through the `user` pointer;
//! the queue is boxed so the pointer stays valid when the wrapper moves, and
//! the wrapper holds raw pointers, so it is neither `Send` nor `Sync`.
//!
//! Method names follow [`Kcp`](kcp_rs::Kcp); results keep ikcp's integer
//! codes in [`IkcpError`] so tests can see exactly what the C code said.

use core::ffi::{c_char, c_int, c_long, c_void};
use core::fmt;
use core::ptr::NonNull;

use kcp_rs::KcpConfig;

// Linking: kcp-sys's build script compiles ikcp.c into `libkcp.a` and asks
// for it to be linked; naming the crate is enough to pull it in.
use kcp_sys as _;

/// The raw C interface: ikcp.h's control block and the functions we call.
pub mod ffi {
    use super::*;

    /// `struct IQUEUEHEAD`: an intrusive doubly linked list head.
    #[repr(C)]
    #[derive(Debug)]
    pub struct IQueueHead {
        /// Next node.
        pub next: *mut IQueueHead,
        /// Previous node.
        pub prev: *mut IQueueHead,
    }

    /// ikcp's output callback.
    pub type OutputFn = unsafe extern "C" fn(
        buf: *const c_char,
        len: c_int,
        kcp: *mut IkcpCb,
        user: *mut c_void,
    ) -> c_int;

    /// ikcp's log callback.
    pub type WritelogFn =
        unsafe extern "C" fn(log: *const c_char, kcp: *mut IkcpCb, user: *mut c_void);

    /// `struct IKCPCB` from ikcp.h (1.7), field for field.
    #[repr(C)]
    #[derive(Debug)]
    #[allow(missing_docs)]
    pub struct IkcpCb {
        pub conv: u32,
        pub mtu: u32,
        pub mss: u32,
        pub state: u32,
        pub snd_una: u32,
        pub snd_nxt: u32,
        pub rcv_nxt: u32,
        pub ts_recent: u32,
        pub ts_lastack: u32,
        pub ssthresh: u32,
        pub rx_rttval: i32,
        pub rx_srtt: i32,
        pub rx_rto: i32,
        pub rx_minrto: i32,
        pub snd_wnd: u32,
        pub rcv_wnd: u32,
        pub rmt_wnd: u32,
        pub cwnd: u32,
        pub probe: u32,
        pub current: u32,
        pub interval: u32,
        pub ts_flush: u32,
        pub xmit: u32,
        pub nrcv_buf: u32,
        pub nsnd_buf: u32,
        pub nrcv_que: u32,
        pub nsnd_que: u32,
        pub nodelay: u32,
        pub updated: u32,
        pub ts_probe: u32,
        pub probe_wait: u32,
        pub dead_link: u32,
        pub incr: u32,
        pub snd_queue: IQueueHead,
        pub rcv_queue: IQueueHead,
        pub snd_buf: IQueueHead,
        pub rcv_buf: IQueueHead,
        pub acklist: *mut u32,
        pub ackcount: u32,
        pub ackblock: u32,
        pub user: *mut c_void,
        pub buffer: *mut c_char,
        pub fastresend: c_int,
        pub fastlimit: c_int,
        pub nocwnd: c_int,
        pub stream: c_int,
        pub logmask: c_int,
        pub output: Option<OutputFn>,
        pub writelog: Option<WritelogFn>,
    }

    // The layout must match the C compiler's, or every field access is wrong.
    // 33 u32 = 132 bytes, padded to the pointer alignment, then the lists.
    #[cfg(target_pointer_width = "64")]
    const _: () = assert!(core::mem::size_of::<IkcpCb>() == 272);
    #[cfg(target_pointer_width = "32")]
    const _: () = assert!(core::mem::size_of::<IkcpCb>() == 212);
    #[cfg(target_pointer_width = "64")]
    const _: () = assert!(core::mem::offset_of!(IkcpCb, snd_queue) == 136);
    #[cfg(target_pointer_width = "64")]
    const _: () = assert!(core::mem::offset_of!(IkcpCb, stream) == 244);

    extern "C" {
        pub fn ikcp_create(conv: u32, user: *mut c_void) -> *mut IkcpCb;
        pub fn ikcp_release(kcp: *mut IkcpCb);
        pub fn ikcp_setoutput(kcp: *mut IkcpCb, output: Option<OutputFn>);
        pub fn ikcp_recv(kcp: *mut IkcpCb, buffer: *mut c_char, len: c_int) -> c_int;
        pub fn ikcp_send(kcp: *mut IkcpCb, buffer: *const c_char, len: c_int) -> c_int;
        pub fn ikcp_update(kcp: *mut IkcpCb, current: u32);
        pub fn ikcp_check(kcp: *const IkcpCb, current: u32) -> u32;
        pub fn ikcp_input(kcp: *mut IkcpCb, data: *const c_char, size: c_long) -> c_int;
        pub fn ikcp_flush(kcp: *mut IkcpCb);
        pub fn ikcp_peeksize(kcp: *const IkcpCb) -> c_int;
        pub fn ikcp_setmtu(kcp: *mut IkcpCb, mtu: c_int) -> c_int;
        pub fn ikcp_wndsize(kcp: *mut IkcpCb, sndwnd: c_int, rcvwnd: c_int) -> c_int;
        pub fn ikcp_waitsnd(kcp: *const IkcpCb) -> c_int;
        pub fn ikcp_nodelay(
            kcp: *mut IkcpCb,
            nodelay: c_int,
            interval: c_int,
            resend: c_int,
            nc: c_int,
        ) -> c_int;
    }
}

use ffi::IkcpCb;

/// A negative return code from ikcp, with the function that returned it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IkcpError {
    /// The `ikcp_*` function.
    pub op: &'static str,
    /// Its return value (always negative).
    pub code: i32,
}

impl fmt::Display for IkcpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ikcp_{} returned {}", self.op, self.code)
    }
}

impl std::error::Error for IkcpError {}

/// Datagrams ikcp has output: the same sink our core writes to in the
/// simulator and the benchmarks, so that both pay the same for it.
type Sink = kcp_rs::sim::Outbox;

/// One ikcp session driven by a virtual clock.
///
/// ```
/// use kcp_peers::Ikcp;
/// let mut a = Ikcp::new(1);
/// let mut b = Ikcp::new(1);
/// a.send(b"hi").unwrap();
/// a.update(0); // the first flush only opens the congestion window
/// a.update(100);
/// a.drain(|d| b.input(d).unwrap());
/// let mut buf = [0u8; 8];
/// assert_eq!(b.recv(&mut buf), Ok(2));
/// ```
pub struct Ikcp {
    kcp: NonNull<IkcpCb>,
    sink: NonNull<Sink>,
}

impl Ikcp {
    /// A session with ikcp's defaults (what `ikcp_create` sets).
    pub fn new(conv: u32) -> Ikcp {
        let sink = NonNull::from(Box::leak(Box::<Sink>::default()));
        // SAFETY: `sink` is a live heap allocation that outlives the control
        // block (both are freed in `Drop`, the control block first); ikcp only
        // stores the pointer and passes it back to `collect`.
        let raw = unsafe { ffi::ikcp_create(conv, sink.as_ptr().cast()) };
        let Some(kcp) = NonNull::new(raw) else {
            // SAFETY: `sink` came from `Box::leak` above and nothing else
            // holds it.
            drop(unsafe { Box::from_raw(sink.as_ptr()) });
            panic!("ikcp_create: out of memory");
        };
        // SAFETY: `kcp` is the valid control block just created; `collect`
        // has the signature ikcp expects.
        unsafe { ffi::ikcp_setoutput(kcp.as_ptr(), Some(collect)) };
        Ikcp { kcp, sink }
    }

    /// A session configured like a [`Kcp`](kcp_rs::Kcp) built with `cfg`.
    ///
    /// ikcp never lets the receive window drop below 128 (`ikcp_wndsize`);
    /// with a smaller `cfg.rcv_wnd` the two implementations differ.
    ///
    /// # Errors
    /// When ikcp refuses the MTU (below 50).
    pub fn with_config(conv: u32, cfg: &KcpConfig) -> Result<Ikcp, IkcpError> {
        let mut k = Ikcp::new(conv);
        if cfg.mtu != 1400 {
            // SAFETY: valid control block; nothing is queued yet, so the
            // buffer ikcp swaps is not in use.
            let r = unsafe { ffi::ikcp_setmtu(k.kcp.as_ptr(), cfg.mtu as c_int) };
            if r < 0 {
                return Err(IkcpError {
                    op: "setmtu",
                    code: r,
                });
            }
        }
        let level = match (cfg.nodelay, cfg.gentle_backoff) {
            (false, _) => 0,
            (true, false) => 1,
            (true, true) => 2,
        };
        // SAFETY: valid control block; plain setters.
        unsafe {
            ffi::ikcp_wndsize(k.kcp.as_ptr(), cfg.snd_wnd.into(), cfg.rcv_wnd.into());
            ffi::ikcp_nodelay(
                k.kcp.as_ptr(),
                level,
                cfg.interval as c_int,
                cfg.resend as c_int,
                cfg.nc as c_int,
            );
        }
        let cb = k.cb_mut();
        cb.stream = cfg.stream as c_int;
        if let Some(rto) = cfg.min_rto {
            cb.rx_minrto = rto as i32;
        }
        cb.fastlimit = cfg.fast_limit as c_int;
        cb.dead_link = cfg.dead_link;
        k.set_initial_sn(cfg.initial_sn);
        Ok(k)
    }

    /// Starts the sequence space at `sn` (ikcp starts at 0), for wraparound
    /// tests. Call it before any traffic; both ends must agree.
    pub fn set_initial_sn(&mut self, sn: u32) {
        let cb = self.cb_mut();
        cb.snd_una = sn;
        cb.snd_nxt = sn;
        cb.rcv_nxt = sn;
    }

    /// `ikcp_send`: queues a message (or stream bytes).
    ///
    /// # Errors
    /// ikcp's code: -2 when the message needs 128 fragments or more.
    pub fn send(&mut self, data: &[u8]) -> Result<usize, IkcpError> {
        let len = c_int::try_from(data.len()).map_err(|_| IkcpError {
            op: "send",
            code: -1,
        })?;
        // SAFETY: valid control block; ikcp reads `len` bytes from `data`
        // and copies them before returning.
        let r = unsafe { ffi::ikcp_send(self.kcp.as_ptr(), data.as_ptr().cast(), len) };
        code("send", r)
    }

    /// `ikcp_recv`: one message (or, in stream mode, one segment).
    ///
    /// # Errors
    /// -1 nothing queued, -2 message incomplete, -3 `buf` too small.
    pub fn recv(&mut self, buf: &mut [u8]) -> Result<usize, IkcpError> {
        let len = c_int::try_from(buf.len()).unwrap_or(c_int::MAX);
        // SAFETY: valid control block; ikcp writes at most `len` bytes (it
        // checks the message size against `len` first).
        let r = unsafe { ffi::ikcp_recv(self.kcp.as_ptr(), buf.as_mut_ptr().cast(), len) };
        code("recv", r)
    }

    /// `ikcp_peeksize`: size of the next message.
    ///
    /// # Errors
    /// -1 when nothing complete is queued.
    pub fn peek_size(&self) -> Result<usize, IkcpError> {
        // SAFETY: valid control block; read only.
        let r = unsafe { ffi::ikcp_peeksize(self.kcp.as_ptr()) };
        code("peeksize", r)
    }

    /// `ikcp_input`: one datagram from the peer.
    ///
    /// # Errors
    /// -1 short or wrong conv, -2 truncated segment, -3 unknown command
    /// (segments before the bad one have been applied, as in ikcp).
    pub fn input(&mut self, data: &[u8]) -> Result<(), IkcpError> {
        // SAFETY: valid control block; ikcp reads at most `data.len()` bytes
        // (it checks every header and length against the remaining size).
        let r = unsafe {
            ffi::ikcp_input(
                self.kcp.as_ptr(),
                data.as_ptr().cast(),
                data.len() as c_long,
            )
        };
        code("input", r).map(|_| ())
    }

    /// `ikcp_update`: advance the clock; flush if an interval passed.
    pub fn update(&mut self, current: u32) {
        // SAFETY: valid control block; output goes to `collect`, which only
        // touches the sink, and no reference to the sink is alive here.
        unsafe { ffi::ikcp_update(self.kcp.as_ptr(), current) }
    }

    /// `ikcp_flush`: send what is due now.
    pub fn flush(&mut self) {
        // SAFETY: as in `update`.
        unsafe { ffi::ikcp_flush(self.kcp.as_ptr()) }
    }

    /// `ikcp_check`: when to call `update` next (ikcp's rule: at most one
    /// interval ahead).
    pub fn check(&self, current: u32) -> u32 {
        // SAFETY: valid control block; read only.
        unsafe { ffi::ikcp_check(self.kcp.as_ptr(), current) }
    }

    /// `ikcp_waitsnd`: segments in flight plus queued.
    pub fn wait_snd(&self) -> u32 {
        // SAFETY: valid control block; read only.
        unsafe { ffi::ikcp_waitsnd(self.kcp.as_ptr()) as u32 }
    }

    /// Hands every datagram output so far to `f`, oldest first.
    pub fn drain(&mut self, f: impl FnMut(&[u8])) {
        self.sink_mut().drain(f);
    }

    /// Every datagram output so far, as owned vectors.
    pub fn take_output(&mut self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        self.drain(|d| out.push(d.to_vec()));
        out
    }

    /// Gives the output sink room for `datagrams` datagrams of `bytes` in
    /// all, allocated and touched now ([`kcp_rs::sim::Outbox::with_room`]),
    /// so that a measurement does not count its growth.
    ///
    /// # Panics
    /// When datagrams are waiting in the sink.
    pub fn reserve_output(&mut self, datagrams: usize, bytes: usize) {
        let sink = self.sink_mut();
        assert!(sink.is_empty(), "reserve_output with datagrams waiting");
        *sink = Sink::with_room(datagrams, bytes);
    }

    /// Datagrams output and not yet drained.
    pub fn output_len(&self) -> usize {
        // SAFETY: the sink is alive for `self`'s lifetime and no mutable
        // reference to it exists while `&self` is borrowed.
        unsafe { self.sink.as_ref() }.len()
    }

    /// The control block, read only (all of ikcp's state).
    pub fn cb(&self) -> &IkcpCb {
        // SAFETY: valid for `self`'s lifetime; ikcp only mutates it inside
        // calls that take `&mut self`.
        unsafe { self.kcp.as_ref() }
    }

    /// The control block, for the settings ikcp has no setter for.
    pub fn cb_mut(&mut self) -> &mut IkcpCb {
        // SAFETY: valid for `self`'s lifetime; `&mut self` is exclusive.
        unsafe { self.kcp.as_mut() }
    }

    /// Smoothed RTT in ms.
    pub fn rtt(&self) -> u32 {
        self.cb().rx_srtt as u32
    }

    /// Current RTO in ms.
    pub fn rto(&self) -> u32 {
        self.cb().rx_rto as u32
    }

    /// Congestion window in segments.
    pub fn cwnd(&self) -> u32 {
        self.cb().cwnd
    }

    /// The peer's last advertised window.
    pub fn remote_window(&self) -> u32 {
        self.cb().rmt_wnd
    }

    /// Segments received in order and not yet read.
    pub fn queued_recv(&self) -> u32 {
        self.cb().nrcv_que
    }

    /// Whether a segment reached `dead_link` transmissions.
    pub fn is_dead(&self) -> bool {
        self.cb().state != 0
    }

    fn sink_mut(&mut self) -> &mut Sink {
        // SAFETY: the sink is alive for `self`'s lifetime; `&mut self` rules
        // out an ikcp call (and so `collect`) running at the same time.
        unsafe { self.sink.as_mut() }
    }
}

impl Drop for Ikcp {
    fn drop(&mut self) {
        // SAFETY: `kcp` came from `ikcp_create` and is released once; after
        // this ikcp no longer holds the sink pointer, which came from
        // `Box::leak` in `new` and is freed once.
        unsafe {
            ffi::ikcp_release(self.kcp.as_ptr());
            drop(Box::from_raw(self.sink.as_ptr()));
        }
    }
}

impl fmt::Debug for Ikcp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cb = self.cb();
        f.debug_struct("Ikcp")
            .field("conv", &cb.conv)
            .field("snd_una", &cb.snd_una)
            .field("snd_nxt", &cb.snd_nxt)
            .field("rcv_nxt", &cb.rcv_nxt)
            .field("cwnd", &cb.cwnd)
            .field("rmt_wnd", &cb.rmt_wnd)
            .finish_non_exhaustive()
    }
}

fn code(op: &'static str, r: c_int) -> Result<usize, IkcpError> {
    if r < 0 {
        Err(IkcpError { op, code: r })
    } else {
        Ok(r as usize)
    }
}

/// ikcp's output callback: append the datagram to the wrapper's sink.
unsafe extern "C" fn collect(
    buf: *const c_char,
    len: c_int,
    _kcp: *mut IkcpCb,
    user: *mut c_void,
) -> c_int {
    let Ok(n) = usize::try_from(len) else {
        return -1;
    };
    // SAFETY: `user` is the `Sink` pointer given to `ikcp_create` by `new`,
    // alive until `Drop`; ikcp calls back only from inside a wrapper method
    // taking `&mut self`, while no other reference to the sink exists.
    let sink = unsafe { &mut *user.cast::<Sink>() };
    // SAFETY: ikcp passes its flush buffer with `len` initialised bytes.
    let data = unsafe { core::slice::from_raw_parts(buf.cast::<u8>(), n) };
    match kcp_rs::KcpOutput::output(sink, data) {
        Ok(_) => 0,
        Err(_) => -1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_sets_ikcp_defaults_at_the_declared_offsets() {
        let k = Ikcp::new(0x1122_3344);
        let cb = k.cb();
        assert_eq!(
            (cb.conv, cb.mtu, cb.mss, cb.state),
            (0x1122_3344, 1400, 1376, 0)
        );
        assert_eq!((cb.snd_wnd, cb.rcv_wnd, cb.rmt_wnd), (32, 128, 128));
        assert_eq!((cb.rx_rto, cb.rx_minrto), (200, 100));
        assert_eq!((cb.interval, cb.ts_flush, cb.ssthresh), (100, 100, 2));
        assert_eq!((cb.dead_link, cb.fastlimit, cb.stream), (20, 5, 0));
        assert_eq!(cb.user, k.sink.as_ptr().cast());
        assert!(cb.output.is_some() && cb.writelog.is_none());
        assert!(!cb.buffer.is_null());
        // Empty lists point at themselves.
        let head = &cb.snd_queue as *const ffi::IQueueHead as *mut ffi::IQueueHead;
        assert_eq!(cb.snd_queue.next, head);
        let head = &cb.rcv_buf as *const ffi::IQueueHead as *mut ffi::IQueueHead;
        assert_eq!(cb.rcv_buf.prev, head);
    }

    #[test]
    fn with_config_reaches_every_setting() {
        let cfg = KcpConfig {
            mtu: 500,
            stream: true,
            min_rto: Some(10),
            fast_limit: 0,
            dead_link: 7,
            initial_sn: u32::MAX - 3,
            snd_wnd: 64,
            rcv_wnd: 256,
            ..KcpConfig::default().with_ikcp_nodelay(2, 10, 2, true)
        };
        let k = Ikcp::with_config(9, &cfg).unwrap();
        let cb = k.cb();
        assert_eq!((cb.mtu, cb.mss), (500, 476));
        assert_eq!(
            (cb.nodelay, cb.interval, cb.fastresend, cb.nocwnd),
            (2, 10, 2, 1)
        );
        assert_eq!(
            (cb.stream, cb.rx_minrto, cb.fastlimit, cb.dead_link),
            (1, 10, 0, 7)
        );
        assert_eq!(
            (cb.snd_una, cb.snd_nxt, cb.rcv_nxt),
            (u32::MAX - 3, u32::MAX - 3, u32::MAX - 3)
        );
        assert_eq!((cb.snd_wnd, cb.rcv_wnd), (64, 256));
        assert!(Ikcp::with_config(
            1,
            &KcpConfig {
                mtu: 40,
                ..KcpConfig::default()
            }
        )
        .is_err());
    }

    #[test]
    fn first_flush_emits_the_expected_segment() {
        let mut k = Ikcp::new(7);
        assert_eq!(k.send(b"abc"), Ok(3));
        assert_eq!(k.wait_snd(), 1);
        assert_eq!(k.output_len(), 0);
        // The first flush runs with cwnd 0 and only opens the window.
        k.update(900);
        assert_eq!(k.output_len(), 0);
        k.update(1000);
        let out = k.take_output();
        assert_eq!(out.len(), 1);
        let d = &out[0];
        assert_eq!(d.len(), 24 + 3);
        assert_eq!(&d[0..4], &7u32.to_le_bytes());
        assert_eq!((d[4], d[5]), (81, 0)); // PUSH, last fragment
        assert_eq!(&d[6..8], &128u16.to_le_bytes());
        assert_eq!(&d[8..12], &1000u32.to_le_bytes()); // ts = virtual clock
        assert_eq!(&d[12..16], &0u32.to_le_bytes()); // sn
        assert_eq!(&d[20..24], &3u32.to_le_bytes()); // len
        assert_eq!(&d[24..], b"abc");
        assert_eq!(k.output_len(), 0);
    }

    #[test]
    fn two_sessions_exchange_messages_and_acks() {
        let mut a = Ikcp::new(3);
        let mut b = Ikcp::new(3);
        let big: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
        a.send(&big).unwrap();
        a.send(b"second").unwrap();
        let mut now = 0;
        let mut got = Vec::new();
        let mut buf = vec![0u8; 8192];
        while got.len() < 2 && now < 5_000 {
            a.update(now);
            b.update(now);
            a.drain(|d| b.input(d).unwrap());
            b.drain(|d| a.input(d).unwrap());
            while let Ok(n) = b.recv(&mut buf) {
                got.push(buf[..n].to_vec());
            }
            now += 10;
        }
        assert_eq!(got, vec![big, b"second".to_vec()]);
        // Let the last ACKs arrive.
        for _ in 0..30 {
            now += 10;
            a.update(now);
            b.update(now);
            a.drain(|d| b.input(d).unwrap());
            b.drain(|d| a.input(d).unwrap());
        }
        assert_eq!(a.wait_snd(), 0);
        assert!(a.rtt() > 0);
    }

    #[test]
    fn error_codes_are_ikcps() {
        let mut a = Ikcp::new(1);
        let mut buf = [0u8; 4];
        assert_eq!(a.recv(&mut buf).unwrap_err().code, -1);
        assert_eq!(a.peek_size().unwrap_err().code, -1);
        assert_eq!(a.input(&[0; 10]).unwrap_err().code, -1);
        // Wrong conv.
        let mut other = Ikcp::new(2);
        other.send(b"x").unwrap();
        other.update(0);
        other.update(100);
        let d = other.take_output().remove(0);
        assert_eq!(a.input(&d).unwrap_err().code, -1);
        // Message of 128 fragments is refused.
        assert_eq!(a.send(&vec![0; 1376 * 128]).unwrap_err().code, -2);
        assert_eq!(a.send(&vec![0; 1376 * 127]), Ok(1376 * 127));
        // Buffer too small.
        let mut b = Ikcp::new(2);
        b.input(&d).unwrap();
        assert_eq!(b.peek_size(), Ok(1));
        assert_eq!(b.recv(&mut []).unwrap_err().code, -3);
        assert_eq!(b.recv(&mut buf), Ok(1));
        assert_eq!(b.queued_recv(), 0);
    }

    #[test]
    fn drain_may_feed_back_into_the_same_session() {
        // A loopback: the session's own output is input again from inside
        // drain; nothing is lost or double-counted.
        let mut a = Ikcp::new(5);
        a.send(b"loop").unwrap();
        a.update(0);
        a.update(100);
        let mut seen = 0;
        let mut pending = a.take_output();
        while let Some(d) = pending.pop() {
            seen += 1;
            a.input(&d).unwrap();
            a.flush();
            if seen < 3 {
                pending.extend(a.take_output());
            }
        }
        let mut buf = [0u8; 8];
        assert_eq!(a.recv(&mut buf), Ok(4));
        assert_eq!(&buf[..4], b"loop");
    }
}
