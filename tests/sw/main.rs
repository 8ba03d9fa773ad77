#![cfg(target_arch = "wasm32")]
//! Service-worker mode suite.
