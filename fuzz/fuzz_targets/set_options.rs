//! `HC.SET` options: the input split on NUL bytes into arguments.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hybridcache_module::fuzzing::set_options(data));
