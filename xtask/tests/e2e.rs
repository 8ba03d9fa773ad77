//! End-to-end: the demo page and its real service worker, driven over WebDriver in headless
//! Chromium and Firefox.
//!
//! Each test starts the local CDN and a static server for `www/` (with `pkg/` at `/pkg/`), opens
//! `/?cdn=<cdn origin>` in a fresh browser profile and waits (bounded) for the page to report:
//! the page's wasm version, and the service worker's answer computed by the worker's own wasm —
//! its version, its global ("serviceworker") and the SHA-256 of a body it fetched from the CDN.
//!
//! They need browsers and a built `pkg/`, so they are ignored by plain `cargo test`;
//! `cargo xtask test` builds `pkg/` and runs them with `--ignored`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use xtask::cdn::{generated_sha256, Server, ServerConfig};
use xtask::webdriver::{Engine, WebDriver};
use xtask::workspace;

/// How long the page may take to load its wasm, register the worker and hear back from it.
const PAGE_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// The generated body the worker fetches and hashes (must match `www/sw.js`).
const PROBE_BYTES: u64 = 262_144;
const PROBE_SEED: u64 = 42;
/// The data attributes of `<output id="status">` the test reads.
const ATTRIBUTES: [&str; 8] = [
    "data-state",
    "data-error",
    "data-page-version",
    "data-page-context",
    "data-worker-version",
    "data-worker-context",
    "data-worker-probe-bytes",
    "data-worker-probe-sha256",
];

/// The CDN and the page server, stopped on drop.
struct Site {
    page: Server,
    cdn: Server,
}

fn start_site() -> Result<Site> {
    let pkg = workspace::pkg_dir();
    for file in [
        "background_assets.js",
        "background_assets_bg.wasm",
        "worker/background_assets.js",
    ] {
        ensure!(
            pkg.join(file).is_file(),
            "{} is missing: run `cargo xtask build` (or `cargo xtask test`)",
            pkg.join(file).display()
        );
    }
    let page = Server::start(ServerConfig {
        port: 0,
        mounts: vec![
            ("/pkg/".to_string(), pkg),
            ("/".to_string(), workspace::www_dir()),
        ],
        extra_headers: vec![("Cache-Control".to_string(), "no-store".to_string())],
    })
    .context("starting the page server")?;
    let cdn = Server::start(ServerConfig::default()).context("starting the CDN")?;
    Ok(Site { page, cdn })
}

async fn connect(driver: &WebDriver) -> Result<Client> {
    ClientBuilder::new(HttpConnector::new())
        .capabilities(driver.capabilities())
        .connect(&driver.url())
        .await
        .with_context(|| format!("opening a {} session at {}", driver.engine(), driver.url()))
}

/// Reads the status attributes until the page says `ready` or `error`, or the time is up.
async fn wait_for_status(client: &Client) -> Result<HashMap<&'static str, String>> {
    let started = Instant::now();
    loop {
        let status = client
            .find(Locator::Id("status"))
            .await
            .context("finding <output id=status>")?;
        let mut seen = HashMap::new();
        for name in ATTRIBUTES {
            if let Some(value) = status.attr(name).await.context("reading an attribute")? {
                seen.insert(name, value);
            }
        }
        let state = seen.get("data-state").cloned().unwrap_or_default();
        if state == "ready" {
            return Ok(seen);
        }
        if state == "error" {
            bail!("the page reported an error: {seen:?}");
        }
        if started.elapsed() > PAGE_READY_TIMEOUT {
            let text = status.text().await.unwrap_or_default();
            bail!("the page was not ready after {PAGE_READY_TIMEOUT:?}: state {state:?}, text {text:?}, {seen:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn page_and_worker_report_their_wasm(engine: Engine) -> Result<()> {
    let site = start_site()?;
    let driver = WebDriver::start(engine)?;
    let client = connect(&driver).await?;
    let url = format!("{}/?cdn={}", site.page.origin(), site.cdn.origin());
    let outcome = async {
        client
            .goto(&url)
            .await
            .with_context(|| format!("opening {url}"))?;
        wait_for_status(&client).await
    }
    .await;
    let _ = client.close().await;
    let seen = outcome?;

    let workspace_version = root_crate_version()?;
    let get = |name: &str| seen.get(name).map(String::as_str).unwrap_or("");
    assert_eq!(
        get("data-page-version"),
        workspace_version,
        "page wasm version"
    );
    assert_eq!(get("data-page-context"), "window");
    assert_eq!(
        get("data-worker-version"),
        workspace_version,
        "worker wasm version"
    );
    assert_eq!(
        get("data-worker-context"),
        "serviceworker",
        "the answer came from the worker"
    );
    assert_eq!(get("data-worker-probe-bytes"), PROBE_BYTES.to_string());
    assert_eq!(
        get("data-worker-probe-sha256"),
        generated_sha256(PROBE_BYTES, PROBE_SEED),
        "the worker's wasm hashed the CDN body"
    );
    let probe_path = format!("/gen/{PROBE_BYTES}/{PROBE_SEED}");
    let fetched = site
        .cdn
        .requests()
        .into_iter()
        .any(|r| r.method == "GET" && r.path_and_query == probe_path && r.status == 200);
    assert!(fetched, "the CDN saw the worker's GET {probe_path}");
    let served_sw = site
        .page
        .requests()
        .into_iter()
        .any(|r| r.path_and_query == "/sw.js" && r.status == 200);
    assert!(served_sw, "the browser fetched /sw.js");
    Ok(())
}

/// The library crate's version from the workspace `Cargo.toml` (what `version()` must return).
fn root_crate_version() -> Result<String> {
    let path = workspace::root().join("Cargo.toml");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let package = text
        .split("[package]")
        .nth(1)
        .context("Cargo.toml has no [package]")?;
    package
        .lines()
        .find_map(|line| {
            let value = line
                .trim()
                .strip_prefix("version")?
                .trim()
                .strip_prefix('=')?;
            Some(value.trim().trim_matches('"').to_string())
        })
        .context("[package] has no version")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs browsers and pkg/: run by cargo xtask test"]
async fn chromium_page_and_service_worker_report_their_wasm() -> Result<()> {
    page_and_worker_report_their_wasm(Engine::Chromium).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs browsers and pkg/: run by cargo xtask test"]
async fn firefox_page_and_service_worker_report_their_wasm() -> Result<()> {
    page_and_worker_report_their_wasm(Engine::Firefox).await
}
