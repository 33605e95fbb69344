//! See `secmon::fuzzing::replay_ui`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| secmon::fuzzing::replay_ui(data));
