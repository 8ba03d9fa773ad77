//! The finished-download handle JavaScript receives (`didFinish(id, finished)`,
//! `manager.file(path)`): `{ id, size, sha256, url, blob(), response(), objectUrl() }`.
//!
//! # Example (JavaScript)
//! ```js
//! manager.setDelegate({ async didFinish(id, finished) {
//!   video.src = finished.url;                 // served by the worker, with Range
//!   const bytes = await (await finished.blob()).arrayBuffer();
//! } });
//! ```

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use crate::core::error::Error;
use crate::web::bindings::errors::error_to_js;
use crate::web::js;
use crate::web::manager::FinishedDownload;

/// A stored, verified download, for JavaScript.
///
/// # Example (JavaScript)
/// ```js
/// manager.setDelegate({ async didFinish(id, finished) {
///   const blob = await finished.blob();
///   console.log(id, finished.size, finished.sha256, finished.url, blob.size);
/// } });
/// ```
#[wasm_bindgen(js_name = FinishedDownload)]
#[derive(Debug, Clone)]
pub struct FinishedDownloadJs {
    finished: FinishedDownload,
}

#[wasm_bindgen(js_class = FinishedDownload)]
impl FinishedDownloadJs {
    /// The download's identifier.
    ///
    /// # Example (JavaScript)
    /// ```js
    /// manager.setDelegate({ didFinish(id, finished) { console.assert(finished.id === id); } });
    /// ```
    #[wasm_bindgen(getter)]
    pub fn id(&self) -> String {
        self.finished.identifier.to_string()
    }

    /// Its size in bytes.
    ///
    /// # Example (JavaScript)
    /// ```js
    /// console.log(finished.size);
    /// ```
    #[wasm_bindgen(getter)]
    pub fn size(&self) -> f64 {
        self.finished.size as f64
    }

    /// Its SHA-256, 64 lower-case hex digits.
    ///
    /// # Example (JavaScript)
    /// ```js
    /// console.log(finished.sha256); // 64 hex digits
    /// ```
    #[wasm_bindgen(getter)]
    pub fn sha256(&self) -> String {
        self.finished.sha256.clone()
    }

    /// The URL the service worker serves it at (with `Range`).
    ///
    /// # Example (JavaScript)
    /// ```js
    /// video.src = finished.url;
    /// ```
    #[wasm_bindgen(getter)]
    pub fn url(&self) -> String {
        self.finished.url()
    }

    /// The asset as a `Blob` (built from the stored chunks, no copy in wasm memory).
    ///
    /// # Example (JavaScript)
    /// ```js
    /// const bytes = new Uint8Array(await (await finished.blob()).arrayBuffer());
    /// ```
    #[wasm_bindgen(unchecked_return_type = "Promise<Blob>")]
    pub fn blob(&self) -> js_sys::Promise {
        let finished = self.finished.clone();
        js::promise_of(async move {
            finished
                .blob()
                .await
                .map(JsValue::from)
                .map_err(|e| error_to_js(&e))
        })
    }

    /// The asset as a `200` `Response`.
    ///
    /// # Example (JavaScript)
    /// ```js
    /// const json = await (await finished.response()).json();
    /// ```
    #[wasm_bindgen(unchecked_return_type = "Promise<Response>")]
    pub fn response(&self) -> js_sys::Promise {
        let finished = self.finished.clone();
        js::promise_of(async move {
            finished
                .response()
                .await
                .map(JsValue::from)
                .map_err(|e| error_to_js(&e))
        })
    }

    /// A `blob:` URL of the asset (`URL.createObjectURL`; revoke it when done). Pages only:
    /// service workers have no object URLs ([`Error::Unsupported`]).
    ///
    /// # Example (JavaScript)
    /// ```js
    /// img.src = await finished.objectUrl(); // revoke with URL.revokeObjectURL when done
    /// ```
    #[wasm_bindgen(js_name = objectUrl, unchecked_return_type = "Promise<string>")]
    pub fn object_url(&self) -> js_sys::Promise {
        let finished = self.finished.clone();
        js::promise_of(async move {
            let unsupported = |why: String| {
                error_to_js(&Error::Unsupported {
                    what: format!("object URLs in this global ({why})"),
                })
            };
            let create = js::get(&js::get(&js_sys::global(), "URL"), "createObjectURL")
                .dyn_into::<js_sys::Function>()
                .map_err(|_| unsupported("URL.createObjectURL is missing".into()))?;
            let blob = finished.blob().await.map_err(|e| error_to_js(&e))?;
            create
                .call1(&js::get(&js_sys::global(), "URL"), &blob)
                .map_err(|e| unsupported(js::describe(&e)))
        })
    }
}

impl FinishedDownloadJs {
    /// The Rust handle.
    ///
    /// # Example
    /// ```no_run
    /// # fn demo(f: background_assets::web::bindings::FinishedDownloadJs) { let _ = f.finished().size; }
    /// ```
    pub fn finished(&self) -> &FinishedDownload {
        &self.finished
    }
}

impl From<FinishedDownload> for FinishedDownloadJs {
    fn from(finished: FinishedDownload) -> Self {
        FinishedDownloadJs { finished }
    }
}
