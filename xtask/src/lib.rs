//! The project's tooling, as a library so the end-to-end tests and benchmarks share it.
//!
//! - [`cdn`]: the local CDN (generated bodies, files, Range/ETag/CORS, injectable faults).
//! - [`webdriver`]: browsers and their WebDriver servers (chromedriver, geckodriver).
//! - [`workspace`]: where `www/`, `pkg/` and the target directory are.
pub mod cdn;
pub mod webdriver;
pub mod workspace;
