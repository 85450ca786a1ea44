//! A saved entry (RDB, RESTORE payload) in the byte form of `hybridcache_module::saved`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hybridcache_module::fuzzing::entry_load(data));
