//! See `secmon::fuzzing::config_load`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| secmon::fuzzing::config_load(data));
