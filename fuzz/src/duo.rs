//! Two sessions, an honest wire between them, and the bookkeeping that lets a
//! harness say what must still work after garbage.
//!
//! KCP has no authentication: a forged segment that is well formed and
//! carries the right `conv` can legitimately corrupt a conversation. Two
//! kinds do lasting damage, and the ledger recognises them exactly:
//!
//! - a PUSH whose data differs from what the claimed sender really sent at
//!   that `sn`, landing inside the receiver's window: the receiver delivers
//!   it (the sender's data direction is *tainted*);
//! - an ACK, or a `una`, acknowledging a segment the peer never received:
//!   the sender forgets it and the receiver waits for it forever (the
//!   receiving session's own data direction is tainted).
//!
//! Everything else (replays, old or out-of-window data, windows, timestamps,
//! probes, datagrams that `input` refuses) must leave both directions
//! working. An untainted direction must deliver everything sent on it, in
//! order, exactly once, once the wire is honest; a tainted one is only
//! required not to panic, not to hang and to stay within its memory bound.
//!
//! Each side reads with the calls its [`Reader`] names: `input` and `recv`,
//! or the zero-copy `input_with` (everything in order handed over at once)
//! and `recv_with` (one message, or one stream segment, as slices of the
//! receive buffer). What the zero-copy calls hand over goes through the same
//! check as what `recv` copies, and must keep message boundaries: in message
//! mode each call hands whole messages only (`end` on the last piece of
//! each), in stream mode `end` is set on every piece; the count a call
//! returns is the bytes it handed; a call that fails hands nothing.

use std::collections::{HashMap, HashSet, VecDeque};

use kcp_rs::codec::{Header, Segments};
use kcp_rs::constants::{CLOCK_JUMP, CMD_ACK, CMD_PUSH, IDLE_CHECK, INTERVAL_MAX};
use kcp_rs::sim::Outbox;
use kcp_rs::{Kcp, KcpConfig, KcpError};

/// The conversation id every harness uses.
pub const CONV: u32 = 0x4b43_5052;

/// Datagrams kept per direction for replays and mutations.
const HISTORY: usize = 32;
/// Datagrams the wire holds per direction before it drops the oldest.
const WIRE_CAP: usize = 1024;

/// One of four configurations (ikcp's fast and default modes, a tiny one
/// with 64-byte MTU and windows of 4/8, and nodelay level 2 with no
/// fast-resend limit), in message or stream mode; bit 2 of `choice` makes
/// every payload block at construction (`preallocate`).
pub fn config(choice: u8, stream: bool) -> KcpConfig {
    let base = match choice % 4 {
        0 => KcpConfig::fast(),
        1 => KcpConfig::default(),
        2 => KcpConfig {
            mtu: 64,
            interval: 10,
            snd_wnd: 4,
            rcv_wnd: 8,
            nodelay: true,
            resend: 1,
            min_rto: Some(20),
            ..KcpConfig::default()
        },
        _ => KcpConfig {
            mtu: 576,
            snd_wnd: 16,
            rcv_wnd: 32,
            fast_limit: 0,
            dead_link: 100,
            ..KcpConfig::default().with_ikcp_nodelay(2, 10, 1, false)
        },
    };
    KcpConfig {
        stream,
        preallocate: choice & 4 != 0,
        ..base
    }
}

/// What one side has genuinely put on the wire.
struct Ledger {
    /// `sn` → (`frg`, hash of the data) of every PUSH sent.
    pushes: HashMap<u32, (u8, u64)>,
    /// Every `sn` acknowledged by an ACK segment.
    acks: HashSet<u32>,
    /// Largest `una` sent: everything before it was received.
    una_max: u32,
    /// One past the largest `sn` sent.
    next_sn: u32,
}

impl Ledger {
    fn new(initial_sn: u32) -> Ledger {
        Ledger {
            pushes: HashMap::new(),
            acks: HashSet::new(),
            una_max: initial_sn,
            next_sn: initial_sn,
        }
    }

    fn record(&mut self, h: &Header, body: &[u8]) {
        if after(h.una.get(), self.una_max) {
            self.una_max = h.una.get();
        }
        match h.cmd {
            CMD_PUSH => {
                self.pushes.insert(h.sn.get(), (h.frg, fnv(body)));
                if !after(self.next_sn, h.sn.get()) {
                    self.next_sn = h.sn.get().wrapping_add(1);
                }
            }
            CMD_ACK => {
                self.acks.insert(h.sn.get());
            }
            _ => {}
        }
    }
}

/// How a side reads what its peer sends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reader {
    /// Datagrams go to `input_with`, which hands over everything in order
    /// at once; else to `input`.
    pub input_with: bool,
    /// [`Duo::recv_all`] (and so the honest phase) reads with `recv_with`;
    /// else with `recv`.
    pub recv_with: bool,
}

/// What one zero-copy call handed over: the pieces back to back in `bytes`,
/// and each piece's length and `end` flag.
#[derive(Default)]
struct Handed {
    bytes: Vec<u8>,
    pieces: Vec<(usize, bool)>,
}

impl Handed {
    fn clear(&mut self) {
        self.bytes.clear();
        self.pieces.clear();
    }

    fn push(&mut self, piece: &[u8], end: bool) {
        self.bytes.extend_from_slice(piece);
        self.pieces.push((piece.len(), end));
    }
}

/// The application data one side sent, to check what the other receives.
enum Flow {
    Messages {
        queue: VecDeque<(u64, usize)>,
        next_id: u64,
    },
    Stream {
        sent: u64,
        received: u64,
    },
}

/// Two sessions of conversation [`CONV`] joined by an honest FIFO wire that
/// the harness moves by hand, plus the ledger and data model.
pub struct Duo {
    /// The sessions, side 0 and side 1.
    pub k: [Kcp<Outbox>; 2],
    /// The clock both sessions see.
    pub now: u32,
    /// How each side reads; `input` and `recv` unless a harness says else.
    pub reader: [Reader; 2],
    wire: [VecDeque<Vec<u8>>; 2],
    history: [VecDeque<Vec<u8>>; 2],
    led: [Ledger; 2],
    flow: [Flow; 2],
    tainted: [bool; 2],
    initial_sn: u32,
    stream: bool,
    rcv_wnd: [u32; 2],
    interval: u32,
    outputs: u64,
    scratch: Vec<u8>,
    handed: Handed,
    /// Bytes handed over by the zero-copy calls, per receiving side.
    zero_copy_bytes: [u64; 2],
}

impl Duo {
    /// Both sessions with `cfg` (and `initial_sn`), the clock at `now`.
    ///
    /// # Panics
    /// When `cfg` is invalid.
    pub fn new(cfg: KcpConfig, now: u32) -> Duo {
        let new_kcp = || match Kcp::with_config(CONV, Outbox::default(), cfg) {
            Ok(k) => k,
            Err(e) => panic!("harness config {cfg:?} refused: {e}"),
        };
        let flow = || {
            if cfg.stream {
                Flow::Stream {
                    sent: 0,
                    received: 0,
                }
            } else {
                Flow::Messages {
                    queue: VecDeque::new(),
                    next_id: 0,
                }
            }
        };
        Duo {
            k: [new_kcp(), new_kcp()],
            now,
            reader: Default::default(),
            wire: Default::default(),
            history: Default::default(),
            led: [Ledger::new(cfg.initial_sn), Ledger::new(cfg.initial_sn)],
            flow: [flow(), flow()],
            tainted: [false; 2],
            initial_sn: cfg.initial_sn,
            stream: cfg.stream,
            rcv_wnd: [cfg.rcv_wnd as u32; 2],
            interval: cfg.interval,
            outputs: 0,
            scratch: Vec::new(),
            handed: Handed::default(),
            zero_copy_bytes: [0; 2],
        }
    }

    /// Whether data sent by `side` can no longer be checked because forged
    /// segments legitimately corrupted its direction.
    pub fn tainted(&self, side: usize) -> bool {
        self.tainted[side]
    }

    /// Sends `len` bytes of the side's data pattern; returns what `send` said.
    ///
    /// # Panics
    /// On an error `send` does not document.
    pub fn send(&mut self, side: usize, len: usize) -> Result<usize, KcpError> {
        let mut data = std::mem::take(&mut self.scratch);
        data.clear();
        match &self.flow[side] {
            Flow::Messages { next_id, .. } => {
                data.extend((0..len).map(|j| msg_byte(side, *next_id, j)));
            }
            Flow::Stream { sent, .. } => {
                data.extend((0..len as u64).map(|j| stream_byte(side, sent + j)));
            }
        }
        let res = self.k[side].send(&data);
        self.scratch = data;
        self.record_send(side, len, res)
    }

    /// [`send`](Self::send) through `send_with`: the same bytes, written
    /// into KCP's buffer piece by piece.
    ///
    /// # Panics
    /// As `send`, and when `fill` saw other than the bytes reported taken.
    pub fn send_with(&mut self, side: usize, len: usize) -> Result<usize, KcpError> {
        let byte = match &self.flow[side] {
            Flow::Messages { next_id, .. } => Ok(*next_id),
            Flow::Stream { sent, .. } => Err(*sent),
        };
        let mut at = 0;
        let res = self.k[side].send_with(len, |piece| {
            for b in piece.iter_mut() {
                *b = match byte {
                    Ok(id) => msg_byte(side, id, at),
                    Err(sent) => stream_byte(side, sent + at as u64),
                };
                at += 1;
            }
        });
        assert_eq!(
            at,
            *res.as_ref().unwrap_or(&0),
            "send_with filled {at} bytes and returned {res:?}"
        );
        self.record_send(side, len, res)
    }

    /// Books what a send of `len` bytes took.
    fn record_send(
        &mut self,
        side: usize,
        len: usize,
        res: Result<usize, KcpError>,
    ) -> Result<usize, KcpError> {
        match (&res, &mut self.flow[side]) {
            (Ok(n), Flow::Messages { queue, next_id }) => {
                assert_eq!(*n, len, "message mode takes a message whole");
                queue.push_back((*next_id, len));
                *next_id += 1;
            }
            (Ok(n), Flow::Stream { sent, .. }) => {
                assert!(*n <= len, "send took {n} of {len} bytes");
                *sent += *n as u64;
            }
            (Err(KcpError::BufferFull | KcpError::DataTooLarge { .. } | KcpError::DeadLink), _) => {
            }
            (Err(e), _) => panic!("send({len}) failed with an undocumented error: {e:?}"),
        }
        res
    }

    /// One `recv` into a buffer of `cap` bytes, checking what arrives.
    ///
    /// # Panics
    /// When the data is not what the peer sent next (on an untainted
    /// direction), or on an error `recv` does not document.
    pub fn recv(&mut self, side: usize, cap: usize) -> Result<usize, KcpError> {
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
        buf.resize(cap, 0);
        let res = self.k[side].recv(&mut buf);
        match res {
            Ok(n) => self.verify(1 - side, &buf[..n]),
            Err(KcpError::WouldBlock | KcpError::BufferTooSmall { .. }) => {}
            Err(e) => panic!("recv failed with an undocumented error: {e:?}"),
        }
        self.scratch = buf;
        res
    }

    /// One `recv_with` on `side`, checking what it hands over.
    ///
    /// # Panics
    /// When the data is not what the peer sent next (on an untainted
    /// direction), when a message comes incomplete or a stream call hands
    /// more than one piece, when the count returned is not the bytes handed
    /// or disagrees with `peek_size`, or on an error `recv_with` does not
    /// document.
    pub fn recv_with(&mut self, side: usize) -> Result<usize, KcpError> {
        let peek = self.k[side].peek_size();
        let mut handed = std::mem::take(&mut self.handed);
        handed.clear();
        let res = self.k[side].recv_with(|piece, end| handed.push(piece, end));
        self.handed = handed;
        match (res, peek) {
            (Ok(n), Ok(ready)) => {
                if self.stream {
                    assert!(
                        n <= ready && self.handed.pieces.len() == 1,
                        "stream-mode recv_with handed {n} bytes in {} pieces, {ready} ready",
                        self.handed.pieces.len()
                    );
                } else {
                    assert_eq!(n, ready, "recv_with handed other than peek_size said");
                }
                self.take_handed(side, n, "recv_with", true);
            }
            (Ok(n), Err(e)) => panic!("recv_with handed {n} bytes although peek_size said {e:?}"),
            (Err(KcpError::WouldBlock), _) => {
                assert!(
                    self.handed.pieces.is_empty(),
                    "recv_with handed data and said WouldBlock"
                );
                assert!(
                    peek.is_err(),
                    "recv_with said WouldBlock, peek_size {peek:?}"
                );
            }
            (Err(e), _) => panic!("recv_with failed with an undocumented error: {e:?}"),
        }
        res
    }

    /// Reads everything `side` has ready, with `recv` or `recv_with` as its
    /// [`Reader`] says.
    pub fn recv_all(&mut self, side: usize) {
        if self.reader[side].recv_with {
            while self.k[side].peek_size().is_ok() {
                if let Err(e) = self.recv_with(side) {
                    panic!("recv_with failed although peek_size said data is ready: {e:?}");
                }
            }
            return;
        }
        loop {
            let cap = match self.k[side].peek_size() {
                Ok(n) if self.stream => n.clamp(1, 4096),
                Ok(n) => n,
                Err(_) => return,
            };
            if let Err(e) = self.recv(side, cap) {
                panic!("recv failed although peek_size said {cap} bytes are ready: {e:?}");
            }
        }
    }

    /// `update` on one side, then moves its output onto the wire.
    pub fn update(&mut self, side: usize) {
        self.k[side].update(self.now);
        self.collect();
    }

    /// `flush` on one side, then moves its output onto the wire.
    pub fn flush(&mut self, side: usize) {
        self.k[side].flush();
        self.collect();
    }

    /// Moves both sessions' output onto the wire, into the history and the
    /// ledger.
    pub fn collect(&mut self) {
        for side in 0..2 {
            let (wire, history, led, outputs) = (
                &mut self.wire[side],
                &mut self.history[side],
                &mut self.led[side],
                &mut self.outputs,
            );
            self.k[side].output_mut().drain(|d| {
                *outputs += 1;
                for seg in Segments::new(d) {
                    match seg {
                        Ok((h, body)) => led.record(&h, body),
                        Err(e) => panic!("session emitted a malformed datagram: {e:?} {d:?}"),
                    }
                }
                if wire.len() == WIRE_CAP {
                    wire.pop_front();
                }
                wire.push_back(d.to_vec());
                if history.len() == HISTORY {
                    history.pop_front();
                }
                history.push_back(d.to_vec());
            });
        }
    }

    /// Delivers up to `n` datagrams sent by `from`, in order.
    ///
    /// # Panics
    /// When the receiver refuses a genuine datagram.
    pub fn deliver(&mut self, from: usize, n: usize) {
        for _ in 0..n {
            let Some(d) = self.wire[from].pop_front() else {
                return;
            };
            if let Err(e) = self.input(1 - from, &d) {
                panic!("side {} refused a genuine datagram: {e:?} {d:?}", 1 - from);
            }
            self.take_input_handed(1 - from);
        }
    }

    /// Delivers everything on the wire, both ways, in order.
    pub fn deliver_all(&mut self) {
        while !self.wire[0].is_empty() || !self.wire[1].is_empty() {
            self.deliver(0, usize::MAX);
            self.deliver(1, usize::MAX);
        }
    }

    /// Loses up to `n` datagrams sent by `from`.
    pub fn lose(&mut self, from: usize, n: usize) {
        let n = n.min(self.wire[from].len());
        self.wire[from].drain(..n);
    }

    /// Swaps the next two datagrams sent by `from`.
    pub fn swap(&mut self, from: usize) {
        if self.wire[from].len() >= 2 {
            self.wire[from].swap(0, 1);
        }
    }

    /// A copy of a recent genuine datagram from `from` (`back` counts back
    /// from the newest).
    pub fn recent(&self, from: usize, back: usize) -> Option<Vec<u8>> {
        let h = &self.history[from];
        if h.is_empty() {
            return None;
        }
        h.get(h.len() - 1 - back % h.len()).cloned()
    }

    /// Feeds arbitrary bytes to `side`'s `input`, recording which data
    /// directions the bytes (if accepted) legitimately corrupt.
    ///
    /// # Panics
    /// On an error `input` does not document.
    pub fn inject(&mut self, side: usize, bytes: &[u8]) -> Result<(), KcpError> {
        let res = self.input(side, bytes);
        match res {
            Ok(()) => {
                let t = self.damage(side, bytes);
                self.tainted[0] |= t[0];
                self.tainted[1] |= t[1];
                // Checked once the taint is known: forged data is handed
                // over within the call that accepts it.
                self.take_input_handed(side);
            }
            Err(KcpError::InvalidPacket | KcpError::ConvMismatch { .. }) => {}
            Err(e) => panic!("input failed with an undocumented error: {e:?}"),
        }
        res
    }

    /// Bytes the zero-copy calls handed to `side` so far.
    pub fn zero_copy_bytes(&self, side: usize) -> u64 {
        self.zero_copy_bytes[side]
    }

    /// Asserts both sessions are within their memory bound.
    pub fn check_memory(&self) {
        for k in &self.k {
            let (now, max) = (k.memory_footprint(), k.memory_footprint_max());
            assert!(now <= max, "memory footprint {now} exceeds its bound {max}");
            let fixed = k.config().preallocate;
            assert!(
                !fixed || now == max,
                "a preallocated session holds {now} of {max}"
            );
        }
    }

    /// Calls `check` on `side` and asserts its promise for an idle session:
    /// with nothing to send and an open peer window it never asks to be
    /// woken later than the flush clock can be off plus one interval.
    pub fn check(&self, side: usize) -> u32 {
        let k = &self.k[side];
        let at = k.check(self.now);
        let ahead = at.wrapping_sub(self.now);
        assert!(
            (ahead as i32) >= 0,
            "check({}) = {at}: in the past",
            self.now
        );
        if k.wait_snd() == 0 && k.remote_window() > 0 {
            assert!(
                ahead <= CLOCK_JUMP as u32 + INTERVAL_MAX,
                "idle check({}) = {at}, {ahead} ms ahead",
                self.now
            );
        }
        at
    }

    /// Runs the pair on the honest wire, waking at the times `check` names,
    /// until every untainted direction delivered all its data and heard all
    /// its ACKs, or `limit` wake-ups passed. Returns whether it finished.
    ///
    /// While nothing moves the clock skips ahead faster (up to 8 s a step):
    /// late updates are always allowed, and a retransmission timer backed
    /// off for hours must not cost millions of wake-ups.
    pub fn settle(&mut self, limit: usize) -> bool {
        let mut idle = 0u32;
        for _ in 0..limit {
            self.deliver_all();
            self.recv_all(0);
            self.recv_all(1);
            self.check_memory();
            if self.settled() {
                return true;
            }
            // A side with nothing pending asks to be woken IDLE_CHECK ms
            // from now; skipping those wake-ups changes nothing, and waking
            // for them would make a timer backed off for days cost
            // hundreds of thousands of steps.
            let dt = (0..2)
                .map(|s| self.check(s).wrapping_sub(self.now))
                .filter(|&dt| dt != IDLE_CHECK)
                .min()
                .unwrap_or(IDLE_CHECK);
            let skip = (self.interval << idle.min(10)).min(8_000);
            let dt = if idle > 2 { dt.max(skip) } else { dt };
            self.now = self.now.wrapping_add(dt);
            let before = self.outputs;
            self.k[0].update(self.now);
            self.k[1].update(self.now);
            self.collect();
            idle = if self.outputs == before { idle + 1 } else { 0 };
        }
        false
    }

    /// Whether every untainted direction delivered everything and the wire
    /// is empty.
    pub fn settled(&self) -> bool {
        self.wire.iter().all(VecDeque::is_empty) && (0..2).all(|s| self.direction_done(s))
    }

    /// A one-line account of where the pair stands, for failure messages.
    pub fn describe(&self) -> String {
        let mut s = format!("now={} ", self.now);
        for side in 0..2 {
            let k = &self.k[side];
            let pending = match &self.flow[side] {
                Flow::Messages { queue, .. } => format!("{} msgs undelivered", queue.len()),
                Flow::Stream { sent, received } => format!("{} bytes undelivered", sent - received),
            };
            s += &format!(
                "| side {side}: {pending}, tainted={} wait_snd={} queued_recv={} rto={} cwnd={} rmt_wnd={} dead={} {:?} ",
                self.tainted[side],
                k.wait_snd(),
                k.queued_recv(),
                k.rto(),
                k.cwnd(),
                k.remote_window(),
                k.is_dead(),
                k.stats()
            );
        }
        s
    }

    /// Asserts that everything untainted was delivered; call after
    /// [`settle`](Self::settle) returned false.
    ///
    /// # Panics
    /// Always, naming what is stuck.
    pub fn fail_unsettled(&self, what: &str) -> ! {
        panic!(
            "{what}: the pair did not deliver everything: {}",
            self.describe()
        )
    }

    /// `input` or `input_with` on `side`, as its reader says; what
    /// `input_with` hands over waits in `self.handed` for
    /// [`take_input_handed`](Self::take_input_handed).
    fn input(&mut self, side: usize, bytes: &[u8]) -> Result<(), KcpError> {
        self.handed.clear();
        if !self.reader[side].input_with {
            return self.k[side].input(bytes);
        }
        let mut handed = std::mem::take(&mut self.handed);
        let res = self.k[side].input_with(bytes, |piece, end| handed.push(piece, end));
        self.handed = handed;
        match res {
            Ok(n) => {
                assert_eq!(
                    n,
                    self.handed.bytes.len(),
                    "input_with returned other than the bytes it handed"
                );
                if let Ok(ready) = self.k[side].peek_size() {
                    panic!("input_with left {ready} bytes ready to read");
                }
                Ok(())
            }
            Err(e) => {
                assert!(
                    self.handed.pieces.is_empty(),
                    "input_with handed data over and failed with {e:?}"
                );
                Err(e)
            }
        }
    }

    /// Checks what the last [`input`](Self::input) handed over, if it used
    /// `input_with`.
    fn take_input_handed(&mut self, side: usize) {
        if self.reader[side].input_with {
            let n = self.handed.bytes.len();
            self.take_handed(side, n, "input_with", false);
        }
    }

    /// Checks the pieces in `self.handed`, `n` bytes that `call` handed to
    /// `side`: each at most one MSS, `end` on every stream piece, whole
    /// messages in message mode (exactly one if `one_message`), and the
    /// data what the peer sent next.
    fn take_handed(&mut self, side: usize, n: usize, call: &str, one_message: bool) {
        let from = 1 - side;
        let handed = std::mem::take(&mut self.handed);
        assert_eq!(
            n,
            handed.bytes.len(),
            "{call} returned {n}, handed {}",
            handed.bytes.len()
        );
        self.zero_copy_bytes[side] += n as u64;
        let mss = self.k[side].mss();
        let (mut at, mut start, mut messages) = (0, 0, 0);
        for &(len, end) in &handed.pieces {
            assert!(
                len <= mss,
                "{call} handed a {len}-byte piece, the MSS is {mss}"
            );
            at += len;
            if self.stream {
                assert!(end, "{call} handed a stream piece without `end`");
            }
            if end {
                self.verify(from, &handed.bytes[start..at]);
                start = at;
                messages += 1;
            }
        }
        // A forged fragment count can cut a tainted direction's messages
        // anywhere; an untainted one must come whole.
        if !self.tainted[from] && !self.stream {
            assert_eq!(
                start,
                at,
                "{call} on side {side} handed {} bytes of a message without its end",
                at - start
            );
            if one_message {
                assert_eq!(messages, 1, "{call} handed {messages} messages, not one");
            }
        }
        self.handed = handed;
    }

    fn direction_done(&self, side: usize) -> bool {
        if self.tainted[side] {
            return true;
        }
        let delivered = match &self.flow[side] {
            Flow::Messages { queue, .. } => queue.is_empty(),
            Flow::Stream { sent, received } => sent == received,
        };
        delivered && self.k[side].wait_snd() == 0
    }

    fn verify(&mut self, from: usize, data: &[u8]) {
        if self.tainted[from] {
            return;
        }
        match &mut self.flow[from] {
            Flow::Messages { queue, .. } => {
                let Some((id, len)) = queue.pop_front() else {
                    panic!(
                        "side {} received a {}-byte message nobody sent",
                        1 - from,
                        data.len()
                    );
                };
                assert_eq!(
                    data.len(),
                    len,
                    "message {id} from side {from} arrived with the wrong length"
                );
                if let Some(j) = (0..len).find(|&j| data[j] != msg_byte(from, id, j)) {
                    panic!("message {id} from side {from} is corrupt at byte {j}");
                }
            }
            Flow::Stream { sent, received } => {
                let end = *received + data.len() as u64;
                assert!(
                    end <= *sent,
                    "side {} received {end} stream bytes, {sent} were sent",
                    1 - from
                );
                if let Some(j) =
                    (0..data.len()).find(|&j| data[j] != stream_byte(from, *received + j as u64))
                {
                    panic!(
                        "stream from side {from} is corrupt at offset {}",
                        *received + j as u64
                    );
                }
                *received = end;
            }
        }
    }

    /// Which data directions an accepted datagram fed to `r` corrupts.
    fn damage(&self, r: usize, d: &[u8]) -> [bool; 2] {
        let s = 1 - r;
        let mut t = [false; 2];
        for (h, body) in Segments::new(d).map_while(Result::ok) {
            t[r] |= self.forged_una(r, h.una.get());
            match h.cmd {
                CMD_ACK => t[r] |= self.forged_ack(r, h.sn.get()),
                CMD_PUSH => t[s] |= self.forged_push(r, &h, body),
                _ => {}
            }
        }
        t
    }

    /// Whether `s` (the peer of `r`) really received `r`'s segment `sn`.
    fn received_by(&self, s: usize, sn: u32) -> bool {
        let led = &self.led[s];
        after(led.una_max, sn) || led.acks.contains(&sn)
    }

    /// An ACK of `sn` fed to `r`: harmful when `r` sent `sn` (and so may
    /// still hold it) but its peer never received it.
    fn forged_ack(&self, r: usize, sn: u32) -> bool {
        let sent = self.led[r].next_sn.wrapping_sub(self.initial_sn);
        sn.wrapping_sub(self.initial_sn) < sent && !self.received_by(1 - r, sn)
    }

    /// A `una` fed to `r` acknowledges `[snd_una, min(una, snd_nxt))`:
    /// harmful when that covers a segment the peer never received.
    fn forged_una(&self, r: usize, una: u32) -> bool {
        let s = 1 - r;
        let next = self.led[r].next_sn;
        let sent = next.wrapping_sub(self.initial_sn) as i64;
        let end = sent + (una.wrapping_sub(next) as i32).min(0) as i64;
        let start = (self.led[s].una_max.wrapping_sub(self.initial_sn) as i32).max(0) as i64;
        (start..end).any(|off| !self.received_by(s, self.initial_sn.wrapping_add(off as u32)))
    }

    /// A PUSH fed to `r`: harmful unless it is byte for byte what the peer
    /// sent at that `sn`, or it falls outside every window `r` can have.
    fn forged_push(&self, r: usize, h: &Header, body: &[u8]) -> bool {
        let s = 1 - r;
        let sn = h.sn.get();
        if let Some(&(frg, hash)) = self.led[s].pushes.get(&sn) {
            if hash == fnv(body) && (self.stream || frg == h.frg) {
                return false;
            }
        }
        // r's rcv_nxt lies between what it last acknowledged and what the
        // peer has sent; a segment is stored if it falls in the window
        // after rcv_nxt.
        let base = self.led[r].una_max;
        let ahead = (self.led[s].next_sn.wrapping_sub(base) as i32).max(0) as u64;
        (sn.wrapping_sub(base) as u64) < ahead + self.rcv_wnd[r] as u64
    }
}

/// `a` comes after `b` in wrapping sequence order.
fn after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

fn mix(x: u64) -> u8 {
    let x = x.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    ((x ^ (x >> 29)) >> 56) as u8
}

fn msg_byte(side: usize, id: u64, j: usize) -> u8 {
    mix(((side as u64) << 62) ^ (id << 32) ^ j as u64)
}

fn stream_byte(side: usize, offset: u64) -> u8 {
    mix(((side as u64) << 62) ^ (1 << 61) ^ offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchanged(stream: bool) -> Duo {
        let mut d = Duo::new(config(0, stream), 1000);
        d.send(0, 3000).unwrap();
        d.send(1, 10).unwrap();
        assert!(d.settle(1000), "{}", d.describe());
        d
    }

    #[test]
    fn honest_pair_settles() {
        for stream in [false, true] {
            let d = exchanged(stream);
            assert!(!d.tainted(0) && !d.tainted(1));
        }
    }

    #[test]
    fn replays_are_harmless_but_forged_data_taints() {
        let mut d = exchanged(false);
        let old = d.recent(0, 0).unwrap();
        d.inject(1, &old).unwrap();
        assert!(!d.tainted(0) && !d.tainted(1));

        // A PUSH at the next sn with made-up data.
        let mut h = Header::parse(&old).unwrap();
        h.cmd = CMD_PUSH;
        h.sn = kcp_rs::sequence::Seq::new(d.led[0].next_sn);
        h.len = 1;
        let mut dgram = [0u8; 25];
        h.emit(&mut dgram);
        d.inject(1, &dgram).unwrap();
        assert!(d.tainted(0) && !d.tainted(1));
    }

    #[test]
    fn forged_ack_of_an_unreceived_segment_taints_the_sender() {
        let mut d = Duo::new(config(1, false), 0);
        d.send(0, 10).unwrap();
        d.update(0);
        d.now += 100;
        d.update(0); // segment 0 in flight, never delivered
        d.lose(0, usize::MAX);
        let mut h = Header::parse(&d.recent(0, 0).unwrap()).unwrap();
        h.cmd = kcp_rs::constants::CMD_ACK;
        h.len = 0;
        let mut dgram = [0u8; 24];
        h.emit(&mut dgram);
        d.inject(0, &dgram).unwrap();
        assert!(d.tainted(0));
        // The sender believes it delivered; the receiver never got it.
        assert_eq!(d.k[0].wait_snd(), 0);
        assert!(!d.settle(200) || d.tainted(0));
    }

    #[test]
    fn a_lost_message_is_a_failure_the_model_sees() {
        let mut d = exchanged(false);
        // Claim a message was sent that never was: settle must not finish.
        if let Flow::Messages { queue, .. } = &mut d.flow[0] {
            queue.push_back((99, 5));
        }
        assert!(!d.settle(100));
    }

    /// A pair whose side 1 reads with the zero-copy calls, side 0's
    /// message of `len` bytes (a fragment or more) queued at side 1 unread.
    fn zero_copy_pending(len: usize) -> Duo {
        let mut d = Duo::new(config(0, false), 0);
        d.reader[1] = Reader {
            input_with: false,
            recv_with: true,
        };
        d.send(0, len).unwrap();
        d.update(0);
        d.deliver(0, usize::MAX);
        d
    }

    #[test]
    fn zero_copy_readers_deliver_exactly() {
        for stream in [false, true] {
            for input_with in [false, true] {
                let mut d = Duo::new(config(0, stream), 0);
                d.reader = [Reader {
                    input_with,
                    recv_with: true,
                }; 2];
                d.send(0, 3000).unwrap();
                d.send(1, 0).unwrap();
                d.send(1, 7).unwrap();
                assert!(d.settle(1000), "{}", d.describe());
                assert_eq!(d.zero_copy_bytes(1), 3000);
                assert_eq!(d.zero_copy_bytes(0), 7);
            }
        }
    }

    #[test]
    #[should_panic(expected = "without its end")]
    fn a_message_handed_without_its_end_is_caught() {
        let mut d = zero_copy_pending(3000);
        let mut handed = Handed::default();
        // As if recv_with forgot `end` on the last piece.
        d.k[1]
            .recv_with(|piece, _| handed.push(piece, false))
            .unwrap();
        d.handed = handed;
        d.take_handed(1, 3000, "recv_with", true);
    }

    #[test]
    #[should_panic(expected = "wrong length")]
    fn a_message_cut_in_two_is_caught() {
        let mut d = zero_copy_pending(3000);
        let mut handed = Handed::default();
        // As if recv_with set `end` on the first fragment too.
        let mut first = true;
        let n = d.k[1]
            .recv_with(|piece, end| {
                handed.push(piece, end || first);
                first = false;
            })
            .unwrap();
        d.handed = handed;
        d.take_handed(1, n, "recv_with", true);
    }

    #[test]
    #[should_panic(expected = "returned 5, handed 3000")]
    fn a_wrong_count_is_caught() {
        let mut d = zero_copy_pending(3000);
        let mut handed = Handed::default();
        d.k[1]
            .recv_with(|piece, end| handed.push(piece, end))
            .unwrap();
        d.handed = handed;
        d.take_handed(1, 5, "recv_with", true);
    }

    #[test]
    #[should_panic(expected = "corrupt")]
    fn corrupt_zero_copy_data_is_caught() {
        let mut d = zero_copy_pending(100);
        let mut handed = Handed::default();
        d.k[1]
            .recv_with(|piece, end| {
                let mut p = piece.to_vec();
                p[50] ^= 1;
                handed.push(&p, end);
            })
            .unwrap();
        d.handed = handed;
        d.take_handed(1, 100, "recv_with", true);
    }

    #[test]
    #[should_panic(expected = "corrupt")]
    fn corrupt_data_is_caught() {
        let mut d = Duo::new(config(0, true), 0);
        d.send(0, 10).unwrap();
        d.verify(0, &[0u8; 10]);
    }
}
