//! What the sans-IO core borrows from the platform it runs on: only pure functions, never IO.
//!
//! In a browser (wasm32) that is the `URL` parser, for international domain names (see
//! [`crate::core::urls`]); on the host there is none.

/// `new URL(input, base).href`, or `None` when it throws.
#[cfg(target_arch = "wasm32")]
pub(crate) fn url_href(input: &str, base: Option<&str>) -> Option<String> {
    let url = match base {
        Some(base) => web_sys::Url::new_with_base(input, base),
        None => web_sys::Url::new(input),
    };
    url.ok().map(|url| url.href())
}

/// No platform parser on the host.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn url_href(_input: &str, _base: Option<&str>) -> Option<String> {
    None
}
