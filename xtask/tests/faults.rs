//! Faults that need the browser's own powers, beside the wasm fault matrix
//! (`tests/common/faults.rs`):
//! - quota exceeded, through Chromium's DevTools `Storage.overrideQuotaForOrigin`: a first
//!   download is stored, the origin's quota is set just above what is used, and a download that
//!   cannot fit must fail with the typed quota error;
//! - the browser restarted with the same profile mid-download (Chromium and Firefox): the whole
//!   browser ends (WebDriver session closed) while the worker downloads a paced body, a new
//!   browser starts on the same profile directory, the page wakes the worker again, and the
//!   download continues from its stored checkpoint (a `Range` from past zero) to exact bytes.
//!
//! - the network offline and back (Chromium, DevTools `Network.emulateNetworkConditions`): a
//!   page's own manager (the JS face, `pkg/`) downloads a paced body, the page goes offline for
//!   3 s and back online, and the download finishes from a `Range` resume with exact bytes.
//!
//! The first two drive the chaos crate's page and service worker (`chaos/www`, the worker runs the
//! library's `DownloadManager`) and checks that the first asset stays byte-for-byte the same and
//! nothing else is stored.
//!
//! They need the browsers, their drivers and wasm-bindgen, so they are ignored by plain
//! `cargo test`; `cargo xtask test` runs them with `--ignored`.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};
use xtask::cdn::{generated_sha256, RequestRecord, Server, ServerConfig};
use xtask::webdriver::{find_program, Engine, ScratchDir, WebDriver};
use xtask::workspace;

const STEM: &str = "background_assets_chaos";

/// Builds the chaos crate (wasm32, dev) and binds it for the page and the worker into `out`.
fn build_chaos_package(out: &std::path::Path) -> Result<()> {
    let status = Command::new("cargo")
        .args([
            "build",
            "--target",
            "wasm32-unknown-unknown",
            "--lib",
            "-p",
            "background-assets-chaos",
        ])
        .status()
        .context("running cargo build for the chaos crate")?;
    ensure!(
        status.success(),
        "building the chaos crate failed: {status}"
    );
    let wasm = workspace::target_dir()
        .join("wasm32-unknown-unknown/debug")
        .join(format!("{STEM}.wasm"));
    let bindgen = find_program("wasm-bindgen").context("wasm-bindgen is not installed")?;
    for (target, dir) in [("web", "web"), ("no-modules", "worker")] {
        let status = Command::new(&bindgen)
            .args(["--target", target, "--out-name", STEM, "--out-dir"])
            .arg(out.join(dir))
            .arg(&wasm)
            .status()
            .context("running wasm-bindgen")?;
        ensure!(status.success(), "wasm-bindgen --target {target}: {status}");
    }
    Ok(())
}

async fn cdp(driver: &WebDriver, client: &Client, cmd: &str, params: Value) -> Result<Value> {
    driver.cdp(client, cmd, params).await
}

/// Calls `window.chaos.<name>()` (a promise of a JSON string) and parses its value.
async fn call(client: &Client, name: &str) -> Result<Value> {
    let script = format!(
        "const done = arguments[arguments.length - 1];
         window.chaos.{name}().then((v) => done({{ ok: v }}), (e) => done({{ error: String(e) }}));"
    );
    let answer = client.execute_async(&script, vec![]).await?;
    if let Some(error) = answer.get("error") {
        bail!("chaos.{name}() failed: {error}");
    }
    serde_json::from_str(answer["ok"].as_str().unwrap_or("null"))
        .with_context(|| format!("parsing chaos.{name}()"))
}

/// Hands `plan` to the page, wakes the worker, and waits until `ended` downloads ended.
async fn run_plan(client: &Client, plan: &Value, ended: u64) -> Result<()> {
    client
        .execute(
            "window.chaos.plan = arguments[0]; return window.chaos.wake();",
            vec![json!(plan.to_string())],
        )
        .await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = call(client, "status").await?;
        if status["ended"].as_u64() >= Some(ended) {
            return Ok(());
        }
        if Instant::now() > deadline {
            let verify = call(client, "verify").await?;
            bail!("only {status} ended within 30 s; the container holds {verify}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Opens the chaos page and waits until its worker is active and `window.chaos` is set.
async fn open_chaos_page(client: &Client, page: &str) -> Result<()> {
    client.goto(&format!("{page}/chaos/index.html")).await?;
    let ready_by = Instant::now() + Duration::from_secs(60);
    loop {
        let status = client.find(Locator::Id("status")).await?;
        match status.attr("data-state").await?.as_deref() {
            Some("ready") => return Ok(()),
            Some("error") => bail!("page: {:?}", status.attr("data-error").await?),
            _ => ensure!(Instant::now() < ready_by, "the chaos page was not ready"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The chaos package, the page server (chaos page + package) and the CDN of one test.
struct ChaosSite {
    _pkg: ScratchDir,
    page: Server,
    cdn: Server,
}

impl ChaosSite {
    fn start() -> Result<ChaosSite> {
        let pkg = ScratchDir::new("faults-chaos-pkg")?;
        build_chaos_package(pkg.path())?;
        let page = Server::start(ServerConfig::no_store(vec![
            ("/chaos-pkg/", pkg.path().to_path_buf()),
            ("/chaos/", workspace::root().join("chaos/www")),
        ]))?;
        let cdn = Server::start(ServerConfig::default())?;
        Ok(ChaosSite {
            _pkg: pkg,
            page,
            cdn,
        })
    }
}

/// A new WebDriver session (a new browser process) on the driver's profile directory.
async fn new_session(driver: &WebDriver) -> Result<Client> {
    Ok(ClientBuilder::new(HttpConnector::new())
        .capabilities(driver.capabilities())
        .connect(&driver.url())
        .await?)
}

async fn quota_exceeded(client: &Client, driver: &WebDriver, page: &str, cdn: &str) -> Result<()> {
    open_chaos_page(client, page).await?;
    const SMALL: u64 = 256 * 1024;
    const BIG: u64 = 8 << 20;
    let probe = std::process::id();
    let bystander = json!({ "id": "bystander", "declared": SMALL,
                            "path": format!("/gen/{SMALL}/7?probe={probe}") });
    let big = json!({ "id": "too-big", "declared": BIG,
                      "path": format!("/gen/{BIG}/9?probe={probe}") });
    let plan = |runs: Vec<Value>| {
        json!({ "database": format!("quota-{probe}"), "cdn": cdn, "windowMs": 30_000.0,
                "concurrency": 2, "runs": runs })
    };
    // The override is set before anything is stored: 2 MiB holds the first asset (and the
    // worker's registration), never the 8 MiB one.
    let quota: u64 = 2 << 20;
    cdp(
        driver,
        client,
        "Storage.overrideQuotaForOrigin",
        json!({ "origin": page, "quotaSize": quota }),
    )
    .await?;
    run_plan(client, &plan(vec![bystander.clone()]), 1).await?;
    let plan = plan(vec![bystander, big]);
    run_plan(client, &plan, 2).await?;
    let verify = call(client, "verify").await?;
    let runs = verify["runs"].as_array().context("verify.runs")?;
    let (first, second) = (&runs[0], &runs[1]);
    let small_sha = generated_sha256(SMALL, 7);
    assert_eq!(first["outcome"]["kind"], "finished", "{first}");
    assert_eq!(first["stored"]["size"], SMALL, "{first}");
    assert_eq!(
        first["stored"]["sha256"], small_sha,
        "the first asset changed: {first}"
    );
    assert_eq!(second["outcome"]["kind"], "failed", "{second}");
    assert_eq!(
        second["outcome"]["name"], "QuotaExceeded",
        "the download that cannot fit ({BIG} bytes, quota {quota}): {second}"
    );
    assert!(
        second["stored"].is_null(),
        "nothing of it is stored: {second}"
    );
    assert_eq!(verify["strays"], json!([]), "nothing else is stored");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium, chromedriver and wasm-bindgen: run by `cargo xtask test`"]
async fn chromium_quota_exceeded_fails_typed_and_changes_nothing_else() -> Result<()> {
    let site = ChaosSite::start()?;
    let driver = WebDriver::start(Engine::Chromium)?;
    let client = new_session(&driver).await?;
    let outcome = quota_exceeded(&client, &driver, &site.page.origin(), &site.cdn.origin()).await;
    let _ = client.close().await;
    outcome
}

/// The `GET`s the CDN logged for exactly `path`.
fn gets(cdn: &Server, path: &str) -> Vec<RequestRecord> {
    cdn.requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path_and_query == path)
        .collect()
}

/// The start of an open `Range: bytes=N-`.
fn range_start(record: &RequestRecord) -> Option<u64> {
    record
        .range
        .as_deref()?
        .strip_prefix("bytes=")?
        .strip_suffix('-')?
        .parse()
        .ok()
}

/// Whether the browser process that held the profile has ended. Chromium's `SingletonLock` and
/// Firefox's `lock` are symlinks to `<host>-<pid>` / `<ip>:+<pid>`; Firefox may leave its link
/// behind, so the process named in it is what counts.
fn profile_released(engine: Engine, profile: &std::path::Path) -> bool {
    let lock = match engine {
        Engine::Chromium => "SingletonLock",
        Engine::Firefox => "lock",
    };
    let Ok(target) = std::fs::read_link(profile.join(lock)) else {
        return true;
    };
    let target = target.to_string_lossy().into_owned();
    let pid: String = target
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    pid.is_empty() || !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

async fn browser_restarted_mid_download(engine: Engine) -> Result<()> {
    let site = ChaosSite::start()?;
    let (page, cdn) = (site.page.origin(), site.cdn.origin());
    let driver = WebDriver::start(engine)?;
    const SMALL: u64 = 256 * 1024;
    const BIG: u64 = 4 << 20;
    // Paced at 384 KiB/s: about 11 s for the whole body, so the restart lands mid-way.
    const RATE: u64 = 384 * 1024;
    let probe = std::process::id();
    let small_path = format!("/gen/{SMALL}/11?probe={probe}");
    let big_path = format!("/gen/{BIG}/13?throttle={RATE}&probe={probe}");
    let bystander = json!({ "id": "bystander", "declared": SMALL, "path": small_path });
    let big = json!({ "id": "across-restart", "declared": BIG, "path": big_path });
    let plan = |runs: Vec<Value>| {
        json!({ "database": format!("restart-{}-{probe}", engine.name()), "cdn": cdn,
                "windowMs": 60_000.0, "concurrency": 2, "runs": runs })
    };

    // First browser: the bystander is stored, then the big download starts.
    let client = new_session(&driver).await?;
    let first = async {
        open_chaos_page(&client, &page).await?;
        run_plan(&client, &plan(vec![bystander.clone()]), 1).await?;
        client
            .execute(
                "window.chaos.plan = arguments[0]; return window.chaos.wake();",
                vec![json!(plan(vec![bystander.clone(), big.clone()]).to_string())],
            )
            .await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let sent = gets(&site.cdn, &big_path)
                .last()
                .map_or(0, |r| r.body_bytes_sent);
            if sent >= 1 << 20 {
                return Ok::<u64, anyhow::Error>(sent);
            }
            ensure!(
                Instant::now() < deadline,
                "the download did not reach 1 MiB within 30 s: {:?}",
                gets(&site.cdn, &big_path)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    .await;
    // End the whole browser (the session's process), not just the tab.
    let _ = client.close().await;
    let sent_before = first?;
    let released_by = Instant::now() + Duration::from_secs(20);
    while !profile_released(engine, driver.profile()) {
        ensure!(
            Instant::now() < released_by,
            "the browser still holds its profile 20 s after the session ended"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before_restart = gets(&site.cdn, &big_path);
    ensure!(
        before_restart.iter().all(|r| r.body_bytes_sent < BIG),
        "it finished before the browser ended: {before_restart:?}"
    );

    // Second browser, same profile: the page wakes the worker, which continues the download.
    let client = new_session(&driver).await?;
    let second = async {
        open_chaos_page(&client, &page).await?;
        run_plan(&client, &plan(vec![bystander.clone(), big.clone()]), 2).await?;
        call(&client, "verify").await
    }
    .await;
    let _ = client.close().await;
    let verify = second?;
    let runs = verify["runs"].as_array().context("verify.runs")?;
    let (small, across) = (&runs[0], &runs[1]);
    assert_eq!(small["outcome"]["kind"], "finished", "{small}");
    assert_eq!(
        (&small["stored"]["size"], &small["stored"]["sha256"]),
        (&json!(SMALL), &json!(generated_sha256(SMALL, 11))),
        "the bystander changed: {small}"
    );
    assert_eq!(across["outcome"]["kind"], "finished", "{across}");
    assert_eq!(
        (&across["stored"]["size"], &across["stored"]["sha256"]),
        (&json!(BIG), &json!(generated_sha256(BIG, 13))),
        "the download across the restart: {across}"
    );
    assert_eq!(verify["strays"], json!([]), "nothing else is stored");
    let after_restart: Vec<RequestRecord> = gets(&site.cdn, &big_path)
        .into_iter()
        .skip(before_restart.len())
        .collect();
    let resumed = after_restart
        .first()
        .context("no request after the restart")?;
    let from = range_start(resumed).unwrap_or(0);
    assert!(
        from > 0 && from <= sent_before.max(before_restart.iter().map(|r| r.body_bytes_sent).sum()),
        "the new browser resumed from its checkpoint, not from zero: {after_restart:?} \
         (before: {before_restart:?})"
    );
    assert_eq!(resumed.status, 206, "{after_restart:?}");
    eprintln!(
        "{}: before the restart {:?}; after it {:?}",
        engine.name(),
        before_restart
            .iter()
            .map(|r| (r.range.clone(), r.status, r.body_bytes_sent))
            .collect::<Vec<_>>(),
        after_restart
            .iter()
            .map(|r| (r.range.clone(), r.status, r.body_bytes_sent))
            .collect::<Vec<_>>()
    );
    assert!(
        after_restart.iter().all(|r| range_start(r).is_some()),
        "nothing fetched from zero after the restart: {after_restart:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium, chromedriver and wasm-bindgen: run by `cargo xtask test`"]
async fn chromium_browser_restarted_with_the_same_profile_continues_the_download() -> Result<()> {
    browser_restarted_mid_download(Engine::Chromium).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Firefox, geckodriver and wasm-bindgen: run by `cargo xtask test`"]
async fn firefox_browser_restarted_with_the_same_profile_continues_the_download() -> Result<()> {
    browser_restarted_mid_download(Engine::Firefox).await
}

/// The page of the offline case: the library's JS face from `/pkg/`, nothing else.
const OFFLINE_PAGE: &str = r#"<!doctype html><meta charset="utf-8"><title>offline</title>
<body data-ready="no"><script type="module">
import init, { DownloadManager } from '/pkg/background_assets.js';
await init();
window.ba = { DownloadManager, ends: {}, written: {} };
document.body.dataset.ready = 'yes';
</script>"#;

/// Runs `script` (an async function body that may use `window.ba` and `arguments[0]`) in the
/// page and returns its value; a rejection becomes an error naming it.
async fn page_call(client: &Client, script: &str, arg: Value) -> Result<Value> {
    let wrapped = format!(
        "const done = arguments[arguments.length - 1];
         (async (arg) => {{ {script} }})(arguments[0]).then(
           (v) => done({{ ok: v === undefined ? null : v }}),
           (e) => done({{ error: `${{e && e.name}}: ${{e && e.message}}` }}));"
    );
    let answer = client.execute_async(&wrapped, vec![arg]).await?;
    if let Some(error) = answer.get("error") {
        bail!("page call failed: {error}");
    }
    Ok(answer["ok"].clone())
}

/// Schedules a download in the page's manager and waits (in the page) for its end; returns
/// `{ kind, size, sha256 (reported), read (SHA-256 of the blob read back) }` or the failure.
const RUN_DOWNLOAD: &str = r#"
  const { id, url, size } = arg;
  await window.ba.manager.schedule({ id, url, size });
  for (let i = 0; i < 1200 && !window.ba.ends[id]; i++) await new Promise((r) => setTimeout(r, 50));
  return window.ba.ends[id] || { kind: 'timeout' };
"#;

async fn network_offline_and_back(client: &Client, driver: &WebDriver, cdn: &Server) -> Result<()> {
    let cdn_origin = cdn.origin();
    let ready_by = Instant::now() + Duration::from_secs(60);
    loop {
        let body = client.find(Locator::Css("body")).await?;
        if body.attr("data-ready").await?.as_deref() == Some("yes") {
            break;
        }
        ensure!(
            Instant::now() < ready_by,
            "the offline page did not load the library"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let probe = std::process::id();
    page_call(
        client,
        r#"
          const declaration = { initialDownloadRestrictions: {
            downloadAllowance: 67108864, essentialDownloadAllowance: 67108864,
            domainAllowList: ['127.0.0.1'] } };
          const manager = await window.ba.DownloadManager.open({ database: arg, declaration });
          const hex = (buf) => [...new Uint8Array(buf)].map((b) => b.toString(16).padStart(2, '0')).join('');
          window.ba.read = async (finished) => {
            const bytes = await (await finished.blob()).arrayBuffer();
            return { size: bytes.byteLength, sha256: hex(await crypto.subtle.digest('SHA-256', bytes)) };
          };
          manager.setDelegate({
            didWriteData(id, _, total) { window.ba.written[id] = total; },
            async didFinish(id, finished) {
              window.ba.handles = window.ba.handles || {};
              window.ba.handles[id] = finished;
              window.ba.ends[id] = { kind: 'finished', size: finished.size, sha256: finished.sha256,
                                     read: await window.ba.read(finished) };
            },
            didFail(id, error) { window.ba.ends[id] = { kind: 'failed', name: error.name, message: error.message }; },
          });
          window.ba.manager = manager;
        "#,
        json!(format!("offline-{probe}")),
    )
    .await?;
    const SMALL: u64 = 256 * 1024;
    const BIG: u64 = 2 << 20;
    let small_path = format!("/gen/{SMALL}/17?probe={probe}");
    let small = page_call(
        client,
        RUN_DOWNLOAD,
        json!({ "id": "bystander", "url": format!("{cdn_origin}{small_path}"), "size": SMALL }),
    )
    .await?;
    let small_sha = generated_sha256(SMALL, 17);
    assert_eq!(
        small["read"],
        json!({ "size": SMALL, "sha256": small_sha }),
        "{small}"
    );

    // 2 MiB at 256 KiB/s. Chromium's offline emulation refuses new requests but does not break
    // a connection that is already streaming (seen: the whole body kept arriving), so the
    // network loss also breaks the connection: the CDN cuts it after 768 KiB (~3 s in), about
    // 1.5 s after the page went offline. The transfer's retries (1 s, 2 s backoff) then meet
    // the offline network for the rest of the 4 s.
    const CUT: u64 = 768 * 1024;
    let big_path = format!("/gen/{BIG}/19?fault=drop:{CUT}&times=1&throttle=262144&probe={probe}");
    let big_url = format!("{cdn_origin}{big_path}");
    client
        .execute(
            "window.ba.manager.schedule(arguments[0]); return null;",
            vec![json!({ "id": "big", "url": big_url, "size": BIG })],
        )
        .await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while gets(cdn, &big_path).last().map_or(0, |r| r.body_bytes_sent) < 384 * 1024 {
        ensure!(
            Instant::now() < deadline,
            "the download did not start: {:?}",
            gets(cdn, &big_path)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cdp(driver, client, "Network.enable", json!({})).await?;
    let conditions = |offline: bool| json!({ "offline": offline, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1 });
    cdp(
        driver,
        client,
        "Network.emulateNetworkConditions",
        conditions(true),
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let while_offline = gets(cdn, &big_path);
    cdp(
        driver,
        client,
        "Network.emulateNetworkConditions",
        conditions(false),
    )
    .await?;
    let end = page_call(
        client,
        r#"
          for (let i = 0; i < 1200 && !window.ba.ends.big; i++) await new Promise((r) => setTimeout(r, 50));
          const small = await window.ba.read(window.ba.handles.bystander);
          const list = await window.ba.manager.fetchCurrentDownloads();
          return { big: window.ba.ends.big || { kind: 'timeout' }, small, list };
        "#,
        json!(null),
    )
    .await?;
    let logged = gets(cdn, &big_path);
    let summary: Vec<_> = logged
        .iter()
        .map(|r| (r.range.clone(), r.status, r.body_bytes_sent))
        .collect();
    eprintln!("offline: {summary:?}; end {end}");
    assert_eq!(end["big"]["kind"], "finished", "{end} {summary:?}");
    assert_eq!(
        end["big"]["read"],
        json!({ "size": BIG, "sha256": generated_sha256(BIG, 19) }),
        "exact bytes: {end}"
    );
    assert_eq!(end["big"]["sha256"], json!(generated_sha256(BIG, 19)));
    assert_eq!(
        end["small"],
        json!({ "size": SMALL, "sha256": small_sha }),
        "the bystander changed"
    );
    assert_eq!(end["list"], json!([]), "nothing else is running: {end}");
    assert_eq!(
        (while_offline.len(), while_offline[0].body_bytes_sent),
        (1, CUT),
        "the connection broke while offline and no retry reached the CDN: {summary:?}"
    );
    assert_eq!(logged.len(), 2, "one resume once back online: {summary:?}");
    let from = range_start(&logged[1]).unwrap_or(0);
    assert!(
        logged[1].status == 206 && (1..=CUT).contains(&from),
        "back online, it resumed with a Range from its stored bytes: {summary:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium, chromedriver and a built pkg/: run by `cargo xtask test`"]
async fn chromium_network_offline_and_back_finishes_from_a_range() -> Result<()> {
    let pkg = std::env::var_os("BA_E2E_PKG")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(workspace::pkg_dir);
    workspace::ensure_pkg_built(&pkg)?;
    let site = ScratchDir::new("faults-offline-site")?;
    std::fs::write(site.path().join("index.html"), OFFLINE_PAGE)?;
    let page = Server::start(ServerConfig::no_store(vec![
        ("/pkg/", pkg),
        ("/", site.path().to_path_buf()),
    ]))?;
    let cdn = Server::start(ServerConfig::default())?;
    let driver = WebDriver::start(Engine::Chromium)?;
    let client = new_session(&driver).await?;
    client.goto(&format!("{}/", page.origin())).await?;
    let outcome = network_offline_and_back(&client, &driver, &cdn).await;
    let _ = client.close().await;
    outcome
}
