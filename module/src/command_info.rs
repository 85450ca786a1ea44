//! Key specs, summaries and complexity of the commands (`RedisModule_SetCommandInfo`,
//! Redis 7.0+), set once the commands are registered.
//!
//! The key specs tell Redis what each command does with its keys, so ACL key permissions
//! apply precisely: a user with `%R~app:*` (read-only on `app:*`) may `HC.GET` those keys but
//! not `HC.SET` or `HC.DEL` them; `%W~` users may write but not read. They also give
//! `COMMAND GETKEYS`, `COMMAND INFO` and cluster routing the same key positions as the
//! first/last/step of the registration.

use hybridcache_protocol::command;
use redis_module::commands::{get_redis_key_spec, BeginSearch, FindKeys, KeySpec, KeySpecFlags};
use redis_module::{raw, Context};
use std::ffi::CString;
use std::os::raw::c_int;
use std::ptr;

/// What a command does with its keys: the first key argument is argument 1; `last` is
/// 0 for one key, -1 for every remaining argument.
struct Keys {
    flags: KeySpecFlags,
    last: i32,
}

struct Info {
    name: &'static str,
    summary: &'static str,
    complexity: &'static str,
    keys: Option<Keys>,
}

fn table() -> [Info; 10] {
    let read = || KeySpecFlags::READ_ONLY | KeySpecFlags::ACCESS;
    [
        Info {
            name: command::SET,
            summary: "Stores a value with tags and an optional expiry; publishes an invalidation event",
            complexity: "O(T) for T tags (the key's old and new tags)",
            keys: Some(Keys {
                flags: KeySpecFlags::OVERWRITE | KeySpecFlags::UPDATE,
                last: 0,
            }),
        },
        Info {
            name: command::GET,
            summary: "Returns the value of an entry",
            complexity: "O(1)",
            keys: Some(Keys { flags: read(), last: 0 }),
        },
        Info {
            name: command::MGET,
            summary: "Returns the values of several entries",
            complexity: "O(N) for N keys",
            keys: Some(Keys { flags: read(), last: -1 }),
        },
        Info {
            name: command::FETCH,
            summary: "Returns an entry's value, tags, remaining TTL, origin and version",
            complexity: "O(T) for T tags",
            keys: Some(Keys { flags: read(), last: 0 }),
        },
        Info {
            name: command::DEL,
            summary: "Removes entries; publishes an invalidation event",
            complexity: "O(N*T) for N keys of T tags",
            keys: Some(Keys {
                flags: KeySpecFlags::REMOVE | KeySpecFlags::DELETE,
                last: -1,
            }),
        },
        Info {
            name: command::DELTAG,
            summary: "Removes every entry carrying any of the tags (answers at once, removes in the background); publishes one event",
            complexity: "O(T) for T tags to answer; O(N) removals spread over later event-loop turns",
            keys: None,
        },
        Info {
            name: command::TAGS,
            summary: "Returns the tags of an entry",
            complexity: "O(T) for T tags",
            keys: Some(Keys { flags: read(), last: 0 }),
        },
        Info {
            name: command::TAGKEYS,
            summary: "Returns the keys carrying a tag that the user may read",
            complexity: "O(N) for N keys of the tag",
            keys: None,
        },
        Info {
            name: command::TAGCARD,
            summary: "Returns how many keys carry a tag (that the user may read)",
            complexity: "O(1) for users who may read every key, else O(N) for N keys of the tag",
            keys: None,
        },
        Info {
            name: command::CHECK,
            summary: "Verifies that the tag index matches the keyspace (debugging, tests)",
            complexity: "O(N) for N keys in the dataset",
            keys: None,
        },
    ]
}

/// Sets the info of every command; a failure is logged, not fatal (the commands work
/// without it, with coarser ACL key checks).
pub fn set_all(ctx: &Context) {
    for info in table() {
        if let Err(e) = set(ctx, &info) {
            ctx.log_warning(&format!("hybridcache: command info of {}: {e}", info.name));
        }
    }
}

fn set(ctx: &Context, info: &Info) -> Result<(), String> {
    let name = CString::new(info.name.to_lowercase()).map_err(|e| e.to_string())?;
    let summary = CString::new(info.summary).map_err(|e| e.to_string())?;
    let complexity = CString::new(info.complexity).map_err(|e| e.to_string())?;
    let since = CString::new(env!("CARGO_PKG_VERSION")).map_err(|e| e.to_string())?;
    let mut specs = get_redis_key_spec(
        info.keys
            .iter()
            .map(|keys| {
                KeySpec::new(
                    None,
                    KeySpecFlags::from_bits_retain(keys.flags.bits()),
                    BeginSearch::new_index(1),
                    FindKeys::new_range(keys.last, 1, 0),
                )
            })
            .collect(),
    );
    let version = raw::RedisModuleCommandInfoVersion {
        version: 1,
        sizeof_historyentry: std::mem::size_of::<raw::RedisModuleCommandHistoryEntry>(),
        sizeof_keyspec: std::mem::size_of::<raw::RedisModuleCommandKeySpec>(),
        sizeof_arg: std::mem::size_of::<raw::RedisModuleCommandArg>(),
    };
    let command_info = raw::RedisModuleCommandInfo {
        version: &version,
        summary: summary.as_ptr(),
        complexity: complexity.as_ptr(),
        since: since.as_ptr(),
        history: ptr::null_mut(),
        tips: ptr::null(),
        arity: 0,
        key_specs: if info.keys.is_some() {
            specs.as_mut_ptr()
        } else {
            ptr::null_mut()
        },
        args: ptr::null_mut(),
    };
    // SAFETY: called from OnLoad after the commands were created; Redis copies everything
    // it keeps from the info, which outlives the call.
    unsafe {
        let (Some(get), Some(set)) = (raw::RedisModule_GetCommand, raw::RedisModule_SetCommandInfo)
        else {
            return Err("this Redis has no command info API".into());
        };
        let command = get(ctx.get_raw(), name.as_ptr());
        if command.is_null() {
            return Err("command not found".into());
        }
        if set(command, &command_info) != raw::REDISMODULE_OK as c_int {
            return Err("Redis refused the command info".into());
        }
    }
    Ok(())
}
