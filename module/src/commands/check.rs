//! `HC.CHECK`: verifies that the tag index matches the keyspace exactly (see
//! [`crate::check`]). O(number of keys): a debugging and testing command, flagged `admin`.
//!
//! Reply: `["keys", n, "links", n, "pending_removals", n, "problems", [text, ...]]`; no
//! problems means the index and the keyspace agree.

use super::{reply_array_header, reply_bytes, REPLIED};
use crate::check::{Findings, Observed};
use crate::state::{is_gone, with_state};
use redis_module::{raw, Context, RedisError, RedisResult, RedisString};
use std::collections::BTreeMap;

/// Problems listed at most; the last line says how many more there were.
const MAX_PROBLEMS: usize = 1000;

pub fn hc_check(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    if args.len() != 1 {
        return Err(RedisError::WrongArity);
    }
    let mut by_db: BTreeMap<i32, Vec<Observed>> = BTreeMap::new();
    crate::scan::for_each_entry(ctx, &mut |db, name, entry| {
        let observed = Observed {
            key: name.to_vec(),
            tags: entry.tags().map(<[u8]>::to_vec).collect(),
            gone: is_gone(db, entry),
            slot: entry.slot(),
        };
        by_db.entry(db).or_default().push(observed);
    });
    let (total, pending) = with_state(|s| {
        for db in s.index.dbs() {
            by_db.entry(db).or_default();
        }
        let mut total = Findings::default();
        for (db, entries) in &by_db {
            let found = s.index.check(*db, entries);
            total.keys += found.keys;
            total.links += found.links;
            total.problems.extend(found.problems);
        }
        (total, s.index.pending_removals())
    });
    let mut problems = total.problems;
    if problems.len() > MAX_PROBLEMS {
        let more = problems.len() - MAX_PROBLEMS;
        problems.truncate(MAX_PROBLEMS);
        problems.push(format!("... and {more} more"));
    }
    reply_array_header(ctx, 8);
    for (label, value) in [
        ("keys", total.keys),
        ("links", total.links),
        ("pending_removals", pending),
    ] {
        reply_bytes(ctx, label.as_bytes());
        raw::reply_with_long_long(ctx.get_raw(), i64::try_from(value).unwrap_or(i64::MAX));
    }
    reply_bytes(ctx, b"problems");
    reply_array_header(ctx, problems.len());
    for problem in &problems {
        reply_bytes(ctx, problem.as_bytes());
    }
    Ok(REPLIED)
}
