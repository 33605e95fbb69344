//! See `secmon::fuzzing::decode_enrich`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| secmon::fuzzing::decode_enrich(data));
