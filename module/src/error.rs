//! Every way a command can fail. redis-module turns a `std::error::Error` into the reply
//! `ERR <display>`, so the messages here carry no prefix.

use redis_module::RedisError;

/// A command failure; `Display` is the exact error reply.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CommandError {
    #[error(
        "syntax error, unknown option '{0}' (expected EX, PX, EXAT, PXAT, KEEPTTL, NX, XX, LEASE, GETVERSION or TAGS)"
    )]
    UnknownOption(String),
    #[error("syntax error, {0} needs a value")]
    MissingValue(&'static str),
    #[error("value is not an integer or out of range")]
    NotAnInteger,
    #[error("invalid expire time in '{0}' command")]
    InvalidExpire(&'static str),
    #[error("EX, PX, EXAT, PXAT and KEEPTTL are mutually exclusive")]
    ExpiryConflict,
    #[error("syntax error, unknown option '{0}' (expected LEASE or LEASE ALWAYS)")]
    UnknownFetchOption(String),
    #[error("syntax error, {0} given twice")]
    RepeatedOption(&'static str),
    #[error(
        "syntax error, unknown option '{0}' (expected HC.EVENTS SINCE <origin> <seq> [COUNT n])"
    )]
    UnknownEventsOption(String),
    #[error("COUNT must be between 1 and {0}")]
    EventsCount(u64),
    #[error("NX and XX are mutually exclusive")]
    ConditionConflict,
    #[error("TAGS needs at least one tag")]
    NoTags,
    #[error("too many tags: {given} (hybridcache.max-tags is {max})")]
    TooManyTags { given: u64, max: u64 },
    #[error("tag too long: {len} bytes (hybridcache.max-tag-length is {max})")]
    TagTooLong { len: u64, max: u64 },
    #[error("value too large: {len} bytes (hybridcache.max-value-size is {max})")]
    ValueTooLarge { len: u64, max: u64 },
}

impl CommandError {
    /// An option name as it may appear in an error reply: printable, short.
    pub fn unknown_option(raw: &[u8]) -> Self {
        Self::UnknownOption(crate::text::printable(raw, 32))
    }

    /// An unknown `HC.EVENTS` word, printable and short.
    pub fn unknown_events_option(raw: &[u8]) -> Self {
        Self::UnknownEventsOption(crate::text::printable(raw, 32))
    }

    /// An unknown `HC.FETCH` option, printable and short.
    pub fn unknown_fetch_option(raw: &[u8]) -> Self {
        Self::UnknownFetchOption(crate::text::printable(raw, 32))
    }
}

/// The key holds a value the module does not own. Not a `std::error::Error`, so that it
/// becomes Redis's own `WRONGTYPE` reply rather than the generic `ERR` one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WrongType;

impl From<WrongType> for RedisError {
    fn from(_: WrongType) -> Self {
        RedisError::WrongType
    }
}
