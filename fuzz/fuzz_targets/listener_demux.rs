//! Datagrams over loopback into the real listeners; see `src/demux.rs`.
#![no_main]

use kcp_rs_fuzz::demux::{run, DemuxInput};

libfuzzer_sys::fuzz_target!(|input: DemuxInput| run(&input));
