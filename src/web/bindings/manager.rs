//! The `DownloadManager` class of the JS face: Apple's `BADownloadManager` over the Rust
//! [`DownloadManager`]. Every async method returns a `Promise` that rejects with a typed `Error`
//! (see [`error_to_js`](crate::web::bindings::error_to_js)).
//!
//! # Example (JavaScript)
//! ```js
//! import init, { DownloadManager, UrlDownload } from '/pkg/background_assets.js';
//! await init();
//! const manager = DownloadManager.shared();
//! manager.setDelegate({ didFinish(id, finished) { console.log(id, finished.url); } });
//! await manager.schedule({ id: 'level-2', url: 'https://cdn.example/level-2.bin' });
//! console.log(await manager.fetchCurrentDownloads());
//! ```

use std::future::Future;
use std::rc::Rc;

use futures::future::LocalBoxFuture;

use js_sys::{Function, Object, Promise};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use crate::core::declaration::parse_declaration;
use crate::core::download::Identifier;
use crate::core::error::Error;
use crate::core::manager::{DownloadInfo, Foreground};
use crate::web::bindings::delegate::JsDelegate;
use crate::web::bindings::download::{download_from_js, is_plain_object};
use crate::web::bindings::errors::{describe_type, error_to_js, invalid_argument};
use crate::web::js;
use crate::web::manager::{DownloadManager, ManagerConfig};

type Result<T> = std::result::Result<T, Error>;

/// The keys `DownloadManager.open(options)` accepts.
///
/// # Example
/// ```no_run
/// assert_eq!(background_assets::web::bindings::OPEN_OPTION_KEYS, ["database", "declaration"]);
/// ```
pub const OPEN_OPTION_KEYS: [&str; 2] = ["database", "declaration"];

/// A promise of `future`'s value; an [`Error`] rejects it as a typed JS `Error`.
pub(crate) fn promise<F>(future: F) -> Promise
where
    F: Future<Output = Result<JsValue>> + 'static,
{
    typed_promise(Box::pin(future))
}

/// [`promise`] past its one generic step (boxing), so the rest is in the wasm once.
#[inline(never)]
fn typed_promise(future: LocalBoxFuture<'static, Result<JsValue>>) -> Promise {
    js::promise_of(async move { future.await.map_err(|e| error_to_js(&e)) })
}

/// An identifier from a string, or from the `id` of a download object (Apple passes the
/// download itself to `cancel`).
pub(crate) fn identifier_from_js(argument: &str, value: &JsValue) -> Result<Identifier> {
    if let Some(text) = value.as_string() {
        return Identifier::new(text);
    }
    if value.is_object() {
        for key in ["id", "identifier"] {
            if let Some(text) = js::get(value, key).as_string() {
                return Identifier::new(text);
            }
        }
    }
    Err(invalid_argument(
        argument,
        format!(
            "expected a download identifier (a string) or a download, got {}",
            describe_type(value)
        ),
    ))
}

/// Calls `f()` and waits for the value (or the promise it returned).
async fn call_and_wait(f: Function) -> std::result::Result<JsValue, JsValue> {
    let value = f.call0(&JsValue::UNDEFINED)?;
    JsFuture::from(Promise::resolve(&value)).await
}

fn function_argument(argument: &str, value: JsValue) -> Result<Function> {
    value.dyn_into::<Function>().map_err(|value| {
        invalid_argument(
            argument,
            format!("must be a function, got {}", describe_type(&value)),
        )
    })
}

/// One `fetchCurrentDownloads()` entry: `{ id, url, state, essential, priority, foreground,
/// totalWritten, totalExpected, requeuedFromEssential, pack }`.
///
/// # Example
/// ```no_run
/// # fn demo(info: background_assets::core::manager::DownloadInfo) {
/// let object = background_assets::web::bindings::download_info_to_js(&info, "https://cdn.example/a");
/// assert!(background_assets::web::js::get(&object, "state").is_string());
/// # }
/// ```
pub fn download_info_to_js(info: &DownloadInfo, url: &str) -> JsValue {
    let object: JsValue = Object::new().into();
    js::set(&object, "id", &info.identifier.as_str().into());
    js::set(&object, "url", &url.into());
    let state = serde_json::to_value(info.state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    js::set(&object, "state", &state.into());
    js::set(&object, "essential", &info.essential.into());
    js::set(&object, "priority", &info.priority.value().into());
    js::set(&object, "foreground", &info.foreground.into());
    js::set(
        &object,
        "totalWritten",
        &(info.progress.total_written as f64).into(),
    );
    let expected = info
        .progress
        .total_expected
        .map(|t| JsValue::from(t as f64))
        .unwrap_or(JsValue::NULL);
    js::set(&object, "totalExpected", &expected);
    js::set(
        &object,
        "requeuedFromEssential",
        &info.requeued_from_essential.into(),
    );
    let pack = match &info.pack {
        Some(member) => {
            let pack: JsValue = Object::new().into();
            js::set(&pack, "id", &member.pack_id.as_str().into());
            js::set(&pack, "path", &member.path.as_str().into());
            pack
        }
        None => JsValue::NULL,
    };
    js::set(&object, "pack", &pack);
    object
}

/// The configuration `DownloadManager.open(options)` asks for: `{ database?, declaration? }`,
/// where `declaration` is the `pkg.json` content (an object or its JSON text); without it the
/// origin's `/pkg.json` is loaded as [`ManagerConfig::for_global`] does.
///
/// # Example
/// ```no_run
/// # async fn demo() {
/// let options = js_sys::JSON::parse(r#"{ "database": "test-db", "declaration": {} }"#).unwrap();
/// let config = background_assets::web::bindings::open_options_from_js(&options).await.unwrap();
/// assert_eq!(config.database, "test-db");
/// # }
/// ```
pub async fn open_options_from_js(options: &JsValue) -> Result<ManagerConfig> {
    const ARGUMENT: &str = "DownloadManager.open(options)";
    if options.is_undefined() || options.is_null() {
        return ManagerConfig::for_global().await;
    }
    if !is_plain_object(options) {
        return Err(invalid_argument(
            ARGUMENT,
            format!(
                "expected an object {{ database?, declaration? }}, got {}",
                describe_type(options)
            ),
        ));
    }
    for key in Object::keys(options.unchecked_ref::<Object>()).iter() {
        let key = key.as_string().unwrap_or_default();
        if !OPEN_OPTION_KEYS.contains(&key.as_str()) {
            return Err(invalid_argument(
                &format!("{ARGUMENT}.{key}"),
                format!("unknown option (expected {})", OPEN_OPTION_KEYS.join(", ")),
            ));
        }
    }
    let declaration = js::get(options, "declaration");
    let mut config = if declaration.is_undefined() || declaration.is_null() {
        ManagerConfig::for_global().await?
    } else {
        let text = match declaration.as_string() {
            Some(text) => text,
            None if is_plain_object(&declaration) => js::json_text(&declaration)
                .map_err(|e| invalid_argument(&format!("{ARGUMENT}.declaration"), e))?,
            None => {
                return Err(invalid_argument(
                    &format!("{ARGUMENT}.declaration"),
                    format!(
                        "expected the pkg.json object or its JSON text, got {}",
                        describe_type(&declaration)
                    ),
                ))
            }
        };
        let origin = js::origin();
        let page_url = url::Url::parse(&origin)
            .and_then(|u| u.join("/"))
            .map_err(|e| Error::Unsupported {
                what: format!("a global whose origin `{origin}` is not a URL: {e}"),
            })?;
        ManagerConfig::new(parse_declaration(&text, &page_url)?, page_url)
    };
    let database = js::get(options, "database");
    if !database.is_undefined() {
        match database.as_string() {
            Some(name) if !name.is_empty() => config.database = name,
            _ => {
                return Err(invalid_argument(
                    &format!("{ARGUMENT}.database"),
                    format!(
                        "expected a non-empty database name, got {}",
                        describe_type(&database)
                    ),
                ))
            }
        }
    }
    Ok(config)
}

/// Apple's `BADownloadManager`, for JavaScript (`DownloadManager` in JS; Rust code uses
/// [`DownloadManager`] directly, or [`DownloadManagerJs::manager`]).
///
/// # Example (JavaScript)
/// ```js
/// const manager = DownloadManager.shared();
/// const current = await manager.fetchCurrentDownloads();
/// ```
#[wasm_bindgen(js_name = DownloadManager)]
#[derive(Debug, Clone)]
pub struct DownloadManagerJs {
    manager: DownloadManager,
}

#[wasm_bindgen(js_class = DownloadManager)]
impl DownloadManagerJs {
    /// The manager of this global (page or service worker), configured from the origin's
    /// `/pkg.json`. Every call returns the same manager.
    ///
    /// # Example (JavaScript)
    /// ```js
    /// const manager = DownloadManager.shared();
    /// ```
    pub fn shared() -> DownloadManagerJs {
        DownloadManagerJs {
            manager: DownloadManager::shared(),
        }
    }

    /// Opens a manager of its own on `options.database` (default `"background-assets"`) with
    /// `options.declaration` (the `pkg.json` object or text; default: the origin's `/pkg.json`).
    /// Used for separate containers and by tests. Rejects with `InvalidArgument` (an unknown
    /// option, a wrong type) or `InvalidDeclaration` (the JSON path of the bad value).
    ///
    /// # Example (JavaScript)
    /// ```js
    /// const manager = await DownloadManager.open({ database: 'my-assets', declaration: { assetPacks: [] } });
    /// ```
    #[wasm_bindgen(unchecked_return_type = "Promise<DownloadManager>")]
    pub fn open(
        #[wasm_bindgen(unchecked_param_type = "DownloadManagerOptions")] options: Option<JsValue>,
    ) -> Promise {
        promise(async move {
            let options = options.unwrap_or(JsValue::UNDEFINED);
            let config = open_options_from_js(&options).await?;
            let manager = DownloadManager::open(config).await?;
            Ok(DownloadManagerJs { manager }.into())
        })
    }

    /// Sets the delegate (any subset of the [`DownloadManagerDelegate`] methods, in camelCase);
    /// `null` removes it. Throws `InvalidArgument` for a value that is not an object or a
    /// delegate method that is not a function.
    ///
    /// [`DownloadManagerDelegate`]: crate::web::manager::DownloadManagerDelegate
    ///
    /// # Example (JavaScript)
    /// ```js
    /// manager.setDelegate({ didFinish(id, finished) { console.log(id, finished.url); } });
    /// manager.setDelegate(null); // removes it
    /// ```
    #[wasm_bindgen(js_name = setDelegate)]
    pub fn set_delegate(
        &self,
        #[wasm_bindgen(unchecked_param_type = "DownloadManagerDelegate | null")] delegate: JsValue,
    ) -> std::result::Result<(), JsValue> {
        if delegate.is_null() || delegate.is_undefined() {
            self.manager.set_delegate(None);
            return Ok(());
        }
        let delegate = JsDelegate::from_js(delegate).map_err(|e| error_to_js(&e))?;
        self.manager.set_delegate(Some(Rc::new(delegate)));
        Ok(())
    }

    /// Schedules a download (a `UrlDownload` or `{ id, url, ... }`): it runs when the queue
    /// decides, also from the worker. Rejects with `DownloadAlreadyScheduled`,
    /// `DownloadInvalid` (naming the field), `InvalidIdentifier`, a policy refusal...
    ///
    /// # Example (JavaScript)
    /// ```js
    /// await manager.schedule(new UrlDownload({ id: 'level-2', url: 'https://cdn.example/level-2.bin', size: 1024 }));
    /// await manager.schedule({ id: 'intro', url: 'https://cdn.example/intro.mp4' });
    /// ```
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn schedule(
        &self,
        #[wasm_bindgen(unchecked_param_type = "UrlDownload | UrlDownloadInit")] download: JsValue,
    ) -> Promise {
        let manager = self.manager.clone();
        let download = download_from_js(&download);
        promise(async move {
            manager.schedule(download?).await?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Apple's `startForegroundDownload`, pages only (`CallFromExtensionNotAllowed` in the
    /// worker): takes an identifier (promotes a scheduled download without restarting it) or a
    /// download (scheduled now if it is not yet).
    ///
    /// # Example (JavaScript)
    /// ```js
    /// await manager.startForegroundDownload('level-2');
    /// ```
    #[wasm_bindgen(js_name = startForegroundDownload, unchecked_return_type = "Promise<void>")]
    pub fn start_foreground_download(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string | UrlDownload | UrlDownloadInit")]
        target: JsValue,
    ) -> Promise {
        let manager = self.manager.clone();
        let target: Result<Foreground> = match target.as_string() {
            Some(id) => Identifier::new(id).map(Foreground::Scheduled),
            None => download_from_js(&target).map(Foreground::from),
        };
        promise(async move {
            manager.start_foreground(target?).await?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Apple's `fetchCurrentDownloads`: the waiting, running and paused downloads as
    /// `{ id, url, state, essential, priority, foreground, totalWritten, totalExpected,
    /// requeuedFromEssential, pack }`.
    ///
    /// # Example (JavaScript)
    /// ```js
    /// for (const { id, state, totalWritten, totalExpected } of await manager.fetchCurrentDownloads()) {
    ///   console.log(id, state, totalWritten, totalExpected);
    /// }
    /// ```
    #[wasm_bindgen(
        js_name = fetchCurrentDownloads,
        unchecked_return_type = "Promise<DownloadInfo[]>"
    )]
    pub fn fetch_current_downloads(&self) -> Promise {
        let manager = self.manager.clone();
        promise(async move {
            let infos = manager.fetch_current_downloads().await?;
            let ids: Vec<Identifier> = infos.iter().map(|i| i.identifier.clone()).collect();
            let urls: Vec<String> = manager
                .inspect(move |core| {
                    ids.iter()
                        .map(|id| {
                            core.description(id)
                                .map(|d| d.request.url.to_string())
                                .unwrap_or_default()
                        })
                        .collect()
                })
                .await?;
            let list: js_sys::Array = infos
                .iter()
                .zip(&urls)
                .map(|(info, url)| download_info_to_js(info, url))
                .collect();
            Ok(list.into())
        })
    }

    /// Cancels a scheduled download (an identifier or the download): `didFail` with
    /// `Cancelled`, its bytes deleted. Rejects with `DownloadDoesNotExist`,
    /// `DownloadNotScheduled`.
    ///
    /// # Example (JavaScript)
    /// ```js
    /// await manager.cancel('level-2');
    /// ```
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn cancel(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string | UrlDownload | UrlDownloadInit")]
        download: JsValue,
    ) -> Promise {
        let manager = self.manager.clone();
        let id = identifier_from_js("cancel(download)", &download);
        promise(async move {
            manager.cancel(&id?).await?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Pauses a waiting or running download, keeping its bytes (`didPause`).
    ///
    /// # Example (JavaScript)
    /// ```js
    /// await manager.pause('level-2');
    /// ```
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn pause(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string | UrlDownload | UrlDownloadInit")]
        download: JsValue,
    ) -> Promise {
        let manager = self.manager.clone();
        let id = identifier_from_js("pause(download)", &download);
        promise(async move {
            manager.pause(&id?).await?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Resumes a paused download from its checkpoint (a `Range` request).
    ///
    /// # Example (JavaScript)
    /// ```js
    /// await manager.resume('level-2');
    /// ```
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn resume(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string | UrlDownload | UrlDownloadInit")]
        download: JsValue,
    ) -> Promise {
        let manager = self.manager.clone();
        let id = identifier_from_js("resume(download)", &download);
        promise(async move {
            manager.resume(&id?).await?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Apple's `withExclusiveControl`: runs `f` (sync or async) holding the manager's Web Lock
    /// and resolves with its value; a throw of `f` rejects with what it threw.
    ///
    /// # Example (JavaScript)
    /// ```js
    /// const list = await manager.withExclusiveControl(() => manager.fetchCurrentDownloads());
    /// ```
    #[wasm_bindgen(js_name = withExclusiveControl, unchecked_return_type = "Promise<any>")]
    pub fn with_exclusive_control(
        &self,
        #[wasm_bindgen(unchecked_param_type = "() => unknown")] f: JsValue,
    ) -> Promise {
        let manager = self.manager.clone();
        let f = function_argument("withExclusiveControl(f)", f);
        js::promise_of(async move {
            let f = f.map_err(|e| error_to_js(&e))?;
            manager
                .with_exclusive_control(|| call_and_wait(f))
                .await
                .map_err(|e| error_to_js(&e))?
        })
    }

    /// Apple's `withExclusiveControl(beforeDate:)`: like `withExclusiveControl`, but rejects
    /// with `LockTimeout` (without calling `f`) when the lock is not acquired before `deadline`
    /// (a `Date` or `Date.now()`-based milliseconds).
    ///
    /// # Example (JavaScript)
    /// ```js
    /// try {
    ///   await manager.withExclusiveControlBefore(Date.now() + 500, () => manager.pause('a'));
    /// } catch (e) {
    ///   if (e.name === 'LockTimeout') console.log('not acquired in time');
    /// }
    /// ```
    #[wasm_bindgen(js_name = withExclusiveControlBefore, unchecked_return_type = "Promise<any>")]
    pub fn with_exclusive_control_before(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Date | number")] deadline: JsValue,
        #[wasm_bindgen(unchecked_param_type = "() => unknown")] f: JsValue,
    ) -> Promise {
        let manager = self.manager.clone();
        let f = function_argument("withExclusiveControlBefore(deadline, f)", f);
        let deadline = deadline_from_js(&deadline);
        js::promise_of(async move {
            let f = f.map_err(|e| error_to_js(&e))?;
            let deadline = deadline.map_err(|e| error_to_js(&e))?;
            manager
                .with_exclusive_control_before(deadline, || call_and_wait(f))
                .await
                .map_err(|e| error_to_js(&e))?
        })
    }

    /// Stops this manager: its transfers end as if the context were killed (checkpoints kept)
    /// and later calls reject with `Storage`. After closing the shared manager,
    /// `DownloadManager.shared()` opens a new one.
    ///
    /// # Example (JavaScript)
    /// ```js
    /// await manager.close();
    /// ```
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn close(&self) -> Promise {
        let manager = self.manager.clone();
        promise(async move {
            manager.close().await;
            Ok(JsValue::UNDEFINED)
        })
    }
}

fn deadline_from_js(deadline: &JsValue) -> Result<f64> {
    let value = match deadline.dyn_ref::<js_sys::Date>() {
        Some(date) => date.get_time(),
        None => deadline.as_f64().unwrap_or(f64::NAN),
    };
    if value.is_finite() {
        Ok(value)
    } else {
        Err(invalid_argument(
            "withExclusiveControlBefore(deadline)",
            format!(
                "expected a Date or Date.now()-based milliseconds, got {}",
                describe_type(deadline)
            ),
        ))
    }
}

impl DownloadManagerJs {
    /// The Rust manager this wraps.
    ///
    /// # Example
    /// ```no_run
    /// let js = background_assets::web::bindings::DownloadManagerJs::shared();
    /// let manager = js.manager().clone();
    /// # drop(manager);
    /// ```
    pub fn manager(&self) -> &DownloadManager {
        &self.manager
    }
}

impl From<DownloadManager> for DownloadManagerJs {
    fn from(manager: DownloadManager) -> Self {
        DownloadManagerJs { manager }
    }
}
