//! `cargo xtask build`: the wasm package in `pkg/`, what a JS user installs.
//!
//! ```text
//! pkg/
//!   background_assets.js, .d.ts, _bg.wasm   ES module (--target web): pages and bundlers
//!   worker/background_assets.js, _bg.wasm  classic script (--target no-modules): service
//!                                          workers, via importScripts (no import() there)
//!   worker/extension.js, extension.js       the service worker entry (from js/, with its
//!   worker/extension.d.ts, extension.d.ts   types): importScripts it after the glue, then
//!                                          BackgroundAssets.extension()
//!   worker/background_assets_worker.js      the glue and the entry in one classic script: one
//!                                          importScripts instead of two (a faster first start)
//!   package.json
//! ```
//!
//! A release build runs binaryen's `wasm-opt -Oz` on the wasm after wasm-bindgen (see
//! [`crate::wasm_opt`]); without it the package is built all the same and the build says so.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use serde_json::{json, Value};
use xtask::workspace;

use crate::command;

/// The library crate's name and the stem of the files wasm-bindgen writes.
const CRATE: &str = "background-assets";
const STEM: &str = "background_assets";

/// Which cargo profile the wasm is built with.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// `--release` (size-optimised, LTO): what `cargo xtask build` ships.
    Release,
    /// The dev profile (`--dev`): faster to build, with debug info.
    Dev,
}

/// Builds the wasm and writes `pkg/` (both JS flavours and package.json), then prints sizes.
pub fn run(profile: Profile) -> Result<()> {
    let mut cargo = Command::new("cargo");
    cargo.args([
        "build",
        "--target",
        "wasm32-unknown-unknown",
        "--lib",
        "-p",
        CRATE,
    ]);
    if profile == Profile::Release {
        cargo.arg("--release");
    }
    command::run(&mut cargo).context("build: compiling the wasm library")?;

    let profile_dir = match profile {
        Profile::Release => "release",
        Profile::Dev => "debug",
    };
    let wasm = workspace::target_dir()
        .join("wasm32-unknown-unknown")
        .join(profile_dir)
        .join(format!("{STEM}.wasm"));
    let pkg = workspace::pkg_dir();
    if pkg.exists() {
        std::fs::remove_dir_all(&pkg)
            .with_context(|| format!("build: clearing {}", pkg.display()))?;
    }
    bindgen(&wasm, "web", &pkg, profile)?;
    bindgen(&wasm, "no-modules", &pkg.join("worker"), profile)?;
    if profile == Profile::Release {
        let bg = format!("{STEM}_bg.wasm");
        crate::wasm_opt::optimise_in_place(&[pkg.join(&bg), pkg.join("worker").join(&bg)])?;
    }
    pin_worker_wasm(&pkg)?;
    copy_worker_entry(&pkg)?;
    write_worker_bundle(&pkg)?;
    write_package_json(&pkg)?;

    println!("build: {}", pkg.display());
    for file in files_under(&pkg)? {
        let size = std::fs::metadata(pkg.join(&file))?.len();
        println!("  {:>10}  {}", human_size(size), file);
    }
    Ok(())
}

/// Builds `crate_name`'s library for wasm32 (`--release` when `release`, else the dev profile)
/// and runs wasm-bindgen on it for pages (`web/`, an ES module) and for service workers
/// (`worker/`, a classic script) into `<target>/<what>-pkg`, which it returns. `stem` is the
/// wasm file's stem (the crate name with `_`); `what` names the tool in errors (`chaos`,
/// `bench`).
pub fn page_and_worker_package(
    crate_name: &str,
    stem: &str,
    release: bool,
    what: &str,
) -> Result<PathBuf> {
    let mut cargo = Command::new("cargo");
    cargo.args(["build", "--target", "wasm32-unknown-unknown"]);
    if release {
        cargo.arg("--release");
    }
    command::run(cargo.args(["--lib", "-p", crate_name]))
        .with_context(|| format!("{what}: compiling the {what} crate"))?;
    let wasm = workspace::target_dir()
        .join("wasm32-unknown-unknown")
        .join(if release { "release" } else { "debug" })
        .join(format!("{stem}.wasm"));
    let out = workspace::target_dir().join(format!("{what}-pkg"));
    if out.exists() {
        std::fs::remove_dir_all(&out).with_context(|| format!("clearing {}", out.display()))?;
    }
    for (target, dir) in [("web", "web"), ("no-modules", "worker")] {
        command::run(
            Command::new("wasm-bindgen")
                .arg("--target")
                .arg(target)
                .arg("--out-dir")
                .arg(out.join(dir))
                .arg("--out-name")
                .arg(stem)
                .arg(&wasm),
        )
        .with_context(|| format!("{what}: wasm-bindgen --target {target}"))?;
    }
    Ok(out)
}

fn bindgen(wasm: &Path, target: &str, out_dir: &Path, profile: Profile) -> Result<()> {
    let mut cmd = Command::new("wasm-bindgen");
    cmd.arg("--target")
        .arg(target)
        .arg("--out-dir")
        .arg(out_dir)
        .arg("--out-name")
        .arg(STEM);
    if profile == Profile::Dev {
        cmd.arg("--debug").arg("--keep-debug");
    } else {
        // Function names (a third of the file) and the producers note are not needed to run:
        // the release package ships without them.
        cmd.arg("--remove-name-section")
            .arg("--remove-producers-section");
    }
    cmd.arg(wasm);
    command::run(&mut cmd).with_context(|| format!("build: wasm-bindgen --target {target}"))
}

/// Copies every file of `js/` (the service worker entry) into `pkg/worker/` (next to the
/// classic-script glue it needs) and `pkg/`.
fn copy_worker_entry(pkg: &Path) -> Result<()> {
    let js = workspace::root().join("js");
    for file in files_under(&js)? {
        for dir in [pkg.join("worker"), pkg.to_path_buf()] {
            let to = dir.join(&file);
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::copy(js.join(&file), &to)
                .with_context(|| format!("build: copying js/{file} to {}", to.display()))?;
        }
    }
    Ok(())
}

/// Appends to the worker glue (`pkg/worker/background_assets.js`, and so to the bundle) the
/// SHA-256 of the wasm it was built with, as `wasm_bindgen.wasmSha256`. The extension loads only
/// a wasm with that digest and keeps it in Cache Storage under it, so a worker started again after
/// a deploy runs its own wasm, not the server's newer one its glue does not match. And since the
/// glue's bytes now change with the wasm's, a changed wasm alone updates the worker (browsers
/// compare imported scripts byte for byte when they check for an update).
fn pin_worker_wasm(pkg: &Path) -> Result<()> {
    use sha2::{Digest, Sha256};
    let worker = pkg.join("worker");
    let wasm = std::fs::read(worker.join(format!("{STEM}_bg.wasm")))
        .context("build: reading the worker's wasm")?;
    let glue = worker.join(format!("{STEM}.js"));
    let mut text = std::fs::read_to_string(&glue).context("build: reading the worker glue")?;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&wasm_pin(&xtask::cdn::hex(&Sha256::digest(&wasm))));
    std::fs::write(&glue, text).with_context(|| format!("build: writing {}", glue.display()))
}

/// The line [`pin_worker_wasm`] appends to the worker glue, for the SHA-256 `hex`.
fn wasm_pin(hex: &str) -> String {
    format!(
        "// The SHA-256 of the wasm this glue was built with (cargo xtask build): the extension \
         loads only that wasm.\nwasm_bindgen.wasmSha256 = '{hex}';\n"
    )
}

/// The worker's one script: the classic-script glue, then the service worker entry.
const WORKER_BUNDLE: &str = "background_assets_worker.js";

/// Writes `pkg/worker/background_assets_worker.js`: the glue and `extension.js` one after the
/// other. Each `importScripts` during a worker's install is a fetch and a store of its own in the
/// browser's script cache. One file instead of two, with the early wasm load in `extension.js`,
/// took 6–9 ms off the bench's cold start (A/B in one sitting).
fn write_worker_bundle(pkg: &Path) -> Result<()> {
    let worker = pkg.join("worker");
    let mut text = std::fs::read_to_string(worker.join(format!("{STEM}.js")))
        .context("build: reading the worker glue")?;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(
        &std::fs::read_to_string(worker.join("extension.js"))
            .context("build: reading the worker entry")?,
    );
    let path = worker.join(WORKER_BUNDLE);
    std::fs::write(&path, text).with_context(|| format!("build: writing {}", path.display()))
}

fn write_package_json(pkg: &Path) -> Result<()> {
    let meta = crate_metadata()?;
    let field = |name: &str| meta.get(name).cloned().unwrap_or(Value::Null);
    let package = json!({
        "name": CRATE,
        "version": field("version"),
        "description": field("description"),
        "license": field("license"),
        "repository": field("repository"),
        "keywords": field("keywords"),
        "type": "module",
        "module": format!("{STEM}.js"),
        "main": format!("{STEM}.js"),
        "types": format!("{STEM}.d.ts"),
        "exports": {
            ".": { "types": format!("./{STEM}.d.ts"), "default": format!("./{STEM}.js") },
            "./worker": format!("./worker/{STEM}.js"),
            "./worker/extension.js": "./worker/extension.js",
            "./worker/bundle": format!("./worker/{WORKER_BUNDLE}"),
            "./package.json": "./package.json",
        },
        "files": files_under(pkg)?,
        "sideEffects": [
            format!("./worker/{STEM}.js"),
            "./worker/extension.js",
            "./extension.js",
            format!("./worker/{WORKER_BUNDLE}"),
        ],
    });
    let path = pkg.join("package.json");
    let text = serde_json::to_string_pretty(&package)? + "\n";
    std::fs::write(&path, text).with_context(|| format!("build: writing {}", path.display()))
}

/// The root crate's entry in `cargo metadata` (version, description, license, ...).
fn crate_metadata() -> Result<Value> {
    let text = command::capture(Command::new("cargo").args([
        "metadata",
        "--no-deps",
        "--format-version",
        "1",
    ]))?;
    let meta: Value = serde_json::from_str(&text).context("parsing cargo metadata")?;
    meta["packages"]
        .as_array()
        .and_then(|packages| packages.iter().find(|p| p["name"] == CRATE))
        .cloned()
        .with_context(|| format!("cargo metadata lists no package {CRATE}"))
}

/// Every file under `dir`, as sorted `/`-separated paths relative to it.
fn files_under(dir: &Path) -> Result<Vec<String>> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
        for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
            let path: PathBuf = entry?.path();
            if path.is_dir() {
                walk(base, &path, out)?;
            } else {
                let rel = path.strip_prefix(base).unwrap_or(&path);
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    walk(dir, dir, &mut files)?;
    files.sort();
    Ok(files)
}

/// `1234567` -> `"1.2 MiB"`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_shown_in_binary_units() {
        assert_eq!(human_size(999), "999 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(3 * 1024 * 1024), "3.0 MiB");
    }

    #[test]
    fn the_worker_entry_is_copied_next_to_both_glues() {
        let pkg = xtask::webdriver::ScratchDir::new("pkg-copy").unwrap();
        copy_worker_entry(pkg.path()).unwrap();
        let source = std::fs::read(workspace::root().join("js/extension.js")).unwrap();
        for copy in ["worker/extension.js", "extension.js"] {
            assert_eq!(
                std::fs::read(pkg.path().join(copy)).unwrap(),
                source,
                "{copy}"
            );
        }
    }

    #[test]
    fn the_worker_bundle_is_the_glue_then_the_entry() {
        let pkg = xtask::webdriver::ScratchDir::new("pkg-bundle").unwrap();
        std::fs::create_dir(pkg.path().join("worker")).unwrap();
        std::fs::write(
            pkg.path().join(format!("worker/{STEM}.js")),
            "let wasm_bindgen = 1;",
        )
        .unwrap();
        copy_worker_entry(pkg.path()).unwrap();
        write_worker_bundle(pkg.path()).unwrap();
        let bundle =
            std::fs::read_to_string(pkg.path().join("worker").join(WORKER_BUNDLE)).unwrap();
        let entry = std::fs::read_to_string(workspace::root().join("js/extension.js")).unwrap();
        assert_eq!(bundle, format!("let wasm_bindgen = 1;\n{entry}"));
    }

    #[test]
    fn files_are_listed_recursively_and_sorted() {
        let dir = xtask::webdriver::ScratchDir::new("files-under").unwrap();
        std::fs::create_dir(dir.path().join("worker")).unwrap();
        std::fs::write(dir.path().join("worker/b.js"), "").unwrap();
        std::fs::write(dir.path().join("a.js"), "").unwrap();
        assert_eq!(files_under(dir.path()).unwrap(), ["a.js", "worker/b.js"]);
    }
}
