//! Runs in every build, including the no-alloc profiles (`cargo test
//! --lib --no-default-features [--features small-buffers]`), where the
//! integration tests and the simulator are not available.
use super::*;
use crate::codec::split_segment;
use crate::error::KcpError;
use std::vec::Vec;

#[derive(Default)]
struct Wire(Vec<Vec<u8>>);

impl KcpOutput for Wire {
    fn output(&mut self, data: &[u8]) -> KcpResult<usize> {
        self.0.push(data.to_vec());
        Ok(data.len())
    }
}

/// Moves `msgs` from `a` to `b` over a link that drops every `drop_nth`
/// datagram, returning what `b` received.
fn exchange(cfg: KcpConfig, msgs: &[Vec<u8>], drop_nth: usize) -> Vec<Vec<u8>> {
    let mut a = Kcp::with_config(3, Wire::default(), cfg).unwrap();
    let mut b = Kcp::with_config(3, Wire::default(), cfg).unwrap();
    let mut got = Vec::new();
    let mut next = 0;
    let mut buf = std::vec![0u8; cfg.max_message()];
    let mut count = 0usize;
    for now in (0..600_000u32).step_by(10) {
        while next < msgs.len() && a.send(&msgs[next]).is_ok() {
            next += 1;
        }
        a.update(now);
        b.update(now);
        for d in core::mem::take(&mut a.output_mut().0) {
            count += 1;
            if !count.is_multiple_of(drop_nth) {
                b.input(&d).unwrap();
            }
        }
        for d in core::mem::take(&mut b.output_mut().0) {
            count += 1;
            if !count.is_multiple_of(drop_nth) {
                a.input(&d).unwrap();
            }
        }
        while let Ok(n) = b.recv(&mut buf) {
            got.push(buf[..n].to_vec());
        }
        if got.len() == msgs.len() {
            break;
        }
    }
    got
}

/// Without `alloc` a `Kcp` holds its buffers inline (hundreds of KiB
/// in the default profile), more than a test thread's stack in debug.
fn with_big_stack(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn asked_and_told_windows_go_out_at_the_next_flush() {
    with_big_stack(|| {
        let mut k = Kcp::new(5, Wire::default());
        k.update(0);
        k.output_mut().0.clear();
        k.tell_window();
        assert!(k.tells_window());
        k.ask_window();
        k.flush();
        let cmds: Vec<(u8, u16)> = k
            .output()
            .0
            .iter()
            .flat_map(|d| {
                d.chunks(OVERHEAD)
                    .map(|h| (h[4], u16::from_le_bytes([h[6], h[7]])))
            })
            .collect();
        let wnd = k.config().rcv_wnd;
        assert_eq!(cmds, [(CMD_WASK, wnd), (CMD_WINS, wnd)]);
        assert!(!k.tells_window(), "told once per call");
        k.output_mut().0.clear();
        k.flush();
        assert!(k.output().0.is_empty());
    });
}

#[test]
fn presets_deliver_in_this_build_despite_loss() {
    with_big_stack(presets_deliver);
}

fn presets_deliver() {
    for cfg in [KcpConfig::default(), KcpConfig::fast()] {
        let max = cfg.max_message();
        let msgs: Vec<Vec<u8>> = (0..60usize)
            .map(|i| (0..(i * 97) % (max + 1)).map(|j| (i + j) as u8).collect())
            .chain([std::vec![7u8; max]])
            .collect();
        assert_eq!(exchange(cfg, &msgs, 7), msgs, "{cfg:?}");
    }
}

#[test]
fn a_clock_jump_of_half_the_range_skips_no_due_segment() {
    with_big_stack(clock_jump_of_half_the_range);
}

/// Timestamps compare by half range, so after a jump of about 2^31 ms
/// one segment in flight can read as due while an earlier one does not.
/// The flush that skips segments below `resend_floor` must resend
/// exactly what a full scan would (found by the `kcp_stateful` fuzzer).
fn clock_jump_of_half_the_range() {
    // No congestion window: both segments go out at once.
    let cfg = KcpConfig {
        nc: true,
        ..KcpConfig::default()
    };
    let mut a = Kcp::with_config(3, Wire::default(), cfg).unwrap();
    a.send(b"first").unwrap();
    a.update(0);
    a.update(50);
    a.send(b"second").unwrap();
    a.flush();
    a.output_mut().0.clear();
    let resend_at = |a: &Kcp<Wire>, sn: u32| a.snd.at(sn).resendts.get();
    let (r0, r1) = (resend_at(&a, 0), resend_at(&a, 1));
    assert!(r1 > r0 && r1 - r0 < 1000, "{r0} {r1}");
    // Half a range past the first resend time, and a little less past
    // the second: the first reads as not yet due, the second as due.
    let jump = r0 + (1u32 << 31) + (r1 - r0) / 2;
    a.update(jump);
    let mut resent = Vec::new();
    for d in &a.output().0 {
        let mut rest = &d[..];
        while let Some((h, _, after)) = split_segment(rest) {
            if h.cmd == CMD_PUSH {
                resent.push(h.sn.get());
            }
            rest = after;
        }
    }
    assert_eq!(resent, [1], "segments resent after the jump");
}

#[test]
fn a_message_over_the_limit_is_refused() {
    with_big_stack(message_over_the_limit);
}

fn message_over_the_limit() {
    let cfg = KcpConfig::default();
    let mut a = Kcp::with_config(3, Wire::default(), cfg).unwrap();
    let too_big = std::vec![0u8; cfg.max_message() + 1];
    assert_eq!(
        a.send(&too_big),
        Err(KcpError::DataTooLarge {
            max: cfg.max_message()
        })
    );
}
