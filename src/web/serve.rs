//! Answers requests for stored assets from the container, with `Range` support, for the service
//! worker's `fetch` handler (and for pages that want a `Response`).
//!
//! The decision (200, 206 or 416, and which bytes) is [`crate::core::range::resolve`]; this module
//! only builds the `Response`. Bodies are `Blob`s made from the covering chunks and sliced, so a
//! range never reads more chunks than it touches and nothing is copied into wasm memory.
//!
//! # Example
//! ```no_run
//! # async fn run(request: web_sys::Request) -> Result<(), background_assets::core::error::Error> {
//! use background_assets::web::{container::Container, serve};
//! let container = Container::open(Container::DEFAULT_NAME).await?;
//! let response = serve::serve_request(&container, "level-2", &request).await?;
//! assert!(matches!(response.status(), 200 | 206 | 416));
//! # Ok(()) }
//! ```

use wasm_bindgen::JsValue;
use web_sys::{Headers, Response, ResponseInit};

use super::container::{Container, StoredAsset};
use super::js;
use crate::core::error::Error;
use crate::core::range::{resolve, RangeOutcome};

fn failed(operation: &str, error: &JsValue) -> Error {
    Error::Storage {
        message: format!("{operation}: {}", js::describe(error)),
    }
}

fn headers_for(asset: &StoredAsset, outcome: &RangeOutcome) -> Result<Headers, Error> {
    let headers = Headers::new().map_err(|e| failed("serve: headers", &e))?;
    let set = |name: &str, value: &str| {
        headers
            .set(name, value)
            .map_err(|e| failed(&format!("serve: header {name}"), &e))
    };
    set("Accept-Ranges", "bytes")?;
    set("ETag", &format!("\"sha256-{}\"", asset.sha256))?;
    set("Content-Length", &outcome.length(asset.size).to_string())?;
    if let Some(content_range) = outcome.content_range(asset.size) {
        set("Content-Range", &content_range)?;
    }
    if !matches!(outcome, RangeOutcome::Unsatisfiable) {
        set(
            "Content-Type",
            asset
                .content_type
                .as_deref()
                .unwrap_or("application/octet-stream"),
        )?;
    }
    Ok(headers)
}

/// Answers for the finished asset `identifier` with `range` (the request's `Range` header):
/// `200` with the whole asset, `206` with `Content-Range` for a satisfiable single range, `416`
/// with `Content-Range: bytes */size` otherwise. Every answer carries `Accept-Ranges: bytes`,
/// `Content-Length` and a strong `ETag` made from the SHA-256.
///
/// [`Error::DownloadDoesNotExist`] when there is no such finished asset.
///
/// # Example
/// ```no_run
/// # async fn run(c: &background_assets::web::container::Container) -> Result<(), background_assets::core::error::Error> {
/// let partial = background_assets::web::serve::serve(c, "level-2", Some("bytes=0-1023")).await?;
/// assert_eq!(partial.status(), 206);
/// # Ok(()) }
/// ```
pub async fn serve(
    container: &Container,
    identifier: &str,
    range: Option<&str>,
) -> Result<Response, Error> {
    respond(container, identifier, range, true).await
}

/// Like [`serve`], reading the `Range` header and method from `request`; a `HEAD` request gets
/// the same status and headers without a body.
pub async fn serve_request(
    container: &Container,
    identifier: &str,
    request: &web_sys::Request,
) -> Result<Response, Error> {
    let range = request.headers().get("Range").ok().flatten();
    let with_body = !request.method().eq_ignore_ascii_case("HEAD");
    respond(container, identifier, range.as_deref(), with_body).await
}

async fn respond(
    container: &Container,
    identifier: &str,
    range: Option<&str>,
    with_body: bool,
) -> Result<Response, Error> {
    let asset = container
        .asset(identifier)
        .await?
        .ok_or_else(|| Error::DownloadDoesNotExist {
            identifier: identifier.to_string(),
        })?;
    let outcome = resolve(range, asset.size);
    let (start, end) = match outcome {
        RangeOutcome::Full => (0, asset.size),
        RangeOutcome::Partial { start, end } => (start, end + 1),
        RangeOutcome::Unsatisfiable => (0, 0),
    };
    let headers = headers_for(&asset, &outcome)?;
    let init = ResponseInit::new();
    init.set_status(outcome.status());
    init.set_headers(&headers);
    let body = if with_body && end > start {
        Some(container.blob_range(identifier, start, end).await?.0)
    } else {
        None
    };
    Response::new_with_opt_blob_and_init(body.as_ref(), &init)
        .map_err(|e| failed(&format!("serve `{identifier}`"), &e))
}
