//! Streamed fetches from the local CDN through `background_assets::web::fetcher` (sw and page).
//! The CDN's origin comes from the compile-time `BA_TEST_CDN`.

use background_assets::core::error::{hex, Error};
use background_assets::web::container::FinishedAsset;
use background_assets::web::fetcher::{Coalescer, FetchOptions, Fetcher, ResponseStream};
use background_assets::web::serve::serve;
use sha2::{Digest, Sha256};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::wasm_bindgen_test;

use super::container::{fresh, remove};

fn cdn() -> &'static str {
    super::common::cdn_origin()
}

/// The wasm linear memory's current size in bytes (it only grows).
fn wasm_memory() -> u64 {
    let memory: js_sys::WebAssembly::Memory = wasm_bindgen::memory().unchecked_into();
    js_sys::ArrayBuffer::from(memory.buffer()).byte_length() as u64
}

/// Reads the whole body into wasm memory (small test bodies only).
async fn read_all(stream: &mut ResponseStream) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(piece) = stream.next_piece().await.unwrap() {
        out.extend_from_slice(&piece.to_vec());
    }
    out
}

async fn expected_sha256(len: u64, seed: u64) -> String {
    let url = format!("{}/gen/{len}/{seed}.sha256", cdn());
    let mut stream = Fetcher::start(&url, FetchOptions::default()).await.unwrap();
    String::from_utf8(read_all(&mut stream).await).unwrap()
}

#[wasm_bindgen_test]
async fn streams_a_generated_body_in_coalesced_chunks() {
    const LEN: u64 = 1_000_000;
    const CHUNK: usize = 256 * 1024;
    let url = format!("{}/gen/{LEN}/7", cdn());
    let mut stream = Fetcher::start(&url, FetchOptions::default()).await.unwrap();
    let head = stream.head().clone();
    assert_eq!(head.status, 200);
    assert_eq!(head.url, url);
    assert_eq!(head.content_length.as_deref(), Some("1000000"));
    assert!(
        head.etag.as_deref().is_some_and(|e| e.starts_with('"')),
        "{head:?}"
    );
    assert!(head.last_modified.is_some());
    let mut coalescer = Coalescer::new(CHUNK, 0);
    let mut hasher = Sha256::new();
    let mut chunks = Vec::new();
    let mut pieces = 0;
    while let Some(piece) = stream.next_piece().await.unwrap() {
        pieces += 1;
        coalescer.push(piece);
        while let Some(chunk) = coalescer.next_chunk() {
            hasher.update(&chunk.bytes);
            chunks.push((chunk.offset, chunk.bytes.len()));
        }
    }
    if let Some(last) = coalescer.finish() {
        hasher.update(&last.bytes);
        chunks.push((last.offset, last.bytes.len()));
    }
    assert!(pieces >= 1);
    assert_eq!(stream.received(), LEN);
    assert_eq!(
        chunks,
        [
            (0, CHUNK),
            (262_144, CHUNK),
            (524_288, CHUNK),
            (786_432, 213_568)
        ]
    );
    assert_eq!(hex(&hasher.finalize()), expected_sha256(LEN, 7).await);
}

#[wasm_bindgen_test]
async fn read_into_hands_out_bounded_slices() {
    const LEN: u64 = 1_000_000;
    let url = format!("{}/gen/{LEN}/8", cdn());
    let mut stream = Fetcher::start(&url, FetchOptions::default()).await.unwrap();
    let headers = stream.head().transfer_headers();
    assert_eq!(headers.content_length.as_deref(), Some("1000000"));
    assert_eq!(headers.final_url.as_deref(), Some(url.as_str()));
    assert_eq!(headers.etag, stream.head().etag);
    let mut buf = vec![0u8; 10_007];
    let mut hasher = Sha256::new();
    let mut total = 0;
    loop {
        let n = stream.read_into(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        assert!(n <= buf.len());
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    assert_eq!(total, LEN);
    assert_eq!(hex(&hasher.finalize()), expected_sha256(LEN, 8).await);
    assert_eq!(stream.read_into(&mut buf).await.unwrap(), 0);
}

/// `read_ahead` reads a small body whole before anyone asks for it (the stream has received
/// every byte), and `read_into` then hands out exactly those bytes and the end; a body larger
/// than the limit is read ahead only to just past it, and the rest comes from the network.
/// A body that breaks while read ahead is the network error a read would have given.
#[wasm_bindgen_test]
async fn read_ahead_reads_a_small_body_at_once_and_hands_out_the_same_bytes() {
    async fn drain(stream: &mut ResponseStream, slice: usize) -> (u64, String) {
        let mut buf = vec![0u8; slice];
        let (mut total, mut hasher) = (0, Sha256::new());
        loop {
            let n = stream.read_into(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            total += n as u64;
        }
        (total, hex(&hasher.finalize()))
    }
    const SMALL: u64 = 65_536;
    let url = format!("{}/gen/{SMALL}/31", cdn());
    let mut stream = Fetcher::start(&url, FetchOptions::default()).await.unwrap();
    assert_eq!(stream.received(), 0);
    stream.read_ahead(SMALL as usize).await.unwrap();
    assert_eq!(stream.received(), SMALL, "the whole body was read ahead");
    assert_eq!(
        drain(&mut stream, 10_007).await,
        (SMALL, expected_sha256(SMALL, 31).await)
    );
    let mut buf = [0u8; 16];
    assert_eq!(stream.read_into(&mut buf).await.unwrap(), 0, "stays ended");

    const LARGE: u64 = 3_000_000;
    let url = format!("{}/gen/{LARGE}/32", cdn());
    let mut stream = Fetcher::start(&url, FetchOptions::default()).await.unwrap();
    stream.read_ahead(100_000).await.unwrap();
    let ahead = stream.received();
    assert!(
        ahead > 100_000 && ahead < LARGE,
        "read ahead {ahead} of {LARGE}"
    );
    assert_eq!(
        drain(&mut stream, 65_536).await,
        (LARGE, expected_sha256(LARGE, 32).await)
    );

    let url = format!("{}/gen/1000000/4?fault=drop:300000", cdn());
    let mut stream = Fetcher::start(&url, FetchOptions::default()).await.unwrap();
    let error = stream.read_ahead(2_000_000).await.unwrap_err();
    assert_eq!(error.name(), "Network", "{error}");
}

#[wasm_bindgen_test]
async fn a_range_request_gives_206_and_the_right_bytes() {
    let url = format!("{}/gen/100000/11", cdn());
    let mut full = Fetcher::start(&url, FetchOptions::default()).await.unwrap();
    let etag = full.head().etag.clone().unwrap();
    let all = read_all(&mut full).await;
    assert_eq!(all.len(), 100_000);

    let options = FetchOptions {
        range_start: Some(60_000),
        if_range: Some(etag),
        ..Default::default()
    };
    let mut partial = Fetcher::start(&url, options).await.unwrap();
    assert_eq!(partial.head().status, 206);
    assert_eq!(
        partial.head().content_range.as_deref(),
        Some("bytes 60000-99999/100000")
    );
    assert_eq!(read_all(&mut partial).await, &all[60_000..]);

    // A validator that no longer matches makes the server send everything (If-Range was sent).
    let stale = FetchOptions {
        range_start: Some(60_000),
        if_range: Some("\"not-the-etag\"".into()),
        ..Default::default()
    };
    let mut whole = Fetcher::start(&url, stale).await.unwrap();
    assert_eq!(whole.head().status, 200);
    assert_eq!(read_all(&mut whole).await.len(), 100_000);
}

#[wasm_bindgen_test]
fn coalescer_chunk_sizes_and_offsets() {
    let mut c = Coalescer::new(10, 1000);
    assert_eq!(c.chunk_size(), 10);
    let piece =
        |from: u8, len: u8| js_sys::Uint8Array::from(&(from..from + len).collect::<Vec<u8>>()[..]);
    c.push(piece(0, 7));
    assert!(c.next_chunk().is_none());
    assert_eq!(c.pending(), 7);
    c.push(piece(7, 28)); // completes 0..10, 10..20, 20..30; 5 left
    assert_eq!(c.pending(), 35);
    let mut out = Vec::new();
    while let Some(chunk) = c.next_chunk() {
        out.push(chunk);
    }
    assert_eq!(
        out.iter().map(|c| c.offset).collect::<Vec<_>>(),
        [1000, 1010, 1020]
    );
    for (i, chunk) in out.iter().enumerate() {
        let start = (i * 10) as u8;
        assert_eq!(chunk.bytes, (start..start + 10).collect::<Vec<u8>>());
    }
    assert_eq!(c.pending(), 5);
    assert_eq!(c.next_offset(), 1030);
    c.push(piece(0, 0));
    assert!(c.next_chunk().is_none());
    let last = c.finish().unwrap();
    assert_eq!(
        (last.offset, last.bytes),
        (1030, (30..35).collect::<Vec<u8>>())
    );
    assert!(Coalescer::new(4, 0).finish().is_none());
    assert_eq!(Coalescer::DEFAULT_CHUNK_SIZE, 4 << 20);

    // One piece of many chunks is cut lazily: one chunk per call.
    let mut c = Coalescer::new(4, 0);
    c.push(piece(0, 100));
    assert_eq!(c.next_chunk().unwrap().bytes, [0, 1, 2, 3]);
    assert_eq!(c.pending(), 96);
    // finish() without draining keeps every byte (in one last chunk).
    let rest = c.finish().unwrap();
    assert_eq!((rest.offset, rest.bytes.len()), (4, 96));
    assert_eq!(rest.bytes[95], 99);
}

#[wasm_bindgen_test]
async fn abort_stops_the_body() {
    // 1000 bytes, then the server stalls for 20 s: only an abort ends this quickly.
    let url = format!("{}/gen/10000000/3?fault=stall:1000&stall-ms=20000", cdn());
    let mut stream = Fetcher::start(&url, FetchOptions::default()).await.unwrap();
    let first = stream.next_piece().await.unwrap().unwrap();
    assert!(first.length() > 0);
    stream.abort();
    let error = stream.next_piece().await.unwrap_err();
    assert_eq!(
        error,
        Error::Cancelled {
            identifier: url.clone()
        }
    );
    assert!(stream.received() < 10_000_000);
}

/// What the CDN logged as sent for the request whose path and query is `path`.
async fn bytes_sent(path: &str) -> u64 {
    let url = format!("{}/_control/log", cdn());
    let mut stream = Fetcher::start(&url, FetchOptions::default()).await.unwrap();
    let log: serde_json::Value = serde_json::from_slice(&read_all(&mut stream).await).unwrap();
    log.as_array()
        .unwrap()
        .iter()
        .find(|r| r["path_and_query"] == path)
        .unwrap_or_else(|| panic!("{path} not in the CDN log"))["body_bytes_sent"]
        .as_u64()
        .unwrap()
}

#[wasm_bindgen_test]
async fn dropping_the_stream_frees_the_connection() {
    // Browsers open at most 6 HTTP/1.1 connections per host. Were a dropped stream not aborted,
    // its connection would stay busy (stalled by back-pressure) and the 7th fetch would wait
    // forever; with abort-on-drop every fetch here starts at once. The body is large (1 GiB)
    // because Firefox keeps reading an unread body at loopback speed until the abort lands: the
    // bound below must not depend on how quickly a loaded machine gets there.
    const LEN: u64 = 1 << 30;
    let probe = (js_sys::Math::random() * 1e12) as u64;
    for i in 0..8 {
        let path = format!("/gen/{LEN}/9?probe={probe}-{i}");
        let url = format!("{}{path}", cdn());
        let start = Fetcher::start(&url, FetchOptions::default());
        let start = std::pin::pin!(start);
        let timer = gloo_timers::future::TimeoutFuture::new(20_000);
        let mut stream = match futures::future::select(start, timer).await {
            futures::future::Either::Left((stream, _)) => stream.unwrap(),
            futures::future::Either::Right(_) => {
                panic!("fetch {i} never started: connections leaked")
            }
        };
        assert!(stream.next_piece().await.unwrap().is_some());
        drop(stream);
    }
    let first = format!("/gen/{LEN}/9?probe={probe}-0");
    let sent = bytes_sent(&first).await;
    assert!(sent < LEN / 2, "sent {sent} of {LEN}");
}

#[wasm_bindgen_test]
async fn opaque_responses_and_cross_origin_credentials_are_refused() {
    let url = format!("{}/gen/10/1", cdn());
    let init = web_sys::RequestInit::new();
    init.set_mode(web_sys::RequestMode::NoCors);
    let request = web_sys::Request::new_with_str_and_init(&url, &init).unwrap();
    let fetch: js_sys::Function = js_sys::Reflect::get(&js_sys::global(), &"fetch".into())
        .unwrap()
        .unchecked_into();
    let promise: js_sys::Promise = fetch
        .call1(&js_sys::global(), &request)
        .unwrap()
        .unchecked_into();
    let response: web_sys::Response = JsFuture::from(promise).await.unwrap().unchecked_into();
    assert_eq!(
        js_sys::Reflect::get(&response, &"type".into()).unwrap(),
        JsValue::from_str("opaque")
    );
    assert_eq!(
        ResponseStream::from_response(response).unwrap_err().name(),
        "OpaqueResponseRefused"
    );

    let with_auth = FetchOptions {
        headers: vec![("Authorization".into(), "Bearer secret".into())],
        ..Default::default()
    };
    assert_eq!(
        Fetcher::start(&url, with_auth).await.unwrap_err(),
        Error::CrossOriginCredentials { url: url.clone() }
    );
    assert_eq!(
        Fetcher::start("ftp://127.0.0.1/x", FetchOptions::default())
            .await
            .unwrap_err()
            .name(),
        "DownloadInvalid"
    );
}

#[wasm_bindgen_test]
async fn heads_report_redirects_statuses_and_retry_after() {
    let url = format!("{}/gen/100/1?fault=redirect:/gen/200/2", cdn());
    let mut redirected = Fetcher::start(&url, FetchOptions::default()).await.unwrap();
    assert!(redirected.head().redirected);
    assert_eq!(redirected.head().url, format!("{}/gen/200/2", cdn()));
    assert_eq!(read_all(&mut redirected).await.len(), 200);

    let url = format!("{}/gen/100/1?fault=status:503&retry-after=7", cdn());
    let unavailable = Fetcher::start(&url, FetchOptions::default()).await.unwrap();
    assert_eq!(unavailable.head().status, 503);
    assert_eq!(unavailable.head().retry_after.as_deref(), Some("7"));
}

#[wasm_bindgen_test]
async fn a_connection_dropped_mid_body_is_a_network_error() {
    let url = format!("{}/gen/1000000/4?fault=drop:300000", cdn());
    let mut stream = Fetcher::start(&url, FetchOptions::default()).await.unwrap();
    assert_eq!(stream.head().status, 200);
    let error = loop {
        match stream.next_piece().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the body ended cleanly after {} bytes", stream.received()),
            Err(error) => break error,
        }
    };
    assert_eq!(error.name(), "Network", "{error}");
    assert!(error.is_transient());
    // Bytes still queued when the stream errors are discarded (Chromium), so fewer may arrive;
    // a resume starts from what was received.
    assert!(stream.received() <= 300_000, "{}", stream.received());
    // The stream stays ended.
    assert!(stream.next_piece().await.unwrap().is_none());
}

#[wasm_bindgen_test]
async fn a_refused_connection_is_a_network_error() {
    // Port 9 (discard) on loopback: nothing listens there in the test machine.
    let error = Fetcher::start("http://127.0.0.1:9/gen/1/1", FetchOptions::default())
        .await
        .unwrap_err();
    assert_eq!(error.name(), "Network", "{error}");
}

#[wasm_bindgen_test]
async fn streamed_into_the_container_and_served_back() {
    // 64 MiB and a bit: 17 chunks, the last one partial.
    const LEN: u64 = (64 << 20) + 12_345;
    let url = format!("{}/gen/{LEN}/5", cdn());
    let memory_before = wasm_memory();
    let c = fresh("fetch-store").await;
    let epoch = c.begin_epoch("big").await.unwrap();
    let mut stream = Fetcher::start(&url, FetchOptions::default()).await.unwrap();
    let content_type = stream.head().content_type.clone();
    let mut coalescer = Coalescer::new(Coalescer::DEFAULT_CHUNK_SIZE, 0);
    let mut hasher = Sha256::new();
    let mut written = 0u64;
    while let Some(piece) = stream.next_piece().await.unwrap() {
        coalescer.push(piece);
        while let Some(chunk) = coalescer.next_chunk() {
            hasher.update(&chunk.bytes);
            written += chunk.bytes.len() as u64;
            c.write_chunk(
                "big",
                epoch,
                chunk.offset,
                &chunk.bytes,
                &JsValue::from_f64(written as f64),
            )
            .await
            .unwrap();
        }
    }
    let last = std::mem::replace(&mut coalescer, Coalescer::new(1, 0))
        .finish()
        .unwrap();
    hasher.update(&last.bytes);
    c.write_chunk(
        "big",
        epoch,
        last.offset,
        &last.bytes,
        &JsValue::from_f64(LEN as f64),
    )
    .await
    .unwrap();
    let sha256 = hex(&hasher.finalize());
    let growth = wasm_memory() - memory_before;
    wasm_bindgen_test::console_log!("wasm memory growth for {LEN} bytes: {growth}");
    // No whole-body buffering: about one chunk of growth (4 MiB measured), far below the asset.
    assert!(
        growth < LEN / 4,
        "wasm memory grew {growth} bytes for a {LEN}-byte asset"
    );
    assert_eq!(sha256, expected_sha256(LEN, 5).await);
    let asset = c
        .finish(
            "big",
            epoch,
            FinishedAsset {
                size: LEN,
                sha256,
                content_type,
            },
        )
        .await
        .unwrap();
    let chunk = Coalescer::DEFAULT_CHUNK_SIZE as u64;
    assert_eq!(asset.chunk_count as u64, LEN.div_ceil(chunk));

    // The stored bytes across the first chunk boundary equal the CDN's.
    let boundary = Coalescer::DEFAULT_CHUNK_SIZE as u64;
    let range = format!("bytes={}-{}", boundary - 500, boundary + 499);
    let served = serve(&c, "big", Some(&range)).await.unwrap();
    assert_eq!(served.status(), 206);
    let buffer = JsFuture::from(served.array_buffer().unwrap())
        .await
        .unwrap();
    let served = js_sys::Uint8Array::new(&buffer).to_vec();
    let options = FetchOptions {
        range_start: Some(boundary - 500),
        ..Default::default()
    };
    let mut original = Fetcher::start(&url, options).await.unwrap();
    let mut expected = Vec::new();
    while expected.len() < 1000 {
        expected.extend(original.next_piece().await.unwrap().unwrap().to_vec());
    }
    original.abort();
    assert_eq!(served, &expected[..1000]);

    // The whole asset, served as a stream of stored chunks, hashes to the CDN's digest.
    let whole = serve(&c, "big", None).await.unwrap();
    assert_eq!(whole.status(), 200);
    let mut body = ResponseStream::from_response(whole).unwrap();
    let mut hasher = Sha256::new();
    while let Some(piece) = body.next_piece().await.unwrap() {
        hasher.update(piece.to_vec());
    }
    assert_eq!(body.received(), LEN);
    assert_eq!(hex(&hasher.finalize()), asset.sha256);
    remove(c).await;
}
