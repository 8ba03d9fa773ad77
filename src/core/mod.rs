//! The sans-IO core: it decides, the web driver does IO.
//!
//! Nothing here uses web-sys, js-sys, wasm-bindgen or idb, nothing is async, and nothing reads a
//! clock: time comes in as [`Millis`] from the driver. Everything builds and is tested on the host.
//! The one thing borrowed from the platform is a pure function: in a browser, [`urls`] asks its
//! `URL` parser for the ASCII form of an international domain name.
//!
//! | module | job |
//! |---|---|
//! | [`declaration`] | `pkg.json` / manifest: parse, validate (errors name the JSON path), Apple-key aliases |
//! | [`download`] | identifiers, requests, priority, essential flag, the download state machine |
//! | [`policy`] | allowance accounting, domain allow-list, install-size and storage pre-flight |
//! | [`queue`] | what starts next: essential first, priority, age; concurrency and bandwidth |
//! | [`transfer`] | one download's resumable transfer: events in, actions out |
//! | [`manager`] | one origin's download manager: schedule, foreground, pause/cancel, events and their route, asset packs |
//! | [`integrity`] | incremental SHA-256 whose state survives a checkpoint |
//! | [`range`] | HTTP byte ranges: `Range` answers (200/206/416), `Content-Range` parsing |
//! | [`error`] | the error enum and its stable codes |
//! | [`urls`] | URL and host parsing; international domain names through the platform's `URL` parser |
//! | [`vec_map`] | a small ordered map as a sorted `Vec` (less wasm than a `BTreeMap` per value type) |

pub mod declaration;
pub mod download;
pub mod error;
pub mod integrity;
pub mod manager;
pub mod policy;
pub mod queue;
pub mod range;
pub mod transfer;
pub mod urls;
pub mod vec_map;

/// Milliseconds on the driver's clock (e.g. `performance.now()` or `Date.now()`). The core never
/// reads a clock itself; only differences between two `Millis` are meaningful.
pub type Millis = u64;
