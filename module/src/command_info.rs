//! Key specs, summaries, complexity and arguments of the commands
//! (`RedisModule_SetCommandInfo`, Redis 7.0+), set once the commands are registered.
//!
//! The key specs tell Redis what each command does with its keys, so ACL key permissions
//! apply precisely: a user with `%R~app:*` (read-only on `app:*`) may `HC.GET` those keys but
//! not `HC.SET` or `HC.DEL` them; `%W~` users may write but not read. They also give
//! `COMMAND GETKEYS`, `COMMAND INFO` and cluster routing the same key positions as the
//! first/last/step of the registration.
//!
//! The arguments (tables in [`crate::command_args`]) make `COMMAND DOCS` list each command's
//! syntax, which redis-cli 7.2+ and valkey-cli show as hints.

use crate::command_args::{self, Arg, Kind};
use hybridcache_protocol::command;
use redis_module::commands::{get_redis_key_spec, BeginSearch, FindKeys, KeySpec, KeySpecFlags};
use redis_module::{raw, Context};
use std::ffi::CString;
use std::os::raw::{c_char, c_int};
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

fn table() -> [Info; 15] {
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
        Info {
            name: command::HELLO,
            summary: "Returns what a client checks before it trusts the server: module and event format versions, channel, origin",
            complexity: "O(1)",
            keys: None,
        },
        Info {
            name: command::EVENTS,
            summary: "Returns the changes published after a change of this server, from its event log",
            complexity: "O(N) for N changes returned",
            keys: None,
        },
        Info {
            name: command::STALE,
            summary: "Removes entries like HC.DEL, announced as expired on request (op stale): readers may keep a stale copy for fail-safe",
            complexity: "O(N*T) for N keys of T tags",
            keys: Some(Keys {
                flags: KeySpecFlags::REMOVE | KeySpecFlags::DELETE,
                last: -1,
            }),
        },
        Info {
            name: command::STALETAG,
            summary: "Removes every entry carrying any of the tags like HC.DELTAG, announced as expired on request (op stale)",
            complexity: "O(T) for T tags to answer; O(N) removals spread over later event-loop turns",
            keys: None,
        },
        Info {
            name: command::DELTAGALL,
            summary: "Removes every entry carrying all of the tags (answers at once, removes in the background); publishes one event",
            complexity: "O(S*T) for T tags whose smallest has S keys to answer; O(N) removals spread over later event-loop turns",
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
    let mut c_args = CArgs::default();
    let args = c_args.array(command_args::of(info.name).unwrap_or(&[]))?;
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
        args,
    };
    // SAFETY: called from OnLoad after the commands were created; Redis copies everything
    // it keeps from the info, which outlives the call (with `c_args`, which holds what
    // `args` points to).
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

/// Argument tables in the server's form. Everything the pointers in them lead to (names,
/// tokens, sub-argument arrays) is held here, so it lives as long as this value.
#[derive(Default)]
struct CArgs {
    strings: Vec<CString>,
    arrays: Vec<Vec<raw::RedisModuleCommandArg>>,
}

impl CArgs {
    /// A null-terminated array of `args`, null for no arguments (`COMMAND DOCS` then shows
    /// none).
    fn array(&mut self, args: &[Arg]) -> Result<*mut raw::RedisModuleCommandArg, String> {
        if args.is_empty() {
            return Ok(ptr::null_mut());
        }
        let mut array = Vec::with_capacity(args.len() + 1);
        for arg in args {
            array.push(self.arg(arg)?);
        }
        array.push(end_of_args());
        let first = array.as_mut_ptr();
        // Moving the Vec into `arrays` keeps its buffer where it is.
        self.arrays.push(array);
        Ok(first)
    }

    fn arg(&mut self, arg: &Arg) -> Result<raw::RedisModuleCommandArg, String> {
        // `key_spec_index` is -1 for every argument but a key.
        let key_spec_index = match arg.kind {
            Kind::Key(index) => c_int::try_from(index).map_err(|e| e.to_string())?,
            _ => -1,
        };
        let subargs = match arg.kind {
            Kind::OneOf(subargs) | Kind::Block(subargs) => self.array(subargs)?,
            _ => ptr::null_mut(),
        };
        let mut flags = 0;
        if arg.optional {
            flags |= raw::REDISMODULE_CMD_ARG_OPTIONAL;
        }
        if arg.multiple {
            flags |= raw::REDISMODULE_CMD_ARG_MULTIPLE;
        }
        Ok(raw::RedisModuleCommandArg {
            name: self.string(arg.name)?,
            type_: arg_type(arg.kind),
            key_spec_index,
            token: match arg.token {
                Some(token) => self.string(token)?,
                None => ptr::null(),
            },
            summary: ptr::null(),
            since: ptr::null(),
            flags: c_int::try_from(flags).map_err(|e| e.to_string())?,
            deprecated_since: ptr::null(),
            subargs,
            display_text: ptr::null(),
        })
    }

    fn string(&mut self, text: &str) -> Result<*const c_char, String> {
        let text = CString::new(text).map_err(|e| e.to_string())?;
        // The bytes stay where they are when the CString moves.
        let pointer = text.as_ptr();
        self.strings.push(text);
        Ok(pointer)
    }
}

fn arg_type(kind: Kind) -> raw::RedisModuleCommandArgType {
    match kind {
        Kind::Key(_) => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_KEY,
        Kind::String => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_STRING,
        Kind::Integer => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_INTEGER,
        Kind::UnixTime => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_UNIX_TIME,
        Kind::PureToken => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_PURE_TOKEN,
        Kind::OneOf(_) => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_ONEOF,
        Kind::Block(_) => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_BLOCK,
    }
}

/// The entry that ends an argument array: a null name.
fn end_of_args() -> raw::RedisModuleCommandArg {
    raw::RedisModuleCommandArg {
        name: ptr::null(),
        type_: raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_STRING,
        key_spec_index: -1,
        token: ptr::null(),
        summary: ptr::null(),
        since: ptr::null(),
        flags: 0,
        deprecated_since: ptr::null(),
        subargs: ptr::null_mut(),
        display_text: ptr::null(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_has_info() {
        let names: Vec<&str> = table().iter().map(|info| info.name).collect();
        assert_eq!(names.len(), command::ALL.len());
        for name in command::ALL {
            assert!(names.contains(&name), "{name} has no command info");
        }
    }

    #[test]
    fn key_arguments_point_at_a_key_spec_of_their_command() {
        for info in table() {
            let specs = usize::from(info.keys.is_some());
            let args = command_args::of(info.name).unwrap_or(&[]);
            let indexes = command_args::key_spec_indexes(args);
            assert!(indexes.iter().all(|i| *i < specs), "{}", info.name);
            assert_eq!(
                indexes.is_empty(),
                specs == 0,
                "{}: a key spec without a key argument, or the reverse",
                info.name
            );
        }
    }

    #[test]
    fn argument_arrays_end_with_a_null_name_and_keep_their_strings() {
        let mut c_args = CArgs::default();
        let set = c_args
            .array(command_args::of(command::SET).unwrap())
            .unwrap();
        assert!(!set.is_null());
        // SAFETY: `set` points at 7 arguments and the end entry, all held by `c_args`.
        let (entries, end) = unsafe { (std::slice::from_raw_parts(set, 7), &*set.add(7)) };
        assert!(end.name.is_null());
        // SAFETY: names and tokens are NUL-terminated strings held by `c_args`.
        let text = |p: *const c_char| unsafe { std::ffi::CStr::from_ptr(p) }.to_string_lossy();
        assert_eq!(text(entries[0].name), "key");
        assert_eq!(entries[0].key_spec_index, 0);
        assert_eq!(text(entries[6].token), "TAGS");
        assert_eq!(
            entries[6].flags,
            (raw::REDISMODULE_CMD_ARG_OPTIONAL | raw::REDISMODULE_CMD_ARG_MULTIPLE) as c_int
        );
        // SAFETY: the expiration's 5 choices and their end entry.
        let expiration = unsafe { std::slice::from_raw_parts(entries[2].subargs, 6) };
        assert_eq!(text(expiration[3].token), "PXAT");
        assert!(expiration[5].name.is_null());
        assert!(c_args.array(&[]).is_ok_and(|p| p.is_null()));
    }
}
