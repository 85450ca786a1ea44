//! Asking a server for the invalidation events a subscriber missed (`HC.EVENTS SINCE`), so
//! that it drops exactly what changed instead of its whole L1.

use hybridcache_protocol::command::{self, events};
use hybridcache_protocol::{decode_message, InvalidationEvent};
use redis::aio::ConnectionLike;
use redis::Value;

/// Changes asked for per request.
const PAGE: u64 = 10_000;

/// Why the missed events cannot be replayed: L1 must be treated as stale.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Unavailable {
    /// The server's log no longer reaches back that far.
    #[error("the server's event log no longer reaches back to event {after}")]
    TooOld { after: u64 },
    /// The server is not the process that numbered those events (it restarted, or failed
    /// over).
    #[error("events of origin {0} are no longer kept (the server restarted or changed)")]
    OtherOrigin(String),
    /// The request failed or its answer could not be read (a server without `HC.EVENTS`
    /// among them).
    #[error("cannot replay missed events: {0}")]
    Failed(String),
}

/// Every change of `origin` after `after` that the server published, in order, read page by
/// page from `con` (a connection to the server that published them).
pub(crate) async fn changes_since<C: ConnectionLike>(
    con: &mut C,
    origin: &str,
    after: u64,
) -> Result<Vec<InvalidationEvent>, Unavailable> {
    let mut changes = Vec::new();
    let mut position = after;
    loop {
        let reply: Value = redis::cmd(command::EVENTS)
            .arg(events::SINCE)
            .arg(origin)
            .arg(position)
            .arg(events::COUNT)
            .arg(PAGE)
            .query_async(con)
            .await
            .map_err(|e| Unavailable::Failed(e.to_string()))?;
        let (last, page) = read_reply(&reply, origin, position)?;
        let got = page.len();
        for event in page {
            if event.origin != origin || event.seq != position + 1 {
                return Err(Unavailable::Failed(format!(
                    "event {} of {} does not follow {position}",
                    event.seq, event.origin
                )));
            }
            position = event.seq;
            changes.push(event);
        }
        if position >= last || got == 0 {
            return Ok(changes);
        }
    }
}

/// `[status, last, message]` → the last number published and the page's changes.
fn read_reply(
    reply: &Value,
    origin: &str,
    after: u64,
) -> Result<(u64, Vec<InvalidationEvent>), Unavailable> {
    let unreadable =
        || Unavailable::Failed(format!("unexpected {} reply: {reply:?}", command::EVENTS));
    let Value::Array(fields) = reply else {
        return Err(unreadable());
    };
    let [status, last, message] = fields.as_slice() else {
        return Err(unreadable());
    };
    let status = match status {
        Value::BulkString(b) => b.as_slice(),
        Value::SimpleString(s) => s.as_bytes(),
        _ => return Err(unreadable()),
    };
    let Value::Int(last) = last else {
        return Err(unreadable());
    };
    let last = u64::try_from(*last).map_err(|_| unreadable())?;
    if status == events::TOO_OLD.as_bytes() {
        return Err(Unavailable::TooOld { after });
    }
    if status == events::OTHER_ORIGIN.as_bytes() {
        return Err(Unavailable::OtherOrigin(origin.to_string()));
    }
    if status != events::OK.as_bytes() {
        return Err(unreadable());
    }
    let Value::BulkString(message) = message else {
        return Err(unreadable());
    };
    let page = decode_message(message).map_err(|e| Unavailable::Failed(e.to_string()))?;
    Ok((last, page))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hybridcache_protocol::{Change, MessageWriter, Name, Op};

    fn reply(status: &str, last: i64, message: Option<Vec<u8>>) -> Value {
        Value::Array(vec![
            Value::BulkString(status.as_bytes().to_vec()),
            Value::Int(last),
            message.map_or(Value::Nil, Value::BulkString),
        ])
    }

    #[test]
    fn an_ok_reply_gives_its_changes_and_the_last_number() {
        let mut writer = MessageWriter::new("o");
        let change = Change::Keys {
            keys: vec![Name::from("k")],
        };
        writer.push_change(5, Some(0), Op::Set, &change);
        let (last, page) =
            read_reply(&reply("ok", 9, Some(writer.finish().to_vec())), "o", 4).unwrap();
        assert_eq!(last, 9);
        assert_eq!(page.len(), 1);
        assert_eq!((page[0].seq, &page[0].change), (5, &change));
    }

    #[test]
    fn too_old_other_origin_and_garbage_are_unavailable() {
        assert_eq!(
            read_reply(&reply("too-old", 9, None), "o", 4),
            Err(Unavailable::TooOld { after: 4 })
        );
        assert_eq!(
            read_reply(&reply("other-origin", 9, None), "o", 4),
            Err(Unavailable::OtherOrigin("o".into()))
        );
        for bad in [
            Value::Nil,
            reply("maybe", 9, None),
            reply("ok", -1, Some(b"{}".to_vec())),
            reply("ok", 9, None),
            reply("ok", 9, Some(b"not json".to_vec())),
        ] {
            assert!(matches!(
                read_reply(&bad, "o", 4),
                Err(Unavailable::Failed(_))
            ));
        }
    }
}
