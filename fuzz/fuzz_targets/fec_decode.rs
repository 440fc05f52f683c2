//! FEC decoder on genuine, lost, replayed, mutated and arbitrary packets;
//! see `src/fec.rs`.
#![no_main]

use kcp_rs_fuzz::fec::{run, FecScenario};

libfuzzer_sys::fuzz_target!(|s: FecScenario| run(&s));
