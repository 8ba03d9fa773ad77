//! `cargo xtask`: setup, build, demo and test for background-assets.
//!
//! ```text
//! cargo xtask setup                      install what is missing (wasm32, wasm-bindgen-cli, browsers, drivers)
//! cargo xtask build [--dev]              the wasm package in pkg/
//! cargo xtask demo [--port N] [--cdn-port N] [--dev] [--small] [--cdn URL] [--no-build]
//! cargo xtask demo --headless [--engine chromium|firefox] [--small] [--screenshot PATH] [--report-json PATH]
//! cargo xtask demo --export DIR [--small]
//! cargo xtask test [--engine chromium|firefox] [--skip-install] [--no-lint] [--filter NAME]
//! cargo xtask chaos --runs N --seed S [--engine chromium|firefox]
//! cargo xtask bench [--quick] [--engine chromium|firefox] [--json PATH] [--size-mib N] [--memory-mib N] [--runs N]
//! ```

mod bench;
mod build;
mod chaos;
mod command;
mod demo;
mod demo_headless;
mod demo_packs;
mod setup;
mod summary;
mod test_runner;
mod wasm_opt;

use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use xtask::webdriver::{cargo_bin_dir, Engine};

const USAGE: &str = "\
usage: cargo xtask <command> [flags]
  setup                         install what is missing and only that (root; else prints commands)
  build [--dev]                 build the wasm package into pkg/ (ES module, worker script, package.json)
  demo [--port N] [--cdn-port N] [--dev] [--small] [--cdn URL] [--no-build]
                                build, serve the demo PWA (default :8787) and the CDN (default :8788)
  demo --headless [--engine chromium|firefox] [--small] [--screenshot PATH] [--report-json PATH]
                                drive the demo in a headless browser: install, essential pack, launch,
                                prefetch, offline reload, video seek; report; non-zero if a step failed
  demo --export DIR [--small]   write the packs' files and a pkg.json for them into DIR; serve DIR
                                anywhere and run `demo --cdn <its URL>` (--small: BA_DEMO_SMALL=1 too)
  test [--engine chromium|firefox] [--skip-install] [--no-lint]
                                setup, fmt, clippy, host tests, wasm suites (sw, page) per engine,
                                build, end-to-end tests; prints a summary; non-zero on any failure
  bench [--quick] [--engine chromium|firefox] [--json PATH] [--size-mib N] [--memory-mib N] [--runs N]
                                measure throughput, small files, memory, resume waste, wasm size and
                                worker start against browser baselines; prints a table, rewrites
                                BENCHMARKS.md; --quick = small sizes for a CI smoke
  chaos [--runs N] [--seed S] [--engine chromium|firefox]
                                N downloads (default 20) with random faults while the service
                                worker is killed; checks every one; exits 0 only if nothing is
                                corrupt, lost or failed untyped";

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<bool> {
    prepare_environment()?;
    let mut args = std::env::args().skip(1);
    let Some(subcommand) = args.next() else {
        println!("{USAGE}");
        bail!("no command given");
    };
    let mut flags = Flags(args.collect());
    match subcommand.as_str() {
        "setup" => {
            flags.finish()?;
            setup::run(setup::Mode::Install)?;
        }
        "build" => {
            let profile = build_profile(flags.switch("--dev"));
            flags.finish()?;
            setup::run(setup::Mode::Install)?;
            build::run(profile)?;
        }
        "demo" => {
            let mut options = demo::Options::default();
            if let Some(port) = flags.value("--port")? {
                options.port = Some(parse_port(&port)?);
            }
            if let Some(port) = flags.value("--cdn-port")? {
                options.cdn_port = Some(parse_port(&port)?);
            }
            options.profile = build_profile(flags.switch("--dev"));
            options.headless = flags.switch("--headless");
            if let Some(name) = flags.value("--engine")? {
                options.engine = name.parse()?;
            }
            if flags.switch("--small") || std::env::var_os("BA_DEMO_SMALL").is_some() {
                options.scale = demo_packs::PackScale::Small;
            }
            options.export = flags.value("--export")?.map(Into::into);
            options.cdn = flags
                .value("--cdn")?
                .map(|url| demo_packs::cdn_base(&url))
                .transpose()?;
            options.build = !flags.switch("--no-build");
            options.screenshot = flags.value("--screenshot")?.map(Into::into);
            options.report_json = flags.value("--report-json")?.map(Into::into);
            flags.finish()?;
            if options.export.is_none() {
                setup::run(setup::Mode::Install)?;
            }
            return demo::run(&options);
        }
        "test" => {
            let engines = match flags.value("--engine")? {
                Some(name) => vec![name.parse::<Engine>()?],
                None => Engine::ALL.to_vec(),
            };
            let options = test_runner::Options {
                engines,
                skip_install: flags.switch("--skip-install"),
                no_lint: flags.switch("--no-lint"),
                filter: flags.value("--filter")?,
            };
            flags.finish()?;
            return test_runner::run(&options);
        }
        "bench" => {
            if let Some(code) = bench::run_optimized(&flags.0)? {
                return Ok(code);
            }
            let command_line = std::iter::once("cargo xtask bench".to_string())
                .chain(flags.0.iter().cloned())
                .collect::<Vec<_>>()
                .join(" ");
            let engine = match flags.value("--engine")? {
                Some(name) => name.parse::<Engine>()?,
                None => Engine::Chromium,
            };
            let number = |text: Option<String>, name: &str| -> Result<Option<u64>> {
                text.map(|t| {
                    t.parse::<u64>()
                        .ok()
                        .filter(|n| *n > 0)
                        .with_context(|| format!("{name} {t:?}: expected a positive whole number"))
                })
                .transpose()
            };
            let options = bench::Options {
                engine,
                quick: flags.switch("--quick"),
                json: flags.value("--json")?.map(Into::into),
                size_mib: number(flags.value("--size-mib")?, "--size-mib")?,
                memory_mib: number(flags.value("--memory-mib")?, "--memory-mib")?,
                runs: number(flags.value("--runs")?, "--runs")?.map(|n| n.min(1000) as u32),
                command_line,
            };
            flags.finish()?;
            setup::run(setup::Mode::Install)?;
            return bench::run(&options);
        }
        "chaos" => {
            let engine = match flags.value("--engine")? {
                Some(name) => name.parse::<Engine>()?,
                None => Engine::Chromium,
            };
            let runs = match flags.value("--runs")? {
                Some(text) => text
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=10_000).contains(n))
                    .with_context(|| format!("--runs {text:?}: expected 1..=10000"))?,
                None => 20,
            };
            let seed = match flags.value("--seed")? {
                Some(text) => text
                    .parse::<u64>()
                    .with_context(|| format!("--seed {text:?}: expected a whole number"))?,
                None => chaos::time_seed(),
            };
            flags.finish()?;
            setup::run(setup::Mode::Install)?;
            let verdict = chaos::run(&chaos::Options { runs, seed, engine })?;
            return Ok(verdict.passed());
        }
        "help" | "--help" | "-h" => println!("{USAGE}"),
        other => {
            println!("{USAGE}");
            bail!("unknown command {other:?}");
        }
    }
    Ok(true)
}

fn build_profile(dev: bool) -> build::Profile {
    if dev {
        build::Profile::Dev
    } else {
        build::Profile::Release
    }
}

fn parse_port(text: &str) -> Result<u16> {
    text.parse()
        .with_context(|| format!("invalid port {text:?}: expected 0-65535"))
}

/// Runs from the workspace root and puts `~/.cargo/bin` on `PATH` for every child process
/// (wasm-bindgen, wasm-bindgen-test-runner and geckodriver live there).
fn prepare_environment() -> Result<()> {
    let root = xtask::workspace::root();
    std::env::set_current_dir(&root)
        .with_context(|| format!("changing to the workspace root {}", root.display()))?;
    if let Some(bin) = cargo_bin_dir() {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut dirs: Vec<_> = std::env::split_paths(&path).collect();
        if !dirs.contains(&bin) {
            dirs.insert(0, bin);
            let joined = std::env::join_paths(dirs).context("building PATH")?;
            // Single-threaded at this point: nothing else reads the environment concurrently.
            std::env::set_var("PATH", joined);
        }
    }
    Ok(())
}

/// Command-line flags after the subcommand; every flag must be consumed.
struct Flags(Vec<String>);

impl Flags {
    /// Removes `--name` if present.
    fn switch(&mut self, name: &str) -> bool {
        let before = self.0.len();
        self.0.retain(|a| a != name);
        self.0.len() != before
    }

    /// Removes `--name VALUE` or `--name=VALUE` and returns the value.
    fn value(&mut self, name: &str) -> Result<Option<String>> {
        let prefix = format!("{name}=");
        if let Some(i) = self.0.iter().position(|a| a.starts_with(&prefix)) {
            let arg = self.0.remove(i);
            return Ok(Some(arg[prefix.len()..].to_string()));
        }
        let Some(i) = self.0.iter().position(|a| a == name) else {
            return Ok(None);
        };
        if i + 1 >= self.0.len() {
            bail!("{name} needs a value");
        }
        let value = self.0.remove(i + 1);
        self.0.remove(i);
        Ok(Some(value))
    }

    /// Fails naming any flag nobody asked for.
    fn finish(self) -> Result<()> {
        if !self.0.is_empty() {
            bail!("unexpected arguments: {}\n{USAGE}", self.0.join(" "));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(args: &[&str]) -> Flags {
        Flags(args.iter().map(|a| a.to_string()).collect())
    }

    #[test]
    fn flags_take_values_in_both_spellings_and_reject_leftovers() {
        let mut f = flags(&["--engine", "firefox", "--port=9000", "--no-lint"]);
        assert_eq!(f.value("--engine").unwrap().as_deref(), Some("firefox"));
        assert_eq!(f.value("--port").unwrap().as_deref(), Some("9000"));
        assert!(f.switch("--no-lint"));
        assert!(!f.switch("--no-lint"));
        f.finish().unwrap();

        let err = flags(&["--bogus"]).finish().unwrap_err().to_string();
        assert!(err.contains("--bogus"), "{err}");
        assert!(flags(&["--engine"]).value("--engine").is_err());
    }

    #[test]
    fn ports_must_be_numbers_in_range() {
        assert_eq!(parse_port("8787").unwrap(), 8787);
        assert!(parse_port("70000")
            .unwrap_err()
            .to_string()
            .contains("70000"));
    }
}
