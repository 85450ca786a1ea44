//! The `INFO hybridcache` section (Redis prefixes each field with `hybridcache_`).

use crate::config::CHANNEL;
use crate::state::{try_with_state, with_state};
use redis_module::{raw, Context};

/// Registers [`info`] as the module's INFO callback.
pub fn register(ctx: &Context) {
    raw::register_info_function(ctx.get_raw(), Some(info));
}

extern "C" fn info(ctx: *mut raw::RedisModuleInfoCtx, for_crash_report: i32) {
    let read = |s: &mut crate::state::State| {
        (
            s.index.stats(),
            s.sequencer.origin().to_string(),
            s.sequencer.last(),
            s.fills.stats(),
            s.events.stats,
            (s.events.log.len(), s.events.log.memory()),
        )
    };
    // A crash report may be printed while this thread holds the state: never wait for it.
    let snapshot = if for_crash_report != 0 {
        try_with_state(read)
    } else {
        Some(with_state(read))
    };
    let Some((stats, origin, last_seq, fills, events, (log_changes, log_bytes))) = snapshot else {
        return;
    };
    let channel: String = String::from_utf8_lossy(&CHANNEL.get())
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    raw::add_info_section(ctx, None);
    raw::add_info_field_str(ctx, "version", env!("CARGO_PKG_VERSION"));
    raw::add_info_field_str(
        ctx,
        "role",
        if crate::role::publishes() {
            "publishing"
        } else {
            "silent-cluster-replica"
        },
    );
    for (name, value) in [
        ("keys", stats.keys),
        ("tags", stats.tags),
        ("tag_links", stats.links),
        ("events_published", last_seq),
        ("pending_removals", stats.pending_removals),
        ("tombstones", stats.tombstones),
        ("fill_leases", fills.leases),
        ("fill_tag_removals", fills.tag_removals),
        ("fill_leases_bytes", fills.bytes),
        ("fills_accepted", fills.accepted),
        ("fills_refused", fills.refused),
        ("fills_refused_untracked", fills.refused_untracked),
        ("event_messages", events.messages),
        ("event_changes", events.changes),
        ("event_log_changes", log_changes as u64),
        ("event_log_bytes", log_bytes as u64),
        ("event_replays", events.replays),
        ("event_replays_too_old", events.replays_too_old),
    ] {
        raw::add_info_field_unsigned_long_long(ctx, name, value);
    }
    raw::add_info_field_str(ctx, "channel", &channel);
    raw::add_info_field_str(ctx, "origin", &origin);
    raw::add_info_field_str(ctx, "notification_client_db", crate::client_db::behaviour());
}
