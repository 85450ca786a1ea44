//! Command handlers: parse arguments, call the core, reply. One file per group.

pub mod check;
pub mod delete;
pub mod events;
pub mod hello;
pub(crate) mod lease;
pub mod read;
pub mod set;
pub mod tag_query;

use redis_module::{raw, Context, RedisResult, RedisString, RedisValue};
use std::ffi::CString;
use std::os::raw::c_int;

/// A command's arguments as Redis passed them, borrowed for the call: unlike the
/// `redis_module!` wrapper's `Vec<RedisString>`, no allocation and no retain/release per
/// argument (the hot read commands take these).
pub(crate) type Args<'a> = &'a [*mut raw::RedisModuleString];

/// The bytes of one argument of [`Args`].
pub(crate) fn arg_bytes(arg: &*mut raw::RedisModuleString) -> &[u8] {
    RedisString::string_as_slice(*arg)
}

/// A command handler taking [`Args`].
pub(crate) type BorrowedHandler = fn(&Context, Args) -> RedisResult;

/// Runs `handler` for a command callback and sends its result (the body of the `extern "C"`
/// functions [`create_command`] registers).
///
/// # Safety
/// `ctx`, `argv` and `argc` are the ones Redis passed to the command callback.
pub(crate) unsafe fn run_borrowed(
    ctx: *mut raw::RedisModuleCtx,
    argv: *mut *mut raw::RedisModuleString,
    argc: c_int,
    handler: BorrowedHandler,
) -> c_int {
    let context = Context::new(ctx);
    let args: Args = match usize::try_from(argc) {
        // SAFETY: Redis passes `argc` live strings at `argv` for the call.
        Ok(len) if !argv.is_null() => std::slice::from_raw_parts(argv, len),
        _ => &[],
    };
    context.reply(handler(&context, args)) as c_int
}

/// The `extern "C"` callback Redis calls for a command.
pub(crate) type CommandCallback = unsafe extern "C" fn(
    *mut raw::RedisModuleCtx,
    *mut *mut raw::RedisModuleString,
    c_int,
) -> c_int;

/// Registers a command whose callback is written by hand (see [`run_borrowed`]), with the
/// flags and key positions `redis_module!` would give it; ACL categories are set later, for
/// every command ([`crate::acl_categories`]).
/// Only during module load.
pub(crate) fn create_command(
    ctx: &Context,
    name: &str,
    callback: CommandCallback,
    flags: &str,
    (first_key, last_key, key_step): (c_int, c_int, c_int),
) -> Result<(), String> {
    let c_name = CString::new(name).map_err(|e| e.to_string())?;
    let c_flags = CString::new(flags).map_err(|e| e.to_string())?;
    // SAFETY: the API table is filled once, at load, before any command registers.
    let create =
        unsafe { raw::RedisModule_CreateCommand }.ok_or("RedisModule_CreateCommand is missing")?;
    // SAFETY: called from the module's OnLoad with its context; Redis copies the strings.
    let status = unsafe {
        create(
            ctx.get_raw(),
            c_name.as_ptr(),
            Some(callback),
            c_flags.as_ptr(),
            first_key,
            last_key,
            key_step,
        )
    };
    if status == raw::Status::Err as c_int {
        return Err(format!("failed to create command {name}"));
    }
    Ok(())
}

/// Replies with a bulk string holding `bytes` (binary-safe, no copy).
fn reply_bytes(ctx: &Context, bytes: &[u8]) {
    raw::reply_with_string_buffer(ctx.get_raw(), bytes.as_ptr().cast(), bytes.len());
}

fn reply_array_header(ctx: &Context, len: usize) {
    raw::reply_with_array(ctx.get_raw(), len as std::os::raw::c_long);
}

fn reply_null(ctx: &Context) {
    raw::reply_with_null(ctx.get_raw());
}

/// Tells the command wrapper that the handler already replied.
const REPLIED: RedisValue = RedisValue::NoReply;

/// The current Unix time in milliseconds, as Redis sees it.
fn now_ms() -> i64 {
    // SAFETY: a plain clock read.
    unsafe { raw::RedisModule_Milliseconds.map_or(0, |f| f()) }
}
