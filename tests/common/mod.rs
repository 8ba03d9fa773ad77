//! Helpers shared by the wasm-bindgen-test suites (`sw` and `page`), included with `#[path]`.
#![allow(dead_code)] // each suite uses its own subset

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
