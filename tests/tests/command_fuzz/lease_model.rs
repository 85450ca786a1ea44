//! The model's fill leases: which fills of model keys the server must accept, refuse, or
//! may do either.

use std::collections::{BTreeMap, BTreeSet};

/// Tokens the model keeps, with what it knows of them.
const MODEL_TOKENS: usize = 256;

/// What the model knows of the server's lease on one model key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lease {
    /// None: a fill of the key is refused whatever its token.
    Absent,
    /// Held since this model clock: tokens from then on may fill the key.
    Since(u64),
    /// The background removal of an entry `HC.DELTAG` removed may have dropped it, or may
    /// still: tokens from `certain_from` on may fill; older ones may or may not.
    Uncertain { certain_from: Option<u64> },
}

/// The model's decision on a fill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Accept,
    Refuse,
    /// Either is right (see [`Lease::Uncertain`]).
    Either,
}

/// The fill leases of the model keys, on a clock that moves at every model operation and
/// every history reset (the same order as the server's positions, which is all a fill's
/// check compares).
#[derive(Default)]
pub(crate) struct LeaseModel {
    clock: u64,
    /// The clock of the last history reset.
    reset_at: u64,
    /// Model keys with a lease (any other key: [`Lease::Absent`]).
    leases: BTreeMap<String, Lease>,
    /// Model tags and the clock of their last removal.
    removed: BTreeMap<String, u64>,
    /// Keys `HC.DELTAG` removed that the background removal may not have deleted yet.
    pub(crate) doomed: BTreeSet<String>,
    /// Tokens the model read, with the clock of the read.
    pub(crate) tokens: Vec<(Vec<u8>, u64, String)>,
    pub(crate) accepted: u64,
    pub(crate) refused: u64,
    pub(crate) either: u64,
    /// Fills NX/XX blocked (nil, not counted as fills).
    pub(crate) blocked: u64,
    /// Leased reads of a hit without ALWAYS (no token, no lease).
    pub(crate) hits_without_token: u64,
    /// Raw DEL/UNLINK of model keys, and those of them run in another database.
    pub(crate) raw_deletes: u64,
    pub(crate) raw_deletes_elsewhere: u64,
}

impl LeaseModel {
    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// Any change to `key` (a write, a delete, an accepted fill) drops its lease.
    pub(crate) fn changed(&mut self, key: &str) {
        self.tick();
        self.leases.remove(key);
    }

    /// `HC.SET` replaced the entry: the background removal will not delete it.
    pub(crate) fn written(&mut self, key: &str) {
        self.changed(key);
        self.doomed.remove(key);
    }

    pub(crate) fn tags_removed<'a>(&mut self, tags: impl IntoIterator<Item = &'a String>) {
        let at = self.tick();
        for tag in tags {
            self.removed.insert(tag.clone(), at);
        }
    }

    /// FLUSHDB, SWAPDB, DEBUG RELOAD (any database): no older token fills anything.
    pub(crate) fn reset(&mut self) {
        self.reset_at = self.tick();
        self.leases.clear();
    }

    /// `HC.FETCH key LEASE` answered `token`.
    pub(crate) fn leased(&mut self, key: &str, token: Vec<u8>) {
        let at = self.tick();
        let lease = if self.doomed.contains(key) {
            Lease::Uncertain { certain_from: None }
        } else {
            match self.leases.get(key).copied().unwrap_or(Lease::Absent) {
                Lease::Absent => Lease::Since(at),
                Lease::Since(since) => Lease::Since(since),
                Lease::Uncertain { certain_from } => Lease::Uncertain {
                    certain_from: certain_from.or(Some(at)),
                },
            }
        };
        self.leases.insert(key.to_string(), lease);
        self.tokens.push((token, at, key.to_string()));
        if self.tokens.len() > MODEL_TOKENS {
            self.tokens.remove(0);
        }
    }

    /// The background removals are done: no lease can be dropped by them any more.
    pub(crate) fn removals_done(&mut self) {
        self.doomed.clear();
    }

    /// Whether a fill of `key` naming or carrying `tags`, with a token read at `read`
    /// (`None`: not a token of this server), is written.
    pub(crate) fn verdict<'a>(
        &self,
        key: &str,
        read: Option<u64>,
        tags: impl IntoIterator<Item = &'a String>,
    ) -> Verdict {
        let Some(read) = read else {
            return Verdict::Refuse;
        };
        if self.reset_at > read {
            return Verdict::Refuse;
        }
        let tag_removed = tags
            .into_iter()
            .any(|tag| self.removed.get(tag).is_some_and(|&at| at > read));
        if tag_removed {
            return Verdict::Refuse;
        }
        match self.leases.get(key).copied().unwrap_or(Lease::Absent) {
            Lease::Absent => Verdict::Refuse,
            Lease::Since(since) if since <= read => Verdict::Accept,
            Lease::Since(_) => Verdict::Refuse,
            Lease::Uncertain {
                certain_from: Some(from),
            } if read >= from => Verdict::Accept,
            Lease::Uncertain { .. } => Verdict::Either,
        }
    }
}
