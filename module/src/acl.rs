//! ACL key permissions for the commands that reach keys through the tag index rather than
//! through their arguments (so Redis cannot check them itself).

use redis_module::{raw, Context};
use std::os::raw::c_int;
use std::ptr;

/// The calling user's key permissions.
pub enum KeyAcl {
    /// No user (the primary's replication stream, AOF loading): everything is allowed.
    Unrestricted,
    /// A user whose key patterns apply.
    User(*mut raw::RedisModuleUser),
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
            free(ptr::null_mut(), name);
            if user.is_null() {
                KeyAcl::Nobody
            } else {
                KeyAcl::User(user)
            }
        }
    }

    fn allows(&self, key: *mut raw::RedisModuleString, flags: u32) -> bool {
        match self {
            KeyAcl::Unrestricted => true,
            KeyAcl::Nobody => false,
            // SAFETY: the user is alive until drop; key is a live string.
            KeyAcl::User(user) => unsafe {
                raw::RedisModule_ACLCheckKeyPermissions.is_some_and(|check| {
                    check(*user, key, flags as c_int) == raw::REDISMODULE_OK as c_int
                })
            },
        }
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

impl Drop for KeyAcl {
    fn drop(&mut self) {
        if let KeyAcl::User(user) = self {
            // SAFETY: obtained from GetModuleUserFromUserName, freed once.
            unsafe {
                if let Some(free) = raw::RedisModule_FreeModuleUser {
                    free(*user);
                }
            }
        }
    }
}
