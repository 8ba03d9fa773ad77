//! Download descriptors from JavaScript: the `UrlDownload` class and the plain objects every
//! method that takes a download accepts (`{ id, url, essential, size, priority, headers,
//! applicationGroup }`; Apple's `identifier` and `fileSize` are accepted as aliases).
//!
//! Bad input is a typed error naming the field: [`Error::DownloadInvalid`] for a wrong type or
//! an unknown key of a plain object (a typo like `sise` would otherwise be ignored silently),
//! [`Error::InvalidIdentifier`] for a bad id.
//!
//! # Example (JavaScript)
//! ```js
//! const d = new UrlDownload({ id: 'level-2', url: 'https://cdn.example/level-2.bin', size: 1024 });
//! console.log(d.id, d.size, d.priority); // "level-2" 1024 50
//! ```

use js_sys::{Array, Object, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use crate::core::download::{DownloadRequest, Identifier, Priority, UrlDownload, MAX_SAFE_INTEGER};
use crate::core::error::Error;
use crate::web::bindings::errors::{describe_type, to_js_result};
use crate::web::js;

type Result<T> = std::result::Result<T, Error>;

/// The keys a plain download object may have (others are refused, naming the key).
///
/// # Example
/// ```no_run
/// assert!(background_assets::web::bindings::DESCRIPTOR_KEYS.contains(&"fileSize"));
/// ```
pub const DESCRIPTOR_KEYS: [&str; 9] = [
    "id",
    "identifier",
    "url",
    "essential",
    "size",
    "fileSize",
    "priority",
    "headers",
    "applicationGroup",
];

fn invalid(reason: impl Into<String>) -> Error {
    Error::DownloadInvalid {
        reason: reason.into(),
    }
}

/// Whether `value` is a plain object (`{...}` or `Object.create(null)`), not a class instance.
pub(crate) fn is_plain_object(value: &JsValue) -> bool {
    if !value.is_object() || value.is_function() || Array::is_array(value) {
        return false;
    }
    let proto = Object::get_prototype_of(value);
    proto.is_null() || proto == Object::get_prototype_of(&Object::new())
}

/// The first of `keys` that `object` has a defined value for, with the key it was found under.
fn field<'a>(object: &JsValue, keys: &[&'a str]) -> (&'a str, JsValue) {
    for key in keys {
        let value = js::get(object, key);
        if !value.is_undefined() {
            return (key, value);
        }
    }
    (keys[0], JsValue::UNDEFINED)
}

/// Reads a download from JavaScript: a `UrlDownload` instance or a plain object.
///
/// # Example
/// ```no_run
/// use background_assets::web::bindings::download_from_js;
/// let object = js_sys::JSON::parse(r#"{ "id": "a", "url": "https://cdn.example/a" }"#).unwrap();
/// let download = download_from_js(&object).unwrap();
/// assert_eq!(download.identifier.as_str(), "a");
/// ```
pub fn download_from_js(value: &JsValue) -> Result<UrlDownload> {
    if !value.is_object() || value.is_function() || Array::is_array(value) {
        return Err(invalid(format!(
            "a download must be a UrlDownload or an object like {{ id, url }}, got {}",
            describe_type(value)
        )));
    }
    if is_plain_object(value) {
        for key in Object::keys(value.unchecked_ref::<Object>()).iter() {
            let key = key.as_string().unwrap_or_default();
            if !DESCRIPTOR_KEYS.contains(&key.as_str()) {
                return Err(invalid(format!(
                    "unknown key `{key}` (a download has {})",
                    DESCRIPTOR_KEYS.join(", ")
                )));
            }
        }
    }
    let (key, id) = field(value, &["id", "identifier"]);
    let id = id.as_string().ok_or_else(|| {
        invalid(format!(
            "`{key}` must be a string, got {}",
            describe_type(&id)
        ))
    })?;
    let identifier = Identifier::new(id)?;

    let url = js::get(value, "url");
    let url_text = match url.as_string() {
        Some(text) => text,
        // A `URL` object.
        None if url.is_object() => js::get(&url, "href").as_string().ok_or_else(|| {
            invalid("`url` must be a string or a URL, got an object without `href`")
        })?,
        None => {
            return Err(invalid(format!(
                "`url` must be a string or a URL, got {}",
                describe_type(&url)
            )))
        }
    };
    let mut request = DownloadRequest::get(&url_text)?;
    for (name, header) in headers_from_js(&js::get(value, "headers"))? {
        request = request.with_header(&name, &header)?;
    }

    let essential = js::get(value, "essential");
    let essential = match essential.as_bool() {
        Some(flag) => flag,
        None if essential.is_undefined() => false,
        None => {
            return Err(invalid(format!(
                "`essential` must be a boolean, got {}",
                describe_type(&essential)
            )))
        }
    };

    let (key, size) = field(value, &["size", "fileSize"]);
    let size = size_from_js(key, &size)?;
    let priority = priority_from_js(&js::get(value, "priority"))?;
    let mut download = UrlDownload::new(
        identifier,
        request,
        essential,
        size,
        priority,
        js_sys::Date::now().max(0.0) as u64,
    )?;
    let group = js::get(value, "applicationGroup");
    if !group.is_undefined() && !group.is_null() {
        let group = group.as_string().ok_or_else(|| {
            invalid(format!(
                "`applicationGroup` must be a string, got {}",
                describe_type(&group)
            ))
        })?;
        download = download.with_application_group(group)?;
    }
    Ok(download)
}

fn size_from_js(key: &str, size: &JsValue) -> Result<Option<u64>> {
    if size.is_undefined() || size.is_null() {
        return Ok(None);
    }
    let bad = || {
        invalid(format!(
            "`{key}` must be a whole number of bytes from 0 to 2^53-1, got {}",
            describe_type(size)
        ))
    };
    let number = size.as_f64().ok_or_else(bad)?;
    if !number.is_finite() || number < 0.0 || number.fract() != 0.0 {
        return Err(bad());
    }
    if number > MAX_SAFE_INTEGER as f64 {
        return Err(bad());
    }
    Ok(Some(number as u64))
}

fn priority_from_js(priority: &JsValue) -> Result<Priority> {
    if priority.is_undefined() || priority.is_null() {
        return Ok(Priority::DEFAULT);
    }
    if let Some(text) = priority.as_string() {
        return text.parse();
    }
    match priority.as_f64() {
        Some(number) if number.is_finite() && number.fract() == 0.0 => {
            Ok(Priority::new(number as i64))
        }
        _ => Err(invalid(format!(
            "`priority` must be a whole number from 0 to 100 or 'min'|'default'|'max', got {}",
            describe_type(priority)
        ))),
    }
}

/// Headers from a plain object (`{ name: value }`), a `Headers` or an iterable of pairs.
fn headers_from_js(headers: &JsValue) -> Result<Vec<(String, String)>> {
    if headers.is_undefined() || headers.is_null() {
        return Ok(Vec::new());
    }
    let bad = |what: String| invalid(format!("`headers` {what}"));
    let pairs: Vec<JsValue> = if is_plain_object(headers) {
        Object::entries(headers.unchecked_ref::<Object>())
            .iter()
            .collect()
    } else if headers.is_object() {
        match js_sys::try_iter(headers) {
            Ok(Some(iter)) => iter
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| bad(format!("could not be iterated: {}", js::describe(&e))))?,
            _ => {
                return Err(bad(format!(
                    "must be an object of strings, a Headers or pairs, got {}",
                    describe_type(headers)
                )))
            }
        }
    } else {
        return Err(bad(format!(
            "must be an object of strings, got {}",
            describe_type(headers)
        )));
    };
    pairs
        .into_iter()
        .map(|pair| {
            let name = Reflect::get_u32(&pair, 0).unwrap_or(JsValue::UNDEFINED);
            let value = Reflect::get_u32(&pair, 1).unwrap_or(JsValue::UNDEFINED);
            match (name.as_string(), value.as_string()) {
                (Some(name), Some(value)) => Ok((name, value)),
                (Some(name), None) => Err(bad(format!(
                    "`{name}` must be a string, got {}",
                    describe_type(&value)
                ))),
                _ => Err(bad("must map header names to strings".into())),
            }
        })
        .collect()
}

/// A plain JS object describing `download` (`{ id, url, essential, size, priority, headers,
/// applicationGroup }`; `size` and `applicationGroup` only when set).
///
/// # Example
/// ```no_run
/// # fn demo(d: background_assets::core::download::UrlDownload) {
/// let object = background_assets::web::bindings::download_to_js(&d);
/// assert!(background_assets::web::js::get(&object, "url").is_string());
/// # }
/// ```
pub fn download_to_js(download: &UrlDownload) -> JsValue {
    let object: JsValue = Object::new().into();
    js::set(&object, "id", &download.identifier.as_str().into());
    js::set(&object, "url", &download.request.url.as_str().into());
    js::set(&object, "essential", &download.essential.into());
    if let Some(size) = download.file_size {
        js::set(&object, "size", &(size as f64).into());
    }
    js::set(&object, "priority", &download.priority.value().into());
    js::set(
        &object,
        "headers",
        &headers_to_js(&download.request.headers),
    );
    if let Some(group) = &download.application_group {
        js::set(&object, "applicationGroup", &group.as_str().into());
    }
    object
}

fn headers_to_js(headers: &[(String, String)]) -> JsValue {
    let object: JsValue = Object::new().into();
    for (name, value) in headers {
        js::set(&object, name, &value.as_str().into());
    }
    object
}

/// Apple's `BAURLDownload` for JavaScript: a validated download description. Every method that
/// takes a download also takes a plain object of the same shape.
///
/// # Example (JavaScript)
/// ```js
/// const d = new UrlDownload({ id: 'a', url: 'https://cdn.example/a', size: 1024 });
/// await manager.schedule(d);
/// ```
#[wasm_bindgen(js_name = UrlDownload)]
#[derive(Debug, Clone)]
pub struct UrlDownloadJs {
    download: UrlDownload,
}

#[wasm_bindgen(js_class = UrlDownload)]
impl UrlDownloadJs {
    /// `new UrlDownload({ id, url, essential?, size?, priority?, headers?, applicationGroup? })`:
    /// throws a typed error naming the bad field.
    ///
    /// # Example (JavaScript)
    /// ```js
    /// const d = new UrlDownload({ id: 'level-2', url: 'https://cdn.example/level-2.bin', essential: false, size: 1024, priority: 50, headers: {} });
    /// ```
    #[wasm_bindgen(constructor)]
    pub fn new(
        #[wasm_bindgen(unchecked_param_type = "UrlDownloadInit")] descriptor: JsValue,
    ) -> std::result::Result<UrlDownloadJs, JsValue> {
        to_js_result(download_from_js(&descriptor)).map(|download| UrlDownloadJs { download })
    }

    /// The identifier (Apple's `identifier`).
    ///
    /// # Example (JavaScript)
    /// ```js
    /// console.log(new UrlDownload({ id: 'a', url: 'https://cdn.example/a' }).id); // "a"
    /// ```
    #[wasm_bindgen(getter)]
    pub fn id(&self) -> String {
        self.download.identifier.to_string()
    }

    /// The URL to fetch.
    ///
    /// # Example (JavaScript)
    /// ```js
    /// console.log(download.url);
    /// ```
    #[wasm_bindgen(getter)]
    pub fn url(&self) -> String {
        self.download.request.url.to_string()
    }

    /// Whether it is essential.
    ///
    /// # Example (JavaScript)
    /// ```js
    /// if (download.essential) console.log('needed before launch');
    /// ```
    #[wasm_bindgen(getter)]
    pub fn essential(&self) -> bool {
        self.download.essential
    }

    /// The exact size in bytes, if given (Apple's `fileSize`).
    ///
    /// # Example (JavaScript)
    /// ```js
    /// console.log(download.size ?? 'unknown size');
    /// ```
    #[wasm_bindgen(getter)]
    pub fn size(&self) -> Option<f64> {
        self.download.file_size.map(|s| s as f64)
    }

    /// The priority, `0..=100` (50 by default).
    ///
    /// # Example (JavaScript)
    /// ```js
    /// console.log(download.priority); // 50 unless given
    /// ```
    #[wasm_bindgen(getter)]
    pub fn priority(&self) -> u8 {
        self.download.priority.value()
    }

    /// The extra request headers, as `{ name: value }`.
    ///
    /// # Example (JavaScript)
    /// ```js
    /// console.log(download.headers.Authorization);
    /// ```
    #[wasm_bindgen(getter, unchecked_return_type = "Record<string, string>")]
    pub fn headers(&self) -> JsValue {
        headers_to_js(&self.download.request.headers)
    }

    /// The application group (the container name), if given.
    ///
    /// # Example (JavaScript)
    /// ```js
    /// console.log(download.applicationGroup);
    /// ```
    #[wasm_bindgen(getter, js_name = applicationGroup)]
    pub fn application_group(&self) -> Option<String> {
        self.download.application_group.clone()
    }

    /// The plain-object form (what `JSON.stringify` writes).
    ///
    /// # Example (JavaScript)
    /// ```js
    /// localStorage.setItem('next', JSON.stringify(download));
    /// ```
    #[wasm_bindgen(js_name = toJSON, unchecked_return_type = "UrlDownloadInit")]
    pub fn to_json(&self) -> JsValue {
        download_to_js(&self.download)
    }
}

impl UrlDownloadJs {
    /// The Rust download this describes.
    ///
    /// # Example
    /// ```no_run
    /// # fn demo(d: background_assets::web::bindings::UrlDownloadJs) {
    /// let download = d.download();
    /// # let _ = download; }
    /// ```
    pub fn download(&self) -> &UrlDownload {
        &self.download
    }
}

impl From<UrlDownload> for UrlDownloadJs {
    fn from(download: UrlDownload) -> Self {
        UrlDownloadJs { download }
    }
}
