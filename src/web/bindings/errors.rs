//! Errors as JavaScript sees them: every rejection and throw of the JS face is a real `Error`
//! whose `name` is [`Error::name`], with `code` ([`Error::code`]), `transient`
//! ([`Error::is_transient`]) and the variant's fields (camelCase) as properties.
//!
//! Two field names would hide `Error`'s own: `LockTimeout`'s `name` is `lockName`, and the
//! `message` of `Storage`/`Network` is `detail` (the `message` is always the Display text).
//!
//! # Example (JavaScript)
//! ```js
//! try { await manager.schedule({ id: 'a', url: 'https://cdn.example/a' }); }
//! catch (e) { if (e.name === 'DownloadAlreadyScheduled') console.log(e.code, e.identifier); }
//! ```

use wasm_bindgen::{JsCast, JsValue};

use crate::core::error::Error;
use crate::web::js;

/// The JS `Error` for `error` (see the module docs for its properties).
///
/// # Example
/// ```no_run
/// use background_assets::core::error::Error;
/// use background_assets::web::{bindings::error_to_js, js};
/// let e = error_to_js(&Error::DownloadDoesNotExist { identifier: "a".into() });
/// assert_eq!(js::get(&e, "code").as_f64(), Some(113.0));
/// assert_eq!(js::get(&e, "identifier").as_string().as_deref(), Some("a"));
/// ```
pub fn error_to_js(error: &Error) -> JsValue {
    let js_error = js_sys::Error::new(&error.to_string());
    js_error.set_name(error.name());
    let value: JsValue = js_error.into();
    js::set(&value, "code", &JsValue::from(error.code()));
    js::set(
        &value,
        "transient",
        &JsValue::from_bool(error.is_transient()),
    );
    // The variant's fields, from its JSON form `{"Variant":{"field":…}}`.
    let fields = js::to_plain(error)
        .ok()
        .and_then(|outer| outer.dyn_into::<js_sys::Object>().ok())
        .and_then(|outer| {
            js_sys::Object::values(&outer)
                .get(0)
                .dyn_into::<js_sys::Object>()
                .ok()
        })
        .filter(|fields| !js_sys::Array::is_array(fields));
    if let Some(fields) = fields {
        for entry in js_sys::Object::entries(&fields).iter() {
            let entry: js_sys::Array = entry.into();
            let Some(key) = entry.get(0).as_string() else {
                continue;
            };
            let key = match key.as_str() {
                "name" => "lockName".to_string(),
                "message" => "detail".to_string(),
                other => camel_case(other),
            };
            js::set(&value, &key, &entry.get(1));
        }
    }
    value
}

/// Converts a `Result` of the Rust face into what a `#[wasm_bindgen]` export returns.
///
/// # Example
/// ```no_run
/// use background_assets::core::error::Error;
/// let r: Result<(), Error> = Err(Error::Unsupported { what: "x".into() });
/// assert!(background_assets::web::bindings::to_js_result(r).is_err());
/// ```
pub fn to_js_result<T>(result: Result<T, Error>) -> Result<T, JsValue> {
    result.map_err(|e| error_to_js(&e))
}

/// [`Error::InvalidArgument`] naming `argument`.
pub(crate) fn invalid_argument(argument: &str, reason: impl Into<String>) -> Error {
    Error::InvalidArgument {
        argument: argument.to_string(),
        reason: reason.into(),
    }
}

/// A short description of a JS value's type for error messages: `number 5`, `undefined`...
pub(crate) fn describe_type(value: &JsValue) -> String {
    if value.is_undefined() {
        return "undefined".into();
    }
    if value.is_null() {
        return "null".into();
    }
    if let Some(text) = value.as_string() {
        let shown: String = text.chars().take(40).collect();
        return format!("string {shown:?}");
    }
    if let Some(number) = value.as_f64() {
        return format!("number {number}");
    }
    if let Some(flag) = value.as_bool() {
        return format!("boolean {flag}");
    }
    if value.is_function() {
        return "a function".into();
    }
    if js_sys::Array::is_array(value) {
        return "an array".into();
    }
    "an object".into()
}

fn camel_case(snake: &str) -> String {
    let mut out = String::with_capacity(snake.len());
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}
