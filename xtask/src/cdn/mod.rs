//! The local CDN: a real HTTP/1.1 server on 127.0.0.1 for the demo, the tests and the benchmarks.
//!
//! ```text
//!            ┌──────────────────────── Server (own thread + tokio runtime) ─────────────────┐
//!  client ──►│ OPTIONS *            → 204 preflight                                         │
//!            │ /_control/log|reset  → request log as JSON / clear log and counters          │
//!            │ /gen/<len>/<seed>    → generated body  ─┐                                    │
//!            │ /gen/…/<seed>.sha256 → its SHA-256      │ query-string faults, Range,        │
//!            │ <mount prefix>/…     → files           ─┘ If-Range, ETag, CORS, throttle     │
//!            └──────────────────────────────────────────────────────────────────────────────┘
//! ```
//!
//! # What every response carries
//! `Access-Control-Allow-Origin: *`, `Access-Control-Expose-Headers: ETag, Content-Range,
//! Content-Length, Last-Modified, Accept-Ranges, Retry-After`, `Cross-Origin-Resource-Policy:
//! cross-origin`, `Timing-Allow-Origin: *`, then the configured `extra_headers` (which replace a
//! header of the same name).
//!
//! `OPTIONS` (any path) answers 204 with `Access-Control-Allow-Methods: GET, HEAD, OPTIONS`,
//! `Access-Control-Allow-Headers` echoing `Access-Control-Request-Headers` (or `Range, If-Range,
//! Authorization, Content-Type, X-Requested-With`), `Access-Control-Max-Age: 600`, and
//! `Access-Control-Allow-Private-Network: true` when the request has `Origin` and
//! `Access-Control-Request-Private-Network`. Under `/_control/` the allowed methods add `POST`.
//!
//! # Generated bodies
//! `GET|HEAD /gen/<len>/<seed>` serves [`generated_bytes`] with `Content-Length`, `Accept-Ranges:
//! bytes`, a strong `ETag: "g-<len>-<seed>-v<version>"` (version 0 unless `fault=etag-change`),
//! `Last-Modified: Wed, 01 Jan 2025 00:00:00 GMT`, `Content-Type: application/octet-stream` and
//! `Cache-Control: no-store`. `GET /gen/<len>/<seed>.sha256` answers [`generated_sha256`] as
//! `text/plain` (64 hex digits, no newline; faults do not apply to it), and
//! `GET /gen/<len>/<seed>.chunks/<chunk>` its chunk digests ([`generated_chunk_digests`], the
//! declaration's `chunks` JSON).
//!
//! Static files (see [`ServerConfig::mounts`]) get the same treatment with `ETag:
//! "f-<len hex>-<mtime ns hex>-v<version>"`, the file's `Last-Modified` and no `Cache-Control`.
//!
//! # Ranges
//! A single `Range: bytes=a-b | a- | -n` answers 206 with `Content-Range: bytes a-b/len`; one that
//! selects nothing answers 416 with `Content-Range: bytes */len`. Several ranges (`bytes=0-1,5-9`)
//! or a malformed value are ignored: 200 with the whole body. `If-Range` holding anything but the
//! current strong ETag or the exact `Last-Modified` date makes the server ignore `Range` (200).
//!
//! # Fault query language
//! Faults are chosen per request by the query string of a `/gen` or static-file URL. Parameters
//! combine; `fault=` may be repeated or hold a comma-separated list (`fault=etag-change,drop:100`).
//! Unknown parameters are ignored (use them as cache busters); a known parameter with a bad value
//! answers 400 with a text body naming it.
//!
//! | parameter | effect |
//! |---|---|
//! | `fault=drop:N` | normal status and headers, then the connection is closed after N body bytes (N ≥ body length: no effect) |
//! | `fault=short:N` | full `Content-Length`, but the body ends N bytes early and the connection is closed |
//! | `fault=long:N` | `/gen` only: the body is the first len+N bytes of the same stream, `Content-Length` (and the `Content-Range` total) len+N, ETag unchanged; on a file: 400 |
//! | `fault=stall:N` | send N body bytes, then nothing for `stall-ms` (default 30000), then close the connection |
//! | `stall-ms=MS` | how long `stall` waits |
//! | `fault=outage:N` | "network down and back": the connection is closed after N body bytes, and from that moment every `GET`/`HEAD` of this exact path+query, for `outage-ms` (default 2000), gets no HTTP answer at all (the connection is shut as soon as the request is read; logged with status 0); later ones are answered as usual (add `times=1` so they carry no new cut) |
//! | `outage-ms=MS` | how long the `outage` window lasts |
//! | `fault=no-range` | ignore `Range`/`If-Range`: 200 with the whole body |
//! | `fault=etag-change` | ETag version = how many earlier requests this exact URL has had (first `v0`, then `v1`, …); bytes unchanged |
//! | `fault=bad-content-range` | a 206 whose `Content-Range` start and end are 65536 too high (the bytes are those of the real range); no effect on a 200 |
//! | `fault=no-validator` | neither `ETag` nor `Last-Modified` (a client cannot resume; `If-Range` never matches) |
//! | `fault=status:CODE` | answer CODE (200..=599) with a short text body (empty for 204/304) |
//! | `retry-after=SECS` | with `fault=status`: add `Retry-After: SECS` |
//! | `auth=TOKEN` | 401 with `WWW-Authenticate: Bearer realm="cdn"` (exposed to CORS) unless the request sends `Authorization: Bearer TOKEN`; not a fault, so `times` does not limit it |
//! | `fault=redirect:/path` | 302 to `http://127.0.0.1:PORT/path` on this server (percent-encode `?`, `&`, `,` inside the path) |
//! | `fault=redirect-origin:URL` | 302 to the absolute URL (another origin) |
//! | `times=K` | the faults apply to the first K `GET`/`HEAD` requests of this exact path+query only; later ones are served normally (`throttle` still applies) |
//! | `throttle=BYTES_PER_SEC` | pace the body (frames of rate/10 bytes, at most 64 KiB); not a fault, so `times` does not limit it |
//! | `GET /echo?body=TEXT` | not a fault: answers the percent-decoded TEXT as `application/json` (`no-store`); the pack tests serve remote manifests with it |
//!
//! Precedence: `status`, then `redirect`, then the body. If several of `drop`, `short` and
//! `stall` cut the body, the earliest cut wins. Counters (for `times` and `etag-change`) are per
//! exact path+query and live until [`Server::reset`] or `POST /_control/reset`.
//!
//! # Control endpoints
//! `GET /_control/log` returns the request log as a JSON array of [`RequestRecord`] objects
//! (`method`, `path_and_query`, `range`, `if_range`, `status`, `body_bytes_sent`).
//! `POST /_control/reset` clears the log and the counters (204). Requests to `/_control/` are not
//! logged; every other request (including `OPTIONS`) is.
//!
//! # Example
//! ```no_run
//! use xtask::cdn::{Server, ServerConfig};
//! let server = Server::start(ServerConfig::default()).unwrap();
//! let url = format!("{}/gen/1048576/7?fault=drop:1000&times=1", server.origin());
//! // A first GET of `url` breaks after 1000 bytes; the second one succeeds.
//! # let _ = url;
//! ```

mod body;
mod faults;
mod files;
mod generated;
mod ranges;
mod respond;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};

use body::{ClosableIo, CloseFlag, OutageClock, ResponseBody, Source, ABORT};
use faults::FaultPlan;
use files::Lookup;
pub use generated::hex;
pub use generated::{generated_bytes, generated_chunk_digests, generated_sha256};
use respond::{preflight, redirect, serve, text, Representation};

/// `Last-Modified` of every generated body: 2025-01-01T00:00:00Z.
const GENERATED_LAST_MODIFIED_SECS: u64 = 1_735_689_600;

/// Headers a page may read on a cross-origin response.
const EXPOSED_HEADERS: &str =
    "ETag, Content-Range, Content-Length, Last-Modified, Accept-Ranges, Retry-After, WWW-Authenticate";

/// How to start a [`Server`].
///
/// # Example
/// ```
/// use xtask::cdn::ServerConfig;
/// let config = ServerConfig {
///     mounts: vec![("/".into(), std::env::temp_dir())],
///     extra_headers: vec![("Cache-Control".into(), "no-store".into())],
///     ..ServerConfig::default()
/// };
/// assert_eq!(config.port, 0);
/// ```
#[derive(Clone, Debug, Default)]
pub struct ServerConfig {
    /// 127.0.0.1 port; 0 picks a free one.
    pub port: u16,
    /// URL prefix → directory; the longest prefix wins, e.g. `("/pkg/", pkg_dir)`, `("/", www)`.
    /// Files get a Content-Type by extension, ETag, Last-Modified and Range support; a directory
    /// URL ending in `/` serves its `index.html` (without the `/`: 301 to add it). A path with a
    /// `..` segment (plain or percent-encoded) is refused with 400. A prefix must start with `/`.
    pub mounts: Vec<(String, PathBuf)>,
    /// Extra headers sent on every response, replacing any header of the same name
    /// (e.g. `Cache-Control: no-store` for a dev page server).
    pub extra_headers: Vec<(String, String)>,
}

impl ServerConfig {
    /// A dev page server on a free port: each `(prefix, directory)` of `mounts` served (see
    /// [`ServerConfig::mounts`]), every answer with `Cache-Control: no-store`.
    ///
    /// # Example
    /// ```
    /// use xtask::cdn::ServerConfig;
    /// let config = ServerConfig::no_store(vec![("/", std::env::temp_dir())]);
    /// assert_eq!(config.port, 0);
    /// assert_eq!(config.mounts, vec![("/".to_string(), std::env::temp_dir())]);
    /// assert_eq!(config.extra_headers[0], ("Cache-Control".into(), "no-store".into()));
    /// ```
    pub fn no_store(mounts: Vec<(&str, PathBuf)>) -> ServerConfig {
        ServerConfig {
            port: 0,
            mounts: mounts
                .into_iter()
                .map(|(prefix, dir)| (prefix.to_string(), dir))
                .collect(),
            extra_headers: vec![("Cache-Control".to_string(), "no-store".to_string())],
        }
    }
}

/// One request as the server saw and answered it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRecord {
    /// `GET`, `HEAD`, `OPTIONS`, …
    pub method: String,
    /// The request target, e.g. `/gen/100/1?fault=drop:10`.
    pub path_and_query: String,
    /// The `Range` header, if any.
    pub range: Option<String>,
    /// The `If-Range` header, if any.
    pub if_range: Option<String>,
    /// The status code sent; 0 when the connection was closed without an answer
    /// (`fault=outage`).
    pub status: u16,
    /// Body bytes handed to the connection so far (final once the response is done).
    pub body_bytes_sent: u64,
}

struct LogEntry {
    record: RequestRecord,
    sent: Arc<AtomicU64>,
}

/// State shared by the server thread and the [`Server`] handle.
struct Shared {
    origin: String,
    mounts: Vec<(String, PathBuf)>,
    extra_headers: Vec<(HeaderName, HeaderValue)>,
    log: Mutex<Vec<LogEntry>>,
    /// Requests seen per exact path+query (for `times=` and `etag-change`).
    counters: Mutex<HashMap<String, u64>>,
    /// The outage window of each exact path+query served with `fault=outage`.
    outages: Mutex<HashMap<String, Arc<OutageClock>>>,
    digests: Mutex<HashMap<(u64, u64), String>>,
}

impl Shared {
    fn requests(&self) -> Vec<RequestRecord> {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        log.iter()
            .map(|entry| RequestRecord {
                body_bytes_sent: entry.sent.load(Ordering::Relaxed),
                ..entry.record.clone()
            })
            .collect()
    }

    fn clear_log(&self) {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    fn reset(&self) {
        self.clear_log();
        self.counters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.outages
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// `fault=outage`: `None` when `path_and_query` is inside its outage window (the request
    /// gets no answer); otherwise the clock to hand to a response whose plan has the fault
    /// (a fresh one, replacing the URL's old window).
    fn outage(&self, path_and_query: &str, plan: &FaultPlan, nth: u64) -> Option<OutageState> {
        let mut outages = self.outages.lock().unwrap_or_else(|e| e.into_inner());
        if outages
            .get(path_and_query)
            .is_some_and(|clock| clock.refuses(plan.outage_ms))
        {
            return None;
        }
        if plan.for_request(nth).outage_after.is_none() {
            return Some(OutageState(None));
        }
        let clock = Arc::new(OutageClock::default());
        outages.insert(path_and_query.to_owned(), clock.clone());
        Some(OutageState(Some(clock)))
    }

    /// Counts a request of `path_and_query` and returns its 1-based number.
    fn count(&self, path_and_query: &str) -> u64 {
        let mut counters = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        let n = counters.entry(path_and_query.to_owned()).or_insert(0);
        *n += 1;
        *n
    }
}

/// What [`Shared::outage`] hands to the response: the clock its cut starts, if it has the fault.
struct OutageState(Option<Arc<OutageClock>>);

/// The answer to a request inside an outage window: the connection is shut before anything is
/// written (the response itself is never sent).
fn no_answer(close: &CloseFlag) -> Response<ResponseBody> {
    close.store(ABORT, Ordering::SeqCst);
    let mut response = Response::new(ResponseBody::empty());
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    response
}

/// A running CDN. It owns a tokio runtime on its own thread; dropping it stops the server, ends
/// its connections and frees the port.
///
/// # Example
/// ```
/// use xtask::cdn::{generated_sha256, Server, ServerConfig};
/// use std::io::{Read, Write};
/// let server = Server::start(ServerConfig::default()).unwrap();
/// let mut tcp = std::net::TcpStream::connect(server.addr()).unwrap();
/// tcp.write_all(b"GET /gen/10/1.sha256 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
/// let mut answer = String::new();
/// tcp.read_to_string(&mut answer).unwrap();
/// assert!(answer.ends_with(&generated_sha256(10, 1)));
/// assert_eq!(server.requests()[0].status, 200);
/// ```
pub struct Server {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Binds 127.0.0.1:`config.port` and starts serving; returns once the socket is listening.
    /// Callable from plain threads and from inside an async runtime.
    pub fn start(config: ServerConfig) -> anyhow::Result<Server> {
        let mut mounts = config.mounts;
        for (prefix, _) in &mounts {
            anyhow::ensure!(
                prefix.starts_with('/'),
                "mount prefix `{prefix}` must start with `/`"
            );
        }
        files::sort_mounts(&mut mounts);
        let extra_headers = config
            .extra_headers
            .iter()
            .map(|(name, value)| {
                let name = HeaderName::try_from(name.as_str())
                    .with_context(|| format!("extra header name `{name}` is not valid"))?;
                let value = HeaderValue::try_from(value.as_str())
                    .with_context(|| format!("extra header `{name}` has an invalid value"))?;
                Ok((name, value))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;

        let listener = std::net::TcpListener::bind(("127.0.0.1", config.port))
            .with_context(|| format!("cannot listen on 127.0.0.1:{}", config.port))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            origin: format!("http://{addr}"),
            mounts,
            extra_headers,
            log: Mutex::default(),
            counters: Mutex::default(),
            outages: Mutex::default(),
            digests: Mutex::default(),
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("cdn-worker")
            .enable_all()
            .build()
            .context("cannot build the CDN's tokio runtime")?;
        let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel();
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("cdn-{}", addr.port()))
            .spawn(move || {
                runtime.block_on(accept_loop(listener, thread_shared, shutdown_rx));
                runtime.shutdown_timeout(Duration::from_millis(200));
            })
            .context("cannot spawn the CDN thread")?;
        Ok(Server {
            addr,
            shared,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
        })
    }

    /// The listening address (127.0.0.1 and the chosen port).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn origin(&self) -> String {
        self.shared.origin.clone()
    }

    /// Every request served so far (except `/_control/`), in the order their responses started.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.requests()
    }

    /// Forgets the request log (the `times`/`etag-change` counters stay).
    pub fn clear_requests(&self) {
        self.shared.clear_log();
    }

    /// Forgets the request log and the per-URL counters, like `POST /_control/reset`.
    pub fn reset(&self) {
        self.shared.reset();
    }

    /// Blocks the calling thread while the server runs (until the process ends).
    pub fn wait(mut self) {
        let _keep_running = self.shutdown.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept_loop(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    mut shutdown: tokio::sync::oneshot::Receiver<()>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("cdn: cannot register the listener: {err}");
            return;
        }
    };
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(err) => {
                // Out of file descriptors and the like: wait a little and go on.
                eprintln!("cdn: accept failed: {err}");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        tokio::spawn(async move {
            let close: CloseFlag = CloseFlag::default();
            let io = TokioIo::new(ClosableIo::new(stream, close.clone()));
            let service = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                let close = close.clone();
                async move { Ok::<_, Infallible>(handle(&shared, close, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .serve_connection(io, service)
                .await;
        });
    }
}

/// Answers one request: routes it, adds the CORS and extra headers, logs it.
async fn handle(
    shared: &Shared,
    close: CloseFlag,
    req: Request<Incoming>,
) -> Response<ResponseBody> {
    let path_and_query = req
        .uri()
        .path_and_query()
        .map(|pq| pq.as_str().to_owned())
        .unwrap_or_else(|| "/".to_owned());
    let is_control = req.uri().path().starts_with("/_control/");
    let mut response = route(shared, close.clone(), &req).await;
    let answered = close.load(Ordering::SeqCst) != ABORT;
    add_common_headers(shared, response.headers_mut());
    if !is_control {
        let text = |name: HeaderName| {
            req.headers()
                .get(name)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        };
        let entry = LogEntry {
            record: RequestRecord {
                method: req.method().as_str().to_owned(),
                path_and_query,
                range: text(header::RANGE),
                if_range: text(header::IF_RANGE),
                status: if answered {
                    response.status().as_u16()
                } else {
                    0
                },
                body_bytes_sent: 0,
            },
            sent: response.body().sent_counter(),
        };
        shared
            .log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(entry);
    }
    response
}

fn add_common_headers(shared: &Shared, headers: &mut HeaderMap) {
    let fixed: [(HeaderName, &'static str); 4] = [
        (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        (header::ACCESS_CONTROL_EXPOSE_HEADERS, EXPOSED_HEADERS),
        (
            HeaderName::from_static("cross-origin-resource-policy"),
            "cross-origin",
        ),
        (HeaderName::from_static("timing-allow-origin"), "*"),
    ];
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_static(value));
    }
    for (name, value) in &shared.extra_headers {
        headers.insert(name.clone(), value.clone());
    }
}

async fn route(
    shared: &Shared,
    close: CloseFlag,
    req: &Request<Incoming>,
) -> Response<ResponseBody> {
    let path = req.uri().path();
    let method = req.method();
    if method == Method::OPTIONS {
        return preflight(req.headers(), path.starts_with("/_control/"));
    }
    if let Some(control) = path.strip_prefix("/_control/") {
        return control_endpoint(shared, method, control);
    }
    if method != Method::GET && method != Method::HEAD {
        let mut response = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET, HEAD and OPTIONS\n",
        );
        response.headers_mut().insert(
            header::ALLOW,
            HeaderValue::from_static("GET, HEAD, OPTIONS"),
        );
        return response;
    }
    if path == "/echo" {
        return echo(req.uri().query());
    }
    if let Some(rest) = path.strip_prefix("/gen/") {
        return generated(shared, close, req, rest).await;
    }
    match files::lookup(&shared.mounts, path) {
        Lookup::Unmounted | Lookup::Missing => text(StatusCode::NOT_FOUND, "not found\n"),
        Lookup::Refused(why) => text(StatusCode::BAD_REQUEST, &format!("{why}\n")),
        Lookup::AddSlash(location) => {
            let location = match req.uri().query() {
                Some(query) => format!("{location}?{query}"),
                None => location,
            };
            redirect(StatusCode::MOVED_PERMANENTLY, &location)
        }
        Lookup::File(file) => static_file(shared, close, req, file).await,
    }
}

fn control_endpoint(shared: &Shared, method: &Method, what: &str) -> Response<ResponseBody> {
    match (method, what) {
        (&Method::GET, "log") => {
            let records: Vec<serde_json::Value> = shared
                .requests()
                .into_iter()
                .map(|r| {
                    serde_json::json!({
                        "method": r.method,
                        "path_and_query": r.path_and_query,
                        "range": r.range,
                        "if_range": r.if_range,
                        "status": r.status,
                        "body_bytes_sent": r.body_bytes_sent,
                    })
                })
                .collect();
            json_no_store(serde_json::Value::Array(records).to_string())
        }
        (&Method::POST, "reset") => {
            shared.reset();
            let mut response = Response::new(ResponseBody::empty());
            *response.status_mut() = StatusCode::NO_CONTENT;
            response
        }
        (_, "log" | "reset") => text(
            StatusCode::METHOD_NOT_ALLOWED,
            "use GET /_control/log or POST /_control/reset\n",
        ),
        _ => text(StatusCode::NOT_FOUND, "unknown control endpoint\n"),
    }
}

/// `GET /echo?body=<percent-encoded text>`: the decoded text as `application/json` (tests serve
/// remote manifests and declarations with it); 400 naming `body` when it is missing or not
/// percent-encoded UTF-8.
fn echo(query: Option<&str>) -> Response<ResponseBody> {
    let body = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|pair| pair.strip_prefix("body="))
        .and_then(faults::percent_decode);
    let Some(body) = body else {
        return text(
            StatusCode::BAD_REQUEST,
            "/echo needs `body=<percent-encoded UTF-8>`\n",
        );
    };
    json_no_store(body)
}

/// A 200 `application/json` response that no cache keeps (the log and `/echo` answer with it).
fn json_no_store(body: String) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::full(body));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn generated(
    shared: &Shared,
    close: CloseFlag,
    req: &Request<Incoming>,
    rest: &str,
) -> Response<ResponseBody> {
    let (rest, wants_digest) = match rest.strip_suffix(".sha256") {
        Some(rest) => (rest, true),
        None => (rest, false),
    };
    // `/gen/<len>/<seed>.chunks/<chunk>`: the body's chunk digests (the declaration's `chunks`).
    let (rest, chunks) =
        match rest.split_once(".chunks/") {
            Some((rest, chunk)) => match chunk.parse::<u64>() {
                Ok(chunk) if chunk > 0 => (rest, Some(chunk)),
                _ => return text(
                    StatusCode::NOT_FOUND,
                    "expected /gen/<len>/<seed>.chunks/<chunk bytes> (a decimal number above 0)\n",
                ),
            },
            None => (rest, None),
        };
    let parsed = rest
        .split_once('/')
        .and_then(|(len, seed)| Some((len.parse::<u64>().ok()?, seed.parse::<u64>().ok()?)));
    let Some((len, seed)) = parsed else {
        return text(
            StatusCode::NOT_FOUND,
            "expected /gen/<len>/<seed> or /gen/<len>/<seed>.sha256 (decimal numbers)\n",
        );
    };
    if wants_digest {
        return digest(shared, len, seed).await;
    }
    if let Some(chunk) = chunks {
        let Ok(json) = tokio::task::spawn_blocking(move || {
            generated::generated_chunk_digests(len, seed, chunk)
        })
        .await
        else {
            return text(StatusCode::INTERNAL_SERVER_ERROR, "digests failed\n");
        };
        return json_no_store(json);
    }
    let plan = match FaultPlan::parse(req.uri().query()) {
        Ok(plan) => plan,
        Err(err) => return text(StatusCode::BAD_REQUEST, &format!("{err}\n")),
    };
    serve_planned(shared, close, req, plan, |plan, nth| {
        // `long` is a fault like the others: past `times=K` the body is the real one.
        let served_len = len + plan.for_request(nth).long_by.unwrap_or(0);
        Representation {
            source: Source::Generated {
                len: served_len,
                seed,
            },
            len: served_len,
            etag_base: format!("g-{len}-{seed}"),
            last_modified: SystemTime::UNIX_EPOCH
                + Duration::from_secs(GENERATED_LAST_MODIFIED_SECS),
            content_type: "application/octet-stream",
            no_store: true,
        }
    })
}

async fn digest(shared: &Shared, len: u64, seed: u64) -> Response<ResponseBody> {
    let cached = shared
        .digests
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&(len, seed))
        .cloned();
    let hex = match cached {
        Some(hex) => hex,
        None => {
            let Ok(hex) = tokio::task::spawn_blocking(move || generated_sha256(len, seed)).await
            else {
                return text(StatusCode::INTERNAL_SERVER_ERROR, "digest failed\n");
            };
            shared
                .digests
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert((len, seed), hex.clone());
            hex
        }
    };
    let mut response = text(StatusCode::OK, &hex);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn static_file(
    shared: &Shared,
    close: CloseFlag,
    req: &Request<Incoming>,
    path: PathBuf,
) -> Response<ResponseBody> {
    let plan = match FaultPlan::parse(req.uri().query()) {
        Ok(plan) if plan.long_by.is_some() => {
            return text(
                StatusCode::BAD_REQUEST,
                "fault=long applies to /gen bodies only\n",
            )
        }
        Ok(plan) => plan,
        Err(err) => return text(StatusCode::BAD_REQUEST, &format!("{err}\n")),
    };
    let meta = match tokio::fs::metadata(&path).await {
        Ok(meta) => meta,
        Err(_) => return text(StatusCode::NOT_FOUND, "not found\n"),
    };
    let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
    let mtime_ns = modified
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let representation = Representation {
        content_type: files::content_type(&path),
        len: meta.len(),
        etag_base: format!("f-{:x}-{mtime_ns:x}", meta.len()),
        last_modified: modified,
        source: Source::File(path),
        no_store: false,
    };
    serve_planned(shared, close, req, plan, |_, _| representation)
}

/// The tail every body route shares: count this request against its path and query, refuse it
/// (shut the connection unanswered) inside an outage window, else build the representation for
/// the `nth` request with `representation` and serve it under `plan`.
fn serve_planned(
    shared: &Shared,
    close: CloseFlag,
    req: &Request<Incoming>,
    plan: FaultPlan,
    representation: impl FnOnce(&FaultPlan, u64) -> Representation,
) -> Response<ResponseBody> {
    let key = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let nth = shared.count(key);
    let Some(OutageState(outage)) = shared.outage(key, &plan, nth) else {
        return no_answer(&close);
    };
    let representation = representation(&plan, nth);
    serve(
        req,
        plan,
        nth,
        &shared.origin,
        representation,
        close,
        outage,
    )
}
