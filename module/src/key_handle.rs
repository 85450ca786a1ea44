//! A thin RAII wrapper over `RedisModuleKey`, with the few operations the commands need.

use crate::datatype::entry_type;
use crate::entry::Entry;
use crate::error::WrongType;
use redis_module::raw;
use std::os::raw::c_void;
use std::ptr::NonNull;

/// The database a context is working on.
pub fn selected_db(ctx: &redis_module::Context) -> i32 {
    // SAFETY: the context is live for the current callback.
    unsafe { raw::RedisModule_GetSelectedDb.map_or(0, |f| f(ctx.get_raw())) }
}

/// An open key; closed on drop.
pub struct KeyHandle {
    key: NonNull<raw::RedisModuleKey>,
}

impl KeyHandle {
    /// Opens `name` in the context's database, for reading or for writing. Opening runs
    /// Redis's lazy expiry, as any key lookup does.
    pub fn open(
        ctx: *mut raw::RedisModuleCtx,
        name: *mut raw::RedisModuleString,
        write: bool,
    ) -> Option<Self> {
        let mode = if write {
            raw::REDISMODULE_READ | raw::REDISMODULE_WRITE
        } else {
            raw::REDISMODULE_READ
        };
        Self::open_mode(ctx, name, mode)
    }

    /// Opens `name` for reading without touching its LRU/LFU clock (for index queries).
    pub fn peek(ctx: *mut raw::RedisModuleCtx, name: *mut raw::RedisModuleString) -> Option<Self> {
        Self::open_mode(
            ctx,
            name,
            raw::REDISMODULE_READ | raw::REDISMODULE_OPEN_KEY_NOTOUCH,
        )
    }

    fn open_mode(
        ctx: *mut raw::RedisModuleCtx,
        name: *mut raw::RedisModuleString,
        mode: u32,
    ) -> Option<Self> {
        // SAFETY: ctx and name come from Redis for the current call.
        let key = unsafe { raw::RedisModule_OpenKey?(ctx, name, mode as i32) };
        NonNull::new(key.cast()).map(|key| Self { key })
    }

    fn raw(&self) -> *mut raw::RedisModuleKey {
        self.key.as_ptr()
    }

    /// The entry stored here: `None` when the key is missing, an error when the key holds
    /// a value the module does not own.
    pub fn entry(&self) -> Result<Option<&Entry>, WrongType> {
        // SAFETY: the key is open; the value belongs to our type when the type matches.
        unsafe { entry_of_raw_key(self.raw()) }
    }

    /// The entry stored here, for changing it in place.
    pub fn entry_mut(&mut self) -> Option<&mut Entry> {
        // SAFETY: the key is open and the value belongs to our type; `&mut self` keeps the
        // reference unique for as long as the handle lives.
        unsafe {
            let entry = entry_of_raw_key(self.raw()).ok().flatten()?;
            (entry as *const Entry).cast_mut().as_mut()
        }
    }

    /// The entry stored here unless it is logically deleted (see [`crate::state::is_gone`]).
    pub fn live_entry(&self, db: i32) -> Result<Option<&Entry>, WrongType> {
        Ok(self
            .entry()?
            .filter(|entry| !crate::state::is_gone(db, entry)))
    }

    /// Whether the key exists, a logically deleted entry counting as missing.
    pub fn holds_live(&self, db: i32) -> bool {
        match self.entry() {
            Ok(Some(entry)) => !crate::state::is_gone(db, entry),
            Ok(None) => false,
            Err(WrongType) => true,
        }
    }

    /// Absolute expiry in Unix milliseconds, if any.
    pub fn expire_at(&self) -> Option<i64> {
        // SAFETY: the key is open.
        let at = unsafe { raw::RedisModule_GetAbsExpire.map_or(-1, |f| f(self.raw())) };
        (at >= 0).then_some(at)
    }

    /// Sets the absolute expiry (Unix milliseconds).
    pub fn set_expire_at(&mut self, at: i64) -> bool {
        // SAFETY: the key is open for writing and holds a value.
        let status = unsafe { raw::RedisModule_SetAbsExpire.map_or(1, |f| f(self.raw(), at)) };
        status == raw::REDISMODULE_OK as i32
    }

    /// Stores `entry`, replacing whatever the key held (and its time to live).
    pub fn set_entry(&mut self, entry: Box<Entry>) -> bool {
        let Some(set) = (unsafe { raw::RedisModule_ModuleTypeSetValue }) else {
            return false;
        };
        let value = Entry::into_raw(entry);
        // SAFETY: the key is open for writing; on success Redis owns the value and frees it
        // through the type's free callback.
        let status = unsafe { set(self.raw(), entry_type(), value) };
        if status != raw::REDISMODULE_OK as i32 {
            // SAFETY: Redis did not take the value.
            drop(unsafe { Entry::box_from_raw(value) });
            return false;
        }
        true
    }

    /// Replaces the entry stored here by `entry` in place (the key, its TTL and its place in
    /// the keyspace stay; no unlink callback runs) and returns the old one (`None` only if
    /// Redis handed none back), or gives `entry` back when the key does not hold an entry of
    /// ours.
    pub fn replace_entry(&mut self, entry: Box<Entry>) -> Result<Option<Box<Entry>>, Box<Entry>> {
        if !matches!(self.entry(), Ok(Some(_))) {
            return Err(entry);
        }
        let Some(replace) = (unsafe { raw::RedisModule_ModuleTypeReplaceValue }) else {
            return Err(entry);
        };
        let new = Entry::into_raw(entry);
        let mut old: *mut c_void = std::ptr::null_mut();
        // SAFETY: the key is open for writing and holds our type; on success Redis owns `new`
        // and hands us `old`, which it no longer references; on failure `new` is still ours.
        unsafe {
            if replace(self.raw(), entry_type(), new, &mut old) != raw::REDISMODULE_OK as i32 {
                return match Entry::box_from_raw(new) {
                    Some(new) => Err(new),
                    None => Ok(None),
                };
            }
            Ok(Entry::box_from_raw(old))
        }
    }

    /// Removes the key's time to live.
    pub fn persist(&mut self) {
        // SAFETY: the key is open for writing.
        unsafe {
            if let Some(set) = raw::RedisModule_SetExpire {
                set(self.raw(), raw::REDISMODULE_NO_EXPIRE as i64);
            }
        }
    }

    /// Deletes the key.
    pub fn delete(&mut self) -> bool {
        // SAFETY: the key is open for writing.
        let status = unsafe { raw::RedisModule_DeleteKey.map_or(1, |f| f(self.raw())) };
        status == raw::REDISMODULE_OK as i32
    }
}

impl Drop for KeyHandle {
    fn drop(&mut self) {
        // SAFETY: opened by RedisModule_OpenKey, closed once.
        unsafe {
            if let Some(close) = raw::RedisModule_CloseKey {
                close(self.raw());
            }
        }
    }
}

/// The entry behind an open key (see [`KeyHandle::entry`]).
///
/// # Safety
/// `key` must be an open key (or null).
pub unsafe fn entry_of_raw_key<'a>(
    key: *mut raw::RedisModuleKey,
) -> Result<Option<&'a Entry>, WrongType> {
    if key.is_null() {
        return Ok(None);
    }
    // The hit path asks one question: a key of our type answers it, and any other key type
    // answers null (an empty key too, which the type then tells from a foreign value).
    let ours = entry_type();
    if !ours.is_null() && raw::RedisModule_ModuleTypeGetType.map(|f| f(key)) == Some(ours) {
        let value = raw::RedisModule_ModuleTypeGetValue.map_or(std::ptr::null_mut(), |f| f(key));
        return Ok(Entry::from_raw(value));
    }
    let kind = raw::RedisModule_KeyType.map_or(0, |f| f(key));
    if kind == raw::REDISMODULE_KEYTYPE_EMPTY as i32 {
        return Ok(None);
    }
    Err(WrongType)
}
