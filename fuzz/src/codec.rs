//! `codec_header`: header parse/emit and the segment iterator on arbitrary
//! bytes.
//!
//! - [`Header::parse`] succeeds exactly when 24 bytes are there, and
//!   [`Header::emit`] writes back the very bytes it parsed, touching nothing
//!   past the header;
//! - [`peek_conv`] reads the first four bytes;
//! - [`Segments`] yields segments whose data is `len` bytes long and whose
//!   command is known; re-emitting them rebuilds the datagram's prefix byte
//!   for byte; it stops after the first error, and errs only where the rest
//!   really is a truncated header, a `len` past the end or an unknown command.

use kcp_rs::codec::{peek_conv, Header, Segments};
use kcp_rs::KcpError;

/// The harness.
///
/// # Panics
/// When an invariant breaks (that is the point).
pub fn run(data: &[u8]) {
    let conv = data
        .get(..4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    assert_eq!(peek_conv(data), conv);

    match Header::parse(data) {
        Ok(h) => {
            assert!(data.len() >= Header::LEN);
            let mut buf = [0xa5u8; Header::LEN + 8];
            h.emit(&mut buf);
            assert_eq!(&buf[..Header::LEN], &data[..Header::LEN]);
            assert_eq!(
                &buf[Header::LEN..],
                &[0xa5; 8],
                "emit wrote past the header"
            );
            assert_eq!(Header::parse(&buf), Ok(h));
        }
        Err(e) => {
            assert!(
                data.len() < Header::LEN,
                "parse refused {} bytes",
                data.len()
            );
            assert_eq!(e, KcpError::InvalidPacket);
        }
    }

    let mut rebuilt = Vec::with_capacity(data.len());
    let mut failed = false;
    for seg in Segments::new(data) {
        assert!(!failed, "Segments went on after an error");
        match seg {
            Ok((h, body)) => {
                assert!(h.has_known_cmd());
                assert_eq!(body.len(), h.len as usize);
                let at = rebuilt.len();
                rebuilt.resize(at + Header::LEN, 0);
                h.emit(&mut rebuilt[at..]);
                rebuilt.extend_from_slice(body);
            }
            Err(e) => {
                assert_eq!(e, KcpError::InvalidPacket);
                failed = true;
            }
        }
    }
    assert_eq!(&data[..rebuilt.len()], &rebuilt[..]);
    let rest = &data[rebuilt.len()..];
    if !failed {
        assert!(rest.is_empty(), "Segments stopped early without an error");
        return;
    }
    let bad = match Header::parse(rest) {
        Err(_) => true,
        Ok(h) => h.len as usize > rest.len() - Header::LEN || !h.has_known_cmd(),
    };
    assert!(bad, "Segments refused a well-formed segment");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edge_inputs_hold() {
        run(&[]);
        run(&[1, 2, 3]);
        let mut seg = [0u8; 24 + 3];
        seg[4] = 81;
        seg[20] = 3;
        run(&seg);
        run(&seg[..26]);
        seg[4] = 80;
        run(&seg);
    }
}
