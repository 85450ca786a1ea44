//! hybridcache: a Redis module that stores cache entries with tags, keeps a server-side tag
//! index that always matches the keyspace, and publishes an invalidation event for every
//! change in the same command execution.
//!
//! Layout: a pure core ([`index`], [`entry`], [`set_options`], [`sequencer`]) with unit
//! tests, and thin adapters to Redis: the data type callbacks ([`datatype`]), keyspace and
//! server events ([`keyspace`]), event publishing ([`publisher`]), the command handlers
//! ([`commands`]), configuration ([`config`]) and INFO ([`info`]).
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// Modules are crate-private, so the module build itself reports dead code. Unit tests and
// fuzz builds leave out the registration (and with it every command handler), so there the
// adapters look unused.
#![cfg_attr(any(test, fuzzing), allow(dead_code))]

pub(crate) mod acl;
pub(crate) mod acl_categories;
pub(crate) mod changes;
pub(crate) mod check;
mod client_db;
pub(crate) mod command_args;
mod command_filter;
pub(crate) mod command_info;
pub(crate) mod commands;
pub(crate) mod config;
pub(crate) mod copy_sources;
pub(crate) mod datatype;
pub(crate) mod entry;
pub(crate) mod error;
pub(crate) mod event_batch;
pub(crate) mod event_log;
pub(crate) mod events;
pub(crate) mod fills;
mod filter_slot;
#[cfg(any(test, fuzzing))]
pub mod fuzzing;
pub(crate) mod index;
pub(crate) mod info;
pub(crate) mod key_handle;
pub(crate) mod key_set;
pub(crate) mod key_table;
pub(crate) mod keyspace;
pub(crate) mod limits;
pub(crate) mod load_phase;
pub(crate) mod notified_db;
pub(crate) mod pending;
pub(crate) mod publisher;
pub(crate) mod removal;
pub(crate) mod role;
pub(crate) mod saved;
pub(crate) mod scan;
pub(crate) mod sequencer;
pub(crate) mod set_options;
pub(crate) mod state;
pub(crate) mod text;

/// `MODULE LIST` version: major * 10000 + minor * 100 + patch of the crate version
/// (`INFO hybridcache` shows the crate version itself).
pub const MODULE_VERSION: i32 = 100;

#[cfg(test)]
mod version_tests {
    #[test]
    fn module_list_version_follows_the_crate_version() {
        let parts: Vec<i32> = env!("CARGO_PKG_VERSION")
            .split('.')
            .map(|p| p.parse().unwrap_or(-1))
            .collect();
        assert_eq!(
            parts.iter().fold(0, |acc, p| acc * 100 + p),
            super::MODULE_VERSION
        );
    }
}

#[cfg(not(any(test, fuzzing)))]
mod registration {
    use crate::commands::{self, check, delete, events, hello, read, set, tag_query};
    use crate::{
        acl_categories, command_info, config, datatype::HC_TYPE, info, keyspace, publisher, role,
        MODULE_VERSION,
    };
    use hybridcache_protocol::{command, MODULE_NAME};
    use redis_module::raw::ModuleOptions;
    use redis_module::{redis_module, Context, RedisString, Status};

    fn init(ctx: &Context, args: &[RedisString]) -> Status {
        match try_init(ctx, args) {
            Ok(handles_async_load) => {
                // rdb_load reports short or corrupt payloads (RESTORE, RDB files, a full
                // sync cut short) as errors instead of Redis aborting on them: Redis loads
                // diskless only if every module does. With `repl-diskless-load swapdb` it
                // also wants every module to follow a load into temporary databases while
                // the live ones serve (src/replication.c `useDisklessLoad()`), which the
                // index does where the server has the event for it; otherwise Redis falls
                // back to loading from disk.
                let mut options = ModuleOptions::HANDLE_IO_ERRORS;
                if handles_async_load {
                    options |= ModuleOptions::HANDLE_REPL_ASYNC_LOAD;
                }
                ctx.set_module_options(options);
                Status::Ok
            }
            Err(e) => {
                ctx.log_warning(&format!("hybridcache: {e}"));
                // The library is unloaded: free what its statics hold.
                config::release();
                Status::Err
            }
        }
    }

    /// Everything that can fail first; what allocates for good (the publishing context)
    /// last. Returns whether the module follows `repl-diskless-load swapdb` loads.
    fn try_init(ctx: &Context, args: &[RedisString]) -> Result<bool, String> {
        config::register(ctx, args)?;
        register_hot_reads(ctx)?;
        command_info::set_all(ctx);
        // After every command exists (HC.GET/MGET/FETCH are created just above).
        acl_categories::set_all(ctx);
        role::init(ctx);
        let handles_async_load = keyspace::subscribe_server_events(ctx)?;
        keyspace::subscribe_keyspace_events(ctx)?;
        crate::client_db::init(ctx.get_raw());
        publisher::init(ctx)?;
        info::register(ctx);
        Ok(handles_async_load)
    }

    /// HC.GET, HC.MGET and HC.FETCH, registered by hand so that they borrow their arguments
    /// (`commands::run_borrowed`); flags and key positions as in the list below.
    fn register_hot_reads(ctx: &Context) -> Result<(), String> {
        let reads: [(&str, commands::CommandCallback, _); 3] = [
            (command::GET, read::hc_get_command, (1, 1, 1)),
            (command::MGET, read::hc_mget_command, (1, -1, 1)),
            (command::FETCH, read::hc_fetch_command, (1, 1, 1)),
        ];
        for (name, callback, keys) in reads {
            commands::create_command(ctx, name, callback, "readonly fast", keys)?;
        }
        Ok(())
    }

    redis_module! {
        name: MODULE_NAME,
        version: MODULE_VERSION,
        allocator: (redis_module::alloc::RedisAlloc, redis_module::alloc::RedisAlloc),
        data_types: [HC_TYPE],
        init: init,
        commands: [
            [command::SET, set::hc_set, "write deny-oom", 1, 1, 1, ""],
            [command::DEL, delete::hc_del, "write", 1, -1, 1, ""],
            [command::DELTAG, delete::hc_deltag, "write", 0, 0, 0, ""],
            [command::STALE, delete::hc_stale, "write", 1, -1, 1, ""],
            [command::STALETAG, delete::hc_staletag, "write", 0, 0, 0, ""],
            [command::DELTAGALL, delete::hc_deltagall, "write", 0, 0, 0, ""],
            [command::TAGS, read::hc_tags, "readonly fast", 1, 1, 1, ""],
            [command::TAGKEYS, tag_query::hc_tagkeys, "readonly", 0, 0, 0, ""],
            [command::TAGCARD, tag_query::hc_tagcard, "readonly", 0, 0, 0, ""],
            [command::CHECK, check::hc_check, "readonly admin", 0, 0, 0, ""],
            [command::HELLO, hello::hc_hello, "readonly fast", 0, 0, 0, ""],
            [command::EVENTS, events::hc_events, "readonly", 0, 0, 0, ""],
        ],
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn module_version_matches_the_crate_version() {
        let [major, minor, patch] = ["MAJOR", "MINOR", "PATCH"].map(|part| {
            std::env::var(format!("CARGO_PKG_VERSION_{part}"))
                .ok()
                .and_then(|v| v.parse::<i32>().ok())
                .unwrap_or(-1)
        });
        assert_eq!(super::MODULE_VERSION, major * 10000 + minor * 100 + patch);
    }
}
