//! Comparing the changes received with what a server's event log holds and with what a
//! driver made. Pure Rust.

use hybridcache_protocol::{Change, InvalidationEvent, Op};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Differences listed at most.
const LISTED_DIFFERENCES: usize = 20;

/// A short description of a change: `seq 12 db 0 set keys [a, b]`.
pub fn describe_change(change: &InvalidationEvent) -> String {
    let db = change
        .db
        .map_or_else(|| "every db".to_string(), |d| format!("db {d}"));
    let names = |names: &[hybridcache_protocol::Name]| {
        let shown: Vec<String> = names
            .iter()
            .take(8)
            .map(|n| format!("{:?}", String::from_utf8_lossy(n.as_bytes())))
            .collect();
        let more = names
            .len()
            .checked_sub(8)
            .filter(|n| *n > 0)
            .map_or_else(String::new, |n| format!(" and {n} more"));
        format!("[{}{more}]", shown.join(", "))
    };
    let what = match &change.change {
        Change::Keys { keys } => format!("keys {}", names(keys)),
        Change::Tags { tags, matching } => format!("tags ({}) {}", matching.as_str(), names(tags)),
        Change::Flush => "flush".to_string(),
    };
    format!(
        "seq {} {db} {} {what} (origin {})",
        change.seq,
        change.op.as_str(),
        change.origin
    )
}

/// The differences between the changes a subscription received and those a server's log
/// holds over the same numbers (empty when they are equal, change for change).
pub fn log_differences(
    received: &[InvalidationEvent],
    logged: &[InvalidationEvent],
) -> Vec<String> {
    let mut differences = Vec::new();
    let range = |changes: &[InvalidationEvent]| match (changes.first(), changes.last()) {
        (Some(a), Some(b)) => format!("{} changes, seq {}..={}", changes.len(), a.seq, b.seq),
        _ => "no change".to_string(),
    };
    if received.len() != logged.len() {
        differences.push(format!(
            "received {}, the log holds {}",
            range(received),
            range(logged)
        ));
    }
    for (i, pair) in received.iter().zip(logged).enumerate() {
        if pair.0 != pair.1 {
            differences.push(format!(
                "change #{i}: received {}, the log has {}",
                describe_change(pair.0),
                describe_change(pair.1)
            ));
            if differences.len() > LISTED_DIFFERENCES {
                break;
            }
        }
    }
    if received.len() != logged.len() {
        let seqs = |changes: &[InvalidationEvent]| -> BTreeSet<u64> {
            changes.iter().map(|c| c.seq).collect()
        };
        let (got, logged_seqs) = (seqs(received), seqs(logged));
        let missing: Vec<u64> = logged_seqs.difference(&got).take(20).copied().collect();
        let extra: Vec<u64> = got.difference(&logged_seqs).take(20).copied().collect();
        differences.push(format!(
            "in the log but not received: seq {missing:?}; received but not in the log: seq {extra:?}"
        ));
    }
    differences
}

/// What a change names: a key or a tag.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Subject {
    /// A key (`kind: keys`).
    Key(Vec<u8>),
    /// A tag (`kind: tags`).
    Tag(Vec<u8>),
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Key(k) => write!(f, "key {:?}", String::from_utf8_lossy(k)),
            Subject::Tag(t) => write!(f, "tag {:?}", String::from_utf8_lossy(t)),
        }
    }
}

/// The subjects a change names.
fn subjects(change: &InvalidationEvent) -> Vec<Subject> {
    match &change.change {
        Change::Keys { keys } => keys
            .iter()
            .map(|k| Subject::Key(k.as_bytes().to_vec()))
            .collect(),
        Change::Tags { tags, .. } => tags
            .iter()
            .map(|t| Subject::Tag(t.as_bytes().to_vec()))
            .collect(),
        Change::Flush => Vec::new(),
    }
}

/// A change a single-threaded driver made, which must be announced exactly once: a change
/// of `op` in `db` that names `subject` (a command that changes several keys or tags at once
/// expects one of these per key or tag; they may come in one change).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedChange {
    /// The database.
    pub db: Option<u32>,
    /// Why.
    pub op: Op,
    /// The key or tag it names.
    pub subject: Subject,
}

impl ExpectedChange {
    /// A change of `key` in `db`.
    pub fn key(db: u32, op: Op, key: impl AsRef<[u8]>) -> Self {
        Self {
            db: Some(db),
            op,
            subject: Subject::Key(key.as_ref().to_vec()),
        }
    }

    /// A removal of the keys of `tag` in `db`.
    pub fn tag(db: u32, op: Op, tag: impl AsRef<[u8]>) -> Self {
        Self {
            db: Some(db),
            op,
            subject: Subject::Tag(tag.as_ref().to_vec()),
        }
    }
}

impl fmt::Display for ExpectedChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let db = self
            .db
            .map_or_else(|| "every db".to_string(), |d| format!("db {d}"));
        write!(f, "{} of {} in {db}", self.op.as_str(), self.subject)
    }
}

/// Where the changes a driver expects differ from those received (empty when each expected
/// change was announced exactly once and in order).
///
/// `received` are the changes of one origin in the order received. For every (database,
/// subject) the driver expects changes of, or that `owns` says the driver alone changes,
/// the ops of the received changes that name it must be exactly the expected ones, in the
/// same order: none missing, none more. Across subjects, the expected changes must be
/// announced in the driver's order (several expected changes may be one announced change:
/// `HC.DEL a b` names both keys at once). Other changes may come in between.
pub fn model_differences(
    received: &[InvalidationEvent],
    expected: &[ExpectedChange],
    owns: &dyn Fn(Option<u32>, &Subject) -> bool,
) -> Vec<String> {
    type Place = (Option<u32>, Subject);
    let wanted: BTreeSet<Place> = expected.iter().map(|e| (e.db, e.subject.clone())).collect();
    // For each subject, the received changes that name it: (index, change).
    let mut announced: BTreeMap<Place, Vec<(usize, &InvalidationEvent)>> = BTreeMap::new();
    for (i, change) in received.iter().enumerate() {
        for subject in subjects(change) {
            let place = (change.db, subject);
            if wanted.contains(&place) || owns(place.0, &place.1) {
                announced.entry(place).or_default().push((i, change));
            }
        }
    }
    let mut differences = Vec::new();
    let mut used: BTreeMap<Place, usize> = BTreeMap::new();
    let mut previous: Option<(usize, usize, u64)> = None;
    for (n, e) in expected.iter().enumerate() {
        let place = (e.db, e.subject.clone());
        let index = used.entry(place.clone()).or_default();
        let list = announced.get(&place).map(Vec::as_slice).unwrap_or_default();
        match list.get(*index) {
            None => differences.push(format!(
                "expected change #{n} ({e}) was never announced ({} announcement(s) of it for {} expected up to here)",
                list.len(),
                *index + 1
            )),
            Some((i, change)) => {
                if change.op != e.op {
                    differences.push(format!(
                        "expected change #{n} ({e}): its announcement is {}",
                        describe_change(change)
                    ));
                }
                if let Some((pn, pi, pseq)) = previous {
                    if *i < pi {
                        differences.push(format!(
                            "expected change #{n} ({e}) announced at seq {}, before expected change #{pn} (seq {pseq})",
                            change.seq
                        ));
                    }
                }
                previous = Some((n, *i, change.seq));
            }
        }
        *index += 1;
    }
    for (place, list) in &announced {
        let used = used.get(place).copied().unwrap_or(0);
        for (_, change) in list.iter().skip(used) {
            differences.push(format!(
                "{} announced more often than expected ({used} expected): {}",
                place.1,
                describe_change(change)
            ));
        }
    }
    differences
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event_stream::samples::{del, deltag, flush, set};

    #[test]
    fn log_differences_name_missing_extra_and_changed_changes() {
        let log = [set(1, "a"), set(2, "b"), set(3, "c")];
        assert!(log_differences(&log, &log).is_empty());
        let missing = log_differences(&[set(1, "a"), set(3, "c")], &log);
        assert!(
            missing
                .iter()
                .any(|d| d.contains("in the log but not received: seq [2]")),
            "{missing:?}"
        );
        let changed = log_differences(&[set(1, "a"), set(2, "x"), set(3, "c")], &log);
        assert_eq!(changed.len(), 1, "{changed:?}");
        assert!(changed[0].contains(r#"keys ["x"]"#), "{changed:?}");
        let mut other_db = set(2, "b");
        other_db.db = Some(1);
        assert_eq!(
            log_differences(&[set(1, "a"), other_db, set(3, "c")], &log).len(),
            1
        );
    }

    fn model_keys(db: Option<u32>, subject: &Subject) -> bool {
        let _ = db;
        matches!(subject, Subject::Key(k) if k.starts_with(b"m:"))
            || matches!(subject, Subject::Tag(t) if t.starts_with(b"mt:"))
    }

    #[test]
    fn each_expected_change_announced_once_in_order_with_others_between_passes() {
        let received = [
            set(1, "m:1"),
            set(2, "other"),
            del(3, &["m:1", "m:2"]),
            flush(4, None, Op::Flushall),
            deltag(5, &["mt:1", "mt:2"]),
            set(6, "m:1"),
        ];
        let expected = [
            ExpectedChange::key(0, Op::Set, "m:1"),
            ExpectedChange::key(0, Op::Del, "m:1"),
            ExpectedChange::key(0, Op::Del, "m:2"),
            ExpectedChange::tag(0, Op::Deltag, "mt:1"),
            ExpectedChange::tag(0, Op::Deltag, "mt:2"),
            ExpectedChange::key(0, Op::Set, "m:1"),
        ];
        let differences = model_differences(&received, &expected, &model_keys);
        assert!(differences.is_empty(), "{differences:?}");
    }

    #[test]
    fn a_missing_a_doubled_a_wrong_and_a_late_announcement_are_each_found() {
        let expected = [
            ExpectedChange::key(0, Op::Set, "m:1"),
            ExpectedChange::key(0, Op::Set, "m:2"),
        ];
        let missing = model_differences(&[set(1, "m:1")], &expected, &model_keys);
        assert_eq!(missing.len(), 1, "{missing:?}");
        assert!(missing[0].contains("never announced"), "{missing:?}");

        let doubled = model_differences(
            &[set(1, "m:1"), set(2, "m:1"), set(3, "m:2")],
            &expected,
            &model_keys,
        );
        assert!(
            doubled.iter().any(|d| d.contains("announced more often")),
            "{doubled:?}"
        );

        let mut wrong_db = set(2, "m:2");
        wrong_db.db = Some(1);
        let wrong = model_differences(&[set(1, "m:1"), wrong_db], &expected, &model_keys);
        assert!(
            wrong.iter().any(|d| d.contains("never announced"))
                && wrong.iter().any(|d| d.contains("more often")),
            "a change in another database is not the one expected and is one too many: {wrong:?}"
        );

        let wrong_op =
            model_differences(&[set(1, "m:1"), del(2, &["m:2"])], &expected, &model_keys);
        assert_eq!(wrong_op.len(), 1, "{wrong_op:?}");
        assert!(
            wrong_op[0].contains("its announcement is seq 2"),
            "{wrong_op:?}"
        );

        let late = model_differences(&[set(1, "m:2"), set(2, "m:1")], &expected, &model_keys);
        assert_eq!(late.len(), 1, "{late:?}");
        assert!(late[0].contains("before expected change #0"), "{late:?}");
    }

    #[test]
    fn a_change_of_a_subject_the_driver_owns_but_never_made_is_found() {
        let differences = model_differences(
            &[set(1, "m:1"), set(2, "m:9"), set(3, "other")],
            &[ExpectedChange::key(0, Op::Set, "m:1")],
            &model_keys,
        );
        assert_eq!(differences.len(), 1, "{differences:?}");
        assert!(differences[0].contains(r#"key "m:9""#), "{differences:?}");
    }
}
