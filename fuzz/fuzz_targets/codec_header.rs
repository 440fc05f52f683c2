//! Header parse/emit round trip and the segment iterator on arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kcp_rs_fuzz::codec::run(data));
