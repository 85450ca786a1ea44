//! The module's data type: how an [`Entry`] is saved, loaded, rewritten into the AOF, copied,
//! measured and freed, and how the tag index learns that an entry left the keyspace.
//!
//! The RDB fields and their decoding are in [`crate::saved`]; this file backs its
//! [`Source`] and [`Sink`] with Redis's RDB IO.

use crate::changes::{Announce, Change};
use crate::entry::Entry;
use crate::notified_db;
use crate::publisher::apply;
use crate::saved::{self, Sink, Source, ENCODING_VERSION};
use crate::state::{is_gone, is_loading, with_state};
use redis_module::{native_types::RedisType, raw, RedisBuffer, RedisString};
use std::os::raw::{c_int, c_void};
use std::ptr;

/// Type name as `TYPE key` shows it (Redis requires exactly 9 characters).
pub const TYPE_NAME: &str = "hc-entry0";

/// The RDB IO of a load or save, as a field [`Source`] and [`Sink`].
struct RdbIo(*mut raw::RedisModuleIO);

impl Source for RdbIo {
    type Bytes = RedisBuffer;

    fn string(&mut self) -> Option<RedisBuffer> {
        raw::load_string_buffer(self.0).ok()
    }

    fn unsigned(&mut self) -> Option<u64> {
        raw::load_unsigned(self.0).ok()
    }
}

impl Sink for RdbIo {
    fn string(&mut self, bytes: &[u8]) {
        raw::save_slice(self.0, bytes);
    }

    fn unsigned(&mut self, n: u64) {
        raw::save_unsigned(self.0, n);
    }
}

/// The database an RDB/AOF IO belongs to, when Redis says.
fn io_db(io: *mut raw::RedisModuleIO) -> Option<i32> {
    // SAFETY: io is the IO of the current save/load/rewrite.
    let db = unsafe { raw::RedisModule_GetDbIdFromIO.map(|f| f(io)) }?;
    (db >= 0).then_some(db)
}

/// Whether the entry being saved through `io` is logically deleted.
fn gone_at(io: *mut raw::RedisModuleIO, entry: &Entry) -> bool {
    entry.is_dead() || io_db(io).is_some_and(|db| is_gone(db, entry))
}

pub static HC_TYPE: RedisType = RedisType::new(
    TYPE_NAME,
    ENCODING_VERSION,
    raw::RedisModuleTypeMethods {
        // 4: the layout Redis 7.0 knows (with unlink2/copy2/mem_usage2/free_effort2).
        version: 4,
        rdb_load: Some(rdb_load),
        rdb_save: Some(rdb_save),
        aof_rewrite: Some(aof_rewrite),
        mem_usage: Some(mem_usage),
        digest: Some(digest),
        free: Some(free),
        aux_load: None,
        aux_save: None,
        aux_save_triggers: 0,
        free_effort: None,
        unlink: None,
        copy: None,
        defrag: None,
        mem_usage2: None,
        free_effort2: None,
        unlink2: Some(unlink2),
        copy2: Some(copy2),
        aux_save2: None,
    },
);

/// The registered type, for type checks and `ModuleTypeSetValue`.
pub fn entry_type() -> *mut raw::RedisModuleType {
    HC_TYPE
        .raw_type
        .try_borrow()
        .map(|t| *t)
        .unwrap_or(ptr::null_mut())
}

unsafe fn entry_ref<'a>(value: *const c_void) -> Option<&'a Entry> {
    Entry::from_raw(value)
}

extern "C" fn rdb_load(rdb: *mut raw::RedisModuleIO, encver: c_int) -> *mut c_void {
    if encver != ENCODING_VERSION {
        return ptr::null_mut();
    }
    let Some(entry) = saved::load(&mut RdbIo(rdb)) else {
        return ptr::null_mut();
    };
    if is_loading() {
        index_while_loading(rdb, &entry);
    }
    Entry::into_raw(entry)
}

/// While the live databases load, commands replayed from the AOF after its RDB preamble
/// (such as HC.DELTAG) need the index. Entries are indexed as they load; the end of the load
/// rebuilds the index from the keyspace, dropping any entry Redis chose not to keep. Entries
/// loaded into the temporary databases of a `repl-diskless-load swapdb` sync are not indexed
/// here (the index serves the live databases until the swap; see `load_phase`).
fn index_while_loading(rdb: *mut raw::RedisModuleIO, entry: &Entry) {
    // SAFETY: rdb is the IO of the current load.
    let (name, db) = unsafe {
        match (
            raw::RedisModule_GetKeyNameFromIO,
            raw::RedisModule_GetDbIdFromIO,
        ) {
            (Some(name), Some(db)) => (name(rdb), db(rdb)),
            _ => return,
        }
    };
    if name.is_null() || db < 0 {
        return;
    }
    let key = RedisString::string_as_slice(name);
    let arrived = Change::Arrived {
        db,
        key,
        entry,
        version: entry.version,
        renumbered: false,
        gone: false,
    };
    apply(arrived, Announce::No);
}

unsafe extern "C" fn rdb_save(rdb: *mut raw::RedisModuleIO, value: *mut c_void) {
    let Some(entry) = entry_ref(value) else {
        return;
    };
    saved::save(entry, gone_at(rdb, entry), &mut RdbIo(rdb));
}

/// `HC.SET key value [TAGS tag ...]`; Redis appends the expiry itself (PEXPIREAT).
unsafe extern "C" fn aof_rewrite(
    aof: *mut raw::RedisModuleIO,
    key: *mut raw::RedisModuleString,
    value: *mut c_void,
) {
    let (Some(entry), Some(emit)) = (entry_ref(value), raw::RedisModule_EmitAOF) else {
        return;
    };
    if gone_at(aof, entry) {
        // Logically deleted: the rewritten AOF does not bring it back.
        return;
    }
    let command = c"HC.SET";
    if entry.tags().next().is_none() {
        emit(
            aof,
            command.as_ptr(),
            c"sb".as_ptr(),
            key,
            entry.value().as_ptr(),
            entry.value().len(),
        );
        return;
    }
    let tags: Vec<RedisString> = entry
        .tags()
        .map(|t| RedisString::create_from_slice(ptr::null_mut(), t))
        .collect();
    let mut argv: Vec<*mut raw::RedisModuleString> = tags.iter().map(|t| t.inner).collect();
    emit(
        aof,
        command.as_ptr(),
        c"sbcv".as_ptr(),
        key,
        entry.value().as_ptr(),
        entry.value().len(),
        c"TAGS".as_ptr(),
        argv.as_mut_ptr(),
        argv.len(),
    );
}

unsafe extern "C" fn mem_usage(value: *const c_void) -> usize {
    entry_ref(value).map_or(0, Entry::memory_usage)
}

unsafe extern "C" fn digest(md: *mut raw::RedisModuleDigest, value: *mut c_void) {
    let (Some(entry), Some(add), Some(end)) = (
        entry_ref(value),
        raw::RedisModule_DigestAddStringBuffer,
        raw::RedisModule_DigestEndSequence,
    ) else {
        return;
    };
    add(md, entry.value().as_ptr().cast(), entry.value().len());
    for tag in entry.tags() {
        add(md, tag.as_ptr().cast(), tag.len());
    }
    end(md);
}

unsafe extern "C" fn free(value: *mut c_void) {
    if !value.is_null() {
        drop(Entry::box_from_raw(value));
    }
}

unsafe extern "C" fn copy2(
    ctx: *mut raw::RedisModuleKeyOptCtx,
    value: *const c_void,
) -> *mut c_void {
    let Some(entry) = entry_ref(value) else {
        return ptr::null_mut();
    };
    let copy = entry.duplicate();
    let from_db = raw::RedisModule_GetDbIdFromOptCtx.map_or(-1, |f| f(ctx));
    if from_db >= 0 && is_gone(from_db, entry) {
        // A copy of a logically deleted entry is just as gone.
        copy.mark_dead();
    }
    note_copy_target(ctx, from_db);
    Entry::into_raw(copy)
}

/// Tells `copy_to`, which comes next, where the copy lands (see [`notified_db`]).
unsafe fn note_copy_target(ctx: *mut raw::RedisModuleKeyOptCtx, from_db: i32) {
    let (Some(to_db), Some(to_key)) = (
        raw::RedisModule_GetToDbIdFromOptCtx,
        raw::RedisModule_GetToKeyNameFromOptCtx,
    ) else {
        return;
    };
    let (to_db, to_key) = (to_db(ctx), to_key(ctx));
    if from_db < 0 || to_db < 0 || to_key.is_null() {
        return;
    }
    notified_db::copied(from_db, to_db, RedisString::string_as_slice(to_key));
}

/// Called whenever an entry leaves the keyspace but for flushes: DEL/UNLINK, expiry,
/// eviction, overwrite, the source side of RENAME/MOVE, RESTORE REPLACE, our own deletes.
unsafe extern "C" fn unlink2(ctx: *mut raw::RedisModuleKeyOptCtx, value: *const c_void) {
    notified_db::entry_left(value);
    let (Some(entry), Some(key_name), Some(db_id)) = (
        entry_ref(value),
        raw::RedisModule_GetKeyNameFromOptCtx,
        raw::RedisModule_GetDbIdFromOptCtx,
    ) else {
        return;
    };
    let name = key_name(ctx);
    if name.is_null() {
        return;
    }
    let key = RedisString::string_as_slice(name);
    let db = db_id(ctx);
    let gone = is_gone(db, entry);
    if gone {
        // RENAME and MOVE carry this very value elsewhere: it stays gone there.
        entry.mark_dead();
    }
    let announce = if with_state(|s| s.take_removal_announced_by_caller(db, key)) {
        Announce::No
    } else {
        Announce::Yes
    };
    let left = Change::Left {
        db,
        key,
        entry,
        gone,
    };
    apply(left, announce);
}
