//! `cargo xtask setup`: install what is missing, and only that.
//!
//! Checks the wasm32 target, wasm-bindgen-cli at exactly the version in `Cargo.lock`, Chromium +
//! chromedriver + Firefox ESR (apt) and geckodriver (crates.io). As root it installs what is
//! missing; otherwise it prints the exact commands and fails.
//!
//! binaryen's `wasm-opt` (npm, into the user's cache: no root needed) is optional: the release
//! build is smaller with it and still works without it, so a failed install only warns.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};
use xtask::webdriver::{find_program, Engine};

use crate::command;

/// Whether setup may install or only checks.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Install what is missing (needs root).
    Install,
    /// Only check; fail naming the commands if something is missing (`--skip-install`).
    CheckOnly,
}

/// One missing piece and the commands that install it.
struct Missing {
    what: String,
    commands: Vec<Vec<String>>,
}

/// Installs binaryen's wasm-opt if it is missing; a failure only warns (the build works without
/// it, unoptimised).
fn install_wasm_opt(mode: Mode) {
    let why = match crate::wasm_opt::find() {
        Ok(_) => return,
        Err(why) => why,
    };
    let command = crate::wasm_opt::install_command();
    println!("setup: {why}: the release wasm would not be size-optimised");
    if mode == Mode::CheckOnly {
        println!("setup: to install it, run:\n    {}", shell_line(&command));
        return;
    }
    let mut cmd = Command::new(&command[0]);
    cmd.args(&command[1..]);
    let result = command::run(&mut cmd)
        .map_err(|e| e.to_string())
        .and_then(|()| crate::wasm_opt::find().map(|_| ()));
    match result {
        Ok(()) => println!(
            "setup: installed binaryen {} (wasm-opt)",
            crate::wasm_opt::BINARYEN_VERSION
        ),
        Err(e) => println!(
            "setup: WARNING: binaryen's wasm-opt could not be installed ({e}): the release \
             wasm stays unoptimised"
        ),
    }
}

/// Checks everything the build and the tests need and installs what is missing.
pub fn run(mode: Mode) -> Result<()> {
    install_wasm_opt(mode);
    let missing = find_missing()?;
    if missing.is_empty() {
        let pinned = locked_version(&xtask::workspace::root().join("Cargo.lock"), "wasm-bindgen")?;
        let wasm_opt = match crate::wasm_opt::find() {
            Ok((_, version)) => format!(", wasm-opt {version}"),
            Err(_) => String::new(),
        };
        println!(
            "setup: nothing to install (present: wasm32 target, wasm-bindgen-cli {pinned}, \
             chromium, chromedriver, firefox, geckodriver{wasm_opt})"
        );
        return Ok(());
    }
    for piece in &missing {
        println!("setup: missing {}", piece.what);
    }
    let commands: Vec<&Vec<String>> = missing.iter().flat_map(|m| &m.commands).collect();
    if mode == Mode::CheckOnly || !is_root()? {
        println!("setup: run these commands (as root), then try again:");
        for c in &commands {
            println!("    {}", shell_line(c));
        }
        if mode == Mode::CheckOnly {
            bail!(
                "setup: {} missing and --skip-install was given",
                names(&missing)
            );
        }
        bail!("setup: {} missing and not running as root", names(&missing));
    }
    for c in commands {
        let mut cmd = Command::new(&c[0]);
        cmd.args(&c[1..]);
        if c[0] == "apt-get" {
            cmd.env("DEBIAN_FRONTEND", "noninteractive");
        }
        command::run(&mut cmd).with_context(|| format!("setup: installing {}", names(&missing)))?;
    }
    let still = find_missing()?;
    if !still.is_empty() {
        bail!("setup: still missing after installing: {}", names(&still));
    }
    println!("setup: installed {}", names(&missing));
    Ok(())
}

fn names(missing: &[Missing]) -> String {
    missing
        .iter()
        .map(|m| m.what.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn shell_line(words: &[String]) -> String {
    let line = words.join(" ");
    if words[0] == "apt-get" {
        format!("DEBIAN_FRONTEND=noninteractive {line}")
    } else {
        line
    }
}

fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

fn find_missing() -> Result<Vec<Missing>> {
    let mut missing = Vec::new();
    let browsers_missing: Vec<&str> = [
        ("chromium", Engine::Chromium.browser_path().is_some()),
        ("chromedriver", Engine::Chromium.driver_path().is_some()),
        ("firefox", Engine::Firefox.browser_path().is_some()),
    ]
    .into_iter()
    .filter(|(_, present)| !present)
    .map(|(name, _)| name)
    .collect();
    if !browsers_missing.is_empty() {
        missing.push(Missing {
            what: browsers_missing.join(" + "),
            commands: vec![
                argv(&["apt-get", "update"]),
                argv(&[
                    "apt-get",
                    "install",
                    "-y",
                    "--no-install-recommends",
                    "chromium",
                    "chromium-driver",
                    "firefox-esr",
                ]),
            ],
        });
    }
    if !wasm32_target_installed()? {
        missing.push(Missing {
            what: "rust target wasm32-unknown-unknown".into(),
            commands: vec![argv(&["rustup", "target", "add", "wasm32-unknown-unknown"])],
        });
    }
    let pinned = locked_version(&xtask::workspace::root().join("Cargo.lock"), "wasm-bindgen")?;
    let installed = installed_wasm_bindgen_version();
    if installed.as_deref() != Some(pinned.as_str())
        || find_program("wasm-bindgen-test-runner").is_none()
    {
        let found = installed.map_or("not installed".to_string(), |v| format!("{v} installed"));
        missing.push(Missing {
            what: format!("wasm-bindgen-cli {pinned} ({found})"),
            commands: vec![argv(&[
                "cargo",
                "install",
                "wasm-bindgen-cli",
                "--version",
                &format!("={pinned}"),
            ])],
        });
    }
    if Engine::Firefox.driver_path().is_none() {
        missing.push(Missing {
            what: "geckodriver".into(),
            commands: vec![argv(&["cargo", "install", "geckodriver"])],
        });
    }
    Ok(missing)
}

fn is_root() -> Result<bool> {
    let uid = command::capture(Command::new("id").arg("-u")).context("asking `id -u`")?;
    Ok(uid.trim() == "0")
}

fn wasm32_target_installed() -> Result<bool> {
    let sysroot = command::capture(Command::new("rustc").args(["--print", "sysroot"]))
        .context("asking rustc for its sysroot")?;
    Ok(Path::new(sysroot.trim())
        .join("lib/rustlib/wasm32-unknown-unknown/lib")
        .is_dir())
}

fn installed_wasm_bindgen_version() -> Option<String> {
    let program = find_program("wasm-bindgen")?;
    let text = command::capture(Command::new(program).arg("--version")).ok()?;
    // "wasm-bindgen 0.2.130" (possibly followed by a commit hash)
    text.split_whitespace().nth(1).map(str::to_string)
}

/// The version of `package` recorded in a `Cargo.lock`.
pub fn locked_version(lockfile: &Path, package: &str) -> Result<String> {
    let text = std::fs::read_to_string(lockfile)
        .with_context(|| format!("reading {}", lockfile.display()))?;
    version_in_lockfile(&text, package)
        .with_context(|| format!("{} has no package {package:?}", lockfile.display()))
}

fn version_in_lockfile(text: &str, package: &str) -> Option<String> {
    let wanted = format!("name = \"{package}\"");
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.trim() == wanted {
            let version = lines.next()?.trim();
            let version = version.strip_prefix("version = \"")?.strip_suffix('"')?;
            return Some(version.to_string());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCK: &str = r#"
[[package]]
name = "wasm-bindgen-futures"
version = "0.4.57"

[[package]]
name = "wasm-bindgen"
version = "0.2.130"
source = "registry+https://github.com/rust-lang/crates.io-index"
"#;

    #[test]
    fn lockfile_version_matches_the_exact_package_name() {
        assert_eq!(
            version_in_lockfile(LOCK, "wasm-bindgen").as_deref(),
            Some("0.2.130")
        );
        assert_eq!(
            version_in_lockfile(LOCK, "wasm-bindgen-futures").as_deref(),
            Some("0.4.57")
        );
        assert_eq!(version_in_lockfile(LOCK, "wasm"), None);
    }

    #[test]
    fn the_workspace_lockfile_pins_wasm_bindgen() {
        let v =
            locked_version(&xtask::workspace::root().join("Cargo.lock"), "wasm-bindgen").unwrap();
        assert!(v.starts_with("0.2."), "{v}");
    }
}
