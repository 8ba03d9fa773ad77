//! A JavaScript object as the manager's delegate: any subset of `didBegin`, `didPause`,
//! `didWriteData`, `didFail`, `didFinish`, `didRequeueAsNonEssential` and the async
//! `authenticationChallenge`. Methods are looked up at each call (so they can be added or
//! replaced later) and called with the object as `this`. A throwing method is reported on the
//! console and does not stop the manager.
//!
//! # Example (JavaScript)
//! ```js
//! manager.setDelegate({
//!   didWriteData(id, bytesWritten, totalWritten, totalExpected) { bar.value = totalWritten; },
//!   async authenticationChallenge(id, { url, status, wwwAuthenticate }) {
//!     return { Authorization: `Bearer ${await token()}` }; // or null to fail the download
//!   },
//! });
//! ```

use futures::future::{FutureExt, LocalBoxFuture};
use js_sys::{Array, Function, Object};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use crate::core::download::Identifier;
use crate::core::error::Error;
use crate::web::bindings::download::is_plain_object;
use crate::web::bindings::errors::error_to_js;
use crate::web::bindings::finished::FinishedDownloadJs;
use crate::web::js;
use crate::web::manager::{AuthChallenge, Credentials, DownloadManagerDelegate, FinishedDownload};

/// The delegate method names a JS delegate may have.
///
/// # Example
/// ```no_run
/// assert!(background_assets::web::bindings::DELEGATE_METHODS.contains(&"didFinish"));
/// ```
pub const DELEGATE_METHODS: [&str; 7] = [
    "didBegin",
    "didPause",
    "didWriteData",
    "didFail",
    "didFinish",
    "didRequeueAsNonEssential",
    "authenticationChallenge",
];

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = console, js_name = error)]
    fn console_error(message: &str, error: &JsValue);
}

/// A JS object adapted to [`DownloadManagerDelegate`].
///
/// # Example
/// ```no_run
/// use std::rc::Rc;
/// use background_assets::web::bindings::JsDelegate;
/// use background_assets::web::manager::DownloadManager;
/// let object: wasm_bindgen::JsValue = js_sys::Object::new().into();
/// DownloadManager::shared().set_delegate(Some(Rc::new(JsDelegate::new(object))));
/// ```
#[derive(Debug, Clone)]
pub struct JsDelegate {
    object: JsValue,
}

impl JsDelegate {
    /// Adapts `object` (not checked: see [`JsDelegate::from_js`]).
    ///
    /// # Example
    /// ```no_run
    /// let d = background_assets::web::bindings::JsDelegate::new(js_sys::Object::new().into());
    /// # drop(d);
    /// ```
    pub fn new(object: JsValue) -> JsDelegate {
        JsDelegate { object }
    }

    /// Checks `value` is an object whose delegate methods, where present, are functions (an
    /// [`Error::InvalidArgument`] names the first that is not) and adapts it.
    ///
    /// # Example
    /// ```no_run
    /// use background_assets::web::bindings::JsDelegate;
    /// assert!(JsDelegate::from_js(wasm_bindgen::JsValue::from(5)).is_err());
    /// ```
    pub fn from_js(value: JsValue) -> Result<JsDelegate, Error> {
        if !value.is_object() {
            return Err(Error::InvalidArgument {
                argument: "setDelegate(delegate)".into(),
                reason: format!(
                    "a delegate is an object with methods like didFinish, or null; got {}",
                    crate::web::bindings::errors::describe_type(&value)
                ),
            });
        }
        for name in DELEGATE_METHODS {
            let method = js::get(&value, name);
            if !method.is_undefined() && !method.is_null() && !method.is_function() {
                return Err(Error::InvalidArgument {
                    argument: format!("setDelegate(delegate).{name}"),
                    reason: format!(
                        "must be a function, got {}",
                        crate::web::bindings::errors::describe_type(&method)
                    ),
                });
            }
        }
        if is_plain_object(&value) {
            let keys = Object::keys(value.unchecked_ref::<Object>());
            let known = keys
                .iter()
                .filter_map(|k| k.as_string())
                .any(|k| DELEGATE_METHODS.contains(&k.as_str()));
            if keys.length() > 0 && !known {
                return Err(Error::InvalidArgument {
                    argument: "setDelegate(delegate)".into(),
                    reason: format!(
                        "the object has none of the delegate methods ({})",
                        DELEGATE_METHODS.join(", ")
                    ),
                });
            }
        }
        Ok(JsDelegate { object: value })
    }

    /// The JS object.
    ///
    /// # Example
    /// ```no_run
    /// # fn demo(d: background_assets::web::bindings::JsDelegate) { assert!(d.object().is_object()); }
    /// ```
    pub fn object(&self) -> &JsValue {
        &self.object
    }

    fn method(&self, name: &str) -> Option<Function> {
        js::get(&self.object, name).dyn_into::<Function>().ok()
    }

    /// Calls `name(...args)` if the delegate has it; a throw or a rejected promise is logged.
    fn call(&self, name: &str, args: &[JsValue]) -> Option<JsValue> {
        let method = self.method(name)?;
        let array: Array = args.iter().collect();
        match method.apply(&self.object, &array) {
            Ok(value) => {
                if let Some(promise) = value.dyn_ref::<js_sys::Promise>() {
                    let name = name.to_string();
                    let promise = promise.clone();
                    js::spawn(async move {
                        if let Err(e) = JsFuture::from(promise).await {
                            console_error(
                                &format!("background-assets: delegate {name} rejected"),
                                &e,
                            );
                        }
                    });
                }
                Some(value)
            }
            Err(e) => {
                console_error(&format!("background-assets: delegate {name} threw"), &e);
                None
            }
        }
    }
}

/// Credentials from what `authenticationChallenge` resolved to: `null`/`undefined` declines; an
/// object of header strings (or a `Headers`, or pairs) answers.
fn credentials_from_js(value: &JsValue) -> Result<Option<Credentials>, String> {
    if value.is_undefined() || value.is_null() {
        return Ok(None);
    }
    let pairs: Vec<JsValue> = if is_plain_object(value) {
        Object::entries(value.unchecked_ref::<Object>())
            .iter()
            .collect()
    } else {
        match js_sys::try_iter(value) {
            Ok(Some(iter)) => iter
                .collect::<Result<_, _>>()
                .map_err(|e| js::describe(&e))?,
            _ => {
                return Err(format!(
                    "expected an object of header strings or null, got {}",
                    crate::web::bindings::errors::describe_type(value)
                ))
            }
        }
    };
    let mut headers = Vec::new();
    for pair in pairs {
        let name = js_sys::Reflect::get_u32(&pair, 0).unwrap_or_default();
        let header = js_sys::Reflect::get_u32(&pair, 1).unwrap_or_default();
        match (name.as_string(), header.as_string()) {
            (Some(name), Some(header)) => headers.push((name, header)),
            _ => return Err("header names and values must be strings".into()),
        }
    }
    Ok(Some(headers))
}

fn challenge_to_js(challenge: &AuthChallenge) -> JsValue {
    let object: JsValue = Object::new().into();
    js::set(&object, "url", &challenge.url.as_str().into());
    js::set(&object, "status", &challenge.status.into());
    let header = challenge
        .www_authenticate
        .as_deref()
        .map(JsValue::from_str)
        .unwrap_or(JsValue::NULL);
    js::set(&object, "wwwAuthenticate", &header);
    object
}

impl DownloadManagerDelegate for JsDelegate {
    fn did_begin(&self, id: &Identifier) {
        self.call("didBegin", &[id.as_str().into()]);
    }

    fn did_pause(&self, id: &Identifier) {
        self.call("didPause", &[id.as_str().into()]);
    }

    fn did_write_data(
        &self,
        id: &Identifier,
        bytes_written: u64,
        total_written: u64,
        total_expected: Option<u64>,
    ) {
        let expected = total_expected
            .map(|t| JsValue::from(t as f64))
            .unwrap_or(JsValue::NULL);
        self.call(
            "didWriteData",
            &[
                id.as_str().into(),
                (bytes_written as f64).into(),
                (total_written as f64).into(),
                expected,
            ],
        );
    }

    fn did_fail(&self, id: &Identifier, error: &Error) {
        self.call("didFail", &[id.as_str().into(), error_to_js(error)]);
    }

    fn did_finish(&self, id: &Identifier, finished: FinishedDownload) {
        let handle: JsValue = FinishedDownloadJs::from(finished).into();
        self.call("didFinish", &[id.as_str().into(), handle]);
    }

    fn did_requeue_as_non_essential(&self, id: &Identifier) {
        self.call("didRequeueAsNonEssential", &[id.as_str().into()]);
    }

    fn authentication_challenge(
        &self,
        id: &Identifier,
        challenge: &AuthChallenge,
    ) -> LocalBoxFuture<'static, Option<Credentials>> {
        let Some(method) = self.method("authenticationChallenge") else {
            return async { None }.boxed_local();
        };
        let args: Array = [id.as_str().into(), challenge_to_js(challenge)]
            .iter()
            .collect();
        let returned = method.apply(&self.object, &args);
        async move {
            let answer = match returned {
                Ok(value) => JsFuture::from(js_sys::Promise::resolve(&value)).await,
                Err(e) => Err(e),
            };
            let answer = match answer {
                Ok(answer) => answer,
                Err(e) => {
                    console_error(
                        "background-assets: delegate authenticationChallenge failed; declining",
                        &e,
                    );
                    return None;
                }
            };
            match credentials_from_js(&answer) {
                Ok(credentials) => credentials,
                Err(why) => {
                    console_error(
                        &format!(
                            "background-assets: authenticationChallenge answer ignored: {why}"
                        ),
                        &answer,
                    );
                    None
                }
            }
        }
        .boxed_local()
    }
}
