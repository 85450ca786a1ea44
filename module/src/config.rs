//! The module's configuration: `hybridcache.channel` (CONFIG GET/SET, redis.conf) or the
//! load argument `CHANNEL <name>`; `hybridcache.sharded-events` (in a cluster, publish on
//! shard channels: see [`crate::publisher`]); the write limits of [`crate::limits`].
//!
//! Registered through the raw API: the getter hands Redis a string the module keeps
//! owning (one per value, freed when the value changes), so CONFIG GET allocates nothing.

use crate::text::printable;
use hybridcache_protocol::DEFAULT_CHANNEL;
use redis_module::{raw, Context, RedisString};
use std::os::raw::{c_char, c_int, c_void};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};
use std::sync::Mutex;

/// The invalidation channel name (binary-safe, never empty).
pub struct Channel {
    bytes: Mutex<Vec<u8>>,
    /// The same name as a Redis string, for CONFIG GET.
    string: AtomicPtr<raw::RedisModuleString>,
}

pub static CHANNEL: Channel = Channel {
    bytes: Mutex::new(Vec::new()),
    string: AtomicPtr::new(ptr::null_mut()),
};

impl Channel {
    /// The current channel name.
    pub fn get(&self) -> Vec<u8> {
        let name = self.bytes.lock().unwrap_or_else(|p| p.into_inner());
        if name.is_empty() {
            DEFAULT_CHANNEL.as_bytes().to_vec()
        } else {
            name.clone()
        }
    }

    /// Replaces the channel name; an empty name is refused.
    pub fn set(&self, name: &[u8]) -> Result<(), &'static str> {
        if name.is_empty() {
            return Err("the invalidation channel name cannot be empty");
        }
        *self.bytes.lock().unwrap_or_else(|p| p.into_inner()) = name.to_vec();
        let string = new_string(name);
        let old = self.string.swap(string, Ordering::AcqRel);
        if !old.is_null() {
            // SAFETY: created above by an earlier set, no longer handed out.
            unsafe {
                if let Some(free) = raw::RedisModule_FreeString {
                    free(ptr::null_mut(), old);
                }
            }
        }
        Ok(())
    }
}

/// `hybridcache.sharded-events`: in a cluster, events travel on shard channels, only to
/// the nodes of their shard (`yes`, the default), or on the channel itself to every node
/// (`no`, for subscribers that cannot use `SSUBSCRIBE`).
pub static SHARDED_EVENTS: AtomicBool = AtomicBool::new(true);

unsafe extern "C" fn get_sharded(_name: *const c_char, _privdata: *mut c_void) -> c_int {
    c_int::from(SHARDED_EVENTS.load(Ordering::Relaxed))
}

unsafe extern "C" fn set_sharded(
    _name: *const c_char,
    value: c_int,
    _privdata: *mut c_void,
    _err: *mut *mut raw::RedisModuleString,
) -> c_int {
    SHARDED_EVENTS.store(value != 0, Ordering::Relaxed);
    raw::REDISMODULE_OK as c_int
}

/// A Redis string the caller owns.
fn new_string(bytes: &[u8]) -> *mut raw::RedisModuleString {
    // SAFETY: a copy of `bytes` without a context (no automatic memory management).
    unsafe {
        raw::RedisModule_CreateString.map_or(ptr::null_mut(), |create| {
            create(ptr::null_mut(), bytes.as_ptr().cast(), bytes.len())
        })
    }
}

extern "C" fn get_channel(
    _name: *const c_char,
    _privdata: *mut c_void,
) -> *mut raw::RedisModuleString {
    CHANNEL.string.load(Ordering::Acquire)
}

unsafe extern "C" fn set_channel(
    _name: *const c_char,
    value: *mut raw::RedisModuleString,
    _privdata: *mut c_void,
    err: *mut *mut raw::RedisModuleString,
) -> c_int {
    match CHANNEL.set(RedisString::string_as_slice(value)) {
        Ok(()) => raw::REDISMODULE_OK as c_int,
        Err(message) => {
            if !err.is_null() {
                // Redis frees the error string.
                *err = new_string(message.as_bytes());
            }
            raw::REDISMODULE_ERR as c_int
        }
    }
}

/// Registers `hybridcache.channel`, loads its value from the server's configuration, then
/// applies the load arguments, which win. The arguments are checked first, so that a bad
/// `MODULE LOAD` allocates nothing that would outlive the unloaded library.
pub fn register(ctx: &Context, args: &[RedisString]) -> Result<(), String> {
    let args: Vec<&[u8]> = args.iter().map(RedisString::as_slice).collect();
    let from_args = parse_load_args(&args)?;
    CHANNEL.set(DEFAULT_CHANNEL.as_bytes())?;
    // SAFETY: called from OnLoad with its context; the strings are NUL-terminated literals.
    unsafe {
        let (Some(register), Some(load)) = (
            raw::RedisModule_RegisterStringConfig,
            raw::RedisModule_LoadConfigs,
        ) else {
            return Err("this Redis has no module configuration API (Redis 7.0+ needed)".into());
        };
        let status = register(
            ctx.get_raw(),
            c"channel".as_ptr(),
            c"hc:invalidations".as_ptr(),
            raw::REDISMODULE_CONFIG_DEFAULT,
            Some(get_channel),
            Some(set_channel),
            None,
            ptr::null_mut(),
        );
        if status != raw::REDISMODULE_OK as c_int {
            return Err("cannot register hybridcache.channel".into());
        }
        let status =
            raw::RedisModule_RegisterBoolConfig.map_or(raw::REDISMODULE_ERR as c_int, |f| {
                f(
                    ctx.get_raw(),
                    c"sharded-events".as_ptr(),
                    1,
                    raw::REDISMODULE_CONFIG_DEFAULT,
                    Some(get_sharded),
                    Some(set_sharded),
                    None,
                    ptr::null_mut(),
                )
            });
        if status != raw::REDISMODULE_OK as c_int {
            return Err("cannot register hybridcache.sharded-events".into());
        }
        crate::limits::register(ctx)?;
        if load(ctx.get_raw()) != raw::REDISMODULE_OK as c_int {
            return Err("cannot load the module configuration".into());
        }
    }
    if let Some(name) = from_args {
        CHANNEL.set(&name)?;
    }
    Ok(())
}

/// Frees what [`register`] allocated, when the module fails to load after it (the library
/// is unloaded and its statics with it).
pub fn release() {
    *CHANNEL.bytes.lock().unwrap_or_else(|p| p.into_inner()) = Vec::new();
    let old = CHANNEL.string.swap(ptr::null_mut(), Ordering::AcqRel);
    if !old.is_null() {
        // SAFETY: created by Channel::set, no longer handed out.
        unsafe {
            if let Some(free) = raw::RedisModule_FreeString {
                free(ptr::null_mut(), old);
            }
        }
    }
}

/// The channel named by the load arguments (`CHANNEL <name>`, keyword case-insensitive),
/// if any. Pure: nothing is applied.
pub fn parse_load_args(args: &[&[u8]]) -> Result<Option<Vec<u8>>, String> {
    let mut channel = None;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        if arg.eq_ignore_ascii_case(b"CHANNEL") {
            let name = rest
                .next()
                .ok_or_else(|| "CHANNEL needs a channel name".to_string())?;
            if name.is_empty() {
                return Err("the invalidation channel name cannot be empty".into());
            }
            channel = Some(name.to_vec());
        } else {
            return Err(format!(
                "unknown load argument '{}' (expected CHANNEL <name>)",
                printable(arg, 64)
            ));
        }
    }
    Ok(channel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_name_is_the_protocol_channel() {
        assert_eq!(DEFAULT_CHANNEL, "hc:invalidations");
    }

    #[test]
    fn load_arguments_are_checked_before_anything_is_applied() {
        assert_eq!(parse_load_args(&[]), Ok(None));
        assert_eq!(
            parse_load_args(&[b"channel", b"x"]),
            Ok(Some(b"x".to_vec()))
        );
        assert!(parse_load_args(&[b"CHANNEL"]).is_err());
        assert!(parse_load_args(&[b"CHANNEL", b""]).is_err());
        let bad = parse_load_args(&[b"%s%n"]).unwrap_err();
        assert!(!bad.contains('%'), "{bad}");
    }
}
