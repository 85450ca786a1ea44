//! The check `build()` makes before trusting a server (every primary of a cluster): the
//! hybridcache module answers `HC.HELLO`, writes events in the format this client reads,
//! speaks its version of the fill-lease contract, and publishes on the channel the client
//! subscribes to. Without it a missing module shows only at the first call, and a channel
//! mismatch never shows: every instance would silently serve stale values.

use crate::error::{Error, Result};
use crate::l2::Connection;
use hybridcache_protocol::command::{self, LEASE_VERSION};
use hybridcache_protocol::{FORMAT_VERSION, MODULE_NAME, OLDEST_FORMAT_VERSION};
use redis::Value;
use std::time::Duration;

/// Which property of a server [`Error::IncompatibleServer`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerCheck {
    /// The hybridcache module is not loaded (`HC.HELLO` is an unknown command), is older
    /// than this client, or something else answers.
    Module,
    /// The module writes invalidation events in a format this client does not read.
    EventFormat,
    /// The module speaks another version of the fill-lease contract.
    Leases,
    /// The module publishes its invalidation events on another channel than the one the
    /// client subscribes to ([`HybridCacheBuilder::channel`](crate::HybridCacheBuilder::channel)).
    Channel,
}

impl std::fmt::Display for ServerCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ServerCheck::Module => "module",
            ServerCheck::EventFormat => "event format",
            ServerCheck::Leases => "fill-lease contract",
            ServerCheck::Channel => "invalidation channel",
        })
    }
}

/// What a server said about itself in its `HC.HELLO` reply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Hello {
    module: Option<String>,
    events: Option<i64>,
    leases: Option<i64>,
    channel: Option<String>,
    sharded: Option<i64>,
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        _ => None,
    }
}

fn int(value: &Value) -> Option<i64> {
    match value {
        Value::Int(n) => Some(*n),
        other => text(other)?.parse().ok(),
    }
}

/// Reads the field/value pairs of an `HC.HELLO` reply (a flat array, or a map).
fn parse_hello(reply: &Value) -> Option<Hello> {
    let pairs: Vec<(&Value, &Value)> = match reply {
        Value::Array(items) if items.len() % 2 == 0 => items
            .chunks_exact(2)
            .map(|pair| (&pair[0], &pair[1]))
            .collect(),
        Value::Map(pairs) => pairs.iter().map(|(k, v)| (k, v)).collect(),
        _ => return None,
    };
    let mut hello = Hello::default();
    for (field, value) in pairs {
        match text(field)?.as_str() {
            "module" => hello.module = text(value),
            "events" => hello.events = int(value),
            "leases" => hello.leases = int(value),
            "channel" => hello.channel = text(value),
            "sharded" => hello.sharded = int(value),
            _ => {}
        }
    }
    Some(hello)
}

/// Why a server does not fit: which check, what was found, what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mismatch {
    check: ServerCheck,
    found: String,
    expected: String,
}

fn mismatch(check: ServerCheck, found: String, expected: String) -> Mismatch {
    Mismatch {
        check,
        found,
        expected,
    }
}

fn expected_module() -> String {
    format!(
        "the {MODULE_NAME} module loaded (it answers {})",
        command::HELLO
    )
}

/// Checks one server's `HC.HELLO` reply against what this client speaks and the channel it
/// subscribes to.
fn check_hello(reply: &Value, channel: &str) -> Result<(), Mismatch> {
    let Some(hello) = parse_hello(reply) else {
        return Err(mismatch(
            ServerCheck::Module,
            format!("an {} reply it cannot read: {reply:?}", command::HELLO),
            expected_module(),
        ));
    };
    if hello.module.as_deref() != Some(MODULE_NAME) {
        return Err(mismatch(
            ServerCheck::Module,
            format!("module {:?}", hello.module.unwrap_or_default()),
            expected_module(),
        ));
    }
    let readable = i64::from(OLDEST_FORMAT_VERSION)..=i64::from(FORMAT_VERSION);
    if !hello.events.is_some_and(|v| readable.contains(&v)) {
        return Err(mismatch(
            ServerCheck::EventFormat,
            format!("event format {}", shown(hello.events)),
            format!("event format {OLDEST_FORMAT_VERSION} to {FORMAT_VERSION}"),
        ));
    }
    if hello.leases != Some(LEASE_VERSION) {
        return Err(mismatch(
            ServerCheck::Leases,
            format!("fill leases version {}", shown(hello.leases)),
            format!("fill leases version {LEASE_VERSION}"),
        ));
    }
    if hello.channel.as_deref() != Some(channel) {
        return Err(mismatch(
            ServerCheck::Channel,
            format!(
                "events published on channel {:?}",
                hello.channel.unwrap_or_default()
            ),
            format!("channel {channel:?} (the one this client subscribes to; see HybridCacheBuilder::channel)"),
        ));
    }
    Ok(())
}

fn shown(n: Option<i64>) -> String {
    n.map_or_else(|| "(none)".to_string(), |n| n.to_string())
}

fn is_unknown_command(e: &redis::RedisError) -> bool {
    e.to_string()
        .to_ascii_lowercase()
        .contains("unknown command")
}

/// Sends `HC.HELLO` to the server (every primary of a cluster) and checks each reply;
/// `single` names the server when there is one. Fails with
/// [`Error::IncompatibleServer`] naming the first node that does not fit. Returns whether
/// every server publishes on shard channels (a cluster whose module says `sharded`).
pub(crate) async fn verify(
    con: &Connection,
    single: &str,
    channel: &str,
    timeout: Duration,
) -> Result<bool> {
    let cmd = redis::cmd(command::HELLO);
    let replies = tokio::time::timeout(timeout, con.on_every_primary(&cmd))
        .await
        .map_err(|_| Error::Timeout(timeout))??;
    let mut sharded = !replies.is_empty();
    for (node, reply) in replies {
        let node = node.unwrap_or_else(|| single.to_string());
        let outcome = match reply {
            Ok(reply) => {
                sharded &= parse_hello(&reply).and_then(|h| h.sharded) == Some(1);
                check_hello(&reply, channel)
            }
            Err(e) if is_unknown_command(&e) => Err(mismatch(
                ServerCheck::Module,
                format!("no {} command ({e})", command::HELLO),
                expected_module(),
            )),
            Err(e) => return Err(e.into()),
        };
        if let Err(Mismatch {
            check,
            found,
            expected,
        }) = outcome
        {
            return Err(Error::IncompatibleServer {
                node,
                check,
                found,
                expected,
            });
        }
    }
    Ok(sharded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn hello(module: &str, events: i64, leases: i64, channel: &str) -> Value {
        Value::Array(vec![
            bulk("module"),
            bulk(module),
            bulk("version"),
            bulk("0.1.0"),
            bulk("events"),
            Value::Int(events),
            bulk("leases"),
            Value::Int(leases),
            bulk("channel"),
            bulk(channel),
            bulk("origin"),
            bulk("0123456789abcdef"),
        ])
    }

    fn check_of(reply: &Value, channel: &str) -> Option<ServerCheck> {
        check_hello(reply, channel).err().map(|m| m.check)
    }

    #[test]
    fn a_server_speaking_this_clients_contract_on_its_channel_passes() {
        let ok = hello(MODULE_NAME, i64::from(FORMAT_VERSION), LEASE_VERSION, "c");
        assert_eq!(check_hello(&ok, "c"), Ok(()));
        // An older module's format is still read.
        let older = hello(
            MODULE_NAME,
            i64::from(OLDEST_FORMAT_VERSION),
            LEASE_VERSION,
            "c",
        );
        assert_eq!(check_hello(&older, "c"), Ok(()));
    }

    #[test]
    fn each_mismatch_names_its_check_what_was_found_and_what_was_expected() {
        let format = i64::from(FORMAT_VERSION);
        assert_eq!(
            check_of(&hello("other", format, LEASE_VERSION, "c"), "c"),
            Some(ServerCheck::Module)
        );
        assert_eq!(
            check_of(&hello(MODULE_NAME, format + 1, LEASE_VERSION, "c"), "c"),
            Some(ServerCheck::EventFormat)
        );
        assert_eq!(
            check_of(&hello(MODULE_NAME, 0, LEASE_VERSION, "c"), "c"),
            Some(ServerCheck::EventFormat)
        );
        assert_eq!(
            check_of(&hello(MODULE_NAME, format, LEASE_VERSION + 1, "c"), "c"),
            Some(ServerCheck::Leases)
        );
        let channel = check_hello(&hello(MODULE_NAME, format, LEASE_VERSION, "x"), "c");
        let m = channel.unwrap_err();
        assert_eq!(m.check, ServerCheck::Channel);
        assert!(m.found.contains("\"x\""), "{}", m.found);
        assert!(m.expected.contains("\"c\""), "{}", m.expected);
    }

    #[test]
    fn an_unreadable_or_incomplete_reply_is_a_module_mismatch() {
        assert_eq!(check_of(&Value::Nil, "c"), Some(ServerCheck::Module));
        assert_eq!(
            check_of(&Value::Array(vec![bulk("module")]), "c"),
            Some(ServerCheck::Module)
        );
        let without_leases = Value::Array(vec![
            bulk("module"),
            bulk(MODULE_NAME),
            bulk("events"),
            Value::Int(i64::from(FORMAT_VERSION)),
        ]);
        assert_eq!(check_of(&without_leases, "c"), Some(ServerCheck::Leases));
    }

    #[test]
    fn a_map_reply_is_read_like_the_flat_array() {
        let map = Value::Map(vec![
            (bulk("module"), bulk(MODULE_NAME)),
            (bulk("events"), Value::Int(i64::from(FORMAT_VERSION))),
            (bulk("leases"), Value::Int(LEASE_VERSION)),
            (bulk("channel"), bulk("c")),
        ]);
        assert_eq!(check_hello(&map, "c"), Ok(()));
    }
}
