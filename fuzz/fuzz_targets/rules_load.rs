//! See `secmon::fuzzing::rules_load`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| secmon::fuzzing::rules_load(data));
