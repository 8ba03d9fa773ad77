//! `web::background_fetch::support()` in a page and a service worker, Chromium and Firefox: what
//! the engine really allows (a service worker's attempt to start a background fetch is tried).

use background_assets::web::background_fetch::{
    background_fetch_support_js, support, BackgroundFetchSupport,
};
use js_sys::Reflect;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::wasm_bindgen_test;

fn get(target: &JsValue, name: &str) -> JsValue {
    Reflect::get(target, &JsValue::from_str(name)).unwrap_or(JsValue::UNDEFINED)
}

fn is_firefox() -> bool {
    let navigator = get(&js_sys::global(), "navigator");
    get(&navigator, "userAgent")
        .as_string()
        .is_some_and(|ua| ua.contains("Firefox/"))
}

/// A service worker global (it has `skipWaiting` and `clients`; a page has neither).
fn in_service_worker() -> bool {
    let global = js_sys::global();
    !get(&global, "skipWaiting").is_undefined() && !get(&global, "clients").is_undefined()
}

#[wasm_bindgen_test]
fn support_follows_the_engine_and_the_context() {
    let expected = match (is_firefox(), in_service_worker()) {
        (true, _) => BackgroundFetchSupport::Unavailable,
        (false, true) => BackgroundFetchSupport::CompletionOnly,
        (false, false) => BackgroundFetchSupport::Start,
    };
    assert_eq!(support(), expected);
    assert_eq!(background_fetch_support_js(), expected.as_str());
}

#[wasm_bindgen_test]
fn support_names_are_stable() {
    let names: Vec<&str> = [
        BackgroundFetchSupport::Unavailable,
        BackgroundFetchSupport::CompletionOnly,
        BackgroundFetchSupport::Start,
    ]
    .iter()
    .map(|s| s.as_str())
    .collect();
    assert_eq!(names, ["unavailable", "completionOnly", "start"]);
}

/// In a service worker, `CompletionOnly` is what the engine enforces: starting a fetch from the
/// worker's own registration is refused (Chromium), or the API is absent (Firefox).
#[wasm_bindgen_test]
async fn a_service_worker_cannot_start_a_background_fetch() {
    if !in_service_worker() {
        return; // pages start them: the e2e test (xtask/tests/e2e.rs) covers that
    }
    let registration = get(&js_sys::global(), "registration");
    let manager = get(&registration, "backgroundFetch");
    if support() == BackgroundFetchSupport::Unavailable {
        assert!(manager.is_undefined(), "no backgroundFetch without the API");
        return;
    }
    assert_eq!(support(), BackgroundFetchSupport::CompletionOnly);
    let fetch: js_sys::Function = get(&manager, "fetch").dyn_into().expect("fetch()");
    let url = format!(
        "{}{}",
        super::common::cdn_origin(),
        super::common::gen_path(4096, 3, "")
    );
    let options = js_sys::Object::new();
    Reflect::set(
        &options,
        &"downloadTotal".into(),
        &JsValue::from_f64(4096.0),
    )
    .unwrap();
    let promise: js_sys::Promise = fetch
        .call3(
            &manager,
            &JsValue::from_str(&super::common::unique_id("bgf-sw")),
            &js_sys::Array::of1(&JsValue::from_str(&url)),
            &options,
        )
        .expect("fetch() returns a promise")
        .dyn_into()
        .unwrap();
    let error = JsFuture::from(promise)
        .await
        .expect_err("a service worker must not be able to start a background fetch");
    assert_eq!(
        get(&error, "name").as_string().as_deref(),
        Some("NotAllowedError"),
        "{error:?}"
    );
}
