//! ACL categories of the commands (`RedisModule_SetCommandACLCategories`, Redis 7.2+ and
//! Valkey), and the module's own `@hybridcache` category (`RedisModule_AddACLCategory`,
//! Redis 7.4+ and Valkey 8+), so `+@read`, `-@write`, `-@dangerous` or `+@hybridcache`
//! cover the HC commands as they cover built-in ones.
//!
//! A server puts a module command in no category unless the module sets them: the
//! categories a built-in command gets from its flags (`setImplicitACLCategories`) are not
//! given to module commands, and `SetCommandACLCategories` replaces whatever the command had.
//! So [`TABLE`] spells out what those flags would give (`write` → `@write`, `readonly` →
//! `@read`, `admin` → `@admin @dangerous`, `fast` → `@fast`, otherwise `@slow`), plus:
//! - `@keyspace` for `HC.DEL`, `HC.DELTAG`, `HC.DELTAGALL`, `HC.STALE` and `HC.STALETAG`: they
//!   delete keys, as `DEL`/`UNLINK` do, and
//!   an operator who denies `-@keyspace` to stop key deletion expects them covered.
//!   `HC.TAGKEYS`/`HC.TAGCARD` read the module's tag index (like `SMEMBERS`/`SCARD` of a set)
//!   and show only keys the user may read, so they stay out of it.
//! - `@connection` for `HC.HELLO`: the handshake a client library sends when it connects,
//!   like `HELLO`; it reads no key.
//! - Not `@pubsub`: no command subscribes or publishes on the client's behalf (the event a
//!   write publishes is the server's doing, as a keyspace notification is), and `HC.EVENTS`
//!   reads the event log, a read.
//!
//! On Redis 7.0, which has neither function, the commands keep no category: deny them by
//! name. A failure is logged, never fatal: the commands work the same without categories.

use hybridcache_protocol::command;
use redis_module::{raw, Context};
use std::ffi::CString;
use std::os::raw::{c_char, c_int};

/// The module's own category: every HC command is in it.
pub(crate) const MODULE_CATEGORY: &str = "hybridcache";

/// Each command's server categories (without [`MODULE_CATEGORY`]); the registration flags in
/// `lib.rs` are the source of the flag-implied ones.
pub(crate) const TABLE: [(&str, &str); 15] = [
    (command::SET, "write slow"),
    (command::GET, "read fast"),
    (command::MGET, "read fast"),
    (command::FETCH, "read fast"),
    (command::DEL, "write slow keyspace"),
    (command::DELTAG, "write slow keyspace"),
    (command::TAGS, "read fast"),
    (command::TAGKEYS, "read slow"),
    (command::TAGCARD, "read slow"),
    (command::CHECK, "read admin dangerous slow"),
    (command::HELLO, "read fast connection"),
    (command::EVENTS, "read slow"),
    (command::STALE, "write slow keyspace"),
    (command::STALETAG, "write slow keyspace"),
    (command::DELTAGALL, "write slow keyspace"),
];

/// The space-separated categories `SetCommandACLCategories` gets for `categories`, with the
/// module's own one when the server has it.
pub(crate) fn with_module_category(categories: &str, module_category: bool) -> String {
    if module_category {
        format!("{categories} {MODULE_CATEGORY}")
    } else {
        categories.to_owned()
    }
}

/// Adds `@hybridcache` and sets every command's categories, where the server can. Only
/// from OnLoad, after every command is created (both functions refuse outside OnLoad).
pub fn set_all(ctx: &Context) {
    // SAFETY: the API table was filled in at load; the pointers are copied out, not borrowed.
    let (add, set, get) = unsafe {
        (
            raw::RedisModule_AddACLCategory,
            raw::RedisModule_SetCommandACLCategories,
            raw::RedisModule_GetCommand,
        )
    };
    let (Some(set), Some(get)) = (set, get) else {
        ctx.log_notice("hybridcache: this server has no ACL categories for module commands");
        return;
    };
    let module_category = match add {
        Some(add) => add_module_category(ctx, add),
        None => {
            ctx.log_notice(&format!(
                "hybridcache: this server cannot add ACL categories; no @{MODULE_CATEGORY}"
            ));
            false
        }
    };
    for (name, categories) in TABLE {
        let result = set_one(ctx, get, set, name, categories, module_category).or_else(|e| {
            // The server categories still count without @hybridcache.
            if module_category {
                ctx.log_warning(&format!("hybridcache: ACL categories of {name}: {e}"));
                set_one(ctx, get, set, name, categories, false)
            } else {
                Err(e)
            }
        });
        if let Err(e) = result {
            ctx.log_warning(&format!("hybridcache: ACL categories of {name}: {e}"));
        }
    }
}

type AddCategory = unsafe extern "C" fn(*mut raw::RedisModuleCtx, *const c_char) -> c_int;
type GetCommand =
    unsafe extern "C" fn(*mut raw::RedisModuleCtx, *const c_char) -> *mut raw::RedisModuleCommand;
type SetCategories = unsafe extern "C" fn(*mut raw::RedisModuleCommand, *const c_char) -> c_int;

/// Whether `@hybridcache` was added. It fails when another module took the name or the
/// server has no room for more categories (64); the module is never unloaded (it exports a
/// data type), so it never finds its own category from an earlier load.
fn add_module_category(ctx: &Context, add: AddCategory) -> bool {
    let Ok(name) = CString::new(MODULE_CATEGORY) else {
        return false;
    };
    // SAFETY: called from OnLoad with its context; the server copies the name.
    if unsafe { add(ctx.get_raw(), name.as_ptr()) } == raw::REDISMODULE_OK as c_int {
        return true;
    }
    let error = std::io::Error::last_os_error();
    ctx.log_warning(&format!(
        "hybridcache: ACL category @{MODULE_CATEGORY} not added: {error}"
    ));
    false
}

fn set_one(
    ctx: &Context,
    get: GetCommand,
    set: SetCategories,
    name: &str,
    categories: &str,
    module_category: bool,
) -> Result<(), String> {
    let c_name = CString::new(name.to_lowercase()).map_err(|e| e.to_string())?;
    let c_categories = CString::new(with_module_category(categories, module_category))
        .map_err(|e| e.to_string())?;
    // SAFETY: called from OnLoad after the commands were created; the server copies nothing
    // it needs later from the strings (it stores the category bits).
    unsafe {
        let command = get(ctx.get_raw(), c_name.as_ptr());
        if command.is_null() {
            return Err("command not found".into());
        }
        if set(command, c_categories.as_ptr()) != raw::REDISMODULE_OK as c_int {
            return Err(format!(
                "the server refused \"{}\"",
                c_categories.to_string_lossy()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_has_categories_once() {
        for name in command::ALL {
            let rows = TABLE.iter().filter(|(command, _)| *command == name).count();
            assert_eq!(rows, 1, "{name}");
        }
        assert_eq!(TABLE.len(), command::ALL.len());
    }

    #[test]
    fn every_command_is_fast_or_slow_and_reads_or_writes() {
        for (name, categories) in TABLE {
            let words: Vec<&str> = categories.split(' ').collect();
            let speed = words
                .iter()
                .filter(|w| ["fast", "slow"].contains(w))
                .count();
            let access = words
                .iter()
                .filter(|w| ["read", "write"].contains(w))
                .count();
            assert_eq!((speed, access), (1, 1), "{name}: {categories}");
            assert!(
                !words.contains(&MODULE_CATEGORY),
                "{name}: added at run time"
            );
        }
    }

    #[test]
    fn deletes_are_keyspace_commands_and_the_check_is_admin() {
        let of = |name: &str| TABLE.iter().find(|(c, _)| *c == name).map(|(_, c)| *c);
        let keyspace: Vec<&str> = TABLE
            .iter()
            .filter(|(_, c)| c.split(' ').any(|w| w == "keyspace"))
            .map(|(name, _)| *name)
            .collect();
        assert_eq!(
            keyspace,
            [
                command::DEL,
                command::DELTAG,
                command::STALE,
                command::STALETAG,
                command::DELTAGALL
            ]
        );
        assert!(of(command::CHECK).is_some_and(|c| c.contains("admin dangerous")));
    }

    #[test]
    fn the_module_category_is_appended_only_where_the_server_has_it() {
        assert_eq!(
            with_module_category("read fast", true),
            "read fast hybridcache"
        );
        assert_eq!(with_module_category("read fast", false), "read fast");
    }
}
