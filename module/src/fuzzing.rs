//! Fuzz target bodies for the module's parsers of untrusted bytes: `HC.SET` options and saved
//! entries (RDB, `RESTORE`); and a model of tag removals (`HC.DELTAG`, `HC.DELTAGALL`), whose
//! bytes are a program of writes, removals and timer batches. Each body takes arbitrary bytes
//! and panics only on a bug: a parser that panics, or a result that breaks an invariant the
//! body checks.
//!
//! Run by `cargo fuzz` (`fuzz/fuzz_targets/`, `make fuzz`), and by the bounded tests below
//! over the seed corpus (`fuzz/corpus/<target>/`) and deterministic mutations of it, which
//! `cargo test` runs on stable (the driver, RNG and mutations: `hybridcache-fuzz-support`; the
//! dictionary and generators of these targets stay here).
//!
//! Panics here are the point (a fuzzer's crash signal) and cannot reach Redis: this file is
//! compiled only under `cfg(test)` or `cfg(fuzzing)`, never into the loadable module, and the
//! `unwrap`s below are in its `#[cfg(test)]` tests.

use crate::check::Observed;
use crate::index::TagIndex;
use crate::pending::HashMap;
use crate::saved::{self, SliceSource, Source, FLAG_DEAD, MAX_TAGS_IN_PAYLOAD};
use crate::set_options::{Expiry, SetOptions};

/// The options of `HC.SET key value <options>`, split on NUL bytes (NULs inside arguments
/// are left to the end-to-end tests).
pub fn set_options(data: &[u8]) {
    let args = split_args(data);
    match SetOptions::parse(&args) {
        Ok(options) => check_options(&args, &options),
        Err(e) => {
            // Becomes an error reply: a NUL would panic in redis-module, CR/LF would break
            // the protocol.
            let reply = e.to_string();
            assert!(
                reply.bytes().all(|b| b.is_ascii_graphic() || b == b' '),
                "error reply {reply:?}"
            );
        }
    }
}

/// The arguments in `data`, NUL-separated; none when it is empty.
pub fn split_args(data: &[u8]) -> Vec<&[u8]> {
    if data.is_empty() {
        return Vec::new();
    }
    data.split(|&b| b == 0).collect()
}

fn check_options(args: &[&[u8]], options: &SetOptions) {
    if !options.tags.is_empty() {
        assert!(args.ends_with(options.tags), "tags are the last arguments");
        let keyword = args
            .len()
            .checked_sub(options.tags.len() + 1)
            .and_then(|at| args.get(at));
        assert!(
            keyword.is_some_and(|k| k.eq_ignore_ascii_case(b"TAGS")),
            "tags follow TAGS"
        );
    }
    if options.get_version {
        assert!(args.iter().any(|a| a.eq_ignore_ascii_case(b"GETVERSION")));
    }
    if let Expiry::In(ms) | Expiry::At(ms) = options.expiry {
        assert!(ms > 0, "expiry {ms} accepted");
    }
    for now in [i64::MIN, -1, 0, 1, 1_700_000_000_000, i64::MAX] {
        let deadline = options.expiry.deadline(now);
        match options.expiry {
            Expiry::Never | Expiry::Keep => assert_eq!(deadline, Ok(None)),
            Expiry::At(at) => assert_eq!(deadline, Ok(Some(at))),
            Expiry::In(ms) => match now.checked_add(ms) {
                Some(at) => assert_eq!(deadline, Ok(Some(at))),
                None => assert!(deadline.is_err()),
            },
        }
    }
}

/// A saved entry in the slice format of [`crate::saved`].
pub fn entry_load(data: &[u8]) {
    let loaded = saved::from_bytes(data);
    // What the fields say, read one by one.
    let mut fields = SliceSource::new(data);
    let header = (|| {
        let value = fields.string()?;
        Some((
            value,
            fields.unsigned()?,
            fields.unsigned()?,
            fields.unsigned()?,
        ))
    })();
    let Some((value, version, flags, count)) = header else {
        assert!(loaded.is_none(), "loaded from a short header");
        return;
    };
    if count > MAX_TAGS_IN_PAYLOAD {
        assert!(loaded.is_none(), "loaded {count} tags");
        return;
    }
    let mut tags = Vec::new();
    for _ in 0..count {
        match fields.string() {
            Some(tag) => tags.push(tag),
            None => {
                assert!(loaded.is_none(), "loaded from a short tag list");
                return;
            }
        }
    }
    let Some(entry) = loaded else {
        // Refused although every field is there: only an oversized value may be.
        assert!(
            value.len() > crate::entry::MAX_VALUE_LEN,
            "refused a good payload"
        );
        return;
    };
    tags.sort_unstable();
    tags.dedup();
    assert_eq!(entry.value(), value);
    assert_eq!(entry.tag_list(), tags);
    assert_eq!(entry.version, version);
    assert_eq!(entry.is_dead(), flags & FLAG_DEAD != 0);
    assert!(entry.memory_usage() >= value.len());

    let bytes = saved::to_bytes(&entry, entry.is_dead());
    let again = saved::from_bytes(&bytes);
    assert_eq!(again.as_ref(), Some(&entry), "saved and loaded again");
    let bytes_again = again.map(|e| saved::to_bytes(&e, e.is_dead()));
    assert_eq!(bytes_again, Some(bytes), "saving is deterministic");
}

/// Keys and tags of the [`tag_removals`] program.
const PROGRAM_KEYS: u8 = 16;
const PROGRAM_TAGS: u8 = 5;

/// One entry of the [`tag_removals`] model.
struct ModelEntry {
    tags: Vec<Vec<u8>>,
    version: u64,
    slot: u32,
    /// Logically deleted by a tag removal, awaiting the timer.
    gone: bool,
}

/// The tags whose bits are set in `bits` (`t0` .. `t4`), sorted.
fn program_tags(bits: u8) -> Vec<Vec<u8>> {
    (0..PROGRAM_TAGS)
        .filter(|t| bits & (1 << t) != 0)
        .map(|t| format!("t{t}").into_bytes())
        .collect()
}

/// Tag removals against a model: each pair of bytes `[op, arg]` of `data` writes a key (with
/// the tags of the bits of `op >> 3`, maybe none), removes the entries carrying any or all
/// of a set of tags (`arg`'s bits, or the tags of an entry), runs a batch of the removal
/// timer, or deletes a key. After each step the index's counts, `dooms` and `HC.CHECK`'s
/// core must agree with the model.
pub fn tag_removals(data: &[u8]) {
    let mut index = TagIndex::default();
    let mut model: HashMap<Vec<u8>, ModelEntry> = HashMap::default();
    let mut seq = 0u64;
    for (step, pair) in data.chunks_exact(2).enumerate() {
        let (op, arg) = (pair[0], pair[1]);
        let key = format!("k{}", arg % PROGRAM_KEYS).into_bytes();
        match op % 8 {
            0..=2 => {
                let tags = program_tags(op >> 3);
                seq += 1;
                let slot = match model.get(&key) {
                    Some(old) => index.replace(0, &key, old.slot, &old.tags, &tags),
                    None => index.insert(0, &key, &tags),
                };
                let entry = ModelEntry {
                    tags,
                    version: seq,
                    slot,
                    gone: false,
                };
                model.insert(key, entry);
            }
            3 | 4 | 7 => {
                let tags = match op % 8 {
                    7 => model.get(&key).map(|e| e.tags.clone()).unwrap_or_default(),
                    _ => program_tags(arg),
                };
                if tags.is_empty() {
                    continue;
                }
                // HC.DELTAGALL of one tag is HC.DELTAG.
                let all = op % 8 != 3 && tags.len() > 1;
                let marker = seq + 1;
                let removed = match all {
                    true => index.invalidate_all(0, &tags, marker),
                    false => index.invalidate(0, &tags, marker),
                };
                let mut expected = 0;
                for entry in model.values_mut().filter(|e| !e.gone) {
                    let reached = match all {
                        true => tags.iter().all(|t| entry.tags.contains(t)),
                        false => tags.iter().any(|t| entry.tags.contains(t)),
                    };
                    if reached {
                        entry.gone = true;
                        expected += 1;
                    }
                }
                assert_eq!(removed, expected, "step {step}: all {all} of {tags:?}");
                if removed > 0 {
                    seq = marker;
                }
            }
            5 => {
                for (_, taken) in index.take_removals(1 + usize::from(arg % 4)) {
                    let entry = model.remove(&taken);
                    assert!(
                        entry.as_ref().is_some_and(|e| e.gone),
                        "step {step}: took a live key"
                    );
                    if let Some(entry) = entry {
                        index.remove(0, &taken, entry.slot, &entry.tags);
                    }
                }
                index.settle();
            }
            _ => {
                if let Some(entry) = model.remove(&key) {
                    index.remove(0, &key, entry.slot, &entry.tags);
                }
            }
        }
        check_tag_model(&index, &model, step);
    }
}

fn check_tag_model(index: &TagIndex, model: &HashMap<Vec<u8>, ModelEntry>, step: usize) {
    for (key, e) in model {
        assert_eq!(
            index.dooms(0, &e.tags, e.version),
            e.gone,
            "step {step}: {}",
            String::from_utf8_lossy(key)
        );
    }
    for tag in program_tags(u8::MAX) {
        let live = model
            .values()
            .filter(|e| !e.gone && e.tags.contains(&tag))
            .count() as u64;
        assert_eq!(index.card(0, &tag), live, "step {step}: {tag:?}");
    }
    let observed: Vec<Observed> = model
        .iter()
        .map(|(key, e)| Observed {
            key: key.clone(),
            tags: e.tags.clone(),
            gone: e.gone,
            slot: e.slot,
        })
        .collect();
    let problems = index.check(0, &observed).problems;
    assert!(problems.is_empty(), "step {step}: {problems:?}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::Entry;
    use crate::saved::Sink;
    use hybridcache_fuzz_support::{seeds, BoundedRun, Edit, Mutator, Rng};

    /// Generated inputs per target: 1.5 s in a debug build on an idle machine.
    const ITERATIONS: usize = 200_000;

    /// The edits of the mutations, equally likely; separated by NUL, a word is an argument
    /// of its own.
    const EDITS: &[Edit] = &[
        Edit::FlipBit,
        Edit::SetByte,
        Edit::Truncate,
        Edit::Remove,
        Edit::InsertWord,
        Edit::InsertArgument(0),
        Edit::SpliceSeed,
        Edit::InsertJunk,
    ];

    /// Byte strings the parsers give meaning to.
    fn dictionary() -> Vec<Vec<u8>> {
        let mut words: Vec<Vec<u8>> = [
            "EX",
            "px",
            "EXAT",
            "PxAt",
            "KEEPTTL",
            "NX",
            "xx",
            "GETVERSION",
            "TAGS",
            "0",
            "1",
            "-1",
            "+1",
            "9223372036854775807",
            "-9223372036854775808",
            "9223372036854775808",
            "99999999999999999999",
            "%s%n",
            "\r\n",
            "\u{100}",
        ]
        .iter()
        .map(|w| w.as_bytes().to_vec())
        .collect();
        // Huge, overlong and cut varints.
        words.push(vec![0xff; 9].into_iter().chain([0x01]).collect());
        words.push(vec![0xff; 9].into_iter().chain([0x7f]).collect());
        words.push(vec![0x80; 12]);
        words.push(vec![0xff, 0xff, 0xff, 0x0f]);
        words.push(vec![0x81, 0x00]);
        for n in [
            0,
            1,
            MAX_TAGS_IN_PAYLOAD,
            MAX_TAGS_IN_PAYLOAD + 1,
            u64::from(u32::MAX) + 1,
            u64::MAX,
        ] {
            words.push(n.to_le_bytes().to_vec());
        }
        words
    }

    /// A well-formed saved entry with random fields.
    fn random_entry(rng: &mut Rng) -> Vec<u8> {
        let mut bytes = Vec::new();
        let value: Vec<u8> = (0..rng.below(200)).map(|_| rng.next_u64() as u8).collect();
        bytes.string(&value);
        bytes.unsigned(rng.next_u64());
        bytes.unsigned(rng.next_u64() % 4);
        let count = rng.below(6);
        bytes.unsigned(count as u64);
        for _ in 0..count {
            let tag: Vec<u8> = (0..rng.below(20))
                .map(|_| b'a' + rng.below(3) as u8)
                .collect();
            bytes.string(&tag);
        }
        bytes
    }

    /// Runs `body` on each seed, then on `ITERATIONS` mutations of seeds (every other one
    /// of a `generator` input instead, when there is one).
    fn run(target: &str, body: fn(&[u8]), generator: Option<fn(&mut Rng) -> Vec<u8>>) {
        let words = dictionary();
        BoundedRun {
            target,
            iterations: ITERATIONS,
            rng_seed: 0x6879_6272_6964_6361,
            mutator: Mutator {
                min_edits: 1,
                max_edits: 4,
                edits: EDITS,
                words: &words,
            },
            generator,
        }
        .run(body);
    }

    #[test]
    fn set_options_never_panics_on_seeds_or_their_mutations() {
        run("set_options", set_options, None);
    }

    #[test]
    fn entry_load_never_panics_on_seeds_or_their_mutations() {
        run("entry_load", entry_load, Some(random_entry));
    }

    /// A program of writes (most), removals and timer batches.
    fn random_program(rng: &mut Rng) -> Vec<u8> {
        (0..2 * (1 + rng.below(120)))
            .map(|_| rng.next_u64() as u8)
            .collect()
    }

    /// Fewer inputs than the parsers get: every step of a program checks the whole model.
    #[test]
    fn tag_removals_agree_with_the_model_on_seeds_and_their_mutations() {
        BoundedRun {
            target: "tag_removals",
            iterations: 1_000,
            rng_seed: 0x7461_6772_656d_6f76,
            mutator: Mutator {
                min_edits: 1,
                max_edits: 4,
                edits: &[
                    Edit::FlipBit,
                    Edit::SetByte,
                    Edit::Truncate,
                    Edit::Remove,
                    Edit::SpliceSeed,
                    Edit::InsertJunk,
                ],
                words: &[] as &[&[u8]],
            },
            generator: Some(random_program),
        }
        .run(tag_removals);
    }

    #[test]
    fn every_set_options_seed_parses() {
        for seed in seeds("set_options") {
            assert!(
                SetOptions::parse(&split_args(&seed)).is_ok(),
                "{:?}",
                String::from_utf8_lossy(&seed)
            );
        }
    }

    /// The committed seeds pin the field order: a change to it fails here.
    #[test]
    fn every_entry_load_seed_loads() {
        for seed in seeds("entry_load") {
            assert!(saved::from_bytes(&seed).is_some(), "{seed:?}");
        }
        let seed = saved::to_bytes(
            &Entry::new(b"value", &[&b"tag:1"[..], b"tag:2"], 42).unwrap(),
            false,
        );
        assert!(seeds("entry_load").contains(&seed));
    }

    #[test]
    fn bodies_accept_edge_inputs() {
        for input in [&b""[..], b"\0", b"\0\0", b"TAGS", b"TAGS\0", b"EX\0"] {
            set_options(input);
        }
        for input in [&b""[..], &[0xff; 11], &[0; 7], &[0; 25], &[0; 32]] {
            entry_load(input);
        }
    }
}
