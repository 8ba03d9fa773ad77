//! One download as a resumable, verifying state machine: events in, actions out.
//!
//! A [`Transfer`] contains no networking code, no storage code and no clock (the model is
//! `quinn-proto`). The driver (the web engine, or a test) performs each [`Action`] and reports
//! what happened as an [`Event`], with the time:
//!
//! ```text
//!   driver                                                   Transfer
//!   ──────                                                   ────────
//!   Transfer::new(spec, now) / Transfer::resume(spec, checkpoint, now)
//!   loop {
//!       while let Some(action) = t.poll_action() {   ──▶  Fetch{url, range_start, if_range}
//!           perform it, in order                           Abort      (stop reading the response)
//!       }                                                  Write{offset, data, checkpoint}
//!       wait for the first of:                             Discard{checkpoint} (drop stored chunks)
//!         - response head / body piece / end / error       SaveCheckpoint(checkpoint)
//!         - a Write or Discard committed / failed          RetryAt(t) (informative)
//!         - t.poll_timeout() reached                       Finish{size, sha256} | Fail(error)
//!         - pause / resume / cancel from the app
//!       t.handle(event, now)                 ◀──  ResponseHead, Body, End, NetworkError,
//!   }                                                      Written, WriteFailed, Timeout,
//!                                                          Pause, Resume, Cancel
//! ```
//!
//! # The driver's contract
//! - Perform actions **in the order they are polled**. `Write`, `Discard` and `SaveCheckpoint`
//!   each carry the [`Checkpoint`] to store *in the same transaction* as the change (chunk put /
//!   chunks deleted). Report each `Write` with [`Event::Written`] (or [`Event::WriteFailed`]) in
//!   order; a `Write` polled before a `Discard` is still confirmed (the transfer knows it is stale).
//! - After `Abort`, deliver nothing more from that response. At most one fetch is open at a time.
//! - While [`Transfer::holds_response`] (paused with the response kept open), start no new read
//!   of the body; a read already in flight is still delivered (its bytes are stored at once).
//! - Call [`Transfer::handle`] with [`Event::Timeout`] once `now >= poll_timeout()`.
//! - To continue in another context (the worker was killed, another tab took over), read the last
//!   stored checkpoint and call [`Transfer::resume`]. Bytes that were received but not yet part
//!   of a committed `Write` are simply fetched again: at most one chunk plus one body piece.
//! - Check `response.url` ([`Transfer::final_url`], [`Progress::final_url`]) against the domain
//!   allow-list after each response head; refuse with [`Event::Refused`].
//! - When the engine knows it is offline, deliver `Pause`, and `Resume` once online, rather than
//!   letting network errors use up the attempts.
//! - If the body is content-encoded (gzip...), pass `content_length: None`: the header then
//!   counts encoded bytes, not the bytes the stream yields.
//!
//! # Resume rules
//! - The first request has no `Range`. A later one sends `Range: bytes=<received>-` and
//!   `If-Range: <validator>`. The validator is the first response's **strong** `ETag`; a weak
//!   (`W/`) ETag never counts. When there is no strong ETag, `Last-Modified` is used as the
//!   `If-Range` validator (RFC 9110 allows it for dates at least one second older than the
//!   response; a file replaced twice within one second could mix — a declared SHA-256 catches
//!   that and the file is never reported finished). With neither, the transfer restarts from zero.
//! - With [`TransferConfig::range_window_chunks`] `n > 0`, every request asks for a bounded
//!   window, `Range: bytes=<received>-<received + n chunks - 1>` (the first one too, without
//!   `If-Range`; the one reaching the known end of the file is open-ended). A window read to its
//!   end asks for the next one at once (progress, not a failed attempt); a `206` that ends past
//!   the window is a bad answer (restart), one that ends before it is read and the next window
//!   asked for from there, and a `200` is read whole. A context
//!   killed mid-download then leaves at most the rest of one window in the server's and the
//!   browser's buffers.
//! - `206` whose `Content-Range` starts where asked and agrees with the known total → continue.
//!   A `206` with a different strong `ETag`, a bad or mismatching `Content-Range`, or `416` →
//!   abort, [`Action::Discard`], fetch again from zero. A `200` in answer to a range → discard
//!   and keep reading that same `200` body from byte zero (no extra round trip). Every restart
//!   adds the bytes thrown away to [`Progress::wasted_bytes`]. A `416` whose `Content-Range` is
//!   `bytes */<bytes already stored>` means the file was complete: it is verified, not refetched.
//! - A body longer than the declared size / `Content-Length` / `Content-Range` → abort, discard
//!   and [`Error::SizeMismatch`] (no retry: the server's file is not the declared one). A body
//!   that ends early → like a network error: keep what arrived, retry with `Range`.
//! - Network errors, an early end, `408`, `429`, `5xx` and stalls are retried with exponential
//!   backoff (`backoff_base_ms · 2^(n-1)`, at most `backoff_max_ms`, no jitter: deterministic);
//!   `Retry-After` (delta-seconds, or an HTTP-date relative to the response's `Date`) replaces
//!   the backoff, clamped to `retry_after_max_ms`. `max_attempts` consecutive failed attempts
//!   that bring no byte beyond the furthest byte ever received end the transfer with
//!   [`Error::RetriesExhausted`] (or [`Error::Stalled`] if the last one stalled). Progress resets
//!   the count, so a flaky link that always moves forward is never given up on.
//! - `404`, `410`, any other `4xx` and unexpected statuses → [`Error::HttpStatus`], no retry.
//!   `401`/`403`/`407` → [`Error::AuthenticationRequired`], no retry (the manager's delegate may
//!   supply credentials and start a new transfer from the checkpoint).
//! - A stall is fewer than `stall_min_bytes_per_sec` over `stall_window_ms`, measured in
//!   consecutive windows from the response head (no head within one window is a stall too):
//!   abort, keep what arrived, retry.
//! - Pause stores the received bytes as a (possibly short) `Write` and keeps everything. While
//!   the body is being received the response is **held**, not aborted: the driver stops reading
//!   it (the server is held back by flow control, nothing it sent is lost) and a resume within
//!   [`TransferConfig::pause_hold_ms`] continues reading the same response, with no new request
//!   and not one byte fetched twice. A pause that lasts longer (the [`Transfer::poll_timeout`]
//!   deadline), or a held response that breaks or ends, gives the response up (`Abort`): resume
//!   then continues with `Range`. Pausing while connecting or waiting to retry aborts at once,
//!   as does any pause with `pause_hold_ms: 0`. Cancel aborts,
//!   discards and fails with [`Error::Cancelled`]. [`Event::WriteFailed`] (quota, stale epoch)
//!   fails with that error, no retry, stored bytes left as they are.
//!
//! # Integrity
//! Body pieces are coalesced into `chunk_size` writes. Each piece is hashed as it arrives, cut at
//! the chunk's end (the part of a piece past it belongs to the next chunk), so the
//! [`HashState`] in a `Write`'s checkpoint covers exactly the bytes up to the end of that chunk,
//! and a context that resumes from it still verifies the whole file. Hashing piece by piece
//! rather than a whole chunk at its cut keeps the driver's thread from a long block every chunk:
//! the browser goes on delivering the body meanwhile (`cargo xtask bench`: 7–9% more throughput
//! in Chromium and Firefox). At the end the size and SHA-256 are checked against the
//! declaration: [`Action::Finish`] is only ever emitted for a file whose size and digest match
//! (when declared), and only once every `Write` is confirmed.
//! A mismatch discards the stored bytes and fails with [`Error::IntegrityMismatch`] /
//! [`Error::SizeMismatch`]. There is no separate "verify" action: verification is inline.
//!
//! With declared chunk digests ([`TransferSpec::chunk_digests`]) nothing is hashed here: the
//! chunks are the list's, only whole chunks (and the file's last) are written, and the driver
//! checks each against [`Transfer::expected_chunk_digest`] before storing it (a mismatch is
//! [`Event::ChunkMismatch`]: [`Error::ChunkIntegrityMismatch`], the chunks before it kept). A
//! pause or a broken response keeps a partial chunk in memory, and the next request starts after
//! it; a killed context loses it (less than one chunk). The checkpoints say so
//! ([`Checkpoint::chunks_verified`]) and the file finishes with its declared SHA-256.
//!
//! # Example
//! A whole download from an in-memory server, with a dropped connection in the middle:
//! ```
//! use background_assets::core::transfer::*;
//! use sha2::{Digest, Sha256};
//!
//! let file: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
//! let mut spec = TransferSpec::new("level-1", "https://cdn.example/level-1.bin");
//! spec.expected_size = Some(file.len() as u64);
//! spec.sha256 = Some(Sha256::digest(&file).into());
//! spec.config.chunk_size = 4096;
//!
//! let mut t = Transfer::new(spec, 0);
//! let mut store: Vec<u8> = Vec::new();       // the "container"
//! let mut now = 0;
//! let mut first_request = true;
//! let finished = loop {
//!     let mut done = None;
//!     while let Some(action) = t.poll_action() {
//!         match action {
//!             Action::Fetch { range_start, if_range, .. } => {
//!                 let start = range_start.unwrap_or(0) as usize;
//!                 assert_eq!(if_range.is_some(), start > 0);
//!                 let (status, range) = if start == 0 {
//!                     (200, None)
//!                 } else {
//!                     (206, Some(format!("bytes {start}-{}/{}", file.len() - 1, file.len())))
//!                 };
//!                 let headers = ResponseHeaders {
//!                     etag: Some("\"v1\"".into()),
//!                     content_range: range,
//!                     content_length: Some((file.len() - start).to_string()),
//!                     ..Default::default()
//!                 };
//!                 t.handle(Event::ResponseHead { status, headers }, now);
//!                 // The first response breaks after 6000 bytes; the second completes.
//!                 let end = if first_request { 6000 } else { file.len() };
//!                 for piece in file[start..end].chunks(1000) {
//!                     now += 10;
//!                     t.handle(Event::Body(piece), now);
//!                 }
//!                 let last = if first_request {
//!                     Event::NetworkError("connection reset".into())
//!                 } else {
//!                     Event::End
//!                 };
//!                 first_request = false;
//!                 t.handle(last, now);
//!             }
//!             Action::Write { offset, data, .. } => {
//!                 assert_eq!(offset as usize, store.len());
//!                 store.extend_from_slice(&data);
//!                 t.handle(Event::Written { offset, len: data.len() as u64 }, now);
//!             }
//!             Action::Discard { .. } => store.clear(),
//!             Action::Finish { size, sha256 } => done = Some(Ok((size, sha256))),
//!             Action::Fail(e) => done = Some(Err(e)),
//!             Action::Abort | Action::SaveCheckpoint(_) | Action::RetryAt(_) => {}
//!         }
//!     }
//!     if let Some(done) = done {
//!         break done;
//!     }
//!     now = t.poll_timeout().expect("a retry is scheduled");
//!     t.handle(Event::Timeout, now);
//! };
//! let (size, _digest) = finished.unwrap();
//! assert_eq!(size, 10_000);
//! assert_eq!(store, file);
//! assert_eq!(t.progress().wasted_bytes, 0);
//! assert_eq!(t.progress().attempts, 2);
//! ```

mod headers;

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::core::error::{hex, Error};
use crate::core::integrity::{ChunkDigests, HashState, Sha256Stream};
use crate::core::Millis;

use headers::ContentRange;

/// Tuning of one transfer. The defaults suit a service worker on a normal connection.
///
/// # Example
/// ```
/// use background_assets::core::transfer::TransferConfig;
/// let config = TransferConfig { chunk_size: 1 << 20, ..TransferConfig::default() };
/// assert!(config.validate().is_ok());
/// assert!(TransferConfig { chunk_size: 0, ..config }.validate().is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct TransferConfig {
    /// Bytes coalesced into one `Write` (default 4 MiB). Also the most a killed context loses.
    pub chunk_size: u32,
    /// Consecutive failed attempts without new bytes before giving up (default 5, at least 1).
    pub max_attempts: u32,
    /// First retry delay; doubled for each further consecutive failure (default 1 s).
    pub backoff_base_ms: u64,
    /// Longest backoff delay (default 60 s).
    pub backoff_max_ms: u64,
    /// Longest `Retry-After` honoured (default 5 min); longer values are clamped to this.
    pub retry_after_max_ms: u64,
    /// Lowest accepted speed over a window; `0` turns stall detection off (default 1024 B/s).
    pub stall_min_bytes_per_sec: u64,
    /// The window over which the speed is measured (default 30 s).
    pub stall_window_ms: u64,
    /// How long a pause keeps the response being received open (default
    /// [`DEFAULT_PAUSE_HOLD_MS`], 30 s): a resume within it continues the same response and
    /// fetches nothing twice; a longer pause aborts it and resume sends a `Range` request. `0`
    /// aborts at once on every pause.
    pub pause_hold_ms: u64,
    /// Ask for at most this many chunks per request (`Range: bytes=a-b`, the next window asked
    /// for once one is read and, by the web driver, stored), so that a context killed
    /// mid-download re-fetches at most one window: what it had received of it and the rest the
    /// server had sent into its and the browser's buffers. `0` (the default): one open-ended
    /// request for the whole file.
    pub range_window_chunks: u32,
}

/// The default [`TransferConfig::pause_hold_ms`]: 30 s, about as long as a browser keeps an
/// idle service worker alive, and short enough that a forgotten pause does not hold a
/// connection (and the server's flow-controlled send buffers) for long.
pub const DEFAULT_PAUSE_HOLD_MS: u64 = 30_000;

impl Default for TransferConfig {
    fn default() -> Self {
        TransferConfig {
            chunk_size: 4 << 20,
            max_attempts: 5,
            backoff_base_ms: 1_000,
            backoff_max_ms: 60_000,
            retry_after_max_ms: 300_000,
            stall_min_bytes_per_sec: 1024,
            stall_window_ms: 30_000,
            pause_hold_ms: DEFAULT_PAUSE_HOLD_MS,
            range_window_chunks: 0,
        }
    }
}

impl TransferConfig {
    /// Checks the values; the error names the bad field.
    ///
    /// # Example
    /// ```
    /// use background_assets::core::transfer::TransferConfig;
    /// let bad = TransferConfig { max_attempts: 0, ..TransferConfig::default() };
    /// assert!(bad.validate().unwrap_err().to_string().contains("max_attempts"));
    /// ```
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |field: &str, why: &str| {
            Err(Error::DownloadInvalid {
                reason: format!("transfer config `{field}` {why}"),
            })
        };
        if self.chunk_size == 0 {
            return bad("chunk_size", "must be at least 1");
        }
        if self.max_attempts == 0 {
            return bad("max_attempts", "must be at least 1");
        }
        if self.backoff_max_ms < self.backoff_base_ms {
            return bad("backoff_max_ms", "must be >= backoff_base_ms");
        }
        if self.stall_min_bytes_per_sec > 0 && self.stall_window_ms == 0 {
            return bad("stall_window_ms", "must be > 0 when stall detection is on");
        }
        Ok(())
    }
}

/// What to download: identifier (used in errors), URL, and the declared size and digest.
///
/// # Example
/// ```
/// use background_assets::core::transfer::TransferSpec;
/// let mut spec = TransferSpec::new("map-eu", "https://cdn.example/map-eu.bin");
/// spec.expected_size = Some(1 << 30);
/// assert_eq!(spec.config.chunk_size, 4 << 20);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransferSpec {
    /// The download's identifier.
    pub identifier: String,
    /// The request URL (the allow-list check is the policy's job, before and after redirects).
    pub url: String,
    /// The declared size, if any: a file of any other size is never reported finished.
    pub expected_size: Option<u64>,
    /// The declared SHA-256, if any: a file with any other digest is never reported finished.
    pub sha256: Option<[u8; 32]>,
    /// The declared SHA-256 of each chunk, if any (then `expected_size` and `sha256` must be
    /// declared too). Each chunk is verified by the driver before it is stored
    /// ([`Transfer::expected_chunk_digest`]) and the whole file is not hashed again: the file is
    /// finished with its declared `sha256` once every chunk matched. The chunks are the list's:
    /// its chunk size replaces `config.chunk_size`, and only whole chunks (and the file's last)
    /// are written, so a pause or a broken response keeps a partial chunk in memory.
    ///
    /// A file whose declared size fits in one `config.chunk_size` chunk, with `sha256`
    /// declared and no list, is verified as that one chunk ([`Transfer::spec`] shows the list
    /// of its one digest): the browser's digest checks it, nothing is hashed here.
    pub chunk_digests: Option<ChunkDigests>,
    /// Tuning.
    pub config: TransferConfig,
    /// Extra request headers sent with every fetch of this transfer (name, value): the app's
    /// `UrlDownload.request` headers and any credentials its delegate answered an
    /// authentication challenge with. The driver refuses forbidden ones.
    pub headers: Vec<(String, String)>,
}

impl TransferSpec {
    /// A spec with no declared size or digest and the default config.
    ///
    /// # Example
    /// ```
    /// use background_assets::core::transfer::TransferSpec;
    /// let spec = TransferSpec::new("a", "https://cdn.example/a");
    /// assert_eq!(spec.expected_size, None);
    /// assert!(spec.headers.is_empty());
    /// ```
    pub fn new(identifier: impl Into<String>, url: impl Into<String>) -> Self {
        TransferSpec {
            identifier: identifier.into(),
            url: url.into(),
            expected_size: None,
            sha256: None,
            chunk_digests: None,
            config: TransferConfig::default(),
            headers: Vec::new(),
        }
    }

    /// Whether a driver may send this download's first request — a plain `GET` of
    /// [`url`](TransferSpec::url) from byte 0 — while it still reads the stored state, before it
    /// knows whether the run is fresh: the declared size fits in one chunk, so a run that turns
    /// out to resume or to be finished already wastes at most that one small file (which is also
    /// all a killed fresh run can waste), and there are no bounded `Range` windows (whose first
    /// request is a `Range`). A larger file waits for its stored state: a resume must not fetch
    /// its first bytes again.
    ///
    /// # Example
    /// ```
    /// use background_assets::core::transfer::TransferSpec;
    /// let mut spec = TransferSpec::new("icon", "https://cdn.example/icon.png");
    /// assert!(!spec.may_fetch_before_state()); // no declared size
    /// spec.expected_size = Some(64 << 10);
    /// assert!(spec.may_fetch_before_state());
    /// spec.expected_size = Some(u64::from(spec.config.chunk_size) + 1);
    /// assert!(!spec.may_fetch_before_state());
    /// ```
    pub fn may_fetch_before_state(&self) -> bool {
        let chunk = match &self.chunk_digests {
            Some(digests) => digests.chunk_size,
            None => self.config.chunk_size,
        };
        self.config.range_window_chunks == 0
            && self
                .expected_size
                .is_some_and(|size| size <= u64::from(chunk))
    }
}

/// The validator sent as `If-Range` when resuming.
///
/// # Example
/// ```
/// use background_assets::core::transfer::Validator;
/// assert_eq!(Validator::ETag("\"v1\"".into()).if_range(), "\"v1\"");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Validator {
    /// A strong entity tag, quotes included.
    #[serde(rename = "etag")]
    ETag(String),
    /// A `Last-Modified` date, used when the server gave no strong ETag.
    LastModified(String),
}

impl Validator {
    /// The `If-Range` header value.
    ///
    /// # Example
    /// ```
    /// use background_assets::core::transfer::Validator;
    /// let v = Validator::LastModified("Wed, 21 Oct 2015 07:28:00 GMT".into());
    /// assert!(v.if_range().ends_with("GMT"));
    /// ```
    pub fn if_range(&self) -> &str {
        match self {
            Validator::ETag(v) | Validator::LastModified(v) => v,
        }
    }
}

/// Everything needed to continue a transfer in another context. Stored with every chunk, in the
/// same transaction; `bytes` and `hash` always describe exactly the stored prefix of the file.
///
/// # Example
/// ```
/// use background_assets::core::transfer::Checkpoint;
/// let json = serde_json::to_string(&Checkpoint::default()).unwrap();
/// let back: Checkpoint = serde_json::from_str(&json).unwrap();
/// assert_eq!(back.bytes, 0);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Checkpoint {
    /// Bytes stored, contiguous from offset 0.
    pub bytes: u64,
    /// SHA-256 state over exactly those bytes.
    pub hash: HashState,
    /// The validator of the response those bytes came from.
    pub validator: Option<Validator>,
    /// The file's total size as the server stated it, if it did.
    pub total: Option<u64>,
    /// The last response's URL after redirects, if it differed from the request URL.
    pub final_url: Option<String>,
    /// Fetches started, over every context.
    pub attempts: u32,
    /// Consecutive failed attempts that brought no new byte.
    pub failures: u32,
    /// The furthest byte offset ever received (across restarts), the measure of "progress".
    pub high_water: u64,
    /// Bytes received and then thrown away by restarts from zero.
    pub wasted_bytes: u64,
    /// Restarts from zero.
    pub restarts: u32,
    /// Every stored byte was verified against declared chunk digests (and `hash` is not kept):
    /// only a transfer with the same [`TransferSpec::chunk_digests`] continues from it.
    pub chunks_verified: bool,
}

/// The response headers the transfer needs, as raw strings (the transfer parses them).
///
/// # Example
/// ```
/// use background_assets::core::transfer::ResponseHeaders;
/// let h = ResponseHeaders { etag: Some("\"abc\"".into()), ..Default::default() };
/// assert!(h.content_range.is_none());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResponseHeaders {
    /// `ETag`.
    pub etag: Option<String>,
    /// `Last-Modified`.
    pub last_modified: Option<String>,
    /// `Content-Range`.
    pub content_range: Option<String>,
    /// `Content-Length` (pass `None` for a content-encoded body).
    pub content_length: Option<String>,
    /// `Retry-After`.
    pub retry_after: Option<String>,
    /// `Date` (only used to read an HTTP-date `Retry-After`).
    pub date: Option<String>,
    /// `response.url`, the URL after redirects.
    pub final_url: Option<String>,
}

/// What happened, reported by the driver.
#[derive(Debug)]
pub enum Event<'a> {
    /// The response's status and headers arrived.
    ResponseHead {
        /// HTTP status.
        status: u16,
        /// Headers.
        headers: ResponseHeaders,
    },
    /// A piece of the body, as the stream yielded it.
    Body(&'a [u8]),
    /// The body ended cleanly.
    End,
    /// The fetch failed (reset, DNS, offline...).
    NetworkError(String),
    /// A `Write` (chunk + checkpoint) committed.
    Written {
        /// The write's offset.
        offset: u64,
        /// The write's length.
        len: u64,
    },
    /// A `Write` (or `Discard`/`SaveCheckpoint`) failed, e.g. [`Error::QuotaExceeded`] or
    /// [`Error::StaleEpoch`]: the transfer fails with this error.
    WriteFailed(Error),
    /// A chunk `Write` was not stored because the chunk's SHA-256 (`actual`) is not the one
    /// [`Transfer::expected_chunk_digest`] gave: the transfer fails with
    /// [`Error::ChunkIntegrityMismatch`], the verified chunks before it stay stored. The driver
    /// stores none of the writes after it.
    ChunkMismatch {
        /// The chunk's offset.
        offset: u64,
        /// The SHA-256 of the bytes that arrived.
        actual: [u8; 32],
    },
    /// The driver refuses to go on, e.g. `response.url` after a redirect is outside the domain
    /// allow-list ([`Error::SessionDownloadDisallowedByDomain`]) or the response is opaque: the
    /// fetch is aborted and the transfer fails with this error. Stored bytes are left as they are.
    Refused(Error),
    /// `poll_timeout()` was reached.
    Timeout,
    /// The app paused the download.
    Pause,
    /// The app resumed a paused download.
    Resume,
    /// The app cancelled the download.
    Cancel,
}

/// What the driver must do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Start a GET. `range_start: Some(n)` → `Range: bytes=n-`; `if_range` → `If-Range`.
    Fetch {
        /// The request URL.
        url: String,
        /// First byte wanted, `None` for the whole file.
        range_start: Option<u64>,
        /// One past the last byte wanted (`Range: bytes=<range_start>-<range_end - 1>`), `None`
        /// for everything from `range_start` on. Only with
        /// [`TransferConfig::range_window_chunks`].
        range_end: Option<u64>,
        /// The `If-Range` validator.
        if_range: Option<String>,
    },
    /// Stop reading the current response and deliver nothing more from it.
    Abort,
    /// Store `data` at `offset` and `checkpoint`, in one transaction; then report `Written`.
    Write {
        /// Byte offset in the file.
        offset: u64,
        /// The bytes.
        data: Vec<u8>,
        /// The checkpoint that is true once this chunk is stored.
        checkpoint: Checkpoint,
    },
    /// Delete every stored chunk of this download and store `checkpoint`, in one transaction.
    Discard {
        /// The new (empty) checkpoint, with the wasted bytes counted.
        checkpoint: Checkpoint,
    },
    /// Store this checkpoint (counters changed; no bytes to write).
    SaveCheckpoint(Checkpoint),
    /// A retry is scheduled at this time (the same as `poll_timeout()`), for logs or to arrange a
    /// wake-up; the driver still delivers `Event::Timeout` then.
    RetryAt(Millis),
    /// The file is complete, stored, and matches its declaration. Terminal.
    Finish {
        /// Size in bytes.
        size: u64,
        /// Its SHA-256.
        sha256: [u8; 32],
    },
    /// The transfer failed. Terminal.
    Fail(Error),
}

/// Where a transfer is.
///
/// # Example
/// ```
/// use background_assets::core::transfer::TransferState;
/// assert!(TransferState::Finished.is_terminal());
/// assert!(!TransferState::Paused.is_terminal());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransferState {
    /// A fetch was requested; waiting for the response head.
    Connecting,
    /// Reading the body.
    Receiving,
    /// Waiting until `poll_timeout()` to retry.
    RetryWait,
    /// Paused by the app.
    Paused,
    /// Every byte received and verified; waiting for the last writes to be confirmed.
    Finishing,
    /// Finished (terminal).
    Finished,
    /// Failed (terminal).
    Failed,
}

impl TransferState {
    /// Whether no event will change this state any more.
    pub fn is_terminal(self) -> bool {
        matches!(self, TransferState::Finished | TransferState::Failed)
    }
}

/// Progress, for delegates and progress bars.
///
/// # Example
/// ```
/// use background_assets::core::transfer::{Transfer, TransferSpec};
/// let t = Transfer::new(TransferSpec::new("a", "https://cdn.example/a"), 0);
/// assert_eq!(t.progress().bytes_written, 0);
/// assert_eq!(t.progress().attempts, 1);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Bytes whose writes were confirmed.
    pub bytes_written: u64,
    /// Bytes received so far for the current version of the file (stored or not yet).
    pub bytes_received: u64,
    /// The declared size, else the server's total, if known.
    pub total_expected: Option<u64>,
    /// Bytes received and then thrown away by restarts from zero.
    pub wasted_bytes: u64,
    /// Fetches started.
    pub attempts: u32,
    /// Restarts from zero.
    pub restarts: u32,
    /// `response.url` of the last response, if it differed from the request URL.
    pub final_url: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Connecting,
    Receiving,
    RetryWait {
        until: Millis,
    },
    Paused,
    /// Paused with the response kept open (not read) until `until`.
    Held {
        until: Millis,
    },
    Finishing {
        size: u64,
        sha256: [u8; 32],
    },
    Finished,
    Failed,
}

/// A write handed to the driver and not yet confirmed.
#[derive(Debug)]
struct PendingWrite {
    offset: u64,
    len: u64,
    checkpoint: Checkpoint,
}

/// One download's transfer state machine. See the [module docs](self) for the contract.
#[derive(Debug)]
pub struct Transfer {
    spec: TransferSpec,
    phase: Phase,
    actions: VecDeque<Action>,

    /// SHA-256 over `[0, received())`: the bytes emitted and those buffered (without chunk
    /// digests; with them, nothing is hashed here).
    hasher: Sha256Stream,
    /// Bytes handed out in `Write`s (contiguous from 0).
    emitted: u64,
    /// Received bytes `[emitted, emitted + buffer.len())` not yet cut into a `Write`.
    buffer: Vec<u8>,
    /// The checkpoint of the last confirmed write (or discard).
    committed: Checkpoint,
    pending: VecDeque<PendingWrite>,
    /// Confirmations still due for writes made stale by a discard.
    stale_confirmations: usize,

    validator: Option<Validator>,
    /// The server's total size for the current version.
    server_total: Option<u64>,
    final_url: Option<String>,

    attempts: u32,
    failures: u32,
    high_water: u64,
    high_water_at_attempt_start: u64,
    wasted_bytes: u64,
    restarts: u32,

    fetch_open: bool,
    /// The `range_start` of the open fetch.
    requested_start: u64,
    /// The `range_end` of the open fetch (a bounded window), until a `200` answers it.
    requested_end: Option<u64>,
    /// The body may not go past this offset.
    body_limit: Option<u64>,
    /// The held response ended cleanly while paused: resume verifies instead of fetching.
    ended_while_held: bool,
    window_start: Millis,
    window_bytes: u64,
}

enum FailureKind {
    Retryable {
        delay: Option<Millis>,
        stall: bool,
    },
    /// Retry at once (a restart from zero after a bad range answer).
    Immediate,
}

impl Transfer {
    /// Starts a new transfer: the first action is a `Fetch` without `Range`.
    ///
    /// # Example
    /// ```
    /// use background_assets::core::transfer::{Action, Transfer, TransferSpec};
    /// let mut t = Transfer::new(TransferSpec::new("a", "https://cdn.example/a"), 0);
    /// assert_eq!(
    ///     t.poll_action(),
    ///     Some(Action::Fetch { url: "https://cdn.example/a".into(), range_start: None, range_end: None, if_range: None })
    /// );
    /// ```
    pub fn new(spec: TransferSpec, now: Millis) -> Transfer {
        let mut t = Transfer::blank(spec);
        if t.refuse_bad_spec() {
            return t;
        }
        t.start_fetch(now);
        t
    }

    /// Continues a transfer from a stored checkpoint, in this (possibly new) context. Sends a
    /// `Range` request for the rest; verifies without fetching when the checkpoint already holds
    /// the whole file; restarts from zero (with a `Discard`) when the checkpoint has no validator,
    /// is inconsistent, or disagrees with the declared size. The count of consecutive failures
    /// carries over, unless the previous context had already given up (then it starts again).
    ///
    /// # Example
    /// ```
    /// use background_assets::core::transfer::*;
    /// let mut first = Transfer::new(TransferSpec::new("a", "https://cdn.example/a"), 0);
    /// let _ = first.poll_action(); // Fetch
    /// let headers = ResponseHeaders { etag: Some("\"v1\"".into()), ..Default::default() };
    /// first.handle(Event::ResponseHead { status: 200, headers }, 0);
    /// first.handle(Event::Pause, 1); // stores what arrived (nothing yet) and stops
    /// let checkpoint = first.checkpoint();
    ///
    /// let mut next = Transfer::resume(TransferSpec::new("a", "https://cdn.example/a"), checkpoint, 5);
    /// assert!(matches!(next.poll_action(), Some(Action::Fetch { .. })));
    /// ```
    pub fn resume(spec: TransferSpec, checkpoint: Checkpoint, now: Millis) -> Transfer {
        let mut t = Transfer::blank(spec);
        if t.refuse_bad_spec() {
            return t;
        }
        t.attempts = checkpoint.attempts;
        // A checkpoint from a context that gave up starts a fresh series of attempts; one from a
        // context that died mid-series continues it (so kills cannot reset the retry cap).
        t.failures = if checkpoint.failures >= t.spec.config.max_attempts {
            0
        } else {
            checkpoint.failures
        };
        t.wasted_bytes = checkpoint.wasted_bytes;
        t.restarts = checkpoint.restarts;
        t.high_water = checkpoint.high_water.max(checkpoint.bytes);
        t.final_url = checkpoint.final_url.clone();
        let expected = t.spec.expected_size;
        let hasher = match &t.spec.chunk_digests {
            // Verified chunk by chunk: whole chunks (or the whole file) of this chunk list.
            Some(d) => ((checkpoint.chunks_verified || checkpoint.bytes == 0)
                && (checkpoint.bytes % u64::from(d.chunk_size) == 0
                    || expected == Some(checkpoint.bytes)))
            .then(Sha256Stream::new),
            None => Sha256Stream::restore(&checkpoint.hash).ok().filter(|h| {
                h.bytes_hashed() == checkpoint.bytes
                    && (!checkpoint.chunks_verified || checkpoint.bytes == 0)
            }),
        };
        let consistent = match (expected, checkpoint.total) {
            (Some(e), Some(total)) => e == total && checkpoint.bytes <= e,
            (Some(e), None) => checkpoint.bytes <= e,
            (None, Some(total)) => checkpoint.bytes <= total,
            (None, None) => true,
        };
        match hasher {
            Some(hasher) if consistent => {
                t.hasher = hasher;
                t.emitted = checkpoint.bytes;
                t.validator = checkpoint.validator.clone();
                t.server_total = checkpoint.total;
                t.committed = checkpoint;
            }
            _ => {
                // Unusable checkpoint: the stored bytes cannot be trusted; start over.
                t.emitted = checkpoint.bytes;
                t.restart_from_zero();
            }
        }
        let total = t.spec.expected_size.or(t.server_total);
        if t.emitted > 0 && total == Some(t.emitted) {
            t.verify_complete();
        } else {
            t.start_fetch(now);
        }
        t
    }

    fn blank(mut spec: TransferSpec) -> Transfer {
        // A file that fits in one chunk, with its SHA-256 declared, is that one chunk: its
        // digest is checked by the driver (the browser's digest, off the thread that reads),
        // and nothing is hashed here.
        if let (None, Some(size), Some(sha256)) =
            (&spec.chunk_digests, spec.expected_size, spec.sha256)
        {
            if size > 0 && size <= u64::from(spec.config.chunk_size) {
                spec.chunk_digests = Some(ChunkDigests {
                    chunk_size: spec.config.chunk_size,
                    sha256: vec![sha256],
                });
            }
        }
        if let Some(digests) = &spec.chunk_digests {
            spec.config.chunk_size = digests.chunk_size;
        }
        Transfer {
            spec,
            phase: Phase::Connecting,
            actions: VecDeque::new(),
            hasher: Sha256Stream::new(),
            emitted: 0,
            buffer: Vec::new(),
            committed: Checkpoint::default(),
            pending: VecDeque::new(),
            stale_confirmations: 0,
            validator: None,
            server_total: None,
            final_url: None,
            attempts: 0,
            failures: 0,
            high_water: 0,
            high_water_at_attempt_start: 0,
            wasted_bytes: 0,
            restarts: 0,
            fetch_open: false,
            requested_start: 0,
            requested_end: None,
            body_limit: None,
            ended_while_held: false,
            window_start: 0,
            window_bytes: 0,
        }
    }

    fn refuse_bad_spec(&mut self) -> bool {
        let problem = self
            .spec
            .config
            .validate()
            .err()
            .or_else(|| {
                self.spec
                    .identifier
                    .is_empty()
                    .then(|| Error::DownloadInvalid {
                        reason: "transfer identifier is empty".into(),
                    })
            })
            .or_else(|| {
                let digests = self.spec.chunk_digests.as_ref()?;
                let reason = match (self.spec.expected_size, self.spec.sha256) {
                    (Some(size), Some(_)) => digests.check(size).err()?,
                    _ => "declare the size and the SHA-256 of a file with chunk digests".into(),
                };
                Some(Error::DownloadInvalid {
                    reason: format!("`{}` chunk digests: {reason}", self.spec.identifier),
                })
            });
        match problem {
            Some(e) => {
                self.fail(e);
                true
            }
            None => false,
        }
    }

    /// Feeds one event. Events that make no sense in the current state (a late body piece after
    /// `Abort`, anything after a terminal state) are ignored.
    ///
    /// # Example
    /// ```
    /// use background_assets::core::{error::Error, transfer::*};
    /// let mut t = Transfer::new(TransferSpec::new("a", "https://cdn.example/a"), 0);
    /// let _ = t.poll_action();
    /// t.handle(Event::ResponseHead { status: 404, headers: ResponseHeaders::default() }, 3);
    /// assert_eq!(t.poll_action(), Some(Action::Abort));
    /// assert!(matches!(t.poll_action(), Some(Action::Fail(Error::HttpStatus { status: 404, .. }))));
    /// assert_eq!(t.state(), TransferState::Failed);
    /// ```
    pub fn handle(&mut self, event: Event<'_>, now: Millis) {
        if self.state().is_terminal() {
            return;
        }
        match event {
            Event::ResponseHead { status, headers } => {
                if self.phase == Phase::Connecting && self.fetch_open {
                    self.on_head(status, headers, now);
                }
            }
            Event::Body(piece) => {
                if self.phase == Phase::Receiving && self.fetch_open {
                    self.on_body(piece, now);
                } else if matches!(self.phase, Phase::Held { .. }) && self.fetch_open {
                    // A read that was in flight when the pause came: store it at once, so the
                    // pause keeps holding every received byte.
                    self.on_body(piece, now);
                    if matches!(self.phase, Phase::Held { .. }) {
                        self.cut_write();
                    }
                }
            }
            Event::End => {
                if self.phase == Phase::Receiving && self.fetch_open {
                    self.on_end(now);
                } else if matches!(self.phase, Phase::Held { .. }) && self.fetch_open {
                    self.fetch_open = false;
                    self.ended_while_held = true;
                    self.cut_write();
                    self.phase = Phase::Paused;
                }
            }
            Event::NetworkError(_) if matches!(self.phase, Phase::Held { .. }) => {
                // The held response broke: resume continues with `Range`.
                if self.fetch_open {
                    self.fetch_open = false;
                    self.cut_write();
                    self.phase = Phase::Paused;
                }
            }
            Event::NetworkError(message) => {
                if matches!(self.phase, Phase::Connecting | Phase::Receiving) && self.fetch_open {
                    self.fetch_open = false;
                    self.failed_attempt(
                        format!("network error: {message}"),
                        FailureKind::Retryable {
                            delay: None,
                            stall: false,
                        },
                        now,
                    );
                }
            }
            Event::Written { offset, len } => self.on_written(offset, len),
            Event::ChunkMismatch { offset, actual } => {
                let expected = self.expected_chunk_digest(offset).unwrap_or_default();
                self.abort_fetch();
                // A chunk that is the whole file (a one-chunk file, verified as its chunk) is the
                // file's digest that differs.
                let whole = offset == 0
                    && self
                        .spec
                        .expected_size
                        .is_some_and(|size| size <= u64::from(self.spec.config.chunk_size));
                self.fail(match (whole, self.spec.sha256) {
                    (true, Some(declared)) => Error::IntegrityMismatch {
                        identifier: self.identifier(),
                        expected: hex(&declared),
                        actual: hex(&actual),
                    },
                    _ => Error::ChunkIntegrityMismatch {
                        identifier: self.identifier(),
                        offset,
                        expected: hex(&expected),
                        actual: hex(&actual),
                    },
                });
            }
            Event::WriteFailed(error) | Event::Refused(error) => {
                self.abort_fetch();
                self.fail(error);
            }
            Event::Timeout => match self.phase {
                Phase::RetryWait { until } if now >= until => self.start_fetch(now),
                Phase::Connecting | Phase::Receiving => self.check_stall(now),
                Phase::Held { until } if now >= until => self.release_held(),
                _ => {}
            },
            Event::Pause => match self.phase {
                Phase::Receiving if self.fetch_open && self.spec.config.pause_hold_ms > 0 => {
                    self.flush_or_save();
                    let until = now.saturating_add(self.spec.config.pause_hold_ms);
                    self.phase = Phase::Held { until };
                }
                Phase::Connecting | Phase::Receiving | Phase::RetryWait { .. } => {
                    self.abort_fetch();
                    self.flush_or_save();
                    self.phase = Phase::Paused;
                }
                _ => {}
            },
            Event::Resume => match self.phase {
                Phase::Held { until } if now < until => {
                    // Continue the same response; its speed is measured afresh from now.
                    self.phase = Phase::Receiving;
                    self.window_start = now;
                    self.window_bytes = 0;
                }
                Phase::Held { .. } => {
                    self.release_held();
                    self.start_fetch(now);
                }
                Phase::Paused if std::mem::take(&mut self.ended_while_held) => {
                    if !self.window_has_more() {
                        self.verify_complete();
                    } else {
                        self.start_fetch(now);
                    }
                }
                Phase::Paused => self.start_fetch(now),
                _ => {}
            },
            Event::Cancel => {
                self.abort_fetch();
                self.discard_all();
                self.fail(Error::Cancelled {
                    identifier: self.spec.identifier.clone(),
                });
            }
        }
    }

    /// The next action for the driver, in order; call until `None` after every `handle`.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When the driver must deliver [`Event::Timeout`]: the retry time while waiting, or the end
    /// of the current stall-measurement window while fetching. `None` when nothing is timed.
    ///
    /// # Example
    /// ```
    /// use background_assets::core::transfer::*;
    /// let t = Transfer::new(TransferSpec::new("a", "https://cdn.example/a"), 1_000);
    /// assert_eq!(t.poll_timeout(), Some(1_000 + TransferConfig::default().stall_window_ms));
    /// ```
    pub fn poll_timeout(&self) -> Option<Millis> {
        match self.phase {
            Phase::RetryWait { until } | Phase::Held { until } => Some(until),
            Phase::Connecting | Phase::Receiving
                if self.fetch_open && self.spec.config.stall_min_bytes_per_sec > 0 =>
            {
                Some(
                    self.window_start
                        .saturating_add(self.spec.config.stall_window_ms),
                )
            }
            _ => None,
        }
    }

    /// The checkpoint of what is confirmed stored: `bytes`/`hash` as of the last confirmed
    /// `Write` (or `Discard`), with the current counters.
    pub fn checkpoint(&self) -> Checkpoint {
        self.checkpoint_at(self.committed.bytes, self.committed.hash.clone())
    }

    /// Progress so far.
    pub fn progress(&self) -> Progress {
        Progress {
            bytes_written: self.committed.bytes,
            bytes_received: self.received(),
            total_expected: self.spec.expected_size.or(self.server_total),
            wasted_bytes: self.wasted_bytes,
            attempts: self.attempts,
            restarts: self.restarts,
            final_url: self.final_url.clone(),
        }
    }

    /// The response URL after redirects, when it differed from the request URL: the driver
    /// checks it against the domain allow-list.
    pub fn final_url(&self) -> Option<&str> {
        self.final_url.as_deref()
    }

    /// Whether the transfer is paused with its response kept open ([`TransferState::Paused`]
    /// within [`TransferConfig::pause_hold_ms`]): the driver must not start another read of
    /// the body until a resume (or an `Abort`).
    ///
    /// # Example
    /// ```
    /// use background_assets::core::transfer::*;
    /// let mut t = Transfer::new(TransferSpec::new("a", "https://cdn.example/a"), 0);
    /// let _ = t.poll_action(); // Fetch
    /// let headers = ResponseHeaders { etag: Some("\"v1\"".into()), ..Default::default() };
    /// t.handle(Event::ResponseHead { status: 200, headers }, 0);
    /// t.handle(Event::Pause, 10);
    /// assert!(t.holds_response());
    /// assert_eq!(t.poll_timeout(), Some(10 + DEFAULT_PAUSE_HOLD_MS));
    /// t.handle(Event::Resume, 20); // the same response is read on: no new Fetch
    /// assert!(!t.holds_response());
    /// assert!(std::iter::from_fn(|| t.poll_action()).all(|a| !matches!(a, Action::Fetch { .. })));
    /// ```
    pub fn holds_response(&self) -> bool {
        matches!(self.phase, Phase::Held { .. }) && self.fetch_open
    }

    /// The declared SHA-256 the chunk `Write` at `offset` must have, when the spec declares
    /// [`TransferSpec::chunk_digests`]: the driver checks it before storing the chunk and reports
    /// a mismatch with [`Event::ChunkMismatch`] instead of storing it. `None` without chunk
    /// digests.
    ///
    /// # Example
    /// ```
    /// use background_assets::core::integrity::ChunkDigests;
    /// use background_assets::core::transfer::*;
    /// let file = b"0123456789".to_vec();
    /// let mut spec = TransferSpec::new("a", "https://cdn.example/a");
    /// spec.expected_size = Some(10);
    /// spec.sha256 = Some([0; 32]); // the declared whole-file digest (not checked again)
    /// spec.chunk_digests = Some(ChunkDigests::of(&file, 4));
    /// let t = Transfer::new(spec, 0);
    /// assert_eq!(t.spec().config.chunk_size, 4);
    /// assert_eq!(t.expected_chunk_digest(8), Some(ChunkDigests::of(b"89", 4).sha256[0]));
    /// ```
    pub fn expected_chunk_digest(&self, offset: u64) -> Option<[u8; 32]> {
        self.spec.chunk_digests.as_ref()?.at(offset)
    }

    /// The spec this transfer runs.
    pub fn spec(&self) -> &TransferSpec {
        &self.spec
    }

    /// Where the transfer is.
    pub fn state(&self) -> TransferState {
        match self.phase {
            Phase::Connecting => TransferState::Connecting,
            Phase::Receiving => TransferState::Receiving,
            Phase::RetryWait { .. } => TransferState::RetryWait,
            Phase::Paused | Phase::Held { .. } => TransferState::Paused,
            Phase::Finishing { .. } => TransferState::Finishing,
            Phase::Finished => TransferState::Finished,
            Phase::Failed => TransferState::Failed,
        }
    }

    // --- internals ------------------------------------------------------------------------

    fn received(&self) -> u64 {
        self.emitted + self.buffer.len() as u64
    }

    /// The checkpoint that is true once every write emitted so far is stored.
    fn checkpoint_of_emitted(&self) -> Checkpoint {
        // The hasher has also taken the buffered bytes: it is the emitted bytes' state only when
        // nothing is buffered (a cut just emptied the buffer, or nothing arrived since).
        debug_assert!(self.buffer.is_empty() || self.spec.chunk_digests.is_some());
        self.checkpoint_at(self.emitted, self.hasher.save())
    }

    /// A checkpoint of `bytes` stored bytes hashed to `hash`, with the current counters.
    fn checkpoint_at(&self, bytes: u64, hash: HashState) -> Checkpoint {
        Checkpoint {
            bytes,
            hash,
            validator: self.validator.clone(),
            total: self.server_total,
            final_url: self.final_url.clone(),
            attempts: self.attempts,
            failures: self.failures,
            high_water: self.high_water,
            wasted_bytes: self.wasted_bytes,
            restarts: self.restarts,
            chunks_verified: self.spec.chunk_digests.is_some(),
        }
    }

    fn identifier(&self) -> String {
        self.spec.identifier.clone()
    }

    fn start_fetch(&mut self, now: Millis) {
        if self.received() > 0 && self.validator.is_none() {
            // Nothing proves the server still has the same file: start over.
            self.restart_from_zero();
        }
        self.attempts = self.attempts.saturating_add(1);
        // From what arrived: the stored bytes, and with chunk digests a partial chunk kept in
        // memory (without them the buffer is always written before a new fetch).
        let from = self.received();
        let range_end = self.window_end();
        let range_start = (from > 0 || range_end.is_some()).then_some(from);
        let if_range = range_start
            .and(self.validator.as_ref())
            .map(|v| v.if_range().to_string());
        self.requested_start = from;
        self.requested_end = range_end;
        self.ended_while_held = false;
        self.high_water_at_attempt_start = self.high_water;
        self.fetch_open = true;
        self.phase = Phase::Connecting;
        self.window_start = now;
        self.window_bytes = 0;
        self.actions.push_back(Action::Fetch {
            url: self.spec.url.clone(),
            range_start,
            range_end,
            if_range,
        });
    }

    /// After a response that ended cleanly: whether the file goes on past it (a window, or a
    /// short body, ended before the file's known end; or a window of a file of unknown size
    /// ended exactly where it asked, so the next one may hold more).
    fn window_has_more(&self) -> bool {
        match self.total() {
            Some(total) => self.received() < total,
            None => self.requested_end.is_some() && self.requested_end == Some(self.received()),
        }
    }

    /// The declared size, else the server's total, if known.
    fn total(&self) -> Option<u64> {
        self.spec.expected_size.or(self.server_total)
    }

    /// The end of the window the next request asks for: `None` without windows or when the
    /// window reaches the known end of the file.
    fn window_end(&self) -> Option<u64> {
        let chunks = u64::from(self.spec.config.range_window_chunks);
        if chunks == 0 {
            return None;
        }
        let end = self
            .received()
            .saturating_add(chunks.saturating_mul(u64::from(self.spec.config.chunk_size)));
        match self.total() {
            Some(total) if end >= total => None,
            _ => Some(end),
        }
    }

    /// Gives up a held response (the pause outlasted the hold): what arrived is stored already;
    /// the transfer stays paused and a resume continues with `Range`.
    fn release_held(&mut self) {
        self.abort_fetch();
        self.cut_write();
        self.phase = Phase::Paused;
    }

    fn abort_fetch(&mut self) {
        if self.fetch_open {
            self.fetch_open = false;
            self.actions.push_back(Action::Abort);
        }
    }

    /// Drops every received byte (counted as wasted) and tells the driver to delete the chunks.
    fn restart_from_zero(&mut self) {
        self.wasted_bytes = self.wasted_bytes.saturating_add(self.received());
        self.buffer = Vec::new();
        self.emitted = 0;
        self.hasher = Sha256Stream::new();
        self.validator = None;
        self.server_total = None;
        self.restarts = self.restarts.saturating_add(1);
        self.discard_all();
    }

    fn discard_all(&mut self) {
        self.buffer = Vec::new();
        self.emitted = 0;
        self.hasher = Sha256Stream::new();
        self.stale_confirmations += self.pending.len();
        self.pending.clear();
        let checkpoint = self.checkpoint_of_emitted();
        self.committed = checkpoint.clone();
        self.actions.push_back(Action::Discard { checkpoint });
    }

    fn fail(&mut self, error: Error) {
        self.phase = Phase::Failed;
        self.fetch_open = false;
        self.actions.push_back(Action::Fail(error));
    }

    fn fail_and_discard(&mut self, error: Error) {
        self.abort_fetch();
        self.discard_all();
        self.fail(error);
    }

    fn on_head(&mut self, status: u16, headers: ResponseHeaders, now: Millis) {
        if let Some(url) = headers.final_url.as_ref().filter(|u| **u != self.spec.url) {
            self.final_url = Some(url.clone());
        }
        let ranged = self.requested_start > 0;
        match status {
            200 => {
                self.requested_end = None; // the whole file, whatever the window asked
                if ranged {
                    // The server ignored the range (or If-Range saw a new version): this body is
                    // the whole file from byte zero. Keep reading it; drop what we had.
                    self.restart_from_zero();
                }
                let length = headers
                    .content_length
                    .as_deref()
                    .and_then(headers::content_length);
                self.accept_version(&headers, length);
                if let (Some(expected), Some(length)) = (self.spec.expected_size, length) {
                    if expected != length {
                        return self.fail_and_discard(Error::SizeMismatch {
                            identifier: self.identifier(),
                            expected,
                            actual: length,
                        });
                    }
                }
                self.begin_body(now);
            }
            206 => self.on_partial(headers, now),
            416 if ranged || self.requested_end.is_some() => {
                let complete = headers.content_range.as_deref().map(headers::content_range);
                self.abort_fetch();
                let whole = self.spec.expected_size.or(self.server_total);
                if let Some(Ok(ContentRange::Unsatisfied { complete })) = complete {
                    if complete == self.received() && whole.unwrap_or(complete) == complete {
                        // Everything was already stored (the context died before finishing).
                        self.server_total = Some(complete);
                        return self.verify_complete();
                    }
                }
                self.restart_from_zero();
                self.failed_attempt(
                    format!("416 for bytes={}-", self.requested_start),
                    FailureKind::Immediate,
                    now,
                );
            }
            401 | 403 | 407 => {
                self.abort_fetch();
                self.fail(Error::AuthenticationRequired {
                    identifier: self.identifier(),
                    status,
                });
            }
            408 | 429 | 500..=599 => {
                self.abort_fetch();
                let delay = headers
                    .retry_after
                    .as_deref()
                    .and_then(|r| headers::retry_after(r, headers.date.as_deref()))
                    .map(|d| d.min(self.spec.config.retry_after_max_ms));
                self.failed_attempt(
                    format!("HTTP {status}"),
                    FailureKind::Retryable {
                        delay,
                        stall: false,
                    },
                    now,
                );
            }
            _ => {
                self.abort_fetch();
                self.fail(Error::HttpStatus {
                    identifier: self.identifier(),
                    status,
                });
            }
        }
    }

    /// Records the validator and total of a response that starts a new version of the file.
    fn accept_version(&mut self, headers: &ResponseHeaders, total: Option<u64>) {
        self.validator = headers
            .etag
            .as_deref()
            .and_then(headers::strong_etag)
            .map(Validator::ETag)
            .or_else(|| {
                headers
                    .last_modified
                    .as_deref()
                    .map(str::trim)
                    .filter(|d| !d.is_empty())
                    .map(|d| Validator::LastModified(d.to_string()))
            });
        self.server_total = total;
    }

    fn on_partial(&mut self, headers: ResponseHeaders, now: Millis) {
        let start = self.requested_start;
        let problem = match headers.content_range.as_deref().map(headers::content_range) {
            None => Some("206 without Content-Range".to_string()),
            Some(Err(e)) => Some(format!("bad Content-Range: {e}")),
            Some(Ok(ContentRange::Unsatisfied { .. })) => {
                Some("206 with an unsatisfied Content-Range".to_string())
            }
            Some(Ok(ContentRange::Bytes {
                first,
                last,
                complete,
            })) => {
                let known = self.spec.expected_size.or(self.server_total);
                let changed_tag = match (&self.validator, headers.etag.as_deref()) {
                    (Some(Validator::ETag(ours)), Some(theirs)) => {
                        headers::strong_etag(theirs).as_deref() != Some(ours.as_str())
                    }
                    _ => false,
                };
                let whole = complete.or(known);
                // A window ends at most where it asked (a shorter one is read, and the next
                // window asked for from where it ended); an open-ended answer at the file's end.
                let wrong_end = match self.requested_end {
                    Some(end) => {
                        let cap = whole.map_or(end, |w| end.min(w));
                        (last + 1 > cap).then(|| {
                            format!(
                                "Content-Range ends at {last}, past the window's {}",
                                cap - 1
                            )
                        })
                    }
                    None => whole
                        .filter(|w| last + 1 != *w)
                        .map(|w| format!("Content-Range ends at {last} of {w}")),
                };
                if first != start {
                    Some(format!(
                        "Content-Range starts at {first}, asked for {start}"
                    ))
                } else if changed_tag {
                    Some("ETag changed".to_string())
                } else {
                    match (complete, known) {
                        (Some(complete), Some(known)) if complete != known => {
                            Some(format!("Content-Range total {complete}, expected {known}"))
                        }
                        // Both totals agree: only a window's end is checked here (an
                        // open-ended answer that ends early is a short body, retried).
                        (Some(_), Some(_)) => wrong_end.filter(|_| self.requested_end.is_some()),
                        _ => wrong_end,
                    }
                }
            }
        };
        if let Some(reason) = problem {
            self.abort_fetch();
            if self.received() > 0 {
                self.restart_from_zero();
            }
            return self.failed_attempt(reason, FailureKind::Immediate, now);
        }
        let Some(Ok(ContentRange::Bytes { complete, last, .. })) =
            headers.content_range.as_deref().map(headers::content_range)
        else {
            unreachable!("checked above");
        };
        if self.validator.is_none() {
            self.accept_version(&headers, complete);
        }
        if let (Some(expected), Some(complete)) = (self.spec.expected_size, complete) {
            if expected != complete {
                return self.fail_and_discard(Error::SizeMismatch {
                    identifier: self.identifier(),
                    expected,
                    actual: complete,
                });
            }
        }
        self.server_total = complete.or(self.server_total);
        self.begin_body(now);
        if self.requested_end.is_some() {
            // A window: its body ends where its Content-Range says.
            self.body_limit = Some(last + 1);
        }
    }

    fn begin_body(&mut self, now: Millis) {
        self.phase = Phase::Receiving;
        self.body_limit = self.spec.expected_size.or(self.server_total);
        // The wait for the head was its own window; the body's speed is measured from here.
        self.window_start = now;
        self.window_bytes = 0;
    }

    fn on_body(&mut self, mut piece: &[u8], now: Millis) {
        let arrived = self.received() + piece.len() as u64;
        if let Some(limit) = self.body_limit {
            if arrived > limit {
                return self.fail_and_discard(Error::SizeMismatch {
                    identifier: self.identifier(),
                    expected: limit,
                    actual: arrived,
                });
            }
        }
        self.window_bytes = self.window_bytes.saturating_add(piece.len() as u64);
        let chunk = self.spec.config.chunk_size as usize;
        while !piece.is_empty() {
            if self.buffer.capacity() == 0 {
                self.buffer.reserve_exact(chunk);
            }
            let take = (chunk - self.buffer.len()).min(piece.len());
            if self.spec.chunk_digests.is_none() {
                self.hasher.update(&piece[..take]);
            }
            self.buffer.extend_from_slice(&piece[..take]);
            piece = &piece[take..];
            if self.buffer.len() == chunk {
                self.cut_write();
            }
        }
        self.high_water = self.high_water.max(self.received());
        if self.phase == Phase::Receiving {
            self.check_stall(now);
        }
    }

    /// Turns the buffer into a `Write` (its bytes are hashed already), if it holds anything.
    /// With chunk digests only a whole chunk, or the file's last, is written (the driver
    /// verifies it against its digest); a partial chunk stays in the buffer.
    fn cut_write(&mut self) -> bool {
        if self.buffer.is_empty() {
            return false;
        }
        if self.spec.chunk_digests.is_some() {
            let whole = self.buffer.len() == self.spec.config.chunk_size as usize;
            if !whole && self.spec.expected_size != Some(self.received()) {
                return false;
            }
        }
        let data = std::mem::take(&mut self.buffer);
        let offset = self.emitted;
        self.emitted += data.len() as u64;
        let checkpoint = self.checkpoint_of_emitted();
        self.pending.push_back(PendingWrite {
            offset,
            len: data.len() as u64,
            checkpoint: checkpoint.clone(),
        });
        self.actions.push_back(Action::Write {
            offset,
            data,
            checkpoint,
        });
        true
    }

    /// Stores received bytes (or, with none, the counters) so a kill now loses nothing.
    fn flush_or_save(&mut self) {
        if !self.cut_write() {
            self.actions
                .push_back(Action::SaveCheckpoint(self.checkpoint_of_emitted()));
        }
    }

    fn on_end(&mut self, now: Millis) {
        self.fetch_open = false;
        if let Some(limit) = self.body_limit {
            if self.received() < limit {
                return self.failed_attempt(
                    format!("body ended at byte {} of {limit}", self.received()),
                    FailureKind::Retryable {
                        delay: None,
                        stall: false,
                    },
                    now,
                );
            }
        }
        if self.window_has_more() {
            // A window read whole: ask for the next one (progress, not a failed attempt).
            if self.high_water > self.high_water_at_attempt_start {
                self.failures = 0;
            }
            self.cut_write();
            return self.start_fetch(now);
        }
        self.cut_write();
        self.verify_complete();
    }

    /// Every byte is received: check size and digest, then finish once all writes are stored.
    fn verify_complete(&mut self) {
        let size = self.emitted;
        let sha256 = match (&self.spec.chunk_digests, self.spec.sha256) {
            // Every chunk is verified by the driver before it is stored (and `Finish` waits for
            // every write): the declared whole-file digest is the file's.
            (Some(_), Some(declared)) => declared,
            _ => self.hasher.finalize(),
        };
        if let Some(expected) = self.spec.expected_size {
            if expected != size {
                return self.fail_and_discard(Error::SizeMismatch {
                    identifier: self.identifier(),
                    expected,
                    actual: size,
                });
            }
        }
        if let Some(expected) = self.spec.sha256 {
            if expected != sha256 {
                return self.fail_and_discard(Error::IntegrityMismatch {
                    identifier: self.identifier(),
                    expected: hex(&expected),
                    actual: hex(&sha256),
                });
            }
        }
        self.phase = Phase::Finishing { size, sha256 };
        self.finish_if_stored();
    }

    fn finish_if_stored(&mut self) {
        if let Phase::Finishing { size, sha256 } = self.phase {
            if self.pending.is_empty() {
                self.phase = Phase::Finished;
                self.actions.push_back(Action::Finish { size, sha256 });
            }
        }
    }

    fn on_written(&mut self, offset: u64, len: u64) {
        if self.stale_confirmations > 0 {
            self.stale_confirmations -= 1;
            return;
        }
        match self.pending.front() {
            Some(p) if p.offset == offset && p.len == len => {
                let done = self.pending.pop_front().expect("front exists");
                self.committed = done.checkpoint;
                self.finish_if_stored();
            }
            _ => {
                let error = Error::Storage {
                    message: format!(
                        "write confirmation for {offset}+{len} does not match the next pending write"
                    ),
                };
                self.abort_fetch();
                self.fail(error);
            }
        }
    }

    fn check_stall(&mut self, now: Millis) {
        let config = &self.spec.config;
        if config.stall_min_bytes_per_sec == 0 || !self.fetch_open {
            return;
        }
        let elapsed = now.saturating_sub(self.window_start);
        if elapsed < config.stall_window_ms {
            return;
        }
        let needed = u128::from(config.stall_min_bytes_per_sec) * u128::from(elapsed);
        if u128::from(self.window_bytes) * 1000 < needed {
            let reason = format!(
                "stalled: {} bytes in {elapsed} ms (minimum {} B/s)",
                self.window_bytes, config.stall_min_bytes_per_sec
            );
            self.abort_fetch();
            self.failed_attempt(
                reason,
                FailureKind::Retryable {
                    delay: None,
                    stall: true,
                },
                now,
            );
        } else {
            self.window_start = now;
            self.window_bytes = 0;
        }
    }

    /// An attempt failed in a way another attempt may fix: count it, then retry or give up.
    fn failed_attempt(&mut self, reason: String, kind: FailureKind, now: Millis) {
        self.fetch_open = false;
        if self.high_water > self.high_water_at_attempt_start {
            self.failures = 0;
        }
        self.failures = self.failures.saturating_add(1);
        let config = &self.spec.config;
        if self.failures >= config.max_attempts {
            let error = match kind {
                FailureKind::Retryable { stall: true, .. } => Error::Stalled {
                    identifier: self.identifier(),
                    min_bytes_per_sec: config.stall_min_bytes_per_sec,
                    window_ms: config.stall_window_ms,
                },
                _ => Error::RetriesExhausted {
                    identifier: self.identifier(),
                    attempts: self.failures,
                    last: reason,
                },
            };
            self.flush_or_save();
            return self.fail(error);
        }
        let delay = match kind {
            FailureKind::Immediate => 0,
            FailureKind::Retryable {
                delay: Some(retry_after),
                ..
            } => retry_after,
            FailureKind::Retryable { delay: None, .. } => {
                let exponent = (self.failures - 1).min(63);
                config
                    .backoff_base_ms
                    .saturating_mul(1u64 << exponent)
                    .min(config.backoff_max_ms)
            }
        };
        self.flush_or_save();
        if delay == 0 {
            self.start_fetch(now);
        } else {
            let until = now.saturating_add(delay);
            self.phase = Phase::RetryWait { until };
            self.actions.push_back(Action::RetryAt(until));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> TransferSpec {
        let mut s = TransferSpec::new("t", "https://cdn.example/t");
        s.config.chunk_size = 4;
        s
    }

    fn drain(t: &mut Transfer) -> Vec<Action> {
        std::iter::from_fn(|| t.poll_action()).collect()
    }

    #[test]
    fn invalid_config_fails_typed_at_once() {
        let mut s = spec();
        s.config.chunk_size = 0;
        let mut t = Transfer::new(s, 0);
        assert!(matches!(
            drain(&mut t).as_slice(),
            [Action::Fail(Error::DownloadInvalid { reason })] if reason.contains("chunk_size")
        ));
    }

    #[test]
    fn pieces_are_coalesced_into_chunks_and_hashed_as_they_arrive() {
        let mut t = Transfer::new(spec(), 0);
        drain(&mut t);
        let headers = ResponseHeaders {
            etag: Some("\"e\"".into()),
            ..Default::default()
        };
        t.handle(
            Event::ResponseHead {
                status: 200,
                headers,
            },
            0,
        );
        t.handle(Event::Body(b"abc"), 1);
        assert!(drain(&mut t).is_empty());
        t.handle(Event::Body(b"defghij"), 2);
        let writes = drain(&mut t);
        assert_eq!(writes.len(), 2);
        match &writes[1] {
            Action::Write {
                offset,
                data,
                checkpoint,
            } => {
                assert_eq!((*offset, data.as_slice()), (4, &b"efgh"[..]));
                assert_eq!(checkpoint.bytes, 8);
                // Hashed piece by piece, cut at the chunk: the state is that of exactly the
                // bytes written so far, not of the piece that spans the cut ("ij" waits).
                let mut expected = Sha256Stream::new();
                expected.update(b"abcdefgh");
                assert_eq!(checkpoint.hash, expected.save());
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(t.progress().bytes_received, 10);
        assert_eq!(t.progress().bytes_written, 0);
        t.handle(Event::Written { offset: 0, len: 4 }, 3);
        assert_eq!(t.checkpoint().bytes, 4);
        t.handle(Event::Written { offset: 9, len: 4 }, 3);
        assert!(matches!(
            drain(&mut t).last(),
            Some(Action::Fail(Error::Storage { .. }))
        ));
    }
    /// A transfer of a 10-byte file (chunks of 4) whose 200 head arrived at t=0.
    fn receiving(pause_hold_ms: u64) -> Transfer {
        let mut s = spec();
        s.expected_size = Some(10);
        s.config.pause_hold_ms = pause_hold_ms;
        let mut t = Transfer::new(s, 0);
        drain(&mut t);
        let headers = ResponseHeaders {
            etag: Some("\"e\"".into()),
            content_length: Some("10".into()),
            ..Default::default()
        };
        t.handle(
            Event::ResponseHead {
                status: 200,
                headers,
            },
            0,
        );
        assert!(drain(&mut t).is_empty());
        t
    }

    fn writes(actions: &[Action]) -> Vec<(u64, Vec<u8>)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Write { offset, data, .. } => Some((*offset, data.clone())),
                _ => None,
            })
            .collect()
    }

    fn confirm(t: &mut Transfer, actions: &[Action]) {
        for (offset, data) in writes(actions) {
            t.handle(
                Event::Written {
                    offset,
                    len: data.len() as u64,
                },
                0,
            );
        }
    }

    fn fetches(actions: &[Action]) -> Vec<Option<u64>> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Fetch { range_start, .. } => Some(*range_start),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn pause_holds_the_response_and_a_resume_within_the_bound_reads_it_on() {
        let mut t = receiving(DEFAULT_PAUSE_HOLD_MS);
        t.handle(Event::Body(b"abc"), 10);
        t.handle(Event::Pause, 100);
        let paused = drain(&mut t);
        assert_eq!(
            writes(&paused),
            [(0, b"abc".to_vec())],
            "what arrived is stored"
        );
        assert!(
            !paused.contains(&Action::Abort),
            "the response is held: {paused:?}"
        );
        confirm(&mut t, &paused);
        assert_eq!(t.state(), TransferState::Paused);
        assert!(t.holds_response());
        assert_eq!(t.poll_timeout(), Some(100 + DEFAULT_PAUSE_HOLD_MS));
        // A read that was in flight when the pause came is stored at once.
        t.handle(Event::Body(b"de"), 150);
        let late = drain(&mut t);
        assert_eq!(writes(&late), [(3, b"de".to_vec())]);
        confirm(&mut t, &late);
        assert_eq!(t.checkpoint().bytes, 5);
        // An early timeout (a stall window) changes nothing while held.
        t.handle(Event::Timeout, 20_000);
        assert!(drain(&mut t).is_empty());
        assert!(t.holds_response());
        t.handle(Event::Resume, 29_000);
        assert!(
            drain(&mut t).is_empty(),
            "no Fetch, no Abort: the same response"
        );
        assert_eq!(t.state(), TransferState::Receiving);
        assert!(!t.holds_response());
        assert_eq!(
            t.poll_timeout(),
            Some(29_000 + t.spec().config.stall_window_ms)
        );
        t.handle(Event::Body(b"fghij"), 29_010);
        t.handle(Event::End, 29_020);
        let rest = drain(&mut t);
        assert_eq!(writes(&rest), [(5, b"fghi".to_vec()), (9, b"j".to_vec())]);
        confirm(&mut t, &rest);
        assert!(matches!(
            drain(&mut t).as_slice(),
            [Action::Finish { size: 10, .. }]
        ));
        assert_eq!(t.progress().attempts, 1, "one request for the whole file");
        assert_eq!(t.progress().wasted_bytes, 0);
    }

    #[test]
    fn a_pause_beyond_the_bound_aborts_and_resume_asks_for_a_range() {
        let mut t = receiving(1_000);
        t.handle(Event::Body(b"abcdef"), 10);
        t.handle(Event::Pause, 20);
        let paused = drain(&mut t);
        assert_eq!(
            writes(&paused),
            [(0, b"abcd".to_vec()), (4, b"ef".to_vec())]
        );
        confirm(&mut t, &paused);
        assert_eq!(t.poll_timeout(), Some(1_020));
        t.handle(Event::Timeout, 1_020);
        assert_eq!(
            drain(&mut t),
            [Action::Abort],
            "the held response is given up"
        );
        assert_eq!(t.state(), TransferState::Paused);
        assert!(!t.holds_response());
        assert_eq!(t.poll_timeout(), None, "nothing timed while paused");
        t.handle(Event::Body(b"gh"), 1_030); // late bytes of the aborted response
        assert!(drain(&mut t).is_empty());
        t.handle(Event::Resume, 60_000);
        let resumed = drain(&mut t);
        assert_eq!(fetches(&resumed), [Some(6)]);
        assert_eq!(
            resumed,
            [Action::Fetch {
                url: "https://cdn.example/t".into(),
                range_start: Some(6),
                range_end: None,
                if_range: Some("\"e\"".into()),
            }]
        );

        // A resume after the deadline whose timeout was never delivered: Abort, then Range.
        let mut t = receiving(1_000);
        t.handle(Event::Body(b"abc"), 10);
        t.handle(Event::Pause, 20);
        let paused = drain(&mut t);
        confirm(&mut t, &paused);
        t.handle(Event::Resume, 1_020);
        let resumed = drain(&mut t);
        assert_eq!(resumed.first(), Some(&Action::Abort), "{resumed:?}");
        assert_eq!(fetches(&resumed), [Some(3)]);
        assert_eq!(t.state(), TransferState::Connecting);
    }

    #[test]
    fn a_held_response_that_breaks_or_ends_leaves_the_transfer_paused() {
        // Broken while held: no retry is scheduled while paused; resume asks for a range.
        let mut t = receiving(DEFAULT_PAUSE_HOLD_MS);
        t.handle(Event::Body(b"ab"), 10);
        t.handle(Event::Pause, 20);
        let paused = drain(&mut t);
        confirm(&mut t, &paused);
        t.handle(Event::NetworkError("reset".into()), 30);
        assert!(drain(&mut t).is_empty());
        assert_eq!(t.state(), TransferState::Paused);
        assert!(!t.holds_response());
        assert_eq!(t.poll_timeout(), None);
        t.handle(Event::Resume, 40);
        assert_eq!(fetches(&drain(&mut t)), [Some(2)]);
        assert_eq!(t.progress().attempts, 2);

        // The last bytes and the end arrive while held: resume verifies, fetches nothing.
        let mut t = receiving(DEFAULT_PAUSE_HOLD_MS);
        t.handle(Event::Body(b"abcd"), 10);
        t.handle(Event::Pause, 20);
        let paused = drain(&mut t);
        confirm(&mut t, &paused);
        t.handle(Event::Body(b"efghij"), 30);
        t.handle(Event::End, 31);
        let late = drain(&mut t);
        assert_eq!(writes(&late), [(4, b"efgh".to_vec()), (8, b"ij".to_vec())]);
        confirm(&mut t, &late);
        assert_eq!(t.state(), TransferState::Paused);
        assert_eq!(t.checkpoint().bytes, 10);
        t.handle(Event::Resume, 40);
        assert!(matches!(
            drain(&mut t).as_slice(),
            [Action::Finish { size: 10, .. }]
        ));
        assert_eq!(t.progress().attempts, 1);

        // A short end while held: resume asks for the rest.
        let mut t = receiving(DEFAULT_PAUSE_HOLD_MS);
        t.handle(Event::Body(b"abc"), 10);
        t.handle(Event::Pause, 20);
        let paused = drain(&mut t);
        confirm(&mut t, &paused);
        t.handle(Event::End, 30);
        assert!(drain(&mut t).is_empty());
        t.handle(Event::Resume, 40);
        assert_eq!(fetches(&drain(&mut t)), [Some(3)]);
    }

    #[test]
    fn without_a_hold_or_before_the_head_a_pause_aborts_at_once() {
        let mut t = receiving(0);
        t.handle(Event::Body(b"abc"), 10);
        t.handle(Event::Pause, 20);
        let paused = drain(&mut t);
        assert_eq!(paused.first(), Some(&Action::Abort), "{paused:?}");
        assert!(!t.holds_response());
        assert_eq!(t.poll_timeout(), None);

        let mut t = Transfer::new(spec(), 0);
        drain(&mut t);
        t.handle(Event::Pause, 5); // still connecting: nothing to hold
        assert_eq!(drain(&mut t).first(), Some(&Action::Abort));
        assert!(!t.holds_response());
        t.handle(Event::Resume, 6);
        assert_eq!(fetches(&drain(&mut t)), [None]);

        // Cancel while held aborts the held response.
        let mut t = receiving(DEFAULT_PAUSE_HOLD_MS);
        t.handle(Event::Body(b"abc"), 10);
        t.handle(Event::Pause, 20);
        drain(&mut t);
        t.handle(Event::Cancel, 30);
        let cancelled = drain(&mut t);
        assert_eq!(cancelled.first(), Some(&Action::Abort), "{cancelled:?}");
        assert!(matches!(
            cancelled.last(),
            Some(Action::Fail(Error::Cancelled { .. }))
        ));
    }
    /// The fetches of `actions` as (range_start, range_end, if_range).
    fn windows(actions: &[Action]) -> Vec<(Option<u64>, Option<u64>, Option<String>)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Fetch {
                    range_start,
                    range_end,
                    if_range,
                    ..
                } => Some((*range_start, *range_end, if_range.clone())),
                _ => None,
            })
            .collect()
    }

    /// Answers the open window request of a `file` served with ETag "e": a 206 for
    /// `start..end` (or the rest), its body, its end. Returns the actions, writes confirmed.
    fn serve_window(
        t: &mut Transfer,
        file: &[u8],
        start: u64,
        end: Option<u64>,
        now: Millis,
    ) -> Vec<Action> {
        let end = end.unwrap_or(file.len() as u64).min(file.len() as u64);
        let headers = ResponseHeaders {
            etag: Some("\"e\"".into()),
            content_range: Some(format!("bytes {start}-{}/{}", end - 1, file.len())),
            content_length: Some((end - start).to_string()),
            ..Default::default()
        };
        t.handle(
            Event::ResponseHead {
                status: 206,
                headers,
            },
            now,
        );
        t.handle(Event::Body(&file[start as usize..end as usize]), now);
        t.handle(Event::End, now);
        let actions = drain(t);
        confirm(t, &actions);
        let mut all = actions;
        all.extend(drain(t));
        all
    }

    #[test]
    fn bounded_windows_ask_for_n_chunks_at_a_time_and_verify_the_whole_file() {
        use sha2::Digest;
        let file: Vec<u8> = (0..22u8).collect();
        let mut s = spec();
        s.expected_size = Some(22);
        s.sha256 = Some(sha2::Sha256::digest(&file).into());
        s.config.range_window_chunks = 2; // 8 bytes a request
        let mut t = Transfer::new(s, 0);
        let first = drain(&mut t);
        assert_eq!(
            windows(&first),
            [(Some(0), Some(8), None)],
            "no validator yet"
        );
        let next = serve_window(&mut t, &file, 0, Some(8), 1);
        assert_eq!(
            windows(&next),
            [(Some(8), Some(16), Some("\"e\"".into()))],
            "the next window, conditional on the first response's ETag: {next:?}"
        );
        let next = serve_window(&mut t, &file, 8, Some(16), 2);
        // The last window reaches the end of the file: open-ended.
        assert_eq!(windows(&next), [(Some(16), None, Some("\"e\"".into()))]);
        let last = serve_window(&mut t, &file, 16, None, 3);
        assert!(
            matches!(last.last(), Some(Action::Finish { size: 22, .. })),
            "{last:?}"
        );
        assert_eq!(t.progress().attempts, 3);
        assert_eq!(t.progress().wasted_bytes, 0);
    }

    #[test]
    fn a_window_of_a_file_of_unknown_size_goes_on_until_the_server_ends_short() {
        let file: Vec<u8> = (0..12u8).collect();
        let mut s = spec();
        s.config.range_window_chunks = 1; // 4 bytes a request, size not declared
        let mut t = Transfer::new(s, 0);
        assert_eq!(windows(&drain(&mut t)), [(Some(0), Some(4), None)]);
        // The server states the total: windows up to it, then the open-ended rest.
        let next = serve_window(&mut t, &file, 0, Some(4), 1);
        assert_eq!(windows(&next), [(Some(4), Some(8), Some("\"e\"".into()))]);
        let next = serve_window(&mut t, &file, 4, Some(8), 1);
        assert_eq!(windows(&next), [(Some(8), None, Some("\"e\"".into()))]);
        let last = serve_window(&mut t, &file, 8, None, 1);
        assert!(
            matches!(last.last(), Some(Action::Finish { size: 12, .. })),
            "{last:?}"
        );

        // A server that answers a window with the whole file (200): read it all.
        let mut s = spec();
        s.expected_size = Some(12);
        s.config.range_window_chunks = 1;
        let mut t = Transfer::new(s, 0);
        drain(&mut t);
        let headers = ResponseHeaders {
            etag: Some("\"e\"".into()),
            content_length: Some("12".into()),
            ..Default::default()
        };
        t.handle(
            Event::ResponseHead {
                status: 200,
                headers,
            },
            0,
        );
        t.handle(Event::Body(&file), 1);
        t.handle(Event::End, 2);
        let actions = drain(&mut t);
        confirm(&mut t, &actions);
        assert!(matches!(
            drain(&mut t).as_slice(),
            [Action::Finish { size: 12, .. }]
        ));
        assert_eq!(t.progress().attempts, 1);
    }

    #[test]
    fn a_window_answered_short_or_with_the_wrong_range_is_retried_from_what_arrived() {
        let file: Vec<u8> = (0..16u8).collect();
        let mut s = spec();
        s.expected_size = Some(16);
        s.config.range_window_chunks = 2;
        s.config.backoff_base_ms = 10;
        let mut t = Transfer::new(s, 0);
        drain(&mut t);
        // A 206 that goes past the window asked for is a bad answer: restart (immediately).
        let headers = ResponseHeaders {
            etag: Some("\"e\"".into()),
            content_range: Some("bytes 0-15/16".into()),
            ..Default::default()
        };
        t.handle(
            Event::ResponseHead {
                status: 206,
                headers,
            },
            0,
        );
        let retried = drain(&mut t);
        assert_eq!(retried.first(), Some(&Action::Abort), "{retried:?}");
        assert_eq!(windows(&retried), [(Some(0), Some(8), None)]);
        // The window breaks after 6 bytes: a retry of the rest of that window, with a Range.
        let headers = ResponseHeaders {
            etag: Some("\"e\"".into()),
            content_range: Some("bytes 0-7/16".into()),
            ..Default::default()
        };
        t.handle(
            Event::ResponseHead {
                status: 206,
                headers,
            },
            1,
        );
        t.handle(Event::Body(&file[..6]), 2);
        t.handle(Event::End, 3);
        let actions = drain(&mut t);
        confirm(&mut t, &actions);
        assert!(
            matches!(actions.last(), Some(Action::RetryAt(_))),
            "{actions:?}"
        );
        t.handle(Event::Timeout, 1_000);
        assert_eq!(
            windows(&drain(&mut t)),
            [(Some(6), Some(14), Some("\"e\"".into()))]
        );
        // A server that sends a shorter window than asked: read it, ask on from where it ended.
        let next = serve_window(&mut t, &file, 6, Some(10), 1_001);
        assert_eq!(windows(&next), [(Some(10), None, Some("\"e\"".into()))]);
        let last = serve_window(&mut t, &file, 10, None, 1_002);
        assert!(
            matches!(last.last(), Some(Action::Finish { size: 16, .. })),
            "{last:?}"
        );
    }
}
