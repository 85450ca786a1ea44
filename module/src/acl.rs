//! ACL key permissions for the commands that reach keys through the tag index rather than
//! through their arguments (so Redis cannot check them itself).

use redis_module::{raw, Context, RedisString, RedisValue};
use std::os::raw::c_int;
use std::ptr;

/// The calling user's key permissions.
pub enum KeyAcl {
    /// No user (the primary's replication stream, AOF loading): everything is allowed.
    Unrestricted,
    /// A user whose key patterns apply (and its name).
    User(*mut raw::RedisModuleUser, String),
    /// The user could not be found (deleted meanwhile): nothing is allowed.
    Nobody,
}

impl KeyAcl {
    /// The permissions of the client running the current command.
    pub fn of_caller(ctx: &Context) -> Self {
        // SAFETY: APIs of Redis 7.0; the name string is freed here, the user on drop.
        unsafe {
            let (Some(current), Some(lookup), Some(free)) = (
                raw::RedisModule_GetCurrentUserName,
                raw::RedisModule_GetModuleUserFromUserName,
                raw::RedisModule_FreeString,
            ) else {
                return KeyAcl::Unrestricted;
            };
            // Redis 7.0 dereferences the client's user, which is null for the primary's
            // replication stream and for AOF loading: those run unrestricted anyway.
            let flags = raw::RedisModule_GetContextFlags.map_or(0, |f| f(ctx.get_raw()));
            let trusted =
                raw::REDISMODULE_CTX_FLAGS_REPLICATED | raw::REDISMODULE_CTX_FLAGS_LOADING;
            if flags & trusted as c_int != 0 {
                return KeyAcl::Unrestricted;
            }
            let name = current(ctx.get_raw());
            if name.is_null() {
                return KeyAcl::Unrestricted;
            }
            let user = lookup(name);
            let user_name =
                String::from_utf8_lossy(RedisString::string_as_slice(name)).into_owned();
            free(ptr::null_mut(), name);
            if user.is_null() {
                KeyAcl::Nobody
            } else {
                KeyAcl::User(user, user_name)
            }
        }
    }

    fn allows(&self, key: *mut raw::RedisModuleString, flags: u32) -> bool {
        match self {
            KeyAcl::Unrestricted => true,
            KeyAcl::Nobody => false,
            // SAFETY: the user is alive until drop; key is a live string.
            KeyAcl::User(user, _) => unsafe {
                raw::RedisModule_ACLCheckKeyPermissions.is_some_and(|check| {
                    check(*user, key, flags as c_int) == raw::REDISMODULE_OK as c_int
                })
            },
        }
    }

    /// Whether the user may touch every key (`~*` and no selectors), so that per-key checks
    /// can be skipped; false when in doubt.
    pub fn covers_all_keys(&self, ctx: &Context) -> bool {
        let name = match self {
            KeyAcl::Unrestricted => return true,
            KeyAcl::Nobody => return false,
            KeyAcl::User(_, name) => name,
        };
        let Ok(RedisValue::Array(fields)) = ctx.call("ACL", &["GETUSER", name.as_str()]) else {
            return false;
        };
        let field = |wanted: &str| {
            fields
                .iter()
                .position(|f| text(f).as_deref() == Some(wanted))
                .and_then(|at| fields.get(at + 1))
        };
        let all_keys = field("keys").and_then(text).as_deref() == Some("~*");
        let no_selectors = matches!(field("selectors"), Some(RedisValue::Array(s)) if s.is_empty());
        all_keys && no_selectors
    }

    /// May the user read this key?
    pub fn may_read(&self, key: *mut raw::RedisModuleString) -> bool {
        self.allows(key, raw::REDISMODULE_CMD_KEY_ACCESS)
    }

    /// May the user delete this key?
    pub fn may_delete(&self, key: *mut raw::RedisModuleString) -> bool {
        self.allows(key, raw::REDISMODULE_CMD_KEY_DELETE)
    }
}

fn text(value: &RedisValue) -> Option<String> {
    match value {
        RedisValue::SimpleString(s) | RedisValue::BulkString(s) => Some(s.clone()),
        RedisValue::SimpleStringStatic(s) => Some((*s).to_string()),
        RedisValue::StringBuffer(b) => Some(String::from_utf8_lossy(b).into_owned()),
        RedisValue::BulkRedisString(s) => Some(s.to_string_lossy()),
        _ => None,
    }
}

impl Drop for KeyAcl {
    fn drop(&mut self) {
        if let KeyAcl::User(user, _) = self {
            // SAFETY: obtained from GetModuleUserFromUserName, freed once.
            unsafe {
                if let Some(free) = raw::RedisModule_FreeModuleUser {
                    free(*user);
                }
            }
        }
    }
}
