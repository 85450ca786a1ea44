//! Filling a server fast: pipelined writes of ~1000 commands from Rust. The baselines are
//! filled the same way.

use hybridcache_protocol::command;
use std::ops::Range;

/// Commands per pipeline.
pub const PIPELINE: usize = 1000;

/// The name of key `i`, as redis-benchmark writes `k:__rand_int__` (12 digits).
pub fn key(i: u64) -> String {
    format!("k:{i:012}")
}

/// A value of `size` bytes.
pub fn value(size: usize) -> Vec<u8> {
    (0..size).map(|i| b'a' + (i % 26) as u8).collect()
}

/// How a key is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `HC.SET key value TAGS tag ...` (module).
    Module,
    /// `SET key value` + `SADD tag key` per tag (plain Redis: the Lua script's data).
    SetsPerTag,
    /// `SET key value` only.
    Plain,
}

/// Writes keys `range` with `value` and the tags `tags_of(i)`, in pipelines of
/// [`PIPELINE`] keys.
///
/// # Panics
/// When a write fails.
pub fn fill(
    con: &mut redis::Connection,
    scheme: Scheme,
    range: Range<u64>,
    value: &[u8],
    mut tags_of: impl FnMut(u64) -> Vec<String>,
) {
    let mut pipe = redis::pipe();
    let mut queued = 0;
    for i in range {
        let key = key(i);
        match scheme {
            Scheme::Module => {
                let tags = tags_of(i);
                let cmd = pipe.cmd(command::SET).arg(&key).arg(value);
                if !tags.is_empty() {
                    cmd.arg(command::option::TAGS).arg(&tags);
                }
                cmd.ignore();
            }
            Scheme::SetsPerTag => {
                pipe.cmd("SET").arg(&key).arg(value).ignore();
                for tag in tags_of(i) {
                    pipe.cmd("SADD").arg(tag).arg(&key).ignore();
                }
            }
            Scheme::Plain => {
                pipe.cmd("SET").arg(&key).arg(value).ignore();
            }
        }
        queued += 1;
        if queued == PIPELINE {
            flush(con, &mut pipe);
            queued = 0;
        }
    }
    if queued > 0 {
        flush(con, &mut pipe);
    }
}

fn flush(con: &mut redis::Connection, pipe: &mut redis::Pipeline) {
    pipe.query::<()>(con)
        .unwrap_or_else(|e| panic!("pipelined fill failed: {e}"));
    pipe.clear();
}

/// `count` distinct tags of a pool of `pool` (> `count`) for key `i`, drawn pseudo-randomly
/// but the same in every run and for every scheme.
///
/// # Panics
/// When the pool is not bigger than `count`.
pub fn pooled_tags(i: u64, pool: u64, count: usize) -> Vec<String> {
    assert!(
        pool > count as u64,
        "a pool of {pool} tags cannot give {count} distinct tags per key"
    );
    let mut rng = hybridcache_tests::client_support::SplitMix64::new(i);
    let mut picked: Vec<u64> = Vec::with_capacity(count);
    while picked.len() < count {
        let t = rng.below(pool);
        if !picked.contains(&t) {
            picked.push(t);
        }
    }
    picked.into_iter().map(|t| format!("tag:{t:04}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_redis_benchmark_and_tags_are_distinct() {
        assert_eq!(key(42), "k:000000000042");
        for count in [0, 1, 3, 10] {
            let tags = pooled_tags(7, 1000, count);
            assert_eq!(tags.len(), count);
            let distinct: std::collections::HashSet<_> = tags.iter().collect();
            assert_eq!(distinct.len(), count, "{tags:?}");
            assert_eq!(tags, pooled_tags(7, 1000, count));
        }
        assert_eq!(pooled_tags(7, 1000, 3)[..1], pooled_tags(7, 1000, 1)[..]);
        assert_eq!(value(30).len(), 30);
    }
}
