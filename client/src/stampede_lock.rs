//! Distributed stampede protection: one factory per key across every instance, through a
//! lock key in Redis (an efficiency measure: the lock expires, and the factory runs anyway
//! when Redis cannot lock).

use crate::cache::HybridCache;
use crate::fill::Lease;
use crate::options::EntryOptions;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::time::Duration;

/// How often a caller waiting for another instance's factory looks for its value.
const LOCK_POLL: Duration = Duration::from_millis(20);

pub(crate) enum Locked<T> {
    /// Another instance produced the value meanwhile.
    Found(Arc<T>),
    /// This caller holds the lock (with this token) and runs the factory; `lease` comes
    /// from the read made once the lock was taken, when it could be made.
    Held { token: String, lease: Option<Lease> },
    /// The wait is over or Redis cannot lock: run the factory anyway.
    GaveUp,
}

/// The Redis key of `key`'s stampede lock.
pub(crate) fn lock_key(key: &str) -> String {
    format!("{key}:hc-lock")
}

/// A random token, so that only the holder releases a lock.
fn lock_token() -> String {
    format!("{:016x}", crate::random::random_u64())
}

impl HybridCache {
    /// Takes the key's lock in Redis, or waits (up to `wait`) for the holder's value to
    /// appear in Redis or for the lock to be free.
    pub(crate) async fn lock_or_wait<T>(
        &self,
        key: &str,
        wait: Duration,
        options: &EntryOptions,
    ) -> Locked<T>
    where
        T: DeserializeOwned + Send + Sync + 'static,
    {
        let lock = lock_key(key);
        let token = lock_token();
        let now = tokio::time::Instant::now();
        let deadline = now
            .checked_add(wait)
            .unwrap_or(now + Duration::from_secs(86_400));
        loop {
            match self.redis().try_lock(&lock, &token, wait).await {
                Ok(true) => {
                    // The previous holder may have written just before releasing; the
                    // lease of this read is the newest one before the factory.
                    return match self.read_l2_leased::<T>(key, options).await {
                        Ok((Some(found), _)) => {
                            let _ = self.redis().unlock(&lock, &token).await;
                            Locked::Found(found)
                        }
                        Ok((None, lease)) => Locked::Held { token, lease },
                        Err(_) => Locked::Held { token, lease: None },
                    };
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::debug!(error = %e, key, "stampede lock unavailable: running the factory");
                    return Locked::GaveUp;
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Locked::GaveUp;
            }
            tokio::time::sleep(LOCK_POLL).await;
            if let Ok(Some(found)) = self.read_l2::<T>(key, options).await {
                return Locked::Found(found);
            }
        }
    }
}
