//! The extension: Apple's `BADownloaderExtension`, run by the app's service worker.
//!
//! ```text
//!  sw.js (classic script)                      wasm (this module)
//!  importScripts(worker glue, extension.js)
//!  BackgroundAssets.extension(handlers)
//!    adds every listener synchronously ──┐
//!    install      ─ waitUntil ───────────┼──▶ extensionInstall: pkg.json (+ manifest) ──▶
//!                                        │      handlers.didInstall(info) ──▶ schedule as
//!                                        │      Extension{Install} ──▶ wait for essentials
//!    activate     ─ waitUntil ───────────┼──▶ extensionActivate: after an update only:
//!                                        │      refresh ──▶ handlers.didUpdate(info) ──▶ schedule
//!    periodicsync ─ waitUntil ───────────┼──▶ extensionPeriodicSync: refresh ──▶
//!                                        │      handlers.checkForUpdates(info) ──▶ schedule, wait
//!    fetch /background-assets/… ─ respondWith ─▶ extensionFetch: the stored asset, with Range
//!    message      ─ waitUntil ───────────┼──▶ extensionMessage: routed events
//!                                        │      (DownloadManager::deliver_remote), `launch`
//!    backgroundfetch{success,fail,abort} ┴──▶ extensionBackgroundFetch: the browser fetch a
//!                                               page handed a download to, stored + verified
//!                                               (DownloadManager::settle_browser_fetch)
//!  page: launch() ── did_launch, periodicSync.register, else postMessage {op: "launch"}
//! ```
//!
//! Every handler is optional. `didInstall`, `didUpdate` and `checkForUpdates` receive
//! `info = { event, remainingAllowance: { total, essential } | null, updated: [ids],
//! removed: [ids] }` and may return (or resolve to) an array of download descriptors
//! (`{ id, url, essential, size, priority, headers }`) to schedule; returning nothing schedules
//! what the declaration says for that event (the packs listing `firstInstallation`, or
//! `subsequentUpdate`). A download that cannot be scheduled (over the allowance, a domain not
//! allowed...) is reported to `didFail(id, error)` with its typed error and the others still
//! run. The extension's delegate (`didBegin`, `didPause`, `didWriteData`, `didFinish`,
//! `didFail`, `didRequeueAsNonEssential`, `authenticationChallenge`) receives the events routed
//! to the extension.
//!
//! Limits chosen here: `install` waits at most [`INSTALL_WAIT_MS`] (4 minutes, under the 5
//! minutes Chromium and Firefox give one event) for the essential downloads; an essential that
//! fails is re-queued as non-essential by the core and `install` still completes. `activate`
//! does not wait (it would hold back the page's `fetch` events, and the old version of an
//! updated pack must stay readable meanwhile). A periodic check waits at most
//! [`CHECK_WAIT_MS`] for what it scheduled.
//!
//! # Example (the app's `sw.js`)
//! ```js
//! importScripts('/pkg/worker/background_assets.js', '/pkg/worker/extension.js');
//! BackgroundAssets.extension({
//!   async didInstall(info) { console.log(info.remainingAllowance); /* default downloads */ },
//!   didFinish(id, finished) { console.log(id, finished.url); },
//! });
//! ```

use std::cell::RefCell;
use std::rc::Rc;

use futures::StreamExt;
use js_sys::{Array, Function, Promise, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use crate::core::download::{Identifier, UrlDownload};
use crate::core::error::Error;
use crate::core::manager::{Caller, ExtensionEvent, Manager as CoreManager};
use crate::web::container::Container;
use crate::web::js;
use crate::web::manager::DownloadManager;
use crate::web::packs::PackUpdateSummary;
use crate::web::serve::{serve_request, SERVE_PREFIX};

type Result<T> = std::result::Result<T, Error>;

/// How long `install` waits for the essential downloads (milliseconds).
pub const INSTALL_WAIT_MS: f64 = 240_000.0;
/// How long a periodic check waits for the downloads it scheduled (milliseconds).
pub const CHECK_WAIT_MS: f64 = 240_000.0;
/// The periodic-sync tag [`launch`] registers and the worker entry answers.
pub const PERIODIC_SYNC_TAG: &str = "background-assets";
/// The `type` of the control messages a page sends to the worker entry.
pub const CONTROL_MESSAGE: &str = "background-assets-extension";
/// The `meta` key under which `install` records that it installed an update.
const PENDING_UPDATE_KEY: &str = "extension-pending-update";
/// The minimum interval asked of `periodicSync.register` (12 hours, the engines' floor).
const PERIODIC_SYNC_INTERVAL_MS: f64 = 12.0 * 3600.0 * 1000.0;

fn now() -> f64 {
    js_sys::Date::now()
}

/// Typed errors and download descriptors cross into JavaScript exactly as the JS face does it
/// (`name`, `code`, `transient` and the variant's fields; the same descriptor keys and checks).
pub use crate::web::bindings::{download_from_js, error_to_js};
use crate::web::bindings::{promise, JsDelegate};

fn js_failure(operation: &str, value: &JsValue) -> Error {
    Error::Unsupported {
        what: format!("{operation}: {}", js::describe(value)),
    }
}

/// Calls a synchronous handler and logs what it throws (a delegate method must not break the
/// manager).
fn notify(handlers: &JsValue, name: &str, args: &[JsValue]) {
    if let Ok(function) = js::get(handlers, name).dyn_into::<Function>() {
        let array: Array = args.iter().collect();
        match function.apply(handlers, &array) {
            Ok(value) => {
                if let Some(promise) = value.dyn_ref::<Promise>() {
                    let promise = promise.clone();
                    let name = name.to_string();
                    js::spawn(async move {
                        if let Err(e) = JsFuture::from(promise).await {
                            console_error(&format!(
                                "background-assets extension: {name}: {}",
                                js::describe(&e)
                            ));
                        }
                    });
                }
            }
            Err(e) => console_error(&format!(
                "background-assets extension: {name} threw {}",
                js::describe(&e)
            )),
        }
    }
}

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = console, js_name = error)]
    fn console_error(message: &str);
}

thread_local! {
    static ATTACHED: RefCell<bool> = const { RefCell::new(false) };
    static CONTAINER: RefCell<Option<Rc<Container>>> = const { RefCell::new(None) };
}

/// The worker's shared manager, with the handlers set as its delegate (once).
fn manager(handlers: &JsValue) -> DownloadManager {
    let manager = DownloadManager::shared();
    let first = ATTACHED.with(|a| !std::mem::replace(&mut *a.borrow_mut(), true));
    if first && handlers.is_object() {
        // The extension's handlers are the worker's delegate, adapted as the JS face adapts
        // a page's delegate (the same finished handle, errors and challenge answers).
        manager.set_delegate(Some(Rc::new(JsDelegate::new(handlers.clone()))));
    }
    manager
}

fn id_list(ids: &[Identifier]) -> JsValue {
    ids.iter()
        .map(|id| JsValue::from(id.as_str()))
        .collect::<Array>()
        .into()
}

/// `info` for didInstall / didUpdate / checkForUpdates.
async fn info(
    manager: &DownloadManager,
    event: &str,
    update: &PackUpdateSummary,
) -> Result<JsValue> {
    let remaining = manager.inspect(|core| core.remaining_allowance()).await?;
    let object = js::object();
    js::set(&object, "event", &event.into());
    let allowance = match remaining {
        Some(r) => {
            let a = js::object();
            js::set(&a, "total", &JsValue::from(r.total as f64));
            js::set(&a, "essential", &JsValue::from(r.essential as f64));
            a.into()
        }
        None => JsValue::NULL,
    };
    js::set(&object, "remainingAllowance", &allowance);
    js::set(&object, "updated", &id_list(&update.updated));
    js::set(&object, "removed", &id_list(&update.removed));
    js::set(&object, "added", &id_list(&update.added));
    Ok(object.into())
}

/// Re-reads the declaration (`pkg.json`, then the manifest it names) and applies it
/// ([`DownloadManager::check_for_updates`]): which packs changed.
async fn refresh_declaration(manager: &DownloadManager) -> Result<PackUpdateSummary> {
    manager.check_for_updates().await
}

/// Schedules the declaration's downloads for `event` ([`DownloadManager::downloads_for`]: the
/// packs listing `firstInstallation` or `subsequentUpdate`, the new versions of stored packs on
/// a check) as the extension handling `event`. Returns the identifiers scheduled and the
/// refusals.
async fn schedule_declared(
    manager: &DownloadManager,
    event: ExtensionEvent,
) -> Result<(Vec<Identifier>, Vec<(String, Error)>)> {
    let downloads = manager.downloads_for(event).await?;
    Ok(schedule_each(manager, downloads, event).await)
}

async fn schedule_each(
    manager: &DownloadManager,
    downloads: Vec<UrlDownload>,
    event: ExtensionEvent,
) -> (Vec<Identifier>, Vec<(String, Error)>) {
    let caller = Caller::Extension { event: Some(event) };
    let mut scheduled = Vec::new();
    let mut refused = Vec::new();
    for download in downloads {
        let id = download.identifier.clone();
        match manager.schedule_as(download, caller).await {
            Ok(()) => scheduled.push(id),
            Err(e) => refused.push((id.to_string(), e)),
        }
    }
    (scheduled, refused)
}

/// Schedules the downloads a handler returned (an array of descriptors; anything else is
/// nothing) as the extension handling `event`. Every refusal (invalid descriptor, allowance,
/// domain...) goes to the handlers' `didFail(id, error)`.
async fn schedule_returned(
    manager: &DownloadManager,
    handlers: &JsValue,
    returned: Option<JsValue>,
    event: ExtensionEvent,
) -> (Vec<Identifier>, Vec<(String, Error)>) {
    let mut refused = Vec::new();
    let mut downloads = Vec::new();
    if let Some(list) = returned.filter(Array::is_array) {
        for item in Array::from(&list).iter() {
            match download_from_js(&item) {
                Ok(d) => downloads.push(d),
                Err(e) => refused.push((js::get(&item, "id").as_string().unwrap_or_default(), e)),
            }
        }
    }
    let (scheduled, more) = schedule_each(manager, downloads, event).await;
    refused.extend(more);
    for (id, error) in &refused {
        notify(
            handlers,
            "didFail",
            &[id.as_str().into(), error_to_js(error)],
        );
    }
    (scheduled, refused)
}

/// The declaration's downloads for `event`, then `handler(info)` and the extra downloads it
/// returns: what one extension event schedules.
async fn run_event(
    manager: &DownloadManager,
    handlers: &JsValue,
    event: ExtensionEvent,
    update: &PackUpdateSummary,
    trigger: Option<&str>,
) -> Result<(Vec<Identifier>, Vec<(String, Error)>)> {
    let (mut scheduled, mut refused) = schedule_declared(manager, event).await?;
    for (id, error) in &refused {
        notify(
            handlers,
            "didFail",
            &[id.as_str().into(), error_to_js(error)],
        );
    }
    let (name, handler) = match event {
        ExtensionEvent::Install => ("install", "didInstall"),
        ExtensionEvent::Update => ("update", "didUpdate"),
        ExtensionEvent::CheckForUpdates => ("checkForUpdates", "checkForUpdates"),
    };
    let info = info(manager, name, update).await?;
    if let Some(trigger) = trigger {
        js::set(&info, "trigger", &trigger.into());
    }
    // A handler that throws schedules nothing more; what the declaration asked for still runs
    // (and install still waits for its essential downloads).
    let returned = match js::call_method(handlers, handler, &[info]).await {
        Ok(returned) => returned,
        Err(thrown) => {
            console_error(&format!(
                "background-assets extension: {handler} threw {}",
                js::describe(&thrown)
            ));
            None
        }
    };
    let (more, more_refused) = schedule_returned(manager, handlers, returned, event).await;
    scheduled.extend(more);
    refused.extend(more_refused);
    Ok((scheduled, refused))
}

/// Waits until `done(core)` holds or `timeout_ms` passes; whether it held.
async fn wait_until(
    manager: &DownloadManager,
    done: impl Fn(&CoreManager) -> bool,
    timeout_ms: f64,
) -> Result<bool> {
    let mut changes = manager.changes().await?;
    let deadline = now() + timeout_ms;
    loop {
        if manager.inspect(&done).await? {
            return Ok(true);
        }
        let left = deadline - now();
        if left <= 0.0 {
            return Ok(false);
        }
        let tick = gloo_timers::future::TimeoutFuture::new(left.min(1000.0) as u32);
        futures::future::select(changes.next(), tick).await;
    }
}

fn no_essentials_pending(core: &CoreManager) -> bool {
    !core.current_downloads().iter().any(|d| d.essential)
}

/// What an extension event did, as the JS entry reports it:
/// `{ scheduled: [ids], refused: [{ id, error }], pending: [ids still scheduled], ... }`.
async fn report(
    manager: &DownloadManager,
    scheduled: &[Identifier],
    refused: &[(String, Error)],
) -> Result<JsValue> {
    let object = js::object();
    js::set(&object, "scheduled", &id_list(scheduled));
    let refusals: Array = refused
        .iter()
        .map(|(id, e)| {
            let r = js::object();
            js::set(&r, "id", &id.as_str().into());
            js::set(&r, "error", &error_to_js(e));
            JsValue::from(r)
        })
        .collect();
    js::set(&object, "refused", &refusals);
    let pending: Vec<Identifier> = manager
        .inspect(|core| {
            core.current_downloads()
                .into_iter()
                .map(|d| d.identifier)
                .collect()
        })
        .await?;
    js::set(&object, "pending", &id_list(&pending));
    Ok(object.into())
}

fn registration() -> JsValue {
    js::get(&js_sys::global(), "registration")
}

/// The worker entry's `install` step (see the module doc): the declaration (and its manifest)
/// loaded, `didInstall(info)` asked, its downloads (or the declaration's) scheduled under the
/// initial restrictions, then the essential ones waited for (at most [`INSTALL_WAIT_MS`]).
/// When a previous version of the worker is active this is an update: nothing is asked here,
/// `activate` calls `didUpdate`. Resolves to the report `{ scheduled, refused, pending, update }`.
#[wasm_bindgen(js_name = extensionInstall)]
pub fn extension_install(handlers: JsValue) -> Promise {
    promise(async move {
        let manager = manager(&handlers);
        let container = manager.container().await?;
        let previous = js::get(&registration(), "active");
        if previous.is_object() {
            container
                .put_meta(PENDING_UPDATE_KEY, &JsValue::TRUE)
                .await?;
            let object = js::object();
            js::set(&object, "update", &JsValue::TRUE);
            return Ok(object.into());
        }
        let update = refresh_declaration(&manager).await?;
        let (scheduled, refused) =
            run_event(&manager, &handlers, ExtensionEvent::Install, &update, None).await?;
        let complete = wait_until(&manager, no_essentials_pending, INSTALL_WAIT_MS).await?;
        let out = report(&manager, &scheduled, &refused).await?;
        js::set(&out, "update", &JsValue::FALSE);
        js::set(&out, "essentialsComplete", &JsValue::from(complete));
        Ok(out)
    })
}

/// The worker entry's `activate` step: after an update recorded by `install`, re-reads the
/// declaration, calls `didUpdate(info)` and schedules its downloads (or the packs listing
/// `subsequentUpdate`) without waiting for them. Resolves to the report, or `{ update: false }`.
#[wasm_bindgen(js_name = extensionActivate)]
pub fn extension_activate(handlers: JsValue) -> Promise {
    promise(async move {
        let manager = manager(&handlers);
        let container = manager.container().await?;
        let pending = container.get_meta(PENDING_UPDATE_KEY).await?;
        if pending.as_ref().and_then(JsValue::as_bool) != Some(true) {
            let object = js::object();
            js::set(&object, "update", &JsValue::FALSE);
            return Ok(object.into());
        }
        container
            .put_meta(PENDING_UPDATE_KEY, &JsValue::FALSE)
            .await?;
        let update = refresh_declaration(&manager).await?;
        let (scheduled, refused) =
            run_event(&manager, &handlers, ExtensionEvent::Update, &update, None).await?;
        let out = report(&manager, &scheduled, &refused).await?;
        js::set(&out, "update", &JsValue::TRUE);
        Ok(out)
    })
}

/// Apple's checkForUpdates: re-reads the declaration, calls `checkForUpdates(info)` (with
/// `info.trigger`), schedules its downloads (default: the updated packs listing
/// `subsequentUpdate`) and, when `wait`, waits for them (at most [`CHECK_WAIT_MS`]).
async fn check_for_updates(handlers: &JsValue, trigger: &str, wait: bool) -> Result<JsValue> {
    let manager = manager(handlers);
    let update = refresh_declaration(&manager).await?;
    let (scheduled, refused) = run_event(
        &manager,
        handlers,
        ExtensionEvent::CheckForUpdates,
        &update,
        Some(trigger),
    )
    .await?;
    if wait && !scheduled.is_empty() {
        let ids = scheduled.clone();
        wait_until(
            &manager,
            move |core| {
                !ids.iter()
                    .any(|id| core.download(id).is_some_and(|d| d.state.is_scheduled()))
            },
            CHECK_WAIT_MS,
        )
        .await?;
    }
    let out = report(&manager, &scheduled, &refused).await?;
    js::set(&out, "updated", &id_list(&update.updated));
    js::set(&out, "removed", &id_list(&update.removed));
    Ok(out)
}

/// The worker entry's `periodicsync` step (tag [`PERIODIC_SYNC_TAG`]): checkForUpdates with
/// `info.trigger = "periodicsync"`, waiting for what it scheduled.
#[wasm_bindgen(js_name = extensionPeriodicSync)]
pub fn extension_periodic_sync(handlers: JsValue) -> Promise {
    promise(async move { check_for_updates(&handlers, "periodicsync", true).await })
}

/// `backgroundfetchsuccess` / `backgroundfetchfail` / `backgroundfetchabort` → the library's
/// browser fetch settled ([`DownloadManager::settle_browser_fetch`]): the record stored and
/// verified, the normal transfer taking over after a failure, or the download failed with
/// `Cancelled` after the user aborted it. Resolves to `{ id, handled, state }` once that is stored
/// (`handled` is false for fetches that are not the library's).
#[wasm_bindgen(js_name = extensionBackgroundFetch)]
pub fn extension_background_fetch(registration: JsValue, handlers: JsValue) -> Promise {
    promise(async move {
        let fetch = crate::web::background_fetch::BrowserFetch::from_registration(registration);
        let id = fetch.id();
        let ours = crate::web::background_fetch::parse_fetch_id(&id).is_some();
        let out = js::object();
        if let Some((_, download)) = crate::web::background_fetch::parse_fetch_id(&id) {
            let manager = manager(&handlers);
            manager.settle_browser_fetch(&fetch).await?;
            // Where the download is now: `null` once it ended (finished, failed or cancelled).
            let state = manager
                .fetch_current_downloads()
                .await?
                .into_iter()
                .find(|d| d.identifier.as_str() == download)
                .map(|d| format!("{:?}", d.state));
            js::set(
                &out,
                "state",
                &state.map_or(JsValue::NULL, |s| JsValue::from_str(&s)),
            );
        }
        js::set(&out, "id", &JsValue::from_str(&id));
        js::set(&out, "handled", &JsValue::from(ours));
        Ok(out.into())
    })
}

/// The served path of `url` under [`SERVE_PREFIX`]: `("id", identifier)` or `("file", path)`.
fn served_target(url: &str) -> Option<(&'static str, String)> {
    let parsed = crate::core::urls::parse(url).ok()?;
    let rest = parsed.path().strip_prefix(SERVE_PREFIX)?;
    let (kind, tail) = rest.split_once('/')?;
    let kind = match kind {
        "id" => "id",
        "file" => "file",
        _ => return None,
    };
    let decoded = js_sys::decode_uri_component(tail).ok()?.as_string()?;
    (!decoded.is_empty()).then_some((kind, decoded))
}

async fn container() -> Result<Rc<Container>> {
    if let Some(c) = CONTAINER.with(|c| c.borrow().clone()) {
        return Ok(c);
    }
    let opened = Rc::new(Container::open(Container::DEFAULT_NAME).await?);
    CONTAINER.with(|c| *c.borrow_mut() = Some(opened.clone()));
    Ok(opened)
}

/// The stored identifier that answers pack file `path` (current readable version), read from
/// the stored manager state (no network: works offline).
async fn file_identifier(container: &Container, path: &str) -> Result<Option<Identifier>> {
    let Some(core) = crate::web::manager::stored_state(container).await? else {
        return Ok(None);
    };
    Ok(core.file_for_path(path).map(|(_, id)| id))
}

fn text_response(status: u16, text: &str) -> JsValue {
    let init = web_sys::ResponseInit::new();
    init.set_status(status);
    web_sys::Response::new_with_opt_str_and_init(Some(text), &init)
        .map(Into::into)
        .unwrap_or(JsValue::NULL)
}

/// The worker entry's `fetch` step for `{origin}/background-assets/id/{identifier}` and
/// `{origin}/background-assets/file/{path}`: the stored asset with `Range` (200, 206, 416;
/// `HEAD` without body), `404` when nothing is stored there. Reads only IndexedDB: works offline.
#[wasm_bindgen(js_name = extensionFetch)]
pub fn extension_fetch(request: web_sys::Request) -> Promise {
    promise(async move {
        let Some((kind, target)) = served_target(&request.url()) else {
            return Ok(text_response(404, "not a background-assets URL"));
        };
        match serve_target(kind, &target, &request).await {
            // The cached connection was closed (the database was deleted or upgraded by
            // another context): open it again, once.
            Err(Error::Storage { .. }) => {
                CONTAINER.with(|c| c.borrow_mut().take());
                serve_target(kind, &target, &request).await
            }
            other => other,
        }
    })
}

async fn serve_target(kind: &str, target: &str, request: &web_sys::Request) -> Result<JsValue> {
    let container = container().await?;
    let identifier = if kind == "id" {
        Some(target.to_string())
    } else {
        file_identifier(&container, target)
            .await?
            .map(|id| id.to_string())
    };
    let Some(identifier) = identifier else {
        return Ok(text_response(404, &format!("no stored file at `{target}`")));
    };
    match serve_request(&container, &identifier, request).await {
        Ok(response) => Ok(response.into()),
        Err(Error::DownloadDoesNotExist { .. }) => {
            Ok(text_response(404, &format!("`{identifier}` is not stored")))
        }
        Err(e) => Err(e),
    }
}

/// The worker entry's `message` step. `{ type: "background-assets", ... }` (routed events and
/// state changes from pages) goes to [`DownloadManager::deliver_remote`];
/// `{ type: "background-assets-extension", op }` is a control message:
/// `launch` (the app launched: restrictions lifted; with `checkForUpdates: true` also runs
/// checkForUpdates with `info.trigger = "launch"`), `ready` (the launch gate,
/// [`DownloadManager::ready`], waited for at most `timeoutMs`: `{ ready }`). Resolves to the reply (`undefined` for others).
#[wasm_bindgen(js_name = extensionMessage)]
pub fn extension_message(data: JsValue, handlers: JsValue) -> Promise {
    promise(async move {
        let kind = js::get(&data, "type").as_string().unwrap_or_default();
        let manager = manager(&handlers);
        if kind == "background-assets" {
            manager.deliver_remote(data).await?;
            return Ok(JsValue::UNDEFINED);
        }
        if kind != CONTROL_MESSAGE {
            return Ok(JsValue::UNDEFINED);
        }
        let op = js::get(&data, "op").as_string().unwrap_or_default();
        let out = js::object();
        match op.as_str() {
            "launch" => {
                let lifted = manager.did_launch().await?;
                js::set(&out, "lifted", &JsValue::from(lifted));
                if js::get(&data, "checkForUpdates").as_bool() == Some(true) {
                    // A check that cannot run (offline, the server down, a bad manifest) does
                    // not undo the launch: it is reported, and the next page load checks again.
                    match check_for_updates(&handlers, "launch", false).await {
                        Ok(checked) => js::set(&out, "checked", &checked),
                        Err(error) => js::set(&out, "checkError", &error_to_js(&error)),
                    }
                }
            }
            "ready" => {
                let timeout = js::get(&data, "timeoutMs").as_f64().unwrap_or(30_000.0);
                // The pages' launch gate (also waits for essentials re-queued after a failure).
                let gate = manager.ready();
                let timer = gloo_timers::future::TimeoutFuture::new(timeout.max(0.0) as u32);
                let ready = match futures::future::select(Box::pin(gate), timer).await {
                    futures::future::Either::Left((done, _)) => done.map(|()| true)?,
                    futures::future::Either::Right(_) => false,
                };
                js::set(&out, "ready", &JsValue::from(ready));
            }
            other => {
                return Err(Error::Unsupported {
                    what: format!("extension control message `{other}`"),
                })
            }
        }
        Ok(out.into())
    })
}

async fn await_value(value: JsValue) -> std::result::Result<JsValue, JsValue> {
    match value.dyn_ref::<Promise>() {
        Some(p) => JsFuture::from(p.clone()).await,
        None => Ok(value),
    }
}

fn call_method(
    target: &JsValue,
    name: &str,
    args: &[JsValue],
) -> std::result::Result<JsValue, JsValue> {
    let function: Function = js::get(target, name)
        .dyn_into()
        .map_err(|_| JsValue::from_str(&format!("{name} is not a function")))?;
    let array: Array = args.iter().collect();
    function.apply(target, &array)
}

/// Posts `message` to `worker` with a `MessageChannel` and waits (at most `timeout_ms`) for the
/// reply `{ ok, value | error }`.
async fn ask_worker(worker: &JsValue, message: &JsValue, timeout_ms: u32) -> Result<JsValue> {
    let failed = |e: JsValue| js_failure("asking the service worker", &e);
    let constructor: Function = js::get(&js_sys::global(), "MessageChannel")
        .dyn_into()
        .map_err(|_| Error::Unsupported {
            what: "a page without MessageChannel".into(),
        })?;
    let channel = Reflect::construct(&constructor, &Array::new()).map_err(failed)?;
    let port1 = js::get(&channel, "port1");
    let port2 = js::get(&channel, "port2");
    let reply = Promise::new(&mut |resolve, _reject| {
        let on_message = Closure::once_into_js(move |event: JsValue| {
            let _ = resolve.call1(&JsValue::UNDEFINED, &js::get(&event, "data"));
        });
        js::set(&port1, "onmessage", &on_message);
    });
    let transfer: Array = [port2].iter().collect();
    call_method(worker, "postMessage", &[message.clone(), transfer.into()]).map_err(failed)?;
    let timeout = gloo_timers::future::TimeoutFuture::new(timeout_ms);
    let answer = match futures::future::select(JsFuture::from(reply), timeout).await {
        futures::future::Either::Left((answer, _)) => answer.map_err(failed)?,
        futures::future::Either::Right(_) => {
            let _ = call_method(&port1, "close", &[]);
            return Err(Error::Unsupported {
                what: format!("the service worker did not answer within {timeout_ms} ms"),
            });
        }
    };
    let _ = call_method(&port1, "close", &[]);
    if js::get(&answer, "ok").as_bool() == Some(true) {
        Ok(js::get(&answer, "value"))
    } else {
        let error = js::get(&answer, "error");
        Err(Error::Unsupported {
            what: format!("the service worker answered {}", js::describe(&error)),
        })
    }
}

/// The active service worker of this page's registration, waiting (at most `timeout_ms`) for
/// one to activate. `None` when the page has no registration or none activates in time.
async fn active_worker(timeout_ms: u32) -> Result<Option<(JsValue, JsValue)>> {
    let container = js::get(&js::navigator(), "serviceWorker");
    if !container.is_object() {
        return Ok(None);
    }
    let failed = |e: JsValue| js_failure("navigator.serviceWorker", &e);
    let registration =
        await_value(call_method(&container, "getRegistration", &[]).map_err(failed)?)
            .await
            .map_err(failed)?;
    if !registration.is_object() {
        return Ok(None);
    }
    let ready = JsFuture::from(Promise::from(js::get(&container, "ready")));
    let timeout = gloo_timers::future::TimeoutFuture::new(timeout_ms);
    let registration = match futures::future::select(ready, timeout).await {
        futures::future::Either::Left((r, _)) => r.map_err(failed)?,
        futures::future::Either::Right(_) => return Ok(None),
    };
    let active = js::get(&registration, "active");
    Ok(active.is_object().then_some((registration, active)))
}

/// The app launched (call it when a page of the app starts): the initial download restrictions
/// are lifted (in this page and in the service worker), and update checks are arranged: a
/// periodic sync (tag [`PERIODIC_SYNC_TAG`], every 12 h at most) where the engine has Periodic
/// Background Sync and grants it, otherwise the worker runs checkForUpdates now (on every page
/// load). Resolves to `{ periodicSync: "registered" | "unsupported" | <the refusal's name>,
/// worker: bool, lifted, checked: <the check's report> | undefined, checkError: <a typed error>
/// | undefined }`: a check that cannot run (offline) is reported in `checkError` and does not
/// reject the launch.
///
/// # Example (JavaScript)
/// ```js
/// import init, { launch } from '/pkg/background_assets.js';
/// await init();
/// const { periodicSync } = await launch();
/// ```
#[wasm_bindgen]
pub fn launch() -> Promise {
    promise(async move {
        let out = js::object();
        DownloadManager::shared().did_launch().await?;
        let Some((registration, worker)) = active_worker(10_000).await? else {
            js::set(&out, "worker", &JsValue::FALSE);
            js::set(&out, "periodicSync", &"unsupported".into());
            return Ok(out.into());
        };
        js::set(&out, "worker", &JsValue::TRUE);
        let periodic = js::get(&registration, "periodicSync");
        let status = if periodic.is_object() {
            let options = js::object();
            js::set(
                &options,
                "minInterval",
                &JsValue::from(PERIODIC_SYNC_INTERVAL_MS),
            );
            let registered = match call_method(
                &periodic,
                "register",
                &[PERIODIC_SYNC_TAG.into(), options.into()],
            ) {
                Ok(p) => await_value(p).await,
                Err(e) => Err(e),
            };
            match registered {
                Ok(_) => "registered".to_string(),
                Err(e) => js::error_name(&e).unwrap_or_else(|| "refused".into()),
            }
        } else {
            "unsupported".to_string()
        };
        js::set(&out, "periodicSync", &status.as_str().into());
        let message = js::object();
        js::set(&message, "type", &CONTROL_MESSAGE.into());
        js::set(&message, "op", &"launch".into());
        js::set(
            &message,
            "checkForUpdates",
            &JsValue::from(status != "registered"),
        );
        let reply = ask_worker(&worker, &message.into(), 60_000).await?;
        js::set(&out, "lifted", &js::get(&reply, "lifted"));
        js::set(&out, "checked", &js::get(&reply, "checked"));
        js::set(&out, "checkError", &js::get(&reply, "checkError"));
        Ok(out.into())
    })
}
