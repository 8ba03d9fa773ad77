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
