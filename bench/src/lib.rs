//! Measurements for `cargo xtask bench`, run inside the browser global that calls them (the bench
//! service worker, or the bench page where `performance.memory` exists).
//!
//! ```text
//!   xtask bench ──WebDriver──► bench page ──postMessage──► bench service worker
//!                                   │                          │ engineThroughput, engineMany,
//!                                   │ engineMemory             │ engineResume (this crate, wasm)
//!                                   │                          │ fetch drain, IndexedDB put,
//!                                   ▼                          ▼ cache.put, precache (plain JS)
//!                              results in the DOM ◄── replies over a MessageChannel
//! ```
//!
//! Every entry point drives `background_assets::web::transfer::run` — the engine the download
//! manager (issue 5) will call — against the local CDN, and verifies what it stored (size and
//! SHA-256). Results are JSON strings. This crate is not part of the library's JS face: it is
//! built only by `cargo xtask bench`. On other targets it is empty.
#![cfg(target_arch = "wasm32")]

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use background_assets::core::error::Error;
use background_assets::core::policy::DomainAllowList;
use background_assets::core::transfer::{Progress, TransferSpec, TransferState};
use background_assets::web::container::Container;
use background_assets::web::fetcher::{FetchOptions, Fetcher};
use background_assets::web::js;
use background_assets::web::transfer::{run, RunOptions, TransferControl};
use futures::future::{select, Either};
use futures::stream::{self, StreamExt, TryStreamExt};
use serde_json::json;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

const MIB: f64 = 1048576.0;

fn err(e: impl std::fmt::Display) -> JsValue {
    JsValue::from_str(&e.to_string())
}

fn probe() -> u64 {
    (js_sys::Math::random() * 1e12) as u64
}

/// `performance.now()` in milliseconds (falls back to `Date.now()`).
fn now_ms() -> f64 {
    let performance = js::get(&js_sys::global(), "performance");
    match js::get(&performance, "now").dyn_into::<js_sys::Function>() {
        Ok(now) => now
            .call0(&performance)
            .ok()
            .and_then(|v| v.as_f64())
            .unwrap_or_else(js_sys::Date::now),
        Err(_) => js_sys::Date::now(),
    }
}

fn wasm_memory_bytes() -> f64 {
    let memory: js_sys::WebAssembly::Memory = wasm_bindgen::memory().unchecked_into();
    js_sys::ArrayBuffer::from(memory.buffer()).byte_length() as f64
}

/// `performance.memory.usedJSHeapSize` where the engine has it (Chromium pages).
fn js_heap_bytes() -> Option<f64> {
    let memory = js::get(&js::get(&js_sys::global(), "performance"), "memory");
    js::get(&memory, "usedJSHeapSize").as_f64()
}

async fn fetch_bytes(url: &str) -> Result<Vec<u8>, Error> {
    let mut stream = Fetcher::start(url, FetchOptions::default()).await?;
    let mut out = Vec::new();
    while let Some(piece) = stream.next_piece().await? {
        out.extend_from_slice(&piece.to_vec());
    }
    Ok(out)
}

/// The CDN's SHA-256 of `/gen/<len>/<seed>`.
async fn cdn_sha256(cdn: &str, len: u64, seed: u64) -> Result<[u8; 32], JsValue> {
    let text = fetch_bytes(&format!("{cdn}/gen/{len}/{seed}.sha256"))
        .await
        .map_err(err)?;
    let text = String::from_utf8(text).map_err(err)?;
    background_assets::core::integrity::parse_sha256(&text)
        .ok_or_else(|| err(format!("bad digest {text:?} from the CDN")))
}

/// Sum of `body_bytes_sent` over the CDN's logged `GET`s of exactly `path_and_query`, and their
/// count.
async fn bytes_sent_for(
    cdn: &str,
    path_and_query: &str,
) -> Result<(u64, u64, Option<u64>), JsValue> {
    let log = fetch_bytes(&format!("{cdn}/_control/log"))
        .await
        .map_err(err)?;
    let log: serde_json::Value = serde_json::from_slice(&log).map_err(err)?;
    let mut sum = 0;
    let mut count = 0;
    let mut last_range_start = None;
    for record in log.as_array().into_iter().flatten() {
        if record["method"] == "GET" && record["path_and_query"] == path_and_query {
            sum += record["body_bytes_sent"].as_u64().unwrap_or(0);
            count += 1;
            last_range_start = record["range"]
                .as_str()
                .and_then(|r| r.strip_prefix("bytes="))
                .and_then(|r| r.strip_suffix('-'))
                .and_then(|n| n.parse().ok());
        }
    }
    Ok((sum, count, last_range_start))
}

async fn fresh_container(label: &str) -> Result<Container, JsValue> {
    Container::open(&format!("ba-bench-{label}-{}", probe()))
        .await
        .map_err(err)
}

async fn remove_container(container: Container) -> Result<(), JsValue> {
    let name = container.name().to_string();
    container.close();
    drop(container);
    Container::delete_database(&name).await.map_err(err)
}

fn options() -> RunOptions {
    RunOptions {
        allow: DomainAllowList::parse(["127.0.0.1"]).expect("a valid host"),
        ..RunOptions::default()
    }
}

async fn spec_for(
    cdn: &str,
    identifier: String,
    path: &str,
    len: u64,
    seed: u64,
    chunk: u64,
) -> Result<TransferSpec, JsValue> {
    let mut spec = TransferSpec::new(identifier, format!("{cdn}{path}"));
    spec.expected_size = Some(len);
    spec.sha256 = Some(cdn_sha256(cdn, len, seed).await?);
    spec.config.chunk_size = chunk as u32;
    Ok(spec)
}

/// One `len`-byte download CDN → container through `web::transfer::run`, verified (declared
/// size and SHA-256), asking for at most `window_chunks` chunks per request (`0`: the default
/// config, one request); with `chunk_digests` the spec also declares the file's chunk digests
/// (fetched before the clock starts), so each chunk is verified by `crypto.subtle.digest`
/// instead of the whole file in wasm. Returns `{"ms", "bytes", "mib_s", "chunk_bytes"}`.
#[wasm_bindgen(js_name = engineThroughput)]
pub async fn engine_throughput(
    cdn: String,
    len: f64,
    seed: f64,
    chunk: f64,
    window_chunks: f64,
    chunk_digests: bool,
) -> Result<String, JsValue> {
    let (len, seed, chunk) = (len as u64, seed as u64, chunk as u64);
    let path = format!("/gen/{len}/{seed}?probe={}", probe());
    let mut spec = spec_for(&cdn, format!("tp-{}", probe()), &path, len, seed, chunk).await?;
    spec.config.range_window_chunks = window_chunks.max(0.0) as u32;
    if chunk_digests {
        let list = fetch_bytes(&format!("{cdn}/gen/{len}/{seed}.chunks/{chunk}"))
            .await
            .map_err(err)?;
        spec.chunk_digests = Some(serde_json::from_slice(&list).map_err(err)?);
    }
    let container = fresh_container("tp").await?;
    let started = now_ms();
    let outcome = run(&container, spec, options()).await;
    let ms = now_ms() - started;
    remove_container(container).await?;
    let asset = outcome.map_err(err)?;
    stored_size(asset.size, len)?;
    Ok(json!({
        "ms": ms,
        "bytes": len,
        "mib_s": len as f64 / MIB / (ms / 1000.0),
        "chunk_bytes": chunk,
    })
    .to_string())
}

/// `count` generated files of `size` bytes (seeds `seed..seed+count`) through
/// `web::transfer::run`, at most `concurrency` at a time, into one container. Digests are
/// fetched before the clock starts. Returns `{"ms", "count"}`.
#[wasm_bindgen(js_name = engineMany)]
pub async fn engine_many(
    cdn: String,
    count: u32,
    size: f64,
    seed: f64,
    concurrency: u32,
) -> Result<String, JsValue> {
    let (size, seed) = (size as u64, seed as u64);
    let tag = probe();
    let cdn_ref = cdn.as_str();
    let specs: Vec<TransferSpec> = stream::iter(0..count as u64)
        .map(|i| {
            let path = format!("/gen/{size}/{}?probe={tag}", seed + i);
            async move {
                spec_for(
                    cdn_ref,
                    format!("small-{i}"),
                    &path,
                    size,
                    seed + i,
                    4 << 20,
                )
                .await
            }
        })
        .buffer_unordered(8)
        .try_collect()
        .await?;
    let container = fresh_container("many").await?;
    let started = now_ms();
    let container_ref = &container;
    let outcome: Result<Vec<_>, Error> = stream::iter(specs)
        .map(|spec| {
            // New identifiers in a new container: nothing is stored, as the manager knows of
            // downloads that reported no byte.
            let fresh = RunOptions {
                fresh: true,
                ..options()
            };
            run(container_ref, spec, fresh)
        })
        .buffer_unordered(concurrency.max(1) as usize)
        .try_collect()
        .await;
    let ms = now_ms() - started;
    remove_container(container).await?;
    let assets = outcome.map_err(err)?;
    if assets.len() != count as usize || assets.iter().any(|a| a.size != size) {
        return Err(err("a small file was not stored whole"));
    }
    Ok(json!({ "ms": ms, "count": count }).to_string())
}

/// An error unless the engine stored `size` bytes, the file's `len`.
fn stored_size(size: u64, len: u64) -> Result<(), JsValue> {
    if size != len {
        return Err(err(format!("stored {size} bytes, expected {len}")));
    }
    Ok(())
}

/// An error naming `what` unless the manager's look-up found it stored with `size` bytes.
fn stored_whole(
    found: Result<Option<background_assets::web::manager::FinishedDownload>, Error>,
    size: u64,
    what: &str,
) -> Result<(), JsValue> {
    match found.map_err(err)? {
        Some(file) if file.size == size => Ok(()),
        other => Err(err(format!(
            "{what} is not stored whole: {:?}",
            other.map(|f| f.size)
        ))),
    }
}

/// `count` generated files of `size` bytes (seeds `seed..seed+count`) as one asset pack through
/// [`DownloadManager::ensure_local_availability`]: the manager schedules the pack's files, runs
/// at most `concurrency` at a time, verifies each against its declared size and SHA-256 and
/// resolves once every one is stored. Digests are fetched before the clock starts. Returns
/// `{"ms", "count"}`.
///
/// [`DownloadManager::ensure_local_availability`]: background_assets::web::manager::DownloadManager
#[wasm_bindgen(js_name = managerMany)]
pub async fn manager_many(
    cdn: String,
    count: u32,
    size: f64,
    seed: f64,
    concurrency: u32,
) -> Result<String, JsValue> {
    let (size, seed) = (size as u64, seed as u64);
    let tag = probe();
    let cdn_ref = cdn.as_str();
    let files: Vec<serde_json::Value> = stream::iter(0..count as u64)
        .map(|i| async move {
            let sha256 = cdn_sha256(cdn_ref, size, seed + i).await?;
            Ok::<_, JsValue>(json!({
                "path": format!("small/{i}.bin"),
                "url": format!("{cdn_ref}/gen/{size}/{}?probe={tag}", seed + i),
                "size": size,
                "sha256": background_assets::core::error::hex(&sha256),
            }))
        })
        .buffer_unordered(8)
        .try_collect()
        .await?;
    let packs = json!([{
        "id": "small", "version": "1", "downloadPolicy": "onDemand", "files": files,
    }]);
    let (manager, database) = open_manager("many", packs, concurrency).await?;
    let started = now_ms();
    let outcome = manager.ensure_local_availability("small").await;
    let ms = now_ms() - started;
    let stats = manager.decision_stats().await.map_err(err)?;
    let data = manager.container().await.map_err(err)?.batch_stats();
    let last = manager
        .file(&format!("small/{}.bin", count.saturating_sub(1)))
        .await;
    close_manager(manager, &database).await;
    outcome.map_err(err)?;
    stored_whole(last, size, "the pack's last file")?;
    let stats = json!({
        "batches": stats.batches, "decisions": stats.decisions,
        "lock_wait_ms": stats.lock_wait_ms, "lock_held_ms": stats.lock_held_ms,
        "read_ms": stats.read_ms, "compute_ms": stats.compute_ms, "save_ms": stats.save_ms,
        "starts": stats.starts, "start_ms": stats.start_ms, "report_ms": stats.report_ms,
        "claim_lock_ms": stats.claim_lock_ms, "claim_read_ms": stats.claim_read_ms,
        "claim_spawn_ms": stats.claim_spawn_ms, "kept_batches": stats.kept_batches,
        "prefetches": stats.prefetches, "prefetches_taken": stats.prefetches_taken,
        "data_transactions": data.transactions, "data_operations": data.operations,
        "data_busy_ms": data.busy_us / 1000,
    });
    Ok(json!({ "ms": ms, "count": count, "stats": stats }).to_string())
}

/// One `len`-byte generated file (seed `seed`) as a one-file on-demand asset pack through
/// [`DownloadManager::ensure_local_availability`]: the manager schedules it, claims it, runs the
/// engine under its owner lock with its progress reports, verifies it against its declared size
/// and SHA-256, stores its result and resolves. The digest is fetched before the clock starts.
/// Returns `{"ms", "bytes", "mib_s"}`.
///
/// [`DownloadManager::ensure_local_availability`]: background_assets::web::manager::DownloadManager
#[wasm_bindgen(js_name = managerThroughput)]
pub async fn manager_throughput(cdn: String, len: f64, seed: f64) -> Result<String, JsValue> {
    let (len, seed) = (len as u64, seed as u64);
    let sha256 = cdn_sha256(&cdn, len, seed).await?;
    let packs = json!([{
        "id": "big", "version": "1", "downloadPolicy": "onDemand",
        "files": [{
            "path": "big.bin",
            "url": format!("{cdn}/gen/{len}/{seed}?probe={}", probe()),
            "size": len,
            "sha256": background_assets::core::error::hex(&sha256),
        }],
    }]);
    let (manager, database) = open_manager("tp", packs, 1).await?;
    let started = now_ms();
    let outcome = manager.ensure_local_availability("big").await;
    let ms = now_ms() - started;
    let stored = manager.file("big.bin").await;
    close_manager(manager, &database).await;
    outcome.map_err(err)?;
    stored_whole(stored, len, "the pack's file")?;
    Ok(json!({
        "ms": ms,
        "bytes": len,
        "mib_s": len as f64 / MIB / (ms / 1000.0),
    })
    .to_string())
}

/// One `len`-byte download through `web::transfer::run` while sampling wasm memory
/// (`memory.buffer.byteLength`) and the JS heap (`performance.memory.usedJSHeapSize`, where it
/// exists) on every progress report. Returns `{"ms", "wasm_before", "wasm_peak", "heap_before",
/// "heap_peak"}` in bytes (`null` heap where the engine has no `performance.memory`).
#[wasm_bindgen(js_name = engineMemory)]
pub async fn engine_memory(
    cdn: String,
    len: f64,
    seed: f64,
    chunk: f64,
) -> Result<String, JsValue> {
    let (len, seed, chunk) = (len as u64, seed as u64, chunk as u64);
    let path = format!("/gen/{len}/{seed}?probe={}", probe());
    let spec = spec_for(&cdn, format!("mem-{}", probe()), &path, len, seed, chunk).await?;
    let container = fresh_container("mem").await?;
    let wasm_before = wasm_memory_bytes();
    let heap_before = js_heap_bytes();
    let wasm_peak = Rc::new(Cell::new(wasm_before));
    let heap_peak = Rc::new(Cell::new(heap_before.unwrap_or(0.0)));
    let mut opts = options();
    let (w, h) = (wasm_peak.clone(), heap_peak.clone());
    opts.on_progress = Some(Box::new(move |_: &Progress| {
        w.set(w.get().max(wasm_memory_bytes()));
        h.set(h.get().max(js_heap_bytes().unwrap_or(0.0)));
    }));
    let started = now_ms();
    let outcome = run(&container, spec, opts).await;
    let ms = now_ms() - started;
    wasm_peak.set(wasm_peak.get().max(wasm_memory_bytes()));
    remove_container(container).await?;
    let asset = outcome.map_err(err)?;
    stored_size(asset.size, len)?;
    Ok(json!({
        "ms": ms,
        "wasm_before": wasm_before,
        "wasm_peak": wasm_peak.get(),
        "heap_before": heap_before,
        "heap_peak": heap_before.map(|_| heap_peak.get()),
    })
    .to_string())
}

/// The container and the spec of a real-kill measure `tag`: the same in both halves.
async fn kill_parts(
    cdn: &str,
    len: u64,
    seed: u64,
    chunk: u64,
    tag: &str,
) -> Result<(Container, TransferSpec, String), JsValue> {
    let path = format!("/gen/{len}/{seed}?probe={tag}");
    let spec = spec_for(cdn, format!("kill-{tag}"), &path, len, seed, chunk).await?;
    let container = Container::open(&format!("ba-bench-kill-{tag}"))
        .await
        .map_err(err)?;
    Ok((container, spec, path))
}

/// A worker kill's first half (Chromium, where `cargo xtask bench` stops the worker through
/// DevTools between the halves): starts downloading the `len`-byte file `seed` through
/// `web::transfer::run` into the container of `tag` and answers once half of it and half a
/// chunk arrived, leaving the run going for the kill to stop. Returns `{"answered_at"}`: the
/// bytes received when it answered (the kill comes a little later).
#[wasm_bindgen(js_name = killStart)]
pub async fn kill_start(
    cdn: String,
    len: f64,
    seed: f64,
    chunk: f64,
    tag: String,
) -> Result<String, JsValue> {
    let (len, seed, chunk) = (len as u64, seed as u64, chunk as u64);
    let (container, spec, _) = kill_parts(&cdn, len, seed, chunk, &tag).await?;
    let received = Rc::new(Cell::new(0u64));
    let ended = Rc::new(Cell::new(false));
    let mut opts = options();
    let sink = received.clone();
    opts.on_progress = Some(Box::new(move |p: &Progress| sink.set(p.bytes_received)));
    let flag = ended.clone();
    wasm_bindgen_futures::spawn_local(async move {
        let _ = run(&container, spec, opts).await;
        flag.set(true);
    });
    let (seen, over) = (received.clone(), ended.clone());
    // Mid-chunk (the average case), not on a chunk boundary; a run that ends first is told at
    // once below, not after the wait's limit.
    wait_until("half of the file arrived", 120_000.0, move || {
        over.get() || seen.get() >= len / 2 + chunk / 2
    })
    .await?;
    if ended.get() {
        return Err(err("the run ended before half of the file arrived"));
    }
    Ok(json!({ "answered_at": received.get() }).to_string())
}

/// A worker kill's second half, in the worker started again: the same download of `tag` run
/// to its end (resumed from what the killed worker stored), verified, its container deleted.
/// Returns `{"fetched_twice", "resumed_at", "sent", "gets"}` from the CDN's log of the URL, as
/// [`engine_resume`] does; not what the page received twice, since the killed worker's last
/// read is not known.
#[wasm_bindgen(js_name = killFinish)]
pub async fn kill_finish(
    cdn: String,
    len: f64,
    seed: f64,
    chunk: f64,
    tag: String,
) -> Result<String, JsValue> {
    let (len, seed, chunk) = (len as u64, seed as u64, chunk as u64);
    let (container, spec, path) = kill_parts(&cdn, len, seed, chunk, &tag).await?;
    let outcome = run(&container, spec, options()).await;
    remove_container(container).await?;
    let asset = outcome.map_err(err)?;
    stored_size(asset.size, len)?;
    let (sent, gets, resumed_at) = bytes_sent_for(&cdn, &path).await?;
    if gets < 2 {
        return Err(err("the first run ended before the worker was stopped"));
    }
    Ok(json!({
        "fetched_twice": sent.saturating_sub(len),
        "resumed_at": resumed_at,
        "sent": sent,
        "gets": gets,
    })
    .to_string())
}

/// Diagnostic: hashes `len` bytes (in 256 KiB pieces, as the engine's reads arrive) with the
/// engine's incremental SHA-256 in wasm. Returns `{"ms", "mib_s"}`.
#[wasm_bindgen(js_name = sha256Speed)]
pub fn sha256_speed(len: f64) -> String {
    let len = len as usize;
    let piece: Vec<u8> = (0..256 * 1024).map(|i| (i * 31 % 251) as u8).collect();
    let mut hasher = background_assets::core::integrity::Sha256Stream::new();
    let started = now_ms();
    let mut done = 0;
    while done < len {
        let n = piece.len().min(len - done);
        hasher.update(&piece[..n]);
        done += n;
    }
    let digest = hasher.finalize();
    let ms = now_ms() - started;
    json!({ "ms": ms, "mib_s": len as f64 / MIB / (ms / 1000.0), "first_byte": digest[0] })
        .to_string()
}

/// Schedules `count` downloads through [`DownloadManager::schedule`], all at once (the calls are
/// made together and awaited together, as `Promise.all` over `schedule` in JS: the manager
/// group-commits them), then — a diagnostic — up to [`SCALE_ONE_BY_ONE`] more one at a time, each
/// awaited before the next (stopping once `budget_ms` have passed), then lists them all with
/// [`DownloadManager::fetch_current_downloads`]. Every result arrives after the decision that
/// holds it was saved to IndexedDB. The downloads point at stalled CDN URLs and run one at a time,
/// so the queue stays full. Returns `{"scheduled", "schedule_ms", "ms_per_item",
/// "one_by_one", "one_by_one_ms_per_item", "list_ms", "listed"}`.
#[wasm_bindgen(js_name = managerScale)]
pub async fn manager_scale(cdn: String, count: u32, budget_ms: f64) -> Result<String, JsValue> {
    use background_assets::core::download::{DownloadRequest, Identifier, Priority, UrlDownload};

    let (manager, database) = open_manager("scale", json!([]), 1).await?;
    let tag = probe();
    let download = |i: u32| {
        let url = format!("{cdn}/gen/1048576/{i}?fault=stall:0&stall-ms=120000&probe={tag}");
        DownloadRequest::get(&url).and_then(|request| {
            UrlDownload::new(
                Identifier::new(format!("scale-{i}"))?,
                request,
                false,
                Some(1 << 20),
                Priority::DEFAULT,
                0,
            )
        })
    };
    let outcome = async {
        let downloads = (0..count).map(download).collect::<Result<Vec<_>, _>>()?;
        let started = now_ms();
        let scheduled =
            futures::future::join_all(downloads.into_iter().map(|d| manager.schedule(d)))
                .await
                .into_iter()
                .collect::<Result<Vec<()>, _>>()?
                .len() as u32;
        let schedule_ms = now_ms() - started;
        let started = now_ms();
        let mut one_by_one = 0u32;
        while one_by_one < SCALE_ONE_BY_ONE && now_ms() - started < budget_ms {
            manager.schedule(download(count + one_by_one)?).await?;
            one_by_one += 1;
        }
        let one_by_one_ms = now_ms() - started;
        let listing = now_ms();
        let listed = manager.fetch_current_downloads().await?.len();
        let list_ms = now_ms() - listing;
        Ok::<_, Error>(json!({
            "scheduled": scheduled,
            "schedule_ms": schedule_ms,
            "ms_per_item": schedule_ms / f64::from(scheduled.max(1)),
            "one_by_one": one_by_one,
            "one_by_one_ms_per_item": one_by_one_ms / f64::from(one_by_one.max(1)),
            "list_ms": list_ms,
            "listed": listed,
        }))
    }
    .await;
    close_manager(manager, &database).await;
    Ok(outcome.map_err(err)?.to_string())
}

/// A [`DownloadManager`] on a fresh database (named after `what`) that may download from the
/// loopback CDN (1 TiB allowance), with the asset `packs` declared and at most `concurrency`
/// downloads at a time; and the database's name.
async fn open_manager(
    what: &str,
    packs: serde_json::Value,
    concurrency: u32,
) -> Result<(background_assets::web::manager::DownloadManager, String), JsValue> {
    use background_assets::core::declaration::parse_declaration;
    use background_assets::core::queue::QueueLimits;
    use background_assets::web::manager::{DownloadManager, ManagerConfig};

    let page = url::Url::parse(&js::origin())
        .and_then(|u| u.join("/"))
        .map_err(err)?;
    let declaration = json!({
        "initialDownloadRestrictions": {
            "domainAllowList": ["127.0.0.1"],
            "downloadAllowance": 1u64 << 40,
        },
        "assetPacks": packs,
    });
    let declaration = parse_declaration(&declaration.to_string(), &page).map_err(err)?;
    let mut config = ManagerConfig::new(declaration, page);
    config.database = format!("ba-bench-{what}-{}", probe());
    config.limits = QueueLimits {
        max_concurrent: concurrency.max(1) as usize,
        bandwidth: None,
    };
    let database = config.database.clone();
    let manager = DownloadManager::open(config).await.map_err(err)?;
    Ok((manager, database))
}

/// Closes `manager` and deletes its database.
async fn close_manager(manager: background_assets::web::manager::DownloadManager, database: &str) {
    manager.close().await;
    drop(manager);
    // A still-open connection would block the deletion: give it a bounded time.
    let delete = std::pin::pin!(Container::delete_database(database));
    let _ = select(delete, gloo_timers::future::TimeoutFuture::new(5_000)).await;
}

/// How many downloads [`manager_scale`] schedules one at a time after the batch (a diagnostic:
/// each such call is a decision of its own, saved before the next one starts).
const SCALE_ONE_BY_ONE: u32 = 50;

/// Polls `ready` every 5 ms for at most `limit_ms`.
async fn wait_until(
    what: &str,
    limit_ms: f64,
    mut ready: impl FnMut() -> bool,
) -> Result<(), JsValue> {
    let started = now_ms();
    while !ready() {
        if now_ms() - started > limit_ms {
            return Err(err(format!("timed out waiting until {what}")));
        }
        gloo_timers::future::TimeoutFuture::new(5).await;
    }
    Ok(())
}

/// Interrupts a `len`-byte download at ~50% and finishes it: `mode` `"kill"` drops the running
/// `run` future (a killed context; half a chunk past the middle, so mid-chunk) and runs the
/// download again from its checkpoint; `"kill-window"` does the same with bounded `Range`
/// windows of one chunk (`TransferConfig::range_window_chunks = 1`); `"pause"` pauses it
/// through a [`TransferControl`] at the middle and resumes. The stored file is verified.
///
/// Returns `{"fetched_twice", "received_twice", "resumed_at", "sent", "gets",
/// "interrupted_at"}`: `fetched_twice` is what the CDN sent for the URL (from its
/// `/_control/log`) beyond the file's length; `received_twice` what the page itself received
/// twice (from the resume's `Range` start to where it was stopped; 0 when no `Range` request
/// was needed, as after a pause within the hold).
#[wasm_bindgen(js_name = engineResume)]
pub async fn engine_resume(
    cdn: String,
    len: f64,
    seed: f64,
    chunk: f64,
    mode: String,
) -> Result<String, JsValue> {
    let (len, seed, chunk) = (len as u64, seed as u64, chunk as u64);
    let path = format!("/gen/{len}/{seed}?probe={}", probe());
    let id = format!("resume-{}", probe());
    let mut spec = spec_for(&cdn, id, &path, len, seed, chunk).await?;
    if mode == "kill-window" {
        // Bounded Range windows of one chunk (opt-in: TransferConfig::range_window_chunks).
        spec.config.range_window_chunks = 1;
    }
    let container = fresh_container("resume").await?;
    let received = Rc::new(Cell::new(0u64));
    let interrupted_at = Rc::new(Cell::new(0u64));
    let outcome: Result<u64, JsValue> = async {
        let asset = match mode.as_str() {
            "kill" | "kill-window" => {
                let mut opts = options();
                let sink = received.clone();
                opts.on_progress = Some(Box::new(move |p: &Progress| sink.set(p.bytes_received)));
                // Boxed, so that dropping it below really drops the run (a pinned local would live on,
                // holding the lock).
                let first = Box::pin(run(&container, spec.clone(), opts));
                let seen = received.clone();
                let half = std::pin::pin!(wait_until(
                    "half of the file arrived",
                    120_000.0,
                    // Mid-chunk (the average case), not on a chunk boundary.
                    move || { seen.get() >= len / 2 + chunk / 2 }
                ));
                match select(first, half).await {
                    Either::Left((done, _)) => {
                        return Err(err(format!("the run ended before it was killed: {done:?}")))
                    }
                    Either::Right((waited, first)) => {
                        waited?;
                        interrupted_at.set(received.get());
                        drop(first);
                    }
                }
                run(&container, spec, options()).await.map_err(err)?
            }
            "pause" => {
                let control = TransferControl::new();
                let mut opts = options();
                opts.control = Some(control.clone());
                let pauser = control.clone();
                let paused_once = Rc::new(Cell::new(false));
                let at = interrupted_at.clone();
                opts.on_progress = Some(Box::new(move |p: &Progress| {
                    if !paused_once.get() && p.bytes_received >= len / 2 {
                        paused_once.set(true);
                        at.set(p.bytes_received);
                        pauser.pause();
                    }
                }));
                let running = std::pin::pin!(run(&container, spec, opts));
                let watcher = control.clone();
                let resumer = async move {
                    wait_until("the run is paused", 120_000.0, || {
                        watcher.state() == Some(TransferState::Paused)
                    })
                    .await?;
                    watcher.resume();
                    Ok::<(), JsValue>(())
                };
                let resumed = RefCell::new(None);
                let resumer = async {
                    *resumed.borrow_mut() = Some(resumer.await);
                    futures::future::pending::<()>().await
                };
                let asset = {
                    let resumer = std::pin::pin!(resumer);
                    match select(running, resumer).await {
                        Either::Left((done, _)) => done.map_err(err)?,
                        Either::Right(_) => unreachable!("the resumer never ends"),
                    }
                };
                match resumed.into_inner() {
                    Some(r) => r?,
                    None => return Err(err("the run finished without pausing")),
                }
                asset
            }
            other => return Err(err(format!("unknown resume mode {other:?}"))),
        };
        stored_size(asset.size, len)?;
        Ok(asset.size)
    }
    .await;
    remove_container(container).await?;
    outcome?;
    let (sent, gets, resumed_at) = bytes_sent_for(&cdn, &path).await?;
    Ok(json!({
        "fetched_twice": sent.saturating_sub(len),
        // What the page itself received twice: from the resume offset to where it was stopped.
        // No resume request (a held pause read on): nothing was received twice.
        "received_twice": resumed_at.map_or(0, |r| interrupted_at.get().saturating_sub(r)),
        "resumed_at": resumed_at,
        "sent": sent,
        "gets": gets,
        "interrupted_at": interrupted_at.get(),
    })
    .to_string())
}

/// Diagnostic for the small-files measure: `count` files of `size` bytes one after another,
/// each phase of a run timed apart — the Web Lock (acquire + release), the container's epoch
/// transaction (which also looks up a finished asset), the fetch (head + body), the chunk
/// write that also finishes — and then whole `web::transfer::run`s of the same files. Returns
/// the mean ms per file of each.
#[wasm_bindgen(js_name = smallProfile)]
pub async fn small_profile(
    cdn: String,
    count: u32,
    size: f64,
    seed: f64,
) -> Result<String, JsValue> {
    use background_assets::web::locks::{acquire, LockOptions};
    let (size, seed) = (size as u64, seed as u64);
    let container = fresh_container("profile").await?;
    let tag = probe();
    let n = f64::from(count.max(1));
    let mut lock_ms = 0.0;
    let mut epoch_ms = 0.0;
    let mut fetch_ms = 0.0;
    let mut write_ms = 0.0;
    for i in 0..count {
        let id = format!("p-{i}");
        let t = now_ms();
        let guard = acquire(&format!("ba-bench-profile/{id}"), LockOptions::exclusive())
            .await
            .map_err(err)?
            .ok_or_else(|| err("lock not granted"))?;
        guard.release().await;
        lock_ms += now_ms() - t;
        let t = now_ms();
        let record = container.begin_epoch_record(&id).await.map_err(err)?;
        epoch_ms += now_ms() - t;
        let t = now_ms();
        let url = format!("{cdn}/gen/{size}/{}?probe={tag}", seed + u64::from(i));
        let body = fetch_bytes(&url).await.map_err(err)?;
        fetch_ms += now_ms() - t;
        let t = now_ms();
        let at = background_assets::web::container::ChunkAt {
            identifier: &id,
            epoch: record.epoch,
            generation: record.generation,
            offset: 0,
        };
        let asset = background_assets::web::container::FinishedAsset {
            size: body.len() as u64,
            sha256: "00".repeat(32),
            content_type: None,
        };
        container
            .append_chunk(
                at,
                &js_sys::Uint8Array::from(&body[..]),
                &JsValue::NULL,
                Some(asset),
            )
            .await
            .map_err(err)?;
        write_ms += now_ms() - t;
    }
    let specs: Vec<TransferSpec> = {
        let mut specs = Vec::new();
        for i in 0..count {
            let path = format!("/gen/{size}/{}?probe={}", seed + u64::from(i), tag + 1);
            specs.push(
                spec_for(
                    &cdn,
                    format!("r-{i}"),
                    &path,
                    size,
                    seed + u64::from(i),
                    4 << 20,
                )
                .await?,
            );
        }
        specs
    };
    let t = now_ms();
    for spec in specs {
        run(&container, spec, options()).await.map_err(err)?;
    }
    let run_ms = now_ms() - t;
    remove_container(container).await?;
    Ok(json!({
        "lock_ms": lock_ms / n,
        "begin_epoch_ms": epoch_ms / n,
        "fetch_ms": fetch_ms / n,
        "write_finish_ms": write_ms / n,
        "run_ms": run_ms / n,
    })
    .to_string())
}
