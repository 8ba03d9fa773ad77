//! Serving stored assets with `Range` through `background_assets::web::serve` (sw and page).

use background_assets::web::serve::{serve, serve_request, stream_range};
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::wasm_bindgen_test;
use web_sys::Response;

use super::container::{fresh, pattern, remove, store};

async fn body(response: &Response) -> Vec<u8> {
    let buffer = JsFuture::from(response.array_buffer().unwrap())
        .await
        .unwrap();
    js_sys::Uint8Array::new(&buffer).to_vec()
}

fn header(response: &Response, name: &str) -> Option<String> {
    response.headers().get(name).unwrap()
}

#[wasm_bindgen_test]
async fn whole_asset_is_200_with_headers() {
    let c = fresh("serve-full").await;
    store(&c, "s", 4, 2500, 1000).await;
    let response = serve(&c, "s", None).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "Content-Length").as_deref(), Some("2500"));
    assert_eq!(header(&response, "Accept-Ranges").as_deref(), Some("bytes"));
    assert_eq!(
        header(&response, "Content-Type").as_deref(),
        Some("application/x-test")
    );
    let etag = header(&response, "ETag").unwrap();
    assert!(
        etag.starts_with("\"sha256-04") && etag.ends_with('"'),
        "{etag}"
    );
    assert_eq!(header(&response, "Content-Range"), None);
    assert_eq!(body(&response).await, pattern(4, 0, 2500));
    // A Range header that asks for several ranges is ignored: the whole asset.
    let many = serve(&c, "s", Some("bytes=0-1,5-6")).await.unwrap();
    assert_eq!(many.status(), 200);
    remove(c).await;
}

#[wasm_bindgen_test]
async fn ranges_are_206_with_exact_bytes() {
    let c = fresh("serve-range").await;
    store(&c, "s", 5, 2500, 1000).await;
    let all = pattern(5, 0, 2500);
    for (range, start, end) in [
        ("bytes=990-2010", 990usize, 2011usize),
        ("bytes=0-0", 0, 1),
        ("bytes=1000-1999", 1000, 2000),
        ("bytes=2000-", 2000, 2500),
        ("bytes=-10", 2490, 2500),
        ("bytes=10-99999", 10, 2500),
    ] {
        let response = serve(&c, "s", Some(range)).await.unwrap();
        assert_eq!(response.status(), 206, "{range}");
        assert_eq!(
            header(&response, "Content-Range"),
            Some(format!("bytes {start}-{}/2500", end - 1)),
            "{range}"
        );
        assert_eq!(
            header(&response, "Content-Length"),
            Some((end - start).to_string())
        );
        assert_eq!(body(&response).await, &all[start..end], "{range}");
    }
    remove(c).await;
}

#[wasm_bindgen_test]
async fn unsatisfiable_ranges_are_416() {
    let c = fresh("serve-416").await;
    store(&c, "s", 6, 100, 64).await;
    for range in ["bytes=100-", "bytes=500-600", "bytes=-0"] {
        let response = serve(&c, "s", Some(range)).await.unwrap();
        assert_eq!(response.status(), 416, "{range}");
        assert_eq!(
            header(&response, "Content-Range").as_deref(),
            Some("bytes */100")
        );
        assert!(body(&response).await.is_empty());
    }
    assert_eq!(
        serve(&c, "missing", None).await.unwrap_err().name(),
        "DownloadDoesNotExist"
    );
    remove(c).await;
}

#[wasm_bindgen_test]
async fn requests_carry_range_and_method() {
    let c = fresh("serve-request").await;
    store(&c, "s", 7, 300, 128).await;
    let headers = web_sys::Headers::new().unwrap();
    headers.set("Range", "bytes=100-199").unwrap();
    let init = web_sys::RequestInit::new();
    init.set_headers(&headers);
    let get = web_sys::Request::new_with_str_and_init("http://127.0.0.1/asset/s", &init).unwrap();
    let response = serve_request(&c, "s", &get).await.unwrap();
    assert_eq!(response.status(), 206);
    assert_eq!(body(&response).await, pattern(7, 100, 100));
    init.set_method("HEAD");
    let head = web_sys::Request::new_with_str_and_init("http://127.0.0.1/asset/s", &init).unwrap();
    let response = serve_request(&c, "s", &head).await.unwrap();
    assert_eq!(response.status(), 206);
    assert_eq!(header(&response, "Content-Length").as_deref(), Some("100"));
    assert!(response.body().is_none());
    remove(c).await;
}

#[wasm_bindgen_test]
async fn stream_range_reads_chunk_by_chunk() {
    let c = fresh("serve-stream").await;
    store(&c, "s", 8, 70_000, 16_384).await;
    let all = pattern(8, 0, 70_000);
    for (start, end) in [
        (0usize, 70_000usize),
        (16_000, 49_200),
        (69_999, 70_000),
        (5, 5),
    ] {
        let stream = stream_range(&c, "s", start as u64, end as u64)
            .await
            .unwrap();
        let response = Response::new_with_opt_readable_stream(Some(&stream)).unwrap();
        assert_eq!(body(&response).await, &all[start..end], "{start}..{end}");
    }
    assert_eq!(
        stream_range(&c, "s", 0, 70_001).await.unwrap_err().name(),
        "Storage"
    );
    remove(c).await;
}

// --- the worker entry's steps (`web::extension`): what its fetch handler answers, and the
// conversions between JS values and the library's types.

mod extension {
    use background_assets::core::error::Error;
    use background_assets::web::container::Container;
    use background_assets::web::extension::{download_from_js, error_to_js, extension_fetch};
    use background_assets::web::serve::{served_file_url, served_url};
    use wasm_bindgen::{JsCast, JsValue};
    use wasm_bindgen_futures::JsFuture;
    use wasm_bindgen_test::wasm_bindgen_test;
    use web_sys::{Request, RequestInit, Response};

    use super::body;
    use crate::common::unique_id;
    use crate::container::{pattern, store};

    fn request(url: &str, range: Option<&str>) -> Request {
        let init = RequestInit::new();
        let headers = web_sys::Headers::new().unwrap();
        if let Some(range) = range {
            headers.set("Range", range).unwrap();
        }
        init.set_headers(&headers);
        Request::new_with_str_and_init(url, &init).unwrap()
    }

    async fn fetch_step(url: &str, range: Option<&str>) -> Response {
        let answer = JsFuture::from(extension_fetch(request(url, range)))
            .await
            .unwrap();
        answer.into()
    }

    fn object(pairs: &[(&str, JsValue)]) -> JsValue {
        let o = js_sys::Object::new();
        for (k, v) in pairs {
            js_sys::Reflect::set(&o, &JsValue::from_str(k), v).unwrap();
        }
        o.into()
    }

    #[wasm_bindgen_test]
    async fn the_fetch_step_serves_stored_assets_with_range_and_404s_the_rest() {
        let id = unique_id("served");
        let container = Container::open(Container::DEFAULT_NAME).await.unwrap();
        store(&container, &id, 9, 3000, 1000).await;

        let whole = fetch_step(&served_url(&id), None).await;
        assert_eq!(whole.status(), 200);
        assert_eq!(body(&whole).await, pattern(9, 0, 3000));
        let part = fetch_step(&served_url(&id), Some("bytes=950-1049")).await;
        assert_eq!(part.status(), 206);
        assert_eq!(
            part.headers().get("Content-Range").unwrap().as_deref(),
            Some("bytes 950-1049/3000")
        );
        assert_eq!(body(&part).await, pattern(9, 950, 100));
        let past = fetch_step(&served_url(&id), Some("bytes=3000-")).await;
        assert_eq!(past.status(), 416);

        for missing in [
            served_url(&unique_id("never-stored")),
            served_file_url("no/such/file.bin"),
            served_url(""),
        ] {
            assert_eq!(fetch_step(&missing, None).await.status(), 404, "{missing}");
        }
        container.delete(&id).await.unwrap();
        assert_eq!(fetch_step(&served_url(&id), None).await.status(), 404);
        container.close();
    }

    #[wasm_bindgen_test]
    fn download_descriptors_become_validated_downloads() {
        let d = download_from_js(&object(&[
            ("id", "level-2".into()),
            ("url", "https://cdn.example/level-2.bin".into()),
            ("essential", JsValue::TRUE),
            ("size", JsValue::from(1024.0)),
            ("priority", JsValue::from(80.0)),
            ("headers", object(&[("Authorization", "Bearer t".into())])),
        ]))
        .unwrap();
        assert_eq!(d.identifier.as_str(), "level-2");
        assert_eq!(d.request.url.as_str(), "https://cdn.example/level-2.bin");
        assert!(d.essential);
        assert_eq!(d.file_size, Some(1024));
        assert_eq!(d.priority.value(), 80);

        let bad = |pairs: &[(&str, JsValue)]| download_from_js(&object(pairs)).unwrap_err();
        let url: JsValue = "https://cdn.example/a".into();
        // A missing id names the field; a malformed one is an invalid identifier.
        let missing_id = bad(&[("url", url.clone())]);
        assert!(
            matches!(missing_id, Error::DownloadInvalid { .. })
                && missing_id.to_string().contains("id"),
            "{missing_id}"
        );
        assert!(matches!(
            bad(&[("id", "../a".into()), ("url", url.clone())]),
            Error::InvalidIdentifier { .. }
        ));
        assert!(matches!(
            bad(&[("id", "a".into())]),
            Error::DownloadInvalid { .. }
        ));
        let fractional = bad(&[
            ("id", "a".into()),
            ("url", url.clone()),
            ("size", JsValue::from(1.5)),
        ]);
        assert!(fractional.to_string().contains("1.5"), "{fractional}");
        // An essential download needs its exact size.
        let without_size = bad(&[
            ("id", "a".into()),
            ("url", url),
            ("essential", JsValue::TRUE),
        ]);
        assert!(
            matches!(without_size, Error::DownloadInvalid { .. }),
            "{without_size}"
        );
    }

    #[wasm_bindgen_test]
    fn typed_errors_reach_js_with_name_code_and_transient() {
        let error = Error::DownloadAlreadyScheduled {
            identifier: "x".into(),
        };
        let value = error_to_js(&error);
        let get = |k: &str| js_sys::Reflect::get(&value, &JsValue::from_str(k)).unwrap();
        assert!(value.is_instance_of::<js_sys::Error>());
        assert_eq!(
            get("name").as_string().as_deref(),
            Some("DownloadAlreadyScheduled")
        );
        assert_eq!(get("code").as_f64(), Some(f64::from(error.code())));
        assert_eq!(get("transient").as_bool(), Some(error.is_transient()));
        assert!(get("message").as_string().unwrap().contains('x'));
        assert_eq!(get("identifier").as_string().as_deref(), Some("x"));

        // Each field of the variant, in camelCase; `name` is `lockName` (not the error's name).
        let value = error_to_js(&Error::LockTimeout {
            name: "ba-lock".into(),
            timeout_ms: 250,
        });
        let get = |k: &str| js_sys::Reflect::get(&value, &JsValue::from_str(k)).unwrap();
        assert_eq!(get("name").as_string().as_deref(), Some("LockTimeout"));
        assert_eq!(get("lockName").as_string().as_deref(), Some("ba-lock"));
        assert_eq!(get("timeoutMs").as_f64(), Some(250.0));
        assert!(get("timeout_ms").is_undefined());
    }
}
