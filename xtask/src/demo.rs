//! `cargo xtask demo`: build, then serve `www/` (with `pkg/` at `/pkg/`) and the local CDN on
//! loopback, print the URLs and wait.

use anyhow::{Context, Result};
use xtask::cdn::{Server, ServerConfig};
use xtask::workspace;

use crate::build::{self, Profile};

/// Ports of `cargo xtask demo` (`--port`, `--cdn-port`).
pub struct Options {
    pub port: u16,
    pub cdn_port: u16,
    pub profile: Profile,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            port: 8787,
            cdn_port: 8788,
            profile: Profile::Release,
        }
    }
}

/// Builds `pkg/`, starts both servers and blocks until the process is interrupted.
pub fn run(options: &Options) -> Result<()> {
    build::run(options.profile)?;
    let site = Server::start(ServerConfig {
        port: options.port,
        mounts: vec![
            ("/pkg/".to_string(), workspace::pkg_dir()),
            ("/".to_string(), workspace::www_dir()),
        ],
        extra_headers: vec![("Cache-Control".to_string(), "no-store".to_string())],
    })
    .with_context(|| format!("demo: serving www/ on 127.0.0.1:{}", options.port))?;
    let cdn = Server::start(ServerConfig {
        port: options.cdn_port,
        ..ServerConfig::default()
    })
    .with_context(|| format!("demo: starting the CDN on 127.0.0.1:{}", options.cdn_port))?;
    println!("demo: app  {}/", site.origin());
    println!(
        "demo: cdn  {}/gen/<bytes>/<seed> (and .sha256)",
        cdn.origin()
    );
    println!("demo: Ctrl-C to stop");
    site.wait();
    drop(cdn);
    Ok(())
}
