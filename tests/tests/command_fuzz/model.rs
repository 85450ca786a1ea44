//! The shadow model: what database 0's `model:*` keys and `mtag:*` tags hold, which only the
//! model's own connection changes.

use crate::lease_model::{LeaseModel, Verdict};
use std::collections::{BTreeMap, BTreeSet};

/// Model keys (`model:<i>`) and tags (`mtag:<i>`).
pub(crate) const MODEL_KEYS: u64 = 64;
pub(crate) const MODEL_TAGS: u64 = 8;

/// Prefixes only the model uses.
pub(crate) const RESERVED: [&[u8]; 2] = [b"model:", b"mtag:"];

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ModelEntry {
    pub(crate) value: Vec<u8>,
    pub(crate) tags: BTreeSet<String>,
}

#[derive(Default)]
pub(crate) struct Model {
    pub(crate) entries: BTreeMap<String, ModelEntry>,
    pub(crate) leases: LeaseModel,
    pub(crate) ops: u64,
}

pub(crate) enum ModelOutcome {
    Set {
        key: String,
        entry: ModelEntry,
        applies: bool,
        get_version: bool,
    },
    Fetch {
        key: String,
        always: bool,
    },
    Fill {
        key: String,
        entry: ModelEntry,
        verdict: Verdict,
        condition_ok: bool,
        get_version: bool,
    },
    /// HC.DEL (`tags` None) or HC.DELTAG of `tags`; `keys` are the keys it changes. With
    /// `soft`, their soft forms HC.STALE / HC.STALETAG: the same removal, announced as
    /// `stale`. With `all`, HC.DELTAGALL of two or more distinct `tags`: the keys carrying
    /// all of them, announced as `deltagall`.
    Removed {
        keys: BTreeSet<String>,
        count: usize,
        tags: Option<BTreeSet<String>>,
        soft: bool,
        all: bool,
    },
}

pub(crate) fn model_key(i: u64) -> String {
    format!("model:{i}")
}

pub(crate) fn model_tag(i: u64) -> String {
    format!("mtag:{i}")
}
