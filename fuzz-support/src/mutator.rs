//! Mutation of fuzz inputs: a few random edits, from the target's seeds and its dictionary.

use crate::Rng;

/// The bytes [`Edit::SetByte`] writes: zero, the ends of the signed and unsigned byte
/// ranges, and two that start numbers.
pub const INTERESTING_BYTES: [u8; 6] = [0, 0x7f, 0x80, 0xff, b'0', b'-'];

/// One kind of edit. An edit that cannot apply (a byte edit of an empty input, a word from
/// an empty dictionary, a seed from no seeds) inserts junk instead, as [`Edit::InsertJunk`].
#[derive(Debug, Clone, Copy)]
pub enum Edit {
    /// Flips one bit of one byte.
    FlipBit,
    /// Sets one byte to one of [`INTERESTING_BYTES`].
    SetByte,
    /// Drops everything from the edit's position on.
    Truncate,
    /// Drops up to 15 bytes from the edit's position.
    Remove,
    /// Inserts a dictionary word.
    InsertWord,
    /// Inserts this separator then a dictionary word: the word as an argument of its own.
    InsertArgument(u8),
    /// Inserts the tail of a seed, from a random offset.
    SpliceSeed,
    /// Inserts 1 to 8 random bytes.
    InsertJunk,
    /// An edit of the target's own (say, a field's value replaced by another).
    Custom(fn(&mut Rng, &mut Vec<u8>)),
}

/// Makes a new input out of an old one with `min_edits..=max_edits` edits, each chosen
/// uniformly from `edits` (list one twice to make it twice as likely).
#[derive(Debug, Clone, Copy)]
pub struct Mutator<'a, W> {
    /// The fewest edits per input (0: some inputs go through unchanged).
    pub min_edits: usize,
    /// The most edits per input.
    pub max_edits: usize,
    /// The kinds of edit to choose from (at least one).
    pub edits: &'a [Edit],
    /// Byte strings the parser gives meaning to (keywords, edge numbers, delimiters).
    pub words: &'a [W],
}

impl<W: AsRef<[u8]>> Mutator<'_, W> {
    /// Edits `input` in place; [`Edit::SpliceSeed`] takes from `seeds`.
    ///
    /// # Panics
    /// When `edits` is empty.
    pub fn mutate(&self, rng: &mut Rng, input: &mut Vec<u8>, seeds: &[Vec<u8>]) {
        let spread = self.max_edits.saturating_sub(self.min_edits);
        for _ in 0..self.min_edits + rng.below(spread + 1) {
            let at = rng.below(input.len() + 1);
            let edit = *rng.pick(self.edits);
            self.apply(edit, rng, input, at, seeds);
        }
    }

    fn apply(&self, edit: Edit, rng: &mut Rng, input: &mut Vec<u8>, at: usize, seeds: &[Vec<u8>]) {
        match edit {
            Edit::FlipBit if !input.is_empty() => {
                let i = rng.below(input.len());
                input[i] ^= 1 << rng.below(8);
            }
            Edit::SetByte if !input.is_empty() => {
                let i = rng.below(input.len());
                input[i] = *rng.pick(&INTERESTING_BYTES);
            }
            Edit::Truncate => input.truncate(at),
            Edit::Remove => {
                let end = (at + rng.below(16)).min(input.len());
                input.drain(at..end);
            }
            Edit::InsertWord if !self.words.is_empty() => {
                let word = rng.pick(self.words).as_ref();
                input.splice(at..at, word.iter().copied());
            }
            Edit::InsertArgument(separator) if !self.words.is_empty() => {
                let word = rng.pick(self.words).as_ref();
                let argument = std::iter::once(separator).chain(word.iter().copied());
                input.splice(at..at, argument);
            }
            Edit::SpliceSeed if !seeds.is_empty() => {
                let other = rng.pick(seeds);
                let from = rng.below(other.len() + 1);
                input.splice(at..at, other[from..].iter().copied());
            }
            Edit::Custom(edit) => edit(rng, input),
            _ => {
                let junk: Vec<u8> = (0..1 + rng.below(8))
                    .map(|_| rng.next_u64() as u8)
                    .collect();
                input.splice(at..at, junk);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVERY_EDIT: &[Edit] = &[
        Edit::FlipBit,
        Edit::SetByte,
        Edit::Truncate,
        Edit::Remove,
        Edit::InsertWord,
        Edit::InsertArgument(0),
        Edit::SpliceSeed,
        Edit::InsertJunk,
    ];

    fn mutator<'a>(edits: &'a [Edit], words: &'a [&'a str]) -> Mutator<'a, &'a str> {
        Mutator {
            min_edits: 1,
            max_edits: 4,
            edits,
            words,
        }
    }

    fn mark(_: &mut Rng, input: &mut Vec<u8>) {
        input.push(b'#');
    }

    #[test]
    fn the_number_of_edits_stays_within_its_bounds_and_covers_them() {
        let mutator = Mutator::<&str> {
            min_edits: 2,
            max_edits: 5,
            edits: &[Edit::Custom(mark)],
            words: &[],
        };
        let mut rng = Rng::new(1);
        let mut seen = [false; 6];
        for _ in 0..1000 {
            let mut input = Vec::new();
            mutator.mutate(&mut rng, &mut input, &[]);
            assert!((2..=5).contains(&input.len()), "{} edits", input.len());
            seen[input.len()] = true;
        }
        assert_eq!(seen, [false, false, true, true, true, true]);
    }

    #[test]
    fn an_input_grows_at_most_by_the_longest_insertion_per_edit() {
        let words = ["TAGS", "9223372036854775808", ""];
        let seeds = vec![b"EX\x0010".to_vec(), vec![0xff; 40], Vec::new()];
        // A word with its separator, a whole seed, or 8 junk bytes.
        let longest_word = words.iter().map(|w| w.len() + 1).max().unwrap();
        let longest_seed = seeds.iter().map(Vec::len).max().unwrap();
        let longest_insertion = longest_word.max(longest_seed).max(8);
        let mutator = mutator(EVERY_EDIT, &words);
        let mut rng = Rng::new(2);
        for _ in 0..20_000 {
            let mut input = rng.pick(&seeds).clone();
            let before = input.len();
            mutator.mutate(&mut rng, &mut input, &seeds);
            assert!(
                input.len() <= before + 4 * longest_insertion,
                "{before} -> {} bytes",
                input.len()
            );
        }
    }

    #[test]
    fn truncation_leaves_a_prefix_and_removal_never_grows() {
        let mut rng = Rng::new(3);
        let original: Vec<u8> = (0..64).collect();
        for (edits, prefix) in [(&[Edit::Truncate][..], true), (&[Edit::Remove][..], false)] {
            for _ in 0..1000 {
                let mut input = original.clone();
                mutator(edits, &[]).mutate(&mut rng, &mut input, &[]);
                assert!(input.len() <= original.len());
                assert!(!prefix || original.starts_with(&input), "{input:?}");
                // Removal keeps the bytes it leaves in order.
                assert!(input.windows(2).all(|w| w[0] < w[1]), "{input:?}");
            }
        }
    }

    #[test]
    fn a_bit_flip_changes_exactly_one_bit() {
        let mut rng = Rng::new(4);
        let one_flip = Mutator::<&str> {
            min_edits: 1,
            max_edits: 1,
            edits: &[Edit::FlipBit],
            words: &[],
        };
        for _ in 0..1000 {
            let original = b"HC.SET key value".to_vec();
            let mut input = original.clone();
            one_flip.mutate(&mut rng, &mut input, &[]);
            let flipped: u32 = input
                .iter()
                .zip(&original)
                .map(|(a, b)| (a ^ b).count_ones())
                .sum();
            assert_eq!(flipped, 1);
        }
    }

    #[test]
    fn inserted_words_and_arguments_come_from_the_dictionary() {
        let mut rng = Rng::new(5);
        let one = |edit| Mutator {
            min_edits: 1,
            max_edits: 1,
            edits: std::slice::from_ref(edit),
            words: &["NX"],
        };
        for _ in 0..100 {
            let mut input = b"ab".to_vec();
            one(&Edit::InsertWord).mutate(&mut rng, &mut input, &[]);
            let shown = String::from_utf8_lossy(&input).into_owned();
            assert!(
                ["NXab", "aNXb", "abNX"].contains(&shown.as_str()),
                "{shown}"
            );
            let mut input = b"ab".to_vec();
            one(&Edit::InsertArgument(0)).mutate(&mut rng, &mut input, &[]);
            assert!(
                [&b"\0NXab"[..], b"a\0NXb", b"ab\0NX"].contains(&input.as_slice()),
                "{input:?}"
            );
        }
    }

    #[test]
    fn edits_that_cannot_apply_insert_junk_and_never_panic() {
        let mut rng = Rng::new(6);
        for edit in EVERY_EDIT {
            if matches!(edit, Edit::Truncate | Edit::Remove) {
                continue;
            }
            let mut input = Vec::new();
            mutator(std::slice::from_ref(edit), &[]).mutate(&mut rng, &mut input, &[]);
            assert!(!input.is_empty(), "{edit:?} left an empty input empty");
        }
    }

    #[test]
    fn the_same_seed_makes_the_same_inputs() {
        let words = ["EX", "\r\n"];
        let seeds = vec![b"seed one".to_vec(), b"two".to_vec()];
        let inputs = |seed| {
            let mut rng = Rng::new(seed);
            (0..200)
                .map(|_| {
                    let mut input = rng.pick(&seeds).clone();
                    mutator(EVERY_EDIT, &words).mutate(&mut rng, &mut input, &seeds);
                    input
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(inputs(7), inputs(7));
        assert_ne!(inputs(7), inputs(8));
    }
}
