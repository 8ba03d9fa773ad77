//! Helpers shared by the wasm-bindgen-test suites (`sw` and `page`), included with `#[path]`.
#![allow(dead_code)] // each suite uses its own subset

use background_assets::core::download::{DownloadRequest, Identifier, Priority, UrlDownload};
use background_assets::web::fetcher::{FetchOptions, Fetcher};
use wasm_bindgen::prelude::*;

/// The local CDN's origin (`http://127.0.0.1:PORT`), baked in at compile time from
/// `BA_TEST_CDN`, which `cargo xtask test` sets after starting the CDN.
///
/// # Panics
/// When the suite was built without `BA_TEST_CDN` (plain `cargo test --target wasm32-...`).
pub fn cdn_origin() -> &'static str {
    match option_env!("BA_TEST_CDN") {
        Some(origin) if !origin.is_empty() => origin,
        _ => panic!(
            "BA_TEST_CDN is not set: run the browser suites with `cargo xtask test`, which starts \
             the local CDN and passes its origin to the wasm build"
        ),
    }
}

/// A name no other test run uses (databases and locks outlive a failed test).
pub fn unique_name(prefix: &str) -> String {
    let random = (js_sys::Math::random() * 1e12) as u64;
    format!("{prefix}-{}-{random}", js_sys::Date::now() as u64)
}

/// Unwraps, or panics naming what failed and the JS error.
pub fn must<T, E: std::fmt::Debug>(what: &str, result: Result<T, E>) -> T {
    match result {
        Ok(value) => value,
        Err(err) => panic!("{what} failed: {err:?}"),
    }
}

#[wasm_bindgen]
extern "C" {
    /// The global `fetch`, bound directly so it works in a page and in a worker.
    #[wasm_bindgen(js_name = fetch)]
    pub fn global_fetch(input: &str, init: &web_sys::RequestInit) -> js_sys::Promise;
}

/// A random number for URLs and identifiers that no other run of the suite uses.
pub fn probe() -> u64 {
    (js_sys::Math::random() * 1e12) as u64
}

/// `/gen/<len>/<seed>?<query>&probe=<random>`: a path no other run of the suite uses, so the
/// CDN's counters and log entries for it are this test's alone.
pub fn gen_path(len: u64, seed: u64, query: &str) -> String {
    let sep = if query.is_empty() { "" } else { "&" };
    format!("/gen/{len}/{seed}?{query}{sep}probe={}", probe())
}

/// `<label>-<random>`: a download identifier no other run uses.
pub fn unique_id(label: &str) -> String {
    format!("{label}-{}", probe())
}

/// The whole body of `url`, read with the library's fetcher.
pub async fn fetch_all(url: &str) -> Vec<u8> {
    let mut stream = Fetcher::start(url, FetchOptions::default()).await.unwrap();
    let mut out = Vec::new();
    while let Some(piece) = stream.next_piece().await.unwrap() {
        out.extend_from_slice(&piece.to_vec());
    }
    out
}

/// The CDN's SHA-256 of `/gen/<len>/<seed>`, as hex.
pub async fn cdn_sha256(len: u64, seed: u64) -> String {
    let url = format!("{}/gen/{len}/{seed}.sha256", cdn_origin());
    String::from_utf8(fetch_all(&url).await).unwrap()
}

/// The CDN's chunk digests of `/gen/<len>/<seed>` in `chunk`-byte chunks (the declaration's
/// `chunks` JSON, parsed).
pub async fn cdn_chunk_digests(
    len: u64,
    seed: u64,
    chunk: u64,
) -> background_assets::core::integrity::ChunkDigests {
    let url = format!("{}/gen/{len}/{seed}.chunks/{chunk}", cdn_origin());
    serde_json::from_slice(&fetch_all(&url).await).unwrap()
}

/// One `GET` the CDN logged.
#[derive(Debug, Clone)]
pub struct Logged {
    pub range: Option<String>,
    pub if_range: Option<String>,
    pub status: u64,
    pub sent: u64,
}

impl Logged {
    /// `N` of an open `Range: bytes=N-` (a resume), if that is what this `GET` asked for.
    pub fn open_range_start(&self) -> Option<u64> {
        self.range
            .as_deref()
            .and_then(|r| r.strip_prefix("bytes="))
            .and_then(|r| r.strip_suffix('-'))
            .and_then(|n| n.parse().ok())
    }
}

/// The `GET`s the CDN logged for exactly `path` (path and query), in order.
pub async fn gets(path: &str) -> Vec<Logged> {
    let log: serde_json::Value =
        serde_json::from_slice(&fetch_all(&format!("{}/_control/log", cdn_origin())).await)
            .unwrap();
    log.as_array()
        .unwrap()
        .iter()
        .filter(|r| r["method"] == "GET" && r["path_and_query"] == path)
        .map(|r| Logged {
            range: r["range"].as_str().map(str::to_string),
            if_range: r["if_range"].as_str().map(str::to_string),
            status: r["status"].as_u64().unwrap(),
            sent: r["body_bytes_sent"].as_u64().unwrap(),
        })
        .collect()
}

/// Whether the CDN logs a `GET` of `path` within `ms` ms (its log polled every 20 ms).
pub async fn requested_within(path: &str, ms: u32) -> bool {
    for _ in 0..ms / 20 {
        if !gets(path).await.is_empty() {
            return true;
        }
        gloo_timers::future::TimeoutFuture::new(20).await;
    }
    false
}

/// Polls `ready` every 5 ms; panics naming `what` after `seconds` s.
pub async fn wait_until_within(seconds: u32, what: &str, mut ready: impl FnMut() -> bool) {
    for _ in 0..seconds * 200 {
        if ready() {
            return;
        }
        gloo_timers::future::TimeoutFuture::new(5).await;
    }
    panic!("timed out waiting until {what}");
}

/// Polls `ready` every 5 ms; panics naming `what` after 15 s.
pub async fn wait_until(what: &str, ready: impl FnMut() -> bool) {
    wait_until_within(15, what, ready).await
}

/// A `GET` of `<CDN origin><path>` as the download `id` with the declared size `len`, default
/// priority, created now.
pub fn cdn_download(id: &str, path: &str, len: Option<u64>) -> UrlDownload {
    let request = DownloadRequest::get(&format!("{}{path}", cdn_origin())).unwrap();
    UrlDownload::new(
        ident(id),
        request,
        false,
        len,
        Priority::DEFAULT,
        js_sys::Date::now() as u64,
    )
    .unwrap()
}

/// `id` as an [`Identifier`] (panics when it is not a valid one).
pub fn ident(id: &str) -> Identifier {
    Identifier::new(id).unwrap()
}

/// Records this global's `unhandledrejection` events (each reason described) while it lives: a
/// library that leaves a rejected promise without a handler shows up in the app's error reports.
pub struct UnhandledRejections {
    seen: std::rc::Rc<std::cell::RefCell<Vec<String>>>,
    listener: Closure<dyn FnMut(JsValue)>,
}

impl UnhandledRejections {
    /// Starts listening on `globalThis`.
    pub fn watch() -> UnhandledRejections {
        let seen = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let sink = seen.clone();
        let listener = Closure::<dyn FnMut(JsValue)>::new(move |event: JsValue| {
            let reason = background_assets::web::js::get(&event, "reason");
            sink.borrow_mut()
                .push(background_assets::web::js::describe(&reason));
        });
        Self::call("addEventListener", listener.as_ref());
        UnhandledRejections { seen, listener }
    }

    /// The reasons seen so far.
    pub fn seen(&self) -> Vec<String> {
        self.seen.borrow().clone()
    }

    fn call(method: &str, listener: &JsValue) {
        let global = js_sys::global();
        let function: js_sys::Function = background_assets::web::js::get(&global, method).into();
        must(
            method,
            function.call2(&global, &JsValue::from_str("unhandledrejection"), listener),
        );
    }
}

impl Drop for UnhandledRejections {
    fn drop(&mut self) {
        Self::call("removeEventListener", self.listener.as_ref());
    }
}
