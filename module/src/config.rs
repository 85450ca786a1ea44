//! The module's configuration: `hybridcache.channel` (CONFIG GET/SET, redis.conf) or the
//! load argument `CHANNEL <name>`.

use hybridcache_protocol::DEFAULT_CHANNEL;
use redis_module::configuration::{
    register_string_configuration, ConfigurationContext, ConfigurationFlags, ConfigurationValue,
};
use redis_module::{raw, Context, RedisError, RedisString};
use std::sync::Mutex;

/// The invalidation channel name (binary-safe, never empty).
pub struct Channel(Mutex<Vec<u8>>);

pub static CHANNEL: Channel = Channel(Mutex::new(Vec::new()));

impl Channel {
    /// The current channel name.
    pub fn get(&self) -> Vec<u8> {
        let name = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if name.is_empty() {
            DEFAULT_CHANNEL.as_bytes().to_vec()
        } else {
            name.clone()
        }
    }

    /// Replaces the channel name; an empty name is refused.
    pub fn set_bytes(&self, name: &[u8]) -> Result<(), RedisError> {
        if name.is_empty() {
            return Err(RedisError::Str(
                "the invalidation channel name cannot be empty",
            ));
        }
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = name.to_vec();
        Ok(())
    }
}

impl ConfigurationValue<RedisString> for Channel {
    fn get(&self, _ctx: &ConfigurationContext) -> RedisString {
        RedisString::create_from_slice(std::ptr::null_mut(), &Channel::get(self))
    }

    fn set(&self, _ctx: &ConfigurationContext, val: RedisString) -> Result<(), RedisError> {
        self.set_bytes(val.as_slice())
    }
}

/// Registers `hybridcache.channel`, loads its value from the server's configuration, then
/// applies the load arguments, which win.
pub fn register(ctx: &Context, args: &[RedisString]) -> Result<(), String> {
    register_string_configuration(
        ctx,
        "channel",
        &CHANNEL,
        DEFAULT_CHANNEL,
        ConfigurationFlags::DEFAULT,
        None,
    );
    // SAFETY: called from OnLoad, after every configuration is registered.
    unsafe {
        if let Some(load) = raw::RedisModule_LoadConfigs {
            if load(ctx.get_raw()) != raw::REDISMODULE_OK as i32 {
                return Err("cannot load the module configuration".into());
            }
        }
    }
    apply_load_args(args)
}

/// Applies load arguments (`CHANNEL <name>`, keyword case-insensitive).
fn apply_load_args(args: &[RedisString]) -> Result<(), String> {
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        if arg.as_slice().eq_ignore_ascii_case(b"CHANNEL") {
            let name = rest
                .next()
                .ok_or_else(|| "CHANNEL needs a channel name".to_string())?;
            CHANNEL
                .set_bytes(name.as_slice())
                .map_err(|e| e.to_string())?;
        } else {
            let shown: String = arg
                .to_string_lossy()
                .chars()
                .take(64)
                .map(|c| if c.is_control() { '?' } else { c })
                .collect();
            return Err(format!(
                "unknown load argument '{shown}' (expected CHANNEL <name>)"
            ));
        }
    }
    Ok(())
}
