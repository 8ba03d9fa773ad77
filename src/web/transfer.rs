//! One download run to its end: the core's [`Transfer`] state machine driven with `fetch`,
//! the IndexedDB [`Container`] and a Web Lock.
//!
//! ```text
//!   run(container, spec, options)
//!     │ Web Lock `background-assets/download/<identifier>` (Wait | IfAvailable | Steal,
//!     │   or the caller's: RunOptions::held)
//!     │ finished already? (no download record, stored SHA-256 == declared) → that asset
//!     │ begin_epoch → fencing token;  load_checkpoint → Transfer::new / Transfer::resume
//!     ▼
//!   loop {
//!     actions, in order:  Fetch → Fetcher::start (Range / If-Range), in the background
//!                         Abort → drop the response (the fetch is aborted)
//!                         (paused with the response held: no read is started until resume)
//!                         Write → append_chunk(epoch) issued, NOT awaited: reads go on while it
//!                                 commits (up to WRITES_IN_FLIGHT; a next Write waits for the
//!                                 oldest, Discard, SaveCheckpoint and Finish for all) →
//!                                 Written | WriteFailed
//!                                 (the last Write of a verified file also finishes it;
//!                                 with declared chunk digests the chunk is first checked by
//!                                 `crypto.subtle.digest`, off this thread, while the body is
//!                                 read on, and written once it and the chunks before it
//!                                 match: a mismatch is ChunkMismatch and nothing from it on
//!                                 is stored)
//!                         Discard → discard_chunks(epoch)    SaveCheckpoint → save_checkpoint
//!                         Finish → container.finish(epoch) → Ok(StoredAsset)
//!                         Fail(e) → Err(e)
//!     wait for the first of: control (pause/resume/cancel) │ lock stolen → Err(StaleEpoch)
//!                            │ response head / body slice / end / error │ write committed
//!                            │ poll_timeout()
//!     hand it to the transfer (the head after the allow-list check on `response.url`)
//!   }
//! ```
//!
//! Memory stays about three chunks (`chunk_size`: the one the core fills and up to
//! [`WRITES_IN_FLIGHT`] being committed, held by IndexedDB as `Blob`s) plus one read buffer
//! (`read_buffer`); full chunks go to the store through one reused JS array. The body is read
//! with [`ResponseStream::read_into`] (a BYOB reader into one reused `ArrayBuffer` where the body
//! is a byte stream: no new JS array per read) into a bounded buffer and never held whole. No
//! IndexedDB transaction is open while a fetch or a timer is awaited: each container call is its
//! own transaction. A pending body read is never dropped while its response
//! is still wanted (a dropped `reader.read()` would lose its bytes): the read future lives across
//! wake-ups and is dropped only together with its response.
//!
//! # Example
//! ```no_run
//! # async fn demo() -> Result<(), background_assets::core::error::Error> {
//! use background_assets::core::policy::DomainAllowList;
//! use background_assets::core::transfer::TransferSpec;
//! use background_assets::web::container::Container;
//! use background_assets::web::transfer::{run, RunOptions};
//!
//! let container = Container::open(Container::DEFAULT_NAME).await?;
//! let mut spec = TransferSpec::new("level-2", "https://cdn.example/level-2.bin");
//! spec.expected_size = Some(64 << 20);
//! let options = RunOptions {
//!     allow: DomainAllowList::parse(["cdn.example"])?,
//!     on_progress: Some(Box::new(|p| web_sys::console::log_1(&format!("{p:?}").into()))),
//!     ..RunOptions::default()
//! };
//! let asset = run(&container, spec, options).await?;
//! assert_eq!(asset.size, 64 << 20);
//! # Ok(()) }
//! ```

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use futures::future::{poll_fn, LocalBoxFuture};
use gloo_timers::future::TimeoutFuture;
use js_sys::Uint8Array;
use wasm_bindgen::JsValue;

use crate::core::error::{hex, Error};
use crate::core::integrity::Sha256Stream;
use crate::core::policy::DomainAllowList;
use crate::core::transfer::{
    Action, Checkpoint, Event, Progress, Transfer, TransferSpec, TransferState,
};
use crate::core::Millis;
use crate::web::container::{
    Began, ChunkAt, ChunkValue, Container, DownloadRecord, FinishedAsset, StoredAsset, INLINE_MAX,
};
use crate::web::fetcher::{FetchOptions, Fetcher, ResponseStream};
use crate::web::js;
use crate::web::locks::{acquire, LockGuard, LockOptions};

/// The default size of the buffer body bytes are read into (256 KiB).
pub const DEFAULT_READ_BUFFER: usize = 256 * 1024;

/// The Web Lock that one context holds while it runs the download `identifier`.
///
/// # Example
/// ```
/// use background_assets::web::transfer::lock_name;
/// assert_eq!(lock_name("maps"), "background-assets/download/maps");
/// ```
pub fn lock_name(identifier: &str) -> String {
    format!("background-assets/download/{identifier}")
}

/// What [`run`] does when another context already holds the download's lock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LockPolicy {
    /// Wait for the lock. If the other context finished the download meanwhile (and the spec
    /// declares its SHA-256), the stored asset is returned without fetching anything.
    #[default]
    Wait,
    /// Do not wait: [`Error::DownloadAlreadyScheduled`] ("running elsewhere") at once.
    IfAvailable,
    /// Take the lock from its holder. The holder's guard reports the loss and its writes are
    /// refused by the epoch this run starts.
    Steal,
}

/// A command for a running transfer, sent through a [`TransferControl`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Command {
    Pause,
    Resume,
    Cancel,
}

#[derive(Default)]
struct ControlInner {
    commands: RefCell<VecDeque<Command>>,
    waker: RefCell<Option<Waker>>,
    progress: RefCell<Option<Progress>>,
    state: RefCell<Option<TransferState>>,
    challenge: RefCell<Option<String>>,
}

/// A handle to pause, resume or cancel a [`run`] from another task of the same global, and to
/// read its latest progress. Clones share one transfer.
///
/// Pausing keeps the lock and every received byte. A response being received is held open, not
/// read, for [`TransferConfig::pause_hold_ms`](crate::core::transfer::TransferConfig::pause_hold_ms)
/// (30 s by default): a resume within it reads on from the same response and fetches nothing
/// twice; after a longer pause the response is aborted and resume continues with a `Range`
/// request. Cancelling discards the stored chunks and ends the run with [`Error::Cancelled`].
///
/// # Example
/// ```no_run
/// # async fn demo(container: &background_assets::web::container::Container) {
/// use background_assets::core::transfer::TransferSpec;
/// use background_assets::web::transfer::{run, RunOptions, TransferControl};
///
/// let control = TransferControl::new();
/// let options = RunOptions { control: Some(control.clone()), ..RunOptions::default() };
/// let spec = TransferSpec::new("video", "https://cdn.example/video.mp4");
/// let running = run(container, spec, options);
/// control.pause(); // processed as soon as the run looks at its commands
/// control.resume();
/// let _ = running.await;
/// # }
/// ```
#[derive(Clone, Default)]
pub struct TransferControl {
    inner: Rc<ControlInner>,
}

impl std::fmt::Debug for TransferControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransferControl")
            .field("queued", &self.inner.commands.borrow().len())
            .field("state", &self.state())
            .finish()
    }
}

impl TransferControl {
    /// A handle not yet attached to a run (attach it through [`RunOptions::control`]).
    pub fn new() -> TransferControl {
        TransferControl::default()
    }

    /// Asks the run to pause: what arrived is stored and the response is no longer read (held
    /// open for the spec's `pause_hold_ms`, then aborted).
    pub fn pause(&self) {
        self.send(Command::Pause);
    }

    /// Asks a paused run to continue: reading the held response on, or a `Range` request for
    /// the rest once it was given up.
    pub fn resume(&self) {
        self.send(Command::Resume);
    }

    /// Asks the run to stop for good: stored chunks are discarded, the run ends with
    /// [`Error::Cancelled`].
    pub fn cancel(&self) {
        self.send(Command::Cancel);
    }

    /// The run's latest progress (`None` before its transfer starts).
    pub fn progress(&self) -> Option<Progress> {
        self.inner.progress.borrow().clone()
    }

    /// The run's latest state (`None` before its transfer starts).
    pub fn state(&self) -> Option<TransferState> {
        *self.inner.state.borrow()
    }

    /// The `WWW-Authenticate` (or `Proxy-Authenticate`) header of the run's last `401`, `403`
    /// or `407` response, if the server sent (and exposed) one: what the delegate's
    /// authentication challenge is about.
    pub fn challenge(&self) -> Option<String> {
        self.inner.challenge.borrow().clone()
    }

    fn send(&self, command: Command) {
        self.inner.commands.borrow_mut().push_back(command);
        if let Some(waker) = self.inner.waker.borrow_mut().take() {
            waker.wake();
        }
    }

    fn poll_command(&self, cx: &Context<'_>) -> Option<Command> {
        let next = self.inner.commands.borrow_mut().pop_front();
        if next.is_none() {
            *self.inner.waker.borrow_mut() = Some(cx.waker().clone());
        }
        next
    }

    fn observe(&self, transfer: &Transfer) {
        *self.inner.progress.borrow_mut() = Some(transfer.progress());
        *self.inner.state.borrow_mut() = Some(transfer.state());
    }
}

/// A progress callback; see [`RunOptions::on_progress`].
pub type ProgressCallback = Box<dyn FnMut(&Progress)>;

/// How [`run`] runs one download.
pub struct RunOptions {
    /// Hosts downloads may come from; checked on the request URL and on `response.url` after
    /// every response head ([`Error::SessionDownloadDisallowedByDomain`] otherwise).
    pub allow: DomainAllowList,
    /// The app's origin, always allowed; `None` = the origin of the running global.
    pub page_origin: Option<url::Origin>,
    /// What to do when another context holds the download's lock.
    pub lock: LockPolicy,
    /// Bytes read from the body at a time (at least 1; default [`DEFAULT_READ_BUFFER`]).
    pub read_buffer: usize,
    /// A handle to pause, resume or cancel the run.
    pub control: Option<TransferControl>,
    /// Called whenever progress changes (each body slice, write, restart...).
    pub on_progress: Option<ProgressCallback>,
    /// A response the browser already fetched for the download's URL (a Background Fetch
    /// record): the run's first request is answered with it instead of the network. It is
    /// handled like any response: a `200` restarts from byte 0 (after a checkpoint too), its
    /// body is written, hashed and verified, and a body that breaks is resumed from the network.
    pub first_response: Option<web_sys::Response>,
    /// The caller expects nothing stored for this download (no checkpoint, no finished asset):
    /// a file of at most [`INLINE_MAX`] bytes that fits in one chunk
    /// ([`TransferSpec::may_fetch_before_state`]) is then requested, and its body read whole,
    /// while the Web Lock is asked for and before the stored state is read, and its one
    /// verified write begins, stores and finishes it in one transaction
    /// ([`Container::begin_and_store_whole`]). Nothing is stored before the lock is held. Should
    /// the download be finished already, the stored asset is kept and the small file was
    /// fetched for nothing; chunks an interrupted run left are replaced. Off by default.
    pub fresh: bool,
    /// The request [`prefetch`] sent for this download before its run began. A `fresh` run
    /// that would request the small file whole takes its response (or its failure) instead of
    /// sending one, when it was made for the same URL, headers and declared size; otherwise it
    /// is dropped, which aborts it. `None` by default.
    pub prefetched: Option<Prefetch>,
    /// The download's Web Lock ([`lock_name`]`(identifier)`), already held by the caller, who
    /// keeps it after the run (to store the run's result under it, say): the run then takes no
    /// lock of its own (`lock` is not used) and stops with [`Error::StaleEpoch`] if it is
    /// stolen. `None` by default: the run takes the lock itself and lets it go at its end.
    pub held: Option<Rc<LockGuard>>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            allow: DomainAllowList::SameOriginOnly,
            page_origin: None,
            lock: LockPolicy::Wait,
            read_buffer: DEFAULT_READ_BUFFER,
            control: None,
            on_progress: None,
            first_response: None,
            fresh: false,
            prefetched: None,
            held: None,
        }
    }
}

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("allow", &self.allow)
            .field("page_origin", &self.page_origin)
            .field("lock", &self.lock)
            .field("read_buffer", &self.read_buffer)
            .field("control", &self.control)
            .field("on_progress", &self.on_progress.is_some())
            .field("first_response", &self.first_response.is_some())
            .field("fresh", &self.fresh)
            .field("prefetched", &self.prefetched)
            .field("held", &self.held)
            .finish()
    }
}

fn now() -> Millis {
    js_sys::Date::now().max(0.0) as Millis
}

/// [`Error::SessionDownloadDisallowedByDomain`] unless `url` is allowed ([`Error::DownloadInvalid`]
/// when it does not parse).
pub(crate) fn check_allowed(
    allow: &DomainAllowList,
    page: &url::Origin,
    url: &str,
) -> Result<(), Error> {
    let parsed = crate::core::urls::parse(url).map_err(|e| Error::DownloadInvalid {
        reason: format!("url `{url}`: {e}"),
    })?;
    if allow.allows(&parsed, page) {
        Ok(())
    } else {
        Err(Error::SessionDownloadDisallowedByDomain {
            host: parsed.host_str().unwrap_or(url).to_string(),
        })
    }
}

/// The checkpoint as stored in its chunk record: a plain object ([`js::to_plain`]).
fn checkpoint_value(checkpoint: &Checkpoint) -> Result<JsValue, Error> {
    js::to_plain(checkpoint).map_err(|e| Error::Storage {
        message: format!("serializing the checkpoint: {e}"),
    })
}

/// A stored checkpoint object read back (see [`checkpoint_value`]).
fn checkpoint_from_value(value: &JsValue) -> Option<Checkpoint> {
    serde_json::from_str(&js::json_text(value).ok()?).ok()
}

/// Whether a finished asset already matches `spec`'s declared SHA-256 and size (only when a
/// SHA-256 is declared): then the run keeps it instead of downloading.
fn matches_declaration(spec: &TransferSpec) -> impl FnOnce(&StoredAsset) -> bool + 'static {
    let (sha256, size) = (spec.sha256, spec.expected_size);
    move |asset| {
        sha256.is_some_and(|sha256| {
            asset.sha256 == hex(&sha256) && size.map_or(true, |s| s == asset.size)
        })
    }
}

/// The download's lock for a run: the one the caller holds ([`RunOptions::held`]), else its own
/// (taken with `policy`).
async fn take_lock(
    identifier: &str,
    policy: LockPolicy,
    held: Option<Rc<LockGuard>>,
) -> Result<Held, Error> {
    if let Some(guard) = held {
        return Ok(Held::Caller(guard));
    }
    let name = lock_name(identifier);
    let options = match policy {
        LockPolicy::Wait => LockOptions::exclusive(),
        LockPolicy::IfAvailable => LockOptions::exclusive().if_available(),
        LockPolicy::Steal => LockOptions::exclusive().steal(),
    };
    acquire(&name, options)
        .await?
        .map(Held::Own)
        .ok_or_else(|| Error::DownloadAlreadyScheduled {
            identifier: identifier.to_string(),
        })
}

/// The lock a run holds: its own, released at its end, or its caller's.
enum Held {
    Own(LockGuard),
    Caller(Rc<LockGuard>),
}

impl std::ops::Deref for Held {
    type Target = LockGuard;

    fn deref(&self) -> &LockGuard {
        match self {
            Held::Own(guard) => guard,
            Held::Caller(guard) => guard,
        }
    }
}

impl Held {
    /// Lets the run's own lock go (and waits for that); the caller's stays held.
    async fn release(self) {
        if let Held::Own(guard) = self {
            guard.release().await;
        }
    }
}

/// Runs the download `spec` into `container` until it is finished or fails, under the Web Lock
/// [`lock_name`]`(identifier)` (its own, or the caller's: [`RunOptions::held`]), continuing from
/// the stored checkpoint if there is one.
///
/// Returns the finished [`StoredAsset`]. Errors: whatever the transfer fails with
/// ([`Error::RetriesExhausted`], [`Error::IntegrityMismatch`], [`Error::HttpStatus`], ...);
/// [`Error::DownloadAlreadyScheduled`] with [`LockPolicy::IfAvailable`] when another context runs
/// it; [`Error::StaleEpoch`] when the lock is stolen or another context began a newer epoch
/// (nothing more is written); [`Error::SessionDownloadDisallowedByDomain`] when the request URL
/// or a redirect leaves the allow-list (nothing stored from that response);
/// [`Error::Cancelled`] after [`TransferControl::cancel`] (stored chunks discarded).
///
/// Dropping the future stops the run like a killed context: the fetch is aborted, the lock is
/// released, and the last committed checkpoint is where the next run continues.
pub async fn run(
    container: &Container,
    spec: TransferSpec,
    mut options: RunOptions,
) -> Result<StoredAsset, Error> {
    let page =
        options
            .page_origin
            .clone()
            .unwrap_or_else(|| match url::Url::parse(&js::origin()) {
                Ok(url) => url.origin(),
                Err(_) => url::Origin::new_opaque(),
            });
    check_allowed(&options.allow, &page, &spec.url)?;
    let identifier = spec.identifier.clone();
    // A fresh file of at most INLINE_MAX (`RunOptions::fresh`) is requested, and its body read
    // whole at once, while the Web Lock is asked for and without reading the stored state
    // first; it is begun only by its one verified write, which begins, stores and finishes it
    // in one transaction (`Driver::ensure_began` begins it first for any other storage
    // action). Two round trips less per file when many small ones are fetched: the lock's and
    // the state's. Nothing is stored before the lock is held; a lock that is not granted drops
    // (aborts) the request. A body that breaks is fetched again from 0 (at most INLINE_MAX
    // bytes). A larger file's run reads its state first, so that its body is read as it
    // arrives and a break resumes from the bytes received.
    let whole_first =
        options.fresh && options.first_response.is_none() && requested_whole_first(&spec);
    let prefetched = options.prefetched.take();
    let lock = take_lock(&identifier, options.lock, options.held.take());
    let (guard, early) = if whole_first {
        let fetch = match prefetched.and_then(|p| p.answering(&spec)) {
            Some(fetch) => fetch,
            None => whole_request(&spec),
        };
        let (guard, fetch) = lock_while(lock, fetch).await;
        (guard?, Some(fetch))
    } else {
        drop(prefetched); // not this run's request: aborted
        (lock.await?, None)
    };
    let (began, epoch, generation, transfer) = if whole_first {
        (false, 0, 0, Transfer::new(spec, now()))
    } else {
        let began = container
            .begin_unless_finished(&identifier, matches_declaration(&spec))
            .await?;
        let record = match began {
            Began::Download(record) => record,
            Began::Finished(asset) => {
                guard.release().await;
                return Ok(asset);
            }
        };
        let (epoch, generation) = (record.epoch, record.generation);
        (true, epoch, generation, transfer_for(spec, record))
    };
    let mut driver = Driver {
        container,
        identifier,
        began,
        epoch,
        generation,
        guard,
        allow: options.allow.clone(),
        page,
        read_buffer: options.read_buffer.max(1),
        control: options.control.take(),
        on_progress: options.on_progress.take(),
        first_response: options.first_response.take(),
        early,
        transfer,
        io: Io::Idle,
        stream: None,
        buffer: None,
        content_type: None,
        last_progress: None,
        writes: VecDeque::new(),
        checking: VecDeque::new(),
        write_failed: false,
        finished: None,
        kept: None,
        js_chunk: None,
    };
    let outcome = driver.drive().await;
    let Driver { guard, io, .. } = driver;
    drop(io); // abort any open fetch before letting the lock go
    guard.release().await;
    outcome
}

/// Waits for `lock` while `fetch` runs: the lock's outcome, and the fetch (its outcome if it
/// ended first, or the rest of it).
async fn lock_while(
    lock: impl Future<Output = Result<Held, Error>>,
    fetch: Connect,
) -> (Result<Held, Error>, Connect) {
    use futures::future::{select, Either};
    let lock = std::pin::pin!(lock);
    match select(lock, fetch).await {
        Either::Left((guard, fetch)) => (guard, fetch),
        Either::Right((fetched, lock)) => {
            let done: Connect = Box::pin(futures::future::ready(fetched));
            (lock.await, done)
        }
    }
}

/// Whether a fresh run of `spec` requests the file whole before it reads its state: a file of
/// at most [`INLINE_MAX`] bytes that fits in one chunk.
fn requested_whole_first(spec: &TransferSpec) -> bool {
    spec.may_fetch_before_state()
        && spec
            .expected_size
            .is_some_and(|size| size <= u64::from(INLINE_MAX))
}

/// The request a fresh small file's run sends before it reads its state: a plain `GET` of
/// the whole file, its body read at once up to the declared size.
fn whole_request(spec: &TransferSpec) -> Connect {
    let limit = spec.expected_size.unwrap_or(0) as usize;
    connect_and_read(
        spec.url.clone(),
        fetch_options(spec, None, None, None),
        limit,
    )
}

/// A small file's request sent before its download's run began (see [`prefetch`]): it runs in
/// the background, its body read whole as it arrives, until a run takes it
/// ([`RunOptions::prefetched`]). Dropping it aborts the request (or frees the bytes read).
pub struct Prefetch {
    url: String,
    options: FetchOptions,
    size: Option<u64>,
    response: futures::channel::oneshot::Receiver<Result<ResponseStream, Error>>,
    abort: AbortOnDrop,
}

impl std::fmt::Debug for Prefetch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prefetch")
            .field("url", &self.url)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// Aborts its task when dropped.
struct AbortOnDrop(futures::future::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Prefetch {
    /// The request as the run's first one, if it was made for what `spec` asks.
    fn answering(self, spec: &TransferSpec) -> Option<Connect> {
        let same = self.url == spec.url
            && self.size == spec.expected_size
            && self.options == fetch_options(spec, None, None, None);
        if !same {
            return None;
        }
        let Prefetch {
            response, abort, ..
        } = self;
        Some(Box::pin(async move {
            let _abort = abort; // dropped with the run's request: aborted like it
            response.await.unwrap_or_else(|_| {
                Err(Error::Network {
                    message: "the prefetched request was aborted".to_string(),
                })
            })
        }))
    }
}

/// Sends the request a fresh run of `spec` would send first ([`RunOptions::fresh`]: a file of
/// at most [`INLINE_MAX`] bytes in one chunk, requested whole), before the run begins, e.g.
/// while the download waits for a free slot. `None` when such a run would not request it whole
/// first, or the URL is not allowed (`allow`, `page_origin` as in [`RunOptions`]). Nothing is
/// stored: the run that takes it ([`RunOptions::prefetched`]) checks, verifies and stores the
/// response as its own.
pub fn prefetch(
    spec: &TransferSpec,
    allow: &DomainAllowList,
    page_origin: &url::Origin,
) -> Option<Prefetch> {
    if !requested_whole_first(spec) {
        return None;
    }
    check_allowed(allow, page_origin, &spec.url).ok()?;
    let (send, response) = futures::channel::oneshot::channel();
    let (task, abort) = futures::future::abortable(whole_request(spec));
    js::spawn(async move {
        if let Ok(result) = task.await {
            let _ = send.send(result);
        }
    });
    Some(Prefetch {
        url: spec.url.clone(),
        options: fetch_options(spec, None, None, None),
        size: spec.expected_size,
        response,
        abort: AbortOnDrop(abort),
    })
}

/// The transfer that continues from `record`: from its checkpoint, or its stored bytes, or
/// from zero.
fn transfer_for(spec: TransferSpec, record: DownloadRecord) -> Transfer {
    if !record.checkpoint.is_null() && !record.checkpoint.is_undefined() {
        // An unreadable checkpoint still names the stored bytes: resume() then sees a hash that
        // does not cover them and restarts from zero with a Discard.
        let checkpoint = checkpoint_from_value(&record.checkpoint).unwrap_or(Checkpoint {
            bytes: record.stored,
            ..Checkpoint::default()
        });
        Transfer::resume(spec, checkpoint, now())
    } else if record.stored > 0 {
        let checkpoint = Checkpoint {
            bytes: record.stored,
            ..Checkpoint::default()
        };
        Transfer::resume(spec, checkpoint, now())
    } else {
        Transfer::new(spec, now())
    }
}

type Connect = LocalBoxFuture<'static, Result<ResponseStream, Error>>;

/// The request for `spec`'s bytes from `range_start` (to `range_end`), with the app's headers.
fn fetch_options(
    spec: &TransferSpec,
    range_start: Option<u64>,
    range_end: Option<u64>,
    if_range: Option<String>,
) -> FetchOptions {
    // The app gave these headers for its download URL: credentials among them may go to that
    // URL's origin (and only there).
    let credentials_origin = (!spec.headers.is_empty())
        .then(|| crate::web::fetcher::origin_of(&spec.url))
        .flatten();
    FetchOptions {
        range_start,
        range_end,
        if_range,
        headers: spec.headers.clone(),
        credentials_origin,
    }
}

/// A fetch of `url`, sent when the future is first polled, ready once its head arrives.
fn connect(url: String, options: FetchOptions) -> Connect {
    Box::pin(async move { Fetcher::start(&url, options).await })
}

/// A fetch of `url` whose body, up to `limit` bytes, is read as soon as its head arrives: ready
/// once it is (see [`ResponseStream::read_ahead`]).
fn connect_and_read(url: String, options: FetchOptions, limit: usize) -> Connect {
    Box::pin(async move {
        let mut stream = Fetcher::start(&url, options).await?;
        stream.read_ahead(limit).await?;
        Ok(stream)
    })
}

type Read = LocalBoxFuture<'static, (ResponseStream, Vec<u8>, Result<usize, Error>)>;
/// A chunk write in flight: its offset, length, and the commit's outcome (with the finished
/// asset when the write also finished the download).
type WriteJob = LocalBoxFuture<'static, (u64, u64, Result<Option<StoredAsset>, Error>)>;

/// A chunk whose declared digest the browser is computing (off this thread): it is written once
/// it and every chunk before it is checked, and the body is read on meanwhile.
struct Checking {
    offset: u64,
    /// The chunk as it is stored, copied from the reused [`Driver::js_chunk`].
    chunk: ChunkValue,
    checkpoint: JsValue,
    expected: [u8; 32],
    digest: LocalBoxFuture<'static, [u8; 32]>,
}

/// Chunk writes a running transfer keeps in flight while it reads on. IndexedDB commits them in
/// the order they were issued; a second one lets the body be read and hashed while the browser
/// still stores the chunk before (its commit can take longer than reading a whole chunk). A killed
/// run loses what is in flight, so with bounded `Range` windows (`range_window_chunks`, chosen to
/// waste little after a kill) only one write is, and the next window is asked for only once the
/// one before is stored: a kill then re-fetches at most the window being read. A chunk waiting
/// for its declared digest counts as a write in flight.
pub const WRITES_IN_FLIGHT: usize = 2;

/// The one fetch in flight, owned by its future so that a wake-up for another reason (a timer,
/// a command) never drops a pending read.
enum Io {
    Idle,
    Connecting(Connect),
    Reading(Read),
}

/// Why the driver woke up.
enum Wake {
    Command(Command),
    LockLost,
    Connected(Result<ResponseStream, Error>),
    Read(ResponseStream, Vec<u8>, Result<usize, Error>),
    Wrote(u64, u64, Result<Option<StoredAsset>, Error>),
    Checked(Checking, [u8; 32]),
    Timer,
}

struct Driver<'c> {
    container: &'c Container,
    identifier: String,
    /// The download was begun (`epoch` and `generation` are its): `false` only for a fresh
    /// small file until its one write begins it, or another storage action first
    /// [`Driver::ensure_began`].
    began: bool,
    epoch: u64,
    /// The download record's chunk generation (the chunks' key space).
    generation: u64,
    guard: Held,
    allow: DomainAllowList,
    page: url::Origin,
    read_buffer: usize,
    control: Option<TransferControl>,
    on_progress: Option<ProgressCallback>,
    /// [`RunOptions::first_response`], until the first fetch takes it.
    first_response: Option<web_sys::Response>,
    /// The first request of a run begun by its one write (a fresh small file), sent before the
    /// stored state was read, until the first `Fetch` takes it.
    early: Option<Connect>,
    transfer: Transfer,
    io: Io,
    /// A response whose head was handed over and whose next read has not started yet.
    stream: Option<ResponseStream>,
    buffer: Option<Vec<u8>>,
    content_type: Option<String>,
    last_progress: Option<Progress>,
    /// The chunk writes in flight, oldest first (at most [`WRITES_IN_FLIGHT`]): body reads (and
    /// hashing) go on while they commit.
    writes: VecDeque<WriteJob>,
    /// Chunks waiting for their declared digest, oldest first, all after every write in
    /// `writes`; with `writes` at most [`Driver::writes_in_flight`] together.
    checking: VecDeque<Checking>,
    /// A write failed: later writes of this run are not issued (the transfer has failed).
    write_failed: bool,
    /// The asset a write that also finished the download stored.
    finished: Option<StoredAsset>,
    /// The finished asset [`Driver::ensure_began`] found and kept: the run ends with it.
    kept: Option<StoredAsset>,
    /// A JS array of one chunk's size, reused for every full chunk: the container copies it
    /// (into a `Blob`, or IndexedDB's clone) when the write is issued, so one array serves every
    /// write without new garbage.
    js_chunk: Option<Uint8Array>,
}

impl Driver<'_> {
    async fn drive(&mut self) -> Result<StoredAsset, Error> {
        self.report();
        loop {
            if let Some(done) = self.perform_actions().await {
                return done;
            }
            self.report();
            if self.guard.is_lost() {
                return Err(self.stale().await);
            }
            // A paused transfer holding its response reads no more of it: the browser's buffers
            // fill and flow control holds the server back until resume (or the hold ends).
            if let (false, Io::Idle, Some(_)) =
                (self.transfer.holds_response(), &self.io, &self.stream)
            {
                let stream = self.stream.take().expect("checked above");
                let buffer = self
                    .buffer
                    .take()
                    .unwrap_or_else(|| vec![0; self.read_buffer]);
                self.io = Io::Reading(Box::pin(read_next(stream, buffer)));
            }
            let timeout = self.transfer.poll_timeout();
            if matches!(self.io, Io::Idle)
                && self.writes.is_empty()
                && self.checking.is_empty()
                && timeout.is_none()
                && self.control.is_none()
            {
                return Err(Error::DownloadFailedToStart {
                    identifier: self.identifier.clone(),
                    reason: format!(
                        "transfer in state {:?} has nothing to wait for",
                        self.transfer.state()
                    ),
                });
            }
            let mut timer = timeout.map(|at| {
                let delay = at.saturating_sub(now()).min(u32::MAX as u64) as u32;
                TimeoutFuture::new(delay)
            });
            let wake = self.wait(&mut timer).await;
            self.on_wake(wake).await?;
            self.report();
        }
    }

    /// Waits for the first of: a command, the lock lost, the fetch, the timer.
    async fn wait(&mut self, timer: &mut Option<TimeoutFuture>) -> Wake {
        let mut lost = self.guard.lost();
        let control = self.control.clone();
        let io = &mut self.io;
        let writes = &mut self.writes;
        let checking = &mut self.checking;
        poll_fn(move |cx| {
            if let Some(command) = control.as_ref().and_then(|c| c.poll_command(cx)) {
                return Poll::Ready(Wake::Command(command));
            }
            if Pin::new(&mut lost).poll(cx).is_ready() {
                return Poll::Ready(Wake::LockLost);
            }
            match io {
                Io::Idle => {}
                Io::Connecting(connect) => {
                    if let Poll::Ready(result) = connect.as_mut().poll(cx) {
                        *io = Io::Idle;
                        return Poll::Ready(Wake::Connected(result));
                    }
                }
                Io::Reading(read) => {
                    if let Poll::Ready((stream, buffer, result)) = read.as_mut().poll(cx) {
                        *io = Io::Idle;
                        return Poll::Ready(Wake::Read(stream, buffer, result));
                    }
                }
            }
            // The oldest write commits first: only it is awaited (the others keep their outcome).
            if let Some(job) = writes.front_mut() {
                if let Poll::Ready((offset, len, result)) = job.as_mut().poll(cx) {
                    writes.pop_front();
                    return Poll::Ready(Wake::Wrote(offset, len, result));
                }
            }
            // Digests are checked in order too: a chunk is written only after those before it.
            if let Some(check) = checking.front_mut() {
                if let Poll::Ready(actual) = check.digest.as_mut().poll(cx) {
                    let check = checking.pop_front().expect("polled above");
                    return Poll::Ready(Wake::Checked(check, actual));
                }
            }
            if let Some(timer) = timer.as_mut() {
                if Pin::new(timer).poll(cx).is_ready() {
                    return Poll::Ready(Wake::Timer);
                }
            }
            Poll::Pending
        })
        .await
    }

    async fn on_wake(&mut self, wake: Wake) -> Result<(), Error> {
        match wake {
            Wake::Command(command) => {
                // What was stored before the command is reported before its effect.
                self.settle_write().await;
                let event = match command {
                    Command::Pause => Event::Pause,
                    Command::Resume => Event::Resume,
                    Command::Cancel => Event::Cancel,
                };
                self.transfer.handle(event, now());
            }
            Wake::LockLost => return Err(self.stale().await),
            Wake::Connected(Ok(stream)) => {
                let head = stream.head();
                let headers = head.transfer_headers();
                if let (401 | 403 | 407, Some(control)) = (head.status, &self.control) {
                    *control.inner.challenge.borrow_mut() = head.www_authenticate.clone();
                }
                match check_allowed(&self.allow, &self.page, &head.url) {
                    Ok(()) => {
                        self.content_type = head.content_type.clone();
                        let status = head.status;
                        self.stream = Some(stream);
                        self.transfer
                            .handle(Event::ResponseHead { status, headers }, now());
                    }
                    Err(refused) => {
                        drop(stream); // aborts the fetch: nothing from it is delivered
                        self.transfer.handle(Event::Refused(refused), now());
                    }
                }
            }
            Wake::Connected(Err(error)) => {
                // The retry this may lead to resumes from what is stored: store it first.
                self.settle_write().await;
                self.on_connect_failed(error);
            }
            Wake::Read(stream, buffer, result) => {
                if !matches!(result, Ok(n) if n > 0) {
                    // The body ended or broke: the resume, next window or finish the transfer
                    // decides next starts from the bytes stored, so the writes in flight are
                    // settled first (a short body would otherwise resume from before its last
                    // chunk, or from 0).
                    self.settle_write().await;
                }
                self.on_read(stream, buffer, result);
            }
            Wake::Wrote(offset, len, result) => self.on_written(offset, len, result),
            Wake::Checked(check, actual) => self.on_checked(check, actual).await,
            Wake::Timer => {
                self.settle_write().await;
                self.transfer.handle(Event::Timeout, now());
            }
        }
        Ok(())
    }

    fn on_connect_failed(&mut self, error: Error) {
        match error {
            Error::Network { message } => self.transfer.handle(Event::NetworkError(message), now()),
            refused => self.transfer.handle(Event::Refused(refused), now()),
        }
    }

    fn on_read(&mut self, stream: ResponseStream, buffer: Vec<u8>, result: Result<usize, Error>) {
        match result {
            Ok(0) => {
                drop(stream);
                self.transfer.handle(Event::End, now());
            }
            Ok(n) => {
                self.stream = Some(stream);
                self.transfer.handle(Event::Body(&buffer[..n]), now());
            }
            Err(error) => {
                drop(stream);
                let message = match error {
                    Error::Network { message } => message,
                    other => other.to_string(),
                };
                self.transfer.handle(Event::NetworkError(message), now());
            }
        }
        self.buffer = Some(buffer);
    }

    /// Hands a write's outcome to the transfer.
    fn on_written(&mut self, offset: u64, len: u64, result: Result<Option<StoredAsset>, Error>) {
        if self.write_failed && result.is_err() {
            // A write issued behind the one that failed fails its append check too: the first
            // failure is the transfer's.
            return;
        }
        let event = match result {
            Ok(finished) => {
                if finished.is_some() {
                    self.finished = finished;
                }
                Event::Written { offset, len }
            }
            Err(error) => {
                self.write_failed = true;
                Event::WriteFailed(error)
            }
        };
        self.transfer.handle(event, now());
        // Every committed write is its own progress step, even with a later write in flight:
        // writes commit in order, so what is reported as written never goes back.
        self.publish();
    }

    /// Waits for every write in flight, oldest first, and hands each outcome to the transfer:
    /// storage actions are performed in order.
    async fn settle_write(&mut self) {
        while self.settle_oldest_write().await {}
    }

    /// Waits for the oldest write in flight and hands its outcome to the transfer, or, with no
    /// write in flight, for the oldest chunk's digest and then writes it; `false` when there was
    /// neither.
    async fn settle_oldest_write(&mut self) -> bool {
        if let Some(job) = self.writes.pop_front() {
            let (offset, len, result) = job.await;
            self.on_written(offset, len, result);
            return true;
        }
        self.check_oldest().await
    }

    /// Writes every chunk still waiting for its digest, in order, once it is checked (without
    /// waiting for the writes to commit): what is written next comes after them.
    async fn write_checked(&mut self) {
        while self.check_oldest().await {}
    }

    /// Waits for the oldest waiting chunk's digest and writes the chunk if it matches
    /// ([`Driver::on_checked`]); `false` when no chunk was waiting.
    async fn check_oldest(&mut self) -> bool {
        let Some(mut check) = self.checking.pop_front() else {
            return false;
        };
        let actual = check.digest.as_mut().await;
        self.on_checked(check, actual).await;
        true
    }

    /// A chunk's declared digest is known: the chunk is written if it matches. A mismatch fails
    /// the transfer, and neither this chunk nor any after it is stored.
    async fn on_checked(&mut self, check: Checking, actual: [u8; 32]) {
        let Checking {
            offset,
            chunk,
            checkpoint,
            expected,
            ..
        } = check;
        let len = u64::from(chunk.len());
        if self.write_failed {
            return; // an earlier chunk failed: the transfer ends with that error
        }
        if actual != expected {
            return self.chunk_mismatch(offset, actual);
        }
        if let Err(error) = self.stop_if_lost().await {
            return self.on_written(offset, len, Err(error));
        }
        let at = ChunkAt {
            identifier: &self.identifier,
            epoch: self.epoch,
            generation: self.generation,
            offset,
        };
        let job = self.container.append_chunk_value(at, chunk, &checkpoint);
        self.writes
            .push_back(Box::pin(async move { (offset, len, job.await) }));
    }

    /// The chunk at `offset` does not match its declared digest: the transfer fails, and neither
    /// it nor any chunk after it (those still waiting for their digest too) is stored.
    fn chunk_mismatch(&mut self, offset: u64, actual: [u8; 32]) {
        self.write_failed = true;
        self.checking.clear();
        self.transfer
            .handle(Event::ChunkMismatch { offset, actual }, now());
    }

    /// Issues the chunk write `offset..offset+data.len()` with its checkpoint, without waiting
    /// for it to commit (once fewer than [`WRITES_IN_FLIGHT`] are in flight). When every byte is
    /// received and verified and this is the last write, the same transaction also finishes the
    /// download.
    async fn start_write(&mut self, offset: u64, data: Vec<u8>, checkpoint: Checkpoint) {
        while self.writes.len() + self.checking.len() >= self.writes_in_flight() {
            self.settle_oldest_write().await;
        }
        let len = data.len() as u64;
        if self.write_failed {
            return; // the transfer failed on the write before: it ends with that error
        }
        if let Err(error) = self.stop_if_lost().await {
            return self.on_written(offset, len, Err(error));
        }
        let value = match checkpoint_value(&checkpoint) {
            Ok(value) => value,
            Err(error) => return self.on_written(offset, len, Err(error)),
        };
        // The last write of a verified file finishes the download in its own transaction.
        // (Finishing: End was handled, every byte is verified, and this write — cut at the
        // end — is the last one; the first write of a one-chunk file is the usual case.)
        let last = self.transfer.state() == TransferState::Finishing
            && self.transfer.progress().bytes_received == offset + len;
        let finish = if last {
            self.finished_asset(offset + len, &checkpoint)
        } else {
            None
        };
        let expected = self.transfer.expected_chunk_digest(offset);
        if let (Some(expected), None) = (expected, &finish) {
            // Declared chunk digests, a chunk before the last: the browser checks it off this
            // thread while the body is read on, and it is written once checked (`on_checked`).
            match self.ensure_began().await {
                Ok(None) => {}
                Ok(Some(asset)) => return self.keep(asset),
                Err(error) => return self.on_written(offset, len, Err(error)),
            }
            let array = self.chunk_array(&data);
            drop(data);
            // Both copy the array now: it is free for the next chunk. (Only a digest the browser
            // fails, which it has no reason to, would be hashed here later from the reused
            // array: a mismatch then, which fails the transfer typed and stores nothing wrong.)
            let digest = Box::pin(js::sha256(&array));
            let chunk = match ChunkValue::of(&array) {
                Ok(chunk) => chunk,
                Err(error) => return self.on_written(offset, len, Err(error)),
            };
            self.checking.push_back(Checking {
                offset,
                chunk,
                checkpoint: value,
                expected,
                digest,
            });
            if !matches!(
                self.transfer.state(),
                TransferState::Receiving | TransferState::Connecting
            ) {
                self.settle_write().await;
            }
            return;
        }
        // What waits for its digest is written before this.
        self.write_checked().await;
        if self.write_failed {
            return;
        }
        let array = self.chunk_array(&data);
        drop(data);
        if let Some(expected) = expected {
            // Declared chunk digests, the last chunk: checked off this thread before it is
            // stored (the array is not touched until the digest has copied it).
            let actual = js::sha256(&array).await;
            if actual != expected {
                return self.chunk_mismatch(offset, actual);
            }
        }
        let whole = finish
            .as_ref()
            .filter(|_| !self.began && offset == 0 && array.length() <= INLINE_MAX);
        if let Some(finish) = whole {
            // The whole verified file of a run not begun yet: one transaction begins, stores and
            // finishes it (or keeps the finished asset that is already there).
            let job = self.container.begin_and_store_whole(
                &self.identifier,
                matches_declaration(self.transfer.spec()),
                &array,
                finish.clone(),
            );
            self.writes
                .push_back(Box::pin(async move { (offset, len, job.await.map(Some)) }));
        } else {
            match self.ensure_began().await {
                Ok(None) => {}
                Ok(Some(asset)) => return self.keep(asset),
                Err(error) => return self.on_written(offset, len, Err(error)),
            }
            let at = ChunkAt {
                identifier: &self.identifier,
                epoch: self.epoch,
                generation: self.generation,
                offset,
            };
            let job = self.container.append_chunk(at, &array, &value, finish);
            self.writes
                .push_back(Box::pin(async move { (offset, len, job.await) }));
        }
        // Only a running transfer reads on while a write commits: a paused (or ending) one
        // reports its state once what arrived is stored, as before.
        if !matches!(
            self.transfer.state(),
            TransferState::Receiving | TransferState::Connecting
        ) {
            self.settle_write().await;
        }
    }

    /// Begins the download if this run has not yet (a fresh small file, fetched before the
    /// stored state was read, that needs another storage action than its one whole write):
    /// `Some(asset)` when a finished asset matching the declaration is kept instead: the run
    /// ends with it. Chunks an interrupted earlier run left are discarded: this run started
    /// from byte 0.
    async fn ensure_began(&mut self) -> Result<Option<StoredAsset>, Error> {
        if self.began {
            return Ok(None);
        }
        self.stop_if_lost().await?;
        let keep = matches_declaration(self.transfer.spec());
        let record = match self
            .container
            .begin_unless_finished(&self.identifier, keep)
            .await?
        {
            Began::Finished(asset) => return Ok(Some(asset)),
            Began::Download(record) => record,
        };
        self.began = true;
        (self.epoch, self.generation) = (record.epoch, record.generation);
        if record.stored > 0 {
            let reset = checkpoint_value(&Checkpoint::default())?;
            self.container
                .discard_chunks(&self.identifier, self.epoch, &reset)
                .await?;
        }
        Ok(None)
    }

    /// Before a storage action other than a write: [`Driver::ensure_began`], then the lock
    /// check. `None` when a finished asset was kept instead (in `kept`: the run ends with it).
    async fn begun_and_held(&mut self) -> Option<Result<(), Error>> {
        match self.ensure_began().await {
            Ok(Some(asset)) => {
                self.keep(asset);
                None
            }
            Ok(None) => Some(self.stop_if_lost().await),
            Err(e) => Some(Err(e)),
        }
    }

    /// Ends the run with `asset`, the finished one [`Driver::ensure_began`] kept: the fetch is
    /// dropped, nothing of this run is stored.
    fn keep(&mut self, asset: StoredAsset) {
        self.io = Io::Idle;
        self.stream = None;
        self.kept = Some(asset);
    }

    /// How many chunk writes may be in flight: [`WRITES_IN_FLIGHT`], or one with bounded `Range`
    /// windows (`range_window_chunks`), which are there to bound what a killed run fetches
    /// twice (a kill loses the writes in flight).
    fn writes_in_flight(&self) -> usize {
        if self.transfer.spec().config.range_window_chunks > 0 {
            1
        } else {
            WRITES_IN_FLIGHT
        }
    }

    /// The bytes as a JS array for the store: the reused chunk-sized array for a full chunk,
    /// a fresh exact one otherwise (IndexedDB would store a larger array's whole buffer).
    fn chunk_array(&mut self, data: &[u8]) -> Uint8Array {
        let chunk = self.transfer.spec().config.chunk_size as usize;
        if data.len() != chunk {
            return Uint8Array::from(data);
        }
        let array = self
            .js_chunk
            .get_or_insert_with(|| Uint8Array::new_with_length(chunk as u32));
        array.copy_from(data);
        array.clone()
    }

    /// What the finished asset will be, from the checkpoint of its last write (which hashes
    /// every byte): `None` if that state is unreadable (the download is then finished apart).
    fn finished_asset(&self, size: u64, checkpoint: &Checkpoint) -> Option<FinishedAsset> {
        if checkpoint.bytes != size {
            return None;
        }
        let sha256 = if checkpoint.chunks_verified {
            // Every chunk, this last one too, is checked against its declared digest before it
            // is stored: the file is the declared one.
            self.transfer.spec().sha256?
        } else if checkpoint.hash.length() == size {
            Sha256Stream::restore(&checkpoint.hash).ok()?.finalize()
        } else {
            return None;
        };
        if self.transfer.spec().sha256.is_some_and(|s| s != sha256) {
            return None;
        }
        Some(FinishedAsset {
            size,
            sha256: hex(&sha256),
            content_type: self.content_type.clone(),
        })
    }

    /// Performs every queued action in order; `Some` once the run is over.
    async fn perform_actions(&mut self) -> Option<Result<StoredAsset, Error>> {
        while let Some(action) = self.transfer.poll_action() {
            match action {
                Action::Fetch {
                    url,
                    range_start,
                    range_end,
                    if_range,
                } => {
                    self.stream = None;
                    if self.transfer.spec().config.range_window_chunks > 0 {
                        // Bounded windows exist to bound what a kill re-fetches: the next window
                        // is asked for once everything before it is stored, so a killed run
                        // loses at most the window it was reading (and what the server had
                        // sent of it), never a chunk still being committed as well.
                        self.settle_write().await;
                    }
                    if let Some(response) = self.first_response.take() {
                        self.io = Io::Connecting(Box::pin(async move {
                            ResponseStream::from_response(response)
                        }));
                        continue;
                    }
                    if let Some(early) = self.early.take() {
                        // Sent before the stored state was read: it answers the transfer's
                        // first request, the plain `GET` a new transfer starts with.
                        let plain = range_start.is_none() && range_end.is_none();
                        if plain && if_range.is_none() && url == self.transfer.spec().url {
                            self.io = Io::Connecting(early);
                            continue;
                        }
                    }
                    let options =
                        fetch_options(self.transfer.spec(), range_start, range_end, if_range);
                    self.io = Io::Connecting(connect(url, options));
                }
                Action::Abort => {
                    self.stream = None;
                    self.io = Io::Idle;
                }
                Action::Write {
                    offset,
                    data,
                    checkpoint,
                } => {
                    self.start_write(offset, data, checkpoint).await;
                    if let Some(asset) = self.kept.take() {
                        return Some(Ok(asset));
                    }
                }
                Action::Discard { checkpoint } => {
                    self.settle_write().await;
                    let Some(result) = self.begun_and_held().await else {
                        return self.kept.take().map(Ok);
                    };
                    let result = match result {
                        Err(e) => Err(e),
                        Ok(()) => match checkpoint_value(&checkpoint) {
                            Ok(value) => {
                                self.container
                                    .discard_chunks(&self.identifier, self.epoch, &value)
                                    .await
                            }
                            Err(e) => Err(e),
                        },
                    };
                    if let Err(error) = result {
                        self.transfer.handle(Event::WriteFailed(error), now());
                    }
                }
                Action::SaveCheckpoint(checkpoint) => {
                    self.settle_write().await;
                    let Some(result) = self.begun_and_held().await else {
                        return self.kept.take().map(Ok);
                    };
                    let result = match result {
                        Err(e) => Err(e),
                        Ok(()) => match checkpoint_value(&checkpoint) {
                            Ok(value) => {
                                self.container
                                    .save_checkpoint(&self.identifier, self.epoch, &value)
                                    .await
                            }
                            Err(e) => Err(e),
                        },
                    };
                    if let Err(error) = result {
                        self.transfer.handle(Event::WriteFailed(error), now());
                    }
                }
                Action::RetryAt(_) => {} // the timer follows poll_timeout()
                Action::Finish { size, sha256 } => {
                    self.io = Io::Idle;
                    self.stream = None;
                    self.settle_write().await;
                    if let Some(asset) = self.finished.take() {
                        return Some(Ok(asset)); // the last write finished it
                    }
                    let Some(held) = self.begun_and_held().await else {
                        return self.kept.take().map(Ok);
                    };
                    if let Err(error) = held {
                        return Some(Err(error));
                    }
                    let asset = FinishedAsset {
                        size,
                        sha256: hex(&sha256),
                        content_type: self.content_type.clone(),
                    };
                    return Some(
                        self.container
                            .finish(&self.identifier, self.epoch, asset)
                            .await,
                    );
                }
                Action::Fail(error) => {
                    self.io = Io::Idle;
                    self.stream = None;
                    // Writes in flight still commit (a next run continues after them).
                    // Chunks still waiting for their digest are not written.
                    self.checking.clear();
                    for job in std::mem::take(&mut self.writes) {
                        let _ = job.await;
                    }
                    return Some(Err(error));
                }
            }
        }
        None
    }

    /// [`Error::StaleEpoch`] once the lock was stolen: a holder that lost its lock writes nothing.
    async fn stop_if_lost(&self) -> Result<(), Error> {
        if self.guard.is_lost() {
            Err(self.stale().await)
        } else {
            Ok(())
        }
    }

    /// The error of a holder whose lock was stolen. The thief begins a newer epoch (if it has
    /// not yet, it is about to): `current` is the stored epoch, at least `held + 1`.
    async fn stale(&self) -> Error {
        let stored = match self.container.load_checkpoint(&self.identifier).await {
            Ok(Some(record)) => record.epoch,
            _ => 0,
        };
        Error::StaleEpoch {
            identifier: self.identifier.clone(),
            held: self.epoch,
            current: stored.max(self.epoch + 1),
        }
    }

    /// Tells the control handle and the progress callback, when progress changed.
    ///
    /// Not while a write is in flight: bytes received after a chunk are reported once that chunk
    /// is stored, so progress never runs ahead of a write a pause would still report after. (A
    /// committed write reports itself, see [`Driver::on_written`].)
    fn report(&mut self) {
        if self.writes.is_empty() && self.checking.is_empty() {
            self.publish();
        }
    }

    /// Tells the control handle and the progress callback, when progress changed.
    fn publish(&mut self) {
        if let Some(control) = &self.control {
            control.observe(&self.transfer);
        }
        let progress = self.transfer.progress();
        if self.last_progress.as_ref() != Some(&progress) {
            if let Some(callback) = self.on_progress.as_mut() {
                callback(&progress);
            }
            self.last_progress = Some(progress);
        }
    }
}

async fn read_next(
    mut stream: ResponseStream,
    mut buffer: Vec<u8>,
) -> (ResponseStream, Vec<u8>, Result<usize, Error>) {
    let result = stream.read_into(&mut buffer).await;
    (stream, buffer, result)
}
