//! Small shared helpers for the web driver: the global scope (page or worker) and turning thrown
//! JavaScript values into readable text and typed errors.
//!
//! Everything here binds `globalThis` through [`js_sys::global()`], never `window()`, so the same
//! code runs in a page, a dedicated worker and a service worker.
//!
//! # Example
//! ```no_run
//! use background_assets::web::js;
//! let origin = js::origin();
//! assert!(origin.starts_with("http"));
//! ```

use js_sys::Reflect;
use wasm_bindgen::{JsCast, JsValue};

/// Reads `object[key]`, or `undefined` when it is missing or the read throws.
pub fn get(object: &JsValue, key: &str) -> JsValue {
    Reflect::get(object, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
}

/// Sets `object[key] = value` (ignores a throwing setter: only used on plain objects we made).
pub fn set(object: &JsValue, key: &str, value: &JsValue) {
    let _ = Reflect::set(object, &JsValue::from_str(key), value);
}

/// `globalThis.navigator` (a `Navigator` in a page, a `WorkerNavigator` in a worker).
pub fn navigator() -> JsValue {
    get(&js_sys::global(), "navigator")
}

/// `self.origin` of the running global (for example `http://127.0.0.1:8000`).
pub fn origin() -> String {
    get(&js_sys::global(), "origin")
        .as_string()
        .unwrap_or_default()
}

/// Whether the running global is a worker (dedicated, shared or service) rather than a page.
pub fn in_worker() -> bool {
    get(&js_sys::global(), "document").is_undefined()
}

/// The `name` of a thrown value (`"QuotaExceededError"`, `"AbortError"`, `"TypeError"`...), if it
/// has one.
pub fn error_name(value: &JsValue) -> Option<String> {
    if value.is_undefined() || value.is_null() || !value.is_object() {
        return None;
    }
    get(value, "name").as_string()
}

/// A one-line description of a thrown value: `name: message` for errors and `DOMException`s, the
/// string itself for strings, `String(value)` otherwise.
pub fn describe(value: &JsValue) -> String {
    if let Some(text) = value.as_string() {
        return text;
    }
    if value.is_object() {
        let name = get(value, "name").as_string();
        let message = get(value, "message").as_string();
        match (name, message) {
            (Some(n), Some(m)) if !m.is_empty() => return format!("{n}: {m}"),
            (Some(n), _) => return n,
            (None, Some(m)) => return m,
            _ => {}
        }
    }
    match value.dyn_ref::<js_sys::Object>() {
        Some(object) => String::from(object.to_string()),
        None => format!("{value:?}"),
    }
}

/// A fresh plain object (`{}`), for option bags and stored records.
pub fn object() -> js_sys::Object {
    js_sys::Object::new()
}

/// Calls `target[method](...args)` and awaits the promise it returns (any other value is
/// returned as it is); `Ok(None)` when `target[method]` is not a function, `Err` with what it
/// threw or rejected with.
///
/// # Example
/// ```no_run
/// # async fn demo(registration: wasm_bindgen::JsValue) {
/// use background_assets::web::js;
/// let ids = js::call_method(&registration, "getIds", &[]).await;
/// # let _ = ids; }
/// ```
pub async fn call_method(
    target: &JsValue,
    method: &str,
    args: &[JsValue],
) -> Result<Option<JsValue>, JsValue> {
    let Ok(function) = get(target, method).dyn_into::<js_sys::Function>() else {
        return Ok(None);
    };
    let array: js_sys::Array = args.iter().collect();
    let value = function.apply(target, &array)?;
    let value = match value.dyn_ref::<js_sys::Promise>() {
        Some(promise) => wasm_bindgen_futures::JsFuture::from(promise.clone()).await?,
        None => value,
    };
    Ok(Some(value))
}

/// The SHA-256 of `data`, by the browser's `crypto.subtle.digest` (native code, run off the
/// calling thread, with the CPU's SHA instructions where it has them). The digest starts when
/// this is called, not at the future's first poll, so it runs while the caller goes on. Where
/// `crypto.subtle` is missing (a page that is not a secure context), `data` is copied now and
/// hashed here, in wasm, when the future is polled; where a started digest fails, `data` is
/// hashed here then: keep it unchanged until the answer. The answer is the same either way,
/// only slower.
///
/// # Example
/// ```no_run
/// # async fn demo() {
/// use background_assets::web::js;
/// let digest = js::sha256(&js_sys::Uint8Array::from(&b"abc"[..])).await;
/// assert_eq!(digest[0], 0xba);
/// # }
/// ```
pub fn sha256(data: &js_sys::Uint8Array) -> impl std::future::Future<Output = [u8; 32]> + 'static {
    let subtle = get(&get(&js_sys::global(), "crypto"), "subtle");
    let started = get(&subtle, "digest")
        .dyn_into::<js_sys::Function>()
        .ok()
        .and_then(|digest| digest.call2(&subtle, &"SHA-256".into(), data).ok())
        .and_then(|value| value.dyn_into::<js_sys::Promise>().ok())
        .map(wasm_bindgen_futures::JsFuture::from)
        .ok_or_else(|| data.to_vec());
    let data = data.clone();
    async move {
        use sha2::Digest;
        let started = match started {
            Ok(started) => started,
            Err(copy) => return sha2::Sha256::digest(copy).into(),
        };
        if let Ok(digest) = started.await {
            let bytes = js_sys::Uint8Array::new(&digest);
            if bytes.length() == 32 {
                let mut out = [0u8; 32];
                bytes.copy_to(&mut out);
                return out;
            }
        }
        sha2::Sha256::digest(data.to_vec()).into()
    }
}

/// `future_to_promise`. Every promise the library hands to JavaScript goes through here: the
/// future is boxed, so `future_to_promise` and its task code are in the wasm once, not once per
/// future type (about 60 KB over the exported methods).
pub(crate) fn promise_of(
    future: impl std::future::Future<Output = Result<JsValue, JsValue>> + 'static,
) -> js_sys::Promise {
    promise_of_boxed(Box::pin(future))
}

#[inline(never)]
fn promise_of_boxed(
    future: futures::future::LocalBoxFuture<'static, Result<JsValue, JsValue>>,
) -> js_sys::Promise {
    wasm_bindgen_futures::future_to_promise(future)
}

/// Whether this is Firefox (Gecko): its user agent names `Firefox/`. For the few choices that
/// the benchmark showed to go opposite ways in Firefox and Chromium (each one says why).
pub fn is_firefox() -> bool {
    thread_local! {
        static FIREFOX: bool = get(&navigator(), "userAgent")
            .as_string()
            .is_some_and(|agent| agent.contains("Firefox/"));
    }
    FIREFOX.with(|firefox| *firefox)
}

/// `spawn_local`: runs `future` to completion on the current thread, boxed for the same reason
/// as [`promise_of`].
pub(crate) fn spawn(future: impl std::future::Future<Output = ()> + 'static) {
    spawn_boxed(Box::pin(future))
}

#[inline(never)]
fn spawn_boxed(future: futures::future::LocalBoxFuture<'static, ()>) {
    wasm_bindgen_futures::spawn_local(future)
}

/// `value`'s serde JSON form as a plain JavaScript value (the text, parsed by the browser's
/// `JSON`: one JSON codec in the wasm, not a second serde format). The `Err` says what failed.
pub(crate) fn to_plain<T: serde::Serialize + ?Sized>(value: &T) -> Result<JsValue, String> {
    let text = serde_json::to_string(value).map_err(|e| e.to_string())?;
    js_sys::JSON::parse(&text).map_err(|e| describe(&e))
}

/// The JSON text of a plain JavaScript value (`JSON.stringify`), for `serde_json` to read.
pub(crate) fn json_text(value: &JsValue) -> Result<String, String> {
    js_sys::JSON::stringify(value)
        .map_err(|e| describe(&e))?
        .as_string()
        .ok_or_else(|| "not JSON".into())
}
