//! The asset-pack methods of the JS `DownloadManager` (Apple's `AssetPackManager`) over
//! [`crate::web::packs`], and the `statusUpdates()` object: an `EventTarget` that dispatches
//! `'status'` events (`CustomEvent`, `event.detail = { pack, status }`) and an async iterable of
//! the same `{ pack, status }` values, with `close()`.
//!
//! Built from the globals `EventTarget` and `CustomEvent` (no generated JS), so it works in a
//! page and a service worker, in both the `--target web` and `--target no-modules` builds.
//!
//! # Example (JavaScript)
//! ```js
//! const updates = manager.statusUpdates();
//! updates.addEventListener('status', (e) => console.log(e.detail.pack, e.detail.status));
//! for await (const { pack, status } of updates) {
//!   if (pack === 'maps' && status === 'downloaded') break;
//! }
//! updates.close();
//! ```

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use futures::future::{abortable, AbortHandle};
use futures::StreamExt;
use js_sys::{Array, Function, Object, Promise, Reflect};
use serde::Serialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use crate::core::error::Error;
use crate::core::vec_map::VecMap;
use crate::web::bindings::errors::{describe_type, invalid_argument};
use crate::web::bindings::finished::FinishedDownloadJs;
use crate::web::bindings::manager::{promise, DownloadManagerJs};
use crate::web::js;
use crate::web::packs::PackStatusUpdate;

type Result<T> = std::result::Result<T, Error>;

/// A string argument (a pack id or a file path), or [`Error::InvalidArgument`] naming it.
fn string_argument(argument: &str, value: &JsValue) -> Result<String> {
    value.as_string().ok_or_else(|| {
        invalid_argument(
            argument,
            format!("expected a string, got {}", describe_type(value)),
        )
    })
}

/// A serde value (camelCase) as a plain JS object.
fn to_js<T: Serialize>(value: &T) -> Result<JsValue> {
    js::to_plain(value).map_err(|e| Error::Storage {
        message: format!("converting to JavaScript: {e}"),
    })
}

#[wasm_bindgen(js_class = DownloadManager)]
impl DownloadManagerJs {
    /// Every asset pack (declared ones in order, then obsolete ones): `{ id, version,
    /// storedVersion, policy, size, status, files: [{ path, identifier, url, size, sha256,
    /// stored }] }`.
    ///
    /// # Example (JavaScript)
    /// ```js
    /// const missing = (await manager.packs()).filter((p) => p.status === 'downloadAvailable');
    /// ```
    #[wasm_bindgen(unchecked_return_type = "Promise<PackInfo[]>")]
    pub fn packs(&self) -> Promise {
        let manager = self.manager().clone();
        promise(async move { to_js(&manager.packs().await?) })
    }

    /// A pack's status: `'downloadAvailable' | 'updateAvailable' | 'downloading' |
    /// 'downloaded' | 'outdated' | 'obsolete'`. Rejects with `AssetPackDoesNotExist`.
    ///
    /// # Example (JavaScript)
    /// ```js
    /// if (await manager.packStatus('maps') !== 'downloaded') await manager.ensureLocalAvailability('maps');
    /// ```
    #[wasm_bindgen(js_name = packStatus, unchecked_return_type = "Promise<PackStatus>")]
    pub fn pack_status(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] pack: JsValue,
    ) -> Promise {
        let manager = self.manager().clone();
        let pack = string_argument("packStatus(pack)", &pack);
        promise(async move { to_js(&manager.pack_status(&pack?).await?) })
    }

    /// Apple's `statusUpdates`: an `EventTarget` dispatching `'status'` events (`detail = {
    /// pack, status }`) and an async iterable of `{ pack, status }`: first the current status
    /// of every pack, then each change. `close()` stops it (iterators end).
    ///
    /// # Example (JavaScript)
    /// ```js
    /// const updates = manager.statusUpdates();
    /// for await (const { pack, status } of updates) console.log(pack, status);
    /// ```
    #[wasm_bindgen(js_name = statusUpdates, unchecked_return_type = "PackStatusUpdates")]
    pub fn status_updates(&self) -> std::result::Result<JsValue, JsValue> {
        let stream = self.manager().status_updates();
        StatusUpdates::start(stream).map_err(|e| crate::web::bindings::error_to_js(&e))
    }

    /// Apple's `ensureLocalAvailability`: fetches the pack's declared version if it is not
    /// stored and resolves when it is stored and verified. Rejects with
    /// `AssetPackDoesNotExist`, the failed file's error (e.g. `IntegrityMismatch`), or
    /// `Cancelled` when the fetch stopped (removed, superseded).
    ///
    /// # Example (JavaScript)
    /// ```js
    /// await manager.ensureLocalAvailability('maps');
    /// const map = await manager.file('maps/eu.map');
    /// ```
    #[wasm_bindgen(js_name = ensureLocalAvailability, unchecked_return_type = "Promise<void>")]
    pub fn ensure_local_availability(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] pack: JsValue,
    ) -> Promise {
        let manager = self.manager().clone();
        let pack = string_argument("ensureLocalAvailability(pack)", &pack);
        promise(async move {
            manager.ensure_local_availability(&pack?).await?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Apple's `checkForUpdates`: re-reads the declaration (and the remote manifest it names),
    /// applies it and starts updating stored packs: `{ updated, removed, added }` (pack ids).
    ///
    /// # Example (JavaScript)
    /// ```js
    /// const { updated, removed } = await manager.checkForUpdates();
    /// for (const id of removed) await manager.removePack(id);
    /// ```
    #[wasm_bindgen(js_name = checkForUpdates, unchecked_return_type = "Promise<PackUpdateSummary>")]
    pub fn check_for_updates(&self) -> Promise {
        let manager = self.manager().clone();
        promise(async move { to_js(&manager.check_for_updates().await?) })
    }

    /// Removes a pack's stored files (and stops fetching it). Rejects with
    /// `AssetPackDoesNotExist`.
    ///
    /// # Example (JavaScript)
    /// ```js
    /// await manager.removePack('old-level');
    /// ```
    #[wasm_bindgen(js_name = removePack, unchecked_return_type = "Promise<void>")]
    pub fn remove_pack(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] pack: JsValue,
    ) -> Promise {
        let manager = self.manager().clone();
        let pack = string_argument("removePack(pack)", &pack);
        promise(async move {
            manager.remove_pack(&pack?).await?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// The stored file at `path` (a pack file path, across packs; the current readable
    /// version) as a finished handle, or `null`.
    ///
    /// # Example (JavaScript)
    /// ```js
    /// const map = await manager.file('maps/eu.map');
    /// if (map) img.src = map.url;
    /// ```
    #[wasm_bindgen(unchecked_return_type = "Promise<FinishedDownload | null>")]
    pub fn file(&self, #[wasm_bindgen(unchecked_param_type = "string")] path: JsValue) -> Promise {
        let manager = self.manager().clone();
        let path = string_argument("file(path)", &path);
        promise(async move {
            Ok(match manager.file(&path?).await? {
                Some(finished) => FinishedDownloadJs::from(finished).into(),
                None => JsValue::NULL,
            })
        })
    }

    /// The launch gate: resolves when every essential pack and download is present.
    ///
    /// # Example (JavaScript)
    /// ```js
    /// await manager.ready();
    /// startGame();
    /// ```
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn ready(&self) -> Promise {
        let manager = self.manager().clone();
        promise(async move {
            manager.ready().await?;
            Ok(JsValue::UNDEFINED)
        })
    }
}

/// One async iterator over the updates.
#[derive(Default)]
struct Iteration {
    queue: VecDeque<JsValue>,
    waiters: VecDeque<Function>,
    done: bool,
}

/// The state behind one `statusUpdates()` object.
struct StatusUpdates {
    target: JsValue,
    /// The latest `{ pack, status }` of every pack seen: what a new iterator yields first.
    latest: VecMap<String, JsValue>,
    iterations: Vec<Rc<RefCell<Iteration>>>,
    closed: bool,
    abort: Option<AbortHandle>,
}

fn iterator_result(value: &JsValue, done: bool) -> JsValue {
    let result: JsValue = Object::new().into();
    js::set(&result, "value", value);
    js::set(&result, "done", &done.into());
    result
}

fn construct(global_name: &str, args: &[JsValue]) -> Result<JsValue> {
    let constructor = js::get(&js_sys::global(), global_name)
        .dyn_into::<Function>()
        .map_err(|_| Error::Unsupported {
            what: format!("statusUpdates() needs the global `{global_name}`"),
        })?;
    let args: Array = args.iter().collect();
    Reflect::construct(&constructor, &args).map_err(|e| Error::Unsupported {
        what: format!("new {global_name}(): {}", js::describe(&e)),
    })
}

impl StatusUpdates {
    /// Makes the JS object and starts forwarding `stream` into it.
    fn start(stream: crate::web::packs::PackStatusUpdates) -> Result<JsValue> {
        let target = construct("EventTarget", &[])?;
        let state = Rc::new(RefCell::new(StatusUpdates {
            target: target.clone(),
            latest: VecMap::new(),
            iterations: Vec::new(),
            closed: false,
            abort: None,
        }));

        let for_close = Rc::downgrade(&state);
        let close = Closure::<dyn Fn()>::new(move || {
            if let Some(state) = for_close.upgrade() {
                StatusUpdates::close(&state);
            }
        });
        js::set(&target, "close", &close.into_js_value());

        let for_iterator = Rc::downgrade(&state);
        let iterator = Closure::<dyn Fn() -> JsValue>::new(move || match for_iterator.upgrade() {
            Some(state) => StatusUpdates::iterator(&state),
            None => StatusUpdates::ended_iterator(),
        });
        let _ = Reflect::set(
            &target,
            &js_sys::Symbol::async_iterator(),
            &iterator.into_js_value(),
        );

        let for_task = state.clone();
        let (task, abort) = abortable(async move {
            let mut stream = stream;
            while let Some(update) = stream.next().await {
                StatusUpdates::deliver(&for_task, &update);
            }
            StatusUpdates::close(&for_task);
        });
        state.borrow_mut().abort = Some(abort);
        js::spawn(async move {
            let _ = task.await;
        });
        Ok(target)
    }

    fn deliver(state: &Rc<RefCell<StatusUpdates>>, update: &PackStatusUpdate) {
        let detail: JsValue = Object::new().into();
        js::set(&detail, "pack", &update.pack.as_str().into());
        let status = serde_json::to_value(update.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        js::set(&detail, "status", &status.into());
        let (target, wake) = {
            let mut s = state.borrow_mut();
            if s.closed {
                return;
            }
            s.latest
                .insert(update.pack.as_str().to_string(), detail.clone());
            let mut wake = Vec::new();
            for iteration in &s.iterations {
                let mut it = iteration.borrow_mut();
                match it.waiters.pop_front() {
                    Some(resolve) => wake.push(resolve),
                    None => it.queue.push_back(detail.clone()),
                }
            }
            (s.target.clone(), wake)
        };
        for resolve in wake {
            let _ = resolve.call1(&JsValue::UNDEFINED, &iterator_result(&detail, false));
        }
        let init: JsValue = Object::new().into();
        js::set(&init, "detail", &detail);
        if let Ok(event) = construct("CustomEvent", &["status".into(), init]) {
            if let Ok(dispatch) = js::get(&target, "dispatchEvent").dyn_into::<Function>() {
                let _ = dispatch.call1(&target, &event);
            }
        }
    }

    fn close(state: &Rc<RefCell<StatusUpdates>>) {
        let (abort, wake) = {
            let mut s = state.borrow_mut();
            s.closed = true;
            let mut wake = Vec::new();
            for iteration in s.iterations.drain(..) {
                let mut it = iteration.borrow_mut();
                it.done = true;
                wake.extend(it.waiters.drain(..));
            }
            (s.abort.take(), wake)
        };
        if let Some(abort) = abort {
            abort.abort();
        }
        for resolve in wake {
            let _ = resolve.call1(
                &JsValue::UNDEFINED,
                &iterator_result(&JsValue::UNDEFINED, true),
            );
        }
    }

    fn ended_iterator() -> JsValue {
        let iteration = Rc::new(RefCell::new(Iteration {
            done: true,
            ..Iteration::default()
        }));
        Self::iterator_object(iteration, None)
    }

    /// A new async iterator: the latest status of every pack first, then each update.
    fn iterator(state: &Rc<RefCell<StatusUpdates>>) -> JsValue {
        let s = state.borrow();
        let iteration = Rc::new(RefCell::new(Iteration {
            queue: if s.closed {
                VecDeque::new()
            } else {
                s.latest.values().cloned().collect()
            },
            waiters: VecDeque::new(),
            done: s.closed,
        }));
        drop(s);
        if !iteration.borrow().done {
            state.borrow_mut().iterations.push(iteration.clone());
        }
        Self::iterator_object(iteration, Some(Rc::downgrade(state)))
    }

    fn iterator_object(
        iteration: Rc<RefCell<Iteration>>,
        state: Option<std::rc::Weak<RefCell<StatusUpdates>>>,
    ) -> JsValue {
        let object: JsValue = Object::new().into();
        let for_next = iteration.clone();
        let next = Closure::<dyn Fn() -> Promise>::new(move || {
            let mut it = for_next.borrow_mut();
            if let Some(value) = it.queue.pop_front() {
                return Promise::resolve(&iterator_result(&value, false));
            }
            if it.done {
                return Promise::resolve(&iterator_result(&JsValue::UNDEFINED, true));
            }
            drop(it);
            let waiting = for_next.clone();
            Promise::new(&mut |resolve, _reject| {
                waiting.borrow_mut().waiters.push_back(resolve);
            })
        });
        js::set(&object, "next", &next.into_js_value());
        let for_return = iteration.clone();
        let end = Closure::<dyn Fn() -> Promise>::new(move || {
            let wake: Vec<Function> = {
                let mut it = for_return.borrow_mut();
                it.done = true;
                it.queue.clear();
                it.waiters.drain(..).collect()
            };
            if let Some(state) = state.as_ref().and_then(|s| s.upgrade()) {
                state
                    .borrow_mut()
                    .iterations
                    .retain(|i| !Rc::ptr_eq(i, &for_return));
            }
            for resolve in wake {
                let _ = resolve.call1(
                    &JsValue::UNDEFINED,
                    &iterator_result(&JsValue::UNDEFINED, true),
                );
            }
            Promise::resolve(&iterator_result(&JsValue::UNDEFINED, true))
        });
        js::set(&object, "return", &end.into_js_value());
        object
    }
}
