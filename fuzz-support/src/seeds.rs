//! The committed seed corpora, `fuzz/corpus/<target>/`: the starting inputs of both
//! `cargo fuzz` and the bounded tests.

use std::fmt;
use std::path::{Path, PathBuf};

/// The seed directory of fuzz target `target`: `fuzz/corpus/<target>` in this workspace.
pub fn corpus_dir(target: &str) -> PathBuf {
    // This crate sits beside `fuzz/`, as do the crates whose targets it runs.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

/// Why a seed directory could not be used.
#[derive(Debug)]
pub enum SeedsError {
    /// The directory could not be listed (it is missing, or not a directory).
    Unreadable {
        /// The seed directory.
        dir: PathBuf,
        /// Why it could not be listed.
        cause: std::io::Error,
    },
    /// One seed could not be read.
    UnreadableFile {
        /// The seed file.
        file: PathBuf,
        /// Why it could not be read.
        cause: std::io::Error,
    },
    /// The directory holds no seed: a test over it would test nothing.
    Empty {
        /// The seed directory.
        dir: PathBuf,
    },
}

impl fmt::Display for SeedsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SeedsError::Unreadable { dir, cause } => {
                write!(f, "seed directory {}: {cause}", dir.display())
            }
            SeedsError::UnreadableFile { file, cause } => {
                write!(f, "seed {}: {cause}", file.display())
            }
            SeedsError::Empty { dir } => write!(f, "no seeds in {}", dir.display()),
        }
    }
}

impl std::error::Error for SeedsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SeedsError::Unreadable { cause, .. } | SeedsError::UnreadableFile { cause, .. } => {
                Some(cause)
            }
            SeedsError::Empty { .. } => None,
        }
    }
}

/// The contents of every file in `dir`, in file name order (so that runs are repeatable).
pub fn read_seeds(dir: &Path) -> Result<Vec<Vec<u8>>, SeedsError> {
    let unreadable = |cause| SeedsError::Unreadable {
        dir: dir.to_path_buf(),
        cause,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(unreadable)? {
        files.push(entry.map_err(unreadable)?.path());
    }
    files.sort();
    let seeds = files
        .into_iter()
        .map(|file| {
            std::fs::read(&file).map_err(|cause| SeedsError::UnreadableFile { file, cause })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if seeds.is_empty() {
        return Err(SeedsError::Empty {
            dir: dir.to_path_buf(),
        });
    }
    Ok(seeds)
}

/// The seeds of fuzz target `target` ([`corpus_dir`]), in file name order.
///
/// # Panics
/// When the directory is missing or empty, or a seed cannot be read; the message names the
/// path.
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    read_seeds(&corpus_dir(target)).unwrap_or_else(|e| panic!("fuzz target {target}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory of this process under the system's temporary directory; `create`: a
    /// fresh empty one.
    fn scratch_dir(name: &str, create: bool) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "hybridcache-fuzz-support-{}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        if create {
            std::fs::create_dir_all(&dir).unwrap();
        }
        dir
    }

    #[test]
    fn seeds_are_read_in_file_name_order() {
        let dir = scratch_dir("seeds_in_order", true);
        for (name, body) in [("b", &b"second"[..]), ("a", b"first"), ("c", b"")] {
            std::fs::write(dir.join(name), body).unwrap();
        }
        let seeds = read_seeds(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(seeds, [&b"first"[..], b"second", b""]);
    }

    #[test]
    fn a_missing_directory_is_reported_with_its_path() {
        let dir = scratch_dir("no_such_corpus", false);
        let error = read_seeds(&dir).unwrap_err();
        assert!(matches!(error, SeedsError::Unreadable { .. }), "{error:?}");
        let text = error.to_string();
        assert!(text.contains("no_such_corpus"), "{text}");
        let panic = std::panic::catch_unwind(|| seeds("no_such_target")).unwrap_err();
        let message = panic.downcast_ref::<String>().unwrap();
        assert!(
            message.contains("fuzz target no_such_target")
                && message.contains("fuzz/corpus/no_such_target"),
            "{message}"
        );
    }

    #[test]
    fn an_empty_directory_is_an_error() {
        let dir = scratch_dir("empty_corpus", true);
        let error = read_seeds(&dir).unwrap_err();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(error.to_string(), format!("no seeds in {}", dir.display()));
    }

    #[test]
    fn the_committed_corpora_are_found() {
        for target in ["set_options", "entry_load", "event_decode"] {
            assert!(!seeds(target).is_empty(), "{target}");
        }
    }
}
