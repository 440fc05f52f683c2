//! The session configuration of the bulk-transfer tests, shared by
//! `#[path]` (the net tests do not use `support/mod.rs`, which needs the
//! simulator).

use kcp_rs::net::SessionConfig;
use kcp_rs::KcpConfig;

/// A configuration for bulk transfer: stream mode, large windows.
pub fn bulk_config() -> SessionConfig {
    SessionConfig {
        kcp: KcpConfig {
            stream: true,
            snd_wnd: 1024,
            rcv_wnd: 1024,
            ..KcpConfig::fast()
        },
        send_queue_limit: 4 << 20,
        recv_queue_limit: 4 << 20,
        ..SessionConfig::default()
    }
}
