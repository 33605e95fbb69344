//! See `secmon::fuzzing::control_protocol`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| secmon::fuzzing::control_protocol(data));
