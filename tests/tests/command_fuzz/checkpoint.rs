//! The periodic check: `HC.CHECK` reports no problem, the server agrees with the model, and
//! the event stream with the event log and the model (see `events`).

use crate::fuzzer::Fuzz;
use crate::model::{model_key, model_tag, MODEL_KEYS, MODEL_TAGS};
use crate::reply_checks::sorted_texts;
use hybridcache_protocol::command;
use hybridcache_tests::resp::{show, words, Reply};

impl Fuzz {
    /// `pending_removals` of `INFO hybridcache`, on the model's connection.
    pub(crate) fn pending_removals(&mut self) -> i64 {
        self.stats.commands += 1;
        let reply = self.model_con.call(&words(&["INFO", "hybridcache"]));
        let text = match reply {
            Ok(Reply::Bulk(Some(text))) => String::from_utf8_lossy(&text).into_owned(),
            other => self.fail(&format!("INFO hybridcache answered {other:?}")),
        };
        let field = text
            .lines()
            .find_map(|line| line.trim().strip_prefix("hybridcache_pending_removals:"))
            .and_then(|n| n.parse().ok());
        match field {
            Some(n) => n,
            None => self.fail(&format!(
                "INFO hybridcache without pending_removals: {text}"
            )),
        }
    }

    /// Differences between the server and the model.
    fn model_differences(&mut self) -> Vec<String> {
        let mut batch: Vec<Vec<Vec<u8>>> = Vec::new();
        for i in 0..MODEL_KEYS {
            let key = model_key(i).into_bytes();
            batch.push(vec![command::GET.into(), key.clone()]);
            batch.push(vec![command::TAGS.into(), key]);
        }
        for i in 0..MODEL_TAGS {
            let tag = model_tag(i).into_bytes();
            batch.push(vec![command::TAGKEYS.into(), tag.clone()]);
            batch.push(vec![command::TAGCARD.into(), tag]);
        }
        let refs: Vec<&[Vec<u8>]> = batch.iter().map(Vec::as_slice).collect();
        self.stats.commands += refs.len() as u64;
        let replies: Result<Vec<Reply>, String> = self
            .model_con
            .send(&refs)
            .and_then(|()| (0..refs.len()).map(|_| self.model_con.read()).collect());
        let replies = match replies {
            Ok(r) => r,
            Err(e) => self.fail(&format!("model check: {e}")),
        };
        let mut replies = replies.into_iter();
        let mut differences = Vec::new();
        for i in 0..MODEL_KEYS {
            let key = model_key(i);
            let expected = self.model.entries.get(&key);
            let value = replies.next();
            let tags = replies.next();
            let want_value = Reply::Bulk(expected.map(|e| e.value.clone()));
            if value.as_ref() != Some(&want_value) {
                differences.push(format!("HC.GET {key}: {value:?}, model {want_value:?}"));
            }
            let want_tags: Vec<String> = expected
                .map(|e| e.tags.iter().cloned().collect())
                .unwrap_or_default();
            let got_tags = sorted_texts(tags);
            if got_tags.as_ref() != Some(&want_tags) {
                differences.push(format!("HC.TAGS {key}: {got_tags:?}, model {want_tags:?}"));
            }
        }
        for i in 0..MODEL_TAGS {
            let tag = model_tag(i);
            let want: Vec<String> = self
                .model
                .entries
                .iter()
                .filter(|(_, e)| e.tags.contains(&tag))
                .map(|(k, _)| k.clone())
                .collect();
            let keys = sorted_texts(replies.next());
            if keys.as_ref() != Some(&want) {
                differences.push(format!("HC.TAGKEYS {tag}: {keys:?}, model {want:?}"));
            }
            let card = replies.next();
            if card != Some(Reply::Int(want.len() as i64)) {
                differences.push(format!("HC.TAGCARD {tag}: {card:?}, model {}", want.len()));
            }
        }
        differences
    }

    /// HC.CHECK must report no problem, and the model must match. Returns the pending
    /// removals HC.CHECK reported.
    pub(crate) fn checkpoint(&mut self, when: &str) -> i64 {
        self.stats.checks += 1;
        if !self.server.is_running() {
            self.fail(&format!("{when}: the server process is gone"));
        }
        let reply = match self.check.call(&words(&[command::CHECK])) {
            Ok(r) => r,
            Err(e) => self.fail(&format!("{when}: HC.CHECK got no reply: {e}")),
        };
        let Reply::Array(Some(items)) = &reply else {
            self.fail(&format!("{when}: HC.CHECK answered {reply:?}"))
        };
        let (pending, problems) = match items.as_slice() {
            [_, Reply::Int(_), _, Reply::Int(_), _, Reply::Int(pending), _, Reply::Array(Some(problems))] => {
                (*pending, problems.clone())
            }
            _ => self.fail(&format!("{when}: HC.CHECK answered {reply:?}")),
        };
        if !problems.is_empty() {
            let lines: Vec<String> = problems
                .iter()
                .take(30)
                .map(|p| match p {
                    Reply::Bulk(Some(b)) => show(b),
                    other => format!("{other:?}"),
                })
                .collect();
            self.fail(&format!(
                "{when}: HC.CHECK found {} problems:\n{}",
                problems.len(),
                lines.join("\n")
            ));
        }
        let differences = self.model_differences();
        if !differences.is_empty() {
            self.fail(&format!(
                "{when}: the server differs from the model:\n{}",
                differences.join("\n")
            ));
        }
        self.check_events(when);
        if pending == 0 {
            self.model.leases.removals_done();
        }
        pending
    }
}
