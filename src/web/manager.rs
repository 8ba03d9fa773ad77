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
//!  poll_event ─▶ the delegate set on this global (did_begin, did_pause, did_write_data,
//!                did_fail, did_finish)
//! ```
//!
//! State: the core manager is loaded from the container database when the manager opens and
//! saved after each decision, so a context opened later (another page, the worker after a
//! restart) sees the same scheduled downloads. A download that the stored state says is running
//! but that no transfer of this global runs is started again at open (its transfer waits for the
//! download's Web Lock and continues from its checkpoint).
//!
//! Scope today: one global. Events are delivered to the delegate set in *this* global, whatever
//! route the core chose for them ([`Route`](crate::core::manager::Route)); with no delegate set
//! they are dropped. Routing to other tabs or to the worker's extension handler, and reloading
//! the state another context changed meanwhile, come with the cross-context layer.
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
use std::collections::BTreeMap;
use std::future::Future;
use std::rc::Rc;

use futures::future::{abortable, AbortHandle, FutureExt, LocalBoxFuture, Shared};
use gloo_timers::callback::Timeout;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::spawn_local;

use crate::core::declaration::{parse_declaration, Declaration};
use crate::core::download::{DownloadState, Identifier, UrlDownload};
use crate::core::error::Error;
use crate::core::manager::{
    Caller, DownloadInfo, Foreground, Manager as CoreManager, ManagerEvent,
};
use crate::core::queue::QueueLimits;
use crate::core::transfer::{Progress, TransferConfig, TransferSpec};
use crate::core::Millis;
use crate::web::container::{Container, StoredAsset};
use crate::web::js;
use crate::web::locks::{acquire, LockOptions};
use crate::web::transfer::{run, LockPolicy, RunOptions, TransferControl, DEFAULT_READ_BUFFER};

type Result<T> = std::result::Result<T, Error>;

/// The Web Lock held while [`DownloadManager::with_exclusive_control`] runs its closure.
///
/// # Example
/// ```
/// assert_eq!(background_assets::web::manager::EXCLUSIVE_LOCK, "background-assets/manager");
/// ```
pub const EXCLUSIVE_LOCK: &str = "background-assets/manager";

/// The `meta` key the manager's state is stored under in the container database.
///
/// # Example
/// ```no_run
/// # async fn demo(c: background_assets::web::container::Container) {
/// use background_assets::web::manager::STATE_KEY;
/// let stored_json = c.get_meta(STATE_KEY).await.unwrap().and_then(|v| v.as_string());
/// # let _ = stored_json; }
/// ```
pub const STATE_KEY: &str = "manager";

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
    if hex.len() != 64 {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2).ok_or_else(bad)?, 16)
            .map_err(|_| bad())?;
    }
    Ok(out)
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
    /// Concurrency and bandwidth limits.
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
pub type Credentials = Vec<(String, String)>;

type DelegateSlot = Rc<RefCell<Option<Rc<dyn DownloadManagerDelegate>>>>;

/// One transfer this global runs.
struct Running {
    run: u64,
    control: TransferControl,
    abort: AbortHandle,
}

/// The opened manager: the core, the container and the running transfers.
struct Engine {
    container: Rc<Container>,
    caller: Caller,
    page_origin: url::Origin,
    transfer: TransferConfig,
    core: RefCell<CoreManager>,
    running: RefCell<BTreeMap<Identifier, Running>>,
    runs: Cell<u64>,
    delegate: DelegateSlot,
    wakeup: RefCell<Option<Timeout>>,
    closed: Cell<bool>,
    /// Transfers that finished after the core had already paused or pre-empted them: reported
    /// when the core starts them again (nothing is fetched twice).
    unreported: RefCell<BTreeMap<Identifier, StoredAsset>>,
    /// Who is told after every state change ([`DownloadManager::changes`]).
    watchers: RefCell<Vec<futures::channel::mpsc::UnboundedSender<()>>>,
    /// Where the declaration was loaded from ([`ManagerConfig::declaration_url`]).
    declaration_url: Option<url::Url>,
}

impl Engine {
    async fn open(config: ManagerConfig, delegate: DelegateSlot) -> Result<Rc<Engine>> {
        let caller = config.caller.unwrap_or_else(detect_caller);
        let container = Container::open(&config.database).await?;
        let stored = container.get_meta(STATE_KEY).await?;
        let mut core = match stored.and_then(|v| v.as_string()) {
            Some(json) => {
                serde_json::from_str::<CoreManager>(&json).map_err(|e| Error::Storage {
                    message: format!("stored manager state in `{}`: {e}", config.database),
                })?
            }
            None => CoreManager::new(config.declaration.clone(), &config.page_url),
        };
        core.set_limits(config.limits);
        if caller == Caller::Page {
            // A page of the app is open: the app has launched.
            core.did_launch();
        }
        let orphans: Vec<Identifier> = core
            .current_downloads()
            .into_iter()
            .filter(|d| d.state == DownloadState::Downloading)
            .map(|d| d.identifier)
            .collect();
        let engine = Rc::new(Engine {
            container: Rc::new(container),
            caller,
            page_origin: config.page_url.origin(),
            transfer: config.transfer,
            core: RefCell::new(core),
            running: RefCell::default(),
            runs: Cell::new(0),
            delegate,
            wakeup: RefCell::default(),
            closed: Cell::new(false),
            unreported: RefCell::default(),
            watchers: RefCell::default(),
            declaration_url: config.declaration_url.clone(),
        });
        engine.save().await?;
        for id in orphans {
            engine.spawn_transfer(id);
        }
        engine.pump();
        Ok(engine)
    }

    /// Saves the core's state now: the write is issued before this returns (so saves commit in
    /// the order of the decisions); the future waits for its commit.
    fn save(&self) -> impl Future<Output = Result<()>> + 'static {
        let json = serde_json::to_string(&*self.core.borrow());
        let issued = json
            .map_err(|e| Error::Storage {
                message: format!("serializing the manager state: {e}"),
            })
            .map(|json| {
                self.container
                    .put_meta(STATE_KEY, &JsValue::from_str(&json))
            });
        async move { issued?.await }
    }

    fn save_in_background(&self) {
        let saved = self.save();
        spawn_local(async move {
            if let Err(error) = saved.await {
                warn("saving the state", &error);
            }
        });
    }

    /// Starts what the queue allows, re-arms the wake-up timer, delivers events.
    fn pump(self: &Rc<Self>) {
        if self.closed.get() {
            return;
        }
        let started = self.core.borrow_mut().poll_start(now());
        for id in &started {
            self.spawn_transfer(id.clone());
        }
        self.arm_wakeup();
        if !started.is_empty() {
            self.save_in_background();
        }
        self.dispatch();
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

    /// Runs `id`'s transfer, or resumes it if this global still has it (paused or pre-empted).
    fn spawn_transfer(self: &Rc<Self>, id: Identifier) {
        let finished = self.unreported.borrow_mut().remove(&id);
        if let Some(asset) = finished {
            let engine = self.clone();
            spawn_local(async move {
                engine.report_result(&id, Ok(asset)).await;
                engine.pump();
            });
            return;
        }
        if let Some(running) = self.running.borrow().get(&id) {
            running.control.resume();
            return;
        }
        let (spec, allow) = {
            let core = self.core.borrow();
            let Some(download) = core.description(&id) else {
                return;
            };
            let mut spec = TransferSpec::new(id.as_str(), download.request.url.as_str());
            spec.expected_size = download.file_size;
            spec.sha256 = core.pack_file(&id).map(|file| file.sha256);
            spec.config = self.transfer.clone();
            let allow = core.declaration().restrictions.domain_allow_list.clone();
            (spec, allow)
        };
        let run_number = self.runs.get() + 1;
        self.runs.set(run_number);
        let control = TransferControl::new();
        let reporter = Rc::downgrade(self);
        let progress_id = id.clone();
        let options = RunOptions {
            allow,
            page_origin: Some(self.page_origin.clone()),
            lock: LockPolicy::Wait,
            read_buffer: DEFAULT_READ_BUFFER,
            control: Some(control.clone()),
            on_progress: Some(Box::new(move |progress: &Progress| {
                if let Some(engine) = reporter.upgrade() {
                    engine.report_progress(&progress_id, progress);
                }
            })),
        };
        let engine = self.clone();
        let task_id = id.clone();
        let last = control.clone();
        let (task, abort) = abortable(async move {
            let result = run(&engine.container, spec, options).await;
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
            engine.report_result(&task_id, result).await;
            engine.pump();
        });
        self.running.borrow_mut().insert(
            id.clone(),
            Running {
                run: run_number,
                control: control.clone(),
                abort,
            },
        );
        spawn_local(async move {
            let _ = task.await;
        });
    }

    fn report_progress(self: &Rc<Self>, id: &Identifier, progress: &Progress) {
        let outcome = self.core.borrow_mut().on_progress(id, progress);
        if let Err(error @ Error::SessionDownloadAllowanceExceeded { .. }) = outcome {
            // The core failed it: stop the transfer (its bytes are discarded).
            if let Some(running) = self.running.borrow_mut().remove(id) {
                running.control.cancel();
            }
            warn(&format!("`{id}`"), &error);
            self.save_in_background();
        }
        self.dispatch();
    }

    async fn report_result(self: &Rc<Self>, id: &Identifier, result: Result<StoredAsset>) {
        let state = self.core.borrow().download(id).map(|d| d.state);
        let scheduled = state.is_some_and(DownloadState::is_scheduled);
        let mut obsolete = Vec::new();
        match result {
            Ok(asset) if scheduled && state != Some(DownloadState::Downloading) => {
                // Paused or pre-empted after its last byte: report it when it starts again.
                self.unreported.borrow_mut().insert(id.clone(), asset);
            }
            Ok(asset) if scheduled => {
                let finished = decode_sha256(&asset.sha256)
                    .and_then(|sha256| self.core.borrow_mut().on_finished(id, asset.size, sha256));
                match finished {
                    Ok(old) => obsolete = old,
                    Err(error) => warn(&format!("finishing `{id}`"), &error),
                }
            }
            Err(error) if scheduled => {
                if let Err(e) = self.core.borrow_mut().on_failed(id, error, now()) {
                    warn(&format!("failing `{id}`"), &e);
                }
            }
            // Cancelled (or failed by the core) while it ran: nothing to report.
            _ => {}
        }
        if self
            .core
            .borrow()
            .download(id)
            .is_some_and(|d| d.state == DownloadState::Failed)
        {
            obsolete.push(id.clone());
        }
        let saved = self.save();
        self.dispatch();
        if let Err(error) = saved.await {
            warn("saving the state", &error);
        }
        self.notify_changed();
        for gone in obsolete {
            if let Err(error) = self.container.delete(gone.as_str()).await {
                warn(&format!("deleting `{gone}`"), &error);
            }
        }
    }

    /// Tells every [`DownloadManager::changes`] receiver that the state changed.
    fn notify_changed(&self) {
        self.watchers
            .borrow_mut()
            .retain(|watcher| watcher.unbounded_send(()).is_ok());
    }

    /// Delivers the core's pending events to this global's delegate (dropped if none is set).
    fn dispatch(&self) {
        let events: Vec<ManagerEvent> = {
            let mut core = self.core.borrow_mut();
            std::iter::from_fn(|| core.poll_event())
                .map(|routed| routed.event)
                .collect()
        };
        let Some(delegate) = self.delegate.borrow().clone() else {
            return;
        };
        for event in events {
            match event {
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
                ManagerEvent::EssentialRequeued { id } => {
                    delegate.did_requeue_as_non_essential(&id)
                }
            }
        }
    }

    /// After a decision: deliver its events, save it (waiting for the commit), start what may
    /// start.
    async fn decided(self: &Rc<Self>) -> Result<()> {
        self.dispatch();
        self.save().await?;
        self.notify_changed();
        self.pump();
        Ok(())
    }
}

impl Engine {
    /// Stops every transfer of this global as if the context were killed (fetches aborted,
    /// locks released, checkpoints kept) and closes the database connection.
    fn close(&self) {
        self.closed.set(true);
        self.wakeup.borrow_mut().take();
        let running = std::mem::take(&mut *self.running.borrow_mut());
        for (_, running) in running {
            running.abort.abort();
        }
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
        if engine.closed.get() {
            return Err(Error::Storage {
                message: format!(
                    "the download manager on `{}` was closed",
                    engine.container.name()
                ),
            });
        }
        Ok(engine)
    }

    /// Sets (or with `None` removes) the delegate that receives this global's events.
    ///
    /// # Example
    /// ```no_run
    /// use background_assets::web::manager::DownloadManager;
    /// DownloadManager::shared().set_delegate(None);
    /// ```
    pub fn set_delegate(&self, delegate: Option<Rc<dyn DownloadManagerDelegate>>) {
        *self.handle.delegate.borrow_mut() = delegate;
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
        engine.core.borrow_mut().schedule(download, caller, now())?;
        engine.decided().await
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
        let preempted = engine
            .core
            .borrow_mut()
            .start_foreground(target, caller, now())?;
        for id in &preempted {
            if let Some(running) = engine.running.borrow().get(id) {
                running.control.pause();
            }
        }
        engine.decided().await
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
        Ok(self.engine().await?.core.borrow().current_downloads())
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
        engine.core.borrow_mut().cancel(id)?;
        engine.unreported.borrow_mut().remove(id);
        let running = engine.running.borrow_mut().remove(id);
        match running {
            // The run discards its chunks and ends; its end deletes the rest.
            Some(running) => running.control.cancel(),
            None => {
                engine.container.delete(id.as_str()).await?;
            }
        }
        engine.decided().await
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
        engine.core.borrow_mut().pause(id)?;
        if let Some(running) = engine.running.borrow().get(id) {
            running.control.pause();
        }
        engine.decided().await
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
        engine.core.borrow_mut().resume(id)?;
        engine.decided().await
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
            engine.close();
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
        let lifted = engine.core.borrow_mut().did_launch();
        engine.decided().await?;
        Ok(lifted)
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
        engine.core.borrow_mut().set_limits(limits);
        engine.decided().await
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

    /// A decision on the core: runs `f`, then delivers the events, saves the state (waiting for
    /// the commit) and starts what may start. Nothing is saved when `f` fails.
    pub(crate) async fn decide<T>(
        &self,
        f: impl FnOnce(&mut CoreManager) -> Result<T>,
    ) -> Result<T> {
        let engine = self.engine().await?;
        let value = f(&mut engine.core.borrow_mut())?;
        engine.decided().await?;
        Ok(value)
    }

    /// Reads the core's state.
    #[allow(dead_code)] // the asset-pack API (packs.rs) is its user
    pub(crate) async fn inspect<T>(&self, f: impl FnOnce(&CoreManager) -> T) -> Result<T> {
        let engine = self.engine().await?;
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
        let _engine = self.engine().await?;
        Err(Error::Unsupported {
            what: format!(
                "a message from another context ({}): cross-context routing is not built yet",
                js::describe(&message)
            ),
        })
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
