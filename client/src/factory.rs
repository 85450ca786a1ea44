//! What a factory of [`get_or_set_with`](crate::HybridCache::get_or_set_with) receives and
//! returns: the stale value and its validators (conditional refresh), the entry's options
//! (adaptive caching), and ways to answer "not modified" or to declare failure.

use crate::error::FactoryFailed;
use crate::options::EntryOptions;
use std::sync::Arc;
use std::time::SystemTime;

/// Given to a factory: what the cache knows about the entry it is asked to produce.
///
/// ```
/// use hybridcache::{EntryOptions, FactoryContext, FactoryOutput};
/// use std::time::Duration;
///
/// // A factory that revalidates with an ETag, caches "hot" products longer, and falls back
/// // to a default when the source is down and nothing stale is kept.
/// async fn load(ctx: FactoryContext<String>) -> FactoryOutput<String> {
///     let etag = ctx.etag().map(str::to_owned);
///     match fetch_from_source(etag.as_deref()).await {
///         Ok(Some((body, new_etag))) => {
///             let hot = body.contains("hot");
///             let mut ctx = ctx;
///             if hot {
///                 let longer = ctx.options().clone().ttl(Duration::from_secs(3600));
///                 ctx.set_options(longer);
///             }
///             ctx.modified(body, Some(new_etag), None)
///         }
///         Ok(None) => ctx.not_modified(),
///         Err(e) => ctx.fail_or(e, "unavailable".to_string()),
///     }
/// }
/// # async fn fetch_from_source(_etag: Option<&str>) -> Result<Option<(String, String)>, String> { Ok(None) }
/// ```
#[derive(Debug)]
pub struct FactoryContext<T> {
    pub(crate) stale: Option<Arc<T>>,
    pub(crate) etag: Option<String>,
    pub(crate) last_modified: Option<SystemTime>,
    pub(crate) options: EntryOptions,
}

impl<T> FactoryContext<T> {
    /// The last value this instance held for the key, when it still keeps one (it has
    /// fail-safe on, or is being refreshed eagerly): the base of a conditional refresh.
    pub fn stale_value(&self) -> Option<&Arc<T>> {
        self.stale.as_ref()
    }

    /// The ETag the stale value was produced with.
    pub fn etag(&self) -> Option<&str> {
        self.etag.as_deref()
    }

    /// The Last-Modified time the stale value was produced with.
    pub fn last_modified(&self) -> Option<SystemTime> {
        self.last_modified
    }

    /// The options the entry will be cached with.
    pub fn options(&self) -> &EntryOptions {
        &self.options
    }

    /// Adaptive caching: cache the produced value with these options instead (TTL, tags,
    /// skip flags, fail-safe...), e.g. a shorter TTL for a value that changes often.
    pub fn set_options(&mut self, options: EntryOptions) {
        self.options = options;
    }

    /// Adaptive caching for tags known only once the value is loaded (e.g. its category):
    /// the entry gets these tags instead of the ones it was asked with.
    pub fn set_tags<I, S>(&mut self, tags: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.options = std::mem::take(&mut self.options).tags(tags);
    }

    /// The produced value.
    pub fn value(self, value: T) -> FactoryOutput<T> {
        self.modified(value, None, None)
    }

    /// The produced value with its validators, which the next conditional refresh receives.
    pub fn modified(
        self,
        value: T,
        etag: Option<String>,
        last_modified: Option<SystemTime>,
    ) -> FactoryOutput<T> {
        FactoryOutput {
            outcome: Outcome::Value(value),
            options: self.options,
            etag,
            last_modified,
        }
    }

    /// The source says the stale value is still current: it is cached again (with a new
    /// lifetime) instead of a new value. Without a stale value this is a failure.
    pub fn not_modified(self) -> FactoryOutput<T> {
        FactoryOutput {
            outcome: Outcome::NotModified,
            etag: self.etag,
            last_modified: self.last_modified,
            options: self.options,
        }
    }

    /// The factory failed: the stale value is served if fail-safe allows, else the call
    /// fails with [`Error::Factory`](crate::Error::Factory).
    pub fn fail(self, reason: impl std::fmt::Display) -> FactoryOutput<T> {
        self.failed_with(Arc::new(FactoryFailed(reason.to_string())))
    }

    /// Like [`fail`](Self::fail) with the error itself, so that the caller can match or
    /// downcast it from [`Error::Factory`](crate::Error::Factory).
    pub fn fail_with(
        self,
        error: impl std::error::Error + Send + Sync + 'static,
    ) -> FactoryOutput<T> {
        self.failed_with(Arc::new(error))
    }

    /// A failure with its error value (`get_or_set`'s factory error).
    pub(crate) fn failed_with(
        self,
        error: Arc<dyn std::error::Error + Send + Sync>,
    ) -> FactoryOutput<T> {
        FactoryOutput {
            outcome: Outcome::Failed {
                error,
                default: None,
            },
            options: self.options,
            etag: None,
            last_modified: None,
        }
    }

    /// Like [`fail`](Self::fail), but when there is no stale value `default` is returned
    /// (and not cached) instead of an error: FusionCache's fail-safe default value.
    pub fn fail_or(self, reason: impl std::fmt::Display, default: T) -> FactoryOutput<T> {
        FactoryOutput {
            outcome: Outcome::Failed {
                error: Arc::new(FactoryFailed(reason.to_string())),
                default: Some(default),
            },
            options: self.options,
            etag: None,
            last_modified: None,
        }
    }
}

/// What a factory of [`get_or_set_with`](crate::HybridCache::get_or_set_with) produced; made
/// by the methods of [`FactoryContext`].
#[derive(Debug)]
pub struct FactoryOutput<T> {
    pub(crate) outcome: Outcome<T>,
    pub(crate) options: EntryOptions,
    pub(crate) etag: Option<String>,
    pub(crate) last_modified: Option<SystemTime>,
}

#[derive(Debug)]
pub(crate) enum Outcome<T> {
    Value(T),
    NotModified,
    Failed {
        error: Arc<dyn std::error::Error + Send + Sync>,
        default: Option<T>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ctx(stale: Option<u32>) -> FactoryContext<u32> {
        FactoryContext {
            stale: stale.map(Arc::new),
            etag: Some("v1".into()),
            last_modified: None,
            options: EntryOptions::new().ttl(Duration::from_secs(1)),
        }
    }

    #[test]
    fn adapted_options_travel_with_the_value() {
        let mut c = ctx(None);
        c.set_options(EntryOptions::new().ttl(Duration::from_secs(9)));
        let out = c.modified(5, Some("v2".into()), None);
        assert!(matches!(out.outcome, Outcome::Value(5)));
        assert_eq!(out.options.ttl, Some(Duration::from_secs(9)));
        assert_eq!(out.etag.as_deref(), Some("v2"));
    }

    #[test]
    fn tags_can_be_set_once_the_value_is_known() {
        let mut c = ctx(None);
        c.set_tags(["category:lamps"]);
        assert_eq!(c.options().tag_list(), ["category:lamps"]);
        assert_eq!(c.options().ttl, Some(Duration::from_secs(1)));
    }

    #[test]
    fn not_modified_keeps_the_validators_and_failures_carry_their_default() {
        let out = ctx(Some(1)).not_modified();
        assert!(matches!(out.outcome, Outcome::NotModified));
        assert_eq!(out.etag.as_deref(), Some("v1"));
        let out = ctx(None).fail_or("down", 0);
        assert!(matches!(
            out.outcome,
            Outcome::Failed { ref error, default: Some(0) } if error.to_string() == "down"
        ));
    }
}
