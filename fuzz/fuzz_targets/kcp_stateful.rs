//! Arbitrary operation sequences on a pair; see `src/stateful.rs`.
#![no_main]

use kcp_rs_fuzz::stateful::{run, Scenario};

libfuzzer_sys::fuzz_target!(|s: Scenario| run(&s));
