//! A short log of the invalidations received, so that a value read from Redis (or written)
//! before an invalidation is never put into L1 after it.
//!
//! A reader takes [`InvalidationLog::mark`] before going to Redis; after putting the value in
//! L1 it asks [`InvalidationLog::affects`] whether anything recorded since names it, and drops
//! it if so. Event handling records before it applies, so either the reader sees the record
//! or the event's removal comes after the insert.

use hybridcache_protocol::TagMatch;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// Records kept; a reader older than that is treated as affected.
const CAPACITY: usize = 4096;

/// One invalidation.
#[derive(Debug, Clone)]
pub(crate) enum Record {
    /// Keys changed; event `seq` from `origin`.
    Keys {
        origin: Arc<str>,
        seq: u64,
        keys: Vec<String>,
        /// The keys left Redis by other means than HC commands (`removed`: expiry among
        /// them), rather than being written or removed on purpose.
        removed: bool,
    },
    /// Keys carrying any of these tags (`matching` all: all of them) are gone.
    Tags {
        origin: Arc<str>,
        seq: u64,
        tags: Vec<String>,
        matching: TagMatch,
    },
    /// Anything may have changed (flush, reconnect, missed events).
    Reset,
}

/// Does a key event (`seq` from `origin`) invalidate an entry of version `version` read from
/// `entry_origin`? Not when it announces that very value or an older one.
pub(crate) fn key_event_hits(
    entry_origin: Option<&str>,
    version: u64,
    origin: &str,
    seq: u64,
) -> bool {
    entry_origin != Some(origin) || seq > version
}

/// Does a tag event invalidate an entry carrying the tag? Only an event of the server the
/// entry was read from (a tag removal on one cluster node removes that node's keys only),
/// and not when the entry was written after the tag was removed. Entries that never came
/// from Redis are hit by any removal of their tags.
pub(crate) fn tag_event_hits(
    entry_origin: Option<&str>,
    version: u64,
    origin: &str,
    seq: u64,
) -> bool {
    match entry_origin {
        None => true,
        Some(entry_origin) => entry_origin == origin && seq >= version,
    }
}

#[derive(Debug, Default)]
struct Inner {
    records: VecDeque<(u64, Record)>,
    next_id: u64,
}

#[derive(Debug, Default)]
pub(crate) struct InvalidationLog {
    inner: Mutex<Inner>,
}

impl InvalidationLog {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The position of the next record: records from here on happened after this call.
    pub(crate) fn mark(&self) -> u64 {
        self.lock().next_id
    }

    pub(crate) fn push(&self, record: Record) {
        let mut inner = self.lock();
        let id = inner.next_id;
        inner.next_id += 1;
        inner.records.push_back((id, record));
        if inner.records.len() > CAPACITY {
            inner.records.pop_front();
        }
    }

    /// Whether a record since `mark` invalidates the entry `key` (tags, origin, version).
    #[cfg(test)]
    pub(crate) fn affects(
        &self,
        mark: u64,
        key: &str,
        tags: &[String],
        origin: Option<&str>,
        version: u64,
    ) -> bool {
        self.affects_unless_expired(mark, key, tags, origin, version, false)
    }

    /// Like [`affects`](Self::affects); with `expired`, a `removed` record (the key's expiry
    /// in Redis) does not count: an expired value is still the last one written, which is
    /// what fail-safe serves.
    pub(crate) fn affects_unless_expired(
        &self,
        mark: u64,
        key: &str,
        tags: &[String],
        origin: Option<&str>,
        version: u64,
        expired: bool,
    ) -> bool {
        let inner = self.lock();
        if inner.next_id == mark {
            return false;
        }
        let oldest = inner.records.front().map_or(inner.next_id, |(id, _)| *id);
        if oldest > mark {
            return true;
        }
        // Ids are consecutive: the records since `mark` are the last `next_id - mark`.
        let since = usize::try_from(mark - oldest).unwrap_or(usize::MAX);
        inner
            .records
            .range(since.min(inner.records.len())..)
            .any(|(_, record)| match record {
                Record::Reset => true,
                Record::Keys {
                    origin: o,
                    seq,
                    keys,
                    removed,
                } => {
                    !(expired && *removed)
                        && keys.iter().any(|k| k == key)
                        && key_event_hits(origin, version, o, *seq)
                }
                Record::Tags {
                    origin: o,
                    seq,
                    tags: removed,
                    matching,
                } => matching.reaches(removed, tags) && tag_event_hits(origin, version, o, *seq),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(origin: &str, seq: u64, keys: &[&str]) -> Record {
        Record::Keys {
            origin: origin.into(),
            seq,
            keys: keys.iter().map(|k| k.to_string()).collect(),
            removed: false,
        }
    }

    fn tags(names: &[&str]) -> Vec<String> {
        names.iter().map(|t| t.to_string()).collect()
    }

    #[test]
    fn nothing_recorded_since_the_mark_affects_nothing() {
        let log = InvalidationLog::default();
        log.push(keys("o", 1, &["k"]));
        let mark = log.mark();
        assert!(!log.affects(mark, "k", &[], Some("o"), 0));
    }

    #[test]
    fn a_later_key_event_affects_an_older_read() {
        let log = InvalidationLog::default();
        let mark = log.mark();
        log.push(keys("o", 12, &["k"]));
        assert!(log.affects(mark, "k", &[], Some("o"), 10));
        assert!(!log.affects(mark, "other", &[], Some("o"), 10));
    }

    #[test]
    fn the_event_of_the_value_read_or_written_does_not_affect_it() {
        let log = InvalidationLog::default();
        let mark = log.mark();
        log.push(keys("o", 12, &["k"]));
        assert!(!log.affects(mark, "k", &[], Some("o"), 12));
        assert!(!log.affects(mark, "k", &[], Some("o"), 13));
    }

    #[test]
    fn events_of_another_origin_always_affect() {
        let log = InvalidationLog::default();
        let mark = log.mark();
        log.push(keys("p", 1, &["k"]));
        assert!(log.affects(mark, "k", &[], Some("o"), 100));
        assert!(log.affects(mark, "k", &[], None, 0));
    }

    #[test]
    fn tag_events_affect_entries_with_the_tag_written_before_them() {
        let log = InvalidationLog::default();
        let mark = log.mark();
        log.push(Record::Tags {
            origin: "o".into(),
            seq: 20,
            tags: tags(&["t"]),
            matching: TagMatch::Any,
        });
        assert!(log.affects(mark, "k", &tags(&["a", "t"]), Some("o"), 19));
        assert!(!log.affects(mark, "k", &tags(&["t"]), Some("o"), 21));
        assert!(!log.affects(mark, "k", &tags(&["a"]), Some("o"), 19));
    }

    #[test]
    fn an_all_tags_event_affects_only_entries_with_every_tag() {
        let log = InvalidationLog::default();
        let mark = log.mark();
        log.push(Record::Tags {
            origin: "o".into(),
            seq: 20,
            tags: tags(&["a", "b"]),
            matching: TagMatch::All,
        });
        assert!(log.affects(mark, "k", &tags(&["a", "b", "c"]), Some("o"), 19));
        assert!(!log.affects(mark, "k", &tags(&["a", "c"]), Some("o"), 19));
        assert!(!log.affects(mark, "k", &tags(&["a", "b"]), Some("o"), 21));
    }

    #[test]
    fn tag_events_of_another_server_do_not_affect_its_entries() {
        let log = InvalidationLog::default();
        let mark = log.mark();
        log.push(Record::Tags {
            origin: "p".into(),
            seq: 20,
            tags: tags(&["t"]),
            matching: TagMatch::Any,
        });
        assert!(!log.affects(mark, "k", &tags(&["t"]), Some("o"), 1));
        assert!(log.affects(mark, "k", &tags(&["t"]), None, 0));
    }

    #[test]
    fn in_a_full_log_exactly_the_records_since_the_mark_count() {
        let log = InvalidationLog::default();
        for seq in 0..(CAPACITY as u64 + 10) {
            log.push(keys("o", seq, &["k"]));
        }
        let mark = log.mark();
        assert!(!log.affects(mark, "k", &[], Some("p"), 0));
        log.push(keys("o", 5000, &["x"]));
        assert!(
            !log.affects(mark, "k", &[], Some("p"), 0),
            "k only before the mark"
        );
        let second = log.mark();
        log.push(keys("o", 5001, &["k"]));
        assert!(log.affects(mark, "k", &[], Some("p"), 0));
        assert!(
            log.affects(second, "k", &[], Some("p"), 0),
            "the record at the mark"
        );
        assert!(!log.affects(log.mark(), "k", &[], Some("p"), 0));
    }

    #[test]
    fn reset_affects_everything_and_so_does_an_overflowed_log() {
        let log = InvalidationLog::default();
        let mark = log.mark();
        log.push(Record::Reset);
        assert!(log.affects(mark, "k", &[], Some("o"), 1));

        let log = InvalidationLog::default();
        let mark = log.mark();
        for seq in 0..(CAPACITY as u64 + 10) {
            log.push(keys("o", seq, &["other"]));
        }
        assert!(log.affects(mark, "k", &[], Some("o"), u64::MAX));
    }
}
