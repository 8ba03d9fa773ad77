//! Browsers and their WebDriver servers, shared by `cargo xtask test` and the end-to-end tests.
//!
//! [`Engine`] knows where a browser and its driver live and which capabilities start it headless
//! on a machine without outside network (Chromium runs as root here, so it needs `--no-sandbox`).
//! [`WebDriver`] runs one driver process on a free loopback port with a fresh profile, and ends
//! it (and the browser under it) when dropped.
//!
//! # Example
//! ```no_run
//! use xtask::webdriver::{Engine, WebDriver};
//! let driver = WebDriver::start(Engine::Firefox)?;
//! println!("{} driver at {}", driver.engine().name(), driver.url());
//! # anyhow::Ok(())
//! ```

use std::fmt;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value};

/// Chromium switches for a root user on a machine without outside network.
pub const CHROMIUM_ARGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
];

/// How long a driver gets to bind its port before [`WebDriver::start`] gives up.
const DRIVER_START_TIMEOUT: Duration = Duration::from_secs(30);

/// A browser engine the tests run in.
///
/// # Example
/// ```
/// use xtask::webdriver::Engine;
/// let engine: Engine = "firefox".parse()?;
/// assert_eq!(engine, Engine::Firefox);
/// assert_eq!(engine.driver_program(), "geckodriver");
/// # anyhow::Ok(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Engine {
    /// Chromium driven by chromedriver.
    Chromium,
    /// Firefox (ESR) driven by geckodriver.
    Firefox,
}

impl Engine {
    /// Every engine, in the order the tests run them.
    pub const ALL: [Engine; 2] = [Engine::Chromium, Engine::Firefox];

    /// The lower-case name used in flags, test names and the summary table.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Chromium => "chromium",
            Engine::Firefox => "firefox",
        }
    }

    /// The driver's program name.
    pub fn driver_program(self) -> &'static str {
        match self {
            Engine::Chromium => "chromedriver",
            Engine::Firefox => "geckodriver",
        }
    }

    /// The environment variable wasm-bindgen-test-runner reads the driver's path from.
    pub fn driver_env_var(self) -> &'static str {
        match self {
            Engine::Chromium => "CHROMEDRIVER",
            Engine::Firefox => "GECKODRIVER",
        }
    }

    /// Where the driver is: `/usr/bin/chromedriver` (Debian's `chromium-driver`) or `PATH`, and
    /// for geckodriver also `~/.cargo/bin` (it is installed with `cargo install`).
    pub fn driver_path(self) -> Option<PathBuf> {
        match self {
            Engine::Chromium => {
                existing("/usr/bin/chromedriver").or_else(|| find_program("chromedriver"))
            }
            Engine::Firefox => find_program("geckodriver"),
        }
    }

    /// Where the browser is: `/usr/bin/chromium`, or `firefox-esr` / `firefox` on `PATH`.
    pub fn browser_path(self) -> Option<PathBuf> {
        match self {
            Engine::Chromium => existing("/usr/bin/chromium").or_else(|| find_program("chromium")),
            Engine::Firefox => find_program("firefox-esr").or_else(|| find_program("firefox")),
        }
    }

    /// W3C capabilities that start this browser headless with `profile` as its fresh profile
    /// directory. wasm-bindgen-test-runner reads the same object from its `webdriver.json`.
    pub fn capabilities(self, profile: &Path) -> Map<String, Value> {
        let mut options = Map::new();
        let browser = self.browser_path();
        match self {
            Engine::Chromium => {
                let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|a| a.to_string()).collect();
                args.push(format!("--user-data-dir={}", profile.display()));
                options.insert("args".into(), json!(args));
                if let Some(binary) = browser {
                    options.insert("binary".into(), json!(binary));
                }
                let mut caps = Map::new();
                caps.insert("goog:chromeOptions".into(), Value::Object(options));
                caps
            }
            Engine::Firefox => {
                options.insert(
                    "args".into(),
                    json!(["-headless", "-profile", profile.display().to_string()]),
                );
                options.insert(
                    "prefs".into(),
                    json!({
                        "app.update.enabled": false,
                        "browser.shell.checkDefaultBrowser": false,
                        "datareporting.policy.dataSubmissionEnabled": false,
                        "network.captive-portal-service.enabled": false,
                        "extensions.update.enabled": false,
                    }),
                );
                if let Some(binary) = browser {
                    options.insert("binary".into(), json!(binary));
                }
                let mut caps = Map::new();
                caps.insert("moz:firefoxOptions".into(), Value::Object(options));
                caps
            }
        }
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Engine {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        Engine::ALL
            .into_iter()
            .find(|e| e.name() == s)
            .with_context(|| format!("unknown engine {s:?}: expected chromium or firefox"))
    }
}

/// `$CARGO_HOME/bin`, else `~/.cargo/bin`: where `cargo install` puts programs.
pub fn cargo_bin_dir() -> Option<PathBuf> {
    if let Some(home) = std::env::var_os("CARGO_HOME") {
        return Some(PathBuf::from(home).join("bin"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo").join("bin"))
}

/// Finds `name` on `PATH` or in [`cargo_bin_dir`].
///
/// # Example
/// ```
/// assert!(xtask::webdriver::find_program("surely-not-a-program-here").is_none());
/// ```
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(cargo_bin_dir())
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

fn existing(path: &str) -> Option<PathBuf> {
    Some(PathBuf::from(path)).filter(|p| p.is_file())
}

/// A fresh directory under the system temp dir, removed with its contents on drop.
///
/// # Example
/// ```
/// let dir = xtask::webdriver::ScratchDir::new("example")?;
/// assert!(dir.path().is_dir());
/// # anyhow::Ok(())
/// ```
#[derive(Debug)]
pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    /// Creates `<tmp>/background-assets-<label>-<pid>-<unique>`.
    pub fn new(label: &str) -> Result<ScratchDir> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "background-assets-{label}-{}-{nanos}-{unique}",
            std::process::id()
        ));
        std::fs::create_dir_all(&path)
            .with_context(|| format!("creating scratch directory {}", path.display()))?;
        Ok(ScratchDir { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A WebDriver server (chromedriver or geckodriver) on a free loopback port, with a fresh browser
/// profile. Dropping it ends the driver's whole process group, browser included.
#[derive(Debug)]
pub struct WebDriver {
    engine: Engine,
    child: Child,
    addr: SocketAddr,
    profile: ScratchDir,
}

impl WebDriver {
    /// Starts the engine's driver and waits (bounded) until it accepts connections.
    pub fn start(engine: Engine) -> Result<WebDriver> {
        let program = engine.driver_path().with_context(|| {
            format!(
                "{} not found (run `cargo xtask setup`)",
                engine.driver_program()
            )
        })?;
        let profile = ScratchDir::new(&format!("{}-profile", engine.name()))?;
        let port = free_port()?;
        let mut command = Command::new(&program);
        command
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let mut driver = WebDriver {
            engine,
            child,
            addr,
            profile,
        };
        let started = Instant::now();
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Some(status) = driver.child.try_wait().context("polling the driver")? {
                bail!("{} exited before listening: {status}", program.display());
            }
            if started.elapsed() > DRIVER_START_TIMEOUT {
                bail!(
                    "{} did not listen on {addr} within {DRIVER_START_TIMEOUT:?}",
                    program.display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(driver)
    }

    /// The engine this driver drives.
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// The driver's URL, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Capabilities for a new headless session using this driver's fresh profile.
    pub fn capabilities(&self) -> Map<String, Value> {
        self.engine.capabilities(self.profile.path())
    }

    /// The profile directory every session of this driver uses: a session started after an
    /// earlier one ended runs a new browser process on the same profile (a browser restart).
    pub fn profile(&self) -> &Path {
        self.profile.path()
    }

    /// Chromium only: runs the DevTools command `cmd` with `params` on the page of the
    /// WebDriver session `client`, through chromedriver's `goog/cdp/execute` endpoint; returns
    /// the command's result. Blocking work runs off the async runtime (30 s read timeout).
    pub async fn cdp(
        &self,
        client: &fantoccini::Client,
        cmd: &str,
        params: Value,
    ) -> Result<Value> {
        let session = client
            .session_id()
            .await?
            .context("the WebDriver session has no id")?;
        let driver_url = self.url();
        let cmd = cmd.to_string();
        tokio::task::spawn_blocking(move || cdp_execute(&driver_url, &session, &cmd, params))
            .await?
    }
}

/// Chromium only: runs the DevTools command `cmd` with `params` on the page of WebDriver
/// session `session` at `driver_url` (`http://127.0.0.1:PORT`), through chromedriver's
/// `goog/cdp/execute` endpoint, blocking (30 s read timeout); returns the command's result (the
/// answer's `value`). An answer other than `200` is an error naming the command.
pub fn cdp_execute(driver_url: &str, session: &str, cmd: &str, params: Value) -> Result<Value> {
    let addr = driver_url.trim_start_matches("http://");
    let body = json!({ "cmd": cmd, "params": params }).to_string();
    let request = format!(
        "POST /session/{session}/goog/cdp/execute HTTP/1.1\r\nHost: {addr}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = TcpStream::connect(addr).with_context(|| format!("CDP {cmd}: connect"))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.write_all(request.as_bytes())?;
    // Read the head, then exactly Content-Length bytes (the driver may keep the connection).
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    let (head, body_start) = loop {
        let n = stream
            .read(&mut buffer)
            .with_context(|| format!("CDP {cmd}: reading the answer"))?;
        if n == 0 {
            bail!("CDP {cmd}: the driver closed the connection without an answer");
        }
        received.extend_from_slice(&buffer[..n]);
        if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            break (
                String::from_utf8_lossy(&received[..end]).to_string(),
                end + 4,
            );
        }
    };
    let length = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    while received.len() < body_start + length {
        let n = stream.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        received.extend_from_slice(&buffer[..n]);
    }
    let payload = String::from_utf8_lossy(&received[body_start..]).to_string();
    if !head.starts_with("HTTP/1.1 200") {
        bail!("CDP {cmd}: {head} {payload}");
    }
    let answer: Value = serde_json::from_str(&payload)
        .with_context(|| format!("CDP {cmd}: parsing the answer {payload}"))?;
    Ok(answer["value"].clone())
}

impl Drop for WebDriver {
    fn drop(&mut self) {
        end_process_group(&mut self.child);
    }
}

/// Ends a child started in its own process group: SIGTERM to the group, then SIGKILL after a
/// grace period, so a browser under the driver does not outlive it.
fn end_process_group(child: &mut Child) {
    let group = format!("-{}", child.id());
    let _ = Command::new("kill")
        .args(["-TERM", "--", &group])
        .stderr(Stdio::null())
        .status();
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = Command::new("kill")
        .args(["-KILL", "--", &group])
        .stderr(Stdio::null())
        .status();
    let _ = child.kill();
    let _ = child.wait();
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .context("binding 127.0.0.1:0 to find a free port")?;
    Ok(listener.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engines_parse_from_their_names_and_reject_others() {
        for engine in Engine::ALL {
            assert_eq!(engine.name().parse::<Engine>().unwrap(), engine);
        }
        let err = "safari".parse::<Engine>().unwrap_err().to_string();
        assert!(err.contains("safari"), "{err}");
    }

    #[test]
    fn chromium_capabilities_run_headless_without_sandbox_in_the_given_profile() {
        let caps = Engine::Chromium.capabilities(Path::new("/tmp/p1"));
        let args = caps["goog:chromeOptions"]["args"].as_array().unwrap();
        for wanted in ["--headless", "--no-sandbox", "--user-data-dir=/tmp/p1"] {
            assert!(
                args.iter().any(|a| a == wanted),
                "{wanted} missing in {args:?}"
            );
        }
    }

    #[test]
    fn firefox_capabilities_run_headless_in_the_given_profile() {
        let caps = Engine::Firefox.capabilities(Path::new("/tmp/p2"));
        let args = caps["moz:firefoxOptions"]["args"].as_array().unwrap();
        assert_eq!(args[0], "-headless");
        assert!(args.iter().any(|a| a == "/tmp/p2"));
    }

    #[test]
    fn scratch_dirs_are_distinct_and_removed_on_drop() {
        let a = ScratchDir::new("t").unwrap();
        let b = ScratchDir::new("t").unwrap();
        assert_ne!(a.path(), b.path());
        let kept = a.path().to_path_buf();
        std::fs::write(kept.join("f"), b"x").unwrap();
        drop(a);
        assert!(!kept.exists());
    }
}
