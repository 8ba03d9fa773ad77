//! Where things are in the workspace: its root, `www/`, `pkg/` and the cargo target directory.
//!
//! # Example
//! ```
//! let root = xtask::workspace::root();
//! assert!(root.join("Cargo.toml").is_file());
//! assert_eq!(xtask::workspace::www_dir(), root.join("www"));
//! ```

use std::path::{Path, PathBuf};

use anyhow::{ensure, Result};

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

/// The files of a built wasm package (relative to it) that a page and a service worker load.
pub const PKG_FILES: [&str; 6] = [
    "background_assets.js",
    "background_assets_bg.wasm",
    "worker/background_assets.js",
    "worker/background_assets_bg.wasm",
    "worker/extension.js",
    "worker/background_assets_worker.js",
];

/// Checks that `pkg` holds every one of [`PKG_FILES`]; the error names the first one missing
/// and how to build it.
///
/// # Example
/// ```
/// let empty = std::env::temp_dir().join("xtask-doc-no-pkg");
/// let error = xtask::workspace::ensure_pkg_built(&empty).unwrap_err();
/// assert!(error.to_string().contains("background_assets.js is missing"));
/// ```
pub fn ensure_pkg_built(pkg: &Path) -> Result<()> {
    for file in PKG_FILES {
        ensure!(
            pkg.join(file).is_file(),
            "{} is missing: run `cargo xtask build` (or `cargo xtask test`)",
            pkg.join(file).display()
        );
    }
    Ok(())
}

/// `$CARGO_TARGET_DIR` if set (relative to the root), else `<root>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root().join(dir),
        None => root().join("target"),
    }
}
