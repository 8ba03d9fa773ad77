//! binaryen's `wasm-opt` for the release package: where `cargo xtask setup` installs it, which
//! versions are used, and the size optimisation `cargo xtask build` runs after wasm-bindgen.
//!
//! The build works without it (it says that the wasm is then not size-optimised). Setup
//! installs binaryen [`BINARYEN_VERSION`] from the npm registry into [`install_dir`] (no root
//! needed); a `wasm-opt` on `PATH` is used only from [`MIN_VERSION`] on: Debian bookworm's
//! binaryen 108 exports the wrong table for wasm-bindgen's externref table (the glue then fails
//! at `initSync` with "Table.set(): Argument 1 is invalid").

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use xtask::webdriver::find_program;

use crate::command;

/// The npm package version setup installs (`binaryen`, its `wasm-opt` runs on Node.js).
pub const BINARYEN_VERSION: &str = "132.0.0";

/// The oldest `wasm-opt` major version the build uses.
pub const MIN_VERSION: u32 = 132;

/// The wasm features rustc 1.95 emits for wasm32-unknown-unknown (its `target_features`
/// section): wasm-opt must accept them, and keeps the output within them.
const FEATURES: [&str; 6] = [
    "--enable-bulk-memory",
    "--enable-sign-ext",
    "--enable-reference-types",
    "--enable-multivalue",
    "--enable-nontrapping-float-to-int",
    "--enable-mutable-globals",
];

/// The optimisation: for size (`-Oz`), without binaryen's inlining beyond its tiny-function
/// default (`-fimfs 0 -ocimfs 0`: inlining grew the gzipped file by ~30 KB for a few KB less
/// raw), and without the custom sections a browser does not need.
const PASSES: [&str; 8] = [
    "-Oz",
    "--flexible-inline-max-function-size",
    "0",
    "--one-caller-inline-max-function-size",
    "0",
    "--strip-debug",
    "--strip-producers",
    "--strip-target-features",
];

/// Where setup installs binaryen: `$HOME/.cache/background-assets/binaryen-<version>` (or under
/// the system temp dir when `HOME` is unset).
pub fn install_dir() -> PathBuf {
    let base = std::env::var_os("HOME")
        .map(|home| PathBuf::from(home).join(".cache"))
        .unwrap_or_else(std::env::temp_dir);
    base.join("background-assets")
        .join(format!("binaryen-{BINARYEN_VERSION}"))
}

/// The command setup runs to install binaryen into [`install_dir`].
pub fn install_command() -> Vec<String> {
    [
        "npm",
        "install",
        "--prefix",
        &install_dir().to_string_lossy(),
        "--no-save",
        "--no-package-lock",
        "--no-audit",
        "--no-fund",
        &format!("binaryen@{BINARYEN_VERSION}"),
    ]
    .iter()
    .map(|word| word.to_string())
    .collect()
}

/// A usable `wasm-opt`: setup's install first, then one on `PATH` of at least [`MIN_VERSION`].
/// `Err` says what was found and why it is not used.
pub fn find() -> std::result::Result<(PathBuf, u32), String> {
    let installed = install_dir().join("node_modules/binaryen/bin/wasm-opt");
    pick(
        [Some(installed), find_program("wasm-opt")]
            .into_iter()
            .flatten(),
    )
}

/// The first of `candidates` that exists and is at least [`MIN_VERSION`].
fn pick(
    candidates: impl IntoIterator<Item = PathBuf>,
) -> std::result::Result<(PathBuf, u32), String> {
    let mut found = Vec::new();
    for candidate in candidates.into_iter().filter(|p| p.is_file()) {
        match version_of(&candidate) {
            Some(v) if v >= MIN_VERSION => return Ok((candidate, v)),
            Some(v) => found.push(format!("{} is version {v}", candidate.display())),
            None => found.push(format!("{} did not tell its version", candidate.display())),
        }
    }
    if found.is_empty() {
        Err("wasm-opt is not installed".into())
    } else {
        Err(format!(
            "{} (need binaryen {MIN_VERSION} or newer)",
            found.join("; ")
        ))
    }
}

fn version_of(program: &Path) -> Option<u32> {
    let text = command::capture(Command::new(program).arg("--version")).ok()?;
    parse_version(&text)
}

/// `"wasm-opt version 132 (version_132)"` -> 132.
fn parse_version(text: &str) -> Option<u32> {
    let rest = text.trim().strip_prefix("wasm-opt version ")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Optimises each wasm file in place for size. Files with the same bytes are optimised once.
/// Without a usable wasm-opt it prints why and leaves the files as they are (`Ok(false)`).
pub fn optimise_in_place(files: &[PathBuf]) -> Result<bool> {
    let (program, version) = match find() {
        Ok(found) => found,
        Err(why) => {
            println!(
                "build: the wasm is NOT size-optimised: {why}; `cargo xtask setup` installs \
                 binaryen {BINARYEN_VERSION}"
            );
            return Ok(false);
        }
    };
    let mut done: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for file in files {
        let before =
            std::fs::read(file).with_context(|| format!("wasm-opt: reading {}", file.display()))?;
        if let Some((_, after)) = done.iter().find(|(input, _)| *input == before) {
            std::fs::write(file, after)
                .with_context(|| format!("wasm-opt: writing {}", file.display()))?;
            continue;
        }
        let out = file.with_extension("opt.wasm");
        let mut cmd = Command::new(&program);
        cmd.args(PASSES)
            .args(FEATURES)
            .arg(file)
            .arg("-o")
            .arg(&out);
        command::run(&mut cmd)
            .with_context(|| format!("build: wasm-opt {version} on {}", file.display()))?;
        let after = std::fs::read(&out)?;
        std::fs::rename(&out, file)?;
        println!(
            "build: wasm-opt {version}: {} -> {} bytes ({})",
            before.len(),
            after.len(),
            file.display()
        );
        done.push((before, after));
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_from_wasm_opt_output() {
        assert_eq!(
            parse_version("wasm-opt version 132 (version_132)\n"),
            Some(132)
        );
        assert_eq!(parse_version("wasm-opt version 108"), Some(108));
        assert_eq!(parse_version("wasm-opt version x"), None);
        assert_eq!(parse_version("binaryen 132"), None);
    }

    #[test]
    fn setup_installs_the_pinned_npm_package_into_the_install_dir() {
        let command = install_command();
        assert_eq!(command[..2], ["npm", "install"]);
        assert!(command.contains(&format!("binaryen@{BINARYEN_VERSION}")));
        let prefix = command.iter().position(|w| w == "--prefix").unwrap();
        assert_eq!(PathBuf::from(&command[prefix + 1]), install_dir());
        assert!(install_dir().ends_with(format!("binaryen-{BINARYEN_VERSION}")));
    }

    /// A fake `wasm-opt` in `dir` that reports `version`.
    fn fake_wasm_opt(dir: &Path, name: &str, version: &str) -> PathBuf {
        let fake = dir.join(name);
        std::fs::write(
            &fake,
            format!("#!/bin/sh\necho 'wasm-opt version {version}'\n"),
        )
        .unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        fake
    }

    #[test]
    fn an_old_wasm_opt_is_skipped_for_a_new_enough_one() {
        let dir = xtask::webdriver::ScratchDir::new("old-wasm-opt").unwrap();
        // binaryen 108 (Debian bookworm) breaks wasm-bindgen's externref table export.
        let old = fake_wasm_opt(dir.path(), "old", "108 (version_108)");
        let new = fake_wasm_opt(dir.path(), "new", "132 (version_132)");
        let missing = dir.path().join("missing");
        let why = pick([missing.clone(), old.clone()]).unwrap_err();
        assert!(why.contains("is version 108"), "{why}");
        assert!(why.contains("need binaryen 132"), "{why}");
        assert_eq!(
            pick([missing.clone()]).unwrap_err(),
            "wasm-opt is not installed"
        );
        assert_eq!(pick([missing, old, new.clone()]).unwrap(), (new, 132));
    }
}
