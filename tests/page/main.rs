#![cfg(target_arch = "wasm32")]
//! Page mode suite.
