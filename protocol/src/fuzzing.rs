//! The fuzz target body for the event decoder: every reader decodes whatever arrives on the
//! invalidation channel, and anyone who may publish there can send it anything.
//!
//! Run by `cargo fuzz` (`fuzz/fuzz_targets/event_decode.rs`, `make fuzz`), and by the
//! bounded tests below over the seed corpus (`fuzz/corpus/event_decode/`) and deterministic
//! mutations of it, which `cargo test` runs on stable.

use crate::{decode_message, MessageWriter, FORMAT_VERSION, OLDEST_FORMAT_VERSION};

/// Decodes `data`; a message that decodes must survive being written again (in the current
/// format) and read back unchanged, and write to the same bytes again.
pub fn event_decode(data: &[u8]) {
    let events = match decode_message(data) {
        Ok(events) => events,
        Err(e) => {
            // Readers log it.
            let _ = e.to_string();
            return;
        }
    };
    let Some(first) = events.first() else {
        return;
    };
    let v = first.v;
    assert!((OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&v));
    let mut writer = MessageWriter::new(&first.origin);
    for event in &events {
        assert_eq!((event.v, &event.origin), (v, &first.origin));
        writer.push_change(event.seq, event.db, event.op, &event.change);
    }
    let bytes = writer.finish().to_vec();
    match decode_message(&bytes) {
        Ok(again) => {
            assert_eq!(again.len(), events.len());
            for (again, event) in again.iter().zip(&events) {
                assert_eq!(again.v, FORMAT_VERSION);
                assert_eq!(
                    (&again.origin, again.seq, again.db, again.op, &again.change),
                    (&event.origin, event.seq, event.db, event.op, &event.change),
                    "decode(encode(event))"
                );
            }
            let mut writer = MessageWriter::new(&first.origin);
            for event in &again {
                writer.push_change(event.seq, event.db, event.op, &event.change);
            }
            assert_eq!(writer.finish(), &bytes[..], "encoding is deterministic");
        }
        Err(e) => unreachable!("{events:?} encodes to {bytes:?}, which does not decode: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Change, Name, Op, TagMatch};
    use hybridcache_fuzz_support::{seeds, BoundedRun, Edit, Mutator, Rng};
    use std::time::Instant;

    /// Generated inputs: 1.5 s in a debug build on an idle machine.
    const ITERATIONS: usize = 80_000;

    /// JSON pieces the decoder gives meaning to, and values at the edges of their types.
    const WORDS: &[&str] = &[
        r#""v":1,"#,
        r#""v":2,"#,
        r#""v":4294967296,"#,
        r#""origin":"x","#,
        r#""seq":18446744073709551615,"#,
        r#""seq":18446744073709551616,"#,
        r#""seq":-1,"#,
        r#""seq":1e3,"#,
        r#""db":null,"#,
        r#""db":4294967295,"#,
        r#""db":-1,"#,
        r#""op":"set","#,
        r#""op":"nope","#,
        r#""op":null,"#,
        r#""kind":"keys","#,
        r#""kind":"tags","#,
        r#""kind":"flush","#,
        r#""kind":"KEYS","#,
        r#""keys":["k"],"#,
        r#""tags":[],"#,
        r#""match":"all","#,
        r#"{"b64":"/w=="}"#,
        r#"{"b64":"***"}"#,
        r#"{"b64":"/w==","b64":"AA=="}"#,
        r#"{"other":1}"#,
        r#""\ud800""#,
        r#""\u00e9""#,
        r#""\\\"""#,
        "[[[[[[[[[[[[[[[[",
        "{",
        "}",
        "[",
        "]",
        ",",
        ":",
        "null",
        "true",
        "\"",
        "\u{0}",
        "\u{ff}",
    ];

    /// JSON values to put in place of a field's value.
    const VALUES: &[&str] = &[
        "0",
        "1",
        "-1",
        "1.0",
        "4294967296",
        "18446744073709551615",
        "null",
        "true",
        r#""""#,
        r#""x""#,
        r#""set""#,
        r#""keys""#,
        r#""tags""#,
        r#""flush""#,
        r#""all""#,
        "[]",
        r#"["a",{"b64":"/w=="},"\u0000"]"#,
        r#"[{"b64":""}]"#,
        r#"{"b64":"AA=="}"#,
        "{}",
    ];

    /// A well-formed event with random fields.
    fn random_event(rng: &mut Rng) -> Vec<u8> {
        let name = |rng: &mut Rng| {
            let bytes: Vec<u8> = (0..rng.below(6))
                .map(|_| rng.next_u64() as u8 & 0x8f)
                .collect();
            Name(bytes)
        };
        let names = |rng: &mut Rng| (0..rng.below(4)).map(|_| name(rng)).collect();
        let change = match rng.below(4) {
            0 => Change::Keys { keys: names(rng) },
            1 => Change::Tags {
                tags: names(rng),
                matching: TagMatch::Any,
            },
            2 => Change::Tags {
                tags: names(rng),
                matching: TagMatch::All,
            },
            _ => Change::Flush,
        };
        let ops = [
            Op::Set,
            Op::Del,
            Op::Deltag,
            Op::Deltagall,
            Op::Stale,
            Op::Flushall,
            Op::Unknown,
        ];
        let op = ops[rng.below(ops.len())];
        let db = (rng.below(3) > 0).then(|| rng.next_u64() as u32);
        crate::InvalidationEvent::new("00000000000000ff", rng.next_u64(), db, op, change).encode()
    }

    /// The edits of the mutations, each as likely as the times it is listed. Up to three of
    /// them; none at times, so that generated events go through whole.
    const EDITS: &[Edit] = &[
        Edit::FlipBit,
        Edit::Truncate,
        Edit::Remove,
        Edit::InsertWord,
        Edit::InsertWord,
        Edit::SpliceSeed,
        Edit::Custom(replace_value),
        Edit::Custom(replace_value),
        Edit::InsertJunk,
    ];

    /// Another value for one field: what follows a colon, up to the next comma or brace.
    fn replace_value(rng: &mut Rng, input: &mut Vec<u8>) {
        let colons: Vec<usize> = (0..input.len()).filter(|&i| input[i] == b':').collect();
        if colons.is_empty() {
            return;
        }
        let start = colons[rng.below(colons.len())] + 1;
        let end = (start..input.len())
            .find(|&i| matches!(input[i], b',' | b'}'))
            .unwrap_or(input.len());
        let value = VALUES[rng.below(VALUES.len())];
        input.splice(start..end, value.bytes());
    }

    #[test]
    fn event_decode_never_panics_on_seeds_or_their_mutations() {
        let started = Instant::now();
        let seeds = seeds("event_decode");
        for seed in &seeds {
            event_decode(seed);
        }
        let run = BoundedRun {
            target: "event_decode",
            iterations: ITERATIONS,
            rng_seed: 0x6576_656e_7473_2121,
            mutator: Mutator {
                min_edits: 0,
                max_edits: 3,
                edits: EDITS,
                words: WORDS,
            },
            generator: Some(random_event),
        };
        // The seeds and the inputs by hand (not `run.run`): only the inputs count as decoded.
        let mut decoded = 0;
        for input in run.inputs(&seeds) {
            event_decode(&input);
            decoded += usize::from(crate::decode_message(&input).is_ok());
        }
        eprintln!(
            "event_decode: {} inputs ({decoded} decoded) in {:?}",
            seeds.len() + ITERATIONS,
            started.elapsed()
        );
        assert!(decoded > ITERATIONS / 100, "mutations too destructive");
    }

    #[test]
    fn every_event_decode_seed_decodes() {
        for seed in seeds("event_decode") {
            assert!(
                crate::decode_message(&seed).is_ok(),
                "{}",
                String::from_utf8_lossy(&seed)
            );
        }
    }
}
