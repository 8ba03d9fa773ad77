//! The project's tooling, as a library so the end-to-end tests and benchmarks share it.
//!
//! - [`cdn`]: the local CDN (generated bodies, files, Range/ETag/CORS, injectable faults).
pub mod cdn;
