//! What becomes of a factory's output, in the foreground or the background: a value (or a
//! "not modified" that re-keeps the stale one) is served and filled (see `fill.rs`); a
//! failure serves the stale value (fail-safe), else the default, else the error.

use crate::cache::HybridCache;
use crate::error::{Error, FactoryFailed, Result};
use crate::events::CacheEvent;
use crate::factory::{FactoryOutput, Outcome};
use crate::fill::FillBasis;
use crate::l1::L1Entry;
use crate::options::EntryOptions;
use crate::store::Validators;
use serde::{de::DeserializeOwned, Serialize};
use std::sync::Arc;

/// The stale value a load may fall back on, and the invalidation-log mark taken before it
/// was read (fail-safe never keeps it if an invalidation since names it).
pub(crate) struct Stale<T> {
    pub(crate) value: Arc<T>,
    pub(crate) entry: Arc<L1Entry>,
    pub(crate) mark: u64,
}

impl<T> Clone for Stale<T> {
    fn clone(&self) -> Self {
        Self {
            value: self.value.clone(),
            entry: self.entry.clone(),
            mark: self.mark,
        }
    }
}

impl HybridCache {
    /// Fills what the factory produced (on `basis`, see `fill.rs`) and returns the value to
    /// serve. `changed_here`: this handle changed the key while the factory ran.
    pub(crate) async fn settle<T>(
        &self,
        key: &str,
        output: FactoryOutput<T>,
        stale: Option<Stale<T>>,
        basis: &FillBasis,
        changed_here: bool,
    ) -> Result<Arc<T>>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        let options = output.options.over(self.defaults());
        let validators = Validators {
            etag: output.etag,
            last_modified: output.last_modified,
        };
        let value = match output.outcome {
            Outcome::Value(value) => Arc::new(value),
            // The source says the stale value is still current: it is filled again, under
            // the same conditions as a new value.
            Outcome::NotModified => match stale {
                Some(stale) => stale.value,
                None => {
                    let error = Arc::new(FactoryFailed(
                        "the factory answered \"not modified\" but no stale value is kept".into(),
                    ));
                    return self.fail(key, error, None, None, &options).await;
                }
            },
            Outcome::Failed { error, default } => {
                return self.fail(key, error, default, stale, &options).await;
            }
        };
        self.fill(
            key,
            value.clone(),
            &options,
            validators,
            basis,
            changed_here,
        )
        .await;
        Ok(value)
    }

    /// A failed factory: the stale value (fail-safe), else the default, else the error.
    pub(crate) async fn fail<T>(
        &self,
        key: &str,
        error: Arc<dyn std::error::Error + Send + Sync>,
        default: Option<T>,
        stale: Option<Stale<T>>,
        options: &EntryOptions,
    ) -> Result<Arc<T>>
    where
        T: Send + Sync + 'static,
    {
        tracing::warn!(%error, key, "factory failed");
        self.emit("factory_error", || CacheEvent::FactoryError {
            key: key.to_string(),
            error: error.to_string(),
        });
        if let Some(stale) = stale {
            self.tier()
                .activate_fail_safe(key, &stale.entry, stale.mark, options);
            return Ok(stale.value);
        }
        match default {
            Some(default) => Ok(Arc::new(default)),
            None => Err(Error::Factory(error)),
        }
    }
}
