//! Background Fetch: what this context can do with it.
//!
//! Background Fetch (Chromium only) lets the browser itself run a download that outlives the
//! tab and the service worker, and hands the bodies to the worker's `backgroundfetchsuccess`
//! event. Chromium no longer lets a service worker *start* one
//! (`registration.backgroundFetch.fetch()` rejects `NotAllowedError`: "not allowed in service
//! worker environments"); only a page (or a dedicated/shared worker) can, once the
//! registration is active. The worker keeps `get()`/`getIds()` and the `backgroundfetch*`
//! events. A page's first fetch per origin is allowed; later ones need the user's
//! automatic-downloads permission (`TypeError`: "This origin does not have permission to start
//! a fetch."). Firefox has no Background Fetch.
//!
//! So the hand-off is page-started. With `"backgroundFetch": true` in `pkg.json`, a page that
//! is about to run a scheduled (not foreground) download hands it to the browser instead
//! ([`start`]); the download stays `downloading` in the shared state, and every context that
//! would claim it first looks up its browser fetch ([`get`]): while the browser runs it nobody
//! else does. The worker's `backgroundfetchsuccess` stores the record's body through the normal
//! transfer (written, hashed, verified, the same `didFinish`); `backgroundfetchfail` lets the
//! normal transfer take over (its typed error, or its success, are the app's events);
//! `backgroundfetchabort` of a download still `downloading` (the user cancelled it in the
//! browser's UI) fails it with `Cancelled`. Where [`start`] is refused (no active registration,
//! no permission for a second fetch, Firefox) the normal transfer runs, as in every engine
//! without it.

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use crate::core::error::Error;
use crate::web::js;

/// The prefix of the ids the library gives its browser fetches.
pub const FETCH_ID_PREFIX: &str = "background-assets:";

/// What the current global can do with Background Fetch.
///
/// # Example
/// ```no_run
/// use background_assets::web::background_fetch::{support, BackgroundFetchSupport};
/// if support() == BackgroundFetchSupport::Start {
///     // a page: registration.backgroundFetch.fetch(...) may be called
/// }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackgroundFetchSupport {
    /// The engine has no Background Fetch (Firefox, Safari), or this kind of global has no
    /// service worker registration to run one (e.g. a worklet).
    Unavailable,
    /// A service worker of an engine with Background Fetch: it receives the
    /// `backgroundfetchsuccess`/`fail`/`abort`/`click` events and may `get()` registrations,
    /// but cannot start a fetch.
    CompletionOnly,
    /// A page (or a dedicated/shared worker) of an engine with Background Fetch: it may start a
    /// fetch through an active registration (subject to the user's permission).
    Start,
}

impl BackgroundFetchSupport {
    /// The stable name: `"unavailable"`, `"completionOnly"` or `"start"` (the JS face's value).
    ///
    /// # Example
    /// ```
    /// use background_assets::web::background_fetch::BackgroundFetchSupport;
    /// assert_eq!(BackgroundFetchSupport::CompletionOnly.as_str(), "completionOnly");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            BackgroundFetchSupport::Unavailable => "unavailable",
            BackgroundFetchSupport::CompletionOnly => "completionOnly",
            BackgroundFetchSupport::Start => "start",
        }
    }
}

/// `globalThis[name]`, if it is defined.
fn global_property(target: &JsValue, name: &str) -> Option<JsValue> {
    js_sys::Reflect::get(target, &JsValue::from_str(name))
        .ok()
        .filter(|value| !value.is_undefined() && !value.is_null())
}

/// `value instanceof ctor`, for a constructor only known at run time (it may not exist).
fn instance_of(value: &JsValue, ctor: &js_sys::Function) -> bool {
    js_sys::Reflect::get(ctor, &JsValue::from_str("prototype"))
        .ok()
        .and_then(|proto| proto.dyn_into::<js_sys::Object>().ok())
        .is_some_and(|proto| proto.is_prototype_of(value))
}

/// What the current global can do with Background Fetch (see [`BackgroundFetchSupport`]).
///
/// Decided from the global, without starting anything: no `BackgroundFetchManager` ->
/// [`Unavailable`](BackgroundFetchSupport::Unavailable); a `ServiceWorkerGlobalScope` ->
/// [`CompletionOnly`](BackgroundFetchSupport::CompletionOnly); any other global with
/// `navigator.serviceWorker` -> [`Start`](BackgroundFetchSupport::Start).
///
/// # Example
/// ```no_run
/// let what = background_assets::web::background_fetch::support();
/// web_sys::console::log_1(&what.as_str().into());
/// ```
pub fn support() -> BackgroundFetchSupport {
    let global = js_sys::global();
    if global_property(&global, "BackgroundFetchManager").is_none() {
        return BackgroundFetchSupport::Unavailable;
    }
    let in_service_worker = global_property(&global, "ServiceWorkerGlobalScope")
        .and_then(|ctor| ctor.dyn_into::<js_sys::Function>().ok())
        .is_some_and(|ctor| instance_of(&global, &ctor));
    if in_service_worker {
        return BackgroundFetchSupport::CompletionOnly;
    }
    let has_service_worker = global_property(&global, "navigator")
        .and_then(|navigator| global_property(&navigator, "serviceWorker"))
        .is_some();
    if has_service_worker {
        BackgroundFetchSupport::Start
    } else {
        BackgroundFetchSupport::Unavailable
    }
}

/// JS: `backgroundFetchSupport()` -> `'unavailable' | 'completionOnly' | 'start'`: what this
/// page or worker can do with Background Fetch (see [`support`]).
///
/// # Example
/// ```js
/// import init, { backgroundFetchSupport } from '/pkg/background_assets.js';
/// await init();
/// if (backgroundFetchSupport() === 'start') {
///   // registration.backgroundFetch.fetch(...) may be called from this page
/// }
/// ```
#[wasm_bindgen(
    js_name = backgroundFetchSupport,
    unchecked_return_type = "'unavailable' | 'completionOnly' | 'start'"
)]
pub fn background_fetch_support_js() -> String {
    support().as_str().to_string()
}

/// The id of the browser fetch that runs download `id` of container `database`:
/// `background-assets:<database>:<id>` (an identifier never contains `:`).
///
/// # Example
/// ```
/// use background_assets::web::background_fetch::{fetch_id, parse_fetch_id};
/// let id = fetch_id("background-assets", "level-2");
/// assert_eq!(id, "background-assets:background-assets:level-2");
/// assert_eq!(parse_fetch_id(&id), Some(("background-assets".into(), "level-2".into())));
/// assert_eq!(parse_fetch_id("my-own-fetch"), None);
/// ```
pub fn fetch_id(database: &str, id: &str) -> String {
    format!("{FETCH_ID_PREFIX}{database}:{id}")
}

/// The container and download of a library's fetch id ([`fetch_id`]); `None` for any other id
/// (the app's own background fetches).
pub fn parse_fetch_id(fetch_id: &str) -> Option<(String, String)> {
    let rest = fetch_id.strip_prefix(FETCH_ID_PREFIX)?;
    let (database, id) = rest.rsplit_once(':')?;
    (!database.is_empty() && !id.is_empty()).then(|| (database.to_string(), id.to_string()))
}

/// A `BackgroundFetchRegistration`: one download the browser runs (or ran).
#[derive(Clone, Debug)]
pub struct BrowserFetch {
    registration: JsValue,
}

/// Where a browser fetch is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BrowserFetchResult {
    /// The browser is still fetching.
    Running,
    /// Every record arrived: the worker's `backgroundfetchsuccess` has (or had) the bodies.
    Success,
    /// It failed or was aborted ([`BrowserFetch::failure_reason`] says why).
    Failure,
}

fn browser_error(what: &str, error: &JsValue) -> Error {
    Error::Unsupported {
        what: format!("Background Fetch: {what}: {}", js::describe(error)),
    }
}

async fn call_promise(
    target: &JsValue,
    method: &str,
    args: &[JsValue],
) -> Result<JsValue, JsValue> {
    js::call_method(target, method, args)
        .await?
        .ok_or_else(|| JsValue::from_str(&format!("no {method}()")))
}

impl BrowserFetch {
    /// Wraps a `BackgroundFetchRegistration` (for example `event.registration`).
    pub fn from_registration(registration: JsValue) -> BrowserFetch {
        BrowserFetch { registration }
    }

    /// The JS registration.
    pub fn registration(&self) -> &JsValue {
        &self.registration
    }

    /// Its id (see [`fetch_id`]).
    pub fn id(&self) -> String {
        js::get(&self.registration, "id")
            .as_string()
            .unwrap_or_default()
    }

    /// Running, succeeded or failed.
    pub fn result(&self) -> BrowserFetchResult {
        match js::get(&self.registration, "result").as_string().as_deref() {
            Some("success") => BrowserFetchResult::Success,
            Some("failure") => BrowserFetchResult::Failure,
            _ => BrowserFetchResult::Running,
        }
    }

    /// `failureReason`: `""` while nothing failed, else `aborted`, `bad-status`, `fetch-error`,
    /// `quota-exceeded` or `download-total-exceeded`.
    pub fn failure_reason(&self) -> String {
        js::get(&self.registration, "failureReason")
            .as_string()
            .unwrap_or_default()
    }

    /// Bytes the browser has downloaded.
    pub fn downloaded(&self) -> u64 {
        js::get(&self.registration, "downloaded")
            .as_f64()
            .unwrap_or(0.0)
            .max(0.0) as u64
    }

    /// The total given when it started (`0`: unknown).
    pub fn download_total(&self) -> u64 {
        js::get(&self.registration, "downloadTotal")
            .as_f64()
            .unwrap_or(0.0)
            .max(0.0) as u64
    }

    /// Asks the browser to stop it; whether it was still running.
    pub async fn abort(&self) -> bool {
        call_promise(&self.registration, "abort", &[])
            .await
            .ok()
            .and_then(|v| v.as_bool())
            .unwrap_or(false)
    }

    /// The first record's response, once the browser has it (after success, while the records
    /// are available: during `backgroundfetchsuccess`). `None` when there is no record.
    pub async fn response(&self) -> Result<Option<web_sys::Response>, Error> {
        let records = call_promise(&self.registration, "matchAll", &[])
            .await
            .map_err(|e| browser_error("reading the records", &e))?;
        let Some(record) = js_sys::Array::from(&records).iter().next() else {
            return Ok(None);
        };
        let ready = js::get(&record, "responseReady");
        let response = JsFuture::from(js_sys::Promise::from(ready))
            .await
            .map_err(|e| browser_error("the record's response", &e))?;
        Ok(response.dyn_into::<web_sys::Response>().ok())
    }
}

/// This global's `BackgroundFetchManager`: the worker's own registration, or in a page the
/// registration of its scope once it has an active worker. `None` without Background Fetch.
async fn fetch_manager() -> Option<JsValue> {
    if support() == BackgroundFetchSupport::Unavailable {
        return None;
    }
    let global = js_sys::global();
    let registration = if js::in_worker() {
        js::get(&global, "registration")
    } else {
        let container = js::get(&js::navigator(), "serviceWorker");
        let registration = call_promise(&container, "getRegistration", &[])
            .await
            .ok()?;
        if js::get(&registration, "active").is_null()
            || js::get(&registration, "active").is_undefined()
        {
            return None;
        }
        registration
    };
    let manager = js::get(&registration, "backgroundFetch");
    (!manager.is_undefined() && !manager.is_null()).then_some(manager)
}

/// The browser fetch with `fetch_id`, if the browser has one (running, or finished and not yet
/// settled by the worker). `None` where there is no Background Fetch.
///
/// # Example
/// ```no_run
/// # async fn demo() {
/// use background_assets::web::background_fetch::{fetch_id, get, BrowserFetchResult};
/// if let Ok(Some(fetch)) = get(&fetch_id("background-assets", "level-2")).await {
///     let running = fetch.result() == BrowserFetchResult::Running;
/// }
/// # }
/// ```
pub async fn get(fetch_id: &str) -> Result<Option<BrowserFetch>, Error> {
    let Some(manager) = fetch_manager().await else {
        return Ok(None);
    };
    let found = call_promise(&manager, "get", &[JsValue::from_str(fetch_id)])
        .await
        .map_err(|e| browser_error("get()", &e))?;
    Ok((!found.is_undefined() && !found.is_null()).then(|| BrowserFetch::from_registration(found)))
}

/// The ids of every browser fetch of this registration (the app's and the library's).
pub async fn ids() -> Vec<String> {
    let Some(manager) = fetch_manager().await else {
        return Vec::new();
    };
    match call_promise(&manager, "getIds", &[]).await {
        Ok(ids) => js_sys::Array::from(&ids)
            .iter()
            .filter_map(|id| id.as_string())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Hands a GET of `url` (with `headers`) to the browser as the fetch `fetch_id`; `total` is
/// the exact size if known (the browser fails a fetch that goes beyond it). Only a page (see
/// [`support`]) with an active worker may; errors: [`Error::Unsupported`] (no Background
/// Fetch here, no active registration), [`Error::DownloadFailedToStart`] (the browser refused:
/// a page's second fetch needs the user's automatic-downloads permission).
///
/// # Example
/// ```no_run
/// # async fn demo() -> Result<(), background_assets::core::error::Error> {
/// use background_assets::web::background_fetch::{fetch_id, start};
/// let id = fetch_id("background-assets", "level-2");
/// let fetch = start(&id, "https://cdn.example/level-2.bin", &[], Some(64 << 20), "Level 2").await?;
/// # Ok(()) }
/// ```
pub async fn start(
    fetch_id: &str,
    url: &str,
    headers: &[(String, String)],
    total: Option<u64>,
    title: &str,
) -> Result<BrowserFetch, Error> {
    if support() != BackgroundFetchSupport::Start {
        return Err(Error::Unsupported {
            what: format!("Background Fetch from this global ({})", support().as_str()),
        });
    }
    let manager = fetch_manager().await.ok_or_else(|| Error::Unsupported {
        what: "Background Fetch without an active service worker registration".into(),
    })?;
    let init = web_sys::RequestInit::new();
    let pairs = web_sys::Headers::new().map_err(|e| browser_error("headers", &e))?;
    for (name, value) in headers {
        pairs
            .append(name, value)
            .map_err(|e| browser_error(&format!("header `{name}`"), &e))?;
    }
    init.set_headers(&pairs);
    let request = web_sys::Request::new_with_str_and_init(url, &init)
        .map_err(|e| browser_error(&format!("a request for `{url}`"), &e))?;
    let options = js::object();
    if let Some(total) = total {
        js::set(&options, "downloadTotal", &JsValue::from_f64(total as f64));
    }
    js::set(&options, "title", &JsValue::from_str(title));
    let registration = call_promise(
        &manager,
        "fetch",
        &[JsValue::from_str(fetch_id), request.into(), options.into()],
    )
    .await
    .map_err(|e| Error::DownloadFailedToStart {
        identifier: fetch_id.to_string(),
        reason: format!(
            "the browser refused the background fetch: {}",
            js::describe(&e)
        ),
    })?;
    Ok(BrowserFetch::from_registration(registration))
}
