//! Limits on what one `HC.SET` may store, so that a client cannot make one entry (or one
//! command's tag list) arbitrarily large. Module configuration, changeable at run time:
//!
//! | setting | default | range |
//! |---|---|---|
//! | `hybridcache.max-tags` | 256 | 1 .. 65 535 |
//! | `hybridcache.max-tag-length` | 1024 (bytes) | 1 .. 1 MiB |
//! | `hybridcache.max-value-size` | 512 MiB (Redis's `proto-max-bulk-len`) | 1 .. 4 GiB - 1 |
//! | `hybridcache.fill-leases` | 100 000 | 1 .. 2^30 |
//! | `hybridcache.fill-tag-removals` | 100 000 | 1 .. 2^30 |
//! | `hybridcache.event-message-bytes` | 64 KiB | 0 .. 512 MiB |
//! | `hybridcache.event-log-changes` | 100 000 | 0 .. 2^30 |
//! | `hybridcache.event-log-bytes` | 16 MiB | 0 .. 4 GiB - 1 |
//!
//! `fill-leases` and `fill-tag-removals` bound the fill-lease table ([`crate::fills`]); a
//! fill whose lease was pushed out is refused. `event-message-bytes`: a turn's message that
//! reaches this size is published at once and the turn goes on in a new one (0: every
//! change in a message of its own). The last two bound the event log ([`crate::event_log`]):
//! changes kept for `HC.EVENTS SINCE`, and the bytes of their messages (0: no log).
//!
//! Limits apply to writes only: data already stored, loaded or restored is never refused.

use crate::error::CommandError;
use crate::event_log::LogBounds;
use crate::fills::FillBounds;
use redis_module::{raw, Context};
use std::ffi::CStr;
use std::os::raw::{c_char, c_int, c_longlong, c_void};
use std::ptr;
use std::sync::atomic::{AtomicI64, Ordering};

/// What one write may store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Tags one `HC.SET` may list.
    pub max_tags: u64,
    /// Bytes of one tag name.
    pub max_tag_length: u64,
    /// Bytes of one value.
    pub max_value_size: u64,
}

impl Limits {
    pub const DEFAULT: Limits = Limits {
        max_tags: 256,
        max_tag_length: 1024,
        max_value_size: 512 * 1024 * 1024,
    };

    /// Whether a write of a `value_len`-byte value with `tags` (as given) fits.
    pub fn check<T: AsRef<[u8]>>(&self, value_len: usize, tags: &[T]) -> Result<(), CommandError> {
        if value_len as u64 > self.max_value_size {
            return Err(CommandError::ValueTooLarge {
                len: value_len as u64,
                max: self.max_value_size,
            });
        }
        if tags.len() as u64 > self.max_tags {
            return Err(CommandError::TooManyTags {
                given: tags.len() as u64,
                max: self.max_tags,
            });
        }
        if let Some(long) = tags
            .iter()
            .map(|t| t.as_ref().len() as u64)
            .find(|len| *len > self.max_tag_length)
        {
            return Err(CommandError::TagTooLong {
                len: long,
                max: self.max_tag_length,
            });
        }
        Ok(())
    }
}

/// One numeric setting: its name (without the module prefix), bounds and current value.
struct Setting {
    name: &'static CStr,
    default: i64,
    min: i64,
    max: i64,
    flags: u32,
    value: AtomicI64,
}

static SETTINGS: [Setting; 8] = [
    Setting {
        name: c"max-tags",
        default: Limits::DEFAULT.max_tags as i64,
        min: 1,
        max: 65_535,
        flags: raw::REDISMODULE_CONFIG_DEFAULT,
        value: AtomicI64::new(Limits::DEFAULT.max_tags as i64),
    },
    Setting {
        name: c"max-tag-length",
        default: Limits::DEFAULT.max_tag_length as i64,
        min: 1,
        max: 1024 * 1024,
        flags: raw::REDISMODULE_CONFIG_MEMORY,
        value: AtomicI64::new(Limits::DEFAULT.max_tag_length as i64),
    },
    Setting {
        name: c"max-value-size",
        default: Limits::DEFAULT.max_value_size as i64,
        min: 1,
        max: u32::MAX as i64,
        flags: raw::REDISMODULE_CONFIG_MEMORY,
        value: AtomicI64::new(Limits::DEFAULT.max_value_size as i64),
    },
    Setting {
        name: c"fill-leases",
        default: DEFAULT_FILL_BOUNDS.max_leases as i64,
        min: 1,
        max: 1 << 30,
        flags: raw::REDISMODULE_CONFIG_DEFAULT,
        value: AtomicI64::new(DEFAULT_FILL_BOUNDS.max_leases as i64),
    },
    Setting {
        name: c"fill-tag-removals",
        default: DEFAULT_FILL_BOUNDS.max_tag_removals as i64,
        min: 1,
        max: 1 << 30,
        flags: raw::REDISMODULE_CONFIG_DEFAULT,
        value: AtomicI64::new(DEFAULT_FILL_BOUNDS.max_tag_removals as i64),
    },
    Setting {
        name: c"event-message-bytes",
        default: DEFAULT_EVENT_MESSAGE_BYTES,
        min: 0,
        max: 512 * 1024 * 1024,
        flags: raw::REDISMODULE_CONFIG_MEMORY,
        value: AtomicI64::new(DEFAULT_EVENT_MESSAGE_BYTES),
    },
    Setting {
        name: c"event-log-changes",
        default: DEFAULT_LOG_BOUNDS.max_changes as i64,
        min: 0,
        max: 1 << 30,
        flags: raw::REDISMODULE_CONFIG_DEFAULT,
        value: AtomicI64::new(DEFAULT_LOG_BOUNDS.max_changes as i64),
    },
    Setting {
        name: c"event-log-bytes",
        default: DEFAULT_LOG_BOUNDS.max_bytes as i64,
        min: 0,
        max: u32::MAX as i64,
        flags: raw::REDISMODULE_CONFIG_MEMORY,
        value: AtomicI64::new(DEFAULT_LOG_BOUNDS.max_bytes as i64),
    },
];

/// A turn's message is published once it reaches this size.
const DEFAULT_EVENT_MESSAGE_BYTES: i64 = 64 * 1024;

/// The event log keeps the last 100 000 changes, within 16 MiB (a `set` change of a
/// 20-byte key takes about 75 bytes). Like Redis's replication backlog, it counts in
/// `used_memory` and is never evicted.
pub(crate) const DEFAULT_LOG_BOUNDS: LogBounds = LogBounds {
    max_changes: 100_000,
    max_bytes: 16 * 1024 * 1024,
};

fn setting(i: usize) -> Option<i64> {
    SETTINGS.get(i).map(|s| s.value.load(Ordering::Relaxed))
}

/// `hybridcache.event-message-bytes`.
pub(crate) fn event_message_bytes() -> usize {
    setting(5).map_or(0, |v| usize::try_from(v).unwrap_or(0))
}

/// `hybridcache.event-log-changes` and `hybridcache.event-log-bytes`.
pub(crate) fn event_log_bounds() -> LogBounds {
    let get = |i: usize, default: usize| {
        setting(i).map_or(default, |v| usize::try_from(v).unwrap_or(default))
    };
    LogBounds {
        max_changes: get(6, DEFAULT_LOG_BOUNDS.max_changes),
        max_bytes: get(7, DEFAULT_LOG_BOUNDS.max_bytes),
    }
}

/// Fill leases kept at most (`hybridcache.fill-leases`) and tag removals remembered for them
/// (`hybridcache.fill-tag-removals`): about 100 bytes each plus the name, so the defaults
/// bound the table near 10 MB + 10 MB with 64-byte names.
const DEFAULT_FILL_BOUNDS: FillBounds = FillBounds {
    max_leases: 100_000,
    max_tag_removals: 100_000,
};

/// The fill-lease bounds in force.
pub(crate) fn fill_bounds() -> FillBounds {
    let get = |i: usize, default: usize| {
        SETTINGS.get(i).map_or(default, |s| {
            usize::try_from(s.value.load(Ordering::Relaxed)).unwrap_or(default)
        })
    };
    FillBounds {
        max_leases: get(3, DEFAULT_FILL_BOUNDS.max_leases),
        max_tag_removals: get(4, DEFAULT_FILL_BOUNDS.max_tag_removals),
    }
}

/// The limits in force.
pub fn current() -> Limits {
    let get = |i: usize| {
        SETTINGS.get(i).map_or(0, |s| {
            u64::try_from(s.value.load(Ordering::Relaxed)).unwrap_or(0)
        })
    };
    Limits {
        max_tags: get(0),
        max_tag_length: get(1),
        max_value_size: get(2),
    }
}

unsafe extern "C" fn get_setting(_name: *const c_char, privdata: *mut c_void) -> c_longlong {
    privdata
        .cast::<Setting>()
        .as_ref()
        .map_or(0, |s| s.value.load(Ordering::Relaxed))
}

unsafe extern "C" fn set_setting(
    _name: *const c_char,
    value: c_longlong,
    privdata: *mut c_void,
    _err: *mut *mut raw::RedisModuleString,
) -> c_int {
    // Redis has checked the bounds given at registration.
    match privdata.cast::<Setting>().as_ref() {
        Some(setting) => {
            setting.value.store(value, Ordering::Relaxed);
            raw::REDISMODULE_OK as c_int
        }
        None => raw::REDISMODULE_ERR as c_int,
    }
}

/// Registers the settings; the caller loads the configuration afterwards.
pub fn register(ctx: &Context) -> Result<(), String> {
    // SAFETY: called from OnLoad with its context; names are NUL-terminated statics and the
    // private data points into a static.
    unsafe {
        let Some(register) = raw::RedisModule_RegisterNumericConfig else {
            return Err("this Redis has no module configuration API (Redis 7.0+ needed)".into());
        };
        for setting in &SETTINGS {
            let status = register(
                ctx.get_raw(),
                setting.name.as_ptr(),
                setting.default,
                setting.flags,
                setting.min,
                setting.max,
                Some(get_setting),
                Some(set_setting),
                None,
                ptr::from_ref(setting).cast_mut().cast(),
            );
            if status != raw::REDISMODULE_OK as c_int {
                return Err(format!(
                    "cannot register hybridcache.{}",
                    setting.name.to_string_lossy()
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: Limits = Limits {
        max_tags: 2,
        max_tag_length: 3,
        max_value_size: 10,
    };

    #[test]
    fn writes_within_the_limits_pass() {
        assert_eq!(SMALL.check(10, &[&b"abc"[..], &b"de"[..]]), Ok(()));
        assert_eq!(SMALL.check::<&[u8]>(0, &[]), Ok(()));
    }

    #[test]
    fn each_limit_has_its_own_error() {
        assert_eq!(
            SMALL.check::<&[u8]>(11, &[]),
            Err(CommandError::ValueTooLarge { len: 11, max: 10 })
        );
        assert_eq!(
            SMALL.check(1, &[b"a", b"b", b"c"]),
            Err(CommandError::TooManyTags { given: 3, max: 2 })
        );
        assert_eq!(
            SMALL.check(1, &[&b"a"[..], &b"long"[..]]),
            Err(CommandError::TagTooLong { len: 4, max: 3 })
        );
        assert_eq!(
            CommandError::TooManyTags { given: 3, max: 2 }.to_string(),
            "too many tags: 3 (hybridcache.max-tags is 2)"
        );
    }

    #[test]
    fn defaults_are_in_force_until_configured() {
        assert_eq!(current(), Limits::DEFAULT);
        for s in &SETTINGS {
            assert!(s.min <= s.default && s.default <= s.max);
        }
    }
}
