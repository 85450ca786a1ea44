//! Where the module's shared library is.

use std::path::{Path, PathBuf};

/// Environment variable that names the module library to load, overriding the build output.
pub const MODULE_ENV: &str = "HYBRIDCACHE_MODULE";

/// File name of the module library that `cargo build -p hybridcache-module` produces.
pub const MODULE_FILE: &str = "libhybridcache_module.so";

/// The workspace root (the parent of this crate's directory).
pub fn workspace_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The module library to load: `$HYBRIDCACHE_MODULE` if set, else the debug build output,
/// else the release build output.
///
/// # Panics
/// When `$HYBRIDCACHE_MODULE` names a missing file, or when no build output exists.
pub fn module_path() -> PathBuf {
    if let Some(path) = std::env::var_os(MODULE_ENV) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "{MODULE_ENV}={} does not name a file",
            path.display()
        );
        return path;
    }
    let target = workspace_dir().join("target");
    for profile in ["debug", "release"] {
        let candidate = target.join(profile).join(MODULE_FILE);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!("build the module first: cargo build -p hybridcache-module (make test does this)");
}
