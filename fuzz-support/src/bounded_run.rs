//! The driver of a bounded fuzz test: the seeds, then a fixed number of inputs made from
//! them, each passed to the target's body.

use crate::{seeds, Mutator, Rng};
use std::time::Instant;

/// A bounded run of one fuzz target: `iterations` inputs from a fixed RNG seed, so that
/// every run tests the same inputs.
#[derive(Debug, Clone, Copy)]
pub struct BoundedRun<'a, W> {
    /// The target's name, which names its seed directory ([`crate::corpus_dir`]).
    pub target: &'a str,
    /// Inputs made after the seeds.
    pub iterations: usize,
    /// The seed of the run's [`Rng`]: fixed, so that a failing input reproduces.
    pub rng_seed: u64,
    /// How each input is changed.
    pub mutator: Mutator<'a, W>,
    /// Makes every other input (the even-numbered ones) instead of a copy of a seed, before
    /// mutation: well-formed inputs with random fields reach deeper than seeds alone.
    pub generator: Option<fn(&mut Rng) -> Vec<u8>>,
}

impl<W: AsRef<[u8]>> BoundedRun<'_, W> {
    /// The `iterations` inputs of this run: each a seed (or a generated input), mutated.
    ///
    /// # Panics
    /// The iterator panics when `seeds` is empty.
    pub fn inputs<'r>(&'r self, seeds: &'r [Vec<u8>]) -> Inputs<'r, W> {
        Inputs {
            run: self,
            seeds,
            rng: Rng::new(self.rng_seed),
            made: 0,
        }
    }

    /// Calls `body` on each seed of the target, then on each of [`inputs`](Self::inputs);
    /// prints how many inputs it took and how long (`--nocapture`); returns the count.
    ///
    /// When `body` panics, the input it was given is printed too.
    ///
    /// # Panics
    /// When the seeds cannot be read ([`crate::seeds`]), or `body` panics.
    pub fn run(&self, mut body: impl FnMut(&[u8])) -> usize {
        let started = Instant::now();
        let seeds = seeds(self.target);
        for seed in &seeds {
            let _shown = ShownOnPanic(self.target, seed);
            body(seed);
        }
        for input in self.inputs(&seeds) {
            let _shown = ShownOnPanic(self.target, &input);
            body(&input);
        }
        let count = seeds.len() + self.iterations;
        eprintln!("{}: {count} inputs in {:?}", self.target, started.elapsed());
        count
    }
}

/// Prints the input of a body that panics (the body's own message may not show it).
struct ShownOnPanic<'a>(&'a str, &'a [u8]);

impl Drop for ShownOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "{}: the failing input: {:?}",
                self.0,
                self.1.escape_ascii().to_string()
            );
        }
    }
}

/// The inputs of a [`BoundedRun`], made as they are taken.
#[derive(Debug)]
pub struct Inputs<'r, W> {
    run: &'r BoundedRun<'r, W>,
    seeds: &'r [Vec<u8>],
    rng: Rng,
    made: usize,
}

impl<W: AsRef<[u8]>> Iterator for Inputs<'_, W> {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        if self.made == self.run.iterations {
            return None;
        }
        let mut input = match self.run.generator {
            Some(make) if self.made % 2 == 0 => make(&mut self.rng),
            _ => self.rng.pick(self.seeds).clone(),
        };
        self.made += 1;
        self.run
            .mutator
            .mutate(&mut self.rng, &mut input, self.seeds);
        Some(input)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.run.iterations - self.made;
        (left, Some(left))
    }
}

impl<W: AsRef<[u8]>> ExactSizeIterator for Inputs<'_, W> {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Edit;

    fn generated(rng: &mut Rng) -> Vec<u8> {
        format!("generated {}", rng.below(10)).into_bytes()
    }

    fn run(generator: Option<fn(&mut Rng) -> Vec<u8>>) -> BoundedRun<'static, &'static str> {
        BoundedRun {
            target: "entry_load",
            iterations: 1000,
            rng_seed: 11,
            mutator: Mutator {
                min_edits: 0,
                max_edits: 0,
                edits: &[Edit::InsertJunk],
                words: &[],
            },
            generator,
        }
    }

    #[test]
    fn a_run_makes_exactly_its_iterations_alternating_with_the_generator() {
        let seeds = vec![b"seed".to_vec()];
        let plain = run(None);
        let inputs: Vec<Vec<u8>> = plain.inputs(&seeds).collect();
        assert_eq!(inputs.len(), 1000);
        assert!(inputs.iter().all(|i| i == b"seed"));
        let with_generator = run(Some(generated));
        assert_eq!(with_generator.inputs(&seeds).len(), 1000);
        for (i, input) in with_generator.inputs(&seeds).enumerate() {
            assert_eq!(
                input.starts_with(b"generated "),
                i % 2 == 0,
                "{i}: {input:?}"
            );
        }
    }

    #[test]
    fn the_inputs_are_the_same_on_every_run() {
        let seeds = vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec()];
        let mut mutating = run(Some(generated));
        mutating.mutator.max_edits = 4;
        let first: Vec<Vec<u8>> = mutating.inputs(&seeds).collect();
        assert_eq!(first, mutating.inputs(&seeds).collect::<Vec<_>>());
        mutating.rng_seed += 1;
        assert_ne!(first, mutating.inputs(&seeds).collect::<Vec<_>>());
    }

    #[test]
    fn run_passes_every_seed_then_every_input_to_the_body() {
        let plain = run(None);
        let seeds = seeds("entry_load");
        let mut seen = Vec::new();
        let count = plain.run(|input| seen.push(input.to_vec()));
        assert_eq!(count, seeds.len() + 1000);
        assert_eq!(seen.len(), count);
        assert_eq!(seen[..seeds.len()], seeds[..]);
        assert!(seen[seeds.len()..].iter().all(|i| seeds.contains(i)));
    }
}
