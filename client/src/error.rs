//! The errors of this crate.

use std::sync::Arc;
use std::time::Duration;

/// Everything that can go wrong. Cheap to clone, so that callers waiting on the same
/// in-flight load share one error.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// Redis could not be reached or answered with an error.
    #[error("redis: {0}")]
    Redis(#[source] Arc<redis::RedisError>),
    /// Redis answered something this client does not understand (e.g. the module is missing
    /// or of another version).
    #[error("unexpected reply to {command}: {detail}")]
    UnexpectedReply {
        /// The command.
        command: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// A value could not be encoded or decoded with the configured [`Format`](crate::Format).
    #[error("cannot {action} a value: {detail}")]
    Serialization {
        /// `encode` or `decode`.
        action: &'static str,
        /// The serializer's message.
        detail: String,
    },
    /// The factory of [`get_or_set`](crate::HybridCache::get_or_set) failed.
    #[error("factory failed: {0}")]
    Factory(#[source] Arc<dyn std::error::Error + Send + Sync>),
    /// Redis did not answer within the command timeout.
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    /// The invalidation subscription was not confirmed in time when building the cache.
    #[error("the invalidation subscription was not confirmed within {waited:?} (last attempt: {reason})")]
    SubscriptionTimeout {
        /// How long the builder waited.
        waited: Duration,
        /// Why the last attempt failed (e.g. `NOPERM` when the user lacks the channel).
        reason: String,
    },
    /// The builder was given something unusable.
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl From<redis::RedisError> for Error {
    fn from(e: redis::RedisError) -> Self {
        Error::Redis(Arc::new(e))
    }
}

/// This crate's `Result`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
