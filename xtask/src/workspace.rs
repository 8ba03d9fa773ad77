//! Where things are in the workspace: its root, `www/`, `pkg/` and the cargo target directory.
//!
//! # Example
//! ```
//! let root = xtask::workspace::root();
//! assert!(root.join("Cargo.toml").is_file());
//! assert_eq!(xtask::workspace::www_dir(), root.join("www"));
//! ```

use std::path::PathBuf;

/// The workspace root (the parent of `xtask/`).
pub fn root() -> PathBuf {
    let xtask_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    xtask_dir.parent().map(PathBuf::from).unwrap_or(xtask_dir)
}

/// The demo site served at `/`.
pub fn www_dir() -> PathBuf {
    root().join("www")
}

/// The wasm package `cargo xtask build` writes, served at `/pkg/`.
pub fn pkg_dir() -> PathBuf {
    root().join("pkg")
}

/// `$CARGO_TARGET_DIR` if set (relative to the root), else `<root>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root().join(dir),
        None => root().join("target"),
    }
}
