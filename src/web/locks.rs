//! Web Locks with a typed face: one lock per running download, so exactly one context (a page or
//! the service worker) runs a transfer.
//!
//! [`acquire`] asks `navigator.locks` for a lock and returns a [`LockGuard`] that holds it until it
//! is dropped (RAII: the lock callback returns a promise that the guard resolves on drop). A lock
//! can be *stolen* (`steal: true`): the old holder's request then rejects with `AbortError` and
//! its guard reports it through [`LockGuard::is_lost`] / [`LockGuard::lost`]. A lock does not keep
//! a worker alive and a killed holder's lock is released, so locks never replace the epoch
//! (fencing token) checked by the container on every write.
//!
//! ```text
//!  acquire(name) --request(name, opts, cb)--> navigator.locks
//!        ^                                        | cb(lock) -> returns `hold` promise
//!        +---------- LockGuard (resolve `hold`) <-+
//!  drop(guard) -> resolve(hold) -> lock released
//!  steal by another -> request promise rejects (AbortError) -> guard.lost() fires
//! ```
//!
//! Works in pages and workers: the manager is read from `globalThis.navigator.locks`.
//!
//! # Example
//! ```no_run
//! # async fn run() -> Result<(), background_assets::core::error::Error> {
//! use background_assets::web::locks::{acquire, LockOptions};
//! let guard = acquire("download:level-2", LockOptions::exclusive().timeout_ms(5_000))
//!     .await?
//!     .expect("waited, so always granted");
//! // ... run the transfer; check guard.is_lost() between chunks ...
//! drop(guard); // releases the lock
//! # Ok(()) }
//! ```

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use futures::channel::oneshot;
use js_sys::{Function, Promise};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use super::js;
use crate::core::error::Error;

#[wasm_bindgen]
extern "C" {
    /// `navigator.locks`, bound directly (works the same in pages and workers).
    type LockManagerJs;
    #[wasm_bindgen(method, catch, js_name = request)]
    fn request(
        this: &LockManagerJs,
        name: &str,
        options: &JsValue,
        callback: &Function,
    ) -> Result<Promise, JsValue>;
    #[wasm_bindgen(method, catch, js_name = query)]
    fn query(this: &LockManagerJs) -> Result<Promise, JsValue>;
}

/// Whether a lock excludes every other holder or shares with other shared holders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LockMode {
    /// One holder at a time (a running transfer).
    #[default]
    Exclusive,
    /// Many holders at once, excluded by an exclusive holder (observers, readers).
    Shared,
}

impl LockMode {
    fn as_str(self) -> &'static str {
        match self {
            LockMode::Exclusive => "exclusive",
            LockMode::Shared => "shared",
        }
    }

    fn parse(text: &str) -> LockMode {
        if text == "shared" {
            LockMode::Shared
        } else {
            LockMode::Exclusive
        }
    }
}

/// How to ask for a lock.
///
/// # Example
/// ```
/// # #[cfg(target_arch = "wasm32")] {
/// use background_assets::web::locks::{LockMode, LockOptions};
/// let try_once = LockOptions::exclusive().if_available();
/// assert!(try_once.if_available && try_once.mode == LockMode::Exclusive);
/// # }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LockOptions {
    /// Exclusive or shared.
    pub mode: LockMode,
    /// Do not wait: [`acquire`] returns `Ok(None)` when the lock is held elsewhere.
    pub if_available: bool,
    /// Take the lock from its current holders (their guards report it as lost).
    pub steal: bool,
    /// Give up waiting after this many milliseconds with [`Error::LockTimeout`].
    pub timeout_ms: Option<u64>,
}

impl LockOptions {
    /// An exclusive lock, waiting as long as it takes.
    pub fn exclusive() -> Self {
        LockOptions::default()
    }

    /// A shared lock, waiting as long as it takes.
    pub fn shared() -> Self {
        LockOptions {
            mode: LockMode::Shared,
            ..LockOptions::default()
        }
    }

    /// Do not wait; get `Ok(None)` when the lock is held elsewhere.
    pub fn if_available(mut self) -> Self {
        self.if_available = true;
        self
    }

    /// Steal the lock from its holders.
    pub fn steal(mut self) -> Self {
        self.steal = true;
        self
    }

    /// Stop waiting after `ms` milliseconds.
    pub fn timeout_ms(mut self, ms: u64) -> Self {
        self.timeout_ms = Some(ms);
        self
    }
}

/// What the guard and the lock request share: whether the lock was lost, whether the request
/// has settled (lock released or stolen), and who waits for either.
#[derive(Default)]
struct LostState {
    lost: Cell<bool>,
    settled: Cell<bool>,
    wakers: RefCell<Vec<Waker>>,
}

impl LostState {
    fn settle(&self, lost: bool) {
        self.lost.set(self.lost.get() || lost);
        self.settled.set(true);
        for waker in self.wakers.borrow_mut().drain(..) {
            waker.wake();
        }
    }

    fn register(&self, cx: &Context<'_>) {
        let mut wakers = self.wakers.borrow_mut();
        if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
            wakers.push(cx.waker().clone());
        }
    }
}

/// A held Web Lock; dropping it releases the lock.
///
/// # Example
/// ```no_run
/// # async fn run() -> Result<(), background_assets::core::error::Error> {
/// use background_assets::web::locks::{acquire, LockOptions};
/// let guard = acquire("x", LockOptions::exclusive()).await?.unwrap();
/// assert_eq!(guard.name(), "x");
/// # Ok(()) }
/// ```
pub struct LockGuard {
    name: String,
    mode: LockMode,
    release: Release,
    state: Rc<LostState>,
}

impl std::fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockGuard")
            .field("name", &self.name)
            .field("mode", &self.mode)
            .field("lost", &self.state.lost.get())
            .finish()
    }
}

impl LockGuard {
    /// The lock's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The mode it was granted in.
    pub fn mode(&self) -> LockMode {
        self.mode
    }

    /// Whether another context stole the lock (this holder must stop writing).
    pub fn is_lost(&self) -> bool {
        self.state.lost.get()
    }

    /// A future that completes when the lock is stolen (never, if it is not).
    pub fn lost(&self) -> Lost {
        Lost {
            state: self.state.clone(),
        }
    }

    /// Releases the lock and waits until the lock manager has let it go, so that a request made
    /// afterwards sees it free. (Dropping the guard releases it too, a moment later.)
    ///
    /// # Example
    /// ```no_run
    /// # async fn run() -> Result<(), background_assets::core::error::Error> {
    /// use background_assets::web::locks::{acquire, LockOptions};
    /// let guard = acquire("x", LockOptions::exclusive()).await?.unwrap();
    /// guard.release().await;
    /// assert!(acquire("x", LockOptions::exclusive().if_available()).await?.is_some());
    /// # Ok(()) }
    /// ```
    pub async fn release(self) {
        self.release.now();
        Settled {
            state: self.state.clone(),
        }
        .await
    }
}

/// Completes when the lock request has settled (released or stolen).
struct Settled {
    state: Rc<LostState>,
}

impl Future for Settled {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.state.settled.get() {
            return Poll::Ready(());
        }
        self.state.register(cx);
        Poll::Pending
    }
}

/// The resolve function of the promise the lock callback returned: calling it releases the
/// lock. Dropping it calls it, so a grant nobody receives (the `acquire` future was dropped
/// after the grant was sent) is released, never leaked.
struct Release(Function);

impl Release {
    fn now(&self) {
        let _ = self.0.call0(&JsValue::UNDEFINED);
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        self.now();
    }
}

/// Completes when the lock of a [`LockGuard`] is stolen; see [`LockGuard::lost`].
pub struct Lost {
    state: Rc<LostState>,
}

impl Future for Lost {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.state.lost.get() {
            return Poll::Ready(());
        }
        self.state.register(cx);
        Poll::Pending
    }
}

fn lock_manager() -> Result<LockManagerJs, Error> {
    let locks = js::get(&js::navigator(), "locks");
    if locks.is_undefined() || locks.is_null() {
        return Err(Error::Unsupported {
            what: "navigator.locks (Web Locks)".into(),
        });
    }
    Ok(locks.unchecked_into())
}

/// Aborts a pending lock request when the `acquire` future is dropped or its deadline passes.
struct AbortOnDrop(Option<web_sys::AbortController>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(controller) = self.0.take() {
            controller.abort();
        }
    }
}

/// What the lock callback tells `acquire`: granted (with the release function) or not available.
type Grant = Result<Option<Release>, JsValue>;

/// Asks for the Web Lock `name`.
///
/// Returns `Ok(Some(guard))` when granted, `Ok(None)` only with `if_available` when the lock is
/// held elsewhere, [`Error::LockTimeout`] naming the lock when `timeout_ms` passes first, and
/// [`Error::Unsupported`] when the engine has no Web Locks or refuses the options (for example
/// `steal` together with `if_available`, or a name starting with `-`).
///
/// # Example
/// ```no_run
/// # async fn run() -> Result<(), background_assets::core::error::Error> {
/// use background_assets::web::locks::{acquire, LockOptions};
/// match acquire("download:maps", LockOptions::exclusive().if_available()).await? {
///     Some(guard) => { /* run it */ drop(guard) }
///     None => { /* another context runs it: observe instead */ }
/// }
/// # Ok(()) }
/// ```
pub async fn acquire(name: &str, options: LockOptions) -> Result<Option<LockGuard>, Error> {
    if options.steal && options.if_available {
        return Err(Error::Unsupported {
            what: format!("lock `{name}`: steal together with if_available"),
        });
    }
    let manager = lock_manager()?;

    let request_options = js::object();
    js::set(
        &request_options,
        "mode",
        &JsValue::from_str(options.mode.as_str()),
    );
    if options.if_available {
        js::set(&request_options, "ifAvailable", &JsValue::TRUE);
    }
    if options.steal {
        js::set(&request_options, "steal", &JsValue::TRUE);
    }
    let mut abort = AbortOnDrop(None);
    if options.timeout_ms.is_some() {
        let controller = web_sys::AbortController::new().map_err(|e| Error::Unsupported {
            what: format!("AbortController: {}", js::describe(&e)),
        })?;
        js::set(&request_options, "signal", &controller.signal());
        abort.0 = Some(controller);
    }

    let (grant_tx, grant_rx) = oneshot::channel::<Grant>();
    let grant_tx = Rc::new(RefCell::new(Some(grant_tx)));
    let state = Rc::new(LostState::default());

    // The lock callback: runs when granted (with the Lock) or, with ifAvailable, with null.
    let callback_grant = grant_tx.clone();
    let callback = Closure::once(move |lock: JsValue| -> JsValue {
        let sender = callback_grant.borrow_mut().take();
        if lock.is_null() || lock.is_undefined() {
            if let Some(sender) = sender {
                let _ = sender.send(Ok(None));
            }
            return JsValue::UNDEFINED;
        }
        let mut release: Option<Function> = None;
        let hold = Promise::new(&mut |resolve, _reject| release = Some(resolve));
        let release = Release(release.expect("Promise executor runs synchronously"));
        // If nobody receives it (the acquire future is gone), dropping it lets the lock go.
        if let Some(sender) = sender {
            let _ = sender.send(Ok(Some(release)));
        }
        hold.into()
    });

    let request = manager
        .request(name, &request_options, callback.as_ref().unchecked_ref())
        .map_err(|e| Error::Unsupported {
            what: format!("navigator.locks.request(`{name}`): {}", js::describe(&e)),
        })?;

    // Watch the request promise: it rejects before the grant (timeout, bad options) or after it
    // (stolen). It owns the callback closure, which must live until the request settles.
    let watch_grant = grant_tx;
    let watch_state = state.clone();
    js::spawn(async move {
        let outcome = JsFuture::from(request).await;
        drop(callback);
        match outcome {
            Ok(_) => watch_state.settle(false),
            Err(error) => match watch_grant.borrow_mut().take() {
                Some(sender) => {
                    let _ = sender.send(Err(error));
                }
                None => watch_state.settle(true),
            },
        }
    });

    let timed_out = Rc::new(Cell::new(false));
    let _timer = options.timeout_ms.map(|ms| {
        let controller = abort.0.clone();
        let flag = timed_out.clone();
        gloo_timers::callback::Timeout::new(ms.min(u32::MAX as u64) as u32, move || {
            flag.set(true);
            if let Some(controller) = controller {
                controller.abort();
            }
        })
    });

    let granted = grant_rx.await.map_err(|_| Error::Unsupported {
        what: format!("lock `{name}`: the request ended without an answer"),
    })?;
    // Granted or refused: the signal must not fire any more.
    abort.0 = None;
    match granted {
        Ok(Some(release)) => Ok(Some(LockGuard {
            name: name.to_string(),
            mode: options.mode,
            release,
            state,
        })),
        Ok(None) => Ok(None),
        Err(error) => {
            if timed_out.get() {
                Err(Error::LockTimeout {
                    name: name.to_string(),
                    timeout_ms: options.timeout_ms.unwrap_or(0),
                })
            } else {
                Err(Error::Unsupported {
                    what: format!(
                        "navigator.locks.request(`{name}`): {}",
                        js::describe(&error)
                    ),
                })
            }
        }
    }
}

/// One entry of a [`query`] snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockEntry {
    /// The lock's name.
    pub name: String,
    /// Its mode.
    pub mode: LockMode,
    /// The holding or waiting client's id, when the engine reports it.
    pub client_id: Option<String>,
}

/// What [`query`] saw: locks held and requests waiting, across every context of the origin.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LockSnapshot {
    /// Locks currently held.
    pub held: Vec<LockEntry>,
    /// Requests waiting for a lock.
    pub pending: Vec<LockEntry>,
}

impl LockSnapshot {
    /// Whether a lock with this name is held.
    pub fn is_held(&self, name: &str) -> bool {
        self.held.iter().any(|e| e.name == name)
    }

    /// Whether a request for this name is waiting.
    pub fn is_pending(&self, name: &str) -> bool {
        self.pending.iter().any(|e| e.name == name)
    }
}

/// A snapshot of the origin's held and pending locks (`navigator.locks.query()`).
///
/// # Example
/// ```no_run
/// # async fn run() -> Result<(), background_assets::core::error::Error> {
/// let snapshot = background_assets::web::locks::query().await?;
/// let running = snapshot.is_held("download:maps");
/// # Ok(()) }
/// ```
pub async fn query() -> Result<LockSnapshot, Error> {
    let manager = lock_manager()?;
    let failed = |e: JsValue| Error::Unsupported {
        what: format!("navigator.locks.query(): {}", js::describe(&e)),
    };
    let snapshot = JsFuture::from(manager.query().map_err(failed)?)
        .await
        .map_err(failed)?;
    let entries = |key: &str| -> Vec<LockEntry> {
        let list = js::get(&snapshot, key);
        if !js_sys::Array::is_array(&list) {
            return Vec::new();
        }
        js_sys::Array::from(&list)
            .iter()
            .map(|info| LockEntry {
                name: js::get(&info, "name").as_string().unwrap_or_default(),
                mode: LockMode::parse(&js::get(&info, "mode").as_string().unwrap_or_default()),
                client_id: js::get(&info, "clientId").as_string(),
            })
            .collect()
    };
    Ok(LockSnapshot {
        held: entries("held"),
        pending: entries("pending"),
    })
}
