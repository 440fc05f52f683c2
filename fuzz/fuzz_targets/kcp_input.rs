//! Arbitrary datagrams into a session mid-conversation; see `src/input.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kcp_rs_fuzz::input::run(data));
