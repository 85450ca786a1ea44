//! Batches of single-key commands sent as pipelines: one pipeline to a single server; in a
//! cluster one per hash slot (redis-rs sends a pipeline to the owner of one slot, and a
//! slot's keys never raise `CROSSSLOT`), all in flight at once over the per-node
//! connections, so that a batch waits for one round trip either way.

use crate::l2::Connection;
use hybridcache_protocol::shard::key_slot;
use redis::cluster_routing::{Route, SingleNodeRoutingInfo, SlotAddr};
use redis::{Cmd, RedisError, RedisResult, Value};

/// The positions of `keys` grouped by hash slot: groups in the order their first key
/// appears, positions in the order of `keys` (so that two writes of one key keep theirs).
pub(crate) fn by_slot<S: AsRef<str>>(keys: &[S]) -> Vec<(u16, Vec<usize>)> {
    let mut groups: Vec<(u16, Vec<usize>)> = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let slot = key_slot(key.as_ref().as_bytes());
        match groups.iter_mut().find(|(s, _)| *s == slot) {
            Some((_, positions)) => positions.push(i),
            None => groups.push((slot, vec![i])),
        }
    }
    groups
}

/// Whether a command's error in a cluster pipeline says its slot is served elsewhere
/// (during a reshard): redis-rs follows these for single commands, not inside pipelines.
fn is_redirect(error: &RedisError) -> bool {
    matches!(error.code(), Some("MOVED" | "ASK"))
}

/// A command's reply in a pipeline, its error as an `Err`.
fn reply_or_error(reply: Value) -> RedisResult<Value> {
    match reply {
        Value::ServerError(e) => Err(e.into()),
        other => Ok(other),
    }
}

impl Connection {
    /// Sends `cmds`, the i-th on `keys[i]`, as pipelines: each command's reply or error,
    /// in the order of `cmds`. Fails as a whole only when a pipeline could not be sent or
    /// answered.
    pub(crate) async fn pipelined(
        &self,
        keys: &[String],
        cmds: Vec<Cmd>,
    ) -> RedisResult<Vec<RedisResult<Value>>> {
        match self {
            Connection::Single(con) => {
                let mut pipe = redis::pipe();
                for cmd in cmds {
                    pipe.add_command(cmd);
                }
                pipe.ignore_errors();
                let replies: Vec<Value> = pipe.query_async(&mut con.clone()).await?;
                Ok(replies.into_iter().map(reply_or_error).collect())
            }
            Connection::Cluster(con) => {
                let groups = by_slot(keys);
                let mut cmds: Vec<Option<Cmd>> = cmds.into_iter().map(Some).collect();
                let sends = groups.iter().map(|(slot, positions)| {
                    let mut pipe = redis::pipe();
                    for &i in positions {
                        if let Some(cmd) = cmds.get(i).cloned().flatten() {
                            pipe.add_command(cmd);
                        }
                    }
                    let route =
                        SingleNodeRoutingInfo::SpecificNode(Route::new(*slot, SlotAddr::Master));
                    let mut con = con.clone();
                    let count = positions.len();
                    async move { con.route_pipeline(pipe, 0, count, route).await }
                });
                let replies = futures_util::future::try_join_all(sends).await?;
                let mut out: Vec<RedisResult<Value>> =
                    keys.iter().map(|_| Ok(Value::Nil)).collect();
                for ((_, positions), replies) in groups.iter().zip(replies) {
                    for (&i, reply) in positions.iter().zip(replies) {
                        if let Some(slot) = out.get_mut(i) {
                            *slot = reply_or_error(reply);
                        }
                    }
                }
                // A key whose slot moved is sent again alone, following the redirect.
                let again = out
                    .iter()
                    .enumerate()
                    .filter(|(_, reply)| reply.as_ref().is_err_and(is_redirect))
                    .filter_map(|(i, _)| Some((i, cmds.get_mut(i)?.take()?)))
                    .map(|(i, cmd)| async move { (i, self.send::<Value>(&cmd, false).await) });
                for (i, reply) in futures_util::future::join_all(again).await {
                    if let Some(slot) = out.get_mut(i) {
                        *slot = reply;
                    }
                }
                Ok(out)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_grouped_by_slot_in_first_seen_order_keeping_their_order() {
        let keys = ["{a}1", "{b}1", "{a}2", "{b}2", "{a}1"];
        let groups = by_slot(&keys);
        assert_eq!(
            groups,
            vec![
                (key_slot(b"a"), vec![0, 2, 4]),
                (key_slot(b"b"), vec![1, 3]),
            ]
        );
    }

    #[test]
    fn no_keys_make_no_group() {
        assert!(by_slot::<&str>(&[]).is_empty());
    }
}
