//! Whole downloads through `background_assets::web::transfer::run` (sw and page suites): the
//! core's transfer driven with `fetch`, the IndexedDB container and Web Locks, against the local
//! CDN's fault language. What the server saw comes from its request log (`/_control/log`); every
//! URL carries a random `probe` so that runs of the suite never share log entries or counters.
//!
//! Interruptions are made deterministic with `fault=stall:N&times=1`: the first response sends
//! N bytes and then nothing, so the run sits at a known point while the test pauses, kills
//! (drops the `run` future), races or steals it.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;

use background_assets::core::error::{hex, Error};
use background_assets::core::policy::DomainAllowList;
use background_assets::core::transfer::{Progress, TransferSpec, TransferState};
use background_assets::web::container::Container;
use background_assets::web::fetcher::{FetchOptions, Fetcher, ResponseStream};
use background_assets::web::js;
use background_assets::web::locks::{acquire, LockOptions};
use background_assets::web::serve::serve;
use background_assets::web::transfer::{lock_name, run, LockPolicy, RunOptions, TransferControl};
use futures::future::{join, join3, select, Either};
use sha2::{Digest, Sha256};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::{console_log, wasm_bindgen_test};

use super::common::{
    cdn_chunk_digests, cdn_sha256, fetch_all, gen_path, gets, probe, requested_within, unique_id,
};
use super::container::{fresh, remove};

const MIB: u64 = 1 << 20;
/// The chunk size of the small tests: interruptions land between known chunk boundaries.
const CHUNK: u64 = MIB;
/// How long a stalled first response stays silent (far longer than any test waits for it).
const STALL_MS: u64 = 20_000;

fn cdn() -> &'static str {
    super::common::cdn_origin()
}

fn digest_bytes(hex: &str) -> [u8; 32] {
    background_assets::core::integrity::parse_sha256(hex).unwrap()
}

/// A spec for `path` with the CDN's size and digest declared, 1 MiB chunks (or `chunk`) and
/// quick retries.
async fn spec_for(identifier: &str, path: &str, len: u64, seed: u64, chunk: u64) -> TransferSpec {
    let mut spec = TransferSpec::new(identifier, format!("{}{path}", cdn()));
    spec.expected_size = Some(len);
    spec.sha256 = Some(digest_bytes(&cdn_sha256(len, seed).await));
    spec.config.chunk_size = chunk as u32;
    spec.config.backoff_base_ms = 50;
    spec.config.backoff_max_ms = 400;
    spec
}

/// Options allowing the CDN's host, recording every progress report in `progress`.
fn options(progress: &Rc<RefCell<Progress>>, control: Option<&TransferControl>) -> RunOptions {
    let sink = progress.clone();
    RunOptions {
        allow: DomainAllowList::parse(["127.0.0.1"]).unwrap(),
        control: control.cloned(),
        on_progress: Some(Box::new(move |p: &Progress| *sink.borrow_mut() = p.clone())),
        ..RunOptions::default()
    }
}

fn tracker() -> Rc<RefCell<Progress>> {
    Rc::new(RefCell::new(Progress::default()))
}

/// Polls `ready` every 5 ms; panics naming `what` after 20 s.
async fn wait_until(what: &str, ready: impl FnMut() -> bool) {
    super::common::wait_until_within(20, what, ready).await
}

/// Runs `future` until `stop` completes, then drops it (a killed context). Panics if it ends
/// first.
async fn kill_when<F: Future, S: Future<Output = ()>>(future: F, stop: S) {
    let future = std::pin::pin!(future);
    let stop = std::pin::pin!(stop);
    if let Either::Left((_, _)) = select(future, stop).await {
        panic!("the run ended before it could be interrupted");
    }
}

async fn stored(c: &Container, id: &str) -> u64 {
    c.load_checkpoint(id).await.unwrap().map_or(0, |r| r.stored)
}

fn wasm_memory() -> u64 {
    let memory: js_sys::WebAssembly::Memory = wasm_bindgen::memory().unchecked_into();
    js_sys::ArrayBuffer::from(memory.buffer()).byte_length() as u64
}

/// `performance.memory.usedJSHeapSize` where the engine has it (Chromium pages).
fn js_heap() -> Option<u64> {
    let memory = js::get(&js::get(&js_sys::global(), "performance"), "memory");
    js::get(&memory, "usedJSHeapSize")
        .as_f64()
        .map(|v| v as u64)
}

/// `performance.memory` counts array buffers that are garbage until the collector runs: makes
/// small garbage (so collections happen) for up to 5 s, until the heap is back below
/// `before + bound`; returns the lowest growth over `before` seen. Memory still held by someone
/// never comes back, so a leak keeps this above `bound`.
async fn heap_growth_after_collections(before: u64, bound: u64) -> i64 {
    let mut lowest = i64::MAX;
    for _ in 0..1000 {
        let garbage: Vec<js_sys::Uint8Array> = (0..16)
            .map(|_| js_sys::Uint8Array::new_with_length(1 << 16))
            .collect();
        drop(garbage);
        gloo_timers::future::TimeoutFuture::new(5).await;
        lowest = lowest.min(js_heap().unwrap_or(0) as i64 - before as i64);
        if lowest < bound as i64 {
            break;
        }
    }
    lowest
}

/// `ResponseStream::read_into` reads a fetched body with a BYOB reader into one reused buffer
/// (fetch bodies are byte streams in Chromium and Firefox), in slices no larger than asked for,
/// with exactly the CDN's bytes; a body that is not a byte stream falls back to the default
/// reader and still reads exactly.
#[wasm_bindgen_test]
async fn read_into_uses_one_reused_buffer_for_a_byte_stream_and_falls_back_otherwise() {
    const LEN: u64 = 3 * MIB + 12_345;
    let seed = 4_500 + probe() % 1000;
    let url = format!("{}{}", cdn(), gen_path(LEN, seed, ""));
    let mut stream = Fetcher::start(&url, FetchOptions::default()).await.unwrap();
    assert!(
        !stream.reads_into_reused_buffer(),
        "no reader before the first read"
    );
    let mut buf = vec![0u8; 100_003];
    let mut hasher = Sha256::new();
    let (mut total, mut reads) = (0u64, 0u32);
    loop {
        let n = stream.read_into(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        assert!(n <= buf.len());
        hasher.update(&buf[..n]);
        total += n as u64;
        reads += 1;
    }
    assert!(
        stream.reads_into_reused_buffer(),
        "a fetch body is a byte stream: BYOB"
    );
    assert_eq!(total, LEN);
    assert_eq!(stream.received(), LEN);
    assert!(reads as u64 >= LEN / buf.len() as u64, "{reads} reads");
    assert_eq!(hex(&hasher.finalize()), cdn_sha256(LEN, seed).await);
    assert_eq!(
        stream.read_into(&mut buf).await.unwrap(),
        0,
        "ended stays ended"
    );

    // A body made from a (non-byte) JS ReadableStream: the default reader, same bytes.
    let make = js_sys::Function::new_no_args(
        "return new Response(new ReadableStream({ start(c) { \
           c.enqueue(new Uint8Array([1, 2, 3, 4, 5])); c.enqueue(new Uint8Array([6, 7])); c.close(); } }));",
    );
    let response: web_sys::Response = make
        .call0(&wasm_bindgen::JsValue::NULL)
        .unwrap()
        .unchecked_into();
    let mut stream = ResponseStream::from_response(response).unwrap();
    let mut small = [0u8; 3];
    let mut out = Vec::new();
    loop {
        let n = stream.read_into(&mut small).await.unwrap();
        if n == 0 {
            break;
        }
        out.extend_from_slice(&small[..n]);
    }
    assert!(
        !stream.reads_into_reused_buffer(),
        "not a byte stream: the default reader"
    );
    assert_eq!(out, [1, 2, 3, 4, 5, 6, 7]);
}

#[wasm_bindgen_test]
async fn a_64_mib_asset_downloads_with_bounded_memory() {
    const LEN: u64 = 64 << 20;
    let seed = 4_000 + probe() % 1000;
    let path = gen_path(LEN, seed, "");
    let c = fresh("run-64").await;
    let id = unique_id("big");
    let spec = spec_for(&id, &path, LEN, seed, 4 * MIB).await;
    let progress = tracker();
    let heap_before = js_heap();
    let heap_peak = Rc::new(Cell::new(heap_before.unwrap_or(0)));
    let mut opts = options(&progress, None);
    let sink = progress.clone();
    let peak = heap_peak.clone();
    opts.on_progress = Some(Box::new(move |p: &Progress| {
        *sink.borrow_mut() = p.clone();
        peak.set(peak.get().max(js_heap().unwrap_or(0)));
    }));
    let wasm_before = wasm_memory();
    let started = js_sys::Date::now();
    let asset = run(&c, spec, opts).await.unwrap();
    let ms = js_sys::Date::now() - started;
    let wasm_growth = wasm_memory() - wasm_before;
    assert_eq!(asset.size, LEN);
    assert_eq!(asset.sha256, cdn_sha256(LEN, seed).await);
    assert_eq!(asset.chunk_count as u64, LEN / (4 * MIB));
    let heap_growth = heap_before.map(|before| heap_peak.get().saturating_sub(before));
    console_log!(
        "run: {LEN} bytes in {ms} ms; wasm memory {wasm_before} -> {} (growth {wasm_growth})",
        wasm_memory()
    );
    assert!(
        wasm_growth < LEN / 4,
        "wasm memory grew {wasm_growth} bytes for a {LEN}-byte asset"
    );
    if let (Some(before), Some(peak)) = (heap_before, heap_growth) {
        let retained = heap_growth_after_collections(before, LEN / 4).await;
        console_log!(
            "JS heap: peak growth {peak} (collectable garbage: stream pieces, chunk copies), \
             lowest growth once collected {retained}"
        );
        assert!(
            retained < (LEN / 4) as i64,
            "JS heap retained {retained} bytes"
        );
    }
    let logged = gets(&path).await;
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert_eq!(logged[0].sent, LEN);
    assert_eq!(progress.borrow().bytes_written, LEN);
    assert_eq!(progress.borrow().wasted_bytes, 0);
    remove(c).await;
}

/// A run of a file whose finished asset already has the declared size and SHA-256 keeps it:
/// no request, nothing written. A declaration with another digest downloads it again (a new
/// chunk generation; the old version is replaced when the new one finishes).
#[wasm_bindgen_test]
async fn a_run_keeps_a_finished_asset_that_matches_its_declaration() {
    const LEN: u64 = 150_000;
    let c = fresh("run-kept").await;
    let seed = 12_000 + probe() % 1000;
    let path = gen_path(LEN, seed, "");
    let id = unique_id("kept");
    let first = run(
        &c,
        spec_for(&id, &path, LEN, seed, CHUNK).await,
        options(&tracker(), None),
    )
    .await
    .unwrap();
    assert_eq!(gets(&path).await.len(), 1);
    let again = run(
        &c,
        spec_for(&id, &path, LEN, seed, CHUNK).await,
        options(&tracker(), None),
    )
    .await
    .unwrap();
    assert_eq!(again, first);
    assert_eq!(
        gets(&path).await.len(),
        1,
        "a kept asset is not fetched again"
    );
    assert!(
        c.load_checkpoint(&id).await.unwrap().is_none(),
        "nothing begun"
    );
    // Another declared digest (an update of the same identifier): fetched and stored anew.
    let other_seed = seed + 1;
    let other_path = gen_path(LEN, other_seed, "");
    let updated = run(
        &c,
        spec_for(&id, &other_path, LEN, other_seed, CHUNK).await,
        options(&tracker(), None),
    )
    .await
    .unwrap();
    assert_eq!(gets(&other_path).await.len(), 1);
    assert_eq!(updated.sha256, cdn_sha256(LEN, other_seed).await);
    assert_eq!(updated.generation, first.generation + 1);
    remove(c).await;
}

/// Holds a readwrite transaction on the container's `downloads` store from another connection
/// (one `get` after another keeps it open) until `release` is set or 15 s pass: the container's
/// own transactions on that store wait for it.
async fn hold_downloads(c: &Container, held: Rc<Cell<bool>>, release: Rc<Cell<bool>>) {
    let db = idb::Factory::new()
        .expect("indexedDB")
        .open(c.name(), None)
        .expect("indexedDB.open")
        .await
        .expect("open the container's database");
    let tx = db
        .transaction(&["downloads"], idb::TransactionMode::ReadWrite)
        .expect("readwrite transaction");
    let store = tx.object_store("downloads").expect("downloads store");
    let deadline = js_sys::Date::now() + 15_000.0;
    held.set(true);
    while !release.get() && js_sys::Date::now() < deadline {
        store.get(JsValue::from_str("none")).unwrap().await.unwrap();
    }
    tx.await.expect("the holding transaction ends");
    held.set(false);
    db.close();
}

/// With `RunOptions::fresh`, a file that fits in one chunk is requested while the container's
/// state cannot yet be read (its store is held by another connection), and the run finishes
/// with that one request once the state is read. Without it, nothing is requested until then.
#[wasm_bindgen_test]
async fn a_fresh_small_file_is_requested_while_its_stored_state_is_read() {
    const LEN: u64 = 65_536;
    let c = fresh("run-early").await;
    for fresh_hint in [false, true] {
        let seed = 13_000 + probe() % 1000;
        let path = gen_path(LEN, seed, "");
        let id = unique_id("early");
        let spec = spec_for(&id, &path, LEN, seed, CHUNK).await;
        let (held, release) = (Rc::new(Cell::new(false)), Rc::new(Cell::new(false)));
        let holder = hold_downloads(&c, held.clone(), release.clone());
        let observer = async {
            wait_until("the store is held", || held.get()).await;
            let opts = RunOptions {
                fresh: fresh_hint,
                ..options(&tracker(), None)
            };
            let running = std::pin::pin!(run(&c, spec, opts));
            let requested = {
                let watch = std::pin::pin!(requested_within(&path, 1_500));
                match select(running, watch).await {
                    Either::Left((done, _)) => panic!("the run ended while held: {done:?}"),
                    Either::Right((requested, running)) => {
                        release.set(true);
                        (requested, running.await)
                    }
                }
            };
            release.set(true);
            requested
        };
        let ((requested, asset), ()) = join(observer, holder).await;
        assert_eq!(
            requested, fresh_hint,
            "requested while the state was held (fresh: {fresh_hint})"
        );
        let asset = asset.unwrap();
        assert_eq!(
            (asset.size, asset.sha256),
            (LEN, cdn_sha256(LEN, seed).await)
        );
        let logged = gets(&path).await;
        assert_eq!(logged.len(), 1, "{logged:?}");
        assert_eq!((logged[0].range.as_deref(), logged[0].sent), (None, LEN));
    }
    remove(c).await;
}

/// With `RunOptions::fresh`, a small file is requested while its Web Lock is still held by
/// another context, and nothing is stored until the lock is granted; the run then stores it
/// with that one request. Without the hint nothing is requested before the lock is held. With
/// `LockPolicy::IfAvailable` and the lock held, the run ends `DownloadAlreadyScheduled` and
/// stores nothing, hint or not.
#[wasm_bindgen_test]
async fn a_fresh_small_file_is_requested_while_its_lock_is_asked_for_and_stored_once_held() {
    const LEN: u64 = 65_536;
    let c = fresh("run-lock-early").await;
    for fresh_hint in [false, true] {
        let seed = 17_000 + probe() % 1000;
        let path = gen_path(LEN, seed, "");
        let id = unique_id("lock-early");
        let opts = |lock| RunOptions {
            fresh: fresh_hint,
            lock,
            ..options(&tracker(), None)
        };
        let guard = acquire(&lock_name(&id), LockOptions::exclusive())
            .await
            .unwrap()
            .expect("the lock is free");
        // (Its own URL: a request it may have sent must not count below.)
        let other = gen_path(LEN, seed, "");
        let refused = run(
            &c,
            spec_for(&id, &other, LEN, seed, CHUNK).await,
            opts(LockPolicy::IfAvailable),
        )
        .await;
        assert!(
            matches!(refused, Err(Error::DownloadAlreadyScheduled { .. })),
            "{refused:?}"
        );
        assert!(c.asset(&id).await.unwrap().is_none());

        let running = std::pin::pin!(run(
            &c,
            spec_for(&id, &path, LEN, seed, CHUNK).await,
            opts(LockPolicy::Wait)
        ));
        let watch = std::pin::pin!(requested_within(&path, 1_500));
        let (requested, running) = match select(running, watch).await {
            Either::Left((done, _)) => panic!("the run ended while the lock was held: {done:?}"),
            Either::Right(both) => both,
        };
        assert_eq!(
            requested, fresh_hint,
            "requested while the lock was held (fresh: {fresh_hint})"
        );
        assert!(
            c.asset(&id).await.unwrap().is_none()
                && c.load_checkpoint(&id).await.unwrap().is_none(),
            "something was stored before the lock was granted (fresh: {fresh_hint})"
        );
        guard.release().await;
        let asset = running.await.unwrap();
        assert_eq!(
            (asset.size, asset.sha256),
            (LEN, cdn_sha256(LEN, seed).await)
        );
        assert_eq!(c.read_range(&id, 0, LEN).await.unwrap().len() as u64, LEN);
        let logged = gets(&path).await;
        assert_eq!(logged.len(), 1, "{logged:?}");
        assert_eq!((logged[0].range.as_deref(), logged[0].sent), (None, LEN));
    }
    remove(c).await;
}

/// `transfer::prefetch` sends a fresh small file's request before its run begins: a fresh run
/// given it (`RunOptions::prefetched`) stores that response and sends no request of its own.
/// One made for another URL, or given to a run that is not fresh, is not taken: the run sends
/// its own request and stores its own file. Nothing is prefetched for a file a fresh run would
/// not request whole first (larger than a chunk), or from a host that is not allowed.
#[wasm_bindgen_test]
async fn a_prefetched_small_file_is_stored_by_its_run_without_a_request_of_its_own() {
    use background_assets::web::transfer::prefetch;
    const LEN: u64 = 65_536;
    let c = fresh("run-prefetch").await;
    let page = url::Url::parse(&js::origin()).unwrap().origin();
    let allow = DomainAllowList::parse(["127.0.0.1"]).unwrap();
    let small = |label: &'static str| async move {
        let seed = 18_000 + probe() % 1000;
        let path = gen_path(LEN, seed, "");
        let id = unique_id(label);
        let spec = spec_for(&id, &path, LEN, seed, CHUNK).await;
        (id, path, seed, spec)
    };
    let fresh_with = |prefetched| RunOptions {
        fresh: true,
        prefetched,
        ..options(&tracker(), None)
    };

    let (id, path, seed, spec) = small("prefetch").await;
    let request = prefetch(&spec, &allow, &page).expect("a small file is prefetched");
    assert!(
        requested_within(&path, 5_000).await,
        "the prefetch sends its request before any run"
    );
    assert!(c.asset(&id).await.unwrap().is_none(), "nothing stored yet");
    let asset = run(&c, spec, fresh_with(Some(request))).await.unwrap();
    assert_eq!(
        (asset.size, asset.sha256),
        (LEN, cdn_sha256(LEN, seed).await)
    );
    assert_eq!(c.read_range(&id, 0, LEN).await.unwrap().len() as u64, LEN);
    let logged = gets(&path).await;
    assert_eq!(
        logged.len(),
        1,
        "the run sent a request of its own: {logged:?}"
    );
    assert_eq!((logged[0].range.as_deref(), logged[0].sent), (None, LEN));

    // Made for another file's URL: not taken.
    let (_, elsewhere, _, other_spec) = small("prefetch-elsewhere").await;
    let wrong = prefetch(&other_spec, &allow, &page).unwrap();
    let (id, path, seed, spec) = small("prefetch-other").await;
    let asset = run(&c, spec, fresh_with(Some(wrong))).await.unwrap();
    assert_eq!(asset.sha256, cdn_sha256(LEN, seed).await);
    assert_eq!(c.read_range(&id, 0, LEN).await.unwrap().len() as u64, LEN);
    assert_eq!(gets(&path).await.len(), 1);
    assert!(gets(&elsewhere).await.len() <= 1);

    // A run that is not fresh reads its state first and sends its own request.
    let (_, path, seed, spec) = small("prefetch-not-fresh").await;
    let request = prefetch(&spec, &allow, &page).unwrap();
    assert!(requested_within(&path, 5_000).await);
    let opts = RunOptions {
        prefetched: Some(request),
        ..options(&tracker(), None)
    };
    let asset = run(&c, spec, opts).await.unwrap();
    assert_eq!(asset.sha256, cdn_sha256(LEN, seed).await);
    assert_eq!(gets(&path).await.len(), 2);

    // Nothing to prefetch.
    let (id, _, seed, spec) = small("prefetch-none").await;
    let big = spec_for(&id, &gen_path(2 * CHUNK, seed, ""), 2 * CHUNK, seed, CHUNK).await;
    assert!(
        prefetch(&big, &allow, &page).is_none(),
        "larger than a chunk"
    );
    let elsewhere_only = DomainAllowList::parse(["cdn.example.com"]).unwrap();
    assert!(
        prefetch(&spec, &elsewhere_only, &page).is_none(),
        "not allowed"
    );
    remove(c).await;
}

/// `RunOptions::fresh` is a hint. When the download turns out to be finished already, the run
/// keeps the stored asset (nothing is written). When an earlier run left chunks: a file that
/// fits `INLINE_MAX` was fetched whole already, and its one write replaces them; a larger one
/// (still one chunk) resumes from them with a `Range` request. Either way the right file is
/// stored.
#[wasm_bindgen_test]
async fn a_wrong_fresh_hint_still_keeps_or_resumes() {
    use background_assets::web::container::INLINE_MAX;
    const SMALL_CHUNK: u64 = 16_384;
    let c = fresh("run-hint").await;
    let fresh_opts = || RunOptions {
        fresh: true,
        ..options(&tracker(), None)
    };
    // Finished already: kept.
    const LEN: u64 = 65_536;
    let seed = 14_000 + probe() % 1000;
    let path = gen_path(LEN, seed, "");
    let id = unique_id("hint-kept");
    let first = run(
        &c,
        spec_for(&id, &path, LEN, seed, CHUNK).await,
        fresh_opts(),
    )
    .await
    .unwrap();
    let again = run(
        &c,
        spec_for(&id, &path, LEN, seed, CHUNK).await,
        fresh_opts(),
    )
    .await
    .unwrap();
    assert_eq!(again, first, "the finished asset is kept");
    assert!(
        c.load_checkpoint(&id).await.unwrap().is_none(),
        "nothing begun"
    );
    let logged = gets(&path).await;
    assert!(logged.len() <= 2, "{logged:?}");

    // Chunks of a run killed mid-body, then a run with the hint. (The larger file declares no
    // SHA-256: a one-chunk file with one is verified as its one chunk, so only whole verified
    // chunks could be continued from; it would be fetched whole again.)
    for len in [LEN, u64::from(INLINE_MAX) + 60_000] {
        assert!(len <= CHUNK, "one chunk: the hint applies");
        let stall_at = 2 * SMALL_CHUNK + 7_000;
        let seed = 15_000 + probe() % 1000;
        let fault = format!("fault=stall:{stall_at}&stall-ms={STALL_MS}&times=1");
        let path = gen_path(len, seed, &fault);
        let id = unique_id("hint-resume");
        let mut interrupted = spec_for(&id, &path, len, seed, SMALL_CHUNK).await;
        let mut hinted = spec_for(&id, &path, len, seed, CHUNK).await;
        if len > u64::from(INLINE_MAX) {
            (interrupted.sha256, hinted.sha256) = (None, None);
        }
        let first = tracker();
        let seen = first.clone();
        kill_when(run(&c, interrupted, options(&first, None)), async move {
            wait_until("2 chunks are stored", || {
                seen.borrow().bytes_written >= 2 * SMALL_CHUNK
            })
            .await
        })
        .await;
        let kept = stored(&c, &id).await;
        assert_eq!(kept, 2 * SMALL_CHUNK);
        let asset = run(&c, hinted, fresh_opts()).await.unwrap();
        assert_eq!(
            (asset.size, asset.sha256),
            (len, cdn_sha256(len, seed).await)
        );
        assert!(c.load_checkpoint(&id).await.unwrap().is_none());
        let logged = gets(&path).await;
        let last = logged.last().unwrap();
        if len <= u64::from(INLINE_MAX) {
            assert_eq!(
                (last.range.as_deref(), last.sent),
                (None, len),
                "{logged:?}"
            );
            assert_eq!(logged.len(), 2, "{logged:?}");
        } else {
            assert_eq!(last.range, Some(format!("bytes={kept}-")), "{logged:?}");
            assert_eq!((last.status, last.sent), (206, len - kept));
            assert!(logged.len() <= 3, "{logged:?}");
        }
    }
    remove(c).await;
}

/// With the hint, a fresh one-chunk file larger than `INLINE_MAX` whose connection breaks
/// mid-body resumes with a `Range` from the bytes it received (with or without a declared
/// digest), as without the hint: its body is read as it arrives, not read ahead whole.
#[wasm_bindgen_test]
async fn a_fresh_file_whose_connection_breaks_resumes_from_what_it_received() {
    const LEN: u64 = 900_000;
    const DROP_AT: u64 = 500_000;
    let c = fresh("run-fresh-drop").await;
    for declared in [true, false] {
        let seed = 17_000 + probe() % 1000;
        // Throttled, so that the page reads the body before the cut (Chromium drops the bytes
        // still queued when a connection breaks: a body cut before its first read arrives empty).
        let fault = format!("fault=drop:{DROP_AT}&times=1&throttle=4000000");
        let path = gen_path(LEN, seed, &fault);
        let id = unique_id("fresh-drop");
        let mut spec = spec_for(&id, &path, LEN, seed, CHUNK).await;
        if !declared {
            spec.sha256 = None;
        }
        let opts = RunOptions {
            fresh: true,
            ..options(&tracker(), None)
        };
        let asset = run(&c, spec, opts).await.unwrap();
        assert_eq!(asset.sha256, cdn_sha256(LEN, seed).await);
        let logged = gets(&path).await;
        assert_eq!(logged.len(), 2, "{logged:?}");
        let from = logged[1]
            .open_range_start()
            .unwrap_or_else(|| panic!("no `bytes=N-` resume (declared {declared}): {logged:?}"));
        assert!(from > 0 && from <= DROP_AT, "{logged:?}");
        assert_eq!((logged[1].status, logged[1].sent), (206, LEN - from));
    }
    remove(c).await;
}

/// A fresh small file's run makes one container operation (begin, store and finish at once);
/// without the hint it makes two (the begin, then the write that finishes).
#[wasm_bindgen_test]
async fn a_fresh_small_file_is_stored_with_one_container_operation() {
    const LEN: u64 = 65_536;
    let c = fresh("run-one-op").await;
    for (hint, operations) in [(true, 1), (false, 2)] {
        let seed = 16_000 + probe() % 1000;
        let path = gen_path(LEN, seed, "");
        let id = unique_id("one-op");
        let before = c.batch_stats();
        let opts = RunOptions {
            fresh: hint,
            ..options(&tracker(), None)
        };
        let asset = run(&c, spec_for(&id, &path, LEN, seed, CHUNK).await, opts)
            .await
            .unwrap();
        let after = c.batch_stats();
        assert_eq!(
            after.operations - before.operations,
            operations,
            "fresh: {hint}"
        );
        assert_eq!(asset.sha256, cdn_sha256(LEN, seed).await);
        assert_eq!(c.read_range(&id, 0, LEN).await.unwrap().len() as u64, LEN);
    }
    remove(c).await;
}

#[wasm_bindgen_test]
async fn a_dropped_connection_resumes_with_range() {
    const LEN: u64 = 12 * MIB;
    const DROP_AT: u64 = 5 * MIB + 12_345;
    const DEFAULT_CHUNK: u64 = 4 * MIB;
    let seed = 5_000 + probe() % 1000;
    let path = gen_path(LEN, seed, &format!("fault=drop:{DROP_AT}&times=1"));
    let c = fresh("run-drop").await;
    let id = unique_id("drop");
    let spec = spec_for(&id, &path, LEN, seed, DEFAULT_CHUNK).await;
    let progress = tracker();
    let mut opts = options(&progress, None);
    // What the page received from the first response (the browser may discard bytes the server
    // sent before the connection broke: Chromium drops what was still queued).
    let first_received = Rc::new(Cell::new(0u64));
    let sink = progress.clone();
    let first = first_received.clone();
    opts.on_progress = Some(Box::new(move |p: &Progress| {
        *sink.borrow_mut() = p.clone();
        if p.attempts == 1 {
            first.set(first.get().max(p.bytes_received));
        }
    }));
    let asset = run(&c, spec, opts).await.unwrap();
    assert_eq!(asset.size, LEN);
    assert_eq!(asset.sha256, cdn_sha256(LEN, seed).await);

    let logged = gets(&path).await;
    assert_eq!(logged.len(), 2, "{logged:?}");
    assert_eq!(
        (logged[0].range.as_deref(), logged[0].sent),
        (None, DROP_AT)
    );
    let resumed_at = logged[1]
        .open_range_start()
        .unwrap_or_else(|| panic!("second GET has no `bytes=N-` Range: {logged:?}"));
    assert_eq!(logged[1].status, 206);
    assert_eq!(
        logged[1].if_range.as_deref(),
        Some(format!("\"g-{LEN}-{seed}-v0\"").as_str())
    );
    assert_eq!(logged[1].sent, LEN - resumed_at);
    // Every byte the page received is kept: the resume starts exactly there.
    assert_eq!(resumed_at, first_received.get(), "{logged:?}");
    let fetched_twice = DROP_AT - resumed_at;
    console_log!(
        "dropped at {DROP_AT}: page received {}, resumed at {resumed_at}, fetched twice \
         {fetched_twice} (chunk {DEFAULT_CHUNK})",
        first_received.get()
    );
    assert!(
        resumed_at > 0 && fetched_twice <= DEFAULT_CHUNK,
        "{logged:?}"
    );
    let p = progress.borrow().clone();
    assert_eq!((p.wasted_bytes, p.restarts, p.attempts), (0, 0, 2));
    remove(c).await;
}

/// Pauses after the first chunk is stored, kills the paused run, and runs the download again from
/// the stored checkpoint; the server's answer to the resume restarts it from zero.
async fn restart_after_interruption(label: &str, fault: &str, seed: u64) {
    const LEN: u64 = 6 * MIB;
    let path = gen_path(LEN, seed, fault);
    let c = fresh(label).await;
    let id = unique_id(label);
    let spec = spec_for(&id, &path, LEN, seed, CHUNK).await;
    let control = TransferControl::new();
    let first_progress = tracker();
    let mut opts = options(&first_progress, Some(&control));
    let pauser = control.clone();
    let sink = first_progress.clone();
    opts.on_progress = Some(Box::new(move |p: &Progress| {
        *sink.borrow_mut() = p.clone();
        if p.bytes_written >= CHUNK && pauser.state() != Some(TransferState::Paused) {
            pauser.pause();
        }
    }));
    let watcher = control.clone();
    kill_when(run(&c, spec.clone(), opts), async move {
        wait_until("the first run is paused", || {
            watcher.state() == Some(TransferState::Paused)
        })
        .await
    })
    .await;
    let kept = stored(&c, &id).await;
    assert!(kept >= CHUNK, "stored {kept}");

    let progress = tracker();
    let asset = run(&c, spec, options(&progress, None)).await.unwrap();
    assert_eq!(asset.size, LEN);
    assert_eq!(asset.sha256, cdn_sha256(LEN, seed).await);
    let logged = gets(&path).await;
    assert_eq!(logged.len(), 2, "{logged:?}");
    assert_eq!(logged[1].range, Some(format!("bytes={kept}-")));
    assert_eq!(logged[1].status, 200, "the server ignored the range");
    let p = progress.borrow().clone();
    console_log!(
        "{fault}: {kept} bytes stored before the resume, wasted {}",
        p.wasted_bytes
    );
    assert_eq!(p.restarts, 1);
    assert!(p.wasted_bytes >= kept, "{p:?}");
    remove(c).await;
}

#[wasm_bindgen_test]
async fn a_200_for_a_range_restarts_from_zero() {
    restart_after_interruption("run-no-range", "fault=no-range", 6_000 + probe() % 1000).await;
}

#[wasm_bindgen_test]
async fn a_changed_etag_restarts_from_zero() {
    restart_after_interruption("run-etag", "fault=etag-change", 7_000 + probe() % 1000).await;
}

#[wasm_bindgen_test]
async fn a_killed_run_is_continued_from_its_checkpoint() {
    const LEN: u64 = 6 * MIB;
    const STALL_AT: u64 = 3 * MIB + MIB / 2;
    let seed = 8_000 + probe() % 1000;
    let fault = format!("fault=stall:{STALL_AT}&stall-ms={STALL_MS}&times=1");
    let path = gen_path(LEN, seed, &fault);
    let c = fresh("run-kill").await;
    let id = unique_id("kill");
    let spec = spec_for(&id, &path, LEN, seed, CHUNK).await;
    let first = tracker();
    let seen = first.clone();
    kill_when(run(&c, spec.clone(), options(&first, None)), async move {
        wait_until("3 chunks are stored", || {
            seen.borrow().bytes_written >= 3 * MIB
        })
        .await
    })
    .await;
    let kept = stored(&c, &id).await;
    assert_eq!(kept, 3 * MIB);

    let progress = tracker();
    let asset = run(&c, spec, options(&progress, None)).await.unwrap();
    assert_eq!(asset.sha256, cdn_sha256(LEN, seed).await);
    let logged = gets(&path).await;
    assert_eq!(logged.len(), 2, "{logged:?}");
    assert_eq!(logged[0].sent, STALL_AT);
    assert_eq!(logged[1].range, Some(format!("bytes={kept}-")));
    assert_eq!((logged[1].status, logged[1].sent), (206, LEN - kept));
    console_log!(
        "killed: resumed at {kept}, fetched twice {}",
        STALL_AT - kept
    );
    assert_eq!(progress.borrow().wasted_bytes, 0);
    remove(c).await;
}

/// A run dropped mid-body, with chunk writes in flight and the body arriving faster than it is
/// read (as a killed context in the bench), leaves no rejected promise without a handler: the
/// aborted fetch, its cancelled body and the aborted writes are all handled.
#[wasm_bindgen_test]
async fn a_killed_run_leaves_no_unhandled_rejection() {
    const LEN: u64 = 24 * MIB;
    for windows in [0, 1] {
        let seed = 8_500 + probe() % 1000;
        let path = gen_path(LEN, seed, "");
        let c = fresh("run-kill-clean").await;
        let id = unique_id("kill-clean");
        let mut spec = spec_for(&id, &path, LEN, seed, CHUNK).await;
        spec.config.range_window_chunks = windows;
        let watch = super::common::UnhandledRejections::watch();
        for _ in 0..3 {
            let first = tracker();
            let seen = first.clone();
            let half = LEN / 2 + CHUNK / 2;
            kill_when(run(&c, spec.clone(), options(&first, None)), async move {
                wait_until("half of the body arrived", || {
                    seen.borrow().bytes_received >= half
                })
                .await
            })
            .await;
            // The rejections of what the drop aborted arrive within a few tasks.
            gloo_timers::future::TimeoutFuture::new(300).await;
            let progress = tracker();
            let asset = run(&c, spec.clone(), options(&progress, None))
                .await
                .unwrap();
            assert_eq!(asset.size, LEN);
            c.delete(&id).await.unwrap();
        }
        gloo_timers::future::TimeoutFuture::new(300).await;
        assert_eq!(watch.seen(), Vec::<String>::new(), "windows: {windows}");
        drop(watch);
        remove(c).await;
    }
}

/// Pausing mid-body (the fetch aborted, its body cancelled), resuming, and cancelling mid-body
/// (the stored chunks discarded) leave no rejected promise without a handler either.
#[wasm_bindgen_test]
async fn pause_resume_and_cancel_leave_no_unhandled_rejection() {
    const LEN: u64 = 24 * MIB;
    let seed = 8_700 + probe() % 1000;
    let path = gen_path(LEN, seed, "");
    let c = fresh("run-pause-clean").await;
    let id = unique_id("pause-clean");
    let spec = spec_for(&id, &path, LEN, seed, CHUNK).await;
    let watch = super::common::UnhandledRejections::watch();
    for cancel in [false, true] {
        let control = TransferControl::new();
        let progress = tracker();
        let seen = progress.clone();
        let steer = control.clone();
        let (result, ()) = join(
            run(&c, spec.clone(), options(&progress, Some(&control))),
            async {
                wait_until("a third of the body arrived", || {
                    seen.borrow().bytes_received >= LEN / 3 + CHUNK / 2
                })
                .await;
                if cancel {
                    steer.cancel();
                    return;
                }
                steer.pause();
                wait_until("the run is paused", || {
                    steer.state() == Some(TransferState::Paused)
                })
                .await;
                gloo_timers::future::TimeoutFuture::new(300).await;
                steer.resume();
            },
        )
        .await;
        match (cancel, result) {
            // Deleted, so that the next run downloads it again.
            (false, Ok(asset)) => assert!(asset.size == LEN && c.delete(&id).await.unwrap()),
            (true, Err(Error::Cancelled { .. })) => {}
            (cancel, other) => panic!("cancel: {cancel}: {other:?}"),
        }
    }
    gloo_timers::future::TimeoutFuture::new(300).await;
    assert_eq!(watch.seen(), Vec::<String>::new());
    drop(watch);
    remove(c).await;
}

#[wasm_bindgen_test]
async fn racing_runs_one_runs_the_other_observes_or_waits() {
    const LEN: u64 = 4 * MIB;
    let seed = 9_000 + probe() % 1000;
    let fault = format!("fault=stall:{}&stall-ms={STALL_MS}&times=1", 2 * MIB + 5);
    let path = gen_path(LEN, seed, &fault);
    let c = fresh("run-race").await;
    let id = unique_id("race");
    let spec = spec_for(&id, &path, LEN, seed, CHUNK).await;
    let control = TransferControl::new();
    let first = tracker();
    let waiter = tracker();
    let mut waiting = options(&waiter, None);
    waiting.lock = LockPolicy::Wait;
    let seen = first.clone();
    let steer = control.clone();
    let (a, waited, ()) = join3(
        run(&c, spec.clone(), options(&first, Some(&control))),
        run(&c, spec.clone(), waiting),
        async {
            wait_until("2 chunks are stored", || {
                seen.borrow().bytes_written >= 2 * MIB
            })
            .await;
            let mut observe = options(&tracker(), None);
            observe.lock = LockPolicy::IfAvailable;
            let refused = run(&c, spec.clone(), observe).await.unwrap_err();
            assert_eq!(
                refused,
                Error::DownloadAlreadyScheduled {
                    identifier: id.clone()
                }
            );
            steer.pause();
            steer.resume();
        },
    )
    .await;
    let a = a.unwrap();
    let waited = waited.unwrap();
    assert_eq!(a, waited, "the waiting run found the finished asset");
    assert_eq!(a.sha256, cdn_sha256(LEN, seed).await);
    assert_eq!(
        gets(&path).await.len(),
        2,
        "only the first run fetched (stalled GET + resume)"
    );
    assert_eq!(waiter.borrow().bytes_received, 0);
    remove(c).await;
}

/// Starts a run that stalls after 2 chunks and 5 bytes; returns once it stored both chunks.
async fn stalled_run_setup(label: &str) -> (Container, String, TransferSpec) {
    const LEN: u64 = 4 * MIB;
    let seed = 10_000 + probe() % 1000;
    let fault = format!("fault=stall:{}&stall-ms={STALL_MS}&times=1", 2 * MIB + 5);
    let path = gen_path(LEN, seed, &fault);
    let c = fresh(label).await;
    let id = unique_id(label);
    let spec = spec_for(&id, &path, LEN, seed, CHUNK).await;
    (c, id, spec)
}

/// Once `progress` shows the stalled run's 2 chunks stored, steals `id`'s lock and begins a
/// newer epoch in `c`, as another context would; gives the thief's guard and that epoch.
async fn steal_after_two_chunks(
    c: &Container,
    id: &str,
    progress: &Rc<RefCell<Progress>>,
) -> (background_assets::web::locks::LockGuard, u64) {
    wait_until("2 chunks are stored", || {
        progress.borrow().bytes_written >= 2 * MIB
    })
    .await;
    let guard = acquire(&lock_name(id), LockOptions::exclusive().steal())
        .await
        .unwrap()
        .expect("steal is granted");
    (guard, c.begin_epoch(id).await.unwrap())
}

#[wasm_bindgen_test]
async fn a_stolen_lock_stops_the_holder_without_writing() {
    let (c, id, spec) = stalled_run_setup("run-steal").await;
    let progress = tracker();
    let (held, (thief, epoch)) = join(
        run(&c, spec, options(&progress, None)),
        steal_after_two_chunks(&c, &id, &progress),
    )
    .await;
    assert_eq!(epoch, 2);
    assert_eq!(
        held.unwrap_err(),
        Error::StaleEpoch {
            identifier: id.clone(),
            held: 1,
            current: 2
        }
    );
    let record = c.load_checkpoint(&id).await.unwrap().unwrap();
    assert_eq!((record.epoch, record.stored), (2, 2 * MIB));
    drop(thief);
    remove(c).await;
}

/// With `RunOptions::held` (the caller holds the download's lock), a run takes no lock of its
/// own: it finishes while its caller holds the lock (`IfAvailable` would refuse it otherwise),
/// and the lock is still the caller's afterwards. Stolen from the caller, it stops the run
/// with `StaleEpoch`, as its own lock would.
#[wasm_bindgen_test]
async fn a_run_under_the_lock_its_caller_holds_takes_none_of_its_own() {
    use background_assets::web::locks::query;
    const LEN: u64 = 3 * MIB + 17;
    let c = fresh("run-held").await;
    let seed = 19_000 + probe() % 1000;
    let id = unique_id("held");
    let spec = spec_for(&id, &gen_path(LEN, seed, ""), LEN, seed, CHUNK).await;
    let guard = Rc::new(
        acquire(&lock_name(&id), LockOptions::exclusive())
            .await
            .unwrap()
            .expect("the lock is free"),
    );
    let refused = run(
        &c,
        spec.clone(),
        RunOptions {
            lock: LockPolicy::IfAvailable,
            ..options(&tracker(), None)
        },
    )
    .await;
    assert!(
        matches!(refused, Err(Error::DownloadAlreadyScheduled { .. })),
        "{refused:?}"
    );
    let asset = run(
        &c,
        spec,
        RunOptions {
            lock: LockPolicy::IfAvailable,
            held: Some(guard.clone()),
            ..options(&tracker(), None)
        },
    )
    .await
    .unwrap();
    assert_eq!(
        (asset.size, asset.sha256),
        (LEN, cdn_sha256(LEN, seed).await)
    );
    assert!(query().await.unwrap().is_held(&lock_name(&id)), "released");
    assert!(!guard.is_lost());
    Rc::try_unwrap(guard).unwrap().release().await;

    // Stolen from the caller: the run stops, fenced.
    let (c2, id, spec) = stalled_run_setup("run-held-steal").await;
    let guard = Rc::new(
        acquire(&lock_name(&id), LockOptions::exclusive())
            .await
            .unwrap()
            .expect("the lock is free"),
    );
    let progress = tracker();
    let opts = RunOptions {
        held: Some(guard.clone()),
        ..options(&progress, None)
    };
    let (stopped, (thief, _)) = join(
        run(&c2, spec, opts),
        steal_after_two_chunks(&c2, &id, &progress),
    )
    .await;
    assert!(
        matches!(stopped, Err(Error::StaleEpoch { .. })),
        "{stopped:?}"
    );
    assert!(guard.is_lost());
    drop(thief);
    remove(c2).await;
    remove(c).await;
}

#[wasm_bindgen_test]
async fn a_newer_epoch_fences_the_old_holders_write() {
    // Another context began a newer epoch (its holder outlived its lock): the old run's next
    // write — the short chunk its pause stores — is refused by the container.
    let (c, id, spec) = stalled_run_setup("run-fence").await;
    let control = TransferControl::new();
    let progress = tracker();
    let seen = progress.clone();
    let steer = control.clone();
    let (held, ()) = join(run(&c, spec, options(&progress, Some(&control))), async {
        wait_until("2 chunks are stored", || {
            seen.borrow().bytes_written >= 2 * MIB
        })
        .await;
        wait_until("the 5 extra bytes arrived", || {
            seen.borrow().bytes_received >= 2 * MIB + 5
        })
        .await;
        assert_eq!(c.begin_epoch(&id).await.unwrap(), 2);
        steer.pause();
    })
    .await;
    assert_eq!(
        held.unwrap_err(),
        Error::StaleEpoch {
            identifier: id.clone(),
            held: 1,
            current: 2
        }
    );
    assert_eq!(
        stored(&c, &id).await,
        2 * MIB,
        "the refused write stored nothing"
    );
    remove(c).await;
}

/// Pauses the run of `spec` once `pause_at` bytes arrived, checks that the pause stored every
/// received byte and that nothing was requested again while paused, waits `paused_ms`, resumes,
/// and returns the finished run's CDN log, its last progress and what the pause had stored.
async fn pause_run_and_resume(
    c: &Container,
    spec: TransferSpec,
    path: &str,
    pause_at: u64,
    paused_ms: u32,
) -> (Vec<super::common::Logged>, Progress, u64) {
    let id = spec.identifier.clone();
    let control = TransferControl::new();
    let progress = tracker();
    let seen = progress.clone();
    let steer = control.clone();
    let (asset, at_pause) = join(run(c, spec, options(&progress, Some(&control))), async {
        wait_until("bytes arrived", || seen.borrow().bytes_received >= pause_at).await;
        steer.pause();
        wait_until("paused", || steer.state() == Some(TransferState::Paused)).await;
        gloo_timers::future::TimeoutFuture::new(paused_ms).await;
        assert_eq!(steer.state(), Some(TransferState::Paused));
        let at_pause = stored(c, &id).await;
        assert_eq!(
            at_pause,
            steer.progress().unwrap().bytes_received,
            "pause stores what arrived"
        );
        assert_eq!(gets(path).await.len(), 1, "nothing fetched while paused");
        steer.resume();
        at_pause
    })
    .await;
    asset.unwrap();
    let progress = progress.borrow().clone();
    (gets(path).await, progress, at_pause)
}

#[wasm_bindgen_test]
async fn pause_holds_the_response_and_resume_reads_it_on_with_nothing_fetched_twice() {
    const LEN: u64 = 4 * MIB;
    let seed = 11_000 + probe() % 1000;
    // A body sent at 2 MiB/s: the pause lands mid-body, with more on its way.
    let path = gen_path(LEN, seed, "throttle=2097152");
    let c = fresh("run-pause").await;
    let id = unique_id("pause");
    let spec = spec_for(&id, &path, LEN, seed, CHUNK).await;
    assert_eq!(spec.config.pause_hold_ms, 30_000, "held by default");
    let (logged, progress, at_pause) = pause_run_and_resume(&c, spec, &path, MIB, 300).await;
    assert!((MIB..LEN).contains(&at_pause), "paused at {at_pause}");
    assert_eq!(logged.len(), 1, "the held response was read on: {logged:?}");
    assert_eq!(logged[0].sent, LEN, "not one byte sent twice: {logged:?}");
    assert_eq!(progress.attempts, 1);
    assert_eq!(progress.wasted_bytes, 0);
    let asset = c.asset(&id).await.unwrap().unwrap();
    assert_eq!(asset.sha256, cdn_sha256(LEN, seed).await);
    remove(c).await;
}

#[wasm_bindgen_test]
async fn a_pause_longer_than_the_hold_resumes_with_a_range_and_wastes_nothing() {
    const LEN: u64 = 5 * MIB;
    const STALL_AT: u64 = 2 * MIB + MIB / 2 + 777;
    let seed = 11_500 + probe() % 1000;
    let fault = format!("fault=stall:{STALL_AT}&stall-ms={STALL_MS}&times=1");
    let path = gen_path(LEN, seed, &fault);
    let c = fresh("run-pause-long").await;
    let id = unique_id("pause-long");
    let mut spec = spec_for(&id, &path, LEN, seed, CHUNK).await;
    spec.config.pause_hold_ms = 200;
    let (logged, progress, at_pause) = pause_run_and_resume(&c, spec, &path, STALL_AT, 600).await;
    assert_eq!(at_pause, STALL_AT, "pause stores what arrived");
    assert_eq!(logged.len(), 2, "{logged:?}");
    assert_eq!(logged[1].range, Some(format!("bytes={STALL_AT}-")));
    let sent: u64 = logged.iter().map(|l| l.sent).sum();
    assert_eq!(sent, LEN, "not one byte sent twice: {logged:?}");
    assert_eq!(progress.wasted_bytes, 0);
    let asset = c.asset(&id).await.unwrap().unwrap();
    assert_eq!(asset.sha256, cdn_sha256(LEN, seed).await);
    remove(c).await;
}

/// With `range_window_chunks`, each request asks for a bounded window (`Range: bytes=a-b`), the
/// next conditional on the first response's `ETag`; the last one is open-ended; the file is
/// exact and nothing is sent twice.
#[wasm_bindgen_test]
async fn bounded_range_windows_fetch_the_file_window_by_window() {
    const LEN: u64 = 3 * MIB + MIB / 2;
    let seed = 12_500 + probe() % 1000;
    let path = gen_path(LEN, seed, "");
    let c = fresh("run-window").await;
    let id = unique_id("window");
    let mut spec = spec_for(&id, &path, LEN, seed, CHUNK).await;
    spec.config.range_window_chunks = 1;
    let progress = tracker();
    let asset = run(&c, spec, options(&progress, None)).await.unwrap();
    assert_eq!(asset.size, LEN);
    assert_eq!(asset.sha256, cdn_sha256(LEN, seed).await);
    let logged = gets(&path).await;
    let ranges: Vec<_> = logged.iter().map(|l| l.range.clone()).collect();
    assert_eq!(
        ranges,
        [
            Some("bytes=0-1048575".to_string()),
            Some("bytes=1048576-2097151".to_string()),
            Some("bytes=2097152-3145727".to_string()),
            Some("bytes=3145728-".to_string()),
        ],
        "{logged:?}"
    );
    assert!(logged.iter().all(|l| l.status == 206), "{logged:?}");
    assert_eq!(
        logged[0].if_range, None,
        "no validator before the first answer"
    );
    assert!(logged[1..]
        .iter()
        .all(|l| l.if_range == logged[1].if_range && l.if_range.is_some()));
    assert_eq!(logged.iter().map(|l| l.sent).sum::<u64>(), LEN);
    assert_eq!(progress.borrow().wasted_bytes, 0);
    remove(c).await;
}

#[wasm_bindgen_test]
async fn with_bounded_windows_a_killed_run_refetches_at_most_the_window_it_was_reading() {
    const LEN: u64 = 4 * MIB;
    let seed = 12_700 + probe() % 1000;
    let path = gen_path(LEN, seed, "");
    let c = fresh("run-window-kill").await;
    let id = unique_id("window-kill");
    let mut spec = spec_for(&id, &path, LEN, seed, CHUNK).await;
    spec.config.range_window_chunks = 1;
    let first = tracker();
    let seen = first.clone();
    kill_when(run(&c, spec.clone(), options(&first, None)), async move {
        wait_until("the third window is being read", || {
            seen.borrow().bytes_received >= 2 * CHUNK + 64 * 1024
        })
        .await
    })
    .await;
    // Each window was asked for only once the ones before it were stored.
    let kept = stored(&c, &id).await;
    assert!(kept >= 2 * CHUNK && kept % CHUNK == 0, "kept {kept}");
    let asset = run(&c, spec, options(&tracker(), None)).await.unwrap();
    assert_eq!(asset.sha256, cdn_sha256(LEN, seed).await);
    let logged = gets(&path).await;
    let fetched: u64 = logged.iter().map(|l| l.sent).sum();
    console_log!("windows killed at {kept}: fetched twice {}", fetched - LEN);
    assert!(
        fetched - LEN <= CHUNK,
        "fetched twice {} ({logged:?})",
        fetched - LEN
    );
    remove(c).await;
}

#[wasm_bindgen_test]
async fn cancel_fails_and_discards_the_stored_chunks() {
    let (c, id, spec) = stalled_run_setup("run-cancel").await;
    let control = TransferControl::new();
    let progress = tracker();
    let seen = progress.clone();
    let steer = control.clone();
    let (result, ()) = join(run(&c, spec, options(&progress, Some(&control))), async {
        wait_until("2 chunks are stored", || {
            seen.borrow().bytes_written >= 2 * MIB
        })
        .await;
        assert_eq!(stored(&c, &id).await, 2 * MIB);
        steer.cancel();
    })
    .await;
    assert_eq!(
        result.unwrap_err(),
        Error::Cancelled {
            identifier: id.clone()
        }
    );
    assert_eq!(stored(&c, &id).await, 0, "chunks discarded");
    assert!(c.asset(&id).await.unwrap().is_none());
    remove(c).await;
}

#[wasm_bindgen_test]
async fn a_redirect_off_the_allow_list_is_refused() {
    const LEN: u64 = 100_000;
    let seed = 12_000 + probe() % 1000;
    let port = cdn().rsplit(':').next().unwrap();
    let elsewhere = format!("http://localhost:{port}/gen/{LEN}/{seed}");
    let path = gen_path(LEN, seed, &format!("fault=redirect-origin:{elsewhere}"));
    let c = fresh("run-redirect").await;
    let id = unique_id("redirect");
    let spec = spec_for(&id, &path, LEN, seed, CHUNK).await;
    let result = run(&c, spec, options(&tracker(), None)).await;
    assert_eq!(
        result.unwrap_err(),
        Error::SessionDownloadDisallowedByDomain {
            host: "localhost".into()
        }
    );
    assert_eq!(stored(&c, &id).await, 0);
    assert!(c.asset(&id).await.unwrap().is_none());
    // The request URL itself is checked before anything is fetched.
    let mut direct = spec_for(&id, &path, LEN, seed, CHUNK).await;
    direct.url = elsewhere;
    let refused = run(&c, direct, options(&tracker(), None))
        .await
        .unwrap_err();
    assert_eq!(refused.name(), "SessionDownloadDisallowedByDomain");
    remove(c).await;
}

#[wasm_bindgen_test]
async fn an_asset_stored_by_run_is_served_with_ranges() {
    const LEN: u64 = 3 * MIB + 5;
    let seed = 13_000 + probe() % 1000;
    let path = gen_path(LEN, seed, "");
    let c = fresh("run-serve").await;
    let id = unique_id("serve");
    let spec = spec_for(&id, &path, LEN, seed, CHUNK).await;
    run(&c, spec, options(&tracker(), None)).await.unwrap();

    let (first, last) = (CHUNK - 10, CHUNK + 9);
    let partial = serve(&c, &id, Some(&format!("bytes={first}-{last}")))
        .await
        .unwrap();
    assert_eq!(partial.status(), 206);
    assert_eq!(
        partial.headers().get("Content-Range").unwrap().as_deref(),
        Some(format!("bytes {first}-{last}/{LEN}").as_str())
    );
    let body = JsFuture::from(partial.array_buffer().unwrap())
        .await
        .unwrap();
    let body = js_sys::Uint8Array::new(&body).to_vec();
    let original = fetch_all(&format!("{}/gen/{LEN}/{seed}", cdn())).await;
    assert_eq!(body, &original[first as usize..=last as usize]);

    let tail = serve(&c, &id, Some("bytes=-5")).await.unwrap();
    assert_eq!(tail.status(), 206);
    let unsatisfiable = serve(&c, &id, Some(&format!("bytes={LEN}-")))
        .await
        .unwrap();
    assert_eq!(unsatisfiable.status(), 416);
    assert_eq!(
        unsatisfiable
            .headers()
            .get("Content-Range")
            .unwrap()
            .as_deref(),
        Some(format!("bytes */{LEN}").as_str())
    );
    remove(c).await;
}

#[wasm_bindgen_test]
async fn the_browser_digest_is_sha256() {
    for len in [0usize, 3, 64, 1_000_003] {
        let data: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
        let array = js_sys::Uint8Array::from(&data[..]);
        let expected: [u8; 32] = Sha256::digest(&data).into();
        assert_eq!(js::sha256(&array).await, expected, "{len} bytes");
    }
}

#[wasm_bindgen_test]
async fn the_browser_digest_starts_at_the_call_so_the_array_may_be_reused_at_once() {
    let data: Vec<u8> = (0..4 * MIB as usize).map(|i| (i * 13) as u8).collect();
    let array = js_sys::Uint8Array::from(&data[..]);
    let expected: [u8; 32] = Sha256::digest(&data).into();
    let digest = js::sha256(&array);
    // Reused before the future is first polled (as the transfer reuses its chunk array).
    array.fill(0, 0, array.length());
    assert_eq!(digest.await, expected);
}

#[wasm_bindgen_test]
async fn a_wrong_chunk_digest_stores_nothing_after_it_while_later_chunks_were_being_checked() {
    // Eight chunks: while chunk 1 is checked, the body is read on and chunk 2 may be cut and
    // checked too; neither it nor any later chunk is stored.
    const LEN: u64 = 8 * MIB;
    let seed = 15_000 + probe() % 1000;
    let path = gen_path(LEN, seed, "");
    let c = fresh("run-chunks-ahead").await;
    let id = unique_id("chunks-ahead");
    let good = cdn_chunk_digests(LEN, seed, CHUNK).await;
    assert_eq!(good.sha256.len(), 8);
    let mut wrong = good.clone();
    wrong.sha256[1] = cdn_chunk_digests(LEN, seed + 1, CHUNK).await.sha256[1];
    let mut spec = spec_for(&id, &path, LEN, seed, CHUNK).await;
    spec.chunk_digests = Some(wrong);
    match run(&c, spec.clone(), options(&tracker(), None)).await {
        Err(Error::ChunkIntegrityMismatch { offset, .. }) => assert_eq!(offset, CHUNK),
        other => panic!("expected ChunkIntegrityMismatch, got {other:?}"),
    }
    assert_eq!(
        stored(&c, &id).await,
        CHUNK,
        "only the chunk before the bad one"
    );

    // With the right list the next run continues after it and finishes, every chunk checked.
    spec.chunk_digests = Some(good);
    let asset = run(&c, spec, options(&tracker(), None)).await.unwrap();
    assert_eq!(asset.size, LEN);
    let logged = gets(&path).await;
    assert_eq!(
        logged[1].range.as_deref(),
        Some(format!("bytes={CHUNK}-").as_str()),
        "{logged:?}"
    );
    let original = fetch_all(&format!("{}/gen/{LEN}/{seed}", cdn())).await;
    assert_eq!(c.read_range(&id, 0, LEN).await.unwrap(), original);
    remove(c).await;
}

#[wasm_bindgen_test]
async fn declared_chunk_digests_refuse_a_wrong_chunk_and_keep_the_verified_ones() {
    const LEN: u64 = 3 * MIB + 4_321;
    let seed = 14_000 + probe() % 1000;
    let path = gen_path(LEN, seed, "");
    let c = fresh("run-chunks").await;
    let id = unique_id("chunks");
    let good = cdn_chunk_digests(LEN, seed, CHUNK).await;
    assert_eq!(good.sha256.len(), 4);
    // The declaration lists another body's digest for chunk 2: the server's chunk 2 is wrong.
    let mut wrong = good.clone();
    wrong.sha256[2] = cdn_chunk_digests(LEN, seed + 1, CHUNK).await.sha256[2];
    // The config's chunk size gives way to the list's.
    let mut spec = spec_for(&id, &path, LEN, seed, 64 * 1024).await;
    spec.chunk_digests = Some(wrong.clone());
    match run(&c, spec.clone(), options(&tracker(), None)).await {
        Err(Error::ChunkIntegrityMismatch {
            offset,
            expected,
            actual,
            ..
        }) => {
            assert_eq!(offset, 2 * CHUNK);
            assert_eq!(expected, hex(&wrong.sha256[2]));
            assert_eq!(actual, hex(&good.sha256[2]));
        }
        other => panic!("expected ChunkIntegrityMismatch, got {other:?}"),
    }
    assert_eq!(stored(&c, &id).await, 2 * CHUNK, "the verified chunks stay");

    // With the right list the next run continues after them and finishes.
    spec.chunk_digests = Some(good);
    let asset = run(&c, spec, options(&tracker(), None)).await.unwrap();
    assert_eq!(asset.size, LEN);
    assert_eq!(asset.sha256, cdn_sha256(LEN, seed).await);
    let logged = gets(&path).await;
    assert_eq!(logged.len(), 2, "{logged:?}");
    assert_eq!(
        logged[1].range.as_deref(),
        Some(format!("bytes={}-", 2 * CHUNK).as_str())
    );
    let original = fetch_all(&format!("{}/gen/{LEN}/{seed}", cdn())).await;
    assert_eq!(c.read_range(&id, 0, LEN).await.unwrap(), original);
    remove(c).await;
}
