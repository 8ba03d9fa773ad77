//! `cargo xtask demo`: build, then serve the demo PWA (`www/`, with `pkg/` at `/pkg/` and a
//! `pkg.json` made for the origins in use) and the local CDN on loopback.
//!
//! ```text
//! cargo xtask demo                         serve on :8787 (app) and :8788 (CDN), print the URL, wait
//! cargo xtask demo --headless [--engine E] drive the whole flow in a headless browser, report, exit
//! cargo xtask demo --export DIR            write the packs' files and a pkg.json for them
//! cargo xtask demo --cdn URL               fetch the packs from URL (a folder --export wrote)
//! --small                                  packs 1/16 of the size (essential 4 MiB, prefetch 8 MiB)
//! ```
//!
//! The app origin serves `/pkg.json` rebuilt by [`demo_packs::declaration`]: file URLs on the CDN
//! actually started (or under `--cdn URL`), the domain allow-list naming that host.

use std::path::PathBuf;

use anyhow::{Context, Result};
use xtask::cdn::{Server, ServerConfig};
use xtask::webdriver::{Engine, ScratchDir};
use xtask::workspace;

use crate::build::{self, Profile};
use crate::demo_headless;
use crate::demo_packs::{self, DemoPack, FileLocation, PackScale};

/// Flags of `cargo xtask demo`.
pub struct Options {
    /// App port (`--port`); `None`: 8787, or a free one with `--headless`.
    pub port: Option<u16>,
    /// CDN port (`--cdn-port`); `None`: 8788, or a free one with `--headless`.
    pub cdn_port: Option<u16>,
    pub profile: Profile,
    /// `--headless`: run the scripted flow and exit.
    pub headless: bool,
    /// `--engine` for `--headless`.
    pub engine: Engine,
    /// `--small`.
    pub scale: PackScale,
    /// `--export DIR`: write the packs and exit.
    pub export: Option<PathBuf>,
    /// `--cdn URL`: the packs live in the folder at this URL instead of on the local CDN.
    pub cdn: Option<String>,
    /// `--no-build`: use the `pkg/` already there (the test runner builds it once).
    pub build: bool,
    /// `--screenshot PATH` for `--headless` (default under the target directory).
    pub screenshot: Option<PathBuf>,
    /// `--report-json PATH`: the headless report as JSON too.
    pub report_json: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            port: None,
            cdn_port: None,
            profile: Profile::Release,
            headless: false,
            engine: Engine::Chromium,
            scale: PackScale::Full,
            export: None,
            cdn: None,
            build: true,
            screenshot: None,
            report_json: None,
        }
    }
}

/// The running demo: the app server, the local CDN (unless `--cdn`), and what `pkg.json` declares.
pub struct DemoSite {
    /// Serves `www/`, `/pkg/` and `/pkg.json`.
    pub app: Option<Server>,
    /// The local CDN (`/gen/…`, `/assets/…`); `None` with `--cdn URL`.
    pub cdn: Option<Server>,
    /// The app's origin, e.g. `http://127.0.0.1:8787`.
    pub app_origin: String,
    /// Where the files are fetched from (the CDN origin or the `--cdn` URL).
    pub files_base: String,
    pub packs: Vec<DemoPack>,
    /// Holds the served `pkg.json`.
    _scratch: ScratchDir,
}

/// Runs `cargo xtask demo` with `options`; `Ok(false)` when a headless step failed.
pub fn run(options: &Options) -> Result<bool> {
    if let Some(dir) = &options.export {
        let summary = demo_packs::export(dir, options.scale)?;
        println!(
            "demo: exported {} files ({:.1} MiB, {} packs) and {}",
            summary.files,
            summary.bytes as f64 / 1048576.0,
            options.scale.name(),
            summary.declaration.display()
        );
        println!(
            "demo: serve {} with Range/ETag/CORS (any static server or object store), then\n      cargo xtask demo --cdn <its URL>{}",
            dir.display(),
            if options.scale == PackScale::Small {
                " --small"
            } else {
                ""
            }
        );
        return Ok(true);
    }
    if options.build {
        build::run(options.profile)?;
    }
    let (default_port, default_cdn_port) = if options.headless {
        (0, 0)
    } else {
        (8787, 8788)
    };
    let site = start(
        options.port.unwrap_or(default_port),
        options.cdn_port.unwrap_or(default_cdn_port),
        options.scale,
        options.cdn.as_deref(),
    )?;
    if options.headless {
        return demo_headless::run(options, site);
    }
    println!("demo: open {}/", site.app_origin);
    println!(
        "demo: packs ({}) from {}: {}",
        options.scale.name(),
        site.files_base,
        site.packs
            .iter()
            .map(|p| format!(
                "{} {} {:.1} MiB",
                p.id,
                p.policy,
                p.size() as f64 / 1048576.0
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("demo: Ctrl-C to stop");
    if let Some(app) = site.app {
        app.wait();
    }
    Ok(true)
}

/// Starts the CDN (unless `cdn_url`) and the app server with a `pkg.json` pointing at it.
pub fn start(
    port: u16,
    cdn_port: u16,
    scale: PackScale,
    cdn_url: Option<&str>,
) -> Result<DemoSite> {
    let pkg = workspace::pkg_dir();
    workspace::ensure_pkg_built(&pkg)?;
    let packs = demo_packs::demo_packs(scale)?;
    let (cdn, location) = match cdn_url {
        Some(url) => (None, FileLocation::Folder(demo_packs::cdn_base(url)?)),
        None => {
            let cdn = Server::start(ServerConfig {
                port: cdn_port,
                mounts: vec![("/assets/".to_string(), demo_packs::assets_dir())],
                ..ServerConfig::default()
            })
            .with_context(|| format!("demo: starting the CDN on 127.0.0.1:{cdn_port}"))?;
            let origin = cdn.origin();
            (Some(cdn), FileLocation::LocalCdn(origin))
        }
    };
    let files_base = match &location {
        FileLocation::LocalCdn(base) | FileLocation::Folder(base) => base.clone(),
        FileLocation::Relative => String::new(),
    };
    let scratch = ScratchDir::new("demo-site")?;
    let declaration_path = scratch.path().join("pkg.json");
    let declaration = demo_packs::declaration(&packs, scale, &location);
    std::fs::write(
        &declaration_path,
        serde_json::to_string_pretty(&declaration)?,
    )
    .with_context(|| format!("writing {}", declaration_path.display()))?;
    let app = Server::start(ServerConfig {
        port,
        mounts: vec![
            ("/pkg.json".to_string(), declaration_path),
            ("/pkg/".to_string(), pkg),
            ("/".to_string(), workspace::www_dir()),
        ],
        extra_headers: vec![("Cache-Control".to_string(), "no-store".to_string())],
    })
    .with_context(|| format!("demo: serving www/ on 127.0.0.1:{port}"))?;
    Ok(DemoSite {
        app_origin: app.origin(),
        app: Some(app),
        cdn,
        files_base,
        packs,
        _scratch: scratch,
    })
}
