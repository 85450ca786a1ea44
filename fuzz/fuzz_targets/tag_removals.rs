//! Tag removals (`HC.DELTAG`, `HC.DELTAGALL`) and timer batches against a model of the index:
//! the input is a program of two-byte steps (`hybridcache_module::fuzzing::tag_removals`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hybridcache_module::fuzzing::tag_removals(data));
