//! Faults that need the browser's own powers, beside the wasm fault matrix
//! (`tests/common/faults.rs`): quota exceeded, through Chromium's DevTools
//! `Storage.overrideQuotaForOrigin`.
//!
//! The test drives the chaos crate's page and service worker (`chaos/www`, the worker runs the
//! library's `DownloadManager`): a first download is stored, the origin's quota is then set just
//! above what is used, and a download that cannot fit must fail with the typed quota error while
//! the first asset stays byte-for-byte the same and nothing else is stored.
//!
//! It needs Chromium, chromedriver and wasm-bindgen, so it is ignored by plain `cargo test`;
//! `cargo xtask test` runs it with `--ignored`.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};
use xtask::cdn::{generated_sha256, Server, ServerConfig};
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
    let session = client
        .session_id()
        .await?
        .context("the WebDriver session has no id")?;
    let url = format!("{}/session/{session}/goog/cdp/execute", driver.url());
    let body = json!({ "cmd": cmd, "params": params }).to_string();
    let cmd = cmd.to_string();
    tokio::task::spawn_blocking(move || -> Result<Value> {
        let mut response = ureq::post(&url)
            .header("Content-Type", "application/json")
            .send(body)
            .with_context(|| format!("CDP {cmd}"))?;
        let text = response.body_mut().read_to_string()?;
        Ok(serde_json::from_str::<Value>(&text)?["value"].clone())
    })
    .await?
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

async fn quota_exceeded(client: &Client, driver: &WebDriver, page: &str, cdn: &str) -> Result<()> {
    client.goto(&format!("{page}/chaos/index.html")).await?;
    let ready_by = Instant::now() + Duration::from_secs(60);
    loop {
        let status = client.find(Locator::Id("status")).await?;
        match status.attr("data-state").await?.as_deref() {
            Some("ready") => break,
            Some("error") => bail!("page: {:?}", status.attr("data-error").await?),
            _ => ensure!(Instant::now() < ready_by, "the chaos page was not ready"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
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
    let pkg = ScratchDir::new("faults-chaos-pkg")?;
    build_chaos_package(pkg.path())?;
    let page = Server::start(ServerConfig {
        port: 0,
        mounts: vec![
            ("/chaos-pkg/".to_string(), pkg.path().to_path_buf()),
            ("/chaos/".to_string(), workspace::root().join("chaos/www")),
        ],
        extra_headers: vec![("Cache-Control".to_string(), "no-store".to_string())],
    })?;
    let cdn = Server::start(ServerConfig::default())?;
    let driver = WebDriver::start(Engine::Chromium)?;
    let client = ClientBuilder::new(HttpConnector::new())
        .capabilities(driver.capabilities())
        .connect(&driver.url())
        .await?;
    let outcome = quota_exceeded(&client, &driver, &page.origin(), &cdn.origin()).await;
    let _ = client.close().await;
    outcome
}
