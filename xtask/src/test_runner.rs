//! `cargo xtask test`: the README's test command and what CI runs.
//!
//! In order, and every step is reported (a failed step never hides the later ones):
//! setup; `cargo fmt --check`; clippy for the host and for wasm32; host tests; the
//! wasm-bindgen-test suites `sw` (service-worker mode) and `page` (page mode) in each engine,
//! against a local CDN whose origin the wasm build reads from `BA_TEST_CDN`; `cargo xtask build`;
//! the end-to-end WebDriver tests; the demo's headless flow (`xtask/tests/demo.rs`). Then a table
//! (suite × engine) and `test: N passed, M failed`.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use xtask::cdn::{Server, ServerConfig};
use xtask::webdriver::{Engine, ScratchDir};

use crate::build::{self, Profile};
use crate::command;
use crate::setup::{self, Mode};
use crate::summary::{self, Row};

/// The wasm-bindgen-test suites: one test binary per mode (see DESIGN.md).
const WASM_SUITES: [&str; 2] = ["sw", "page"];

/// Where the test CDN listens if the port is free. A stable origin keeps `BA_TEST_CDN` (read at
/// compile time) unchanged between runs, so the wasm test binaries are not rebuilt every time.
const PREFERRED_CDN_PORT: u16 = 8790;

/// Seconds wasm-bindgen-test-runner allows a whole test binary (its default is 20).
const WASM_TEST_TIMEOUT_SECS: &str = "360";

/// Flags of `cargo xtask test`.
pub struct Options {
    /// Engines to run the browser suites in (default: all).
    pub engines: Vec<Engine>,
    /// Only check the tools are present (`--skip-install`).
    pub skip_install: bool,
    /// Skip fmt and clippy (`--no-lint`), for quick iteration.
    pub no_lint: bool,
    /// `--filter NAME`: only the wasm-bindgen-test suites, only their tests whose names
    /// contain NAME (for quick iteration; CI runs everything).
    pub filter: Option<String>,
}

/// Runs everything and returns whether it all passed (the table is printed either way).
pub fn run(options: &Options) -> Result<bool> {
    let started = Instant::now();
    let mode = if options.skip_install {
        Mode::CheckOnly
    } else {
        Mode::Install
    };
    setup::run(mode)?;

    let mut rows = Vec::new();
    if let Some(filter) = &options.filter {
        rows.extend(wasm_suites(&options.engines, Some(filter))?);
        return Ok(report(&rows, started));
    }
    if !options.no_lint {
        rows.push(check_formatting());
        rows.push(check(
            "clippy",
            "host",
            cargo(&[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ]),
        ));
        rows.push(check(
            "clippy",
            "wasm32",
            cargo(&[
                "clippy",
                "-p",
                "background-assets",
                "--target",
                "wasm32-unknown-unknown",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ]),
        ));
    }
    rows.push(tests(
        "host",
        "host",
        cargo(&["test", "--workspace", "--no-fail-fast"]),
    ));

    rows.extend(wasm_suites(&options.engines, None)?);

    let build_row = timed("build", "wasm32", || build::run(Profile::Release));
    let built = !build_row.failed();
    rows.push(build_row);
    if built {
        // The package's .d.ts declares the JS face, and its JS glue parses.
        rows.push(tests(
            "dts",
            "host",
            cargo(&["test", "-p", "xtask", "--test", "dts", "--", "--ignored"]),
        ));
    }
    for &engine in &options.engines {
        if built {
            rows.push(tests(
                "e2e",
                engine.name(),
                cargo(&[
                    "test",
                    "-p",
                    "xtask",
                    "--test",
                    "e2e",
                    "--",
                    "--ignored",
                    "--test-threads=1",
                    engine.name(),
                ]),
            ));
            // The demo's headless flow (small packs) and its export.
            rows.push(tests(
                "demo",
                engine.name(),
                cargo(&[
                    "test",
                    "-p",
                    "xtask",
                    "--test",
                    "demo",
                    "--",
                    "--ignored",
                    "--test-threads=1",
                    engine.name(),
                ]),
            ));
        } else {
            for suite in ["e2e", "demo"] {
                rows.push(Row::check(
                    suite,
                    engine.name(),
                    Some("not run: build failed".into()),
                    Duration::ZERO,
                ));
            }
        }
    }

    if options.engines.contains(&Engine::Chromium) {
        rows.push(tests(
            "faults",
            "chromium",
            cargo(&[
                "test",
                "-p",
                "xtask",
                "--test",
                "faults",
                "--",
                "--ignored",
                "--test-threads=1",
            ]),
        ));
    }
    for &engine in &options.engines {
        rows.push(crate::chaos::test_row(engine));
    }

    Ok(report(&rows, started))
}

/// Every wasm-bindgen-test suite in each engine, against one local CDN (only the tests whose
/// names contain `filter`, if given).
fn wasm_suites(engines: &[Engine], filter: Option<&str>) -> Result<Vec<Row>> {
    let cdn = start_test_cdn()?;
    println!("test: local CDN at {}", cdn.origin());
    let mut rows = Vec::new();
    for suite in WASM_SUITES {
        for &engine in engines {
            rows.push(run_wasm_suite(suite, engine, &cdn.origin(), filter));
        }
    }
    Ok(rows)
}

/// Prints the table (suite × engine) and the totals; whether every row passed.
fn report(rows: &[Row], started: Instant) -> bool {
    println!();
    print!("{}", summary::render(rows, started.elapsed()));
    rows.iter().all(|r| !r.failed())
}

fn cargo(args: &[&str]) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.args(args);
    cmd
}

/// Runs a check step (no test counts): it fails if the command fails.
fn check(suite: &str, engine: &str, mut cmd: Command) -> Row {
    timed(suite, engine, || command::run(&mut cmd))
}

/// `cargo fmt --all -- --check`; a failure names the files rustfmt would change.
fn check_formatting() -> Row {
    let started = Instant::now();
    let failure = match command::run_and_record(&mut cargo(&["fmt", "--all", "--", "--check"])) {
        Ok(t) if t.status.success() => None,
        Ok(t) => {
            let root = format!("{}/", xtask::workspace::root().display());
            let mut files: Vec<&str> = t
                .text
                .lines()
                .filter_map(|line| line.strip_prefix("Diff in "))
                .map(|rest| rest.split(':').next().unwrap_or(rest))
                .map(|path| path.strip_prefix(root.as_str()).unwrap_or(path))
                .collect();
            files.dedup();
            Some(if files.is_empty() {
                format!("cargo fmt --check: {}", t.status)
            } else {
                format!("not formatted: {}", files.join(", "))
            })
        }
        Err(e) => Some(format!("{e:#}")),
    };
    Row::check("fmt", "host", failure, started.elapsed())
}

fn timed(suite: &str, engine: &str, step: impl FnOnce() -> Result<()>) -> Row {
    let started = Instant::now();
    let failure = step().err().map(|e| format!("{e:#}"));
    Row::check(suite, engine, failure, started.elapsed())
}

/// Runs a step that prints libtest results and turns its output into a row.
fn tests(suite: &str, engine: &str, mut cmd: Command) -> Row {
    let started = Instant::now();
    match command::run_and_record(&mut cmd) {
        Ok(t) => Row::tests(
            suite,
            engine,
            &t.text,
            t.status.success(),
            started.elapsed(),
        ),
        Err(e) => Row::check(suite, engine, Some(format!("{e:#}")), started.elapsed()),
    }
}

fn start_test_cdn() -> Result<Server> {
    let config = |port| ServerConfig {
        port,
        ..ServerConfig::default()
    };
    Server::start(config(PREFERRED_CDN_PORT))
        .or_else(|_| Server::start(config(0)))
        .context("starting the test CDN")
}

/// `cargo test --target wasm32-unknown-unknown --test <suite>` in one engine's headless browser.
fn run_wasm_suite(suite: &str, engine: Engine, cdn_origin: &str, filter: Option<&str>) -> Row {
    let started = Instant::now();
    let prepared = (|| -> Result<(Command, ScratchDir)> {
        let driver = engine.driver_path().with_context(|| {
            format!(
                "{} not found (run `cargo xtask setup`)",
                engine.driver_program()
            )
        })?;
        // A fresh profile per run; its webdriver.json is how wasm-bindgen-test-runner takes
        // capabilities in headless mode (WASM_BINDGEN_TEST_WEBDRIVER_JSON).
        let scratch = ScratchDir::new(&format!("{suite}-{}", engine.name()))?;
        let profile = scratch.path().join("profile");
        std::fs::create_dir_all(&profile)?;
        let caps = suite_capabilities(engine, &profile);
        let caps_path = scratch.path().join("webdriver.json");
        std::fs::write(&caps_path, serde_json::to_string_pretty(&caps)?)
            .with_context(|| format!("writing {}", caps_path.display()))?;
        let mut cmd = cargo(&[
            "test",
            "--target",
            "wasm32-unknown-unknown",
            "--test",
            suite,
        ]);
        if let Some(filter) = filter {
            cmd.args(["--", filter]);
        }
        for other in Engine::ALL {
            cmd.env_remove(other.driver_env_var());
            cmd.env_remove(format!("{}_REMOTE", other.driver_env_var()));
        }
        cmd.env("BA_TEST_CDN", cdn_origin)
            .env(engine.driver_env_var(), driver)
            .env("WASM_BINDGEN_TEST_WEBDRIVER_JSON", &caps_path)
            .env("WASM_BINDGEN_TEST_TIMEOUT", WASM_TEST_TIMEOUT_SECS)
            .env("WASM_BINDGEN_TEST_DRIVER_TIMEOUT", "30");
        Ok((cmd, scratch))
    })();
    match prepared {
        Ok((cmd, _scratch)) => {
            let row = tests(suite, engine.name(), cmd);
            Row {
                time: started.elapsed(),
                ..row
            }
        }
        Err(e) => Row::check(
            suite,
            engine.name(),
            Some(format!("{e:#}")),
            started.elapsed(),
        ),
    }
}

/// Firefox ends a service worker `dom.serviceWorkers.idle_extended_timeout` (30 s) after the
/// event that woke it, even while that event's `waitUntil` promise is pending.
/// wasm-bindgen-test-runner runs a whole `run_in_service_worker` suite inside one such event, so
/// without these prefs Firefox kills the worker ~30 s into the suite and the runner waits, with
/// nothing more reported, until `WASM_BINDGEN_TEST_TIMEOUT`.
const FIREFOX_SUITE_WORKER_PREFS: [&str; 2] = [
    "dom.serviceWorkers.idle_timeout",
    "dom.serviceWorkers.idle_extended_timeout",
];

/// [`Engine::capabilities`] for a wasm-bindgen-test suite: in Firefox the service worker may
/// live as long as the suite's budget ([`FIREFOX_SUITE_WORKER_PREFS`]).
fn suite_capabilities(
    engine: Engine,
    profile: &std::path::Path,
) -> serde_json::Map<String, serde_json::Value> {
    let mut caps = engine.capabilities(profile);
    let budget_ms: u64 = WASM_TEST_TIMEOUT_SECS.parse::<u64>().unwrap_or(360) * 1000;
    if let Some(prefs) = caps
        .get_mut("moz:firefoxOptions")
        .and_then(|options| options.get_mut("prefs"))
        .and_then(|prefs| prefs.as_object_mut())
    {
        for pref in FIREFOX_SUITE_WORKER_PREFS {
            prefs.insert(pref.into(), budget_ms.into());
        }
    }
    caps
}

#[cfg(test)]
mod suite_capability_tests {
    use super::*;

    #[test]
    fn firefox_suites_keep_their_service_worker_for_the_whole_budget() {
        let caps = suite_capabilities(Engine::Firefox, std::path::Path::new("/tmp/p"));
        let prefs = &caps["moz:firefoxOptions"]["prefs"];
        for pref in FIREFOX_SUITE_WORKER_PREFS {
            assert_eq!(prefs[pref], 360_000, "{pref}");
        }
        assert_eq!(
            prefs["app.update.enabled"], false,
            "the engine's own prefs are kept"
        );
        let chromium = suite_capabilities(Engine::Chromium, std::path::Path::new("/tmp/p"));
        assert_eq!(
            chromium,
            Engine::Chromium.capabilities(std::path::Path::new("/tmp/p"))
        );
    }
}
