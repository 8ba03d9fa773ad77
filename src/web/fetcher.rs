//! One streamed `fetch`: the response head, then the body piece by piece, cancellable.
//!
//! ```text
//!  Fetcher::start(url, options) --fetch(mode: cors, credentials: same-origin, signal)-->
//!  ResponseStream { head } --next_piece()--> Uint8Array pieces (64 KiB–1 MiB, as the engine
//!  reads them) --Coalescer--> Chunk { offset, bytes } of a few MiB --> container
//! ```
//!
//! * `mode: "cors"` only: an opaque (no-cors) response allows no progress, `Range` or hashing and
//!   costs ~7 MB of quota padding, so it is refused with [`Error::OpaqueResponseRefused`].
//! * `credentials: "same-origin"`, and an `Authorization` header for another origin is refused
//!   with [`Error::CrossOriginCredentials`] unless the app supplied it for exactly that origin
//!   ([`FetchOptions::credentials_origin`]: the origin of the download URL it gave them with), so
//!   credentials never go to an origin the app did not name (not after a redirect either: the
//!   engine drops `Authorization` on a cross-origin redirect).
//! * Forbidden request headers (`Cookie`, `Host`, `Range`, `Proxy-*`...: see
//!   [`check_header`](crate::core::download::check_header)) are refused with
//!   [`Error::DownloadInvalid`] instead of being dropped silently by the engine.
//! * The body is never buffered whole. [`ResponseStream::read_into`] reads it with a BYOB reader
//!   (`getReader({mode: "byob"})`) into one reused `ArrayBuffer` (each read transfers the
//!   buffer and hands it back in `result.value`; it is wrapped again for the next read), so
//!   reading allocates no new body arrays in the JS heap; where the body is not a byte stream it
//!   falls back to `ReadableStreamDefaultReader::new(&body)`, whose every read is a new
//!   `Uint8Array`. [`ResponseStream::next_piece`] uses the default reader.
//! * An `AbortController` is held: [`ResponseStream::abort`] and dropping the stream cancel it.
//! * The fetcher decides nothing about statuses or validators; the core does.
//!
//! # Example
//! ```no_run
//! # async fn run() -> Result<(), background_assets::core::error::Error> {
//! use background_assets::web::fetcher::{Coalescer, FetchOptions, Fetcher};
//! let mut stream = Fetcher::start("https://cdn.example/level-2.bin", FetchOptions::default()).await?;
//! let mut coalescer = Coalescer::new(Coalescer::DEFAULT_CHUNK_SIZE, 0);
//! while let Some(piece) = stream.next_piece().await? {
//!     coalescer.push(piece);
//!     while let Some(chunk) = coalescer.next_chunk() {
//!         /* hash + write chunk.bytes at chunk.offset */ let _ = chunk;
//!     }
//! }
//! if let Some(last) = coalescer.finish() { let _ = last; }
//! # Ok(()) }
//! ```

use js_sys::{ArrayBuffer, Object, Promise, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    AbortController, Headers, ReadableStream, ReadableStreamDefaultReader, Request,
    RequestCredentials, RequestInit, RequestMode, Response,
};

use super::js;
use crate::core::error::Error;

#[wasm_bindgen]
extern "C" {
    /// The global `fetch`, bound directly so it works in pages and workers alike.
    #[wasm_bindgen(js_name = fetch)]
    fn global_fetch(request: &Request) -> Promise;

    /// `ReadableStreamBYOBReader`, bound here so only the three calls used are needed.
    type ByobReader;

    /// `stream.getReader({mode: "byob"})`: throws a `TypeError` for a stream that is not a
    /// byte stream (or where the engine has no BYOB readers).
    #[wasm_bindgen(method, catch, js_name = getReader)]
    fn get_byob_reader(this: &BodyStream, options: &Object) -> Result<ByobReader, JsValue>;

    /// A body `ReadableStream`, seen through the one call web-sys lacks a binding for here.
    type BodyStream;

    /// `reader.read(view)`: the view's buffer is transferred; the result's `value` is a view of
    /// the same memory (in a new `ArrayBuffer`) holding what was read.
    #[wasm_bindgen(method, js_name = read)]
    fn read_view(this: &ByobReader, view: &Uint8Array) -> Promise;

    /// `reader.cancel()`.
    #[wasm_bindgen(method, js_name = cancel)]
    fn cancel_byob(this: &ByobReader) -> Promise;
}

/// What to send with a fetch.
///
/// # Example
/// ```
/// # #[cfg(target_arch = "wasm32")] {
/// use background_assets::web::fetcher::FetchOptions;
/// let resume = FetchOptions { range_start: Some(4 << 20), if_range: Some("\"abc\"".into()), ..Default::default() };
/// assert_eq!(resume.range_header().as_deref(), Some("bytes=4194304-"));
/// # }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchOptions {
    /// Ask for the bytes from this offset on (`Range: bytes=N-`).
    pub range_start: Option<u64>,
    /// With `range_start`: one past the last byte wanted (`Range: bytes=N-M` with M =
    /// `range_end - 1`), a bounded window; `None` for everything from `range_start` on.
    pub range_end: Option<u64>,
    /// The validator the range is conditional on (`If-Range`), a strong ETag.
    pub if_range: Option<String>,
    /// Extra request headers (name, value).
    pub headers: Vec<(String, String)>,
    /// The origin (`https://cdn.example`) the app explicitly gave `Authorization` credentials
    /// for: an `Authorization` header may go there even when it is not the running global's
    /// origin. `None`: same-origin only.
    pub credentials_origin: Option<String>,
}

impl FetchOptions {
    /// The `Range` header these options send, if any.
    ///
    /// # Example
    /// ```
    /// # #[cfg(target_arch = "wasm32")] {
    /// use background_assets::web::fetcher::FetchOptions;
    /// let window = FetchOptions { range_start: Some(0), range_end: Some(4096), ..Default::default() };
    /// assert_eq!(window.range_header().as_deref(), Some("bytes=0-4095"));
    /// # }
    /// ```
    pub fn range_header(&self) -> Option<String> {
        self.range_start.map(|start| match self.range_end {
            Some(end) if end > start => format!("bytes={start}-{}", end - 1),
            _ => format!("bytes={start}-"),
        })
    }
}

/// The response head, as the core needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseHead {
    /// HTTP status.
    pub status: u16,
    /// The final URL after redirects (`response.url`): check it against the allow-list again.
    pub url: String,
    /// Whether a redirect was followed.
    pub redirected: bool,
    /// `ETag`.
    pub etag: Option<String>,
    /// `Last-Modified`.
    pub last_modified: Option<String>,
    /// `Content-Range`.
    pub content_range: Option<String>,
    /// `Content-Length`.
    pub content_length: Option<String>,
    /// `Content-Type`.
    pub content_type: Option<String>,
    /// `Retry-After`.
    pub retry_after: Option<String>,
    /// `Content-Encoding` (visible cross-origin only if the server exposes it).
    pub content_encoding: Option<String>,
    /// `Date` (visible cross-origin only if the server exposes it).
    pub date: Option<String>,
    /// `WWW-Authenticate`, else `Proxy-Authenticate` (cross-origin only if exposed): what an
    /// authentication challenge (401, 407) asks for.
    pub www_authenticate: Option<String>,
}

impl ResponseHead {
    /// The headers as the core's transfer wants them. `Content-Length` is left out for a
    /// content-encoded body (the engine decodes it, so the length would not match the bytes).
    ///
    /// # Example
    /// ```
    /// # #[cfg(target_arch = "wasm32")] {
    /// use background_assets::web::fetcher::ResponseHead;
    /// let head = ResponseHead { content_length: Some("10".into()), content_encoding: Some("gzip".into()), ..Default::default() };
    /// assert_eq!(head.transfer_headers().content_length, None);
    /// # }
    /// ```
    pub fn transfer_headers(&self) -> crate::core::transfer::ResponseHeaders {
        let encoded = self
            .content_encoding
            .as_deref()
            .is_some_and(|e| !e.trim().is_empty() && !e.trim().eq_ignore_ascii_case("identity"));
        crate::core::transfer::ResponseHeaders {
            etag: self.etag.clone(),
            last_modified: self.last_modified.clone(),
            content_range: self.content_range.clone(),
            content_length: if encoded {
                None
            } else {
                self.content_length.clone()
            },
            retry_after: self.retry_after.clone(),
            date: self.date.clone(),
            final_url: (!self.url.is_empty()).then(|| self.url.clone()),
        }
    }
}

/// Starts fetches. See the [module documentation](self).
pub struct Fetcher;

fn network(error: &JsValue) -> Error {
    Error::Network {
        message: js::describe(error),
    }
}

/// The ASCII serialization of `url`'s origin, if it parses.
pub(crate) fn origin_of(url: &str) -> Option<String> {
    crate::core::urls::parse(url)
        .ok()
        .map(|u| u.origin().ascii_serialization())
}

impl Fetcher {
    /// Sends a `GET` for `url` (`mode: "cors"`, `credentials: "same-origin"`, with an abort
    /// signal) and waits for the response head.
    ///
    /// Errors: [`Error::DownloadInvalid`] for a URL that is not absolute http(s) or a forbidden
    /// or malformed header, [`Error::CrossOriginCredentials`] for an `Authorization` header to
    /// another origin than the page's and [`FetchOptions::credentials_origin`], [`Error::Network`] when the fetch fails (connection refused, CORS...),
    /// [`Error::OpaqueResponseRefused`] for an opaque response.
    pub async fn start(url: &str, options: FetchOptions) -> Result<ResponseStream, Error> {
        let parsed = crate::core::urls::parse(url).map_err(|e| Error::DownloadInvalid {
            reason: format!("url `{url}`: {e}"),
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(Error::DownloadInvalid {
                reason: format!("url `{url}`: only http and https can be fetched"),
            });
        }
        let target = origin_of(url);
        let same_origin = target.as_deref() == Some(js::origin().as_str());
        let credentials_allowed =
            same_origin || (target.is_some() && target == options.credentials_origin);
        let headers = Headers::new().map_err(|e| network(&e))?;
        for (name, value) in &options.headers {
            crate::core::download::check_header(name, value)
                .map_err(|reason| Error::DownloadInvalid { reason })?;
            let lower = name.to_ascii_lowercase();
            if !credentials_allowed && lower == "authorization" {
                return Err(Error::CrossOriginCredentials {
                    url: url.to_string(),
                });
            }
            headers
                .set(name, value)
                .map_err(|e| Error::DownloadInvalid {
                    reason: format!("header `{name}`: {}", js::describe(&e)),
                })?;
        }
        if let Some(range) = options.range_header() {
            headers.set("Range", &range).map_err(|e| network(&e))?;
        }
        if let Some(validator) = &options.if_range {
            headers
                .set("If-Range", validator)
                .map_err(|e| Error::DownloadInvalid {
                    reason: format!("If-Range `{validator}`: {}", js::describe(&e)),
                })?;
        }
        let controller = AbortController::new().map_err(|e| network(&e))?;
        let init = RequestInit::new();
        init.set_method("GET");
        init.set_mode(RequestMode::Cors);
        init.set_credentials(RequestCredentials::SameOrigin);
        init.set_headers(&headers);
        init.set_signal(Some(&controller.signal()));
        let request =
            Request::new_with_str_and_init(url, &init).map_err(|e| Error::DownloadInvalid {
                reason: format!("request for `{url}`: {}", js::describe(&e)),
            })?;
        let guard = AbortGuard(Some(controller));
        let response = JsFuture::from(global_fetch(&request))
            .await
            .map_err(|e| network(&e))?;
        let response: Response = response.dyn_into().map_err(|v| Error::Network {
            message: format!("fetch gave no Response: {}", js::describe(&v)),
        })?;
        ResponseStream::with_guard(response, guard)
    }
}

struct AbortGuard(Option<AbortController>);

impl Drop for AbortGuard {
    fn drop(&mut self) {
        if let Some(controller) = self.0.take() {
            controller.abort();
        }
    }
}

/// How a body is read: chosen at the first read ([`ResponseStream::read_into`] asks for BYOB,
/// [`ResponseStream::next_piece`] for the default reader); a stream has one reader for good.
enum Reader {
    /// No body, or not read yet.
    Unopened(Option<ReadableStream>),
    /// `ReadableStreamDefaultReader`: every read is a new `Uint8Array`.
    Default(ReadableStreamDefaultReader),
    /// `ReadableStreamBYOBReader` and the one buffer it reads into (`None` while a read holds
    /// it, or after a read that did not give it back).
    Byob(ByobReader, Option<ArrayBuffer>),
}

/// A response being read: its [`ResponseHead`] and its body, piece by piece. Dropping it
/// cancels the fetch.
pub struct ResponseStream {
    head: ResponseHead,
    reader: Reader,
    /// A piece [`ResponseStream::read_into`] has not handed out completely, and how far it got.
    leftover: Option<(Uint8Array, u32)>,
    /// [`ResponseStream::read_ahead`] saw the body's end: once `leftover` is handed out, the
    /// body is over.
    ended_ahead: bool,
    /// The response, for [`ResponseStream::read_ahead`] to take its body whole.
    response: Option<Response>,
    received: u64,
    done: bool,
    abort: AbortGuard,
}

impl std::fmt::Debug for ResponseStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseStream")
            .field("head", &self.head)
            .field("received", &self.received)
            .field("done", &self.done)
            .finish()
    }
}

impl ResponseStream {
    /// Wraps a `Response` obtained elsewhere (for example from a Background Fetch record).
    /// Refuses an opaque one with [`Error::OpaqueResponseRefused`].
    pub fn from_response(response: Response) -> Result<ResponseStream, Error> {
        ResponseStream::with_guard(response, AbortGuard(None))
    }

    fn with_guard(response: Response, abort: AbortGuard) -> Result<ResponseStream, Error> {
        let kind = js::get(&response, "type").as_string().unwrap_or_default();
        if kind == "opaque" || kind == "opaqueredirect" {
            return Err(Error::OpaqueResponseRefused {
                url: response.url(),
            });
        }
        let headers = response.headers();
        let header = |name: &str| headers.get(name).ok().flatten();
        let head = ResponseHead {
            status: response.status(),
            url: response.url(),
            redirected: response.redirected(),
            etag: header("ETag"),
            last_modified: header("Last-Modified"),
            content_range: header("Content-Range"),
            content_length: header("Content-Length"),
            content_type: header("Content-Type"),
            retry_after: header("Retry-After"),
            content_encoding: header("Content-Encoding"),
            date: header("Date"),
            www_authenticate: header("WWW-Authenticate").or_else(|| header("Proxy-Authenticate")),
        };
        let body = response.body();
        Ok(ResponseStream {
            done: body.is_none(),
            head,
            reader: Reader::Unopened(body),
            response: Some(response),
            leftover: None,
            ended_ahead: false,
            received: 0,
            abort,
        })
    }

    /// The response head.
    pub fn head(&self) -> &ResponseHead {
        &self.head
    }

    /// Body bytes received so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// The next piece of the body as the engine delivered it, or `None` at its end.
    /// A connection lost mid-body is [`Error::Network`]; after [`ResponseStream::abort`] it is
    /// [`Error::Cancelled`] (naming the URL).
    pub async fn next_piece(&mut self) -> Result<Option<Uint8Array>, Error> {
        if self.done {
            return Ok(None);
        }
        // What `read_ahead` holds goes first.
        if let Some((piece, used)) = self.leftover.take() {
            return Ok(Some(piece.subarray(used, piece.length())));
        }
        if self.ended_ahead {
            self.end();
            return Ok(None);
        }
        if let Reader::Unopened(body) = &mut self.reader {
            let Some(body) = body.take() else {
                self.done = true;
                return Ok(None);
            };
            self.reader = Reader::Default(self.default_reader(&body)?);
        }
        let promise = match &mut self.reader {
            Reader::Default(reader) => reader.read(),
            // A BYOB stream asked for a piece: read one into a buffer of its own.
            Reader::Byob(reader, _) => reader.read_view(&Uint8Array::new_with_length(64 * 1024)),
            Reader::Unopened(_) => return Ok(None),
        };
        let result = self.settle_read(promise).await?;
        if js::get(&result, "done").as_bool().unwrap_or(false) {
            self.end();
            return Ok(None);
        }
        let piece = self.piece_of(&result)?;
        self.received += piece.length() as u64;
        Ok(Some(piece))
    }

    fn default_reader(&self, body: &ReadableStream) -> Result<ReadableStreamDefaultReader, Error> {
        ReadableStreamDefaultReader::new(body).map_err(|e| Error::Network {
            message: format!("body of {}: {}", self.head.url, js::describe(&e)),
        })
    }

    /// Opens the BYOB reader if the body is a byte stream, else the default reader.
    fn open_for_read_into(&mut self) -> Result<(), Error> {
        if let Reader::Unopened(body) = &mut self.reader {
            let Some(body) = body.take() else {
                self.done = true;
                return Ok(());
            };
            let options = Object::new();
            js::set(&options, "mode", &JsValue::from_str("byob"));
            self.reader = match body.unchecked_ref::<BodyStream>().get_byob_reader(&options) {
                Ok(reader) => Reader::Byob(reader, None),
                Err(_) => Reader::Default(self.default_reader(&body)?),
            };
        }
        Ok(())
    }

    /// Whether the body is read with a BYOB reader into one reused buffer (decided at the first
    /// read: [`ResponseStream::read_into`] takes it when the body is a byte stream).
    pub fn reads_into_reused_buffer(&self) -> bool {
        matches!(self.reader, Reader::Byob(..))
    }

    /// Waits for a read; a rejection ends the stream with the error the read means.
    async fn settle_read(&mut self, promise: Promise) -> Result<JsValue, Error> {
        JsFuture::from(promise).await.map_err(|error| {
            self.done = true;
            let aborted = self.abort.0.as_ref().is_some_and(|c| c.signal().aborted());
            if aborted || js::error_name(&error).as_deref() == Some("AbortError") {
                Error::Cancelled {
                    identifier: self.head.url.clone(),
                }
            } else {
                Error::Network {
                    message: format!(
                        "body of {} after {} bytes: {}",
                        self.head.url,
                        self.received,
                        js::describe(&error)
                    ),
                }
            }
        })
    }

    fn end(&mut self) {
        self.done = true;
        self.abort.0 = None; // finished: nothing to cancel any more
    }

    fn piece_of(&self, result: &JsValue) -> Result<Uint8Array, Error> {
        js::get(result, "value")
            .dyn_into()
            .map_err(|v| Error::Network {
                message: format!("body piece is not bytes: {}", js::describe(&v)),
            })
    }

    /// Copies the next body bytes into `buf` (at most `buf.len()`), returning how many; `0`
    /// means the body ended (or `buf` is empty). A piece larger than `buf` is handed out over
    /// several calls, so wasm memory stays bounded by `buf` however large the engine's pieces.
    ///
    /// # Example
    /// ```no_run
    /// # async fn run(mut stream: background_assets::web::fetcher::ResponseStream) -> Result<(), background_assets::core::error::Error> {
    /// let mut buf = vec![0u8; 256 * 1024];
    /// loop {
    ///     let n = stream.read_into(&mut buf).await?;
    ///     if n == 0 { break }
    ///     // transfer.handle(Event::Body(&buf[..n]), now) ...
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn read_into(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        if buf.is_empty() || self.done {
            return Ok(0);
        }
        if !self.ended_ahead {
            self.open_for_read_into()?;
        }
        if let Reader::Byob(..) = self.reader {
            return self.read_byob(buf).await;
        }
        let (piece, used) = match self.leftover.take() {
            Some(left) => left,
            None if self.ended_ahead => {
                self.end();
                return Ok(0);
            }
            None => match self.next_piece().await? {
                Some(piece) => (piece, 0),
                None => return Ok(0),
            },
        };
        let available = piece.length() - used;
        let n = (available as usize).min(buf.len());
        piece.subarray(used, used + n as u32).copy_to(&mut buf[..n]);
        if (n as u32) < available {
            self.leftover = Some((piece, used + n as u32));
        }
        Ok(n)
    }

    /// One BYOB read into the reused buffer (at most `buf.len()` bytes), copied into `buf`.
    async fn read_byob(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        let want = buf.len().min(u32::MAX as usize) as u32;
        loop {
            let Reader::Byob(reader, spare) = &mut self.reader else {
                return Ok(0);
            };
            let buffer = match spare.take() {
                Some(buffer) if buffer.byte_length() >= want => buffer,
                _ => ArrayBuffer::new(want),
            };
            let view = Uint8Array::new_with_byte_offset_and_length(&buffer, 0, want);
            let promise = reader.read_view(&view);
            drop((view, buffer)); // detached by the read: the result hands the memory back
            let result = self.settle_read(promise).await?;
            let value = js::get(&result, "value");
            let piece = value.dyn_ref::<Uint8Array>().cloned();
            if let (Some(piece), Reader::Byob(_, spare)) = (&piece, &mut self.reader) {
                *spare = Some(piece.buffer());
            }
            if js::get(&result, "done").as_bool().unwrap_or(false) {
                self.end();
                return Ok(0);
            }
            let piece = piece.ok_or_else(|| Error::Network {
                message: format!("body piece is not bytes: {}", js::describe(&value)),
            })?;
            let n = (piece.length() as usize).min(buf.len());
            if n > 0 {
                piece.copy_to(&mut buf[..n]);
                self.received += n as u64;
                return Ok(n);
            }
            // Zero bytes without the end (not expected of a byte stream): read again.
        }
    }

    /// Reads the body at once, before anyone asks for it, until it ends or more than `limit`
    /// bytes are held: [`ResponseStream::read_into`] then hands those bytes out first. For a
    /// small body whose reader would start late: Firefox spends CPU while a response body waits
    /// unread. Holds at most `limit` bytes plus one piece; reads with the default reader (a
    /// stream has one reader for good). A body that breaks ends it with that error, as a read
    /// would have.
    pub async fn read_ahead(&mut self, limit: usize) -> Result<(), Error> {
        if self.done || self.ended_ahead || !matches!(self.reader, Reader::Unopened(_)) {
            return Ok(());
        }
        // A body whose length is known and within the limit is taken whole by the browser
        // (`arrayBuffer()`: no read per piece). Not with a content coding: the decoded body
        // may be longer than `Content-Length` says.
        let length = self
            .head
            .content_length
            .as_deref()
            .and_then(|l| l.parse::<usize>().ok());
        let identity = self
            .head
            .content_encoding
            .as_deref()
            .map_or(true, |c| c.trim().eq_ignore_ascii_case("identity"));
        if let (Some(length), true, Some(response)) = (length, identity, self.response.take()) {
            if length <= limit {
                let promise = response.array_buffer().map_err(|e| Error::Network {
                    message: format!("body of {}: {}", self.head.url, js::describe(&e)),
                })?;
                self.reader = Reader::Unopened(None); // the body is taken
                let whole = Uint8Array::new(&self.settle_read(promise).await?);
                self.received += u64::from(whole.length());
                self.ended_ahead = true;
                if whole.length() > 0 {
                    self.leftover = Some((whole, 0));
                }
                return Ok(());
            }
        }
        let mut pieces: Vec<Uint8Array> = Vec::new();
        let mut held = 0usize;
        while held <= limit {
            let Some(piece) = self.next_piece().await? else {
                self.done = false; // the end is handed out after the bytes held
                self.ended_ahead = true;
                break;
            };
            held += piece.length() as usize;
            pieces.push(piece);
        }
        let whole = match pieces.len() {
            0 => return Ok(()),
            1 => pieces.pop().expect("one piece"),
            _ => {
                let whole = Uint8Array::new_with_length(held as u32);
                let mut at = 0;
                for piece in &pieces {
                    whole.set(piece, at);
                    at += piece.length();
                }
                whole
            }
        };
        self.leftover = Some((whole, 0));
        Ok(())
    }

    /// Cancels the fetch; later reads end with [`Error::Cancelled`].
    pub fn abort(&mut self) {
        if let Some(controller) = &self.abort.0 {
            controller.abort();
        }
        // `cancel()` of a stream the abort already errored rejects: handled, so the app sees no
        // unhandled rejection.
        let cancelled = match &self.reader {
            Reader::Default(reader) => Some(reader.cancel()),
            Reader::Byob(reader, _) => Some(reader.cancel_byob()),
            Reader::Unopened(Some(body)) => Some(body.cancel()),
            Reader::Unopened(None) => None,
        };
        if let Some(cancelled) = cancelled {
            let _handled = JsFuture::from(cancelled);
        }
    }
}

/// A chunk ready to store: `bytes` belong at `offset` of the asset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Offset of the first byte in the asset.
    pub offset: u64,
    /// The bytes (exactly the chunk size, except for the last chunk).
    pub bytes: Vec<u8>,
}

/// Gathers body pieces into chunks of a fixed size, copying each byte once (from the JS piece
/// into the chunk's buffer in wasm memory, where it is hashed and handed to the container).
///
/// Pieces are queued as JavaScript arrays (no copy) and cut into chunks one at a time by
/// [`Coalescer::next_chunk`], so wasm memory holds about one chunk whatever the piece sizes
/// (an engine may hand over tens of MiB at once when the reader is slower than the network).
///
/// # Example
/// ```
/// # #[cfg(target_arch = "wasm32")] {
/// use background_assets::web::fetcher::Coalescer;
/// let mut c = Coalescer::new(4, 100);
/// c.push(js_sys::Uint8Array::from(&[1u8, 2, 3][..]));
/// assert!(c.next_chunk().is_none());
/// c.push(js_sys::Uint8Array::from(&[4u8, 5][..]));
/// let full = c.next_chunk().unwrap();
/// assert_eq!((full.offset, full.bytes), (100, vec![1, 2, 3, 4]));
/// assert!(c.next_chunk().is_none());
/// assert_eq!(c.finish().unwrap().bytes, vec![5]);
/// # }
/// ```
#[derive(Debug)]
pub struct Coalescer {
    chunk_size: usize,
    buffer: Vec<u8>,
    filled: usize,
    offset: u64,
    queued: std::collections::VecDeque<(Uint8Array, u32)>,
    queued_bytes: u64,
}

impl Coalescer {
    /// The default chunk size, 4 MiB: large enough for few IndexedDB values, small enough that
    /// a lost chunk costs little.
    pub const DEFAULT_CHUNK_SIZE: usize = 4 << 20;

    /// A coalescer whose first chunk starts at `start_offset` of the asset.
    /// A `chunk_size` of 0 is treated as 1.
    pub fn new(chunk_size: usize, start_offset: u64) -> Coalescer {
        Coalescer {
            chunk_size: chunk_size.max(1),
            buffer: Vec::new(),
            filled: 0,
            offset: start_offset,
            queued: Default::default(),
            queued_bytes: 0,
        }
    }

    /// The chunk size.
    pub fn chunk_size(&self) -> usize {
        self.chunk_size
    }

    /// Bytes held (buffered or queued) but not yet emitted.
    pub fn pending(&self) -> u64 {
        self.filled as u64 + self.queued_bytes
    }

    /// The asset offset the next emitted chunk starts at.
    pub fn next_offset(&self) -> u64 {
        self.offset
    }

    /// Queues a piece of the body (kept as a JavaScript array until it is cut into chunks).
    pub fn push(&mut self, piece: Uint8Array) {
        if piece.length() > 0 {
            self.queued_bytes += piece.length() as u64;
            self.queued.push_back((piece, 0));
        }
    }

    /// Copies queued bytes into the buffer until it holds `limit` bytes or nothing is queued.
    fn fill(&mut self, limit: usize) {
        while self.filled < limit {
            let Some((piece, used)) = self.queued.front_mut() else {
                break;
            };
            let available = (piece.length() - *used) as usize;
            let n = available.min(limit - self.filled);
            if self.buffer.len() < self.filled + n {
                self.buffer.resize(self.filled + n, 0);
            }
            piece
                .subarray(*used, *used + n as u32)
                .copy_to(&mut self.buffer[self.filled..self.filled + n]);
            self.filled += n;
            *used += n as u32;
            self.queued_bytes -= n as u64;
            if *used == piece.length() {
                self.queued.pop_front();
            }
        }
    }

    /// The next full chunk, if the queued pieces complete one. Call it until `None` after each
    /// [`Coalescer::push`].
    pub fn next_chunk(&mut self) -> Option<Chunk> {
        if self.buffer.capacity() < self.chunk_size {
            self.buffer
                .reserve_exact(self.chunk_size - self.buffer.len());
        }
        self.fill(self.chunk_size);
        if self.filled < self.chunk_size {
            return None;
        }
        let mut bytes = std::mem::take(&mut self.buffer);
        bytes.truncate(self.filled);
        let chunk = Chunk {
            offset: self.offset,
            bytes,
        };
        self.offset += self.filled as u64;
        self.filled = 0;
        Some(chunk)
    }

    /// At the end of the body: the last chunk, holding everything not yet emitted (shorter than
    /// a chunk when [`Coalescer::next_chunk`] was drained first), or `None` if nothing is left.
    pub fn finish(mut self) -> Option<Chunk> {
        let everything = self.filled + self.queued_bytes as usize;
        self.fill(everything);
        (self.filled > 0).then(|| {
            self.buffer.truncate(self.filled);
            Chunk {
                offset: self.offset,
                bytes: self.buffer,
            }
        })
    }
}
