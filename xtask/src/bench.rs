//! `cargo xtask bench`: our numbers beside the browser's own limits and what PWAs do today, in
//! one browser session (issue 7).
//!
//! ```text
//!   build pkg/ (release) ──► wasm size raw + gzip -9
//!   build bench/ (wasm32 release) ──► wasm-bindgen web + no-modules ──► <target>/bench-pkg/
//!   page server: /bench-pkg/ /bench/ (bench/www) /pkg/ / (www)      CDN: a second Server
//!   WebDriver ──► /bench/index.html?config=… ──► bench-sw.js runs each measure in waitUntil
//!             ◄── raw results (JSON in the DOM) ──► medians ──► table, BENCHMARKS.md, --json
//! ```
//!
//! "Ours" is the download manager (`web::manager::DownloadManager`) for the throughput, many
//! small files and scale rows, and its engine (`background_assets::web::transfer::run`) alone for
//! memory and resume waste and the diagnostics; the rows say which. A measure that failed is
//! written as `null`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Map, Value};
use xtask::cdn::{Server, ServerConfig};
use xtask::webdriver::{Engine, WebDriver};
use xtask::workspace;

use crate::build;
use crate::command;

const MIB: f64 = 1_048_576.0;
/// A JS heap cell where the downloads ran but the engine has no `performance.memory` (Firefox).
const NO_HEAP: &str = "n/a (no performance.memory)";
/// The engine's default chunk size (`TransferConfig::chunk_size`).
const CHUNK: u64 = 4 << 20;
/// The bench crate's package name and the stem of the files wasm-bindgen writes.
const BENCH_CRATE: &str = "background-assets-bench";
const BENCH_STEM: &str = "background_assets_bench";

/// What `cargo xtask bench` was asked to do.
#[derive(Clone, Debug)]
pub struct Options {
    /// The browser.
    pub engine: Engine,
    /// Small sizes and 2 runs: a smoke test.
    pub quick: bool,
    /// Where to write the JSON object (`--json PATH`).
    pub json: Option<PathBuf>,
    /// The large asset's size in MiB (default 256; 16 with `--quick`).
    pub size_mib: Option<u64>,
    /// The memory measure's asset size in MiB (default 1024; 64 with `--quick`).
    pub memory_mib: Option<u64>,
    /// Runs per measure (default 5; 2 with `--quick`).
    pub runs: Option<u32>,
    /// The command line, for BENCHMARKS.md.
    pub command_line: String,
}

/// Cold starts measured per `--runs` (each one ours and one empty worker).
const COLD_RUNS_PER_RUN: u32 = 5;

/// The sizes and counts one bench run uses.
#[derive(Clone, Debug)]
struct Plan {
    runs: u32,
    len: u64,
    /// The resume measure's asset: the large asset's size, but at least 64 MiB in a `--quick`
    /// run (a 16 MiB download could end before DevTools stopped its worker at ~50%).
    resume_len: u64,
    memory_len: u64,
    memory_runs: u32,
    small_count: u32,
    small_size: u64,
    concurrency: u32,
    cold_runs: u32,
    scale_count: u32,
    /// Whether the resume measure also stops the worker for real (Chromium: DevTools).
    real_kill: bool,
}

impl Plan {
    fn new(options: &Options) -> Plan {
        let quick = options.quick;
        let runs = options.runs.unwrap_or(if quick { 2 } else { 5 }).max(1);
        let len = options.size_mib.unwrap_or(if quick { 16 } else { 256 }) << 20;
        Plan {
            runs,
            len,
            resume_len: if quick { len.max(64 << 20) } else { len },
            memory_len: options.memory_mib.unwrap_or(if quick { 64 } else { 1024 }) << 20,
            memory_runs: if quick { 1 } else { runs },
            small_count: if quick { 100 } else { 1000 },
            small_size: 64 << 10,
            concurrency: concurrency(),
            // A start takes ~0.1 s and its time swings by ±20 ms on a busy machine: many more
            // runs than the other rows, for a steadier median.
            cold_runs: if quick {
                2
            } else {
                runs.max(5) * COLD_RUNS_PER_RUN
            },
            scale_count: if quick { 1_000 } else { 10_000 },
            real_kill: options.engine == Engine::Chromium,
        }
    }

    /// Why this plan is not the issue's measure (fewer than 5 runs, another size or count, other
    /// than 6 at a time), or `None` if it is. BENCHMARKS.md records only the issue's measure: a
    /// `--quick` smoke run or a reduced run prints its table and leaves the file alone.
    fn reduced(&self) -> Option<String> {
        let full = Plan::new(&Options {
            engine: Engine::Chromium,
            quick: false,
            json: None,
            size_mib: None,
            memory_mib: None,
            runs: None,
            command_line: String::new(),
        });
        let mut why = Vec::new();
        if self.runs < full.runs {
            why.push(format!(
                "{} run(s) per measure, not {}",
                self.runs, full.runs
            ));
        }
        if self.len != full.len || self.resume_len != full.resume_len {
            why.push(format!(
                "a {} MiB asset, not {}",
                self.len >> 20,
                full.len >> 20
            ));
        }
        if self.memory_len != full.memory_len || self.memory_runs < full.memory_runs {
            why.push(format!(
                "the memory measure {} MiB x {}, not {} MiB x {}",
                self.memory_len >> 20,
                self.memory_runs,
                full.memory_len >> 20,
                full.memory_runs
            ));
        }
        if self.small_count != full.small_count {
            why.push(format!(
                "{} small files, not {}",
                self.small_count, full.small_count
            ));
        }
        if self.concurrency != DEFAULT_CONCURRENCY {
            why.push(format!(
                "{} at a time, not {DEFAULT_CONCURRENCY}",
                self.concurrency
            ));
        }
        if self.cold_runs < full.cold_runs {
            why.push(format!(
                "{} cold starts of each worker, not {}",
                self.cold_runs, full.cold_runs
            ));
        }
        if self.scale_count != full.scale_count {
            why.push(format!(
                "{} scheduled downloads, not {}",
                self.scale_count, full.scale_count
            ));
        }
        (!why.is_empty()).then(|| why.join(", "))
    }

    fn page_config(&self, cdn: &str) -> Value {
        json!({
            "cdn": cdn,
            "runs": self.runs,
            "len": self.len,
            "chunk": CHUNK,
            "resumeLen": self.resume_len,
            "memLen": self.memory_len,
            "memoryRuns": self.memory_runs,
            "smallCount": self.small_count,
            "smallSize": self.small_size,
            "concurrency": self.concurrency,
            "coldRuns": self.cold_runs,
            "realKill": self.real_kill,
            "measureTimeoutMs": 300_000,
            "scaleCount": self.scale_count,
            "scaleBudgetMs": 180_000,
            "only": only_sections(),
        })
    }
}

/// The heading of BENCHMARKS.md's hand-written part: from it to the end, the file's text is
/// kept when a run rewrites the rest (the profiles and what limits each missed target).
const NOTES_HEADING: &str = "## Notes (written by hand, kept by `cargo xtask bench`)";

/// The heading of BENCHMARKS.md's Firefox section, which a run with `--engine firefox` writes
/// (between the Chromium part and the notes) and a Chromium run keeps.
const FIREFOX_HEADING: &str = "## Firefox (written by `cargo xtask bench --engine firefox`)";

/// BENCHMARKS.md after a run in `engine` that `generated` its part: a Chromium run replaces the
/// top of the file, a Firefox run its own section; the other engine's part and the hand-written
/// notes of `old` (the file before) are kept.
fn merge_markdown(old: &str, engine: Engine, generated: &str) -> String {
    let notes_at = old.find(NOTES_HEADING);
    let firefox_at = old
        .find(FIREFOX_HEADING)
        .filter(|&at| notes_at.is_none_or(|notes| at < notes));
    let top = &old[..firefox_at.or(notes_at).unwrap_or(old.len())];
    let firefox = firefox_at.map_or("", |at| &old[at..notes_at.unwrap_or(old.len())]);
    let notes = notes_at.map_or("", |at| &old[at..]);
    let (top, firefox) = match engine {
        Engine::Chromium => (generated, firefox),
        Engine::Firefox if top.trim().is_empty() => (TITLE, generated),
        Engine::Firefox => (top, generated),
    };
    let parts: Vec<&str> = [top, firefox, notes]
        .iter()
        .map(|part| part.trim())
        .filter(|part| !part.is_empty())
        .collect();
    parts.join("\n\n") + "\n"
}

/// The top of BENCHMARKS.md.
const TITLE: &str =
    "# Benchmarks\n\nWritten by `cargo xtask bench` (issue 7); rerun it to refresh this file.\n";

/// How many small files the manager and the engine run at a time: 6 (a browser's connections per
/// host over HTTP/1.1), or `BA_BENCH_CONCURRENCY` for an experiment (the table's rows name it).
fn concurrency() -> u32 {
    std::env::var("BA_BENCH_CONCURRENCY")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(DEFAULT_CONCURRENCY)
}

/// Downloads at a time in the small-files measure, unless `BA_BENCH_CONCURRENCY` says otherwise.
const DEFAULT_CONCURRENCY: u32 = 6;

/// The sections named in `BA_BENCH_ONLY` (comma-separated: cold, throughput, small, resume,
/// scale, memory), for quick iterations on one measure; `None` (every section) when unset.
/// A partial run prints its table but leaves BENCHMARKS.md alone.
fn only_sections() -> Option<Vec<String>> {
    let value = std::env::var("BA_BENCH_ONLY").ok()?;
    let sections: Vec<String> = value
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    (!sections.is_empty()).then_some(sections)
}

/// Extra Chromium switches for a profiling run, one per line, e.g.
/// `BA_BENCH_CHROMIUM_ARGS='--js-flags=--prof --logfile=/tmp/v8/v8.log'` (V8's sampling profiler:
/// one log per isolate; `node --prof-process --range=START_MS,END_MS LOG` reads them). A run with
/// them measures a different browser: it leaves BENCHMARKS.md alone, as a partial run does.
const CHROMIUM_ARGS_ENV: &str = "BA_BENCH_CHROMIUM_ARGS";

/// The switches in `value` (one per line; blank lines and surrounding spaces dropped).
fn extra_chromium_args(value: &str) -> Vec<String> {
    value
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(str::to_string)
        .collect()
}

/// [`CHROMIUM_ARGS_ENV`]'s switches; empty when it is unset.
fn profiling_args() -> Vec<String> {
    std::env::var(CHROMIUM_ARGS_ENV)
        .map(|value| extra_chromium_args(&value))
        .unwrap_or_default()
}

/// Set in the environment of the optimized bench process that [`run_optimized`] starts.
const OPTIMIZED_ENV: &str = "BA_BENCH_OPTIMIZED";

/// The Cargo profile the bench runs in (`Cargo.toml`): optimized, so that the loopback CDN it
/// serves from (generated bodies, hyper, tokio) is not what limits the browser's baselines.
const BENCH_PROFILE: &str = "bench-host";

/// `cargo xtask` runs in the dev profile, where the CDN's own work (generating bodies, hyper and
/// tokio unoptimised) took a whole core at about 110 MiB/s and capped the fetch-drain and
/// `cache.put` baselines (653 and 350 MiB/s once optimized). So the bench runs itself again in the
/// optimized [`BENCH_PROFILE`] with the same flags and returns its outcome; `None` when this
/// process is already that one (or was built optimized).
pub fn run_optimized(flags: &[String]) -> Result<Option<bool>> {
    if !cfg!(debug_assertions) || std::env::var_os(OPTIMIZED_ENV).is_some() {
        return Ok(None);
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    println!(
        "bench: running itself in the optimized `{BENCH_PROFILE}` profile (built the first time, ~2 min)"
    );
    let status = Command::new(cargo)
        .current_dir(workspace::root())
        .args([
            "run",
            "--profile",
            BENCH_PROFILE,
            "--package",
            "xtask",
            "--quiet",
        ])
        .arg("--")
        .arg("bench")
        .args(flags)
        .env(OPTIMIZED_ENV, "1")
        .status()
        .with_context(|| format!("bench: starting cargo run --profile {BENCH_PROFILE}"))?;
    Ok(Some(status.success()))
}

/// Builds, runs every measure in the browser, prints the table, rewrites BENCHMARKS.md and
/// writes `--json`. Returns whether every target was met.
pub fn run(options: &Options) -> Result<bool> {
    let plan = Plan::new(options);
    let started = Instant::now();

    build::run(build::Profile::Release).context("bench: building pkg/")?;
    let wasm_path = workspace::pkg_dir().join("background_assets_bg.wasm");
    let wasm_bytes = std::fs::metadata(&wasm_path)
        .with_context(|| format!("bench: {}", wasm_path.display()))?
        .len();
    let wasm_gzip_bytes = gzip_size(&wasm_path)?;

    let bench_pkg = build_bench_package()?;
    let page = Server::start(ServerConfig {
        port: 0,
        mounts: vec![
            ("/bench-pkg/".to_string(), bench_pkg),
            (
                "/bench/".to_string(),
                workspace::root().join("bench").join("www"),
            ),
            ("/pkg/".to_string(), workspace::pkg_dir()),
            ("/".to_string(), workspace::www_dir()),
        ],
        extra_headers: vec![("Cache-Control".to_string(), "no-store".to_string())],
    })
    .context("bench: starting the page server")?;
    let cdn = Server::start(ServerConfig::default()).context("bench: starting the CDN")?;
    let driver = WebDriver::start(options.engine)?;
    let timeout = if options.quick {
        Duration::from_secs(600)
    } else {
        Duration::from_secs(3600)
    };
    let url = format!(
        "{}/bench/index.html?config={}",
        page.origin(),
        percent_encode(&plan.page_config(&cdn.origin()).to_string())
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("bench: starting a tokio runtime")?;
    println!(
        "bench: {} in {}, {} run(s) per measure",
        url, options.engine, plan.runs
    );
    let raw = runtime.block_on(drive(&driver, &url, plan.real_kill, timeout))?;
    drop(driver);
    drop(page);
    drop(cdn);

    let numbers = Numbers::from_raw(&raw, &plan, wasm_bytes, wasm_gzip_bytes)?;
    let rows = numbers.rows(&plan);
    let table = render_table(&rows);
    println!("\n{table}");
    if let Some(profile) = raw["smallProfile"].as_array().filter(|p| !p.is_empty()) {
        // BA_BENCH_ONLY=profile: the small-file diagnostic (mean ms per file of each phase).
        println!(
            "bench: small-file phases (ms per file): {}",
            Value::Array(profile.clone())
        );
    }
    let decision_stats = decision_stats(&raw);
    if !decision_stats.is_empty() {
        // DownloadManager::decision_stats after each small-files run through the manager.
        println!(
            "bench: small files through the manager, decision stats per run: {}",
            Value::Array(decision_stats)
        );
    }
    let errors: Vec<String> = raw["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e.as_str().map(str::to_string))
        .collect();
    for error in &errors {
        println!("bench: a run failed: {error}");
    }
    let machine = Machine::describe(options.engine);
    let markdown = render_markdown(
        options,
        &plan,
        &table,
        &machine,
        &errors,
        started.elapsed(),
        &raw,
    );
    if let Some(sections) = only_sections() {
        println!(
            "bench: BA_BENCH_ONLY={} (partial run): BENCHMARKS.md left as it is",
            sections.join(",")
        );
    } else if !profiling_args().is_empty() {
        println!("bench: {CHROMIUM_ARGS_ENV} set (profiling run): BENCHMARKS.md left as it is");
    } else if let Some(why) = plan.reduced() {
        println!("bench: a reduced run ({why}): BENCHMARKS.md left as it is");
    } else {
        let md_path = workspace::root().join("BENCHMARKS.md");
        let old = std::fs::read_to_string(&md_path).unwrap_or_default();
        let markdown = merge_markdown(&old, options.engine, &markdown);
        std::fs::write(&md_path, markdown)
            .with_context(|| format!("bench: writing {}", md_path.display()))?;
        println!("bench: wrote {}", md_path.display());
    }
    if let Some(path) = &options.json {
        let mut object = numbers.json();
        object.insert("engine".into(), json!(options.engine.name()));
        let text = serde_json::to_string_pretty(&Value::Object(object))? + "\n";
        std::fs::write(path, text).with_context(|| format!("bench: writing {}", path.display()))?;
        println!("bench: wrote {}", path.display());
    }
    let missed = rows.iter().filter(|r| r.met == Met::No).count();
    println!("bench: {missed} target(s) missed; see the met? column");
    // Missed targets are findings, not failures; a run that failed is.
    Ok(errors.is_empty())
}

/// Bytes of `gzip -9` of `path`.
fn gzip_size(path: &Path) -> Result<u64> {
    let output = Command::new("gzip")
        .arg("-9")
        .arg("-c")
        .arg(path)
        .output()
        .context("bench: running gzip -9")?;
    if !output.status.success() {
        bail!(
            "bench: gzip -9 {} failed: {}",
            path.display(),
            output.status
        );
    }
    Ok(output.stdout.len() as u64)
}

/// Builds the bench crate for wasm32 (release) and runs wasm-bindgen for the page (`web`) and
/// the worker (`no-modules`); returns the directory holding `web/` and `worker/`.
fn build_bench_package() -> Result<PathBuf> {
    crate::build::page_and_worker_package(BENCH_CRATE, BENCH_STEM, true, "bench")
}

/// `application/x-www-form-urlencoded`-safe percent-encoding of `text`.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Opens the bench page and waits (bounded by `timeout`) for its raw results.
async fn drive(driver: &WebDriver, url: &str, real_kill: bool, timeout: Duration) -> Result<Value> {
    let mut caps = driver.capabilities();
    if driver.engine() == Engine::Chromium {
        // Without it performance.memory is coarse (bucketed, updated every ~20 min).
        if let Some(args) = caps
            .get_mut("goog:chromeOptions")
            .and_then(|o| o.get_mut("args"))
            .and_then(Value::as_array_mut)
        {
            args.push(json!("--enable-precise-memory-info"));
            args.extend(profiling_args().into_iter().map(Value::from));
        }
    }
    let client = ClientBuilder::new(HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url())
        .await
        .with_context(|| format!("opening a {} session at {}", driver.engine(), driver.url()))?;
    let outcome = wait_for_results(driver, &client, url, real_kill, timeout).await;
    let _ = client.close().await;
    outcome
}

async fn wait_for_results(
    driver: &WebDriver,
    client: &Client,
    url: &str,
    real_kill: bool,
    timeout: Duration,
) -> Result<Value> {
    client
        .goto(url)
        .await
        .with_context(|| format!("opening {url}"))?;
    let started = Instant::now();
    let mut last = String::new();
    let mut devtools_ready = false;
    loop {
        let status = client
            .find(Locator::Id("status"))
            .await
            .context("finding <output id=status>")?;
        // The resume measure's real kill (Chromium): the page asks, this stops every service
        // worker through DevTools and answers.
        let (armed, request) = if real_kill {
            (
                status.attr("data-kill-armed").await?,
                status.attr("data-kill-request").await?,
            )
        } else {
            (None, None)
        };
        if let Some(token) = request {
            if status.attr("data-kill-done").await?.as_deref() != Some(token.as_str()) {
                if !devtools_ready {
                    driver
                        .cdp(client, "ServiceWorker.enable", json!({}))
                        .await?;
                    devtools_ready = true;
                }
                driver
                    .cdp(client, "ServiceWorker.stopAllWorkers", json!({}))
                    .await?;
                client
                    .execute(
                        "document.getElementById('status').dataset.killDone = arguments[0];",
                        vec![json!(token)],
                    )
                    .await
                    .context("telling the page its workers were stopped")?;
            }
        }
        let state = status.attr("data-state").await?.unwrap_or_default();
        match state.as_str() {
            "done" => {
                let text = status
                    .attr("data-result")
                    .await?
                    .context("the page is done but has no data-result")?;
                return serde_json::from_str(&text).context("parsing the page's results");
            }
            "error" => {
                let error = status.attr("data-error").await?.unwrap_or_default();
                bail!("the bench page failed: {error}");
            }
            _ => {}
        }
        let progress = status.attr("data-progress").await?.unwrap_or_default();
        if progress != last {
            println!(
                "bench: [{:>5.0} s] {progress}",
                started.elapsed().as_secs_f64()
            );
            last = progress;
        }
        if started.elapsed() > timeout {
            bail!("the bench page did not finish within {timeout:?} (last: {last:?})");
        }
        // Closely while a kill is armed, so that it lands near the middle of the download.
        let pause = if armed.is_some() { 10 } else { 500 };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}

/// The median of the numbers in `values` (nulls, from failed runs, are left out).
fn median(values: impl IntoIterator<Item = Option<f64>>) -> Option<f64> {
    let mut v: Vec<f64> = values.into_iter().flatten().collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

/// `raw[list][i][field]` for every run.
fn field(raw: &Value, list: &str, name: &str) -> Vec<Option<f64>> {
    raw[list]
        .as_array()
        .into_iter()
        .flatten()
        .map(|run| run[name].as_f64())
        .collect()
}

/// `raw[list][i]` for every run (lists of plain numbers).
fn plain(raw: &Value, list: &str) -> Vec<Option<f64>> {
    raw[list]
        .as_array()
        .into_iter()
        .flatten()
        .map(Value::as_f64)
        .collect()
}

/// The issue's fields (medians), `None` = not measured.
#[derive(Clone, Debug, Default)]
struct Numbers {
    fields: BTreeMap<&'static str, Option<f64>>,
}

/// Every field of the `--json` object, in the issue's order.
const FIELDS: [&str; 16] = [
    "manager_mib_s",
    "fetch_drain_mib_s",
    "idb_put_mib_s",
    "cache_put_mib_s",
    "small_files_manager_s",
    "small_files_sequential_precache_s",
    "peak_heap_mib_1gib",
    "peak_wasm_mib_1gib",
    "resume_waste_bytes_kill",
    "resume_waste_bytes_pause",
    "wasm_bytes",
    "wasm_gzip_bytes",
    "cold_start_ms",
    "empty_worker_start_ms",
    "schedule_10k_ms_per_item",
    "list_10k_ms",
];

impl Numbers {
    fn from_raw(
        raw: &Value,
        plan: &Plan,
        wasm_bytes: u64,
        wasm_gzip_bytes: u64,
    ) -> Result<Numbers> {
        let mib = plan.len as f64 / MIB;
        let rate = |ms: Option<f64>| ms.filter(|ms| *ms > 0.0).map(|ms| mib / (ms / 1000.0));
        let seconds = |ms: Option<f64>| ms.map(|ms| ms / 1000.0);
        let growth = |list: &str, peak: &str, before: &str| -> Vec<Option<f64>> {
            field(raw, list, peak)
                .into_iter()
                .zip(field(raw, list, before))
                .map(|(p, b)| Some(p? - b?))
                .collect()
        };
        let mut fields = BTreeMap::new();
        let mut set = |name: &'static str, value: Option<f64>| {
            fields.insert(name, value);
        };
        // Rates in MiB/s, each from the median of its raw list's `ms`.
        for (name, list) in [
            ("manager_mib_s", "managerOne"),
            ("diag_engine_mib_s", "engine"),
            ("fetch_drain_mib_s", "fetchDrain"),
            ("idb_put_mib_s", "idbPut"),
            ("cache_put_mib_s", "cachePut"),
            ("diag_sha256_mib_s", "sha256"),
            ("diag_engine_window_mib_s", "engineWindow"),
            ("diag_fetch_put_mib_s", "fetchPut"),
            ("diag_engine_chunks_mib_s", "engineChunks"),
        ] {
            set(name, rate(median(field(raw, list, "ms"))));
        }
        // Wall times in seconds, each the median of its raw list's `ms`.
        for (name, list) in [
            ("small_files_manager_s", "managerMany"),
            ("diag_small_files_engine_s", "engineMany"),
            ("diag_small_files_fetch_only_s", "fetchMany"),
            ("diag_small_files_fetch_put_s", "fetchPutMany"),
            ("diag_small_files_fetch_put_grouped_s", "fetchPutGrouped"),
            ("diag_small_files_precache_concurrent_s", "precacheMany"),
            ("small_files_sequential_precache_s", "precache"),
        ] {
            set(name, seconds(median(field(raw, list, "ms"))));
        }
        set(
            "peak_heap_mib_1gib",
            median(growth("engineMemory", "heap_peak", "heap_before")).map(|b| b / MIB),
        );
        set(
            "peak_wasm_mib_1gib",
            median(field(raw, "engineMemory", "wasm_peak")).map(|b| b / MIB),
        );
        // The same download at the throughput size, measured first in the same page.
        set(
            "diag_peak_heap_mib_small",
            median(growth("engineMemorySmall", "heap_peak", "heap_before")).map(|b| b / MIB),
        );
        set(
            "diag_peak_wasm_mib_small",
            median(field(raw, "engineMemorySmall", "wasm_peak")).map(|b| b / MIB),
        );
        // The kill: the worker stopped for real where the bench can (Chromium), else the run
        // dropped at ~50% (its context gone, as in a kill); the dropped run is then a diagnostic.
        let real_kill = plan.real_kill;
        let kill_list = if real_kill {
            "resumeWorkerKill"
        } else {
            "resumeKill"
        };
        set(
            "resume_waste_bytes_kill",
            median(field(raw, kill_list, "fetched_twice")),
        );
        set(
            "diag_resume_waste_bytes_dropped_run",
            median(field(raw, "resumeKill", "fetched_twice")).filter(|_| real_kill),
        );
        set(
            "resume_waste_bytes_pause",
            median(field(raw, "resumePause", "fetched_twice")),
        );
        set("wasm_bytes", Some(wasm_bytes as f64));
        set("wasm_gzip_bytes", Some(wasm_gzip_bytes as f64));
        set("cold_start_ms", median(plain(raw, "coldOurs")));
        set("empty_worker_start_ms", median(plain(raw, "coldEmpty")));
        set("diag_wasm_compile_ms", median(plain(raw, "wasmCompile")));
        set("diag_cold_script_ms", median(plain(raw, "coldScript")));
        set("diag_cold_wasm_ms", median(plain(raw, "coldWasm")));
        // Where the bench can stop a worker (Chromium): a stopped worker woken by a message.
        set("diag_restart_ms", median(plain(raw, "restartOurs")));
        set("diag_restart_empty_ms", median(plain(raw, "restartEmpty")));
        // Known only where the page stopped the run itself.
        set(
            "diag_received_twice_kill",
            median(field(raw, "resumeKill", "received_twice")),
        );
        set(
            "diag_received_twice_pause",
            median(field(raw, "resumePause", "received_twice")),
        );
        set(
            "diag_resume_waste_bytes_kill_window",
            median(field(raw, "resumeKillWindow", "fetched_twice")),
        );
        // Only when every planned download was scheduled.
        let scaled = |name: &str| -> Vec<Option<f64>> {
            field(raw, "managerScale", name)
                .into_iter()
                .zip(field(raw, "managerScale", "scheduled"))
                .map(|(v, n)| v.filter(|_| n == Some(f64::from(plan.scale_count))))
                .collect()
        };
        set("schedule_10k_ms_per_item", median(scaled("ms_per_item")));
        set("list_10k_ms", median(scaled("list_ms")));
        set(
            "diag_scale_scheduled",
            median(field(raw, "managerScale", "scheduled")),
        );
        set(
            "diag_scale_ms_per_item",
            median(field(raw, "managerScale", "ms_per_item")),
        );
        set(
            "diag_scale_one_by_one_ms_per_item",
            median(field(raw, "managerScale", "one_by_one_ms_per_item")),
        );
        Ok(Numbers { fields })
    }

    fn get(&self, name: &str) -> Option<f64> {
        self.fields.get(name).copied().flatten()
    }

    /// The `--json` object without `engine`: every field, a number or `null`.
    fn json(&self) -> Map<String, Value> {
        FIELDS
            .iter()
            .map(|name| {
                let value = match self.get(name).map(round) {
                    Some(v) if v.fract() == 0.0 && v.abs() < 9e15 => json!(v as i64),
                    Some(v) => json!(v),
                    None => Value::Null,
                };
                (name.to_string(), value)
            })
            .collect()
    }

    fn rows(&self, plan: &Plan) -> Vec<Row> {
        let g = |name: &str| self.get(name);
        let mib = plan.len >> 20;
        let mem_mib = plan.memory_len >> 20;
        let chunk_mib = CHUNK >> 20;
        let memory_bound = 3.0 * (CHUNK as f64 / MIB) + 8.0;
        let ours = g("manager_mib_s");
        let drain = g("fetch_drain_mib_s");
        let idb = g("idb_put_mib_s");
        let cache = g("cache_put_mib_s");
        let floor = match (drain, idb) {
            (Some(a), Some(b)) => Some(a.min(b)),
            _ => None,
        };
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => Some(a / b),
            _ => None,
        };
        let mut rows = vec![
            Row::compare(
                &format!("throughput {mib} MiB, DownloadManager CDN → container, verified (MiB/s) vs min(fetch drain, IDB put)"),
                ours,
                floor,
                1,
                "≥ 0.9×",
                ratio(ours, floor).map(|r| r >= 0.9),
            ),
            Row::compare(
                &format!("throughput {mib} MiB, DownloadManager vs Workbox-style cache.put (MiB/s)"),
                ours,
                cache,
                1,
                "≥ 1.0×",
                ratio(ours, cache).map(|r| r >= 1.0),
            ),
            Row::info(
                "  diagnostic: the same through engine* alone (MiB/s)",
                g("diag_engine_mib_s"),
                1,
            ),
            Row::info("  baseline: fetch, stream drained and discarded (MiB/s)", drain, 1),
            Row::info(
                &format!("  baseline: IndexedDB put of {chunk_mib} MiB chunks from memory (MiB/s)"),
                idb,
                1,
            ),
            Row::info("  baseline: cache.put of the whole Response (MiB/s)", cache, 1),
            Row::info(
                &format!("  diagnostic: fetch + IndexedDB put of {chunk_mib} MiB Blob chunks, plain JS, unverified (MiB/s)"),
                g("diag_fetch_put_mib_s"),
                1,
            ),
            Row::info(
                "  diagnostic: SHA-256 in wasm alone, 256 KiB updates (MiB/s)",
                g("diag_sha256_mib_s"),
                1,
            ),
            Row::info(
                "  diagnostic: engine* with 1-chunk Range windows (opt-in range_window_chunks = 1) (MiB/s)",
                g("diag_engine_window_mib_s"),
                1,
            ),
            Row::info(
                "  engine* with declared chunk digests (each chunk checked by crypto.subtle.digest) (MiB/s)",
                g("diag_engine_chunks_mib_s"),
                1,
            ),
        ];
        let small = g("small_files_manager_s");
        let precache = g("small_files_sequential_precache_s");
        rows.push(Row::compare(
            &format!(
                "{} × 64 KiB as one asset pack, DownloadManager ({} at a time, verified) vs sequential precache (s)",
                plan.small_count, plan.concurrency
            ),
            small,
            precache,
            2,
            "≤ 0.5×",
            ratio(small, precache).map(|r| r <= 0.5),
        ));
        let at_a_time = plan.concurrency;
        for (label, field) in [
            (
                format!("the same through engine* alone ({at_a_time} at a time)"),
                "diag_small_files_engine_s",
            ),
            (
                format!("fetch only, {at_a_time} at a time, bodies read and dropped"),
                "diag_small_files_fetch_only_s",
            ),
            (
                format!("fetch + one IndexedDB put per file, plain JS, {at_a_time} at a time, unverified"),
                "diag_small_files_fetch_put_s",
            ),
            (
                "the same, group-committed (the files that arrive during a commit share the next)"
                    .to_string(),
                "diag_small_files_fetch_put_grouped_s",
            ),
            (
                format!("Workbox-style precache (fetch + cache.put), {at_a_time} at a time"),
                "diag_small_files_precache_concurrent_s",
            ),
        ] {
            rows.push(Row::info(
                &format!("  diagnostic: {label} (s)"),
                g(field),
                2,
            ));
        }
        let heap = g("peak_heap_mib_1gib");
        let mut heap_row = Row::target(
            &format!("peak JS heap growth, {mem_mib} MiB download, engine* (MiB)"),
            heap,
            1,
            &format!("≤ {memory_bound} MiB"),
            heap.map(|h| h <= memory_bound),
        );
        if heap.is_none() && g("peak_wasm_mib_1gib").is_some() {
            // The download ran; the engine has no `performance.memory` (Firefox).
            heap_row.ours = NO_HEAP.to_string();
        }
        rows.push(heap_row);
        let wasm = g("peak_wasm_mib_1gib");
        rows.push(Row::target(
            &format!("peak wasm memory, {mem_mib} MiB download, engine* (MiB)"),
            wasm,
            1,
            &format!("≤ {memory_bound} MiB"),
            wasm.map(|w| w <= memory_bound),
        ));
        // "Must not grow with asset size": the instance's wasm memory only grows, and the
        // smaller downloads ran first, so this is what the larger size added to it.
        let wasm_growth = match (wasm, g("diag_peak_wasm_mib_small")) {
            (Some(big), Some(small)) => Some(big - small),
            _ => None,
        };
        rows.push(Row::target(
            &format!("peak wasm memory growth, {mib} MiB → {mem_mib} MiB download, engine* (MiB)"),
            wasm_growth,
            1,
            &format!("≤ {chunk_mib} MiB (one chunk)"),
            wasm_growth.map(|w| w <= chunk_mib as f64),
        ));
        rows.push(Row::info(
            &format!("  diagnostic: peak wasm memory, {mib} MiB download, measured first (MiB)"),
            g("diag_peak_wasm_mib_small"),
            1,
        ));
        let mut small_heap = Row::info(
            &format!("  diagnostic: peak JS heap growth, {mib} MiB download (MiB)"),
            g("diag_peak_heap_mib_small"),
            1,
        );
        if g("diag_peak_heap_mib_small").is_none() && g("diag_peak_wasm_mib_small").is_some() {
            // The downloads ran; the engine has no `performance.memory` (Firefox).
            small_heap.baseline = NO_HEAP.to_string();
        }
        rows.push(small_heap);
        let kill = g("resume_waste_bytes_kill");
        let killed = if plan.real_kill {
            "the worker stopped through DevTools"
        } else {
            "the run dropped, as its killed context would"
        };
        rows.push(Row::target(
            &format!("resume waste after a kill at ~50% ({killed}), engine* (bytes fetched twice)"),
            kill,
            0,
            &format!("≤ {} (one chunk)", CHUNK),
            kill.map(|k| k <= CHUNK as f64),
        ));
        let pause = g("resume_waste_bytes_pause");
        rows.push(Row::target(
            "resume waste after pause/resume at ~50%, engine* (bytes fetched twice)",
            pause,
            0,
            "= 0",
            pause.map(|p| p == 0.0),
        ));
        rows.push(Row::info(
            "  diagnostic: bytes the page received twice after the kill (the run dropped)",
            g("diag_received_twice_kill"),
            0,
        ));
        rows.push(Row::info(
            "  diagnostic: bytes the page received twice after pause/resume",
            g("diag_received_twice_pause"),
            0,
        ));
        if plan.real_kill {
            rows.push(Row::info(
                "  diagnostic: resume waste after the run dropped at ~50% instead (no worker stopped)",
                g("diag_resume_waste_bytes_dropped_run"),
                0,
            ));
        }
        rows.push(Row::info(
            "  diagnostic: resume waste after a kill (the run dropped), 1-chunk Range windows (opt-in range_window_chunks = 1)",
            g("diag_resume_waste_bytes_kill_window"),
            0,
        ));
        rows.push(Row::info(
            "wasm size, release, raw (bytes)",
            g("wasm_bytes"),
            0,
        ));
        let gzip = g("wasm_gzip_bytes");
        rows.push(Row::target(
            "wasm size, release, gzip -9 (bytes)",
            gzip,
            0,
            "≤ 102400",
            gzip.map(|z| z <= 102_400.0),
        ));
        let empty = g("empty_worker_start_ms");
        rows.push(Row::start(
            "worker cold start: register → activated + first answer, ours (the library worker, wasm instantiated) vs empty (ms)",
            g("cold_start_ms"),
            empty,
        ));
        rows.push(Row::info(
            "  diagnostic: WebAssembly.compile of the release wasm alone, in the bench page (ms)",
            g("diag_wasm_compile_ms"),
            1,
        ));
        // Where ours spends its start: the same script with no wasm, the wasm with no script.
        for (label, field) in [
            (
                "  diagnostic: cold start, the library's worker script imported alone, no wasm (ms)",
                "diag_cold_script_ms",
            ),
            (
                "  diagnostic: cold start, the wasm fetched and compiled alone, no script (ms)",
                "diag_cold_wasm_ms",
            ),
        ] {
            let mut row = Row::info(label, g(field), 1);
            if let (Some(part), Some(e)) = (g(field), empty) {
                row.ratio = format!("{:+.1} ms", part - e);
            }
            rows.push(row);
        }
        if plan.real_kill {
            rows.push(Row::start(
                "worker restart: a stopped worker (stopped through DevTools) woken by a message → its answer, ours vs empty (ms)",
                g("diag_restart_ms"),
                g("diag_restart_empty_ms"),
            ));
        }
        let scheduled = g("diag_scale_scheduled").unwrap_or(0.0) as u64;
        let complete = scheduled == u64::from(plan.scale_count);
        let per_item = g("diag_scale_ms_per_item");
        let label = if complete || per_item.is_none() {
            format!(
                "schedule {} downloads at once, DownloadManager (ms per item)",
                plan.scale_count
            )
        } else {
            format!(
                "schedule {} downloads at once, DownloadManager (ms per item; {scheduled} scheduled)",
                plan.scale_count
            )
        };
        rows.push(Row::target(
            &label,
            per_item,
            3,
            "≤ 1",
            per_item.map(|v| complete && v <= 1.0),
        ));
        rows.push(Row::info(
            &format!(
                "  diagnostic: one more schedule at a time on the {}-download state, each awaited (ms per item)",
                plan.scale_count
            ),
            g("diag_scale_one_by_one_ms_per_item"),
            3,
        ));
        let list = g("list_10k_ms");
        let mut list_row = Row::target(
            &format!(
                "list {} downloads, DownloadManager::fetch_current_downloads (ms)",
                plan.scale_count
            ),
            list,
            2,
            "≤ 50",
            list.map(|v| v <= 50.0),
        );
        if list.is_none() && per_item.is_some() && !complete {
            list_row.ours = format!("not reached (schedule stopped after {scheduled})");
        }
        rows.push(list_row);
        rows
    }
}

/// Rounds to 3 decimals (JSON and the table need no more).
fn round(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Met {
    Yes,
    No,
    Unknown,
    NotApplicable,
}

/// One line of the table.
#[derive(Clone, Debug)]
struct Row {
    measure: String,
    ours: String,
    baseline: String,
    ratio: String,
    target: String,
    met: Met,
}

fn number(value: Option<f64>, decimals: usize) -> String {
    match value {
        Some(v) => format!("{v:.decimals$}"),
        None => "failed".to_string(),
    }
}

impl Row {
    fn compare(
        measure: &str,
        ours: Option<f64>,
        baseline: Option<f64>,
        decimals: usize,
        target: &str,
        met: Option<bool>,
    ) -> Row {
        let ratio = match (ours, baseline) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
            _ => "—".to_string(),
        };
        Row {
            measure: measure.to_string(),
            ours: number(ours, decimals),
            baseline: number(baseline, decimals),
            ratio,
            target: target.to_string(),
            met: met.map_or(Met::Unknown, |m| if m { Met::Yes } else { Met::No }),
        }
    }

    fn target(
        measure: &str,
        ours: Option<f64>,
        decimals: usize,
        target: &str,
        met: Option<bool>,
    ) -> Row {
        Row {
            baseline: "—".to_string(),
            ratio: "—".to_string(),
            ..Row::compare(measure, ours, None, decimals, target, met)
        }
    }

    /// A worker start, ours against the empty worker's: the difference must be ≤ 30 ms.
    fn start(measure: &str, ours: Option<f64>, empty: Option<f64>) -> Row {
        let difference = ours.zip(empty).map(|(o, e)| o - e);
        let mut row = Row::compare(
            measure,
            ours,
            empty,
            1,
            "ours − empty ≤ 30 ms",
            difference.map(|d| d <= 30.0),
        );
        if let Some(d) = difference {
            row.ratio = format!("{d:+.1} ms");
        }
        row
    }

    fn info(measure: &str, value: Option<f64>, decimals: usize) -> Row {
        Row {
            measure: measure.to_string(),
            ours: "—".to_string(),
            baseline: number(value, decimals),
            ratio: "—".to_string(),
            target: "—".to_string(),
            met: Met::NotApplicable,
        }
    }

    fn cells(&self) -> [String; 6] {
        let met = match self.met {
            Met::Yes => "yes",
            Met::No => "NO",
            Met::Unknown => "?",
            Met::NotApplicable => "",
        };
        [
            self.measure.clone(),
            self.ours.clone(),
            self.baseline.clone(),
            self.ratio.clone(),
            self.target.clone(),
            met.to_string(),
        ]
    }
}

/// A Markdown table (also readable as plain text on stdout).
fn render_table(rows: &[Row]) -> String {
    let header = ["measure", "ours", "baseline", "ratio", "target", "met?"].map(String::from);
    let body: Vec<[String; 6]> = rows.iter().map(Row::cells).collect();
    let mut widths = header.clone().map(|h| h.chars().count());
    for cells in &body {
        for (w, c) in widths.iter_mut().zip(cells) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[String; 6]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
            .collect();
        format!("| {} |", padded.join(" | "))
    };
    let mut out = vec![line(&header)];
    out.push(format!(
        "|{}|",
        widths
            .iter()
            .map(|w| "-".repeat(w + 2))
            .collect::<Vec<_>>()
            .join("|")
    ));
    out.extend(body.iter().map(line));
    out.join("\n")
}

/// The machine the numbers come from.
struct Machine {
    cpus: usize,
    cpu_model: String,
    memory: String,
    browser: String,
}

impl Machine {
    fn describe(engine: Engine) -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name")?.split(':').nth(1))
            .map(|m| m.trim().to_string())
            .unwrap_or_else(|| "unknown".to_string());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map(|kb| format!("{:.1} GiB", kb / 1_048_576.0))
            .unwrap_or_else(|| "unknown".to_string());
        let browser = engine
            .browser_path()
            .and_then(|path| {
                Command::new(path)
                    .arg("--version")
                    .stderr(std::process::Stdio::null())
                    .output()
                    .ok()
            })
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| engine.name().to_string());
        Machine {
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu_model,
            memory,
            browser,
        }
    }
}

/// `DownloadManager::decision_stats` after each small-files run through the manager.
fn decision_stats(raw: &Value) -> Vec<Value> {
    raw["managerMany"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|run| run.get("stats").cloned())
        .collect()
}

/// The small-files row's `DownloadManager::decision_stats`, per run, as a paragraph of means
/// (ms per batch under the lock, ms per start and per reported result); `None` without stats.
fn decision_paragraph(runs: &[Value]) -> Option<String> {
    let mean = |key: &str, per: &str| -> Option<f64> {
        let values: Vec<f64> = runs
            .iter()
            .filter_map(|r| Some(r[key].as_f64()? / r[per].as_f64().filter(|n| *n > 0.0)?))
            .collect();
        (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
    };
    let batches = mean("batches", "decisions")?;
    Some(format!(
        "Small files through the manager (`DownloadManager::decision_stats`, mean of {} run(s)): \
         {:.2} batches per decision (1.00 = no group commit){}; per batch, waiting for the state \
         lock {:.2} ms and holding it {:.2} ms: reading the revision {:.2}, applying the \
         decisions and working out the changed parts {:.2}, saving {:.2}; per file, {:.2} ms \
         from its claim to its transfer's start{} and {:.2} ms from the transfer's end to its \
         result stored.{}{}\n\n",
        runs.len(),
        batches,
        mean("kept_batches", "batches")
            .map(|kept| format!(
                ", {:.0}% of the batches kept the state lock from the one before (no read)",
                kept * 100.0
            ))
            .unwrap_or_default(),
        mean("lock_wait_ms", "batches")?,
        mean("lock_held_ms", "batches")?,
        mean("read_ms", "batches")?,
        mean("compute_ms", "batches")?,
        mean("save_ms", "batches")?,
        mean("start_ms", "starts")?,
        mean("claim_lock_ms", "starts")
            .zip(mean("claim_read_ms", "starts"))
            .map(|(lock, read)| format!(
                " (the owner lock {lock:.2}, then the state read and the browser-fetch look-up \
                 {read:.2})"
            ))
            .unwrap_or_default(),
        mean("report_ms", "starts")?,
        mean("data_operations", "data_transactions")
            .map(|n| format!(
                " The container's group commit (`Container::batch_stats`) carried {n:.2} begins \
                 and whole-file writes per transaction."
            ))
            .unwrap_or_default(),
        mean("prefetches", "starts")
            .zip(mean("prefetches_taken", "starts"))
            .map(|(sent, taken)| format!(
                " Small files requested ahead, as a transfer before them had received every byte \
                 (not in Firefox): {:.0}% of the starts, {:.0}% taken by their run.",
                sent * 100.0,
                taken * 100.0
            ))
            .unwrap_or_default(),
    ))
}

fn render_markdown(
    options: &Options,
    plan: &Plan,
    table: &str,
    machine: &Machine,
    errors: &[String],
    took: Duration,
    raw: &Value,
) -> String {
    let profile = &raw["smallProfile"];
    let date = command::capture(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]))
        .map(|d| d.trim().to_string())
        .unwrap_or_default();
    let mut out = String::new();
    match options.engine {
        Engine::Chromium => {
            out.push_str(TITLE);
            out.push('\n');
        }
        Engine::Firefox => out.push_str(&format!("{FIREFOX_HEADING}\n\n")),
    }
    out.push_str(&format!("- Command: `{}`\n", options.command_line));
    out.push_str(&format!(
        "- Date: {date} (took {:.0} s)\n",
        took.as_secs_f64()
    ));
    out.push_str(&format!(
        "- Machine: {} CPUs ({}), {} RAM; {}\n",
        machine.cpus, machine.cpu_model, machine.memory, machine.browser
    ));
    out.push_str(&format!(
        "- Sizes: {} MiB asset, {} run(s) per measure (median), memory measure {} MiB × {}, \
         {} × 64 KiB small files, {} cold starts of each worker, chunk {} MiB, loopback CDN \
         (`xtask::cdn`, built optimized: the `{BENCH_PROFILE}` profile)\n\n",
        plan.len >> 20,
        plan.runs,
        plan.memory_len >> 20,
        plan.memory_runs,
        plan.small_count,
        plan.cold_runs,
        CHUNK >> 20
    ));
    out.push_str(table);
    out.push_str("\n\n");
    if options.engine == Engine::Firefox {
        out.push_str(
            "Each number is taken as in Chromium (above, \"How each number is taken\"). Firefox \
             has no `performance.memory`, so the JS heap row is empty; it has no Background \
             Fetch, so the manager never looks one up.\n",
        );
        push_errors(&mut out, errors);
        return out;
    }
    if let Some(p) = profile
        .as_array()
        .and_then(|p| p.first())
        .filter(|p| p.is_object())
    {
        let ms = |k: &str| p[k].as_f64().map_or("?".to_string(), |v| format!("{v:.2}"));
        out.push_str(&format!(
            "Small-file diagnostic (100 × 64 KiB one after another, mean ms per file of each \
             phase of a run, timed apart): Web Lock acquire + release {}, \
             begin_epoch with the finished-asset lookup (readwrite) {}, fetch (head + body) {}, chunk write + finish (one \
             readwrite transaction) {}; a whole `run` {}. IndexedDB runs readwrite \
             transactions over the same stores one at a time; with runs side by side, the \
             container group-commits their begins and whole small-file writes (several per \
             transaction).\n\n",
            ms("lock_ms"),
            ms("begin_epoch_ms"),
            ms("fetch_ms"),
            ms("write_finish_ms"),
            ms("run_ms"),
        ));
    }
    if let Some(paragraph) = decision_paragraph(&decision_stats(raw)) {
        out.push_str(&paragraph);
    }
    out.push_str(
        "\\* **engine** = `background_assets::web::transfer::run`, the engine the download \
         manager (`web::manager::DownloadManager`) calls for each download. The throughput \
         (`manager_mib_s`), small-files and scale rows go through the manager; the memory and \
         resume rows (and the diagnostics that say so) through `web::transfer::run` directly. \
         The engine writes chunk k to IndexedDB while it reads and hashes chunk \
         k+1 (one write in flight), and finishes a verified file in the transaction of its last \
         chunk.\n\n",
    );
    out.push_str(
        "How each number is taken (all in the same browser session):\n\n\
         - Throughput: in the bench service worker; the generated asset is a one-file \
         on-demand asset pack (declared size and SHA-256, fetched before the clock starts) and \
         `DownloadManager::ensure_local_availability` fetches it into a fresh database: the \
         manager schedules and claims it, runs the engine under its owner lock with its \
         progress reports, verifies the file and stores its result before it resolves. The \
         engine-alone diagnostic downloads another generated asset of the same size into a fresh \
         IndexedDB container with its declared size and SHA-256 (verified); the \
         baselines in the same worker are a `fetch` whose body stream is read and discarded, \
         IndexedDB `put`s of the same chunk size from memory (one relaxed transaction per chunk), \
         and a Workbox-style `cache.put(url, response)` of the whole response. The chunk-digests \
         row is the same download with the file's chunk digests also declared (the CDN's \
         `/gen/<len>/<seed>.chunks/<chunk>`, fetched before the clock starts): each chunk is \
         checked by `crypto.subtle.digest` instead of the whole file hashed in wasm. The \
         plain-JS fetch + put row is what any streamed store into IndexedDB costs in this \
         browser, with nothing verified or recorded: the body read with the default reader, cut \
         into chunks, each put as a `Blob` in its own relaxed transaction, two commits in \
         flight.\n\
         - Small files: the N files are one on-demand asset pack (declared size and SHA-256 \
         each) and `DownloadManager::ensure_local_availability` fetches it: the manager \
         schedules them, runs them with bounded concurrency (each with its own lock, epoch, \
         checkpoint and verification, every decision saved) and resolves once all are stored; \
         the baseline is `fetch` + `cache.put` one after another. Diagnostics: the same files \
         through the engine alone with the same concurrency, and `fetch` alone with the same \
         concurrency, each body read whole and dropped. Digests are fetched before the clock \
         starts. The browser's floors for storing many files, in plain JS with the same \
         concurrency and nothing verified or recorded: each body read whole and put as one \
         `Uint8Array` in its own relaxed readwrite transaction (a lane awaits its commit); the \
         same with the bodies that arrive while a transaction commits all put in the next one \
         (one at a time, the lanes not waiting); and a Workbox-style precache, `fetch` + \
         `cache.put` in each lane.\n\
         - Memory: in the bench page (Chromium has `performance.memory` only in pages; run with \
         `--enable-precise-memory-info`): peak wasm linear memory (`memory.buffer.byteLength`, \
         the whole instance) and peak `usedJSHeapSize` minus its value before the download, \
         sampled on every progress report. The JS heap peak counts garbage not yet collected. \
         The same downloads at the throughput size run first in the same page: wasm memory \
         never shrinks, so the growth row is what the larger size added to the high-water mark \
         the smaller downloads left (it must not grow with the asset's size).\n\
         - Resume waste: the CDN's `/_control/log` bytes sent for the URL beyond the file's \
         length, after a kill at ~50% and the download run again, and after \
         `TransferControl::pause`/`resume` at ~50%. In Chromium the kill is real: the bench \
         worker answers once half the file (and half a chunk) arrived, leaving its run going; \
         `cargo xtask bench`, asked by the page (it looks every 10 ms while a kill is armed), \
         stops every service worker through DevTools (`ServiceWorker.stopAllWorkers`); the \
         page's next message starts the worker again, and it runs the same download to its \
         end. Where DevTools cannot stop a worker (Firefox), the `run` future is dropped at ~50% instead (its fetch aborted, as \
         its killed context's would be); in Chromium that is a diagnostic row. Bytes the server \
         had already pushed into socket and browser buffers when the fetch was aborted count \
         as fetched twice.\n\
         - Diagnostics (not issue fields): SHA-256 of the same size in wasm alone, in the \
         worker; bytes the page itself received twice (from the resume's `Range` start to where \
         the first run was stopped).\n\
         - Scale (one run, in the bench worker): `DownloadManager::schedule` of N downloads \
         called together and awaited together (`join_all`, as `Promise.all` in JS): the manager \
         group-commits the decisions queued while a batch holds the state lock, and every call \
         returns after the save that holds it committed; the downloads point at stalled URLs, \
         one runs at a time. Then, a diagnostic, up to 50 more scheduled one at a time, each \
         awaited (a decision and a save of its own), within a 180 s budget; then \
         `fetch_current_downloads` of them all. If the batch fails the JSON fields are `null`.\n\
         - Size: `pkg/background_assets_bg.wasm` from `cargo xtask build` (release), raw and \
         `gzip -9`.\n\
         - Cold start: from `navigator.serviceWorker.register` to the worker activated and its \
         first message answered, `bench/www/ours-sw.js` (the library's worker script \
         `pkg/worker/background_assets_worker.js`, its wasm loaded from the top level and \
         instantiated before install completes: fetched, checked against the glue's SHA-256 and \
         compiled, its copy stored in Cache Storage meanwhile) vs a worker that does nothing; each run \
         registers a new scope and script URL and unregisters after. Two diagnostic workers \
         each do half of ours: `bench/www/script-only-sw.js` imports the library's worker \
         script and never loads the wasm, `bench/www/wasm-only-sw.js` fetches and compiles the \
         wasm (`WebAssembly.compileStreaming`, install waiting for it) and imports no script; \
         their ratio column is their time over the empty worker's. The four start in turn, the \
         order rotated from one run to the next, each after a 1 s pause: the browser's work for \
         what ran just before (a wasm compile going on in the background, an unregistered \
         worker's teardown) slowed the next start (Firefox's row read +101 and +109 ms with the compile \
         diagnostic run just before ours, +75 and +89 ms with the pause and rotation). \
         Diagnostic: `WebAssembly.compile` of `pkg/background_assets_bg.wasm` in the bench \
         page, after all the starts, each after the same pause (its bytes fetched before the \
         clock starts).\n\
         - Restart (where DevTools can stop a worker: Chromium): the start every background \
         wake pays. Ours and the empty worker are installed and answer once, `cargo xtask \
         bench` stops every service worker (`ServiceWorker.stopAllWorkers`), and after a 1 s \
         pause the page times a message from its post to its answer, which starts the worker \
         again (ours loads its wasm again, from its copy in Cache Storage). Each answer carries the \
         worker's `performance.timeOrigin`: a worker that answers with the same one was not \
         stopped, and that run fails.\n",
    );
    push_errors(&mut out, errors);
    out
}

/// The runs that failed, if any, as a list after the text.
fn push_errors(out: &mut String, errors: &[String]) {
    if !errors.is_empty() {
        out.push_str("\nRuns that failed (left out of the medians):\n\n");
        for error in errors {
            out.push_str(&format!("- {error}\n"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rewrite_keeps_the_hand_written_notes_and_the_other_engines_part() {
        let notes = format!("{NOTES_HEADING}\n\nWhy X is slow.\n");
        let old = format!("# Benchmarks\n\n| old table |\n\n{notes}");
        let new = merge_markdown(&old, Engine::Chromium, "# Benchmarks\n\n| new table |\n");
        assert_eq!(new, format!("# Benchmarks\n\n| new table |\n\n{notes}"));
        let firefox = format!("{FIREFOX_HEADING}\n\n| fx table |\n");
        let both = merge_markdown(&new, Engine::Firefox, &firefox);
        assert_eq!(
            both,
            format!("# Benchmarks\n\n| new table |\n\n{firefox}\n{notes}")
        );
        // A Chromium run keeps the Firefox section; a Firefox run replaces only it.
        let again = merge_markdown(&both, Engine::Chromium, "# Benchmarks\n\n| third |\n");
        assert_eq!(
            again,
            format!("# Benchmarks\n\n| third |\n\n{firefox}\n{notes}")
        );
        let fx2 = format!("{FIREFOX_HEADING}\n\n| fx 2 |\n");
        let again = merge_markdown(&again, Engine::Firefox, &fx2);
        assert!(
            again.contains("| third |") && again.contains("| fx 2 |"),
            "{again}"
        );
        assert!(
            !again.contains("| fx table |") && again.ends_with(&notes),
            "{again}"
        );
        assert_eq!(
            merge_markdown("no notes", Engine::Chromium, "fresh"),
            "fresh\n"
        );
        let first = merge_markdown("", Engine::Firefox, &firefox);
        assert!(
            first.starts_with("# Benchmarks") && first.ends_with(&firefox),
            "{first}"
        );
    }

    #[test]
    fn decision_stats_are_averaged_per_batch_and_per_file() {
        let run = |held: f64| {
            json!({"batches": 4.0, "decisions": 8.0, "lock_wait_ms": 4.0, "lock_held_ms": held,
                   "read_ms": 2.0, "compute_ms": 1.0, "save_ms": 8.0, "starts": 2.0,
                   "start_ms": 6.0, "report_ms": 10.0})
        };
        let text = decision_paragraph(&[run(20.0), run(40.0)]).unwrap();
        assert!(
            text.contains("mean of 2 run(s)): 0.50 batches per decision"),
            "{text}"
        );
        assert!(
            text.contains("lock 1.00 ms and holding it 7.50 ms"),
            "{text}"
        );
        assert!(text.contains("revision 0.50, applying"), "{text}");
        assert!(text.contains("parts 0.25, saving 2.00"), "{text}");
        assert!(text.contains("per file, 3.00 ms from its claim"), "{text}");
        assert!(text.contains("5.00 ms from the transfer's end"), "{text}");
        assert!(!text.contains("group commit (`Container"), "{text}");
        assert!(!text.contains("kept the state lock"), "{text}");
        assert!(!text.contains("requested ahead"), "{text}");
        let mut with_data = run(20.0);
        with_data["prefetches"] = json!(2.0);
        with_data["prefetches_taken"] = json!(1.0);
        with_data["data_transactions"] = json!(100.0);
        with_data["data_operations"] = json!(450.0);
        with_data["kept_batches"] = json!(1.0);
        with_data["claim_lock_ms"] = json!(2.0);
        with_data["claim_read_ms"] = json!(1.0);
        let text = decision_paragraph(&[with_data]).unwrap();
        assert!(text.contains("carried 4.50 begins"), "{text}");
        assert!(
            text.contains("group commit), 25% of the batches kept"),
            "{text}"
        );
        assert!(text.contains("(the owner lock 1.00, then"), "{text}");
        assert!(text.contains("look-up 0.50) and"), "{text}");
        assert!(
            text.contains("(not in Firefox): 100% of the starts, 50% taken"),
            "{text}"
        );
        assert_eq!(decision_paragraph(&[]), None);
        assert_eq!(decision_paragraph(&[json!({"batches": 1.0})]), None);
    }

    #[test]
    fn median_skips_failed_runs_and_averages_the_middle_pair() {
        assert_eq!(median([Some(3.0), None, Some(1.0), Some(2.0)]), Some(2.0));
        assert_eq!(
            median([Some(4.0), Some(1.0), Some(2.0), Some(3.0)]),
            Some(2.5)
        );
        assert_eq!(median([None, None]), None);
    }

    #[test]
    fn json_has_exactly_the_issue_fields_with_nulls_for_unmeasured() {
        let raw = json!({
            "managerOne": [{"ms": 1000.0}, {"ms": 2000.0}, {"ms": 500.0}],
            "engine": [{"ms": 2000.0}],
            "engineMemory": [{"wasm_peak": 10485760.0}, {"wasm_peak": 11534336.0}],
            "engineMemorySmall": [{"wasm_peak": 9437184.0}],
            "resumeWorkerKill": [{"fetched_twice": 5000000.0}],
            "resumeKill": [{"fetched_twice": 1000.0}],
            "coldOurs": [10.0, 20.0, 30.0],
            "coldEmpty": [5.0],
            "coldScript": [12.0, 13.0],
            "wasmCompile": [7.0, 9.0, 8.0],
            "restartOurs": [21.0, null, 25.0],
            "restartEmpty": [4.0],
            "fetchPut": [{"ms": 400.0}, {"ms": 500.0}],
            "fetchPutMany": [{"ms": 1500.0}, null, {"ms": 1700.0}, {"ms": 1600.0}],
            "precacheMany": [{"ms": 2250.0}],
            "fetchPutGrouped": [{"ms": 1250.0, "transactions": 170.0}],
        });
        let plan = Plan::new(&Options {
            engine: Engine::Chromium,
            quick: true,
            json: None,
            size_mib: Some(100),
            memory_mib: None,
            runs: None,
            command_line: String::new(),
        });
        let numbers = Numbers::from_raw(&raw, &plan, 1234, 567).unwrap();
        let object = numbers.json();
        let keys: Vec<&str> = object.keys().map(String::as_str).collect();
        let mut expected = FIELDS.to_vec();
        expected.sort_unstable();
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, expected);
        assert_eq!(object["manager_mib_s"], json!(100));
        assert_eq!(object["cold_start_ms"], json!(20));
        assert_eq!(object["wasm_gzip_bytes"], json!(567));
        assert_eq!(object["schedule_10k_ms_per_item"], Value::Null);
        assert_eq!(object["list_10k_ms"], Value::Null);
        assert_eq!(object["fetch_drain_mib_s"], Value::Null);
        let table = render_table(&numbers.rows(&plan));
        assert!(table.contains("schedule 1000 downloads"), "{table}");
        // The first row naming `needle` shows `cell` in a column of its own.
        let assert_row = |needle: &str, cell: &str| {
            let row = table.lines().find(|l| l.contains(needle));
            let row = row.unwrap_or_else(|| panic!("no row with {needle:?}: {table}"));
            assert!(row.contains(&format!("| {cell} ")), "{row}");
        };
        assert_row("WebAssembly.compile", "8.0");
        assert_row("worker script imported alone", "+7.5 ms");
        // A restart (Chromium: the worker stopped through DevTools): 23 against 4 ms.
        assert_row("worker restart", "+19.0 ms");
        assert!(!object.contains_key("diag_restart_ms"));
        // The manager's throughput is the issue's field; the engine alone is a diagnostic.
        assert_row("through engine* alone (MiB/s)", "50.0");
        assert!(!object.contains_key("diag_engine_mib_s"));
        // Wasm memory: a median of 10.5 MiB at 64 MiB against 9 MiB at 100 MiB, measured first.
        assert_row("peak wasm memory growth, 100 MiB → 64 MiB", "1.5");
        assert_row("peak wasm memory, 100 MiB download, measured first", "9.0");
        // In Chromium the kill is the worker stopped for real; the dropped run is a diagnostic.
        assert_eq!(object["resume_waste_bytes_kill"], json!(5000000));
        assert_row("the worker stopped through DevTools", "5000000");
        assert_row("the run dropped at ~50% instead", "1000");
        // A diagnostic beside the issue's fields: 100 MiB in 450 ms (the median of two runs).
        assert_row("plain JS", "222.2");
        assert!(!object.contains_key("diag_fetch_put_mib_s"));
        // The small-file floors: the median of the runs that answered, in seconds.
        assert_row("one IndexedDB put per file", "1.60");
        assert_row("(fetch + cache.put), 6 at a time", "2.25");
        assert_row("the same, group-committed", "1.25");
        assert!(!object.contains_key("diag_small_files_fetch_put_s"));
        assert!(!object.contains_key("diag_small_files_fetch_put_grouped_s"));
        assert!(!object.contains_key("diag_small_files_precache_concurrent_s"));
    }

    fn plan(quick: bool, size_mib: Option<u64>, runs: Option<u32>) -> Plan {
        Plan::new(&Options {
            engine: Engine::Firefox,
            quick,
            json: None,
            size_mib,
            memory_mib: None,
            runs,
            command_line: String::new(),
        })
    }

    #[test]
    fn only_the_issues_measure_is_written_to_benchmarks_md() {
        assert_eq!(plan(false, None, None).reduced(), None);
        assert_eq!(plan(false, None, Some(8)).reduced(), None);
        assert_eq!(plan(false, Some(256), None).reduced(), None);
        let quick = plan(true, None, None)
            .reduced()
            .expect("a --quick run is reduced");
        assert!(quick.contains("2 run(s) per measure, not 5"), "{quick}");
        assert!(quick.contains("a 16 MiB asset, not 256"), "{quick}");
        assert!(quick.contains("100 small files, not 1000"), "{quick}");
        let fewer = plan(false, None, Some(3))
            .reduced()
            .expect("3 runs are reduced");
        assert!(fewer.starts_with("3 run(s) per measure, not 5"), "{fewer}");
        let smaller = plan(false, Some(64), None)
            .reduced()
            .expect("a smaller asset");
        assert_eq!(smaller, "a 64 MiB asset, not 256");
    }

    #[test]
    fn profiling_switches_are_one_per_line_and_may_hold_spaces() {
        let args = extra_chromium_args(
            "--js-flags=--prof --logfile=/tmp/v8/v8.log\n\n  --enable-logging=stderr \n",
        );
        assert_eq!(
            args,
            [
                "--js-flags=--prof --logfile=/tmp/v8/v8.log",
                "--enable-logging=stderr"
            ]
        );
        assert!(extra_chromium_args(" \n").is_empty());
    }

    #[test]
    fn config_survives_percent_encoding() {
        assert_eq!(percent_encode("{\"a\":1} &"), "%7B%22a%22%3A1%7D%20%26");
    }
}
