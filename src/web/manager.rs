//! The download manager of one global (a page or the service worker): Apple's
//! `BADownloadManager`, driving the sans-IO [`core::manager::Manager`](CoreManager) with
//! [`transfer::run`](crate::web::transfer::run), IndexedDB and Web Locks.
//!
//! ```text
//!  schedule / start_foreground / cancel / pause / resume
//!        │
//!        ▼
//!  core Manager decides (typed errors) ──▶ state saved to IndexedDB (`meta` store, key
//!        │                                  `manager`, its own transaction, never across a fetch)
//!        ▼
//!  pump: poll_start ─▶ spawn transfer::run per download (one TransferControl each)
//!        │               progress ─▶ on_progress      Ok(asset) ─▶ on_finished
//!        │                                            Err(e)    ─▶ on_failed
//!        │             next_wakeup ─▶ a timer that pumps again
//!        ▼
//!  poll_event ─▶ the delegates on the event's route (did_begin, did_pause, did_write_data,
//!                did_fail, did_finish): see below
//! ```
//!
//! One manager for every context of the origin (the pages, the service worker), as Apple's app
//! and extension share one:
//!
//! ```text
//!  decision (schedule, pause, a transfer's result...) in any context
//!    └─ Web Lock `background-assets/state/<database>` (exclusive)
//!         reload the stored state if its revision token changed (another context saved)
//!         count the page delegates (navigator.locks.query) ─▶ core.set_page_delegates
//!         apply, poll_start, save { revision, state } + the token
//!    └─ BroadcastChannel `background-assets/<database>`: { kind: "changed" }
//!  every context, on "changed": reload, then reconcile its transfers with the state:
//!    not downloading any more ─▶ pause (still scheduled) / cancel (ended) the local transfer
//!    downloading, run by nobody here ─▶ claim: wait for its owner lock (held by whoever runs
//!    it, released by the browser when that context dies) and continue from the checkpoint
//! ```
//!
//! Events are routed as Apple routes them: while at least one page has a delegate (each such
//! page holds the shared Web Lock [`page_delegate_lock_name`]), every page with a delegate gets
//! them (this one directly, the others over the channel); otherwise the service worker's
//! delegate does (directly in the worker; from a page over the channel and by `postMessage` to
//! the worker, whose entry hands it to [`DownloadManager::deliver_remote`]). Two contexts never
//! write one asset: a transfer holds its download's Web Lock and writes fenced by its epoch.
//!
//! An authentication challenge (`401`/`403`/`407`) asks the delegate of the context running the
//! transfer ([`DownloadManagerDelegate::authentication_challenge`]): the headers it answers with
//! are added to the download's own request headers and the transfer continues from its
//! checkpoint; no answer (or no delegate) fails the download with
//! [`Error::AuthenticationRequired`].
//!
//! # Example
//! ```no_run
//! # async fn demo() -> Result<(), background_assets::core::error::Error> {
//! use background_assets::core::download::{DownloadRequest, Identifier, Priority, UrlDownload};
//! use background_assets::web::manager::DownloadManager;
//!
//! let manager = DownloadManager::shared();
//! let request = DownloadRequest::get("https://cdn.example/level-2.bin")?;
//! let download =
//!     UrlDownload::new(Identifier::new("level-2")?, request, false, None, Priority::DEFAULT, 0)?;
//! manager.schedule(download).await?;
//! for info in manager.fetch_current_downloads().await? {
//!     let _ = (info.identifier, info.state);
//! }
//! # Ok(()) }
//! ```

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::rc::Rc;

use futures::channel::oneshot;
use futures::future::{abortable, AbortHandle, FutureExt, LocalBoxFuture, Shared};
use gloo_timers::callback::Timeout;
use serde::{Deserialize, Serialize};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};

use crate::core::declaration::{parse_declaration, Declaration};
use crate::core::download::{DownloadState, Identifier, UrlDownload};
use crate::core::error::Error;
use crate::core::manager::{
    Caller, DownloadInfo, Foreground, Manager as CoreManager, ManagerEvent, Route, RoutedEvent,
    StoredParts,
};
use crate::core::queue::QueueLimits;
use crate::core::transfer::{Progress, TransferConfig, TransferSpec};
use crate::core::vec_map::VecMap;
use crate::core::Millis;
use crate::web::background_fetch::{
    self, BackgroundFetchSupport, BrowserFetch, BrowserFetchResult,
};
use crate::web::container::{Container, StoredAsset};
use crate::web::js;
use crate::web::locks::{acquire, query, LockGuard, LockOptions};
use crate::web::transfer::{
    lock_name, prefetch, run, LockPolicy, Prefetch, RunOptions, TransferControl,
    DEFAULT_READ_BUFFER,
};

type Result<T> = std::result::Result<T, Error>;

#[wasm_bindgen::prelude::wasm_bindgen]
extern "C" {
    /// `performance.now()` (pages and workers alike).
    #[wasm_bindgen(js_namespace = performance, js_name = now)]
    fn performance_now() -> f64;
}

/// What this global's decisions and transfer starts cost since its manager opened
/// ([`DownloadManager::decision_stats`]): how many batches (one state-lock hold and one save
/// each) held how many decisions, and where the time under and around the state lock went.
/// Times are `performance.now()` milliseconds, summed.
///
/// # Example
/// ```no_run
/// # async fn demo(m: background_assets::web::manager::DownloadManager) -> Result<(), background_assets::core::error::Error> {
/// let stats = m.decision_stats().await?;
/// if stats.batches > 0 {
///     let per_batch = stats.decisions as f64 / stats.batches as f64;
///     let _ = (per_batch, stats.lock_held_ms / stats.batches as f64);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DecisionStats {
    /// Batches that held the state lock.
    pub batches: u64,
    /// Decisions applied in them.
    pub decisions: u64,
    /// Waiting for the state lock.
    pub lock_wait_ms: f64,
    /// Holding it for the batches (each batch's time under it; the lock kept between two
    /// batches of this global's is counted once per batch).
    pub lock_held_ms: f64,
    /// Under it: reading the stored revision (and reloading) with the page-delegate count.
    pub read_ms: f64,
    /// Under it: applying the decisions and working out the changed parts (this thread's
    /// computing, with no wait).
    pub compute_ms: f64,
    /// Under it: saving the changed parts (until the commit).
    pub save_ms: f64,
    /// Of `batches`: those that kept the state lock from the batch before (no lock request,
    /// no read of the stored state).
    pub kept_batches: u64,
    /// Transfers started by this global's claims.
    pub starts: u64,
    /// From a download's claim to its transfer's start (its owner lock, the state read, the
    /// browser-fetch look-up), summed over the starts.
    pub start_ms: f64,
    /// Of `start_ms`: waiting for the owner locks.
    pub claim_lock_ms: f64,
    /// Of `start_ms`: after the owner lock, reading the stored revision (not after this
    /// global's own decision when the lock was free) together with the browser-fetch look-up.
    pub claim_read_ms: f64,
    /// Of `start_ms`: from there to the transfer started (or handed to the browser fetch).
    pub claim_spawn_ms: f64,
    /// From a transfer's end to its result stored (the decision's wait, lock and save).
    pub report_ms: f64,
    /// Small files requested before their start, as a transfer before them had received every
    /// byte ([`transfer::prefetch`](crate::web::transfer::prefetch)).
    pub prefetches: u64,
    /// Of `prefetches`: those a run of their download was given (the rest were dropped).
    pub prefetches_taken: u64,
}

/// The Web Lock held while [`DownloadManager::with_exclusive_control`] runs its closure.
///
/// # Example
/// ```
/// assert_eq!(background_assets::web::manager::EXCLUSIVE_LOCK, "background-assets/manager");
/// ```
pub const EXCLUSIVE_LOCK: &str = "background-assets/manager";

/// The `meta` key the manager's state is stored under in the container database: a head record
/// `{ revision, parts: true }` (`revision` is the token also stored under
/// [`STATE_REVISION_KEY`]); each part of the state (see
/// [`CoreManager::changed_parts`](crate::core::manager::Manager::changed_parts)) is a JSON text
/// under `manager/<part>`, so a decision writes only the parts it changed. Databases written
/// before hold `{ revision, state }` with the whole state's JSON; they are read as they are and
/// rewritten by parts on the next decision. Read it with [`stored_state`].
///
/// # Example
/// ```no_run
/// # async fn demo(c: background_assets::web::container::Container) {
/// use background_assets::web::js;
/// use background_assets::web::manager::STATE_KEY;
/// let stored = c.get_meta(STATE_KEY).await.unwrap();
/// let revision = stored.and_then(|v| js::get(&v, "revision").as_string());
/// # let _ = revision; }
/// ```
pub const STATE_KEY: &str = "manager";

/// The `meta` key of the stored state's revision token (a small record each context reads
/// before a decision: the whole state is read again only when it changed).
///
/// # Example
/// ```
/// assert_eq!(background_assets::web::manager::STATE_REVISION_KEY, "manager-revision");
/// ```
pub const STATE_REVISION_KEY: &str = "manager-revision";

/// The `meta` key of one part of the stored state (`manager/<part>`, see
/// [`CoreManager::changed_parts`]).
fn part_key(part: &str) -> String {
    format!("{STATE_KEY}/{part}")
}

/// The manager state stored in `container` — its revision, the core manager and what is stored
/// of it part by part — or `None` if nothing is stored. Reads the current storage (a head
/// record under [`STATE_KEY`] and one record per part) and the older one (the whole state's
/// JSON under [`STATE_KEY`]: its parts are then all written by the next save).
async fn read_stored(
    container: &Container,
) -> Result<Option<(Option<String>, CoreManager, StoredParts)>> {
    let prefix = part_key("");
    let (value, pairs) = container.read_meta_with_prefix(STATE_KEY, &prefix).await?;
    let bad = |e: String| Error::Storage {
        message: format!("stored manager state in `{}`: {e}", container.name()),
    };
    let Some(value) = value else {
        return Ok(None);
    };
    let whole = |revision: Option<String>, json: String| {
        let core = serde_json::from_str::<CoreManager>(&json).map_err(|e| bad(e.to_string()))?;
        Ok(Some((revision, core, StoredParts::default())))
    };
    // Written before revisions existed: the state's JSON alone.
    if let Some(json) = value.as_string() {
        return whole(None, json);
    }
    let revision = js::get(&value, "revision").as_string();
    // Written before the state was stored by parts: `{ revision, state: <JSON> }`.
    if let Some(json) = js::get(&value, "state").as_string() {
        return whole(revision, json);
    }
    let parts = pairs
        .into_iter()
        .map(|(key, text)| {
            let text = text
                .as_string()
                .ok_or_else(|| bad(format!("`{key}` is not text")))?;
            Ok((key[prefix.len()..].to_string(), text))
        })
        .collect::<Result<Vec<_>>>()?;
    let (core, stored) = CoreManager::from_parts(parts).map_err(|e| bad(e.to_string()))?;
    Ok(Some((revision, core, stored)))
}

/// The core manager's state stored in `container` (as the contexts' managers left it), or
/// `None`: what a context reads without opening a manager (the worker's `fetch` step looks up
/// pack files with it, offline).
///
/// # Example
/// ```no_run
/// # async fn demo(c: &background_assets::web::container::Container) -> Result<(), background_assets::core::error::Error> {
/// if let Some(core) = background_assets::web::manager::stored_state(c).await? {
///     let _ = core.file_for_path("levels/1.bin");
/// }
/// # Ok(()) }
/// ```
pub async fn stored_state(container: &Container) -> Result<Option<CoreManager>> {
    Ok(read_stored(container).await?.map(|(_, core, _)| core))
}

fn now() -> Millis {
    js_sys::Date::now().max(0.0) as Millis
}

/// `Caller::Page` in a page, `Caller::Extension { event: None }` in a service worker.
///
/// # Example
/// ```no_run
/// use background_assets::core::manager::Caller;
/// let caller = background_assets::web::manager::detect_caller();
/// assert!(matches!(caller, Caller::Page | Caller::Extension { .. }));
/// ```
pub fn detect_caller() -> Caller {
    if js_sys::global()
        .dyn_ref::<web_sys::ServiceWorkerGlobalScope>()
        .is_some()
    {
        Caller::Extension { event: None }
    } else {
        Caller::Page
    }
}

fn decode_sha256(hex: &str) -> Result<[u8; 32]> {
    let bad = || Error::Storage {
        message: format!("stored SHA-256 `{hex}` is not 64 hex digits"),
    };
    crate::core::integrity::parse_sha256(hex).ok_or_else(bad)
}

#[wasm_bindgen::prelude::wasm_bindgen]
extern "C" {
    /// `console.warn`, bound directly (works in pages and workers).
    #[wasm_bindgen(js_namespace = console, js_name = warn)]
    fn console_warn(message: &str);
}

fn warn(what: &str, error: &Error) {
    console_warn(&format!("background-assets manager: {what}: {error}"));
}

/// How a [`DownloadManager`] is opened.
///
/// # Example
/// ```no_run
/// use background_assets::core::declaration::parse_declaration;
/// use background_assets::web::manager::ManagerConfig;
/// let page = url::Url::parse("https://app.example/").unwrap();
/// let declaration = parse_declaration(r#"{ "initialDownloadRestrictions":
///     { "domainAllowList": ["cdn.example"] } }"#, &page).unwrap();
/// let mut config = ManagerConfig::new(declaration, page);
/// config.database = "my-app-assets".into();
/// ```
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    /// The container database (default [`Container::DEFAULT_NAME`]).
    pub database: String,
    /// The app's declaration (`pkg.json`), used when the database holds no manager state yet;
    /// a stored state keeps its own declaration.
    pub declaration: Declaration,
    /// The app's URL: its origin is always allowed and is the policy's page origin.
    pub page_url: url::Url,
    /// Concurrency and bandwidth limits of a new state (a stored state, shared by every
    /// context, keeps its own: change them with [`DownloadManager::set_limits`]).
    pub limits: QueueLimits,
    /// How each transfer runs (chunk size, retries, stall detection).
    pub transfer: TransferConfig,
    /// Who calls; `None` detects it ([`detect_caller`]).
    pub caller: Option<Caller>,
    /// Where the declaration was loaded from (`pkg.json`), if it was: re-read by
    /// `check_for_updates` when the declaration names no manifest URL.
    pub declaration_url: Option<url::Url>,
}

impl ManagerConfig {
    /// The default database, limits and transfer tuning, and a detected caller.
    ///
    /// # Example
    /// ```no_run
    /// use background_assets::core::declaration::parse_declaration;
    /// use background_assets::web::manager::ManagerConfig;
    /// let page = url::Url::parse("https://app.example/").unwrap();
    /// let config = ManagerConfig::new(parse_declaration("{}", &page).unwrap(), page);
    /// assert_eq!(config.database, "background-assets");
    /// ```
    pub fn new(declaration: Declaration, page_url: url::Url) -> ManagerConfig {
        ManagerConfig {
            database: Container::DEFAULT_NAME.to_string(),
            declaration,
            page_url,
            limits: QueueLimits::default(),
            transfer: TransferConfig::default(),
            caller: None,
            declaration_url: None,
        }
    }

    /// The configuration of [`DownloadManager::shared`]: the running global's origin and the
    /// declaration at `{origin}/pkg.json` (an empty declaration, same origin only, when the
    /// origin serves none: `404`). A stored state keeps its own declaration.
    ///
    /// Errors: [`Error::InvalidDeclaration`] (the JSON path of what is wrong),
    /// [`Error::Network`] when `pkg.json` cannot be fetched, [`Error::HttpStatus`] for an answer
    /// other than 2xx or 404.
    ///
    /// # Example
    /// ```no_run
    /// # async fn demo() {
    /// let config = background_assets::web::manager::ManagerConfig::for_global().await.unwrap();
    /// assert_eq!(config.page_url.path(), "/");
    /// # }
    /// ```
    pub async fn for_global() -> Result<ManagerConfig> {
        let origin = js::origin();
        let page_url = url::Url::parse(&origin)
            .and_then(|u| u.join("/"))
            .map_err(|e| Error::Unsupported {
                what: format!("a global whose origin `{origin}` is not a URL: {e}"),
            })?;
        let declaration_url = page_url.join("pkg.json").map_err(|e| Error::Unsupported {
            what: format!("`pkg.json` on `{page_url}`: {e}"),
        })?;
        let text = fetch_text(&declaration_url).await?;
        let declaration = parse_declaration(text.as_deref().unwrap_or("{}"), &page_url)?;
        let mut config = ManagerConfig::new(declaration, page_url);
        if text.is_some() {
            config.declaration_url = Some(declaration_url);
        }
        Ok(config)
    }
}

/// GETs `url` as text: `None` on `404`.
pub(crate) async fn fetch_text(url: &url::Url) -> Result<Option<String>> {
    use wasm_bindgen_futures::JsFuture;
    let network = |e: JsValue| Error::Network {
        message: format!("GET {url}: {}", js::describe(&e)),
    };
    let fetch = js::get(&js_sys::global(), "fetch")
        .dyn_into::<js_sys::Function>()
        .map_err(|_| Error::Unsupported {
            what: "a global without fetch".into(),
        })?;
    let promise = fetch
        .call1(&js_sys::global(), &JsValue::from_str(url.as_str()))
        .map_err(network)?;
    let response: web_sys::Response = JsFuture::from(js_sys::Promise::from(promise))
        .await
        .map_err(network)?
        .unchecked_into();
    if response.status() == 404 {
        return Ok(None);
    }
    if !response.ok() {
        return Err(Error::HttpStatus {
            identifier: url.to_string(),
            status: response.status(),
        });
    }
    let text = JsFuture::from(response.text().map_err(network)?)
        .await
        .map_err(network)?;
    Ok(Some(text.as_string().unwrap_or_default()))
}

/// A finished download: what [`DownloadManagerDelegate::did_finish`] receives, with a handle to
/// the stored asset.
///
/// # Example
/// ```no_run
/// use background_assets::core::download::Identifier;
/// use background_assets::web::manager::{DownloadManagerDelegate, FinishedDownload};
///
/// struct Player;
/// impl DownloadManagerDelegate for Player {
///     fn did_finish(&self, id: &Identifier, finished: FinishedDownload) {
///         // The worker serves it at this URL (with Range), offline too.
///         let _ = (id, finished.size, &finished.sha256, finished.url());
///         wasm_bindgen_futures::spawn_local(async move {
///             let blob = finished.blob().await.expect("stored");
///             let _ = blob.size();
///         });
///     }
/// }
/// ```
#[derive(Clone)]
pub struct FinishedDownload {
    /// The download.
    pub identifier: Identifier,
    /// Its size in bytes.
    pub size: u64,
    /// Its SHA-256, lowercase hex.
    pub sha256: String,
    container: Rc<Container>,
}

impl std::fmt::Debug for FinishedDownload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FinishedDownload")
            .field("identifier", &self.identifier)
            .field("size", &self.size)
            .field("sha256", &self.sha256)
            .finish()
    }
}

impl FinishedDownload {
    #[allow(dead_code)] // the asset-pack API (packs.rs) is its user
    pub(crate) fn new(
        identifier: Identifier,
        size: u64,
        sha256: String,
        container: Rc<Container>,
    ) -> FinishedDownload {
        FinishedDownload {
            identifier,
            size,
            sha256,
            container,
        }
    }

    /// The URL the service worker serves the asset at (with `Range`), for `<video src>`,
    /// `fetch` or an `<img>`: see [`served_url`](crate::web::serve::served_url).
    ///
    /// # Example
    /// ```no_run
    /// # fn demo(finished: background_assets::web::manager::FinishedDownload) {
    /// assert!(finished.url().contains("/background-assets/id/"));
    /// # }
    /// ```
    pub fn url(&self) -> String {
        crate::web::serve::served_url(self.identifier.as_str())
    }

    /// The stored asset's record (content type, chunk count...), if it is still stored.
    ///
    /// # Example
    /// ```no_run
    /// # async fn demo(finished: background_assets::web::manager::FinishedDownload) {
    /// let content_type = finished.asset().await.unwrap().and_then(|a| a.content_type);
    /// # let _ = content_type; }
    /// ```
    pub async fn asset(&self) -> Result<Option<StoredAsset>> {
        self.container.asset(self.identifier.as_str()).await
    }

    /// The asset as a `Blob` built from the stored chunks.
    ///
    /// # Example
    /// ```no_run
    /// # async fn demo(finished: background_assets::web::manager::FinishedDownload) {
    /// let blob = finished.blob().await.unwrap();
    /// assert_eq!(blob.size() as u64, finished.size);
    /// # }
    /// ```
    pub async fn blob(&self) -> Result<web_sys::Blob> {
        self.container.as_blob(self.identifier.as_str()).await
    }

    /// The asset as a `200` `Response`.
    ///
    /// # Example
    /// ```no_run
    /// # async fn demo(finished: background_assets::web::manager::FinishedDownload) {
    /// let response = finished.response().await.unwrap();
    /// assert_eq!(response.status(), 200);
    /// # }
    /// ```
    pub async fn response(&self) -> Result<web_sys::Response> {
        self.container.as_response(self.identifier.as_str()).await
    }
}

/// Apple's `BADownloadManagerDelegate`: every method has a no-op default.
///
/// # Example
/// ```no_run
/// use std::rc::Rc;
/// use background_assets::core::download::Identifier;
/// use background_assets::web::manager::{DownloadManager, DownloadManagerDelegate, FinishedDownload};
///
/// struct Log;
/// impl DownloadManagerDelegate for Log {
///     fn did_finish(&self, id: &Identifier, finished: FinishedDownload) {
///         let _ = (id, finished.size);
///     }
/// }
/// DownloadManager::shared().set_delegate(Some(Rc::new(Log)));
/// ```
pub trait DownloadManagerDelegate {
    /// The download started (or continued after a pause or pre-emption).
    fn did_begin(&self, _id: &Identifier) {}
    /// The download stopped without ending (paused, or pre-empted by a foreground download).
    fn did_pause(&self, _id: &Identifier) {}
    /// Bytes were written: `bytes_written` since the last call, `total_written` in all.
    fn did_write_data(
        &self,
        _id: &Identifier,
        _bytes_written: u64,
        _total_written: u64,
        _total_expected: Option<u64>,
    ) {
    }
    /// The download failed ([`Error::Cancelled`] after [`DownloadManager::cancel`]).
    fn did_fail(&self, _id: &Identifier, _error: &Error) {}
    /// The download is stored and verified.
    fn did_finish(&self, _id: &Identifier, _finished: FinishedDownload) {}
    /// A failed essential download was scheduled again as a non-essential one.
    fn did_requeue_as_non_essential(&self, _id: &Identifier) {}
    /// The server answered 401, 403 or 407: return the request headers to retry with (for
    /// example `Authorization`), or `None` to let the download fail with
    /// [`Error::AuthenticationRequired`]. Asked of the delegate of the global running the
    /// transfer.
    fn authentication_challenge(
        &self,
        _id: &Identifier,
        _challenge: &AuthChallenge,
    ) -> LocalBoxFuture<'static, Option<Credentials>> {
        async { None }.boxed_local()
    }
}

/// What [`DownloadManagerDelegate::authentication_challenge`] is asked about.
///
/// # Example
/// ```
/// use background_assets::web::manager::AuthChallenge;
/// let challenge = AuthChallenge {
///     url: "https://cdn.example/a".into(),
///     status: 401,
///     www_authenticate: Some("Bearer".into()),
/// };
/// assert_eq!(challenge.status, 401);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthChallenge {
    /// The request URL.
    pub url: String,
    /// 401, 403 or 407.
    pub status: u16,
    /// The `WWW-Authenticate` (or `Proxy-Authenticate`) header, if the response exposed it.
    pub www_authenticate: Option<String>,
}

/// Request headers a delegate answers an [`AuthChallenge`] with (name, value).
///
/// # Example
/// ```
/// let answer: background_assets::web::manager::Credentials =
///     vec![("Authorization".into(), "Bearer s3cret".into())];
/// assert_eq!(answer[0].0, "Authorization");
/// ```
pub type Credentials = Vec<(String, String)>;

/// What a page's or the worker's delegate slot holds: the delegate, and in a page the shared
/// page-delegate Web Lock held while one is set.
#[derive(Default)]
struct DelegateState {
    delegate: RefCell<Option<Rc<dyn DownloadManagerDelegate>>>,
    page_lock: RefCell<Option<LockGuard>>,
    /// The latest lock update (taking or releasing the page-delegate lock): decisions wait for
    /// it, so a delegate set just before a call already counts for that call's events.
    syncing: RefCell<Option<Shared<LocalBoxFuture<'static, ()>>>>,
}

type DelegateSlot = Rc<DelegateState>;

/// The channel's `onmessage` handler.
type MessageHandler = Closure<dyn FnMut(JsValue)>;

/// One transfer this global runs.
struct Running {
    run: u64,
    control: TransferControl,
    abort: AbortHandle,
    /// Whether this global told the transfer to pause (the stored state says it should not run).
    paused: Cell<bool>,
}

/// How many times one run asks the delegate for credentials before the download fails.
const MAX_CHALLENGES: u32 = 3;

/// How often a global reads the progress of a browser fetch it watches.
const BROWSER_FETCH_POLL_MS: u32 = 500;

/// The `meta` key marking the browser fetch `fetch_id` as aborted by the library (after a
/// pause or cancel), not by the user.
fn aborted_marker(fetch_id: &str) -> String {
    format!("background-fetch-aborted/{fetch_id}")
}

/// How long the worker waits before claiming a download a page may hand to Background Fetch.
const HAND_OFF_GRACE_MS: u32 = 2_000;

/// A batch's end: how to settle each decision and what started (each with its owner lock if it
/// was free while the save committed), or how to settle them after the save failed.
type BatchOutcome = std::result::Result<(Vec<Settle>, Started), (Vec<Settle>, Error)>;

/// The downloads a batch started, each with its owner lock if this global got it at once.
type Started = Vec<(Identifier, Option<LockGuard>)>;

/// How old the page-delegate count may get before progress reports and batches that kept the
/// state lock count again (a page that sets or drops its delegate also says so at once).
const PAGE_COUNT_MAX_AGE_MS: Millis = 1000;

/// How long a global keeps the state lock for batch after batch of its own decisions (while
/// more are waiting) before it lets other contexts have it.
const KEEP_STATE_LOCK_MS: f64 = 100.0;

/// How long a batch made only of transfer results waits for more, while other transfers of this
/// global run and may end meanwhile: each batch is a save (an IndexedDB transaction and a message
/// to the other contexts), and with many small files those saves compete with the transfers for
/// the CPU. A batch that holds a call from the app does not start this wait.
const RESULTS_GATHER_MS: u32 = 2;

/// Whether [`Engine::prefetch_next`] sends small files' requests ahead: not in Firefox. In one
/// bench session, alternately (`BA_BENCH_ONLY=small cargo xtask bench --runs 1`, 1,000 × 64 KiB
/// through the manager, 6 at a time, three runs each way), Chromium took 4.01–4.31 s with them
/// and 4.32–4.57 s without; Firefox 6.84–7.89 s with them and 5.50–7.25 s without (each run with
/// them slower than the one after it without). There the store, not the network, sets the pace,
/// and more bodies arriving at once only add to its work.
fn prefetch_pays() -> bool {
    !js::is_firefox()
}

/// How long a small file's request sent ahead of its start ([`Engine::prefetch_next`]) is kept
/// for its run; after that it is dropped (aborted, or its bytes freed).
const PREFETCH_KEEP_MS: f64 = 10_000.0;

/// The Web Lock every decision on the shared state of `database` holds: it reloads the stored
/// state if another context changed it, applies the decision, saves.
///
/// # Example
/// ```
/// use background_assets::web::manager::state_lock_name;
/// assert_eq!(state_lock_name("background-assets"), "background-assets/state/background-assets");
/// ```
pub fn state_lock_name(database: &str) -> String {
    format!("background-assets/state/{database}")
}

/// The shared Web Lock each page holds while it has a delegate set (Apple's routing: events go
/// to the pages while at least one holds it, else to the extension).
///
/// # Example
/// ```
/// use background_assets::web::manager::PAGE_DELEGATE_LOCK;
/// assert_eq!(PAGE_DELEGATE_LOCK, "background-assets/page-delegate");
/// ```
pub const PAGE_DELEGATE_LOCK: &str = "background-assets/page-delegate";

/// The page-delegate lock of `database`: [`PAGE_DELEGATE_LOCK`] for the default database,
/// `PAGE_DELEGATE_LOCK/<database>` for any other (so separate containers route separately).
///
/// # Example
/// ```
/// use background_assets::web::manager::{page_delegate_lock_name, PAGE_DELEGATE_LOCK};
/// assert_eq!(page_delegate_lock_name("background-assets"), PAGE_DELEGATE_LOCK);
/// assert_eq!(page_delegate_lock_name("t"), "background-assets/page-delegate/t");
/// ```
pub fn page_delegate_lock_name(database: &str) -> String {
    if database == Container::DEFAULT_NAME {
        PAGE_DELEGATE_LOCK.to_string()
    } else {
        format!("{PAGE_DELEGATE_LOCK}/{database}")
    }
}

/// The `BroadcastChannel` the contexts sharing `database` talk over.
///
/// # Example
/// ```
/// use background_assets::web::manager::channel_name;
/// assert_eq!(channel_name("db"), "background-assets/db");
/// ```
pub fn channel_name(database: &str) -> String {
    format!("background-assets/{database}")
}

/// The Web Lock held by the context that runs (or is about to report) download `id`: a context
/// waits for it before continuing a download whose runner went away. It is the download's own
/// lock ([`lock_name`]), which the run then takes as held ([`RunOptions::held`]): one lock per
/// download, not a second one for the run. In one bench session, alternately (the manager row,
/// 1,000 × 64 KiB, `BA_BENCH_ONLY=small cargo xtask bench --runs 1`, a temporary switch), Chromium
/// took 3.54–3.77 s without the second lock against 3.98–4.13 s with it.
fn owner_lock_name(id: &Identifier) -> String {
    lock_name(id.as_str())
}

/// The `type` of every message the manager sends to other contexts: a service worker's
/// `message` handler passes the ones of this type to [`DownloadManager::deliver_remote`].
///
/// # Example
/// ```no_run
/// # async fn on_message(data: wasm_bindgen::JsValue) {
/// use background_assets::web::{js, manager::{DownloadManager, MESSAGE_TYPE}};
/// if js::get(&data, "type").as_string().as_deref() == Some(MESSAGE_TYPE) {
///     DownloadManager::shared().deliver_remote(data).await.ok();
/// }
/// # }
/// ```
pub const MESSAGE_TYPE: &str = "background-assets";

/// A message between contexts (see [`DownloadManager::deliver_remote`]).
#[derive(Debug, Clone)]
struct Envelope {
    message_type: String,
    database: String,
    from: String,
    body: Body,
}

#[derive(Debug, Clone)]
enum Body {
    /// An event for the pages with a delegate, or for the extension.
    Event {
        route: Route,
        eid: String,
        event: ManagerEvent,
    },
    /// The stored state changed: reload it and reconcile the local transfers.
    Changed,
    /// A page set or removed its delegate: count the page delegates again.
    Delegates,
    /// A context closed its manager (its transfers stopped).
    Closed,
}

/// [`Body`]'s `kind` on the wire.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
enum Kind {
    Event,
    Changed,
    Delegates,
    Closed,
}

/// An [`Envelope`] as sent: one flat object, `{type, database, from, kind}` and, for an event,
/// `route`, `eid` and `event`. Flat fields rather than serde's `flatten` and internally tagged
/// enum: those buffer the message and deserialize every nested type a second time through serde's
/// buffered form, about 100 KB of the wasm (see BENCHMARKS.md's size notes).
#[derive(Serialize, Deserialize)]
struct Wire {
    #[serde(rename = "type")]
    message_type: String,
    database: String,
    from: String,
    kind: Kind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    route: Option<Route>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    eid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    event: Option<ManagerEvent>,
}

impl Envelope {
    fn to_wire(&self) -> Wire {
        let (kind, route, eid, event) = match &self.body {
            Body::Event { route, eid, event } => (
                Kind::Event,
                Some(*route),
                Some(eid.clone()),
                Some(event.clone()),
            ),
            Body::Changed => (Kind::Changed, None, None, None),
            Body::Delegates => (Kind::Delegates, None, None, None),
            Body::Closed => (Kind::Closed, None, None, None),
        };
        Wire {
            message_type: self.message_type.clone(),
            database: self.database.clone(),
            from: self.from.clone(),
            kind,
            route,
            eid,
            event,
        }
    }

    fn from_wire(wire: Wire) -> std::result::Result<Self, String> {
        let body = match wire.kind {
            Kind::Event => {
                let missing = |field: &str| format!("missing field `{field}` of an event");
                Body::Event {
                    route: wire.route.ok_or_else(|| missing("route"))?,
                    eid: wire.eid.ok_or_else(|| missing("eid"))?,
                    event: wire.event.ok_or_else(|| missing("event"))?,
                }
            }
            Kind::Changed => Body::Changed,
            Kind::Delegates => Body::Delegates,
            Kind::Closed => Body::Closed,
        };
        Ok(Envelope {
            message_type: wire.message_type,
            database: wire.database,
            from: wire.from,
            body,
        })
    }
}

fn to_js(envelope: &Envelope) -> Option<JsValue> {
    js::to_plain(&envelope.to_wire()).ok()
}

fn from_js(message: &JsValue) -> Result<Envelope> {
    let bad = |why: String| Error::Unsupported {
        what: format!("a message that is not a background-assets message: {why}"),
    };
    let text = js::json_text(message).map_err(bad)?;
    let wire: Wire = serde_json::from_str(&text).map_err(|e| bad(format!("{e}: {text}")))?;
    let envelope = Envelope::from_wire(wire).map_err(|why| bad(format!("{why}: {text}")))?;
    if envelope.message_type != MESSAGE_TYPE {
        return Err(bad(format!("type `{}`", envelope.message_type)));
    }
    Ok(envelope)
}

#[wasm_bindgen::prelude::wasm_bindgen]
extern "C" {
    /// `BroadcastChannel`, bound directly (pages and workers).
    #[wasm_bindgen(js_name = BroadcastChannel)]
    type BroadcastChannelJs;
    #[wasm_bindgen(constructor, catch, js_class = "BroadcastChannel")]
    fn new(name: &str) -> std::result::Result<BroadcastChannelJs, JsValue>;
    #[wasm_bindgen(method, catch, js_class = "BroadcastChannel", js_name = postMessage)]
    fn post_message(
        this: &BroadcastChannelJs,
        message: &JsValue,
    ) -> std::result::Result<(), JsValue>;
    #[wasm_bindgen(method, setter = onmessage, js_class = "BroadcastChannel")]
    fn set_onmessage(this: &BroadcastChannelJs, handler: Option<&js_sys::Function>);
    #[wasm_bindgen(method, js_class = "BroadcastChannel")]
    fn close(this: &BroadcastChannelJs);
}

/// Posts `message` to the service worker of a page (the controller, else the registration's
/// active worker): a worker that was stopped is started to receive it.
fn post_to_worker(message: &JsValue) {
    if js::in_worker() {
        return;
    }
    let container = js::get(&js::navigator(), "serviceWorker");
    if !container.is_object() {
        return;
    }
    let post = |worker: &JsValue| {
        if !worker.is_object() {
            return;
        }
        if let Ok(post) = js::get(worker, "postMessage").dyn_into::<js_sys::Function>() {
            if let Err(error) = post.call1(worker, message) {
                console_warn(&format!(
                    "background-assets manager: posting to the service worker: {}",
                    js::describe(&error)
                ));
            }
        }
    };
    let controller = js::get(&container, "controller");
    if controller.is_object() {
        post(&controller);
        return;
    }
    let Ok(get_registration) =
        js::get(&container, "getRegistration").dyn_into::<js_sys::Function>()
    else {
        return;
    };
    let Ok(promise) = get_registration.call0(&container) else {
        return;
    };
    let message = message.clone();
    js::spawn(async move {
        if let Ok(registration) =
            wasm_bindgen_futures::JsFuture::from(js_sys::Promise::from(promise)).await
        {
            if registration.is_object() {
                let active = js::get(&registration, "active");
                if active.is_object() {
                    if let Ok(post) = js::get(&active, "postMessage").dyn_into::<js_sys::Function>()
                    {
                        let _ = post.call1(&active, &message);
                    }
                }
            }
        }
    });
}

/// Settles one decision of a batch once its save is known (`Some`: the save failed).
type Settle = Box<dyn FnOnce(Option<&Error>)>;

/// One queued decision: applied to the core under the state lock (or given the error that kept
/// the batch from running); says whether it succeeded and how to settle it.
type Decision = Box<dyn FnOnce(std::result::Result<&mut CoreManager, &Error>) -> (bool, Settle)>;

/// Refuses every decision of `batch` with `error` (none of them runs); gives back how to settle
/// each.
fn refuse(batch: Vec<Decision>, error: &Error) -> Vec<Settle> {
    batch
        .into_iter()
        .map(|decision| decision(Err(error)).1)
        .collect()
}

/// The opened manager: the core, the container and the running transfers.
struct Engine {
    container: Rc<Container>,
    database: String,
    caller: Caller,
    page_origin: url::Origin,
    transfer: TransferConfig,
    /// The limits a new state starts with.
    initial_limits: QueueLimits,
    core: RefCell<CoreManager>,
    /// The revision token of the stored state `core` matches (`None`: nothing stored yet).
    revision: RefCell<Option<String>>,
    /// Whether the stored state was read at least once.
    loaded: Cell<bool>,
    /// Whether the database held no state when it was first read.
    fresh: Cell<bool>,
    /// Bumped on every reload and save: an unlocked reload that raced one of them is dropped.
    generation: Cell<u64>,
    /// Transactions of this global holding the state lock.
    transacting: Cell<u32>,
    /// What is stored of the state, part by part (as of the last save or reload): a save writes
    /// only the parts that differ.
    stored_parts: RefCell<StoredParts>,
    /// Decisions waiting for the next batch (group commit: every decision queued while a batch
    /// is under way is applied in the next one, under one lock and one save).
    decisions: RefCell<Vec<Decision>>,
    /// Whether the batch loop ([`Engine::decide_batches`]) is running.
    deciding: Cell<bool>,
    /// How many of the queued decisions are transfer results (see [`RESULTS_GATHER_MS`]).
    queued_results: Cell<usize>,
    /// This context's id in messages and revision tokens.
    context_id: String,
    sequence: Cell<u64>,
    running: RefCell<VecMap<Identifier, Running>>,
    /// Downloads this global waits to take over (their owner lock is requested).
    claims: RefCell<VecMap<Identifier, AbortHandle>>,
    /// Credentials the delegate answered authentication challenges with, per download.
    credentials: RefCell<VecMap<Identifier, Credentials>>,
    runs: Cell<u64>,
    delegate: DelegateSlot,
    wakeup: RefCell<Option<Timeout>>,
    pump_queued: Cell<bool>,
    /// A sweep of the browser fetches runs; `true` inside: the state changed since it began,
    /// so it sweeps again when done.
    sweeping: Cell<Option<bool>>,
    /// Whether a browser fetch of this database was seen (when opening, by a sweep, or handed
    /// off here). Only under a declaration that declares `backgroundFetch` does a page hand a
    /// download to the browser; while the state's declaration does not and none was seen, a
    /// claim does not look one up (a round trip to the browser per claim in Chromium).
    browser_fetch_seen: Cell<bool>,
    closed: Cell<bool>,
    /// Transfers that finished after the core had already paused or pre-empted them: reported
    /// when the core starts them again (nothing is fetched twice).
    unreported: RefCell<VecMap<Identifier, StoredAsset>>,
    /// Requests sent for small files the queue starts next, with when each was sent
    /// ([`Engine::prefetch_next`]); the run of each takes its own.
    prefetched: RefCell<VecMap<Identifier, (f64, Prefetch)>>,
    /// Who is told after every state change ([`DownloadManager::changes`]).
    watchers: RefCell<Vec<futures::channel::mpsc::UnboundedSender<()>>>,
    /// Events taken from the core (before a save) and not yet delivered.
    pending: RefCell<Vec<RoutedEvent>>,
    channel: RefCell<Option<BroadcastChannelJs>>,
    on_message: RefCell<Option<MessageHandler>>,
    /// Event ids already delivered from other contexts (one may arrive twice).
    seen: RefCell<VecDeque<String>>,
    /// When the page delegates were last counted, and how many there were.
    counted_at: Cell<Millis>,
    page_delegates: Cell<usize>,
    /// Where the declaration was loaded from ([`ManagerConfig::declaration_url`]).
    declaration_url: Option<url::Url>,
    /// Whether opening finished (a delegate set meanwhile waits for it to take its lock).
    opened: Cell<bool>,
    /// Downloads the browser runs (Background Fetch) that this global watches for progress.
    handed: RefCell<VecMap<Identifier, AbortHandle>>,
    /// What this global's decisions and starts cost ([`DownloadManager::decision_stats`]).
    stats: RefCell<DecisionStats>,
}

impl Engine {
    async fn open(config: ManagerConfig, delegate: DelegateSlot) -> Result<Rc<Engine>> {
        let caller = config.caller.unwrap_or_else(detect_caller);
        let container = Container::open(&config.database).await?;
        let core = CoreManager::new(config.declaration.clone(), &config.page_url);
        let engine = Rc::new(Engine {
            container: Rc::new(container),
            database: config.database.clone(),
            caller,
            page_origin: config.page_url.origin(),
            transfer: config.transfer,
            initial_limits: config.limits,
            core: RefCell::new(core),
            revision: RefCell::default(),
            loaded: Cell::new(false),
            fresh: Cell::new(false),
            generation: Cell::new(0),
            transacting: Cell::new(0),
            stored_parts: RefCell::default(),
            decisions: RefCell::default(),
            deciding: Cell::new(false),
            queued_results: Cell::new(0),
            context_id: format!("{:x}{:x}", now(), (js_sys::Math::random() * 1e15) as u64),
            sequence: Cell::new(0),
            running: RefCell::default(),
            claims: RefCell::default(),
            credentials: RefCell::default(),
            runs: Cell::new(0),
            delegate,
            wakeup: RefCell::default(),
            pump_queued: Cell::new(false),
            sweeping: Cell::new(None),
            browser_fetch_seen: Cell::new(false),
            closed: Cell::new(false),
            unreported: RefCell::default(),
            prefetched: RefCell::default(),
            watchers: RefCell::default(),
            pending: RefCell::default(),
            channel: RefCell::default(),
            on_message: RefCell::default(),
            seen: RefCell::default(),
            counted_at: Cell::new(0),
            page_delegates: Cell::new(0),
            declaration_url: config.declaration_url.clone(),
            opened: Cell::new(false),
            handed: RefCell::default(),
            stats: RefCell::default(),
        });
        engine.open_channel();
        // Before the first claim: a browser fetch handed off under an earlier declaration (one
        // that declared `backgroundFetch`, replaced by an update since) keeps claims looking up.
        let seen = background_fetch::ids()
            .await
            .iter()
            .any(|fetch_id| engine.is_ours(fetch_id));
        engine.browser_fetch_seen.set(seen);
        let opened = engine.clone();
        engine
            .transact(move |core| {
                if opened.fresh.get() {
                    core.set_limits(opened.initial_limits);
                }
                if caller == Caller::Page {
                    // A page of the app is open: the app has launched.
                    core.did_launch();
                }
                Ok(())
            })
            .await?;
        engine.opened.set(true);
        Ok(engine)
    }

    fn open_channel(self: &Rc<Self>) {
        let channel = match BroadcastChannelJs::new(&channel_name(&self.database)) {
            Ok(channel) => channel,
            Err(error) => {
                console_warn(&format!(
                    "background-assets manager: no BroadcastChannel, other contexts are not told: {}",
                    js::describe(&error)
                ));
                return;
            }
        };
        let engine = Rc::downgrade(self);
        let handler = Closure::<dyn FnMut(JsValue)>::new(move |event: JsValue| {
            if let Some(engine) = engine.upgrade() {
                let data = js::get(&event, "data");
                js::spawn(async move {
                    if let Err(error) = engine.receive(data).await {
                        warn("a message from another context", &error);
                    }
                });
            }
        });
        channel.set_onmessage(Some(handler.as_ref().unchecked_ref()));
        *self.channel.borrow_mut() = Some(channel);
        *self.on_message.borrow_mut() = Some(handler);
    }

    fn check_open(&self) -> Result<()> {
        if self.closed.get() {
            return Err(Error::Storage {
                message: format!("the download manager on `{}` was closed", self.database),
            });
        }
        Ok(())
    }

    fn envelope(&self, body: Body) -> Envelope {
        Envelope {
            message_type: MESSAGE_TYPE.to_string(),
            database: self.database.clone(),
            from: self.context_id.clone(),
            body,
        }
    }

    fn next_id(&self) -> String {
        let n = self.sequence.get() + 1;
        self.sequence.set(n);
        format!("{}/{n}", self.context_id)
    }

    /// Tells the other contexts on this database (BroadcastChannel).
    fn broadcast(&self, body: Body) -> Option<JsValue> {
        let message = to_js(&self.envelope(body))?;
        if let Some(channel) = self.channel.borrow().as_ref() {
            if let Err(error) = channel.post_message(&message) {
                console_warn(&format!(
                    "background-assets manager: broadcasting: {}",
                    js::describe(&error)
                ));
            }
        }
        Some(message)
    }

    /// Reads the stored state and, if another context saved a newer one, replaces the core with
    /// it (this global's latest transfer progress re-applied). Returns whether it reloaded.
    async fn refresh(self: &Rc<Self>) -> Result<bool> {
        let generation = self.generation.get();
        let locked = self.transacting.get() > 0;
        let stale = |engine: &Engine| {
            engine.generation.get() != generation || (!locked && engine.transacting.get() > 0)
        };
        let stored_revision = self
            .container
            .get_meta(STATE_REVISION_KEY)
            .await?
            .and_then(|v| v.as_string());
        if stale(self) {
            return Ok(false);
        }
        if self.loaded.get() && stored_revision == *self.revision.borrow() {
            return Ok(false);
        }
        let stored = read_stored(&self.container).await?;
        if stale(self) {
            return Ok(false);
        }
        let Some((revision, mut core, parts)) = stored else {
            if !self.loaded.get() {
                self.fresh.set(true);
            }
            self.loaded.set(true);
            *self.revision.borrow_mut() = None;
            *self.stored_parts.borrow_mut() = StoredParts::default();
            return Ok(false);
        };
        *self.stored_parts.borrow_mut() = parts;
        // Events are per-context deliveries: whatever a saved state still held was delivered
        // (or routed) by the context that made it.
        while core.poll_event().is_some() {}
        for (id, running) in self.running.borrow().iter() {
            if let Some(progress) = running.control.progress() {
                let _ = core.on_progress(id, &progress);
            }
        }
        while core.poll_event().is_some() {}
        core.set_page_delegates(self.page_delegates.get());
        // Deliver what the old state still had pending before it goes.
        self.take_events();
        *self.core.borrow_mut() = core;
        *self.revision.borrow_mut() = revision;
        self.loaded.set(true);
        self.generation.set(self.generation.get() + 1);
        Ok(true)
    }

    /// Whether the page delegates were last counted more than [`PAGE_COUNT_MAX_AGE_MS`] ago.
    fn page_count_is_old(&self) -> bool {
        now().saturating_sub(self.counted_at.get()) > PAGE_COUNT_MAX_AGE_MS
    }

    /// Counts the holders of the page-delegate lock (`navigator.locks.query()`) and tells the
    /// core, which routes the events that happen from now on.
    async fn count_page_delegates(&self) {
        let name = page_delegate_lock_name(&self.database);
        match query().await {
            Ok(snapshot) => {
                let count = snapshot.held.iter().filter(|e| e.name == name).count();
                self.page_delegates.set(count);
                self.core.borrow_mut().set_page_delegates(count);
                self.counted_at.set(now());
            }
            Err(error) => warn("counting the page delegates", &error),
        }
    }

    /// Saves the core's state: the writes are issued before this returns (so saves commit in
    /// the order of the decisions); the future waits for their commit. The core's pending
    /// events are taken out first (they are not part of the shared state).
    fn save(&self) -> impl Future<Output = Result<()>> + 'static {
        self.take_events();
        let revision = self.next_id();
        let changes = self
            .core
            .borrow_mut()
            .changed_parts(&mut self.stored_parts.borrow_mut());
        let issued = changes.map(|changes| {
            let head = js::object();
            js::set(&head, "revision", &JsValue::from_str(&revision));
            js::set(&head, "parts", &JsValue::TRUE);
            let mut puts: Vec<(String, JsValue)> = changes
                .put
                .into_iter()
                .map(|(key, json)| (part_key(&key), JsValue::from_str(&json)))
                .collect();
            puts.push((STATE_KEY.to_string(), head.into()));
            puts.push((STATE_REVISION_KEY.to_string(), JsValue::from_str(&revision)));
            let deletes: Vec<String> = changes.delete.iter().map(|key| part_key(key)).collect();
            let write = self.container.write_meta(&puts, &deletes);
            self.generation.set(self.generation.get() + 1);
            *self.revision.borrow_mut() = Some(revision);
            write
        });
        async move { issued?.await }
    }

    /// A decision on the shared state: under the state lock, reload the stored state if another
    /// context changed it, count the page delegates, apply `f`, start what may start, save;
    /// then tell the other contexts, reconcile this global's transfers with the state, deliver
    /// the events and wake the watchers. Nothing is saved when `f` fails.
    ///
    /// Decisions are group-committed: the ones this global makes while a batch holds the lock
    /// (`Promise.all` over many `schedule` calls, say) are applied in order in the next batch,
    /// under one lock acquisition and one save. While more are waiting after a batch, the lock
    /// is kept for the next one (up to [`KEEP_STATE_LOCK_MS`]), which then does not read the
    /// stored state: nobody else can have saved. Each one's result arrives after the save that
    /// holds it committed; a failed save fails every decision of its batch.
    async fn transact<T: 'static>(
        self: &Rc<Self>,
        f: impl FnOnce(&mut CoreManager) -> Result<T> + 'static,
    ) -> Result<T> {
        self.transact_queued(f, false).await
    }

    /// [`Engine::transact`]; `result` marks a transfer's result, which may wait for others
    /// ([`RESULTS_GATHER_MS`]).
    async fn transact_queued<T: 'static>(
        self: &Rc<Self>,
        f: impl FnOnce(&mut CoreManager) -> Result<T> + 'static,
        result: bool,
    ) -> Result<T> {
        self.check_open()?;
        if result {
            self.queued_results.set(self.queued_results.get() + 1);
        }
        let (sender, receiver) = oneshot::channel::<Result<T>>();
        self.decisions.borrow_mut().push(Box::new(
            move |core: std::result::Result<&mut CoreManager, &Error>| {
                let outcome = core.map_err(Clone::clone).and_then(f);
                let decided = outcome.is_ok();
                let settle: Settle = Box::new(move |saved: Option<&Error>| {
                    let outcome = match (outcome, saved) {
                        (Ok(_), Some(error)) => Err(error.clone()),
                        (outcome, _) => outcome,
                    };
                    let _ = sender.send(outcome);
                });
                (decided, settle)
            },
        ));
        if !self.deciding.replace(true) {
            let engine = self.clone();
            js::spawn(async move { engine.decide_batches().await });
        }
        receiver.await.unwrap_or_else(|_| {
            Err(Error::Storage {
                message: format!("the download manager on `{}` was dropped", self.database),
            })
        })
    }

    /// Runs the queued decisions, a batch at a time, until none is left.
    async fn decide_batches(self: Rc<Self>) {
        // The state lock kept from the last batch, and since when it is held.
        let mut kept: Option<(LockGuard, f64)> = None;
        loop {
            // (While opening, a delegate's lock update waits for the open to finish.)
            let syncing = self.delegate.syncing.borrow().clone();
            if let (true, Some(mut syncing)) = (self.opened.get(), syncing) {
                if futures::poll!(&mut syncing).is_pending() {
                    if let Some((guard, _)) = kept.take() {
                        guard.release().await;
                    }
                    syncing.await;
                }
            }
            if self.decisions.borrow().is_empty() {
                if let Some((guard, _)) = kept.take() {
                    guard.release().await;
                }
                self.deciding.set(false);
                return;
            }
            let (guard, since, ours) = match kept.take() {
                // Held since this global's last save: the stored state is this global's.
                Some((guard, since)) => (guard, since, true),
                None => {
                    let name = state_lock_name(&self.database);
                    let asked = performance_now();
                    match acquire(&name, LockOptions::exclusive()).await {
                        Ok(Some(guard)) => {
                            let granted = performance_now();
                            self.stats.borrow_mut().lock_wait_ms += granted - asked;
                            (guard, granted, false)
                        }
                        outcome => {
                            let error = outcome.err().unwrap_or_else(|| Error::LockTimeout {
                                name: name.clone(),
                                timeout_ms: 0,
                            });
                            let batch = std::mem::take(&mut *self.decisions.borrow_mut());
                            self.queued_results.set(0);
                            for settle in refuse(batch, &error) {
                                settle(None);
                            }
                            self.dispatch();
                            continue;
                        }
                    }
                }
            };
            if self.gather_results() {
                gloo_timers::future::TimeoutFuture::new(RESULTS_GATHER_MS).await;
            }
            self.transacting.set(self.transacting.get() + 1);
            let batch = std::mem::take(&mut *self.decisions.borrow_mut());
            self.queued_results.set(0);
            let started = performance_now();
            {
                let mut stats = self.stats.borrow_mut();
                stats.batches += 1;
                stats.kept_batches += u64::from(ours);
                stats.decisions += batch.len() as u64;
            }
            let outcome = self.transact_locked(batch, ours).await;
            self.transacting.set(self.transacting.get() - 1);
            self.stats.borrow_mut().lock_held_ms += performance_now() - started;
            kept = self.keep_lock(guard, since, outcome.is_ok()).await;
            self.settle_batch(outcome);
        }
    }

    /// Whether the next batch should wait [`RESULTS_GATHER_MS`] for more: all its decisions are
    /// transfer results, fewer than this global's running transfers, which may end meanwhile.
    fn gather_results(&self) -> bool {
        let queued = self.decisions.borrow().len();
        queued == self.queued_results.get()
            && queued < self.running.borrow().len()
            && !self.closed.get()
    }

    /// After a batch: keeps the state lock for the next one when decisions are already waiting
    /// and it has been held for less than [`KEEP_STATE_LOCK_MS`] (then the next batch need not
    /// read the stored state: nobody else can have saved); else releases it. Not after a failed
    /// save (what is stored is unknown then).
    async fn keep_lock(
        &self,
        guard: LockGuard,
        since: f64,
        saved: bool,
    ) -> Option<(LockGuard, f64)> {
        let keep = saved
            && !self.closed.get()
            && !self.decisions.borrow().is_empty()
            && performance_now() - since < KEEP_STATE_LOCK_MS;
        if keep {
            return Some((guard, since));
        }
        guard.release().await;
        None
    }

    /// Tells the other contexts and the watchers about a batch, starts what it started, and
    /// settles its decisions.
    fn settle_batch(self: &Rc<Self>, outcome: BatchOutcome) {
        match outcome {
            Ok((settles, started)) => {
                self.broadcast(Body::Changed);
                for (id, owner) in started {
                    self.claim_after(id, Some(owner));
                }
                self.reconcile();
                self.arm_wakeup();
                self.dispatch();
                self.notify_changed();
                for settle in settles {
                    settle(None);
                }
            }
            Err((settles, error)) => {
                self.dispatch();
                for settle in settles {
                    settle(Some(&error));
                }
            }
        }
    }

    /// One batch under the state lock: the decisions in order, then one save (none when every
    /// decision failed). Gives back how to settle each decision and what started.
    async fn transact_locked(self: &Rc<Self>, batch: Vec<Decision>, ours: bool) -> BatchOutcome {
        let fail_all = |batch: Vec<Decision>, error: Error| (refuse(batch, &error), error);
        if let Err(error) = self.check_open() {
            return Err(fail_all(batch, error));
        }
        // The revision read and the lock query go out together (two round trips to the browser
        // in the time of one); a reload keeps the count, and a count taken after it sets it.
        // With the lock kept since this global's own save (`ours`), the stored state is this
        // global's: no read, and the page delegates are counted again only now and then.
        let reading = performance_now();
        let refreshed = if ours && self.loaded.get() {
            if self.page_count_is_old() {
                self.count_page_delegates().await;
            }
            Ok(false)
        } else {
            futures::join!(self.refresh(), self.count_page_delegates()).0
        };
        self.stats.borrow_mut().read_ms += performance_now() - reading;
        match refreshed {
            Ok(true) => self.reconcile(),
            Ok(false) => {}
            Err(error) => return Err(fail_all(batch, error)),
        }
        let computing = performance_now();
        let mut settles = Vec::with_capacity(batch.len());
        let mut decided = false;
        {
            let mut core = self.core.borrow_mut();
            for decision in batch {
                let (ok, settle) = decision(Ok(&mut core));
                decided |= ok;
                settles.push(settle);
            }
        }
        if !decided {
            // Every decision failed: nothing is saved, and they settle with their own errors.
            return Ok((settles, Vec::new()));
        }
        let started = if self.closed.get() {
            Vec::new()
        } else {
            self.core.borrow_mut().poll_start(now())
        };
        // The owner locks of what this batch starts are asked for while its save commits: no
        // other context starts these before the save, and one still running a download holds
        // its lock (not free: the claim then waits for it). A failed save drops them.
        let owners = futures::future::join_all(started.iter().map(|id| {
            let name = (!self.defers_to_pages(id)).then(|| owner_lock_name(id));
            async move {
                let name = name?;
                acquire(&name, LockOptions::exclusive().if_available())
                    .await
                    .ok()
                    .flatten()
            }
        }));
        let save = self.save();
        let saving = performance_now();
        self.stats.borrow_mut().compute_ms += saving - computing;
        let (saved, owners) = futures::join!(save, owners);
        let started = started.into_iter().zip(owners).collect();
        self.stats.borrow_mut().save_ms += performance_now() - saving;
        if let Err(error) = saved {
            // What is stored is unknown now: read it again before the next decision.
            self.loaded.set(false);
            *self.revision.borrow_mut() = None;
            return Err((settles, error));
        }
        Ok((settles, started))
    }

    /// Reads outside a decision see the latest stored state (unless one of this global's
    /// decisions is under way: then this global's state is the latest).
    async fn read_fresh(self: &Rc<Self>) -> Result<()> {
        self.check_open()?;
        if self.transacting.get() == 0 && self.refresh().await? {
            self.reconcile();
            self.notify_changed();
        }
        Ok(())
    }

    /// Makes this global's transfers match the state: a transfer whose download is no longer
    /// `downloading` is paused (still scheduled) or cancelled (ended); a paused one that is
    /// `downloading` again continues; a `downloading` download nobody here runs is claimed
    /// (continued once its runner, if any, lets go).
    fn reconcile(self: &Rc<Self>) {
        if self.closed.get() {
            return;
        }
        let mut ended = Vec::new();
        let downloading: Vec<Identifier> = {
            let core = self.core.borrow();
            for (id, running) in self.running.borrow().iter() {
                match core.download(id).map(|d| d.state) {
                    Some(DownloadState::Downloading) => {
                        if running.paused.replace(false) {
                            running.control.resume();
                        }
                    }
                    Some(state) if state.is_scheduled() => {
                        if !running.paused.replace(true) {
                            running.control.pause();
                        }
                    }
                    _ => ended.push(id.clone()),
                }
            }
            self.unreported
                .borrow_mut()
                .retain(|id, _| core.download(id).is_some_and(|d| d.state.is_scheduled()));
            core.downloading()
        };
        for id in ended {
            // The run discards its chunks and ends; its end deletes the rest.
            let running = self.running.borrow_mut().remove(&id);
            if let Some(running) = running {
                running.control.cancel();
            }
            self.credentials.borrow_mut().remove(&id);
        }
        for id in downloading {
            self.claim(id);
        }
        self.sweep_browser_fetches();
    }

    /// Stops the browser fetches of downloads that are no longer `downloading` here (paused,
    /// cancelled or failed by any context), and the progress watchers of this global's.
    fn sweep_browser_fetches(self: &Rc<Self>) {
        if background_fetch::support() == BackgroundFetchSupport::Unavailable {
            return;
        }
        let stopped: Vec<Identifier> = {
            let core = self.core.borrow();
            self.handed
                .borrow()
                .keys()
                .filter(|id| core.download(id).map(|d| d.state) != Some(DownloadState::Downloading))
                .cloned()
                .collect()
        };
        for id in stopped {
            if let Some(watcher) = self.handed.borrow_mut().remove(&id) {
                watcher.abort();
            }
        }
        // One sweep at a time: the decisions made meanwhile are swept once, after it.
        if self.sweeping.get().is_some() {
            self.sweeping.set(Some(true));
            return;
        }
        self.sweeping.set(Some(false));
        let engine = self.clone();
        js::spawn(async move {
            loop {
                engine.sweep_once().await;
                if engine.sweeping.replace(Some(false)) != Some(true) {
                    break;
                }
            }
            engine.sweeping.set(None);
        });
    }

    /// Aborts the browser fetches of this database whose downloads are no longer
    /// `downloading`.
    async fn sweep_once(&self) {
        for fetch_id in background_fetch::ids().await {
            let Some((database, id)) = background_fetch::parse_fetch_id(&fetch_id) else {
                continue;
            };
            if database == self.database {
                self.browser_fetch_seen.set(true);
            }
            let Ok(id) = Identifier::new(id) else {
                continue;
            };
            let downloading = self
                .core
                .borrow()
                .download(&id)
                .is_some_and(|d| d.state == DownloadState::Downloading);
            if database != self.database || downloading || self.closed.get() {
                continue;
            }
            if let Ok(Some(fetch)) = background_fetch::get(&fetch_id).await {
                if fetch.result() == BrowserFetchResult::Running {
                    // Marked first: the worker's `backgroundfetchabort` then knows it was
                    // not the user (who cancels the download that way).
                    let marker = aborted_marker(&fetch_id);
                    if let Err(error) = self.container.put_meta(&marker, &JsValue::TRUE).await {
                        warn(&format!("marking `{fetch_id}` as aborted"), &error);
                    }
                    fetch.abort().await;
                }
            }
        }
    }

    /// Whether the app declares `backgroundFetch` and `id` is a scheduled (not foreground)
    /// download with nothing stored yet: what a page hands to Background Fetch.
    fn hand_off_eligible(&self, id: &Identifier) -> bool {
        let core = self.core.borrow();
        core.declaration().background_fetch
            && core
                .download(id)
                .is_some_and(|d| !d.foreground && d.progress.total_written == 0)
    }

    /// Whether this worker lets pages claim `id` first: a page may hand it to Background Fetch
    /// (see [`may_hand_off`](Self::may_hand_off)), which only pages can start.
    fn defers_to_pages(&self, id: &Identifier) -> bool {
        if self.caller == Caller::Page
            || background_fetch::support() != BackgroundFetchSupport::CompletionOnly
        {
            return false;
        }
        self.hand_off_eligible(id)
    }

    /// Whether this global may hand `id` to Background Fetch: a page of an app that declares
    /// `backgroundFetch`, in an engine where pages may start one, for a scheduled (not
    /// foreground) download with nothing stored yet.
    fn may_hand_off(&self, id: &Identifier) -> bool {
        if self.caller != Caller::Page
            || background_fetch::support() != BackgroundFetchSupport::Start
        {
            return false;
        }
        self.hand_off_eligible(id)
    }

    /// Runs `id`, just claimed (this global holds its owner lock `owner`; the state says it is
    /// `downloading`): through its browser fetch if the browser runs or ran it (`known`, else
    /// looked up), handed to Background Fetch if [`may_hand_off`](Self::may_hand_off), else by
    /// the normal transfer here. `done` is told once its result is stored.
    async fn run_claimed(
        self: &Rc<Self>,
        id: Identifier,
        owner: LockGuard,
        known: Option<Option<BrowserFetch>>,
        done: Option<oneshot::Sender<()>>,
    ) {
        let fetch_id = background_fetch::fetch_id(&self.database, id.as_str());
        let existing = match known {
            Some(found) => found,
            None => self.look_up_browser_fetch(&id).await,
        };
        match existing.as_ref().map(|f| (f.result(), f)) {
            Some((BrowserFetchResult::Running, fetch)) => {
                // The browser runs it: nobody else does. The worker's backgroundfetch* event
                // settles it; this global reports its progress meanwhile.
                owner.release().await;
                self.watch_browser_fetch(id, fetch.clone());
                return;
            }
            Some((BrowserFetchResult::Success, fetch)) => match fetch.response().await {
                Ok(Some(response)) => {
                    self.spawn_transfer(id, owner, Some(response), done);
                    return;
                }
                Ok(None) => warn(
                    &format!("`{id}`"),
                    &Error::Unsupported {
                        what: "a finished browser fetch without a record".into(),
                    },
                ),
                // Not there any more: fetched again below.
                Err(error) => warn(&format!("reading the browser fetch of `{id}`"), &error),
            },
            // Failed (bad status, network, quota) or aborted (by the library after a pause: the
            // download was resumed since; a user's abort fails it in the worker's
            // `backgroundfetchabort`): the normal transfer takes over and reports what it finds,
            // as in every engine.
            Some((BrowserFetchResult::Failure, _)) => {}
            None if self.may_hand_off(&id) => match self.hand_off(&id, &fetch_id).await {
                Ok(fetch) => {
                    self.browser_fetch_seen.set(true);
                    owner.release().await;
                    self.watch_browser_fetch(id, fetch);
                    return;
                }
                Err(error) => warn(
                    &format!("handing `{id}` to Background Fetch (runs here)"),
                    &error,
                ),
            },
            None => {}
        }
        self.spawn_transfer(id, owner, None, done);
    }

    /// Whether `fetch_id` names a browser fetch of this database.
    fn is_ours(&self, fetch_id: &str) -> bool {
        background_fetch::parse_fetch_id(fetch_id)
            .is_some_and(|(database, _)| database == self.database)
    }

    /// The browser fetch of `id`, if there is one (a failed look-up is warned about: none).
    /// Not looked up while none can exist: the declaration does not declare `backgroundFetch`
    /// and no browser fetch of this database was seen.
    async fn look_up_browser_fetch(&self, id: &Identifier) -> Option<BrowserFetch> {
        if !self.core.borrow().declaration().background_fetch && !self.browser_fetch_seen.get() {
            return None;
        }
        let fetch_id = background_fetch::fetch_id(&self.database, id.as_str());
        background_fetch::get(&fetch_id)
            .await
            .unwrap_or_else(|error| {
                warn(&format!("looking up the browser fetch of `{id}`"), &error);
                None
            })
    }

    /// Starts the browser fetch of `id` (its URL allowed by the declaration, its headers).
    async fn hand_off(&self, id: &Identifier, fetch_id: &str) -> Result<BrowserFetch> {
        let (spec, allow) = self
            .transfer_spec(id)
            .ok_or_else(|| Error::DownloadDoesNotExist {
                identifier: id.to_string(),
            })?;
        crate::web::transfer::check_allowed(&allow, &self.page_origin, &spec.url)?;
        background_fetch::start(
            fetch_id,
            &spec.url,
            &spec.headers,
            spec.expected_size,
            id.as_str(),
        )
        .await
    }

    /// Fails `id` with [`Error::Cancelled`] if it is still `downloading` (its browser fetch was
    /// aborted by the user).
    async fn fail_aborted(self: &Rc<Self>, id: &Identifier) {
        let failed = id.clone();
        let stored = self
            .transact(move |core| {
                let id = &failed;
                let downloading = core
                    .download(id)
                    .is_some_and(|d| d.state == DownloadState::Downloading);
                if downloading {
                    let error = Error::Cancelled {
                        identifier: id.to_string(),
                    };
                    core.on_failed(id, error, now())?;
                }
                Ok(())
            })
            .await;
        if let Err(error) = stored {
            warn(
                &format!("failing `{id}` after its browser fetch was aborted"),
                &error,
            );
        }
    }

    /// Reports the progress of the browser fetch of `id` (polled: Chromium does not always
    /// deliver its `progress` events) until it ends, then claims `id` again (its result is
    /// stored, or the normal transfer takes over).
    fn watch_browser_fetch(self: &Rc<Self>, id: Identifier, fetch: BrowserFetch) {
        if self.closed.get() || self.handed.borrow().contains_key(&id) {
            return;
        }
        let engine = Rc::downgrade(self);
        let watched = id.clone();
        let fetch_id = fetch.id();
        let (task, abort) = abortable(async move {
            let mut reported = None;
            loop {
                let Some(engine) = engine.upgrade() else {
                    return;
                };
                let fetch = match background_fetch::get(&fetch_id).await {
                    Ok(Some(fetch)) if fetch.result() == BrowserFetchResult::Running => fetch,
                    _ => {
                        engine.handed.borrow_mut().remove(&watched);
                        engine.claim(watched);
                        return;
                    }
                };
                let downloaded = fetch.downloaded();
                if reported != Some(downloaded) && downloaded > 0 {
                    reported = Some(downloaded);
                    let total = fetch.download_total();
                    let progress = Progress {
                        bytes_written: downloaded,
                        bytes_received: downloaded,
                        total_expected: (total > 0).then_some(total),
                        ..Progress::default()
                    };
                    engine.report_progress(&watched, &progress);
                }
                drop(engine);
                gloo_timers::future::TimeoutFuture::new(BROWSER_FETCH_POLL_MS).await;
            }
        });
        self.handed.borrow_mut().insert(id, abort);
        let _ = fetch;
        js::spawn(async move {
            let _ = task.await;
        });
    }

    /// Stores what the browser fetch `fetch` of `id` delivered (the worker's
    /// `backgroundfetchsuccess`), or lets the normal transfer take over after its failure;
    /// returns once the result is stored (or another context has stored one).
    async fn settle_browser_fetch(
        self: &Rc<Self>,
        id: &Identifier,
        fetch: &BrowserFetch,
    ) -> Result<()> {
        for _ in 0..3 {
            let name = owner_lock_name(id);
            let Some(owner) = acquire(&name, LockOptions::exclusive()).await? else {
                return Ok(());
            };
            if self.refresh().await? {
                self.reconcile();
                self.notify_changed();
            }
            let downloading = self
                .core
                .borrow()
                .download(id)
                .is_some_and(|d| d.state == DownloadState::Downloading);
            if !downloading || self.closed.get() {
                owner.release().await;
                return Ok(());
            }
            if let Some(watcher) = self.handed.borrow_mut().remove(id) {
                watcher.abort();
            }
            let (done, stored) = oneshot::channel();
            self.run_claimed(id.clone(), owner, Some(Some(fetch.clone())), Some(done))
                .await;
            if stored.await.is_err() {
                // Not run here (the browser still runs it?): look again shortly.
                gloo_timers::future::TimeoutFuture::new(BROWSER_FETCH_POLL_MS).await;
            }
        }
        Ok(())
    }

    /// Runs `id` here once this global holds its owner lock and the state still says it is
    /// `downloading` (resumes it if this global has it paused).
    fn claim(self: &Rc<Self>, id: Identifier) {
        self.claim_after(id, None);
    }

    /// [`claim`](Self::claim); `own` for a download this global's own decision just started,
    /// with its owner lock if that was free while the decision's save committed. The state is
    /// then as fresh as that save, so with the lock (nobody ran it since) the stored state is not
    /// read again. Another context's later change reaches this global as a "changed" message,
    /// and [`reconcile`](Self::reconcile) then pauses or stops the transfer.
    fn claim_after(self: &Rc<Self>, id: Identifier, own: Option<Option<LockGuard>>) {
        if self.closed.get() {
            return;
        }
        if let Some(running) = self.running.borrow().get(&id) {
            if running.paused.replace(false) {
                running.control.resume();
            }
            return;
        }
        if self.claims.borrow().contains_key(&id) || self.handed.borrow().contains_key(&id) {
            return;
        }
        let engine = self.clone();
        let claimed = id.clone();
        let defer = self.defers_to_pages(&id);
        let (task, abort) = abortable(async move {
            let claimed_at = performance_now();
            if defer {
                // A page may hand it to the browser (which outlives us both): give it the
                // first chance; if none did, it runs here.
                gloo_timers::future::TimeoutFuture::new(HAND_OFF_GRACE_MS).await;
            }
            let name = owner_lock_name(&claimed);
            let asked = performance_now();
            // (After a grace for the pages, another context may have had it: read again.)
            let (granted, reload) = match own.flatten() {
                Some(guard) if !defer => (Ok(Some(guard)), false),
                _ => (acquire(&name, LockOptions::exclusive()).await, true),
            };
            let locked = performance_now();
            engine.claims.borrow_mut().remove(&claimed);
            let guard = match granted {
                Ok(Some(guard)) => guard,
                Ok(None) => return,
                Err(error) => {
                    warn(&format!("claiming `{claimed}`"), &error);
                    return;
                }
            };
            if engine.closed.get() {
                return;
            }
            // The browser-fetch look-up goes out with the state read (both after the lock).
            let refresh = async {
                if reload {
                    engine.refresh().await
                } else {
                    Ok(false)
                }
            };
            let (refreshed, found) =
                futures::join!(refresh, engine.look_up_browser_fetch(&claimed));
            match refreshed {
                // The reload may be this global's first sight of the other context's change
                // (its "changed" message then finds nothing newer): wake the watchers here.
                Ok(true) => {
                    engine.reconcile();
                    engine.notify_changed();
                }
                Ok(false) => {}
                Err(error) => warn("reading the state", &error),
            }
            let downloading = engine
                .core
                .borrow()
                .download(&claimed)
                .is_some_and(|d| d.state == DownloadState::Downloading);
            if !downloading || engine.running.borrow().contains_key(&claimed) || engine.closed.get()
            {
                guard.release().await;
                return;
            }
            let read = performance_now();
            engine.run_claimed(claimed, guard, Some(found), None).await;
            let started = performance_now();
            let mut stats = engine.stats.borrow_mut();
            stats.starts += 1;
            stats.start_ms += started - claimed_at;
            stats.claim_lock_ms += locked - asked;
            stats.claim_read_ms += read - locked;
            stats.claim_spawn_ms += started - read;
        });
        self.claims.borrow_mut().insert(id, abort);
        js::spawn(async move {
            let _ = task.await;
        });
    }

    /// Starts what the queue allows (a decision of its own), re-arms the wake-up timer.
    fn pump(self: &Rc<Self>) {
        if self.closed.get() || self.pump_queued.replace(true) {
            return;
        }
        let engine = self.clone();
        js::spawn(async move {
            engine.pump_queued.set(false);
            if engine.closed.get() {
                return;
            }
            if let Err(error) = engine.transact(|_| Ok(())).await {
                warn("starting downloads", &error);
            }
        });
    }

    fn arm_wakeup(self: &Rc<Self>) {
        let at = now();
        let next = self.core.borrow().next_wakeup(at);
        let timer = next.map(|wake| {
            let engine = Rc::downgrade(self);
            let delay = wake.saturating_sub(at).min(u32::MAX as u64) as u32;
            Timeout::new(delay, move || {
                if let Some(engine) = engine.upgrade() {
                    engine.pump();
                }
            })
        });
        *self.wakeup.borrow_mut() = timer;
    }

    /// The transfer spec of `id` from the state: its URL, declared size and digests, the app's
    /// request headers and any credentials the delegate gave.
    fn transfer_spec(
        &self,
        id: &Identifier,
    ) -> Option<(TransferSpec, crate::core::policy::DomainAllowList)> {
        let core = self.core.borrow();
        let download = core.description(id)?;
        let mut spec = TransferSpec::new(id.as_str(), download.request.url.as_str());
        spec.expected_size = download.file_size;
        let file = core.pack_file(id);
        spec.sha256 = file.map(|file| file.sha256);
        // Declared chunk digests: each chunk is checked by the browser as it arrives.
        spec.chunk_digests = file.and_then(|file| file.chunks.clone());
        spec.config = self.transfer.clone();
        spec.headers = download.request.headers.clone();
        if let Some(credentials) = self.credentials.borrow().get(id) {
            for (name, value) in credentials {
                spec.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
                spec.headers.push((name.clone(), value.clone()));
            }
        }
        let allow = core.declaration().restrictions.domain_allow_list.clone();
        Some((spec, allow))
    }

    /// Asks this global's delegate for credentials after `status` (Apple's authentication
    /// challenge); `None` when there is no delegate, it declines, or the download stopped.
    async fn ask_credentials(
        &self,
        id: &Identifier,
        url: &str,
        status: u16,
        control: &TransferControl,
    ) -> Option<Credentials> {
        let delegate = self.delegate.delegate.borrow().clone()?;
        let challenge = AuthChallenge {
            url: url.to_string(),
            status,
            www_authenticate: control.challenge(),
        };
        let credentials = delegate.authentication_challenge(id, &challenge).await?;
        let still = self
            .core
            .borrow()
            .download(id)
            .is_some_and(|d| d.state == DownloadState::Downloading);
        (still && !self.closed.get()).then_some(credentials)
    }

    /// Runs `id`'s transfer holding its owner lock `owner` until the result is stored.
    ///
    /// `first_response` (a browser fetch's record) answers the run's first request; the run's
    /// own progress is then reported only at its end (the browser fetch reported it). `done` is
    /// told once the result is stored.
    fn spawn_transfer(
        self: &Rc<Self>,
        id: Identifier,
        owner: LockGuard,
        first_response: Option<web_sys::Response>,
        done: Option<oneshot::Sender<()>>,
    ) {
        let finished = self.unreported.borrow_mut().remove(&id);
        if let Some(asset) = finished {
            let engine = self.clone();
            js::spawn(async move {
                engine.report_result(&id, Ok(asset)).await;
                owner.release().await;
                if let Some(done) = done {
                    let _ = done.send(());
                }
            });
            return;
        }
        let mut first_response = first_response;
        let run_number = self.runs.get() + 1;
        self.runs.set(run_number);
        let control = TransferControl::new();
        let engine = self.clone();
        let task_id = id.clone();
        let last = control.clone();
        // Whether this run sent the next file's request ahead (`prefetch_next`) already.
        let ahead = Rc::new(Cell::new(false));
        let (task, abort) = abortable(async move {
            // Released when the result is stored (or the task is dropped); each run holds it as
            // the download's lock.
            let owner = Rc::new(owner);
            let mut challenges = 0;
            let result = loop {
                let Some((spec, allow)) = engine.transfer_spec(&task_id) else {
                    break Err(Error::DownloadDoesNotExist {
                        identifier: task_id.to_string(),
                    });
                };
                let url = spec.url.clone();
                let reporter = Rc::downgrade(&engine);
                let progress_id = task_id.clone();
                let response = first_response.take();
                let quiet = response.is_some();
                let fresh = engine.core.borrow().nothing_received(&task_id);
                let size = spec.expected_size;
                let sent_ahead = ahead.clone();
                let options = RunOptions {
                    allow,
                    page_origin: Some(engine.page_origin.clone()),
                    lock: LockPolicy::Wait,
                    read_buffer: DEFAULT_READ_BUFFER,
                    control: Some(last.clone()),
                    on_progress: Some(Box::new(move |progress: &Progress| {
                        if quiet {
                            return;
                        }
                        if let Some(engine) = reporter.upgrade() {
                            engine.report_progress(&progress_id, progress);
                            // Every byte is here: the run only stores and verifies now.
                            let received = size.is_some_and(|s| progress.bytes_received >= s);
                            if received && !sent_ahead.replace(true) {
                                engine.prefetch_next();
                            }
                        }
                    })),
                    first_response: response,
                    fresh,
                    prefetched: engine.take_prefetched(&task_id),
                    held: Some(owner.clone()),
                };
                let result = run(&engine.container, spec, options).await;
                if let Err(Error::AuthenticationRequired { status, .. }) = &result {
                    if challenges < MAX_CHALLENGES {
                        challenges += 1;
                        let status = *status;
                        if let Some(credentials) =
                            engine.ask_credentials(&task_id, &url, status, &last).await
                        {
                            engine
                                .credentials
                                .borrow_mut()
                                .insert(task_id.clone(), credentials);
                            continue; // from the checkpoint, with the credentials
                        }
                    }
                }
                break result;
            };
            // Its slot frees once the result is stored: the next file's request goes out now
            // (if it did not when every byte had arrived).
            if !ahead.replace(true) {
                engine.prefetch_next();
            }
            if let (Ok(asset), Some(mut progress)) = (&result, last.progress()) {
                // The last write may end the run before its progress is reported: report it,
                // so the delegate sees every byte written before the finish.
                progress.bytes_written = asset.size;
                progress.bytes_received = progress.bytes_received.max(asset.size);
                engine.report_progress(&task_id, &progress);
            }
            let ours = engine
                .running
                .borrow()
                .get(&task_id)
                .is_some_and(|r| r.run == run_number);
            if ours {
                engine.running.borrow_mut().remove(&task_id);
            }
            engine.credentials.borrow_mut().remove(&task_id);
            if let Err(Error::QuotaExceeded { .. }) = &result {
                // Free the space first: saving the failure needs some (this global owns the
                // download: its owner lock is held until the result is stored).
                if let Err(error) = engine.container.delete(task_id.as_str()).await {
                    warn(&format!("deleting `{task_id}`"), &error);
                }
            }
            let reporting = performance_now();
            engine.report_result(&task_id, result).await;
            engine.stats.borrow_mut().report_ms += performance_now() - reporting;
            if let Some(done) = done {
                let _ = done.send(());
            }
        });
        self.running.borrow_mut().insert(
            id.clone(),
            Running {
                run: run_number,
                control,
                abort,
                paused: Cell::new(false),
            },
        );
        js::spawn(async move {
            let _ = task.await;
        });
    }

    /// Sends the request of a small file the queue starts next, once a transfer has received
    /// every byte (or ended): it still stores them, and its result then waits for a save, and
    /// the next start with it, so the file's body arrives meanwhile ([`prefetch`]). Only for a
    /// download with nothing received that a fresh run requests whole ([`RunOptions::fresh`]),
    /// among the next `max_concurrent` to start, one request each and at most
    /// `max_concurrent` in all. Requests kept longer than [`PREFETCH_KEEP_MS`], or of
    /// downloads no longer scheduled, are dropped. Nothing is stored until the download's own
    /// run takes the response; a download that is cancelled, paused, handed to the browser or
    /// run by another context leaves its request unused (at most `INLINE_MAX` bytes).
    fn prefetch_next(&self) {
        if self.closed.get() || !prefetch_pays() {
            return;
        }
        let at = performance_now();
        let core = self.core.borrow();
        let mut prefetched = self.prefetched.borrow_mut();
        prefetched.retain(|id, (sent, _)| {
            at - *sent < PREFETCH_KEEP_MS
                && core.download(id).is_some_and(|d| d.state.is_scheduled())
        });
        let limit = core.limits().max_concurrent.max(1);
        if prefetched.len() >= limit {
            return;
        }
        let next = core.upcoming(now()).take(limit).find(|id| {
            !prefetched.contains_key(*id)
                && core.nothing_received(id)
                && !self.defers_to_pages(id)
                && !self.may_hand_off(id)
        });
        let Some(id) = next.cloned() else {
            return;
        };
        let Some((spec, allow)) = self.transfer_spec(&id) else {
            return;
        };
        if let Some(request) = prefetch(&spec, &allow, &self.page_origin) {
            prefetched.insert(id, (at, request));
            self.stats.borrow_mut().prefetches += 1;
        }
    }

    /// The request [`prefetch_next`](Self::prefetch_next) sent for `id`, for its run.
    fn take_prefetched(&self, id: &Identifier) -> Option<Prefetch> {
        let (_, request) = self.prefetched.borrow_mut().remove(id)?;
        self.stats.borrow_mut().prefetches_taken += 1;
        Some(request)
    }

    fn report_progress(self: &Rc<Self>, id: &Identifier, progress: &Progress) {
        if self.closed.get() {
            return;
        }
        let outcome = self.core.borrow_mut().on_progress(id, progress);
        if let Err(error @ Error::SessionDownloadAllowanceExceeded { .. }) = outcome {
            // The core failed it: stop the transfer (its bytes are discarded) and store that.
            if let Some(running) = self.running.borrow_mut().remove(id) {
                running.control.cancel();
            }
            warn(&format!("`{id}`"), &error);
            let engine = self.clone();
            let id = id.clone();
            let progress = progress.clone();
            js::spawn(async move {
                let stored = engine
                    .transact(move |core| {
                        let _ = core.on_progress(&id, &progress);
                        Ok(())
                    })
                    .await;
                if let Err(error) = stored {
                    warn("storing a failure", &error);
                }
            });
        }
        if self.page_count_is_old() {
            // A page that closed stops counting at once: count again now and then.
            self.counted_at.set(now());
            let engine = self.clone();
            js::spawn(async move { engine.count_page_delegates().await });
        }
        self.dispatch();
    }

    /// Stores a transfer's result on the fresh state (under the state lock).
    async fn report_result(self: &Rc<Self>, id: &Identifier, result: Result<StoredAsset>) {
        let reported = id.clone();
        let outcome = self
            .transact_queued(
                move |core| {
                    let id = &reported;
                    let state = core.download(id).map(|d| d.state);
                    let scheduled = state.is_some_and(DownloadState::is_scheduled);
                    let mut obsolete = Vec::new();
                    let mut unreported = None;
                    match result {
                        Ok(asset) if scheduled && state != Some(DownloadState::Downloading) => {
                            // Paused or pre-empted after its last byte: report it when it starts
                            // again.
                            unreported = Some(asset);
                        }
                        Ok(asset) if scheduled => {
                            let finished = decode_sha256(&asset.sha256)
                                .and_then(|sha256| core.on_finished(id, asset.size, sha256));
                            match finished {
                                Ok(old) => obsolete = old,
                                Err(error) => warn(&format!("finishing `{id}`"), &error),
                            }
                        }
                        // Fenced: another context took the download's lock and runs it now (this
                        // one wrote nothing after that). Not a failure, and its storage is not ours
                        // to delete: this global claims it again and continues once that run ends.
                        Err(Error::StaleEpoch { .. }) => {}
                        Err(error) if scheduled => {
                            if let Err(e) = core.on_failed(id, error, now()) {
                                warn(&format!("failing `{id}`"), &e);
                            }
                        }
                        // Cancelled (or failed by the core) while it ran: nothing to report.
                        _ => {}
                    }
                    if core
                        .download(id)
                        .is_some_and(|d| d.state == DownloadState::Failed)
                    {
                        obsolete.push(id.clone());
                    }
                    Ok((obsolete, unreported))
                },
                true,
            )
            .await;
        match outcome {
            Ok((obsolete, unreported)) => {
                if let Some(asset) = unreported {
                    self.unreported.borrow_mut().insert(id.clone(), asset);
                }
                for gone in obsolete {
                    if let Err(error) = self.container.delete(gone.as_str()).await {
                        warn(&format!("deleting `{gone}`"), &error);
                    }
                }
            }
            Err(error) => warn(&format!("storing the result of `{id}`"), &error),
        }
    }

    /// Tells every [`DownloadManager::changes`] receiver that the state changed.
    fn notify_changed(&self) {
        self.watchers
            .borrow_mut()
            .retain(|watcher| watcher.unbounded_send(()).is_ok());
    }

    /// Moves the core's pending events to `pending`.
    fn take_events(&self) {
        let mut core = self.core.borrow_mut();
        self.pending
            .borrow_mut()
            .extend(std::iter::from_fn(|| core.poll_event()));
    }

    /// Delivers the pending events along their routes: `Pages` to this page's delegate and, over
    /// the channel, to the other pages; `Extension` to this worker's delegate, or from a page
    /// over the channel and by `postMessage` to the service worker.
    fn dispatch(&self) {
        self.take_events();
        let events = std::mem::take(&mut *self.pending.borrow_mut());
        if self.closed.get() {
            return;
        }
        let extension = matches!(self.caller, Caller::Extension { .. });
        for routed in events {
            match routed.route {
                Route::Pages => {
                    if !extension {
                        self.deliver(&routed.event);
                    }
                    self.broadcast(Body::Event {
                        route: Route::Pages,
                        eid: self.next_id(),
                        event: routed.event,
                    });
                }
                Route::Extension if extension => self.deliver(&routed.event),
                Route::Extension => {
                    let message = self.broadcast(Body::Event {
                        route: Route::Extension,
                        eid: self.next_id(),
                        event: routed.event,
                    });
                    if let Some(message) = message {
                        post_to_worker(&message);
                    }
                }
            }
        }
    }

    /// Calls this global's delegate (if one is set).
    fn deliver(&self, event: &ManagerEvent) {
        let Some(delegate) = self.delegate.delegate.borrow().clone() else {
            return;
        };
        match event.clone() {
            ManagerEvent::DidBegin { id } => delegate.did_begin(&id),
            ManagerEvent::DidPause { id } => delegate.did_pause(&id),
            ManagerEvent::Progress {
                id,
                bytes_written,
                total_written,
                total_expected,
            } => delegate.did_write_data(&id, bytes_written, total_written, total_expected),
            ManagerEvent::Failed { id, error } => delegate.did_fail(&id, &error),
            ManagerEvent::Finished { id, size, sha256 } => {
                let finished = FinishedDownload {
                    identifier: id.clone(),
                    size,
                    sha256: crate::core::error::hex(&sha256),
                    container: self.container.clone(),
                };
                delegate.did_finish(&id, finished);
            }
            ManagerEvent::EssentialRequeued { id } => delegate.did_requeue_as_non_essential(&id),
        }
    }

    /// Takes a message from another context (BroadcastChannel or the worker's `message`).
    async fn receive(self: &Rc<Self>, data: JsValue) -> Result<()> {
        let envelope = from_js(&data)?;
        if envelope.database != self.database || envelope.from == self.context_id {
            return Ok(());
        }
        if self.closed.get() {
            return Ok(());
        }
        match envelope.body {
            Body::Event { route, eid, event } => {
                {
                    let mut seen = self.seen.borrow_mut();
                    if seen.contains(&eid) {
                        return Ok(());
                    }
                    seen.push_back(eid);
                    if seen.len() > 512 {
                        seen.pop_front();
                    }
                }
                let extension = matches!(self.caller, Caller::Extension { .. });
                match route {
                    Route::Pages if !extension => self.deliver(&event),
                    Route::Extension if extension => self.deliver(&event),
                    _ => {}
                }
            }
            Body::Changed | Body::Closed => {
                self.read_fresh().await?;
                // A context that closed let its downloads go: claims already wait for them.
                self.reconcile();
            }
            Body::Delegates => self.count_page_delegates().await,
        }
        Ok(())
    }

    /// Takes or lets go of the page-delegate lock to match the delegate slot (pages only), and
    /// tells the other contexts to count again.
    async fn sync_page_lock(self: &Rc<Self>) {
        if self.caller != Caller::Page || self.closed.get() {
            return;
        }
        let wanted = self.delegate.delegate.borrow().is_some();
        let held = self.delegate.page_lock.borrow().is_some();
        if wanted && !held {
            match acquire(
                &page_delegate_lock_name(&self.database),
                LockOptions::shared(),
            )
            .await
            {
                Ok(Some(guard)) => *self.delegate.page_lock.borrow_mut() = Some(guard),
                Ok(None) => {}
                Err(error) => warn("taking the page-delegate lock", &error),
            }
        } else if !wanted && held {
            let guard = self.delegate.page_lock.borrow_mut().take();
            if let Some(guard) = guard {
                guard.release().await;
            }
        } else {
            return;
        }
        self.count_page_delegates().await;
        self.broadcast(Body::Delegates);
    }

    /// Stops every transfer of this global as if the context were killed (fetches aborted,
    /// locks released, checkpoints kept) and closes the database connection.
    fn close(&self) {
        if self.closed.get() {
            return;
        }
        self.broadcast(Body::Closed);
        self.closed.set(true);
        self.wakeup.borrow_mut().take();
        let running = std::mem::take(&mut *self.running.borrow_mut());
        for (_, running) in running {
            running.abort.abort();
        }
        let claims = std::mem::take(&mut *self.claims.borrow_mut());
        for (_, claim) in claims {
            claim.abort();
        }
        drop(std::mem::take(&mut *self.prefetched.borrow_mut())); // aborted
        let watchers = std::mem::take(&mut *self.handed.borrow_mut());
        for (_, watcher) in watchers {
            watcher.abort();
        }
        self.delegate.page_lock.borrow_mut().take();
        if let Some(channel) = self.channel.borrow_mut().take() {
            channel.set_onmessage(None);
            channel.close();
        }
        self.on_message.borrow_mut().take();
        self.container.close();
    }
}

struct Handle {
    engine: Shared<LocalBoxFuture<'static, std::result::Result<Rc<Engine>, Error>>>,
    delegate: DelegateSlot,
}

/// Apple's `BADownloadManager` for the running global. Clones share one manager.
///
/// Every call waits for the manager to be open (its state loaded from IndexedDB); an error
/// opening it is returned by every call.
///
/// # Example
/// ```no_run
/// # async fn demo() -> Result<(), background_assets::core::error::Error> {
/// use background_assets::web::manager::DownloadManager;
/// let manager = DownloadManager::shared();
/// let running = manager.fetch_current_downloads().await?;
/// # let _ = running; Ok(()) }
/// ```
#[derive(Clone)]
pub struct DownloadManager {
    handle: Rc<Handle>,
}

impl std::fmt::Debug for DownloadManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DownloadManager").finish_non_exhaustive()
    }
}

thread_local! {
    static SHARED: RefCell<Option<DownloadManager>> = const { RefCell::new(None) };
}

impl DownloadManager {
    /// The manager of this global (page or service worker), opened on first use with
    /// [`ManagerConfig::for_global`] (the database [`Container::DEFAULT_NAME`]).
    ///
    /// # Example
    /// ```no_run
    /// use background_assets::web::manager::DownloadManager;
    /// let a = DownloadManager::shared();
    /// let b = DownloadManager::shared(); // the same manager
    /// # drop((a, b));
    /// ```
    pub fn shared() -> DownloadManager {
        SHARED.with(|shared| {
            shared
                .borrow_mut()
                .get_or_insert_with(|| {
                    DownloadManager::lazy(ManagerConfig::for_global().boxed_local())
                })
                .clone()
        })
    }

    /// Opens a manager on `config.database`, loading its stored state (or starting a new one
    /// from `config.declaration`), and starts what the stored state says should run.
    ///
    /// # Example
    /// ```no_run
    /// # async fn demo(config: background_assets::web::manager::ManagerConfig)
    /// #     -> Result<(), background_assets::core::error::Error> {
    /// use background_assets::web::manager::DownloadManager;
    /// let manager = DownloadManager::open(config).await?;
    /// # drop(manager); Ok(()) }
    /// ```
    pub async fn open(config: ManagerConfig) -> Result<DownloadManager> {
        let manager = DownloadManager::lazy(async move { Ok(config) }.boxed_local());
        manager.engine().await?;
        Ok(manager)
    }

    fn lazy(config: LocalBoxFuture<'static, Result<ManagerConfig>>) -> DownloadManager {
        let delegate: DelegateSlot = Rc::default();
        let slot = delegate.clone();
        let engine = async move { Engine::open(config.await?, slot).await }
            .boxed_local()
            .shared();
        DownloadManager {
            handle: Rc::new(Handle { engine, delegate }),
        }
    }

    async fn engine(&self) -> Result<Rc<Engine>> {
        let engine = self.handle.engine.clone().await?;
        engine.check_open()?;
        // A delegate set just before this call takes (or lets go of) its lock first.
        let syncing = self.handle.delegate.syncing.borrow().clone();
        if let Some(syncing) = syncing {
            syncing.await;
        }
        Ok(engine)
    }

    /// Sets (or with `None` removes) the delegate that receives this global's events.
    ///
    /// Routing as Apple does it: while at least one page has a delegate set, events go to every
    /// page with a delegate; otherwise to the service worker's (the extension's) delegate. A
    /// page with a delegate holds the shared Web Lock [`page_delegate_lock_name`] (released when
    /// the delegate is removed, the manager closed, or the tab closes); the next call on the
    /// manager waits until the lock is taken, so its events already count this delegate.
    ///
    /// # Example
    /// ```no_run
    /// use background_assets::web::manager::DownloadManager;
    /// DownloadManager::shared().set_delegate(None);
    /// ```
    pub fn set_delegate(&self, delegate: Option<Rc<dyn DownloadManagerDelegate>>) {
        *self.handle.delegate.delegate.borrow_mut() = delegate;
        let previous = self.handle.delegate.syncing.borrow_mut().take();
        let engine = self.handle.engine.clone();
        let task = async move {
            if let Some(previous) = previous {
                previous.await;
            }
            if let Ok(engine) = engine.await {
                engine.sync_page_lock().await;
            }
        }
        .boxed_local()
        .shared();
        *self.handle.delegate.syncing.borrow_mut() = Some(task.clone());
        js::spawn(task);
    }

    /// Who this manager calls the core as (page or extension).
    ///
    /// # Example
    /// ```no_run
    /// # async fn demo() -> Result<(), background_assets::core::error::Error> {
    /// use background_assets::core::manager::Caller;
    /// let caller = background_assets::web::manager::DownloadManager::shared().caller().await?;
    /// let in_page = caller == Caller::Page;
    /// # let _ = in_page; Ok(()) }
    /// ```
    pub async fn caller(&self) -> Result<Caller> {
        Ok(self.engine().await?.caller)
    }

    /// The container database the assets are stored in.
    ///
    /// # Example
    /// ```no_run
    /// # async fn demo() -> Result<(), background_assets::core::error::Error> {
    /// let container = background_assets::web::manager::DownloadManager::shared().container().await?;
    /// let stored = container.list().await?;
    /// # let _ = stored; Ok(()) }
    /// ```
    pub async fn container(&self) -> Result<Rc<Container>> {
        Ok(self.engine().await?.container.clone())
    }

    /// Schedules `download`; it runs when the queue decides (also from the worker).
    ///
    /// Errors (nothing changes): [`Error::DownloadAlreadyScheduled`],
    /// [`Error::DownloadInvalid`], [`Error::DownloadEssentialDownloadNotPermitted`], the policy's
    /// refusals ([`Error::SessionDownloadDisallowedByDomain`]...), [`Error::Storage`].
    ///
    /// # Example
    /// ```no_run
    /// # async fn demo(d: background_assets::core::download::UrlDownload)
    /// #     -> Result<(), background_assets::core::error::Error> {
    /// background_assets::web::manager::DownloadManager::shared().schedule(d).await?;
    /// # Ok(()) }
    /// ```
    pub async fn schedule(&self, download: UrlDownload) -> Result<()> {
        let engine = self.engine().await?;
        let caller = engine.caller;
        engine
            .transact(move |core| core.schedule(download, caller, now()))
            .await
    }

    /// Apple's `startForegroundDownload` (pages only: [`Error::CallFromExtensionNotAllowed`]
    /// from the worker). A scheduled download is promoted without restarting (a paused or
    /// pre-empted transfer continues from where it stopped); background transfers pre-empted
    /// to make room are paused (a `did_pause` each).
    ///
    /// # Example
    /// ```no_run
    /// # async fn demo(id: background_assets::core::download::Identifier)
    /// #     -> Result<(), background_assets::core::error::Error> {
    /// background_assets::web::manager::DownloadManager::shared().start_foreground(id).await?;
    /// # Ok(()) }
    /// ```
    pub async fn start_foreground(&self, target: impl Into<Foreground>) -> Result<()> {
        let engine = self.engine().await?;
        let caller = engine.caller;
        let target = target.into();
        // The pre-empted downloads are paused wherever they run (by reconciling with the state).
        engine
            .transact(move |core| core.start_foreground(target, caller, now()))
            .await
            .map(drop)
    }

    /// Apple's `fetchCurrentDownloads`: the waiting, running and paused downloads.
    ///
    /// # Example
    /// ```no_run
    /// # async fn demo() -> Result<(), background_assets::core::error::Error> {
    /// use background_assets::core::download::DownloadState;
    /// let manager = background_assets::web::manager::DownloadManager::shared();
    /// let paused = manager.fetch_current_downloads().await?
    ///     .into_iter().filter(|d| d.state == DownloadState::Paused).count();
    /// # let _ = paused; Ok(()) }
    /// ```
    pub async fn fetch_current_downloads(&self) -> Result<Vec<DownloadInfo>> {
        let engine = self.engine().await?;
        engine.read_fresh().await?;
        let mut current = engine.core.borrow().current_downloads();
        for info in &mut current {
            // Another context runs it: the stored state has its progress as of that context's
            // last decision; its checkpoint has the bytes stored since.
            let elsewhere = matches!(
                info.state,
                DownloadState::Downloading | DownloadState::Paused
            ) && !engine.running.borrow().contains_key(&info.identifier);
            if elsewhere {
                let record = engine
                    .container
                    .load_checkpoint(info.identifier.as_str())
                    .await?;
                if let Some(record) = record {
                    info.progress.total_written = info.progress.total_written.max(record.stored);
                }
            }
        }
        Ok(current)
    }

    /// The latest progress of `id`'s transfer in this global (bytes received, restarts, wasted
    /// bytes...), if this global runs it.
    ///
    /// # Example
    /// ```no_run
    /// # async fn demo(id: background_assets::core::download::Identifier)
    /// #     -> Result<(), background_assets::core::error::Error> {
    /// let manager = background_assets::web::manager::DownloadManager::shared();
    /// if let Some(progress) = manager.transfer_progress(&id).await? {
    ///     let _ = (progress.bytes_received, progress.wasted_bytes);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn transfer_progress(&self, id: &Identifier) -> Result<Option<Progress>> {
        let engine = self.engine().await?;
        let running = engine.running.borrow();
        Ok(running.get(id).and_then(|r| r.control.progress()))
    }

    /// Cancels a scheduled download: `did_fail` with [`Error::Cancelled`], its stored bytes
    /// deleted. [`Error::DownloadDoesNotExist`], [`Error::DownloadNotScheduled`].
    ///
    /// # Example
    /// ```no_run
    /// # async fn demo(id: background_assets::core::download::Identifier)
    /// #     -> Result<(), background_assets::core::error::Error> {
    /// let manager = background_assets::web::manager::DownloadManager::shared();
    /// manager.cancel(&id).await?;
    /// # Ok(()) }
    /// ```
    pub async fn cancel(&self, id: &Identifier) -> Result<()> {
        let engine = self.engine().await?;
        let cancelled = id.clone();
        engine.transact(move |core| core.cancel(&cancelled)).await?;
        engine.unreported.borrow_mut().remove(id);
        // A transfer of this global was cancelled by reconciling (its end deletes the rest);
        // one run by another context is cancelled there. Nobody runs it: delete it here.
        let owner = owner_lock_name(id);
        let running_somewhere = query().await.map(|s| s.is_held(&owner)).unwrap_or(false);
        if !running_somewhere {
            engine.container.delete(id.as_str()).await?;
        }
        Ok(())
    }

    /// Settles a browser fetch the library started (Background Fetch; call it from the worker's
    /// `backgroundfetchsuccess`, `backgroundfetchfail` and `backgroundfetchabort` with
    /// `event.registration`, inside `waitUntil` — the worker entry `js/extension.js` does).
    ///
    /// - success: the record's body goes through the normal transfer path into the container
    ///   (written, hashed, verified against the declared size and SHA-256) and the download
    ///   finishes with the same `did_finish` as without Background Fetch;
    /// - failure: the normal transfer takes over from here (its success or typed error are the
    ///   app's events);
    /// - aborted by the user while still `downloading`: the download fails with
    ///   [`Error::Cancelled`].
    ///
    /// Returns once the result is stored (or another context stored one). A fetch that is not
    /// the library's, or belongs to another container, is ignored.
    ///
    /// # Example
    /// ```no_run
    /// # async fn demo(registration: wasm_bindgen::JsValue) -> Result<(), background_assets::core::error::Error> {
    /// use background_assets::web::background_fetch::BrowserFetch;
    /// let manager = background_assets::web::manager::DownloadManager::shared();
    /// manager.settle_browser_fetch(&BrowserFetch::from_registration(registration)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn settle_browser_fetch(&self, fetch: &BrowserFetch) -> Result<()> {
        let Some((database, id)) = background_fetch::parse_fetch_id(&fetch.id()) else {
            return Ok(());
        };
        let engine = self.engine().await?;
        if database != engine.database {
            return Ok(());
        }
        let id = Identifier::new(id)?;
        let aborted =
            fetch.result() == BrowserFetchResult::Failure && fetch.failure_reason() == "aborted";
        if !aborted {
            return engine.settle_browser_fetch(&id, fetch).await;
        }
        let marker = aborted_marker(&fetch.id());
        let by_library = engine
            .container
            .get_meta(&marker)
            .await?
            .is_some_and(|v| v.is_truthy());
        if by_library {
            engine.container.put_meta(&marker, &JsValue::FALSE).await?;
        } else {
            // The user stopped it in the browser's UI: as Apple's user cancel.
            engine.fail_aborted(&id).await;
        }
        Ok(())
    }

    /// Pauses a waiting or running download (its received bytes are kept). `did_pause`.
    ///
    /// # Example
    /// ```no_run
    /// # async fn demo(id: background_assets::core::download::Identifier)
    /// #     -> Result<(), background_assets::core::error::Error> {
    /// let manager = background_assets::web::manager::DownloadManager::shared();
    /// manager.pause(&id).await?;
    /// manager.resume(&id).await?; // continues with a Range request
    /// # Ok(()) }
    /// ```
    pub async fn pause(&self, id: &Identifier) -> Result<()> {
        let engine = self.engine().await?;
        let id = id.clone();
        engine.transact(move |core| core.pause(&id)).await.map(drop)
    }

    /// Resumes a paused download: it waits for a slot and continues from its checkpoint.
    ///
    /// # Example
    /// ```no_run
    /// # async fn demo(id: background_assets::core::download::Identifier)
    /// #     -> Result<(), background_assets::core::error::Error> {
    /// let manager = background_assets::web::manager::DownloadManager::shared();
    /// manager.resume(&id).await?;
    /// # Ok(()) }
    /// ```
    pub async fn resume(&self, id: &Identifier) -> Result<()> {
        let engine = self.engine().await?;
        let id = id.clone();
        engine.transact(move |core| core.resume(&id)).await
    }

    /// Stops this global's manager: its transfers end as if the context were killed (the
    /// state still says they run, so the next manager opened on the database continues them from
    /// their checkpoints), no more events are delivered, and the database connection closes.
    /// Later calls on this manager fail with [`Error::Storage`]; after closing the shared
    /// manager, [`shared`](Self::shared) opens a new one.
    ///
    /// # Example
    /// ```no_run
    /// # async fn demo(m: background_assets::web::manager::DownloadManager) {
    /// m.close().await;
    /// # }
    /// ```
    pub async fn close(&self) {
        SHARED.with(|shared| {
            let mut shared = shared.borrow_mut();
            if shared
                .as_ref()
                .is_some_and(|m| Rc::ptr_eq(&m.handle, &self.handle))
            {
                *shared = None;
            }
        });
        if let Ok(engine) = self.handle.engine.clone().await {
            let page_lock = engine.delegate.page_lock.borrow_mut().take();
            engine.close();
            if let Some(page_lock) = page_lock {
                // Let go before returning: the other contexts count one page delegate less.
                page_lock.release().await;
            }
        }
    }

    /// The app launched: the initial download restrictions stop applying (a page's manager
    /// does this when it opens). Returns whether this call lifted them.
    ///
    /// # Example
    /// ```no_run
    /// # async fn demo() -> Result<(), background_assets::core::error::Error> {
    /// let manager = background_assets::web::manager::DownloadManager::shared();
    /// let lifted_now = manager.did_launch().await?;
    /// # let _ = lifted_now; Ok(()) }
    /// ```
    pub async fn did_launch(&self) -> Result<bool> {
        let engine = self.engine().await?;
        engine.transact(|core| Ok(core.did_launch())).await
    }

    /// Changes the concurrency and bandwidth limits.
    ///
    /// # Example
    /// ```no_run
    /// # async fn demo() -> Result<(), background_assets::core::error::Error> {
    /// use background_assets::core::queue::QueueLimits;
    /// let manager = background_assets::web::manager::DownloadManager::shared();
    /// manager.set_limits(QueueLimits { max_concurrent: 1, bandwidth: Some(1 << 20) }).await?;
    /// # Ok(()) }
    /// ```
    pub async fn set_limits(&self, limits: QueueLimits) -> Result<()> {
        let engine = self.engine().await?;
        engine
            .transact(move |core| {
                core.set_limits(limits);
                Ok(())
            })
            .await
    }

    /// Schedules `download` as `caller` (the extension's lifecycle handlers schedule as
    /// `Caller::Extension { event: Some(..) }`, which may schedule essential downloads).
    ///
    /// # Example
    /// ```no_run
    /// # async fn demo(d: background_assets::core::download::UrlDownload)
    /// #     -> Result<(), background_assets::core::error::Error> {
    /// use background_assets::core::manager::{Caller, ExtensionEvent};
    /// let manager = background_assets::web::manager::DownloadManager::shared();
    /// let installing = Caller::Extension { event: Some(ExtensionEvent::Install) };
    /// manager.schedule_as(d, installing).await?;
    /// # Ok(()) }
    /// ```
    pub async fn schedule_as(&self, download: UrlDownload, caller: Caller) -> Result<()> {
        self.decide(move |core| core.schedule(download, caller, now()))
            .await
    }

    /// A decision on the shared state: under the state's Web Lock ([`state_lock_name`]), the
    /// stored state is reloaded if another context changed it, `f` runs on it, what may start
    /// starts, and the state is saved (waiting for the commit); then the other contexts are told,
    /// this global's transfers follow the state and the events are delivered. Nothing is saved
    /// when `f` fails.
    pub(crate) async fn decide<T: 'static>(
        &self,
        f: impl FnOnce(&mut CoreManager) -> Result<T> + 'static,
    ) -> Result<T> {
        let engine = self.engine().await?;
        engine.transact(f).await
    }

    /// What this global's decisions and transfer starts cost since the manager opened: batches,
    /// decisions, and the time waiting for and holding the state lock, reading, computing,
    /// saving, starting and reporting ([`DecisionStats`]). A diagnostic for tuning (the benchmark
    /// prints it).
    ///
    /// # Example
    /// ```no_run
    /// # async fn demo(m: background_assets::web::manager::DownloadManager) -> Result<(), background_assets::core::error::Error> {
    /// let stats = m.decision_stats().await?;
    /// assert!(stats.decisions >= stats.batches);
    /// # Ok(()) }
    /// ```
    pub async fn decision_stats(&self) -> Result<DecisionStats> {
        Ok(*self.engine().await?.stats.borrow())
    }

    /// Reads the core's state (the latest stored one).
    #[allow(dead_code)] // the asset-pack API (packs.rs) is its user
    pub(crate) async fn inspect<T>(&self, f: impl FnOnce(&CoreManager) -> T) -> Result<T> {
        self.engine().await?.read_fresh().await?;
        self.inspect_current(f).await
    }

    /// [`inspect`](Self::inspect) without reading the stored state first: this global's state
    /// as of the last change it saw (what a watcher of [`changes`](Self::changes) looks at).
    pub(crate) async fn inspect_current<T>(&self, f: impl FnOnce(&CoreManager) -> T) -> Result<T> {
        let engine = self.engine().await?;
        engine.check_open()?;
        let core = engine.core.borrow();
        Ok(f(&core))
    }

    /// A stream that receives `()` after every change of the state this global sees (its own
    /// decisions, transfers ending, other contexts' changes). Dropping it unsubscribes.
    #[allow(dead_code)] // the asset-pack API (packs.rs) is its user
    pub(crate) async fn changes(&self) -> Result<futures::channel::mpsc::UnboundedReceiver<()>> {
        let engine = self.engine().await?;
        let (sender, receiver) = futures::channel::mpsc::unbounded();
        engine.watchers.borrow_mut().push(sender);
        Ok(receiver)
    }

    /// Where the declaration was loaded from ([`ManagerConfig::declaration_url`]), if it was:
    /// `check_for_updates` re-reads it (packs.rs).
    pub(crate) async fn declaration_url(&self) -> Result<Option<url::Url>> {
        Ok(self.engine().await?.declaration_url.clone())
    }

    /// Takes a message another context posted to this one (the worker entry passes the
    /// messages pages post to the service worker): events routed to the extension, state
    /// changes.
    ///
    /// # Example
    /// ```no_run
    /// # async fn demo(data: wasm_bindgen::JsValue) {
    /// let manager = background_assets::web::manager::DownloadManager::shared();
    /// manager.deliver_remote(data).await.ok();
    /// # }
    /// ```
    pub async fn deliver_remote(&self, message: JsValue) -> Result<()> {
        let engine = self.engine().await?;
        engine.receive(message).await
    }

    /// Apple's `withExclusiveControl`: runs `f` while holding the Web Lock [`EXCLUSIVE_LOCK`]
    /// (waiting for it as long as it takes).
    ///
    /// # Example
    /// ```no_run
    /// # async fn demo() -> Result<(), background_assets::core::error::Error> {
    /// use background_assets::web::manager::DownloadManager;
    /// let manager = DownloadManager::shared();
    /// let current = manager
    ///     .with_exclusive_control(|| async { manager.fetch_current_downloads().await })
    ///     .await??;
    /// # drop(current); Ok(()) }
    /// ```
    pub async fn with_exclusive_control<F, Fut, T>(&self, f: F) -> Result<T>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        exclusively(LockOptions::exclusive(), f).await
    }

    /// Apple's `withExclusiveControl(beforeDate:)`: like
    /// [`with_exclusive_control`](Self::with_exclusive_control), but fails with
    /// [`Error::LockTimeout`] (and does not run `f`) when the lock is not acquired before
    /// `deadline_ms` (`Date.now()` milliseconds).
    ///
    /// # Example
    /// ```no_run
    /// # async fn demo() -> Result<(), background_assets::core::error::Error> {
    /// use background_assets::web::manager::DownloadManager;
    /// let deadline = js_sys::Date::now() + 500.0;
    /// DownloadManager::shared().with_exclusive_control_before(deadline, || async {}).await?;
    /// # Ok(()) }
    /// ```
    pub async fn with_exclusive_control_before<F, Fut, T>(
        &self,
        deadline_ms: f64,
        f: F,
    ) -> Result<T>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        let left = (deadline_ms - js_sys::Date::now()).max(0.0) as u64;
        let options = if left == 0 {
            LockOptions::exclusive().if_available()
        } else {
            LockOptions::exclusive().timeout_ms(left)
        };
        exclusively(options, f).await
    }
}

/// Runs `f` holding [`EXCLUSIVE_LOCK`] taken with `options`; a lock not granted (an
/// `if_available` request that found it held) is [`Error::LockTimeout`].
async fn exclusively<F, Fut, T>(options: LockOptions, f: F) -> Result<T>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = T>,
{
    let guard = acquire(EXCLUSIVE_LOCK, options)
        .await?
        .ok_or_else(|| Error::LockTimeout {
            name: EXCLUSIVE_LOCK.into(),
            timeout_ms: 0,
        })?;
    let value = f().await;
    guard.release().await;
    Ok(value)
}
