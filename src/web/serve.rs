//! Answers requests for stored assets from the container, with `Range` support, for the service
//! worker's `fetch` handler (and for pages that want a `Response`).
//!
//! The decision (200, 206 or 416, and which bytes) is [`crate::core::range::resolve`]; this module
//! only builds the `Response`. Bodies are `ReadableStream`s that read one stored chunk per pull
//! (each in its own short read-only transaction), so serving a 1 GiB asset holds about two
//! chunks in memory, a range reads only the chunks it touches, and nothing is copied into wasm
//! memory. The chunks to read are fixed when the response is made: if an update replaces the
//! asset meanwhile, the body errors rather than mixing two versions.
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

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::{Function, Promise};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{Headers, ReadableStream, Response, ResponseInit};

use super::container::{ChunkPlan, ChunkReader, Container, StoredAsset};
use super::js;
use crate::core::error::Error;
use crate::core::range::{resolve, RangeOutcome};

/// The path prefix under which the service worker serves stored assets.
pub const SERVE_PREFIX: &str = "/background-assets/";

/// The URL (on this global's origin) the service worker serves the stored download `identifier`
/// at: `{origin}/background-assets/id/{identifier}`.
///
/// # Example
/// ```no_run
/// let url = background_assets::web::serve::served_url("level-2");
/// assert!(url.ends_with("/background-assets/id/level-2"));
/// ```
pub fn served_url(identifier: &str) -> String {
    format!("{}{SERVE_PREFIX}id/{identifier}", js::origin())
}

/// The URL the service worker serves the current version of the pack file at `path` at:
/// `{origin}/background-assets/file/{path}`.
///
/// # Example
/// ```no_run
/// let url = background_assets::web::serve::served_file_url("levels/world-1.bin");
/// assert!(url.ends_with("/background-assets/file/levels/world-1.bin"));
/// ```
pub fn served_file_url(path: &str) -> String {
    format!("{}{SERVE_PREFIX}file/{path}", js::origin())
}

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
        let plan = container.plan(identifier, start, end).await?;
        Some(chunk_stream(container.chunk_reader(), plan)?)
    } else {
        None
    };
    Response::new_with_opt_readable_stream_and_init(body.as_ref(), &init)
        .map_err(|e| failed(&format!("serve `{identifier}`"), &e))
}

/// Bytes `start..end` (`end` exclusive) of the finished asset `identifier` as a
/// `ReadableStream` that reads one stored chunk per pull: for pages that want a large asset
/// without holding all of it (`new Response(stream)`, `pipeTo`, a decoder...).
///
/// # Example
/// ```no_run
/// # async fn run(c: &background_assets::web::container::Container) -> Result<(), background_assets::core::error::Error> {
/// let stream = background_assets::web::serve::stream_range(c, "video", 0, 1 << 20).await?;
/// let _ = web_sys::Response::new_with_opt_readable_stream(Some(&stream));
/// # Ok(()) }
/// ```
pub async fn stream_range(
    container: &Container,
    identifier: &str,
    start: u64,
    end: u64,
) -> Result<ReadableStream, Error> {
    let plan = container.plan(identifier, start, end).await?;
    chunk_stream(container.chunk_reader(), plan)
}

type Pull = Closure<dyn FnMut(JsValue) -> Promise>;
type Cancel = Closure<dyn FnMut(JsValue)>;

/// A body stream's progress and the closures JavaScript calls (dropped when the stream ends).
struct StreamState {
    reader: ChunkReader,
    plan: ChunkPlan,
    next: usize,
    position: u64,
    closures: Option<(Pull, Cancel)>,
}

/// Lets go of the stream's closures once it closed, errored or was cancelled (later: this may
/// run inside one of them).
fn release(state: &Rc<RefCell<StreamState>>) {
    if let Some(closures) = state.borrow_mut().closures.take() {
        js::spawn(async move { drop(closures) });
    }
}

fn call(controller: &JsValue, method: &str, argument: Option<&JsValue>) {
    if let Ok(function) = js::get(controller, method).dyn_into::<Function>() {
        let _ = match argument {
            Some(argument) => function.call1(controller, argument),
            None => function.call0(controller),
        };
    }
}

/// One pull: reads the next chunk, enqueues the part of it inside the plan, closes at the end.
async fn pull_next(
    state: Rc<RefCell<StreamState>>,
    controller: JsValue,
) -> Result<JsValue, JsValue> {
    let (reader, identifier, generation, offset, start, end) = {
        let s = state.borrow();
        let Some(&offset) = s.plan.offsets.get(s.next) else {
            drop(s);
            call(&controller, "close", None);
            release(&state);
            return Ok(JsValue::UNDEFINED);
        };
        (
            s.reader.clone(),
            s.plan.asset.identifier.clone(),
            s.plan.asset.generation,
            offset,
            s.plan.start,
            s.plan.end,
        )
    };
    let outcome = reader
        .read(&identifier, generation, offset)
        .await
        .and_then(|chunk| {
            let position = state.borrow().position;
            if offset > position {
                return Err(Error::Storage {
                    message: format!(
                        "serve `{identifier}`: bytes {position}..{offset} are missing"
                    ),
                });
            }
            Ok(chunk)
        });
    match outcome {
        Ok(chunk) => {
            let len = chunk.length() as u64;
            let from = start.max(offset) - offset;
            let to = end.min(offset + len).max(offset) - offset;
            if to > from {
                call(
                    &controller,
                    "enqueue",
                    Some(&chunk.subarray(from as u32, to as u32)),
                );
            }
            let finished = {
                let mut s = state.borrow_mut();
                s.next += 1;
                s.position = offset + len;
                offset + len >= end || s.next >= s.plan.offsets.len()
            };
            if finished {
                call(&controller, "close", None);
                release(&state);
            }
            Ok(JsValue::UNDEFINED)
        }
        Err(error) => {
            release(&state);
            // Rejecting the pull promise errors the stream (and the response body).
            Err(js_sys::Error::new(&error.to_string()).into())
        }
    }
}

/// A `ReadableStream` of the planned bytes, one stored chunk per pull.
fn chunk_stream(reader: ChunkReader, plan: ChunkPlan) -> Result<ReadableStream, Error> {
    let position = plan.offsets.first().copied().unwrap_or(plan.start);
    let state = Rc::new(RefCell::new(StreamState {
        reader,
        plan,
        next: 0,
        position,
        closures: None,
    }));
    let pull_state = state.clone();
    let pull: Pull = Closure::new(move |controller: JsValue| {
        js::promise_of(pull_next(pull_state.clone(), controller))
    });
    let cancel_state = state.clone();
    let cancel: Cancel = Closure::new(move |_reason: JsValue| release(&cancel_state));
    let source = js::object();
    js::set(&source, "pull", pull.as_ref());
    js::set(&source, "cancel", cancel.as_ref());
    state.borrow_mut().closures = Some((pull, cancel));
    ReadableStream::new_with_underlying_source(&source).map_err(|e| {
        release(&state);
        failed("serve: body stream", &e)
    })
}
