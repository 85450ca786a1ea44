//! Compares a server's tag index with its keyspace in two independent ways: the module's
//! own `HC.CHECK` ([`hc_check`]), and from the outside ([`index_differences`]): every module
//! entry's tags (`HC.TAGS`) against `HC.TAGKEYS`/`HC.TAGCARD` of each tag and the index
//! counters of `INFO hybridcache`. Equal counters plus equal per-tag key sets mean the index
//! holds exactly the keyspace's (tag, key) links: no key it does not hold, none missing.

use crate::hc::{all_keys, tagcard, tagkeys, tags, wait_removals_done};
use crate::info::HcInfo;
use hybridcache_protocol::command;
use redis::Connection;
use std::collections::BTreeMap;

/// The module's data type name, as `TYPE` reports it.
pub const ENTRY_TYPE: &str = "hc-entry0";

/// The differences between the index of `con`'s server and the module entries of its
/// current database (the only one checked: use it on servers with one database in use).
/// Waits for pending tag removals first. Empty when they match.
pub fn index_differences(con: &mut Connection) -> Vec<String> {
    wait_removals_done(con);
    // A cluster replica answers reads only after READONLY (elsewhere the command fails:
    // nothing to do).
    let _ = crate::hc::call(con, &["READONLY"]);
    let mut by_tag: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut entries = 0i64;
    for key in all_keys(con) {
        let kind: String = crate::hc::query(con, redis::cmd("TYPE").arg(&key));
        if kind != ENTRY_TYPE {
            continue;
        }
        entries += 1;
        for tag in tags(con, &key) {
            by_tag.entry(tag).or_default().push(key.clone());
        }
    }
    let mut differences = Vec::new();
    let links: i64 = by_tag.values().map(|k| k.len() as i64).sum();
    let info = HcInfo::read(con);
    let expected = (entries, by_tag.len() as i64, links);
    if info.counts() != expected {
        differences.push(format!(
            "INFO (keys, tags, tag_links) = {:?}, keyspace has {expected:?}",
            info.counts()
        ));
    }
    for (tag, mut keys) in by_tag {
        keys.sort();
        let indexed = tagkeys(con, &tag);
        if indexed != keys {
            differences.push(format!(
                "{} {tag}: index {indexed:?}, keyspace {keys:?}",
                command::TAGKEYS
            ));
        }
        let card = tagcard(con, &tag);
        if card != keys.len() as i64 {
            differences.push(format!(
                "{} {tag}: {card}, keyspace {}",
                command::TAGCARD,
                keys.len()
            ));
        }
    }
    differences
}

/// What `HC.CHECK` reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    /// Module entries in the keyspace, every database.
    pub keys: i64,
    /// (tag, key) links the live entries call for.
    pub links: i64,
    /// Keys logically deleted by HC.DELTAG, awaiting physical removal.
    pub pending_removals: i64,
    /// Differences between the index and the keyspace; empty when they match.
    pub problems: Vec<String>,
}

/// Runs `HC.CHECK`.
///
/// # Panics
/// When the command fails or its reply is not of the documented form.
pub fn hc_check(con: &mut Connection) -> CheckReport {
    let reply: (String, i64, String, i64, String, i64, String, Vec<String>) =
        crate::hc::query(con, &redis::cmd(command::CHECK));
    assert_eq!(
        (&reply.0[..], &reply.2[..], &reply.4[..], &reply.6[..]),
        ("keys", "links", "pending_removals", "problems"),
        "{} reply {reply:?}",
        command::CHECK
    );
    CheckReport {
        keys: reply.1,
        links: reply.3,
        pending_removals: reply.5,
        problems: reply.7,
    }
}

/// Asserts that `HC.CHECK` finds no problem.
///
/// # Panics
/// When it reports one.
pub fn assert_check_clean(con: &mut Connection) {
    let report = hc_check(con);
    assert!(
        report.problems.is_empty(),
        "HC.CHECK found the tag index differing from the keyspace:\n{}",
        report.problems.join("\n")
    );
}

/// Asserts that `HC.CHECK` and [`index_differences`] both find the index equal to the
/// keyspace; `what` names the server in the message.
///
/// # Panics
/// When the index and the keyspace differ.
pub fn assert_index_matches(con: &mut Connection, what: &str) {
    let report = hc_check(con);
    assert!(
        report.problems.is_empty(),
        "HC.CHECK on {what} found the tag index differing from the keyspace:\n{}",
        report.problems.join("\n")
    );
    let differences = index_differences(con);
    assert!(
        differences.is_empty(),
        "the tag index of {what} differs from its keyspace:\n{}",
        differences.join("\n")
    );
}
