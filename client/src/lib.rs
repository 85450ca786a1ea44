//! # hybridcache
//!
//! A two-tier cache for async Rust services: decoded values in process memory (L1, [moka])
//! in front of Redis (L2), with the [hybridcache Redis module] keeping server-side tags and
//! publishing an invalidation event in the same atomic step as every write. Every
//! [`HybridCache`] subscribes to those events and drops exactly the L1 entries they name, so
//! no instance keeps serving a value another instance changed.
//!
//! ```no_run
//! use hybridcache::{EntryOptions, HybridCache};
//! use std::time::Duration;
//!
//! # async fn example() -> Result<(), hybridcache::Error> {
//! let cache = HybridCache::builder("redis://127.0.0.1:6379/")
//!     .namespace("app:")
//!     .default_options(EntryOptions::new().ttl(Duration::from_secs(600)))
//!     .build()
//!     .await?;
//! cache.set("greeting", "hello".to_string(), EntryOptions::new().tags(["greetings"])).await?;
//! let greeting = cache.get::<String>("greeting").await?;
//! assert_eq!(greeting.as_deref().map(String::as_str), Some("hello"));
//! cache.remove_by_tag("greetings").await?;
//! # Ok(()) }
//! ```
//!
//! Consistency, in short:
//! - the subscription is confirmed before L1 serves anything, and L1 serves nothing while
//!   it is down (PING health checks find a silently dead link within a few seconds);
//! - every L1 entry remembers the server `origin` and `version` it was read or written at,
//!   so an event for an older version drops it and the writer's own event does not;
//! - a value read from Redis before an invalidation arrived is never kept after it;
//! - a value a factory computed is written to Redis only if nothing changed the key (or
//!   removed one of its tags) since the read made before the factory ran (a fill lease,
//!   `HC.SET ... LEASE`); otherwise it is returned to its caller and cached nowhere;
//! - an L1 copy is not served past the entry's deadline in Redis (except by fail-safe,
//!   when the entry opted in), and a TTL changed by any client drops every L1 copy;
//! - [`build`](HybridCacheBuilder::build) checks that the module is loaded, speaks this
//!   client's protocol and publishes on the client's channel, on every primary;
//! - a gap in an origin's event sequence numbers, or an event of an unknown format, marks
//!   all of L1 stale; a replica that takes over announces itself and L1 is cleared;
//! - [`get_or_set_many`](HybridCache::get_or_set_many) loads many keys with one factory
//!   call for all the misses, each fill race-free as above and each key protected from
//!   stampedes as in [`get_or_set`](HybridCache::get_or_set);
//! - Redis Cluster works through [`HybridCache::cluster_builder`] with the same API.
//!
//! [moka]: https://docs.rs/moka
//! [hybridcache Redis module]: https://github.com/hybridcache/hybridcache

#![warn(missing_docs)]

mod background;
mod batch;
mod builder;
mod cache;
mod catch_up;
mod circuit;
mod clear;
mod coalesce;
mod connections;
mod error;
mod event_feed;
mod events;
mod factory;
mod factory_outcome;
mod fill;
mod format;
mod get_or_set;
mod get_or_set_many;
mod hub;
mod invalidation_log;
mod l1;
mod l1_admission;
mod l2;
mod l2_batch;
mod local_tier;
mod nodes;
mod options;
mod outbox;
mod pipeline;
mod random;
mod server_check;
mod shard_subscription;
mod soft_expire;
mod stampede_lock;
mod stats;
mod store;
mod stream_order;
mod subscription;

pub use builder::HybridCacheBuilder;
pub use cache::HybridCache;
pub use clear::CLEAR_TAG;
pub use error::{Error, FactoryFailed, Result};
pub use events::CacheEvent;
pub use factory::{FactoryContext, FactoryOutput};
pub use format::Format;
pub use options::{EntryOptions, DEFAULT_FAIL_SAFE_THROTTLE};
pub use server_check::ServerCheck;
pub use stats::Stats;
