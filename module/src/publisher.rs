//! Publishing invalidation events: the changes of one event-loop turn go out as one message
//! on the configured channel, just before Redis writes that turn's replies.
//!
//! A change is numbered and appended to the turn's message when it happens
//! ([`crate::event_batch`]). The message is published from the `EventLoop` BEFORE_SLEEP
//! server event: in Redis 7.0's `beforeSleep()` that event comes after the commands read
//! from sockets in this turn (and the fast expire cycle) have run, and before
//! `handleClientsWithPendingWrites` writes their replies. Commands that run later in the
//! same `beforeSleep()` (clients unblocked by `processUnblockedClients`, e.g. at the end of
//! `CLIENT PAUSE`) would otherwise wait a whole turn: from the BEFORE_SLEEP event to the
//! AFTER_SLEEP event every change is published at once. A message that reaches
//! `hybridcache.event-message-bytes` is published at once too. docs/ARCHITECTURE.md states
//! what this ordering guarantees.
//!
//! Every published message is kept by the event log ([`crate::event_log`]) for
//! `HC.EVENTS SINCE`.

use crate::changes::{Announce, Applied, Change, Publishing};
use crate::config::CHANNEL;
use crate::event_log::Since;
use crate::role;
use crate::state::{is_loading, with_state};
use hybridcache_protocol::shard;
use redis_module::{raw, Context, RedisString, RedisValue};
use std::os::raw::c_void;
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

/// A context that outlives any command, for publishing from type callbacks and server
/// events (which get none). Redis 7.0's `PublishMessage` does not depend on its client.
static PUBLISH_CTX: AtomicPtr<raw::RedisModuleCtx> = AtomicPtr::new(std::ptr::null_mut());

/// Set from the BEFORE_SLEEP event to the AFTER_SLEEP event: the turn's message has gone
/// out, so a change made now is published at once.
static AFTER_FLUSH: AtomicBool = AtomicBool::new(false);

/// Creates the publishing context and subscribes to the event-loop events; called once at
/// load.
pub fn init(ctx: &Context) -> Result<(), String> {
    let event = raw::RedisModuleEvent {
        id: raw::REDISMODULE_EVENT_EVENTLOOP,
        dataver: 1,
    };
    // SAFETY: called from OnLoad with its context.
    let status = unsafe {
        raw::RedisModule_SubscribeToServerEvent
            .map_or(1, |f| f(ctx.get_raw(), event, Some(on_event_loop)))
    };
    if status != raw::REDISMODULE_OK as i32 {
        return Err("cannot subscribe to the event-loop server event".into());
    }
    // SAFETY: ctx is the module's load context.
    let detached = unsafe {
        raw::RedisModule_GetDetachedThreadSafeContext
            .map_or(std::ptr::null_mut(), |f| f(ctx.get_raw()))
    };
    PUBLISH_CTX.store(detached, Ordering::Relaxed);
    Ok(())
}

unsafe extern "C" fn on_event_loop(
    _ctx: *mut raw::RedisModuleCtx,
    _event: raw::RedisModuleEvent,
    subevent: u64,
    _data: *mut c_void,
) {
    match subevent {
        raw::REDISMODULE_SUBEVENT_EVENTLOOP_BEFORE_SLEEP => {
            // New log bounds (CONFIG SET) apply within a turn.
            let bounds = crate::limits::event_log_bounds();
            with_state(|s| s.events.log.set_bounds(bounds));
            flush();
            AFTER_FLUSH.store(true, Ordering::Relaxed);
        }
        raw::REDISMODULE_SUBEVENT_EVENTLOOP_AFTER_SLEEP => {
            AFTER_FLUSH.store(false, Ordering::Relaxed);
        }
        _ => {}
    }
}

/// The one way a change is applied: the index, the fill leases and the turn's message
/// together ([`State::apply`](crate::state::State::apply)); the message is published at
/// once when it is full or the turn's message has gone out already.
pub(crate) fn apply(change: Change<'_>, announce: Announce) -> Applied {
    let publishing = Publishing(!is_loading() && role::publishes());
    let (applied, full) = with_state(|s| {
        let applied = s.apply(change, announce, publishing);
        let full = s.events.batch.byte_len() >= crate::limits::event_message_bytes();
        (applied, full)
    });
    if applied.seq.is_some() && (full || AFTER_FLUSH.load(Ordering::Relaxed)) {
        flush();
    }
    applied
}

/// Publishes the waiting changes as one message and keeps it in the log.
pub fn flush() {
    let Some(sealed) = with_state(|s| s.events.batch.seal()) else {
        return;
    };
    let ctx = PUBLISH_CTX.load(Ordering::Relaxed);
    let channel = CHANNEL.get();
    if role::publishes_sharded() {
        let mut channels = shard_channels(ctx, &channel);
        if let Some(own) = own_shard_channel(ctx, &channel) {
            if !channels.contains(&own) {
                channels.push(own);
            }
        }
        for shard_channel in channels {
            send(ctx, &shard_channel, &sealed.message, true);
        }
    } else {
        send(ctx, &channel, &sealed.message, false);
    }
    let bounds = crate::limits::event_log_bounds();
    with_state(|s| s.events.published(sealed, bounds));
}

/// Publishes one message on `channel` (a shard channel when `shard`).
fn send(ctx: *mut raw::RedisModuleCtx, channel: &[u8], message: &[u8], shard: bool) {
    // SAFETY: strings are created without automatic memory management and freed here;
    // the API functions exist on every Redis this module loads on (7.0+).
    unsafe {
        let publish = if shard {
            raw::RedisModule_PublishMessageShard
        } else {
            raw::RedisModule_PublishMessage
        };
        if let (Some(create), Some(publish), Some(free)) = (
            raw::RedisModule_CreateString,
            publish,
            raw::RedisModule_FreeString,
        ) {
            let channel = create(ctx, channel.as_ptr().cast(), channel.len());
            let message = create(ctx, message.as_ptr().cast(), message.len());
            publish(ctx, channel, message);
            free(ctx, channel);
            free(ctx, message);
        }
    }
}

/// This primary's own shard channel (named after the lowest slot it serves), looked up with
/// `CLUSTER MYID` and `CLUSTER SLOTS` at most once a second: always published on, so that
/// subscribers on the shard's replicas hear it even when nobody subscribes on the primary.
fn own_shard_channel(ctx: *mut raw::RedisModuleCtx, base: &[u8]) -> Option<Vec<u8>> {
    type Cached = Option<(Vec<u8>, Option<Vec<u8>>, i64)>;
    static CACHED: std::sync::Mutex<Cached> = std::sync::Mutex::new(None);
    if ctx.is_null() {
        return None;
    }
    // SAFETY: a plain clock read.
    let now = unsafe { raw::RedisModule_Milliseconds.map_or(0, |f| f()) };
    let mut cached = CACHED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((for_base, channel, at)) = cached.as_ref() {
        if for_base.as_slice() == base && now.saturating_sub(*at) < 1000 {
            return channel.clone();
        }
    }
    let channel = lowest_own_slot(ctx).map(|slot| shard::shard_channel(base, slot));
    *cached = Some((base.to_vec(), channel.clone(), now));
    channel
}

/// The lowest slot this node serves as a primary, from `CLUSTER SLOTS`.
fn lowest_own_slot(ctx: *mut raw::RedisModuleCtx) -> Option<u16> {
    let context = Context::new(ctx);
    let text = |v: &RedisValue| match v {
        RedisValue::SimpleString(s) | RedisValue::BulkString(s) => Some(s.as_bytes().to_vec()),
        RedisValue::StringBuffer(b) => Some(b.clone()),
        RedisValue::BulkRedisString(s) => Some(s.as_slice().to_vec()),
        _ => None,
    };
    let myid = RedisString::create_from_slice(ctx, b"MYID");
    let id = text(&context.call("CLUSTER", &[&myid]).ok()?)?;
    let slots = RedisString::create_from_slice(ctx, b"SLOTS");
    let RedisValue::Array(ranges) = context.call("CLUSTER", &[&slots]).ok()? else {
        return None;
    };
    ranges
        .iter()
        .filter_map(|range| {
            let RedisValue::Array(fields) = range else {
                return None;
            };
            let (Some(RedisValue::Integer(start)), Some(RedisValue::Array(primary))) =
                (fields.first(), fields.get(2))
            else {
                return None;
            };
            let primary_id = primary.get(2).and_then(text)?;
            (primary_id == id)
                .then(|| u16::try_from(*start).ok())
                .flatten()
        })
        .min()
}

/// The shard channels of `base` this node has subscribers for (`PUBSUB SHARDCHANNELS`):
/// subscribers name a shard's channel after the lowest slot its primary serves
/// ([`hybridcache_protocol::shard`]), which the module does not track; publishing on every
/// channel of that form that has subscribers reaches them wherever a reshard moved them.
fn shard_channels(ctx: *mut raw::RedisModuleCtx, base: &[u8]) -> Vec<Vec<u8>> {
    if ctx.is_null() {
        return Vec::new();
    }
    let pattern = shard::shard_channel_pattern(base);
    let context = Context::new(ctx);
    let pattern = RedisString::create_from_slice(ctx, &pattern);
    let subcommand = RedisString::create_from_slice(ctx, b"SHARDCHANNELS");
    let reply = context.call("PUBSUB", &[&subcommand, &pattern]);
    let Ok(RedisValue::Array(names)) = reply else {
        return Vec::new();
    };
    names
        .into_iter()
        .filter_map(|name| match name {
            RedisValue::StringBuffer(bytes) => Some(bytes),
            RedisValue::BulkRedisString(s) => Some(s.as_slice().to_vec()),
            RedisValue::BulkString(s) | RedisValue::SimpleString(s) => Some(s.into_bytes()),
            _ => None,
        })
        .filter(|name| shard::is_shard_channel(name, base))
        .collect()
}

/// The changes published after `seq` (`HC.EVENTS SINCE`), counted in INFO.
pub fn since(seq: u64, count: usize) -> Since {
    with_state(|s| {
        let answer = s.events.log.since(s.sequencer.origin(), seq, count);
        s.events.count_replay(&answer);
        answer
    })
}
