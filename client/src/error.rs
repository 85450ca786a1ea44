//! The errors of this crate.

use crate::server_check::ServerCheck;
use std::sync::Arc;
use std::time::Duration;

/// Everything that can go wrong. Cheap to clone, so that callers waiting on the same
/// in-flight load share one error.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Redis could not be reached or answered with an error.
    ///
    /// The message includes Redis's; it is not also reported as [`source`] (error reporters
    /// such as anyhow's would print it twice). Match the variant to reach the `RedisError`.
    ///
    /// [`source`]: std::error::Error::source
    #[error("redis: {0}")]
    Redis(Arc<redis::RedisError>),
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
    /// The factory of [`get_or_set`](crate::HybridCache::get_or_set) failed. The message
    /// includes the factory's; match the variant (and downcast) to reach its error.
    #[error("factory failed: {0}")]
    Factory(Arc<dyn std::error::Error + Send + Sync>),
    /// The factory of [`get_or_set_many`](crate::HybridCache::get_or_set_many) returned no
    /// value for a key it was asked for; the whole call fails.
    #[error("the factory returned no value for key {key:?}")]
    FactoryMissingKey {
        /// The key, as the caller gave it.
        key: String,
    },
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
    /// A factory ran past its hard timeout and no stale value could be served.
    #[error("the factory did not finish within {0:?}")]
    FactoryTimeout(Duration),
    /// The circuit breaker is open: Redis failed too often and is not called for a while.
    #[error("redis is not called for a while after repeated failures (circuit breaker open)")]
    CircuitOpen,
    /// The builder was given something unusable.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// `build()` checked the server (every primary of a cluster) with `HC.HELLO` and it does
    /// not fit this client: the module is missing or of another version, or it publishes
    /// its invalidation events on another channel than the client subscribes to.
    #[error("incompatible server {node}: {check}: found {found}; expected {expected}")]
    IncompatibleServer {
        /// The server (`host:port`).
        node: String,
        /// Which check failed.
        check: ServerCheck,
        /// What the server reported.
        found: String,
        /// What this client needs.
        expected: String,
    },
}

impl From<redis::RedisError> for Error {
    fn from(e: redis::RedisError) -> Self {
        Error::Redis(Arc::new(e))
    }
}

impl Error {
    /// Whether the error means Redis could not be reached (as opposed to Redis answering
    /// with an error): these count for the circuit breaker, allow fail-safe, and queue
    /// writes for auto-recovery.
    pub fn is_unreachable(&self) -> bool {
        match self {
            Error::Timeout(_) | Error::CircuitOpen => true,
            Error::Redis(e) => {
                e.is_io_error()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()
                    || e.is_timeout()
                    || matches!(
                        e.kind(),
                        redis::ErrorKind::Server(
                            redis::ServerErrorKind::ClusterDown
                                | redis::ServerErrorKind::TryAgain
                                | redis::ServerErrorKind::MasterDown
                                | redis::ServerErrorKind::BusyLoading
                        )
                    )
            }
            _ => false,
        }
    }
}

/// A factory's declared failure ([`FactoryContext::fail`](crate::FactoryContext::fail)).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct FactoryFailed(pub String);

/// This crate's `Result`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    /// Every message of an error's chain, as error reporters print them.
    fn chain(e: &Error) -> Vec<String> {
        let mut out = vec![e.to_string()];
        let mut next = e.source();
        while let Some(source) = next {
            out.push(source.to_string());
            next = source.source();
        }
        out
    }

    #[test]
    fn a_redis_error_is_printed_once_in_a_chain() {
        let e = Error::from(redis::RedisError::from((
            redis::ErrorKind::Io,
            "connection refused",
        )));
        let chain = chain(&e);
        assert_eq!(chain.len(), 1, "{chain:?}");
        assert_eq!(chain.concat().matches("connection refused").count(), 1);
    }

    #[test]
    fn a_factory_error_is_printed_once_in_a_chain() {
        let e = Error::Factory(Arc::new(FactoryFailed("no such product".into())));
        let chain = chain(&e);
        assert_eq!(chain, ["factory failed: no such product"]);
    }
}
