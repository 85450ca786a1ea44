//! Random numbers where quality does not matter (jitter, lock tokens): std's randomly seeded
//! hasher over the clock, without a dependency.

use std::hash::{BuildHasher, Hasher};

/// A random 64-bit number, different at every call.
pub(crate) fn random_u64() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.finish()
}
