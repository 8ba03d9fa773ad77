//! `cargo xtask demo --headless`: drives the demo PWA in a headless browser through the whole
//! Background Assets story and reports each step.
//!
//! ```text
//!  1 first visit            page loads its wasm, opens the shared DownloadManager, sets a delegate
//!  2 worker install         the service worker installs; its didInstall hook is called
//!  3 essential pack         world-1 (essential) downloaded during the install
//!  4 first launch           manager.ready() resolves; launch() lifts the restrictions; page controlled
//!  5 prefetch pack          world-2 (prefetch) downloaded in the background
//!  6 on-demand pack         ensureLocalAvailability("trailer"): the video
//!  7 offline reload         Chromium: CDP Network.emulateNetworkConditions(offline) and the worker
//!                           stopped (CDP ServiceWorker.stopAllWorkers); no page or asset request may
//!                           reach the app server or the CDN; Firefox: both servers are stopped
//!                           (no network emulation over WebDriver). The page reloads from the
//!                           worker and reads every pack file back (size, SHA-256, a Range request)
//!  8 video seek offline     seek to 6 s, play: currentTime moves; the worker saw Range requests
//! ```
//!
//! The page's state is read from its data attributes (`window.demo.state()`, see `www/app.js`).
//! A screenshot of the final page is saved as PNG. Exit status 0 only if every step held.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use fantoccini::wd::{TimeoutConfiguration, WebDriverCompatibleCommand};
use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};
use xtask::webdriver::{Engine, WebDriver};
use xtask::workspace;

use crate::demo::{DemoSite, Options};
use crate::demo_packs::{file_url, DemoPack, FileLocation};

/// How long one step may take before the flow gives up on it.
const STEP_TIMEOUT: Duration = Duration::from_secs(120);
/// How often the page state is polled.
const POLL: Duration = Duration::from_millis(200);
/// Where the video is seeked to (it lasts 10 s).
const SEEK_TO_SECONDS: f64 = 6.0;

/// One step of the report.
struct Step {
    name: &'static str,
    ok: bool,
    time: Duration,
    bytes: Option<u64>,
    detail: String,
}

/// The page's state (`window.demo.state()`) just before going offline and at the end.
struct PageStates {
    before_offline: Value,
    last: Value,
}

/// Sends a Chrome DevTools Protocol command through chromedriver (`goog/cdp/execute`).
#[derive(Debug)]
struct Cdp {
    method: &'static str,
    params: Value,
}

impl WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/goog/cdp/execute",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (http::Method, Option<String>) {
        let body = json!({ "cmd": self.method, "params": self.params });
        (http::Method::POST, Some(body.to_string()))
    }
}

/// Runs the flow; prints the report; `Ok(true)` if every step held.
pub fn run(options: &Options, site: DemoSite) -> Result<bool> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("demo: building a tokio runtime")?;
    runtime.block_on(drive(options, site))
}

async fn drive(options: &Options, mut site: DemoSite) -> Result<bool> {
    let engine = options.engine;
    let driver = WebDriver::start(engine)?;
    let client = ClientBuilder::new(HttpConnector::new())
        .capabilities(driver.capabilities())
        .connect(&driver.url())
        .await
        .with_context(|| format!("opening a {engine} session at {}", driver.url()))?;
    let outcome = flow(&client, options, &mut site).await;
    let screenshot = save_screenshot(&client, options).await;
    let _ = client.close().await;
    drop(driver);
    let (steps, states) = outcome?;

    let all_ok = steps.len() == STEP_NAMES.len() && steps.iter().all(|s| s.ok);
    print_report(options, &site, &steps);
    // Errors the page logged that no step depends on (shown, not counted as a failed step).
    for (when, state) in [
        ("first visit", &states.before_offline),
        ("after the offline reload", &states.last),
    ] {
        for entry in state["log"].as_array().into_iter().flatten() {
            if entry["name"] == "error" {
                println!(
                    "demo: note: the page logged an error ({when}): {}",
                    s_str(&entry["text"])
                );
            }
        }
    }
    match &screenshot {
        Ok(path) => println!("demo: screenshot {}", path.display()),
        Err(e) => println!("demo: screenshot failed: {e:#}"),
    }
    println!(
        "demo: {} ({} of {} steps held)",
        if all_ok && screenshot.is_ok() {
            "every step held"
        } else {
            "FAILED"
        },
        steps.iter().filter(|s| s.ok).count(),
        STEP_NAMES.len()
    );
    if let Some(path) = &options.report_json {
        let report = json!({
            "engine": engine.name(),
            "scale": options.scale.name(),
            "ok": all_ok && screenshot.is_ok(),
            "filesBase": site.files_base,
            "screenshot": screenshot.as_ref().ok(),
            "steps": steps.iter().map(|s| json!({
                "name": s.name, "ok": s.ok, "ms": s.time.as_millis() as u64,
                "bytes": s.bytes, "detail": s.detail,
            })).collect::<Vec<_>>(),
            "stateBeforeOffline": states.before_offline,
            "finalState": states.last,
        });
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(all_ok && screenshot.is_ok())
}

const STEP_NAMES: [&str; 8] = [
    "first visit",
    "worker install",
    "essential pack downloaded",
    "first launch",
    "prefetch pack in the background",
    "on-demand pack (video)",
    "offline reload from the container",
    "video seek offline",
];

/// Runs the steps in order; stops at the first that fails (the later ones depend on it).
async fn flow(
    client: &Client,
    options: &Options,
    site: &mut DemoSite,
) -> Result<(Vec<Step>, PageStates)> {
    client
        .update_timeouts(TimeoutConfiguration::new(
            Some(Duration::from_secs(120)),
            Some(Duration::from_secs(60)),
            None,
        ))
        .await
        .context("setting WebDriver timeouts")?;
    let _ = client.set_window_size(1280, 1600).await;
    let mut steps = Vec::new();
    let mut before_offline = Value::Null;
    let packs = site.packs.clone();
    let by_policy =
        |policy: &str| -> Vec<&DemoPack> { packs.iter().filter(|p| p.policy == policy).collect() };
    let essential = by_policy("essential");
    let prefetch = by_policy("prefetch");
    let on_demand = by_policy("onDemand");

    macro_rules! step {
        ($index:expr, $body:expr) => {{
            let started = Instant::now();
            let result: Result<(Option<u64>, String)> = $body.await;
            let (ok, bytes, detail) = match result {
                Ok((bytes, detail)) => (true, bytes, detail),
                Err(e) => (false, None, format!("{e:#}")),
            };
            steps.push(Step {
                name: STEP_NAMES[$index],
                ok,
                time: started.elapsed(),
                bytes,
                detail,
            });
            if !ok {
                let last = page_state(client).await.unwrap_or(Value::Null);
                return Ok((
                    steps,
                    PageStates {
                        before_offline,
                        last,
                    },
                ));
            }
        }};
    }

    let url = format!("{}/", site.app_origin);
    step!(0, async {
        client
            .goto(&url)
            .await
            .with_context(|| format!("opening {url}"))?;
        let state = wait_for(client, "the page to open the manager", |s| {
            body(s, "state") == "ready"
        })
        .await?;
        Ok((
            None,
            format!(
                "{url} loaded; page wasm {}; delegate set",
                s_str(&state["status"]["pageVersion"])
            ),
        ))
    });
    step!(1, async {
        let state = wait_for(client, "the extension's didInstall hook", |s| {
            log_has(s, "hook", "didInstall")
        })
        .await?;
        Ok((
            None,
            format!(
                "worker {}; hooks logged: {}",
                body(&state, "worker"),
                log_names(&state, "hook")
            ),
        ))
    });
    step!(2, async {
        wait_for_packs(client, &essential, "downloaded").await?;
        let bytes = pack_bytes(&essential);
        Ok((
            Some(bytes),
            format!(
                "{}; {}",
                pack_names(&essential),
                cdn_bytes(site, &essential)
            ),
        ))
    });
    step!(3, async {
        let state = wait_for(client, "ready(), launch() and a controlling worker", |s| {
            body(s, "ready") == "true"
                && body(s, "launched") == "true"
                && body(s, "controlled") == "true"
        })
        .await?;
        let installable = check_installable(client, options.engine).await?;
        Ok((
            None,
            format!(
                "essentials ready, launched, worker {} controls the page; {installable}",
                body(&state, "worker")
            ),
        ))
    });
    step!(4, async {
        wait_for_packs(client, &prefetch, "downloaded").await?;
        Ok((
            Some(pack_bytes(&prefetch)),
            format!("{}; {}", pack_names(&prefetch), cdn_bytes(site, &prefetch)),
        ))
    });
    step!(5, async {
        for pack in &on_demand {
            let answer = client
                .execute(
                    "return window.demo.ensure(arguments[0]).then(() => 'ok', (e) => String(e && e.message || e));",
                    vec![json!(pack.id)],
                )
                .await
                .context("calling demo.ensure")?;
            if answer != "ok" {
                bail!("ensureLocalAvailability({}) failed: {answer}", pack.id);
            }
        }
        wait_for_packs(client, &on_demand, "downloaded").await?;
        Ok((
            Some(pack_bytes(&on_demand)),
            format!(
                "{}; {}",
                pack_names(&on_demand),
                cdn_bytes(site, &on_demand)
            ),
        ))
    });
    // The log of the first visit (delegate callbacks, hooks) is gone after the reload: keep it.
    before_offline = page_state(client).await.unwrap_or(Value::Null);
    let offline_how = go_offline(client, options.engine, site).await;
    step!(6, async {
        let how = offline_how?;
        // A navigation to the same URL (WebDriver's refresh bypasses the worker in Firefox).
        client
            .goto(&url)
            .await
            .with_context(|| format!("opening {url} again"))?;
        let everything: Vec<&DemoPack> = packs.iter().collect();
        wait_for(
            client,
            "the reloaded page launched with every pack downloaded",
            |s| {
                body(s, "state") == "ready"
                    && everything
                        .iter()
                        .all(|p| pack_field(s, p.id, "status") == "downloaded")
                    && (options.engine != Engine::Chromium || body(s, "online") == "false")
                    // The app launches offline too (the update check's failure is reported,
                    // not fatal).
                    && body(s, "launched") == "true"
            },
        )
        .await?;
        let verify = client
            .execute("return window.demo.verify();", vec![])
            .await
            .context("calling demo.verify")?;
        let files: usize = packs.iter().map(|p| p.files.len()).sum();
        let bytes = pack_bytes(&everything);
        if s_str(&verify["state"]) != "ok" {
            bail!("verify: {verify}");
        }
        if s_str(&verify["files"]) != files.to_string()
            || s_str(&verify["bytes"]) != bytes.to_string()
        {
            bail!("verify read {verify}, expected {files} files and {bytes} bytes");
        }
        let (leaked, housekeeping) = server_requests(site);
        if !leaked.is_empty() {
            bail!("requests reached the servers while offline: {leaked:?}");
        }
        Ok((
            Some(bytes),
            format!(
                "{how}; {files} files read back through the worker in {} ms (size, SHA-256, Range); no page or asset request reached a server{}",
                s_str(&verify["ms"]),
                housekeeping_note(&housekeeping)
            ),
        ))
    });
    step!(7, async {
        let seek = client
            .execute(
                "return window.demo.seekCheck(arguments[0]);",
                vec![json!(SEEK_TO_SECONDS)],
            )
            .await
            .context("calling demo.seekCheck")?;
        let after_seek = seek["afterSeek"].as_f64().unwrap_or(-1.0);
        let after_play = seek["afterPlay"].as_f64().unwrap_or(-1.0);
        if (after_seek - SEEK_TO_SECONDS).abs() > 0.5 {
            bail!("currentTime {after_seek} after seeking to {SEEK_TO_SECONDS}: {seek}");
        }
        if after_play < after_seek + 0.3 {
            bail!("currentTime did not move while playing after the seek: {seek}");
        }
        let state = page_state(client).await?;
        let video_ranges: u64 = s_str(&state["workerRequests"]["videoRanges"])
            .parse()
            .unwrap_or(0);
        if video_ranges == 0 {
            bail!(
                "the worker saw no Range request from the <video> element: {}",
                state["workerRequests"]
            );
        }
        let (leaked, _) = server_requests(site);
        if !leaked.is_empty() {
            bail!("requests reached the servers while offline: {leaked:?}");
        }
        Ok((
            None,
            format!(
                "seeked to {after_seek:.2} s, played to {after_play:.2} s; the worker served the <video> {} requests, {video_ranges} with Range (last: {})",
                s_str(&state["workerRequests"]["video"]),
                s_str(&state["workerRequests"]["lastVideoRange"])
            ),
        ))
    });
    let last = page_state(client).await.unwrap_or(Value::Null);
    Ok((
        steps,
        PageStates {
            before_offline,
            last,
        },
    ))
}

/// The web app manifest is linked, parses and names 192 and 512 px icons that load; in Chromium
/// also CDP `Page.getInstallabilityErrors` must be empty (what the install prompt checks).
async fn check_installable(client: &Client, engine: Engine) -> Result<String> {
    let manifest = client
        .execute(
            r#"const link = document.querySelector('link[rel="manifest"]');
               if (!link) return { error: 'no <link rel="manifest">' };
               return fetch(link.href).then((r) => r.json()).then(async (m) => {
                 const icons = [];
                 for (const icon of m.icons || []) {
                   const r = await fetch(new URL(icon.src, link.href));
                   const b = new Uint8Array(await r.arrayBuffer());
                   icons.push({ sizes: icon.sizes, ok: r.ok && b[1] === 0x50 && b[2] === 0x4e && b[3] === 0x47 });
                 }
                 return { name: m.name, display: m.display, startUrl: m.start_url, icons };
               }, (e) => ({ error: String(e) }));"#,
            vec![],
        )
        .await
        .context("reading the web app manifest")?;
    if let Some(error) = manifest.get("error") {
        bail!("web app manifest: {error}");
    }
    for size in ["192x192", "512x512"] {
        let found = manifest["icons"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|i| i["sizes"] == size && i["ok"] == true);
        if !found {
            bail!("the manifest has no loadable PNG icon of {size}: {manifest}");
        }
    }
    if engine != Engine::Chromium {
        return Ok(format!(
            "manifest \"{}\" ({}) with 192 and 512 px icons",
            s_str(&manifest["name"]),
            s_str(&manifest["display"])
        ));
    }
    let answer = client
        .issue_cmd(Cdp {
            method: "Page.getInstallabilityErrors",
            params: json!({}),
        })
        .await
        .context("CDP Page.getInstallabilityErrors")?;
    let errors = answer["installabilityErrors"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if !errors.is_empty() {
        bail!("Chromium says the PWA is not installable: {answer}");
    }
    Ok(format!(
        "installable as a PWA (manifest \"{}\", no installability errors)",
        s_str(&manifest["name"])
    ))
}

/// Takes the browser offline. Chromium: CDP network emulation for the page (the servers stay
/// up, so the report can show no request reached them). Firefox: stops both servers.
async fn go_offline(client: &Client, engine: Engine, site: &mut DemoSite) -> Result<String> {
    match engine {
        Engine::Chromium => {
            client
                .issue_cmd(Cdp {
                    method: "Network.enable",
                    params: json!({}),
                })
                .await
                .context("CDP Network.enable")?;
            client
                .issue_cmd(Cdp {
                    method: "Network.emulateNetworkConditions",
                    params: json!({
                        "offline": true, "latency": 0,
                        "downloadThroughput": -1, "uploadThroughput": -1,
                    }),
                })
                .await
                .context("CDP Network.emulateNetworkConditions")?;
            // The worker starts again for the reload: what it serves comes from the container.
            client
                .issue_cmd(Cdp {
                    method: "ServiceWorker.enable",
                    params: json!({}),
                })
                .await
                .context("CDP ServiceWorker.enable")?;
            client
                .issue_cmd(Cdp {
                    method: "ServiceWorker.stopAllWorkers",
                    params: json!({}),
                })
                .await
                .context("CDP ServiceWorker.stopAllWorkers")?;
            for server in site.app.iter().chain(site.cdn.iter()) {
                server.clear_requests();
            }
            Ok("offline via CDP Network.emulateNetworkConditions, worker stopped (CDP ServiceWorker.stopAllWorkers) and started again by the reload".into())
        }
        Engine::Firefox => {
            let stopped = site.app.take().is_some() as u8 + site.cdn.take().is_some() as u8;
            Ok(format!(
                "offline: {stopped} servers stopped (app and CDN; Firefox has no network emulation over WebDriver)"
            ))
        }
    }
}

/// Paths the worker itself may still request while the page is offline in Chromium (CDP
/// emulation covers the page, not the worker): the worker script's update check, its imports
/// and wasm, and the declaration re-read by the page-load update check. None is an asset.
const WORKER_HOUSEKEEPING: [&str; 3] = ["/sw.js", "/pkg.json", "/pkg/worker/"];

/// Requests the app server and the CDN saw since the browser went offline (Chromium only),
/// except the worker's own housekeeping (returned second).
fn server_requests(site: &DemoSite) -> (Vec<String>, Vec<String>) {
    let all = site
        .app
        .iter()
        .chain(site.cdn.iter())
        .flat_map(|server| server.requests())
        .map(|r| {
            (
                r.path_and_query.clone(),
                format!("{} {} -> {}", r.method, r.path_and_query, r.status),
            )
        });
    let (housekeeping, leaked): (Vec<_>, Vec<_>) = all.partition(|(path, _)| {
        let path = path.split('?').next().unwrap_or_default();
        WORKER_HOUSEKEEPING
            .iter()
            .any(|p| path == *p || (p.ends_with('/') && path.starts_with(p)))
    });
    (
        leaked.into_iter().map(|(_, r)| r).collect(),
        housekeeping.into_iter().map(|(_, r)| r).collect(),
    )
}

fn housekeeping_note(housekeeping: &[String]) -> String {
    if housekeeping.is_empty() {
        String::new()
    } else {
        format!(" (the worker's own: {})", housekeeping.join(", "))
    }
}

async fn page_state(client: &Client) -> Result<Value> {
    client
        .execute(
            "return window.demo ? window.demo.state() : { body: { ...document.body.dataset } };",
            vec![],
        )
        .await
        .context("reading the page state")
}

/// Polls the page state until `done` holds; fails on a page error or after [`STEP_TIMEOUT`].
async fn wait_for(client: &Client, what: &str, done: impl Fn(&Value) -> bool) -> Result<Value> {
    let started = Instant::now();
    loop {
        let state = page_state(client).await?;
        if !state.is_null() {
            if done(&state) {
                return Ok(state);
            }
            if body(&state, "state") == "error" {
                bail!("the page failed: {}", body(&state, "error"));
            }
        }
        if started.elapsed() > STEP_TIMEOUT {
            bail!(
                "waited {STEP_TIMEOUT:?} for {what}; page: {}",
                summary(&state)
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn wait_for_packs(client: &Client, packs: &[&DemoPack], status: &str) -> Result<Value> {
    let what = format!("{} to be {status}", pack_names(packs));
    wait_for(client, &what, |s| {
        packs
            .iter()
            .all(|p| pack_field(s, p.id, "status") == status)
    })
    .await
}

fn s_str(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn body(state: &Value, key: &str) -> String {
    s_str(&state["body"][key])
}

fn pack_field(state: &Value, pack: &str, key: &str) -> String {
    state["packs"]
        .as_array()
        .and_then(|packs| packs.iter().find(|p| p["pack"] == pack))
        .map(|p| s_str(&p[key]))
        .unwrap_or_default()
}

fn log_has(state: &Value, source: &str, name: &str) -> bool {
    state["log"].as_array().is_some_and(|log| {
        log.iter()
            .any(|e| e["source"] == source && e["name"] == name)
    })
}

/// The distinct names logged from `source`, in order of first appearance.
fn log_names(state: &Value, source: &str) -> String {
    let mut names: Vec<String> = Vec::new();
    for entry in state["log"].as_array().into_iter().flatten() {
        if entry["source"] == source {
            let name = s_str(&entry["name"]);
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    names.join(", ")
}

/// A one-line summary of the page for timeout messages.
fn summary(state: &Value) -> String {
    let packs: Vec<String> = state["packs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            format!(
                "{}={} {}/{}",
                s_str(&p["pack"]),
                s_str(&p["status"]),
                s_str(&p["bytes"]),
                s_str(&p["size"])
            )
        })
        .collect();
    let errors: Vec<String> = state["log"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["name"] == "error" || e["name"] == "didFail")
        .map(|e| s_str(&e["text"]))
        .collect();
    format!(
        "body {}; packs [{}]; errors {:?}",
        state["body"],
        packs.join(", "),
        errors
    )
}

fn pack_names(packs: &[&DemoPack]) -> String {
    packs
        .iter()
        .map(|p| format!("{} ({} files)", p.id, p.files.len()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn pack_bytes(packs: &[&DemoPack]) -> u64 {
    packs.iter().map(|p| p.size()).sum()
}

/// What the local CDN sent for `packs`' files (bytes and requests), or a note for `--cdn`.
fn cdn_bytes(site: &DemoSite, packs: &[&DemoPack]) -> String {
    let Some(cdn) = &site.cdn else {
        return format!("fetched from {}", site.files_base);
    };
    let location = FileLocation::LocalCdn(cdn.origin());
    let paths: Vec<String> = packs
        .iter()
        .flat_map(|p| &p.files)
        .map(|f| file_url(f, &location)[cdn.origin().len()..].to_string())
        .collect();
    let (mut sent, mut requests) = (0u64, 0usize);
    for record in cdn.requests() {
        let path = record.path_and_query.split('?').next().unwrap_or_default();
        if record.method == "GET" && paths.iter().any(|p| p == path) {
            sent += record.body_bytes_sent;
            requests += 1;
        }
    }
    format!("the CDN sent {sent} bytes in {requests} GETs")
}

async fn save_screenshot(client: &Client, options: &Options) -> Result<PathBuf> {
    let png = client.screenshot().await.context("taking a screenshot")?;
    let path = match &options.screenshot {
        Some(path) => path.clone(),
        None => workspace::target_dir()
            .join("demo")
            .join(format!("screenshot-{}.png", options.engine.name())),
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(&path, png).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

fn print_report(options: &Options, site: &DemoSite, steps: &[Step]) {
    println!();
    println!(
        "demo --headless: {} · packs {} ({}) · app {} · files from {}",
        options.engine.name(),
        options.scale.name(),
        site.packs
            .iter()
            .map(|p| format!("{} {} {:.1} MiB", p.id, p.policy, mib(p.size())))
            .collect::<Vec<_>>()
            .join(", "),
        site.app_origin,
        site.files_base
    );
    println!(
        "  {:<2} {:<34} {:<6} {:>9} {:>11}  detail",
        "#", "step", "result", "time", "bytes"
    );
    for (i, step) in steps.iter().enumerate() {
        println!(
            "  {:<2} {:<34} {:<6} {:>7.2} s {:>11}  {}",
            i + 1,
            step.name,
            if step.ok { "ok" } else { "FAILED" },
            step.time.as_secs_f64(),
            step.bytes
                .map(|b| b.to_string())
                .unwrap_or_else(|| "—".into()),
            step.detail
        );
    }
    for (i, name) in STEP_NAMES.iter().enumerate().skip(steps.len()) {
        println!("  {:<2} {:<34} {:<6}", i + 1, name, "not run");
    }
    let total: Duration = steps.iter().map(|s| s.time).sum();
    println!("  total {:.2} s", total.as_secs_f64());
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1048576.0
}
