//! The first proof of the stack, run in a service worker (suite `sw`) and in a page (`page`).
//!
//! 1. `fetch` a generated body from the local CDN (another origin) and read it as a stream;
//! 2. coalesce the pieces into 1 MiB chunks and put each in IndexedDB (`idb`) in its own
//!    transaction — the read is awaited outside any transaction;
//! 3. read the chunks back and compare them with the streamed bytes, with `Range` requests of the
//!    same body, and with the SHA-256 the CDN publishes;
//! 4. take a Web Lock from `navigator.locks`, observe it held (query, a failing `ifAvailable`
//!    request), release it, observe it free.

use futures::channel::oneshot;
use idb::{Database, Factory, ObjectStoreParams, TransactionMode};
use js_sys::{Promise, Reflect, Uint8Array};
use sha2::{Digest, Sha256};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::wasm_bindgen_test;
use web_sys::{
    LockManager, LockManagerSnapshot, LockOptions, ReadableStreamDefaultReader,
    ReadableStreamReadResult, RequestInit, Response,
};

use crate::common::{cdn_origin, global_fetch, must, unique_name};

/// Three MiB and a bit: not a multiple of the chunk size, so the last chunk is short.
const BODY_LEN: u64 = 3 * 1024 * 1024 + 4099;
const SEED: u64 = 20_261_125;
const CHUNK_BYTES: usize = 1024 * 1024;
const STORE: &str = "chunks";

fn body_url() -> String {
    format!("{}/gen/{BODY_LEN}/{SEED}", cdn_origin())
}

async fn fetch(url: &str, range: Option<(u64, u64)>) -> Response {
    let init = RequestInit::new();
    if let Some((first, last)) = range {
        let headers = must("new Headers", web_sys::Headers::new());
        must(
            "setting Range",
            headers.set("Range", &format!("bytes={first}-{last}")),
        );
        init.set_headers(&headers);
    }
    let response = must(
        &format!("fetch {url}"),
        JsFuture::from(global_fetch(url, &init)).await,
    );
    response.unchecked_into()
}

async fn response_bytes(response: &Response) -> Vec<u8> {
    let buffer = must("Response.arrayBuffer()", response.array_buffer());
    let buffer = must("reading the body", JsFuture::from(buffer).await);
    Uint8Array::new(&buffer).to_vec()
}

async fn open_database(name: &str) -> Database {
    let factory = must("indexedDB", Factory::new());
    let mut request = must("indexedDB.open", factory.open(name, Some(1)));
    request.on_upgrade_needed(|event| {
        let db = must(
            "upgrade: database",
            idb::event::DatabaseEvent::database(&event),
        );
        must(
            "createObjectStore",
            db.create_object_store(STORE, ObjectStoreParams::new()),
        );
    });
    must("opening the database", request.await)
}

async fn delete_database(db: Database) {
    let name = db.name();
    db.close();
    let factory = must("indexedDB", Factory::new());
    must(
        "deleting the database",
        must("indexedDB.deleteDatabase", factory.delete(&name)).await,
    );
}

/// Puts one chunk under key `index` in a transaction of its own and waits for it to commit.
async fn put_chunk(db: &Database, index: u32, bytes: &[u8]) {
    let tx = must(
        "readwrite transaction",
        db.transaction(&[STORE], TransactionMode::ReadWrite),
    );
    let store = must("object store", tx.object_store(STORE));
    let value = Uint8Array::from(bytes);
    must(
        "put",
        must(
            "put request",
            store.put(&value, Some(&JsValue::from(index))),
        )
        .await,
    );
    let result = must("commit", must("commit request", tx.commit()).await);
    assert!(result.is_committed(), "chunk {index}: transaction aborted");
}

/// What the streamed download saw.
struct Streamed {
    pieces: u32,
    chunks: u32,
    len: u64,
    sha256: String,
}

/// Streams `url` into the database in `CHUNK_BYTES` chunks (the last may be shorter).
async fn stream_into(db: &Database, url: &str) -> Streamed {
    let response = fetch(url, None).await;
    assert_eq!(response.status(), 200, "GET {url}");
    let body = response.body().expect("the response has a body");
    let reader = must(
        "ReadableStreamDefaultReader",
        ReadableStreamDefaultReader::new(&body),
    );
    let mut hasher = Sha256::new();
    let mut pending: Vec<u8> = Vec::with_capacity(CHUNK_BYTES);
    let (mut pieces, mut chunks, mut len) = (0u32, 0u32, 0u64);
    loop {
        let read = must("reader.read()", JsFuture::from(reader.read()).await);
        let read: ReadableStreamReadResult = read.unchecked_into();
        if read.get_done().unwrap_or(false) {
            break;
        }
        let piece = Uint8Array::new(&read.get_value());
        let start = pending.len();
        pending.resize(start + piece.length() as usize, 0);
        piece.copy_to(&mut pending[start..]);
        hasher.update(&pending[start..]);
        pieces += 1;
        len += u64::from(piece.length());
        while pending.len() >= CHUNK_BYTES {
            let rest = pending.split_off(CHUNK_BYTES);
            put_chunk(db, chunks, &pending).await;
            pending = rest;
            chunks += 1;
        }
    }
    if !pending.is_empty() {
        put_chunk(db, chunks, &pending).await;
        chunks += 1;
    }
    Streamed {
        pieces,
        chunks,
        len,
        sha256: hex(&hasher.finalize()),
    }
}

/// Reads chunks `0..count` back in one read-only transaction.
async fn read_chunks(db: &Database, count: u32) -> Vec<Vec<u8>> {
    let tx = must(
        "readonly transaction",
        db.transaction(&[STORE], TransactionMode::ReadOnly),
    );
    let store = must("object store", tx.object_store(STORE));
    let mut chunks = Vec::new();
    for index in 0..count {
        let value = must(
            "get",
            must("get request", store.get(JsValue::from(index))).await,
        );
        let value = value.unwrap_or_else(|| panic!("chunk {index} is missing"));
        chunks.push(Uint8Array::new(&value).to_vec());
    }
    must("readonly transaction end", tx.await);
    chunks
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[wasm_bindgen_test]
async fn a_streamed_download_is_stored_in_chunks_and_reads_back_identical() {
    let url = body_url();
    let db = open_database(&unique_name("ba-stack")).await;
    let streamed = stream_into(&db, &url).await;

    assert_eq!(streamed.len, BODY_LEN, "streamed length");
    assert!(streamed.pieces >= 1);
    let expected_chunks = BODY_LEN.div_ceil(CHUNK_BYTES as u64) as u32;
    assert_eq!(streamed.chunks, expected_chunks, "chunk count");

    let chunks = read_chunks(&db, streamed.chunks).await;
    for (i, chunk) in chunks.iter().enumerate() {
        let last = i + 1 == chunks.len();
        let want = if last {
            (BODY_LEN as usize) - CHUNK_BYTES * (chunks.len() - 1)
        } else {
            CHUNK_BYTES
        };
        assert_eq!(chunk.len(), want, "chunk {i} length");
    }
    let stored: Vec<u8> = chunks.concat();
    let stored_sha256 = hex(&Sha256::digest(&stored));
    assert_eq!(
        stored_sha256, streamed.sha256,
        "stored bytes differ from streamed bytes"
    );

    let published = fetch(&format!("{url}.sha256"), None).await;
    assert_eq!(published.status(), 200);
    let published = String::from_utf8(response_bytes(&published).await).expect("hex digest");
    assert_eq!(
        stored_sha256,
        published.trim(),
        "SHA-256 differs from the CDN's"
    );

    // Byte-exact slices at the start, across a chunk boundary and at the end, fetched with Range.
    let boundary = CHUNK_BYTES as u64;
    for (first, last) in [
        (0, 4095),
        (boundary - 100, boundary + 99),
        (BODY_LEN - 777, BODY_LEN - 1),
    ] {
        let part = fetch(&url, Some((first, last))).await;
        assert_eq!(part.status(), 206, "Range {first}-{last}");
        let content_range = must("headers.get", part.headers().get("Content-Range"));
        assert_eq!(
            content_range.as_deref(),
            Some(format!("bytes {first}-{last}/{BODY_LEN}").as_str()),
            "Content-Range must be exposed to this origin"
        );
        let bytes = response_bytes(&part).await;
        assert!(
            bytes == stored[first as usize..=last as usize],
            "stored bytes {first}-{last} differ from the CDN's"
        );
    }

    delete_database(db).await;
}

fn lock_manager() -> LockManager {
    let global = js_sys::global();
    let navigator = must(
        "global.navigator",
        Reflect::get(&global, &"navigator".into()),
    );
    let locks = must("navigator.locks", Reflect::get(&navigator, &"locks".into()));
    assert!(
        !locks.is_undefined(),
        "navigator.locks is missing in this context"
    );
    locks.unchecked_into()
}

async fn held_names(locks: &LockManager) -> Vec<String> {
    let snapshot = must("locks.query()", JsFuture::from(locks.query()).await);
    let snapshot: LockManagerSnapshot = snapshot.unchecked_into();
    snapshot
        .get_held()
        .map(|held| held.iter().filter_map(|info| info.get_name()).collect())
        .unwrap_or_default()
}

/// Requests `name` with `ifAvailable` and reports whether the callback got a lock (not null).
async fn try_lock(locks: &LockManager, name: &str) -> bool {
    let options = LockOptions::new();
    options.set_if_available(true);
    let callback = Closure::once_into_js(|lock: JsValue| JsValue::from_bool(!lock.is_null()));
    let granted = must(
        "ifAvailable request",
        JsFuture::from(locks.request_with_options(name, &options, callback.unchecked_ref())).await,
    );
    granted.as_bool().expect("the callback returned a bool")
}

#[wasm_bindgen_test]
async fn a_web_lock_is_held_exclusively_then_released() {
    let locks = lock_manager();
    let name = unique_name("ba-stack-lock");
    assert!(!held_names(&locks).await.contains(&name));

    // Hold the lock until `release` is called: the callback returns a promise we resolve later.
    let mut release: Option<js_sys::Function> = None;
    let hold = Promise::new(&mut |resolve, _reject| release = Some(resolve));
    let release = release.expect("the Promise executor ran");
    let (granted_tx, granted_rx) = oneshot::channel::<bool>();
    let callback = Closure::once_into_js(move |lock: JsValue| {
        let _ = granted_tx.send(!lock.is_null());
        JsValue::from(hold)
    });
    let request = locks.request(&name, callback.unchecked_ref());
    assert!(
        granted_rx.await.expect("the lock callback ran"),
        "got a lock"
    );

    assert!(
        held_names(&locks).await.contains(&name),
        "query() shows the lock held"
    );
    assert!(
        !try_lock(&locks, &name).await,
        "an ifAvailable request while held gets null"
    );

    must("release", release.call0(&JsValue::UNDEFINED));
    must("the lock request settles", JsFuture::from(request).await);
    assert!(!held_names(&locks).await.contains(&name), "released");
    assert!(try_lock(&locks, &name).await, "free again after release");
}
