//! What the bounded fuzz tests of `hybridcache-module` and `hybridcache-protocol` share.
//!
//! Each fuzz target body (`module/src/fuzzing.rs`, `protocol/src/fuzzing.rs`) runs under
//! `cargo fuzz` (`fuzz/`, `make fuzz`) and, on stable, in a bounded test: over the committed
//! seeds of `fuzz/corpus/<target>/`, then over a fixed number of inputs made from them. This
//! crate holds the pieces of that test; each target keeps its own dictionary and generators.
//!
//! - [`seeds`]: the seed files of a target, in name order.
//! - [`Rng`]: splitmix64, so that a failing input is the same on every run.
//! - [`Mutator`]: a few edits to an input, from seeds and a dictionary of words.
//! - [`BoundedRun`]: the driver; [`BoundedRun::run`] is the usual test body.
//!
//! ```
//! use hybridcache_fuzz_support::{BoundedRun, Edit, Mutator};
//!
//! let seeds = vec![b"EX\x0010".to_vec(), b"TAGS\0a".to_vec()];
//! let run = BoundedRun {
//!     target: "example",
//!     iterations: 100,
//!     rng_seed: 1,
//!     mutator: Mutator {
//!         min_edits: 1,
//!         max_edits: 4,
//!         edits: &[Edit::FlipBit, Edit::Truncate, Edit::InsertWord, Edit::SpliceSeed],
//!         words: &["PX", "NX"],
//!     },
//!     generator: None,
//! };
//! let mut longest = 0;
//! for input in run.inputs(&seeds) {
//!     longest = longest.max(input.len());
//! }
//! assert!(longest > 0);
//! ```
//!
//! Panics are its error reporting: it only runs inside tests.

#![warn(missing_docs)]

mod bounded_run;
mod mutator;
mod rng;
mod seeds;

pub use bounded_run::{BoundedRun, Inputs};
pub use mutator::{Edit, Mutator, INTERESTING_BYTES};
pub use rng::Rng;
pub use seeds::{corpus_dir, read_seeds, seeds, SeedsError};
