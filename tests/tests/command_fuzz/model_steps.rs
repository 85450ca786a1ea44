//! The model's operations: well-formed `HC.SET`, `HC.FETCH ... LEASE [ALWAYS]`, fills,
//! `HC.DEL` and `HC.DELTAG` of model keys and tags, each reply checked against the model.

use crate::fuzzer::Fuzz;
use crate::generator::{Cmd, Gen};
use crate::lease_model::Verdict;
use crate::model::{model_key, model_tag, ModelEntry, ModelOutcome, MODEL_KEYS, MODEL_TAGS};
use crate::reply_checks::{leased_read, sorted_texts};
use hybridcache_protocol::{command, Op};
use hybridcache_tests::event_stream::ExpectedChange;
use hybridcache_tests::resp::{describe, Reply};
use std::collections::BTreeSet;

impl Fuzz {
    /// A value for a model key.
    fn model_value(&mut self) -> Vec<u8> {
        let g = &mut self.gen;
        match g.below(4) {
            0 => Vec::new(),
            1 => {
                let n = g.below(40) as usize;
                g.bytes(n)
            }
            _ => {
                let n = g.below(40) as usize;
                g.printable(n)
            }
        }
    }

    /// NX, XX or neither, and whether it lets a write of `key` happen.
    fn model_condition(&mut self, key: &str) -> (Option<&'static str>, bool) {
        let condition = match self.gen.below(10) {
            0 => Some("NX"),
            1 => Some("XX"),
            _ => None,
        };
        let exists = self.model.entries.contains_key(key);
        let applies = match condition {
            Some("NX") => !exists,
            Some(_) => exists,
            None => true,
        };
        (condition, applies)
    }

    /// `TAGS` and up to four model tags, appended to `w`; the tags.
    fn model_tags(&mut self, w: &mut Vec<Vec<u8>>) -> BTreeSet<String> {
        let mut tags = BTreeSet::new();
        let n = self.gen.below(5);
        if n > 0 {
            w.push(self.gen.random_case("TAGS"));
            for _ in 0..n {
                let tag = model_tag(self.gen.below(MODEL_TAGS));
                w.push(tag.clone().into_bytes());
                tags.insert(tag);
            }
        }
        tags
    }

    /// A token for a fill of `key` and the model clock of the read that gave it (`None`
    /// for tokens this server never gave): mostly the latest read of the key, else any read
    /// (stale, or of another key), a token of another origin, or garbage.
    fn model_token(&mut self, key: &str) -> (Vec<u8>, Option<u64>) {
        let tokens = &self.model.leases.tokens;
        let latest = tokens.iter().rev().find(|(_, _, k)| k == key);
        let g = &mut self.gen;
        match g.below(10) {
            0..=5 if latest.is_some() => latest.map(|(t, at, _)| (t.clone(), Some(*at))).unwrap(),
            0..=7 if !tokens.is_empty() => {
                let (token, at, _) = &tokens[g.below(tokens.len() as u64) as usize];
                (token.clone(), Some(*at))
            }
            8 if !tokens.is_empty() => {
                let (token, _, _) = &tokens[g.below(tokens.len() as u64) as usize];
                (Gen::other_origin(token), None)
            }
            _ => {
                let garbage = g
                    .pick(&["", "x", ":", ":1", "0:0", "LEASE"])
                    .as_bytes()
                    .to_vec();
                (garbage, None)
            }
        }
    }

    /// `tenths` times in ten a model key among the last leased reads (when there are any),
    /// so that changes meet live leases and fills meet the changes; else any model key.
    pub(crate) fn model_key_read_lately(&mut self, tenths: u64) -> String {
        let tokens = &self.model.leases.tokens;
        let recent = &tokens[tokens.len().saturating_sub(8)..];
        if !recent.is_empty() && self.gen.below(10) < tenths {
            recent[self.gen.below(recent.len() as u64) as usize]
                .2
                .clone()
        } else {
            model_key(self.gen.below(MODEL_KEYS))
        }
    }

    /// One well-formed operation on the model's keys, its reply checked against the model.
    pub(crate) fn model_step(&mut self) {
        self.model.ops += 1;
        let kind = self.gen.below(100);
        if (92..=96).contains(&kind) {
            return self.model_raw_delete();
        }
        let (w, expected): (Vec<Vec<u8>>, ModelOutcome) = match kind {
            0..=54 => {
                let key = self.model_key_read_lately(3);
                let value = self.model_value();
                let mut w = vec![
                    self.gen.hc_name(command::SET),
                    key.clone().into_bytes(),
                    value.clone(),
                ];
                let (condition, applies) = self.model_condition(&key);
                if let Some(c) = condition {
                    w.push(self.gen.random_case(c));
                }
                let get_version = self.gen.one_in(5);
                if get_version {
                    w.push(self.gen.random_case("GETVERSION"));
                }
                let tags = self.model_tags(&mut w);
                (
                    w,
                    ModelOutcome::Set {
                        key,
                        entry: ModelEntry { value, tags },
                        applies,
                        get_version,
                    },
                )
            }
            55..=69 => {
                let key = model_key(self.gen.below(MODEL_KEYS));
                let mut w = vec![
                    self.gen.hc_name(command::FETCH),
                    key.clone().into_bytes(),
                    self.gen.random_case("LEASE"),
                ];
                let always = self.gen.one_in(3);
                if always {
                    w.push(self.gen.random_case("ALWAYS"));
                }
                (w, ModelOutcome::Fetch { key, always })
            }
            70..=85 => {
                // Mostly a key read lately, as a cache would fill it.
                let key = self.model_key_read_lately(7);
                let value = self.model_value();
                let mut w = vec![
                    self.gen.hc_name(command::SET),
                    key.clone().into_bytes(),
                    value.clone(),
                ];
                let mut options = Vec::new();
                let (condition, condition_ok) = self.model_condition(&key);
                if let Some(c) = condition {
                    options.push(vec![self.gen.random_case(c)]);
                }
                let get_version = self.gen.one_in(5);
                if get_version {
                    options.push(vec![self.gen.random_case("GETVERSION")]);
                }
                let (token, read) = self.model_token(&key);
                let at = self.gen.below(options.len() as u64 + 1) as usize;
                options.insert(at, vec![self.gen.random_case("LEASE"), token]);
                w.extend(options.into_iter().flatten());
                let tags = self.model_tags(&mut w);
                if self.model.leases.doomed.contains(&key) && self.pending_removals() == 0 {
                    self.model.leases.removals_done();
                }
                let stored = self.model.entries.get(&key).map(|e| &e.tags);
                let verdict = self.model.leases.verdict(
                    &key,
                    read,
                    tags.iter().chain(stored.into_iter().flatten()),
                );
                (
                    w,
                    ModelOutcome::Fill {
                        key,
                        entry: ModelEntry { value, tags },
                        verdict,
                        condition_ok,
                        get_version,
                    },
                )
            }
            86..=91 => {
                let g = &mut self.gen;
                let mut keys = BTreeSet::new();
                for _ in 0..1 + g.below(3) {
                    keys.insert(model_key(g.below(MODEL_KEYS)));
                }
                let soft = g.one_in(3);
                let mut w = vec![g.hc_name(if soft { command::STALE } else { command::DEL })];
                w.extend(keys.iter().map(|k| k.clone().into_bytes()));
                let count = keys
                    .iter()
                    .filter(|k| self.model.entries.contains_key(*k))
                    .count();
                (
                    w,
                    ModelOutcome::Removed {
                        keys,
                        count,
                        tags: None,
                        soft,
                        all: false,
                    },
                )
            }
            _ => {
                let g = &mut self.gen;
                let (soft, all_of) = match g.below(6) {
                    0 | 1 => (true, false),
                    2 | 3 => (false, true),
                    _ => (false, false),
                };
                let name = match (soft, all_of) {
                    (true, _) => command::STALETAG,
                    (false, true) => command::DELTAGALL,
                    (false, false) => command::DELTAG,
                };
                let mut w = vec![g.hc_name(name)];
                let mut tags = BTreeSet::new();
                let named = if all_of {
                    2 + g.below(2)
                } else {
                    1 + g.below(2)
                };
                for _ in 0..named {
                    let tag = model_tag(g.below(MODEL_TAGS));
                    w.push(tag.clone().into_bytes());
                    tags.insert(tag);
                }
                // One distinct tag: HC.DELTAGALL is HC.DELTAG.
                let all = all_of && tags.len() > 1;
                let keys: BTreeSet<String> = self
                    .model
                    .entries
                    .iter()
                    .filter(|(_, e)| match all {
                        true => e.tags.is_superset(&tags),
                        false => !e.tags.is_disjoint(&tags),
                    })
                    .map(|(k, _)| k.clone())
                    .collect();
                let count = keys.len();
                (
                    w,
                    ModelOutcome::Removed {
                        keys,
                        count,
                        tags: Some(tags),
                        soft,
                        all,
                    },
                )
            }
        };
        self.stats.commands += 1;
        let reply = match self.model_con.call(&w) {
            Ok(reply) => reply,
            Err(e) => {
                self.last = describe(&w);
                self.fail(&format!("model connection: no reply: {e}"))
            }
        };
        let cmd = Cmd {
            words: w.clone(),
            module: true,
        };
        self.check_reply(&cmd, &reply);
        if let Reply::Error(text) = &reply {
            if text.starts_with(b"OOM") {
                return; // refused before running: nothing changed
            }
        }
        // The changes this command must announce (database 0).
        let mut announced = Vec::new();
        let ok = match expected {
            ModelOutcome::Set {
                key,
                entry,
                applies,
                get_version,
            } => {
                let ok = match (&reply, applies, get_version) {
                    (Reply::Bulk(None), false, _) => true,
                    (Reply::Status(s), true, false) => s == b"OK",
                    (Reply::Array(Some(items)), true, true) => {
                        matches!(items.as_slice(), [Reply::Bulk(Some(_)), Reply::Int(v)] if *v > 0)
                    }
                    _ => false,
                };
                if applies {
                    announced.push(ExpectedChange::key(0, Op::Set, &key));
                    self.model.entries.insert(key.clone(), entry);
                    self.model.leases.written(&key);
                } else {
                    // Refused by NX/XX: still a change of the key for its leases.
                    self.model.leases.changed(&key);
                }
                ok
            }
            ModelOutcome::Fetch { key, always } => {
                // check_reply has checked the form and kept the token for the random part.
                let token = match leased_read(&reply, &self.gen.origin, always) {
                    Ok(token) => token,
                    Err(problem) => {
                        self.last = describe(&w);
                        self.fail(&problem)
                    }
                };
                let expected = self.model.entries.get(&key);
                let Reply::Array(Some(items)) = &reply else {
                    unreachable!("leased_read accepted {reply:?}")
                };
                let want_tags: Vec<String> = expected
                    .map(|e| e.tags.iter().cloned().collect())
                    .unwrap_or_default();
                let ok = items[0] == Reply::Bulk(expected.map(|e| e.value.clone()))
                    && sorted_texts(Some(items[1].clone())) == Some(want_tags)
                    && items[2] == Reply::Int(if expected.is_some() { -1 } else { -2 });
                // A lease exists only where a token was given: a hit without ALWAYS
                // leaves the key's lease as it was (absent or not).
                match token {
                    Some(token) => self.model.leases.leased(&key, token),
                    None => self.model.leases.hits_without_token += 1,
                }
                ok
            }
            ModelOutcome::Fill {
                key,
                entry,
                verdict,
                condition_ok,
                get_version,
            } => {
                let written = match (&reply, get_version) {
                    (Reply::Status(s), false) if s == b"OK" => Some(true),
                    (Reply::Array(Some(items)), true) if matches!(items.as_slice(), [Reply::Bulk(Some(_)), Reply::Int(v)] if *v > 0) => {
                        Some(true)
                    }
                    (Reply::Bulk(None), _) => Some(false),
                    _ => None,
                };
                let leases = &mut self.model.leases;
                if condition_ok {
                    match written {
                        Some(true) => leases.accepted += 1,
                        Some(false) => leases.refused += 1,
                        None => {}
                    }
                    if verdict == Verdict::Either {
                        leases.either += 1;
                    }
                } else {
                    // Blocked by NX/XX before its token is looked at: not a fill, but a
                    // change of the key all the same.
                    leases.blocked += 1;
                    leases.changed(&key);
                }
                if written == Some(true) {
                    announced.push(ExpectedChange::key(0, Op::Set, &key));
                    self.model.entries.insert(key.clone(), entry);
                    self.model.leases.written(&key);
                }
                match written {
                    None => false,
                    Some(true) => condition_ok && verdict != Verdict::Refuse,
                    Some(false) => !condition_ok || verdict != Verdict::Accept,
                }
            }
            ModelOutcome::Removed {
                keys,
                count,
                tags,
                soft,
                all,
            } => {
                // One change when anything was removed: the tags named (HC.DELTAG), or the
                // keys that were there (HC.DEL); op `stale` for their soft forms.
                if count > 0 {
                    match &tags {
                        Some(tags) => {
                            let op = match (soft, all) {
                                (true, _) => Op::Stale,
                                (false, true) => Op::Deltagall,
                                (false, false) => Op::Deltag,
                            };
                            announced.extend(tags.iter().map(|tag| ExpectedChange::tag(0, op, tag)))
                        }
                        None => {
                            let op = if soft { Op::Stale } else { Op::Del };
                            announced.extend(
                                keys.iter()
                                    .filter(|k| self.model.entries.contains_key(*k))
                                    .map(|key| ExpectedChange::key(0, op, key)),
                            )
                        }
                    }
                }
                // HC.DELTAGALL too: a fill naming any of its tags is refused (conservative).
                if let Some(tags) = &tags {
                    self.model.leases.tags_removed(tags);
                }
                for key in &keys {
                    self.model.entries.remove(key);
                    self.model.leases.changed(key);
                    if tags.is_some() {
                        self.model.leases.doomed.insert(key.clone());
                    }
                }
                reply == Reply::Int(count as i64)
            }
        };
        if !ok {
            self.last = describe(&w);
            self.fail(&format!(
                "model command answered {reply:?}, not what the model expects"
            ));
        }
        self.expected.extend(announced);
    }
}
