//! Raw `DEL`/`UNLINK` of model keys, in every way that reaches the module's command filter.

use crate::fuzzer::Fuzz;
use crate::generator::Cmd;
use crate::model::{model_key, MODEL_KEYS};
use crate::DBS;
use hybridcache_protocol::Op;
use hybridcache_tests::event_stream::ExpectedChange;
use hybridcache_tests::resp::{describe, words, Reply};
use std::collections::BTreeSet;

impl Fuzz {
    /// A raw `DEL`/`UNLINK` of one to three model keys: alone, in `MULTI`/`EXEC`, from a
    /// Lua script (database 0), or in another database, where model keys never exist. Each
    /// named key's lease ends, missing or not, and in database 0 even for a deletion run
    /// in another one (the module's command filter does not know the database). A key
    /// `HC.DELTAG` removed may still be in the keyspace, so the count may include it.
    pub(crate) fn model_raw_delete(&mut self) {
        let mut keys = BTreeSet::from([self.model_key_read_lately(7)]);
        let g = &mut self.gen;
        for _ in 0..g.below(3) {
            keys.insert(model_key(g.below(MODEL_KEYS)));
        }
        let name = *g.pick(&["DEL", "UNLINK"]);
        let mut delete = vec![g.random_case(name)];
        delete.extend(keys.iter().map(|k| k.clone().into_bytes()));
        let how = g.below(4);
        let elsewhere = 1 + g.below(DBS - 1);
        let batch: Vec<Vec<Vec<u8>>> = match how {
            0 => vec![delete],
            1 => vec![words(&["MULTI"]), delete, words(&["EXEC"])],
            2 => {
                let name = String::from_utf8_lossy(&delete[0]).into_owned();
                let mut eval = words(&[
                    "EVAL",
                    &format!("return redis.call('{name}', unpack(KEYS))"),
                    &keys.len().to_string(),
                ]);
                eval.extend(delete.into_iter().skip(1));
                vec![eval]
            }
            _ => vec![
                vec![b"SELECT".to_vec(), elsewhere.to_string().into_bytes()],
                delete,
                words(&["SELECT", "0"]),
            ],
        };
        let refs: Vec<&[Vec<u8>]> = batch.iter().map(Vec::as_slice).collect();
        self.stats.commands += refs.len() as u64;
        let replies: Result<Vec<Reply>, String> = self
            .model_con
            .send(&refs)
            .and_then(|()| (0..refs.len()).map(|_| self.model_con.read()).collect());
        self.last = format!("{} (as {how})", describe(&batch[batch.len() / 2]));
        let replies = match replies {
            Ok(replies) => replies,
            Err(e) => self.fail(&format!("model connection: no reply: {e}")),
        };
        for (words, reply) in batch.iter().zip(&replies) {
            let cmd = Cmd {
                words: words.clone(),
                module: false,
            };
            self.check_reply(&cmd, reply);
        }
        let ok = Reply::Status(b"OK".to_vec());
        let count = match (how, replies.as_slice()) {
            (0 | 2, [Reply::Int(n)]) => Some(*n),
            (1, [multi, Reply::Status(queued), Reply::Array(Some(items))])
                if *multi == ok && queued == b"QUEUED" =>
            {
                match items.as_slice() {
                    [Reply::Int(n)] => Some(*n),
                    _ => None,
                }
            }
            (3, [select, Reply::Int(n), back]) if *select == ok && *back == ok => Some(*n),
            _ => None,
        };
        let leases = &mut self.model.leases;
        leases.raw_deletes += 1;
        let (low, high) = if how == 3 {
            leases.raw_deletes_elsewhere += 1;
            (0, 0)
        } else {
            let live = keys
                .iter()
                .filter(|k| self.model.entries.contains_key(*k))
                .count();
            let doomed = keys.iter().filter(|k| leases.doomed.contains(*k)).count();
            (live as i64, (live + doomed) as i64)
        };
        for key in &keys {
            leases.changed(key);
            // A live entry leaving announces itself; one HC.DELTAG removed was announced
            // then; in another database there is none.
            if how != 3 && self.model.entries.contains_key(key) {
                self.expected.push(ExpectedChange::key(0, Op::Removed, key));
            }
            if how != 3 {
                // Gone from the keyspace now: no background removal will delete it.
                leases.doomed.remove(key);
                self.model.entries.remove(key);
            }
        }
        if !count.is_some_and(|n| (low..=high).contains(&n)) {
            self.fail(&format!(
                "raw deletion answered {replies:?}; the model expects a count in {low}..={high}"
            ));
        }
    }
}
