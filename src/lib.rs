//! # background-assets
//!
//! Apple's Background Assets, rebuilt for the web. Large assets (game levels, ML models, maps,
//! video) are fetched before first launch, after each update and in the background; transfers are
//! resumable, verified with SHA-256 and observable from every page and from the service worker.
//!
//! The crate has two halves, in the style of `quinn-proto` and `rustls`:
//!
//! ```text
//!            events (response head, body bytes, end, errors, time)
//!   +-------------------+  ------------------------------------->  +------------------+
//!   |  web driver       |                                          |  core            |
//!   |  (src/web, wasm)  |  <-------------------------------------  |  (src/core)      |
//!   |  fetch, IndexedDB |   actions (fetch range, write chunk,     |  no IO, no clock |
//!   |  Web Locks, timers|   checkpoint, verify, retry at, finish)  |  tested on host  |
//!   +-------------------+                                          +------------------+
//! ```
//!
//! [`core`] decides everything and is tested on the host with `cargo test`; the `web` module
//! (wasm32 only) runs the core's actions with `fetch`, IndexedDB and `navigator.locks`.
//!
//! # Example
//! ```
//! use background_assets::core::error::Error;
//! let e = Error::SessionDownloadDisallowedByDomain { host: "evil.example".into() };
//! assert_eq!(e.code(), 202);
//! ```

pub mod core;
mod platform;

#[cfg(target_arch = "wasm32")]
pub mod web;
