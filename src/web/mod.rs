//! The web driver (wasm32 only): runs the core's decisions with `fetch`, IndexedDB and Web Locks.

pub mod bindings;

pub mod background_fetch;
pub mod container;
pub mod extension;
pub mod fetcher;
pub mod js;
pub mod locks;
pub mod manager;
pub mod packs;
pub mod serve;
pub mod transfer;
