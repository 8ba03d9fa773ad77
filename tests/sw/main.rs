#![cfg(target_arch = "wasm32")]
//! Service-worker mode suite: every test runs inside a real service worker
//! (`cargo xtask test` runs it in headless Chromium and Firefox).

wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_service_worker);

#[path = "../common/background_fetch.rs"]
mod background_fetch;
#[path = "../common/mod.rs"]
mod common;
#[path = "../common/container.rs"]
mod container;
#[path = "../common/faults.rs"]
mod faults;
#[path = "../common/fetcher.rs"]
mod fetcher;
#[path = "../common/js_api.rs"]
mod js_api;
#[path = "../common/locks.rs"]
mod locks;
#[path = "../common/manager.rs"]
mod manager;
#[path = "../common/packs.rs"]
mod packs;
#[path = "../common/routing.rs"]
mod routing;
#[path = "../common/serve.rs"]
mod serve;
#[path = "../common/stack.rs"]
mod stack;
#[path = "../common/transfer.rs"]
mod transfer;
#[path = "../common/urls.rs"]
mod urls;
