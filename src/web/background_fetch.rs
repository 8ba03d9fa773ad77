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
//! So the library does not hand scheduled downloads to Background Fetch from the worker: the
//! normal transfer (chunked, checkpointed, resumed by whichever context runs next) is the path
//! in every engine. [`support`] tells what the current context could do, for apps that start
//! their own background fetches and for a later page-started enhancement.

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

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
