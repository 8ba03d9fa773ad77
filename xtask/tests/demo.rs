//! The demo, end to end: `cargo xtask demo --headless --small` in Chromium and Firefox (every
//! step of the flow must hold, and the report must carry the right byte counts), `--cdn` against
//! a folder written by `--export` and served from another origin, and `--export` itself (files
//! and digests).
//!
//! The browser tests need browsers and a built `pkg/`, so they are ignored by plain `cargo test`;
//! `cargo xtask test` builds `pkg/` and runs them with `--ignored` after the e2e tests.

use std::path::Path;
use std::process::Command;

use anyhow::{ensure, Context, Result};
use background_assets::core::declaration::{parse_declaration, AssetPackList, DownloadPolicy};
use background_assets::core::error::hex;
use serde_json::Value;
use sha2::{Digest, Sha256};
use xtask::cdn::{Server, ServerConfig};
use xtask::webdriver::ScratchDir;

/// The steps the headless flow must report, in order.
const STEPS: [&str; 8] = [
    "first visit",
    "worker install",
    "essential pack downloaded",
    "first launch",
    "prefetch pack in the background",
    "on-demand pack (video)",
    "offline reload from the container",
    "video seek offline",
];
/// `--small` sizes: one essential file of 4 MiB, two prefetch files of 4 MiB.
const SMALL_ESSENTIAL: u64 = 4 << 20;
const SMALL_PREFETCH: u64 = 8 << 20;

fn xtask() -> Command {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
}

fn video_size() -> u64 {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/demo.webm");
    std::fs::metadata(path)
        .expect("xtask/assets/demo.webm")
        .len()
}

/// Runs `cargo xtask demo --headless --small --no-build --engine <engine> <extra>` and returns
/// its JSON report after checking what every run must show.
fn run_headless(engine: &str, extra: &[&str]) -> Result<Value> {
    let scratch = ScratchDir::new(&format!("demo-test-{engine}"))?;
    let report_path = scratch.path().join("report.json");
    let screenshot = scratch.path().join("screenshot.png");
    let output = xtask()
        .args([
            "demo",
            "--headless",
            "--small",
            "--no-build",
            "--engine",
            engine,
        ])
        .arg("--report-json")
        .arg(&report_path)
        .arg("--screenshot")
        .arg(&screenshot)
        .args(extra)
        .output()
        .context("running cargo xtask demo --headless")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    let report: Value = serde_json::from_str(
        &std::fs::read_to_string(&report_path)
            .with_context(|| format!("no report at {}", report_path.display()))?,
    )?;
    ensure!(
        output.status.success(),
        "demo --headless exited with {}",
        output.status
    );
    ensure!(report["ok"] == true, "report not ok: {report:#}");
    assert!(stdout.contains("every step held"), "{stdout}");
    assert!(
        stdout.contains(&screenshot.display().to_string()),
        "the screenshot path is printed"
    );

    let steps = report["steps"].as_array().context("steps")?;
    let names: Vec<&str> = steps.iter().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(names, STEPS);
    for step in steps {
        assert_eq!(step["ok"], true, "{step}");
    }
    assert_eq!(steps[2]["bytes"], SMALL_ESSENTIAL, "essential bytes");
    assert_eq!(steps[4]["bytes"], SMALL_PREFETCH, "prefetch bytes");
    assert_eq!(steps[5]["bytes"], video_size(), "on-demand bytes");
    assert_eq!(
        steps[6]["bytes"],
        SMALL_ESSENTIAL + SMALL_PREFETCH + video_size(),
        "every file read back offline"
    );

    // What the page itself showed at the end.
    let state = &report["finalState"];
    assert_eq!(state["verify"]["state"], "ok", "{}", state["verify"]);
    assert_eq!(state["verify"]["files"], "4");
    let after_seek: f64 = state["video"]["seekAfterSeek"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .context("seekAfterSeek")?;
    let after_play: f64 = state["video"]["seekAfterPlay"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .context("seekAfterPlay")?;
    assert!((after_seek - 6.0).abs() <= 0.5, "seeked to {after_seek}");
    assert!(
        after_play > after_seek,
        "played from {after_seek} to {after_play}"
    );
    let video_ranges: u64 = state["workerRequests"]["videoRanges"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    assert!(
        video_ranges > 0,
        "the worker served Range requests for the video"
    );
    // The first visit's event log: every kind of callback and hook showed up.
    let first_visit = &report["stateBeforeOffline"];
    let log = first_visit["log"].as_array().context("log")?;
    let logged = |source: &str, name: &str| {
        log.iter()
            .any(|e| e["source"] == source && e["name"] == name)
    };
    for (source, name) in [
        ("hook", "didInstall"),
        ("delegate", "didFinish"),
        ("pack", "status"),
        ("page", "ready"),
        ("page", "launch"),
    ] {
        assert!(logged(source, name), "the event log has {source} {name}");
    }
    assert_eq!(first_visit["body"]["launched"], "true");
    assert_eq!(first_visit["body"]["online"], "true");
    // Storage use and quota are shown (navigator.storage.estimate()).
    let number = |v: &Value| {
        v.as_str()
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    assert!(
        number(&state["storage"]["quota"]) > 0.0,
        "{}",
        state["storage"]
    );
    assert!(
        number(&state["storage"]["usage"]) > 0.0,
        "{}",
        state["storage"]
    );

    let png = std::fs::read(&screenshot).context("the screenshot")?;
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    assert!(width >= 800, "screenshot width {width}");
    Ok(report)
}

#[test]
#[ignore = "needs browsers and pkg/: run by cargo xtask test"]
fn chromium_demo_headless_holds_every_step() -> Result<()> {
    let report = run_headless("chromium", &[])?;
    let offline = report["steps"][6]["detail"].as_str().unwrap_or_default();
    assert!(offline.contains("CDP"), "{offline}");
    Ok(())
}

#[test]
#[ignore = "needs browsers and pkg/: run by cargo xtask test"]
fn firefox_demo_headless_holds_every_step() -> Result<()> {
    let report = run_headless("firefox", &[])?;
    let offline = report["steps"][6]["detail"].as_str().unwrap_or_default();
    assert!(offline.contains("servers stopped"), "{offline}");
    Ok(())
}

/// `--export` to a folder, that folder served by a server of its own (another origin, as a
/// user's CDN would be), and the demo run against it with `--cdn`.
#[test]
#[ignore = "needs browsers and pkg/: run by cargo xtask test"]
fn chromium_demo_fetches_the_packs_from_an_exported_folder_with_cdn() -> Result<()> {
    let folder = ScratchDir::new("demo-cdn-folder")?;
    let export = xtask()
        .args(["demo", "--export"])
        .arg(folder.path())
        .arg("--small")
        .output()?;
    assert!(export.status.success(), "{export:?}");
    let their_cdn = Server::start(ServerConfig {
        mounts: vec![("/packs/".into(), folder.path().to_path_buf())],
        ..ServerConfig::default()
    })?;
    let base = format!("{}/packs/", their_cdn.origin());
    let report = run_headless("chromium", &["--cdn", &base])?;
    assert_eq!(report["filesBase"], base.trim_end_matches('/'));
    let fetched: Vec<String> = their_cdn
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && (r.status == 200 || r.status == 206))
        .map(|r| r.path_and_query)
        .collect();
    for path in [
        "/packs/levels/world-1.bin",
        "/packs/levels/world-2a.bin",
        "/packs/levels/world-2b.bin",
        "/packs/movies/trailer.webm",
    ] {
        assert!(
            fetched.iter().any(|p| p == path),
            "{path} was fetched from the --cdn origin: {fetched:?}"
        );
    }
    Ok(())
}

#[test]
fn export_writes_every_pack_file_and_a_declaration_with_their_digests() -> Result<()> {
    let folder = ScratchDir::new("demo-export")?;
    let output = xtask()
        .args(["demo", "--export"])
        .arg(folder.path())
        .arg("--small")
        .output()?;
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("exported 4 files"), "{stdout}");

    let text = std::fs::read_to_string(folder.path().join("pkg.json"))?;
    let base = url::Url::parse("https://cdn.example.com/demo/pkg.json")?;
    let declaration = parse_declaration(&text, &base).expect("the exported pkg.json is valid");
    let mut files = 0;
    for pack in &declaration.asset_packs {
        for file in &pack.files {
            // Relative URLs: the files sit beside pkg.json, at their pack path.
            assert_eq!(file.url, base.join(&file.path)?, "url of {}", file.path);
            let bytes = std::fs::read(folder.path().join(&file.path))
                .with_context(|| format!("{} was not written", file.path))?;
            assert_eq!(bytes.len() as u64, file.size, "size of {}", file.path);
            assert_eq!(
                hex(&Sha256::digest(&bytes)),
                hex(&file.sha256),
                "sha256 of {}",
                file.path
            );
            files += 1;
        }
    }
    assert_eq!(files, 4);
    let size_of = |policy| -> u64 {
        declaration
            .asset_packs
            .iter()
            .filter(|p| p.download_policy == policy)
            .flat_map(|p| &p.files)
            .map(|f| f.size)
            .sum()
    };
    assert_eq!(size_of(DownloadPolicy::Essential), SMALL_ESSENTIAL);
    assert_eq!(size_of(DownloadPolicy::Prefetch), SMALL_PREFETCH);
    assert!(declaration.essential_size() <= declaration.restrictions.essential_download_allowance);
    Ok(())
}

#[test]
fn demo_refuses_a_cdn_url_that_is_not_an_http_folder() {
    let output = xtask()
        .args(["demo", "--no-build", "--cdn", "ftp://example.com/x"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--cdn"), "{stderr}");
}

/// `cargo xtask demo` (the interactive server) as a child process, ended on drop.
struct InteractiveDemo {
    child: std::process::Child,
    app: String,
    cdn: String,
}

impl InteractiveDemo {
    /// Starts `demo --no-build --small` on free ports and reads the URLs it prints (bounded).
    fn start() -> Result<InteractiveDemo> {
        use std::io::BufRead;
        let mut child = xtask()
            .args([
                "demo",
                "--no-build",
                "--small",
                "--port",
                "0",
                "--cdn-port",
                "0",
            ])
            .stdout(std::process::Stdio::piped())
            .spawn()?;
        let stdout = child.stdout.take().context("stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut demo = InteractiveDemo {
            child,
            app: String::new(),
            cdn: String::new(),
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while demo.app.is_empty() || demo.cdn.is_empty() {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = rx
                .recv_timeout(left)
                .context("cargo xtask demo did not print its URLs in 60 s")?;
            if let Some(url) = line.strip_prefix("demo: open ") {
                demo.app = url.trim_end_matches('/').to_string();
            } else if let Some(rest) = line.strip_prefix("demo: packs (small) from ") {
                demo.cdn = rest.split(':').take(3).collect::<Vec<_>>().join(":");
            }
        }
        Ok(demo)
    }
}

impl Drop for InteractiveDemo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads `window.demo.state()` until `done` holds (bounded).
async fn wait_state(
    client: &fantoccini::Client,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Result<Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let state = client
            .execute("return window.demo ? window.demo.state() : null;", vec![])
            .await?;
        if !state.is_null() && done(&state) {
            return Ok(state);
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "waited 60 s for {what}: {state}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    }
}

fn row<'a>(state: &'a Value, id: &str) -> Option<&'a Value> {
    state["downloads"]
        .as_array()?
        .iter()
        .find(|r| r["download"] == id)
}

/// The page's pause, resume, "download now" and cancel buttons on a slow (throttled) download.
async fn buttons_drive_the_manager(engine: xtask::webdriver::Engine) -> Result<()> {
    use fantoccini::{ClientBuilder, Locator};
    let demo = InteractiveDemo::start()?;
    let driver = xtask::webdriver::WebDriver::start(engine)?;
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(driver.capabilities())
        .connect(&driver.url())
        .await?;
    let outcome = async {
        client.goto(&format!("{}/", demo.app)).await?;
        wait_state(&client, "the first launch", |s| {
            s["body"]["launched"] == "true"
        })
        .await?;
        const ID: &str = "slow-download";
        let size = 16 << 20;
        let url = format!("{}/gen/{size}/77?throttle=2097152", demo.cdn);
        let scheduled = client
            .execute(
                "return window.demo.manager().schedule({ id: arguments[0], url: arguments[1], size: arguments[2] }).then(() => 'ok', (e) => String(e));",
                vec![ID.into(), url.into(), size.into()],
            )
            .await?;
        assert_eq!(scheduled, "ok");
        // Progress comes per stored chunk (4 MiB): wait for the first.
        wait_state(&client, "the download to run", |s| {
            row(s, ID).is_some_and(|r| r["state"] == "downloading" && r["written"] != "0")
        })
        .await?;
        let click = |action: &'static str| {
            let client = client.clone();
            async move {
                let selector = format!("tr[data-download=\"{ID}\"] button[data-action=\"{action}\"]");
                client.find(Locator::Css(&selector)).await?.click().await?;
                anyhow::Ok(())
            }
        };
        click("pause").await?;
        let paused = wait_state(&client, "paused", |s| {
            row(s, ID).is_some_and(|r| r["state"] == "paused")
        })
        .await?;
        let written: u64 = row(&paused, ID).unwrap()["written"]
            .as_str()
            .unwrap_or("0")
            .parse()?;
        assert!(written > 0 && written < size, "paused at {written}");
        click("resume").await?;
        wait_state(&client, "resumed", |s| {
            row(s, ID).is_some_and(|r| r["state"] == "downloading")
        })
        .await?;
        click("foreground").await?;
        wait_state(&client, "a foreground download", |s| {
            row(s, ID).is_some_and(|r| r["foreground"] == "true")
        })
        .await?;
        click("cancel").await?;
        let cancelled = wait_state(&client, "the row to go after cancel", |s| row(s, ID).is_none())
            .await?;
        let log = cancelled["log"].as_array().cloned().unwrap_or_default();
        let has = |name: &str| log.iter().any(|e| e["name"] == name && e["text"].as_str().unwrap_or("").contains(ID));
        for name in ["didBegin", "didPause", "didFail"] {
            assert!(has(name), "the log has {name} for {ID}: {log:?}");
        }
        assert!(
            log.iter().any(|e| e["name"] == "didFail" && e["error"] == "Cancelled"),
            "didFail with Cancelled: {log:?}"
        );
        anyhow::Ok(())
    }
    .await;
    let _ = client.close().await;
    outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs browsers and pkg/: run by cargo xtask test"]
async fn chromium_demo_buttons_pause_resume_promote_and_cancel() -> Result<()> {
    buttons_drive_the_manager(xtask::webdriver::Engine::Chromium).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs browsers and pkg/: run by cargo xtask test"]
async fn firefox_demo_buttons_pause_resume_promote_and_cancel() -> Result<()> {
    buttons_drive_the_manager(xtask::webdriver::Engine::Firefox).await
}
