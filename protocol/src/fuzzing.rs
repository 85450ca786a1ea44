//! The fuzz target body for the event decoder: every reader decodes whatever arrives on the
//! invalidation channel, and anyone who may publish there can send it anything.
//!
//! Run by `cargo fuzz` (`fuzz/fuzz_targets/event_decode.rs`, `make fuzz`), and by the
//! bounded tests below over the seed corpus (`fuzz/corpus/event_decode/`) and deterministic
//! mutations of it, which `cargo test` runs on stable.

use crate::{InvalidationEvent, FORMAT_VERSION};

/// Decodes `data`; an event that decodes must survive `encode` then `decode` unchanged, and
/// encode to the same bytes again.
pub fn event_decode(data: &[u8]) {
    let event = match InvalidationEvent::decode(data) {
        Ok(event) => event,
        Err(e) => {
            // Readers log it.
            let _ = e.to_string();
            return;
        }
    };
    assert_eq!(event.v, FORMAT_VERSION);
    let bytes = event.encode();
    assert!(!bytes.is_empty(), "{event:?} encodes to nothing");
    match InvalidationEvent::decode(&bytes) {
        Ok(again) => {
            assert_eq!(again, event, "decode(encode(event))");
            assert_eq!(again.encode(), bytes, "encoding is deterministic");
        }
        Err(e) => unreachable!("{event:?} encodes to {bytes:?}, which does not decode: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Change, Name, Op};
    use std::path::PathBuf;
    use std::time::Instant;

    /// Generated inputs: 1.5 s in a debug build on an idle machine.
    const ITERATIONS: usize = 80_000;

    fn corpus() -> Vec<Vec<u8>> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/event_decode");
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| entry.unwrap().path())
            .collect();
        paths.sort();
        let files: Vec<Vec<u8>> = paths.iter().map(|p| std::fs::read(p).unwrap()).collect();
        assert!(!files.is_empty(), "no seeds in {}", dir.display());
        files
    }

    /// splitmix64: a fixed sequence, so that a failure reproduces.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

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
        "[]",
        r#"["a",{"b64":"/w=="},"\u0000"]"#,
        r#"[{"b64":""}]"#,
        r#"{"b64":"AA=="}"#,
        "{}",
    ];

    /// A well-formed event with random fields.
    fn random_event(rng: &mut Rng) -> Vec<u8> {
        let name = |rng: &mut Rng| {
            let bytes: Vec<u8> = (0..rng.below(6)).map(|_| rng.next() as u8 & 0x8f).collect();
            Name(bytes)
        };
        let names = |rng: &mut Rng| (0..rng.below(4)).map(|_| name(rng)).collect();
        let change = match rng.below(3) {
            0 => Change::Keys { keys: names(rng) },
            1 => Change::Tags { tags: names(rng) },
            _ => Change::Flush,
        };
        let ops = [Op::Set, Op::Del, Op::Deltag, Op::Flushall, Op::Unknown];
        let op = ops[rng.below(ops.len())];
        let db = (rng.below(3) > 0).then(|| rng.next() as u32);
        InvalidationEvent::new("00000000000000ff", rng.next(), db, op, change).encode()
    }

    /// Up to three changes; none at times, so that generated events go through whole.
    fn mutate(rng: &mut Rng, input: &mut Vec<u8>, seeds: &[Vec<u8>]) {
        for _ in 0..rng.below(4) {
            let at = rng.below(input.len() + 1);
            match rng.below(9) {
                0 if !input.is_empty() => {
                    let i = rng.below(input.len());
                    input[i] ^= 1 << rng.below(8);
                }
                1 => input.truncate(at),
                2 => {
                    let end = (at + rng.below(16)).min(input.len());
                    input.drain(at..end);
                }
                3 | 4 => {
                    let word = WORDS[rng.below(WORDS.len())];
                    input.splice(at..at, word.bytes());
                }
                6 | 7 => {
                    // Another value for one field.
                    let colons: Vec<usize> =
                        (0..input.len()).filter(|&i| input[i] == b':').collect();
                    if colons.is_empty() {
                        continue;
                    }
                    let start = colons[rng.below(colons.len())] + 1;
                    let end = (start..input.len())
                        .find(|&i| matches!(input[i], b',' | b'}'))
                        .unwrap_or(input.len());
                    let value = VALUES[rng.below(VALUES.len())];
                    input.splice(start..end, value.bytes());
                }
                5 => {
                    let other = &seeds[rng.below(seeds.len())];
                    let from = rng.below(other.len() + 1);
                    input.splice(at..at, other[from..].iter().copied());
                }
                _ => {
                    let junk: Vec<u8> = (0..1 + rng.below(8)).map(|_| rng.next() as u8).collect();
                    input.splice(at..at, junk);
                }
            }
        }
    }

    #[test]
    fn event_decode_never_panics_on_seeds_or_their_mutations() {
        let started = Instant::now();
        let seeds = corpus();
        for seed in &seeds {
            event_decode(seed);
        }
        let mut rng = Rng(0x6576_656e_7473_2121);
        let mut decoded = 0;
        for i in 0..ITERATIONS {
            let mut input = if i % 2 == 0 {
                random_event(&mut rng)
            } else {
                seeds[rng.below(seeds.len())].clone()
            };
            mutate(&mut rng, &mut input, &seeds);
            event_decode(&input);
            decoded += usize::from(InvalidationEvent::decode(&input).is_ok());
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
        for seed in corpus() {
            assert!(
                InvalidationEvent::decode(&seed).is_ok(),
                "{}",
                String::from_utf8_lossy(&seed)
            );
        }
    }
}
