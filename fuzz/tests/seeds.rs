//! Every committed seed passes its harness: a seed that trips a harness is
//! either a bug in the core or in the harness, and must not sit in the corpus.

use std::fs;
use std::path::Path;

use arbitrary::{Arbitrary, Unstructured};

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("seeds")
        .join(target);
    let mut files: Vec<_> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no seeds in {}", dir.display());
    files.iter().map(|f| fs::read(f).unwrap()).collect()
}

#[test]
fn kcp_input_seeds_pass() {
    for s in seeds("kcp_input") {
        kcp_rs_fuzz::input::run(&s);
    }
}

#[test]
fn codec_header_seeds_pass() {
    for s in seeds("codec_header") {
        kcp_rs_fuzz::codec::run(&s);
    }
}

#[test]
fn kcp_stateful_seeds_pass() {
    for s in seeds("kcp_stateful") {
        let scenario = kcp_rs_fuzz::stateful::Scenario::arbitrary(&mut Unstructured::new(&s))
            .expect("seed decodes");
        kcp_rs_fuzz::stateful::run(&scenario);
    }
}

#[test]
fn fec_decode_seeds_pass() {
    for s in seeds("fec_decode") {
        let scenario = kcp_rs_fuzz::fec::FecScenario::arbitrary(&mut Unstructured::new(&s))
            .expect("seed decodes");
        kcp_rs_fuzz::fec::run(&scenario);
    }
}

#[test]
fn listener_demux_seeds_pass() {
    for s in seeds("listener_demux") {
        // As libfuzzer-sys decodes it.
        let input = kcp_rs_fuzz::demux::DemuxInput::arbitrary_take_rest(Unstructured::new(&s))
            .expect("seed decodes");
        kcp_rs_fuzz::demux::run(&input);
    }
}
