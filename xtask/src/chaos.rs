//! `cargo xtask chaos --runs N --seed S [--engine chromium|firefox]`: N downloads of random
//! sizes with random faults, through the library's `DownloadManager` in a service worker that is
//! killed again and again, then every one is checked (issue 8).
//!
//! ```text
//!   seed ──► plan: N × (size, throttle, fault from the CDN's fault language, expected end)
//!   build chaos/ (wasm32) ──► wasm-bindgen web + no-modules ──► <target>/chaos-pkg/
//!   page server: /chaos-pkg/ /chaos/ (chaos/www)              CDN: a second Server
//!   WebDriver ──► /chaos/index.html ──► chaos.wake(): postMessage(plan) to the worker
//!   kill phase: Chromium: CDP ServiceWorker.stopAllWorkers at random times, then wake
//!               Firefox:  dom.serviceWorkers.idle_timeout / idle_extended_timeout prefs end
//!                         a busy worker ~1.3 s after each wake; wakes at random times
//!   settle phase: wake until every download ended (bounded)
//!   verify (page, IndexedDB only) ──► corrupt / lost / failed-typed / untyped
//! ```
//!
//! A download is **corrupt** when something is stored for it whose bytes (read back) differ from
//! the CDN's, or the stored record disagrees with its bytes, or something is stored that the plan
//! never asked for; **lost** when it neither finished nor failed; **failed-typed** when it failed
//! with the typed error its fault explains; **untyped** when it failed any other way (a fault that
//! the library should have recovered from, or an error the fault does not explain). Its end is the
//! delegate's record, or, when a kill came between the manager's decision and that record (the
//! delegate is called once, by the context that decided), what the container holds: the stored
//! asset, or the failure the shared state keeps. The last line
//! is `chaos: N runs, C corrupt, L lost, F failed-typed, U untyped, R unhandled rejections, seed
//! S`; the run passes only when C, L, U and R are 0 (R: promise rejections nothing handled, in
//! the worker, which posts them to the page, or in the page).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};
use xtask::cdn::{generated_sha256, Server, ServerConfig};
use xtask::webdriver::{cdp_execute, Engine, WebDriver};
use xtask::workspace;

const CHAOS_CRATE: &str = "background-assets-chaos";
const CHAOS_STEM: &str = "background_assets_chaos";
const KIB: u64 = 1024;
/// Concurrent transfers in the worker.
const CONCURRENCY: usize = 4;
/// Firefox: how long an idle worker lives, and how long `waitUntil` may extend it (ms).
const FIREFOX_IDLE_MS: u64 = 300;
const FIREFOX_EXTENDED_MS: u64 = 1_000;

/// What `cargo xtask chaos` was asked to do.
#[derive(Clone, Debug)]
pub struct Options {
    /// Downloads.
    pub runs: u32,
    /// The seed of the plan and of the kill times.
    pub seed: u64,
    /// The browser.
    pub engine: Engine,
}

/// How a chaos run ended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    pub runs: u32,
    pub finished: u32,
    pub corrupt: u32,
    pub lost: u32,
    pub failed_typed: u32,
    pub untyped: u32,
    /// Kills the driver made (Chromium), or worker instances ended while busy (Firefox).
    pub kills: u32,
    /// Worker instances that ran the plan (the first one, and one more after each kill).
    pub starts: u32,
    /// Ended, but the delegate's `did_finish` / `did_fail` was never recorded (the worker was
    /// killed between the manager's decision and the delegate's write): the end is read from
    /// what the container holds (the stored asset, or the failure the shared state keeps).
    pub unrecorded: u32,
    /// Promise rejections nothing handled, in the worker or the page (each reason).
    pub unhandled: Vec<String>,
    pub seed: u64,
}

impl Verdict {
    /// Nothing corrupt, nothing lost, nothing failed untyped, no unhandled promise rejection.
    pub fn passed(&self) -> bool {
        self.corrupt == 0 && self.lost == 0 && self.untyped == 0 && self.unhandled.is_empty()
    }

    /// The issue's last line.
    pub fn line(&self) -> String {
        format!(
            "chaos: {} runs, {} corrupt, {} lost, {} failed-typed, {} untyped, {} unhandled \
             rejections, seed {}",
            self.runs,
            self.corrupt,
            self.lost,
            self.failed_typed,
            self.untyped,
            self.unhandled.len(),
            self.seed
        )
    }
}

/// SplitMix64: a small seeded generator (no dependency), the same sequence on every machine.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }
}

/// How a planned download must end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Finished with the CDN's bytes (the fault is one the library recovers from).
    Finish,
    /// Failed with one of these `Error::name()`s.
    Fail(&'static [&'static str]),
    /// Finished, or failed with one of these: a fault that fails every *resume* (each one a
    /// failed attempt; the count survives the context) can use up the attempts when kills keep
    /// forcing resumes.
    FinishOr(&'static [&'static str]),
}

impl Expect {
    fn explains(&self, name: &str) -> bool {
        match self {
            Expect::Finish => false,
            Expect::Fail(names) | Expect::FinishOr(names) => names.contains(&name),
        }
    }
}

/// One planned download.
#[derive(Clone, Debug)]
pub struct PlannedRun {
    pub id: String,
    pub len: u64,
    pub gen_seed: u64,
    /// Path and query on the CDN.
    pub path: String,
    pub declared: Option<u64>,
    /// The fault's name, for the report.
    pub fault: &'static str,
    pub expect: Expect,
}

/// The plan of `runs` downloads from `seed`. `localhost_origin` is the CDN under a host name
/// outside the allow-list (for the refused redirect).
pub fn plan(runs: u32, seed: u64, localhost_origin: &str) -> Vec<PlannedRun> {
    let mut rng = Rng::new(seed);
    (0..runs)
        .map(|i| {
            let len = rng.range(16 * KIB, 1536 * KIB);
            let gen_seed = rng.range(1, 1_000_000);
            let mut declared = rng.chance(80).then_some(len);
            let cut = rng.range(1, len - 1);
            let roll = rng.range(0, 99);
            let finish = Expect::Finish;
            let (fault, query, expect): (&'static str, String, Expect) = match roll {
                0..=29 => ("none", String::new(), finish),
                30..=37 => ("drop", format!("fault=drop:{cut}&times=1"), finish),
                38..=43 => (
                    "short",
                    format!("fault=short:{}&times=1", cut.min(len / 2)),
                    finish,
                ),
                44..=49 => ("no-range", "fault=no-range".into(), finish),
                50..=55 => ("etag-change", "fault=etag-change".into(), finish),
                56..=61 => (
                    "bad-content-range",
                    "fault=bad-content-range".into(),
                    Expect::FinishOr(&["RetriesExhausted"]),
                ),
                62..=66 => (
                    "no-validator",
                    format!("fault=no-validator,drop:{cut}&times=1"),
                    finish,
                ),
                67..=71 => (
                    "stall-once",
                    format!("fault=stall:{cut}&stall-ms=4000&times=1"),
                    finish,
                ),
                72..=77 => {
                    let after = if rng.chance(50) { "&retry-after=1" } else { "" };
                    (
                        "503-once",
                        format!("fault=status:503&times=1{after}"),
                        finish,
                    )
                }
                78..=81 => (
                    "redirect",
                    format!("fault=redirect:/gen/{len}/{gen_seed}%3Fr%3D{i}"),
                    finish,
                ),
                82..=85 => {
                    let status = if rng.chance(50) { 404 } else { 410 };
                    (
                        "404/410",
                        format!("fault=status:{status}"),
                        Expect::Fail(&["HttpStatus"]),
                    )
                }
                86..=89 => (
                    "503-always",
                    "fault=status:503".into(),
                    Expect::Fail(&["RetriesExhausted"]),
                ),
                90..=93 => {
                    declared = Some(len);
                    (
                        "long",
                        format!("fault=long:{}", rng.range(1, 4096)),
                        Expect::Fail(&["SizeMismatch"]),
                    )
                }
                94..=96 => (
                    "redirect-disallowed",
                    format!("fault=redirect-origin:{localhost_origin}/gen/{len}/{gen_seed}"),
                    Expect::Fail(&["SessionDownloadDisallowedByDomain"]),
                ),
                _ => (
                    "stall-always",
                    format!("fault=stall:{},no-range&stall-ms=4000", cut.min(64 * KIB)),
                    Expect::Fail(&["Stalled", "RetriesExhausted"]),
                ),
            };
            let throttle = rng
                .chance(60)
                .then(|| format!("throttle={}", rng.range(256 * KIB, 2048 * KIB)));
            let query: Vec<String> = [Some(query), throttle, Some(format!("run={seed}-{i}"))]
                .into_iter()
                .flatten()
                .filter(|q| !q.is_empty())
                .collect();
            PlannedRun {
                id: format!("chaos-{i}"),
                len,
                gen_seed,
                path: format!("/gen/{len}/{gen_seed}?{}", query.join("&")),
                declared,
                fault,
                expect,
            }
        })
        .collect()
}

/// A seed from the clock, for runs that were not given one (the last line prints it).
pub fn time_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64 % 1_000_000)
        .unwrap_or(1)
}

/// Builds, runs the plan in the browser while killing its worker, verifies, prints the report
/// and the last line. Returns the verdict (check [`Verdict::passed`]).
pub fn run(options: &Options) -> Result<Verdict> {
    let started = Instant::now();
    let pkg = build_chaos_package()?;
    let page = Server::start(ServerConfig::no_store(vec![
        ("/chaos-pkg/", pkg),
        ("/chaos/", workspace::root().join("chaos").join("www")),
    ]))
    .context("chaos: starting the page server")?;
    let cdn = Server::start(ServerConfig::default()).context("chaos: starting the CDN")?;
    let localhost = cdn.origin().replacen("127.0.0.1", "localhost", 1);
    let planned = plan(options.runs, options.seed, &localhost);
    let plan_json = json!({
        "database": format!("chaos-{}", options.seed),
        "cdn": cdn.origin(),
        "windowMs": 20_000.0,
        "concurrency": CONCURRENCY,
        "runs": planned.iter().map(|r| json!({
            "id": r.id, "path": r.path, "declared": r.declared,
        })).collect::<Vec<_>>(),
    });
    let driver = WebDriver::start(options.engine)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("chaos: starting a tokio runtime")?;
    println!(
        "chaos: {} runs in {}, seed {}, page {}, CDN {}",
        options.runs,
        options.engine,
        options.seed,
        page.origin(),
        cdn.origin()
    );
    let url = format!("{}/chaos/index.html", page.origin());
    let session = runtime.block_on(drive(&driver, &url, &plan_json, options));
    drop(driver);
    drop(page);
    drop(cdn);
    let session = session?;
    let mut verdict = classify(&planned, &session.verify, options.seed);
    verdict.kills = session.kills;
    verdict.starts = session.starts;
    verdict.unhandled = session.unhandled;
    for reason in &verdict.unhandled {
        println!("chaos: unhandled promise rejection: {reason}");
    }
    println!(
        "chaos: {} finished ({} ends without a recorded delegate call), {} kills, {} worker starts, \
         {:.1} s",
        verdict.finished,
        verdict.unrecorded,
        verdict.kills,
        verdict.starts,
        started.elapsed().as_secs_f64()
    );
    println!("{}", verdict.line());
    Ok(verdict)
}

/// Downloads in the short chaos run of `cargo xtask test` (per engine).
pub const TEST_RUNS: u32 = 20;

/// The short chaos run of `cargo xtask test` in `engine` (a clock seed, printed in the row), as a
/// summary row: passed = finished + failed-typed, failed = corrupt + lost + untyped.
pub fn test_row(engine: Engine) -> crate::summary::Row {
    let started = Instant::now();
    let options = Options {
        runs: TEST_RUNS,
        seed: time_seed(),
        engine,
    };
    match run(&options) {
        Ok(verdict) => crate::summary::Row {
            suite: "chaos".into(),
            engine: engine.name().into(),
            counts: Some(crate::summary::Counts {
                passed: (verdict.finished + verdict.failed_typed) as u64,
                failed: (verdict.corrupt + verdict.lost + verdict.untyped) as u64,
                ignored: 0,
            }),
            failure: (!verdict.passed()).then(|| verdict.line()),
            time: started.elapsed(),
        },
        Err(e) => crate::summary::Row::check(
            "chaos",
            engine.name(),
            Some(format!("seed {}: {e:#}", options.seed)),
            started.elapsed(),
        ),
    }
}

/// Builds the chaos crate for wasm32 and runs wasm-bindgen for the page (`web`) and the worker
/// (`no-modules`); returns the directory holding `web/` and `worker/`.
fn build_chaos_package() -> Result<PathBuf> {
    crate::build::page_and_worker_package(CHAOS_CRATE, CHAOS_STEM, false, "chaos")
}

/// What the browser session produced.
struct Session {
    verify: Value,
    unhandled: Vec<String>,
    kills: u32,
    starts: u32,
}

async fn drive(driver: &WebDriver, url: &str, plan: &Value, options: &Options) -> Result<Session> {
    let mut caps = driver.capabilities();
    if options.engine == Engine::Firefox {
        // A busy worker is terminated FIREFOX_EXTENDED_MS after its idle timeout: a real kill,
        // mid-download, after every wake.
        if let Some(prefs) = caps
            .get_mut("moz:firefoxOptions")
            .and_then(|o| o.get_mut("prefs"))
            .and_then(Value::as_object_mut)
        {
            prefs.insert(
                "dom.serviceWorkers.idle_timeout".into(),
                json!(FIREFOX_IDLE_MS),
            );
            prefs.insert(
                "dom.serviceWorkers.idle_extended_timeout".into(),
                json!(FIREFOX_EXTENDED_MS),
            );
        }
    }
    let client = ClientBuilder::new(HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url())
        .await
        .with_context(|| format!("opening a {} session at {}", driver.engine(), driver.url()))?;
    let outcome = session(&client, driver, url, plan, options).await;
    let _ = client.close().await;
    outcome
}

async fn session(
    client: &Client,
    driver: &WebDriver,
    url: &str,
    plan: &Value,
    options: &Options,
) -> Result<Session> {
    client
        .goto(url)
        .await
        .with_context(|| format!("opening {url}"))?;
    let ready_by = Instant::now() + Duration::from_secs(60);
    loop {
        let status = client.find(Locator::Id("status")).await?;
        match status.attr("data-state").await?.as_deref() {
            Some("ready") => break,
            Some("error") => {
                let error = status.attr("data-error").await?.unwrap_or_default();
                bail!("the chaos page failed: {error}");
            }
            _ => {}
        }
        if Instant::now() > ready_by {
            bail!("the chaos page was not ready within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    client
        .execute(
            "window.chaos.plan = arguments[0]; return true;",
            vec![json!(plan.to_string())],
        )
        .await
        .context("handing the plan to the page")?;
    wake(client).await?;

    let session_id = client.session_id().await?.unwrap_or_default();
    let cdp = |cmd: &str| cdp_execute(&driver.url(), &session_id, cmd, json!({}));
    if options.engine == Engine::Chromium {
        cdp("ServiceWorker.enable")?;
    }
    let runs = options.runs as u64;
    let mut rng = Rng::new(options.seed ^ 0x6b69_6c6c);
    // At least one kill per four runs (and 3), while anything is still running.
    let kill_target = (options.runs / 4).max(3);
    let deadline = Instant::now() + Duration::from_secs(60 + runs * 2);
    let mut kills = 0u32;
    let mut last_status: Value;
    let mut next_event = Instant::now() + Duration::from_millis(rng.range(300, 1200));
    let mut printed = Instant::now();
    loop {
        let status = status(client).await?;
        let ended = status["ended"].as_u64().unwrap_or(0);
        if ended >= runs {
            last_status = status;
            break;
        }
        if printed.elapsed() > Duration::from_secs(5) {
            println!("chaos: {ended}/{runs} ended, {kills} kills, status {status}");
            printed = Instant::now();
        }
        last_status = status;
        if Instant::now() > deadline {
            println!("chaos: deadline reached with {ended}/{runs} ended");
            break;
        }
        let killing = kills < kill_target;
        if Instant::now() >= next_event {
            match options.engine {
                Engine::Chromium if killing => {
                    cdp("ServiceWorker.stopAllWorkers")?;
                    kills += 1;
                    tokio::time::sleep(Duration::from_millis(rng.range(0, 250))).await;
                    wake(client).await?;
                    next_event = Instant::now() + Duration::from_millis(rng.range(300, 1200));
                }
                Engine::Chromium => {
                    // Settling: the worker lives on its own; a wake now and then is harmless.
                    wake(client).await?;
                    next_event = Instant::now() + Duration::from_secs(5);
                }
                Engine::Firefox => {
                    // The prefs end the worker ~1.3 s after each wake; while killing, wake at
                    // random times after that, and while settling, often enough to keep it up.
                    wake(client).await?;
                    let pause = if killing {
                        kills += 1;
                        rng.range(1_500, 2_500)
                    } else {
                        rng.range(200, 400)
                    };
                    next_event = Instant::now() + Duration::from_millis(pause);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    // Give the last recorded outcomes a moment to commit, then read everything back.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let verify = call(client, "verify").await?;
    let verify: Value = serde_json::from_str(verify.as_str().unwrap_or("null"))
        .context("parsing the page's verification")?;
    let unhandled = client
        .execute("return window.chaos.unhandled;", vec![])
        .await
        .context("reading the unhandled rejections")?;
    let unhandled = unhandled
        .as_array()
        .into_iter()
        .flatten()
        .map(|reason| reason.as_str().unwrap_or("?").to_string())
        .collect();
    let starts = status_starts(&last_status);
    let kills = match options.engine {
        Engine::Chromium => kills,
        // Firefox kills are the pref's: every instance after the first replaced a killed one.
        Engine::Firefox => starts.saturating_sub(1),
    };
    Ok(Session {
        verify,
        unhandled,
        kills,
        starts,
    })
}

fn status_starts(status: &Value) -> u32 {
    status["starts"].as_f64().unwrap_or(0.0) as u32
}

async fn wake(client: &Client) -> Result<()> {
    client
        .execute("return window.chaos.wake();", vec![])
        .await
        .context("waking the worker")?;
    Ok(())
}

/// Calls `window.chaos.<name>()` (a promise of a string) and returns its value.
async fn call(client: &Client, name: &str) -> Result<Value> {
    let script = format!(
        "const done = arguments[arguments.length - 1];
         window.chaos.{name}().then((v) => done({{ ok: v }}), (e) => done({{ error: String(e) }}));"
    );
    let answer = client
        .execute_async(&script, vec![])
        .await
        .with_context(|| format!("calling chaos.{name}()"))?;
    if let Some(error) = answer.get("error") {
        bail!("chaos.{name}() failed: {error}");
    }
    Ok(answer["ok"].clone())
}

async fn status(client: &Client) -> Result<Value> {
    let text = call(client, "status").await?;
    serde_json::from_str(text.as_str().unwrap_or("null")).context("parsing the page's status")
}

/// Sorts every planned download into finished / corrupt / lost / failed-typed / untyped, and
/// prints one line per download that is not as expected.
pub fn classify(planned: &[PlannedRun], verify: &Value, seed: u64) -> Verdict {
    let mut verdict = Verdict {
        runs: planned.len() as u32,
        seed,
        ..Verdict::default()
    };
    let by_id: BTreeMap<&str, &Value> = verify["runs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| Some((v["id"].as_str()?, v)))
        .collect();
    for run in planned {
        let seen = by_id.get(run.id.as_str()).copied().unwrap_or(&Value::Null);
        let stored = &seen["stored"];
        // Delegate callbacks are delivered once, by the context that made the decision: a kill
        // right after the failure was saved loses the delegate's record of it, not the failure,
        // which the shared state keeps (as an app reads it after a restart).
        let from_state =
            seen["outcome"].is_null() && stored.is_null() && !seen["failure"].is_null();
        let outcome = if from_state {
            &seen["failure"]
        } else {
            &seen["outcome"]
        };
        let describe = || {
            format!(
                "{} ({} bytes, fault {}, {}): outcome {outcome}, state {}, stored {stored}",
                run.id, run.len, run.fault, run.path, seen["state"]
            )
        };
        if !stored.is_null() {
            let expected = generated_sha256(run.len, run.gen_seed);
            let exact = stored["size"].as_u64() == Some(run.len)
                && stored["sha256"].as_str() == Some(expected.as_str())
                && stored["recordSize"] == stored["size"]
                && stored["recordSha256"] == stored["sha256"];
            if exact {
                verdict.finished += 1;
                if outcome["kind"] == "failed" {
                    // Stored intact but reported failed: the app was told a lie.
                    verdict.untyped += 1;
                    println!(
                        "chaos: untyped (stored but reported failed): {}",
                        describe()
                    );
                } else if outcome.is_null() {
                    verdict.unrecorded += 1;
                    println!(
                        "chaos: note: stored intact, its did_finish never recorded: {}",
                        describe()
                    );
                } else if matches!(run.expect, Expect::Fail(_)) {
                    println!("chaos: note: finished despite its fault: {}", describe());
                }
            } else {
                verdict.corrupt += 1;
                println!(
                    "chaos: CORRUPT: {} (expected sha256 {expected})",
                    describe()
                );
            }
            continue;
        }
        if from_state {
            verdict.unrecorded += 1;
            println!(
                "chaos: note: failed, its did_fail never recorded (the stored state's failure): {}",
                describe()
            );
        }
        match outcome["kind"].as_str() {
            Some("failed") => {
                let name = outcome["name"].as_str().unwrap_or("");
                match &run.expect {
                    expect if expect.explains(name) => verdict.failed_typed += 1,
                    _ => {
                        verdict.untyped += 1;
                        println!("chaos: untyped failure: {}", describe());
                    }
                }
            }
            Some("finished") => {
                verdict.lost += 1;
                println!(
                    "chaos: LOST (reported finished, nothing stored): {}",
                    describe()
                );
            }
            _ => {
                verdict.lost += 1;
                println!("chaos: LOST (never ended): {}", describe());
            }
        }
    }
    let t0 = verify["t0"].as_f64().unwrap_or(0.0);
    let mut slowest: Vec<(f64, &PlannedRun)> = planned
        .iter()
        .filter_map(|run| {
            let at = by_id.get(run.id.as_str())?["outcome"]["at"].as_f64()?;
            Some(((at - t0) / 1000.0, run))
        })
        .collect();
    slowest.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (seconds, run) in slowest.iter().take(3) {
        println!(
            "chaos: slowest: {} ended after {seconds:.1} s ({} bytes, fault {}, {})",
            run.id, run.len, run.fault, run.path
        );
    }
    for stray in verify["strays"].as_array().into_iter().flatten() {
        verdict.corrupt += 1;
        println!("chaos: CORRUPT: stored asset {stray} the plan never asked for");
    }
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_is_a_function_of_the_seed() {
        let a = plan(50, 7, "http://localhost:1");
        let b = plan(50, 7, "http://localhost:1");
        let c = plan(50, 8, "http://localhost:1");
        let paths = |p: &[PlannedRun]| p.iter().map(|r| r.path.clone()).collect::<Vec<_>>();
        assert_eq!(paths(&a), paths(&b));
        assert_ne!(paths(&a), paths(&c));
        assert!(a.iter().all(|r| (16 * KIB..=1536 * KIB).contains(&r.len)));
        assert!(a.iter().any(|r| r.expect == Expect::Finish));
        assert!(a.iter().any(|r| r.expect != Expect::Finish));
        let long = plan(400, 1, "http://localhost:1");
        assert!(long
            .iter()
            .filter(|r| r.fault == "long")
            .all(|r| r.declared == Some(r.len)));
    }

    fn run_of(expect: Expect) -> PlannedRun {
        PlannedRun {
            id: "chaos-0".into(),
            len: 10,
            gen_seed: 3,
            path: "/gen/10/3".into(),
            declared: Some(10),
            fault: "test",
            expect,
        }
    }

    fn verify(outcome: Value, stored: Value) -> Value {
        json!({ "runs": [{ "id": "chaos-0", "outcome": outcome, "state": null, "stored": stored }],
                "strays": [] })
    }

    #[test]
    fn a_failure_the_delegate_never_recorded_is_read_from_the_stored_state() {
        let with_failure = |name: &str| {
            json!({ "runs": [{ "id": "chaos-0", "outcome": null, "state": "Failed", "stored": null,
                               "failure": { "kind": "failed", "name": name, "code": 1301 } }],
                       "strays": [] })
        };
        let typed = Expect::Fail(&["HttpStatus"]);
        let v = classify(&[run_of(typed.clone())], &with_failure("HttpStatus"), 1);
        assert_eq!(
            (v.failed_typed, v.unrecorded, v.lost, v.passed()),
            (1, 1, 0, true)
        );
        // The stored failure is classified like a recorded one: a wrong type is still untyped.
        let v = classify(&[run_of(typed)], &with_failure("Storage"), 1);
        assert_eq!((v.untyped, v.passed()), (1, false));
        // No recorded end and no stored failure: lost.
        let none = json!({ "runs": [{ "id": "chaos-0", "outcome": null, "state": "Failed",
                                      "stored": null, "failure": null }], "strays": [] });
        assert_eq!(classify(&[run_of(Expect::Finish)], &none, 1).lost, 1);
    }

    #[test]
    fn classify_sorts_every_kind_of_end() {
        let good = generated_sha256(10, 3);
        let stored =
            |sha: &str| json!({ "size": 10, "sha256": sha, "recordSize": 10, "recordSha256": sha });
        let finished = json!({ "kind": "finished" });
        let failed = |name: &str| json!({ "kind": "failed", "name": name });
        let v = classify(
            &[run_of(Expect::Finish)],
            &verify(finished.clone(), stored(&good)),
            1,
        );
        assert_eq!((v.finished, v.passed()), (1, true));
        let v = classify(
            &[run_of(Expect::Finish)],
            &verify(finished.clone(), stored("00")),
            1,
        );
        assert_eq!(v.corrupt, 1);
        let v = classify(&[run_of(Expect::Finish)], &verify(finished, Value::Null), 1);
        assert_eq!(v.lost, 1);
        let v = classify(
            &[run_of(Expect::Finish)],
            &verify(Value::Null, Value::Null),
            1,
        );
        assert_eq!((v.lost, v.passed()), (1, false));
        let typed = Expect::Fail(&["HttpStatus"]);
        let v = classify(
            &[run_of(typed.clone())],
            &verify(failed("HttpStatus"), Value::Null),
            1,
        );
        assert_eq!((v.failed_typed, v.passed()), (1, true));
        let v = classify(&[run_of(typed)], &verify(failed("Storage"), Value::Null), 1);
        assert_eq!(v.untyped, 1);
        let v = classify(
            &[run_of(Expect::Finish)],
            &verify(failed("Network"), Value::Null),
            1,
        );
        assert_eq!(v.untyped, 1);
        let strays = json!({ "runs": [], "strays": ["x"] });
        assert_eq!(classify(&[], &strays, 1).corrupt, 1);
        assert_eq!(
            Verdict {
                runs: 3,
                lost: 1,
                seed: 9,
                ..Verdict::default()
            }
            .line(),
            "chaos: 3 runs, 0 corrupt, 1 lost, 0 failed-typed, 0 untyped, 0 unhandled \
             rejections, seed 9"
        );
        let rejected = Verdict {
            runs: 3,
            finished: 3,
            unhandled: vec!["worker: AbortError: aborted".into()],
            ..Verdict::default()
        };
        assert!(!rejected.passed());
        assert!(rejected.line().contains("1 unhandled rejections"));
    }
}
