//! The `#[wasm_bindgen]` face the JS side calls (pages through `pkg/background_assets.js`, the
//! service worker through `pkg/worker/background_assets.js`).
//!
//! # Example (JavaScript)
//! ```js
//! import init, { version, globalContext } from '/pkg/background_assets.js';
//! await init();
//! console.log(version(), globalContext()); // "0.1.0" "window"
//! ```

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

/// The crate version this wasm was built from (`CARGO_PKG_VERSION`).
///
/// # Example
/// ```no_run
/// assert_eq!(background_assets::web::bindings::version(), env!("CARGO_PKG_VERSION"));
/// ```
#[wasm_bindgen]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}

/// What kind of global this wasm runs in: `"serviceworker"`, `"window"`, `"worker"` (a
/// dedicated or shared worker) or `"unknown"`. The end-to-end test uses it to prove the answer
/// came from the worker's own wasm.
///
/// # Example
/// ```no_run
/// let context = background_assets::web::bindings::global_context();
/// assert!(["serviceworker", "window", "worker", "unknown"].contains(&context.as_str()));
/// ```
#[wasm_bindgen(js_name = globalContext)]
pub fn global_context() -> String {
    let global = js_sys::global();
    let name = if global.has_type::<web_sys::ServiceWorkerGlobalScope>() {
        "serviceworker"
    } else if global.has_type::<web_sys::Window>() {
        "window"
    } else if global.has_type::<web_sys::WorkerGlobalScope>() {
        "worker"
    } else {
        "unknown"
    };
    name.to_string()
}

/// The SHA-256 of `bytes` as 64 lower-case hex digits. The demo's worker uses it to prove it
/// fetched and hashed a CDN body with its own wasm.
///
/// # Example
/// ```no_run
/// let hex = background_assets::web::bindings::sha256_hex(b"abc");
/// assert!(hex.starts_with("ba7816bf"));
/// ```
#[wasm_bindgen(js_name = sha256Hex)]
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
