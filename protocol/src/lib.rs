//! The wire contract shared by the hybridcache Redis module and its client.
//!
//! Everything both sides must agree on lives here and nowhere else:
//! - [`command`]: the names of the module's commands and their option keywords;
//! - [`DEFAULT_CHANNEL`] and [`CHANNEL_CONFIG`]: where invalidation events are published;
//! - [`InvalidationEvent`] and its JSON messages: [`MessageWriter`] writes them (several
//!   changes per message), [`decode_message`] reads them (and the format of older modules),
//!   versioned by [`FORMAT_VERSION`].
//!
//! # Example
//! ```
//! use hybridcache_protocol::{decode_message, Change, InvalidationEvent, Name, Op};
//!
//! let event = InvalidationEvent::new("a1b2c3d4e5f60718", 7, Some(0), Op::Set,
//!     Change::Keys { keys: vec![Name::from("user:1")] });
//! let bytes = event.encode();
//! assert_eq!(
//!     std::str::from_utf8(&bytes).unwrap(),
//!     r#"{"v":2,"origin":"a1b2c3d4e5f60718","events":[{"seq":7,"db":0,"op":"set","kind":"keys","keys":["user:1"]}]}"#
//! );
//! assert_eq!(decode_message(&bytes).unwrap(), vec![event]);
//! ```

#![warn(missing_docs)]

pub mod command;
mod event;
#[cfg(any(test, fuzzing))]
#[doc(hidden)]
pub mod fuzzing;
mod message;
mod name;
pub mod shard;
mod writer;

pub use event::{Change, InvalidationEvent, Op, TagMatch};
pub use message::{decode_message, DecodeError};
pub use name::Name;
pub use writer::{MessageWriter, Names};

/// The module's name, as `MODULE LIST` shows it and as the `INFO` section is called.
pub const MODULE_NAME: &str = "hybridcache";

/// The pub/sub channel invalidation events are published on unless configured otherwise.
pub const DEFAULT_CHANNEL: &str = "hc:invalidations";

/// The module configuration parameter (`CONFIG GET/SET`) that holds the channel name.
pub const CHANNEL_CONFIG: &str = "hybridcache.channel";

/// The event format version this crate writes (messages of several changes, see
/// [`decode_message`]). It reads this one and every one back to [`OLDEST_FORMAT_VERSION`]; a
/// reader that meets another version must treat it as "everything may have changed" (for a
/// client: drop its L1).
pub const FORMAT_VERSION: u32 = 2;

/// The oldest event format [`decode_message`] reads (1: one change per message).
pub const OLDEST_FORMAT_VERSION: u32 = 1;
