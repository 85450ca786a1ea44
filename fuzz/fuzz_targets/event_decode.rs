//! An invalidation event as it arrives on the channel.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hybridcache_protocol::fuzzing::event_decode(data));
