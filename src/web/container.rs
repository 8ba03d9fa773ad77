//! The IndexedDB "container": where downloads keep their chunks and checkpoints, and where
//! finished assets live for every page and the service worker to read.
//!
//! ```text
//!  database `background-assets` (schema v1)
//!  ├─ downloads  identifier -> { identifier, epoch, generation, stored, checkpoint, updatedAt }
//!  ├─ chunks     [identifier, generation, offset] -> Uint8Array (a few MiB each)
//!  ├─ assets     identifier -> { identifier, size, sha256, contentType, finishedAt,
//!  │                             generation, chunkCount }
//!  └─ meta       key -> value (schema bookkeeping)
//! ```
//!
//! * **Fencing.** [`Container::begin_epoch`] bumps a download's epoch in one transaction and
//!   returns it; every later write ([`Container::write_chunk`], [`Container::save_checkpoint`],
//!   [`Container::discard_chunks`], [`Container::finish`]) reads the current epoch *in the same
//!   transaction* and is refused with [`Error::StaleEpoch`] if another context took over.
//! * **Generations.** A download writes its chunks under its own generation, so updating an asset
//!   never overwrites the bytes of the version being served; [`Container::finish`] switches the
//!   asset to the new generation and drops the old chunks atomically.
//! * **No foreign await in a transaction.** Every transaction here only awaits IndexedDB requests
//!   and then its own completion (IndexedDB auto-commits when control returns to the event loop).
//! * **Durability.** Chunk writes ask for `durability: "relaxed"` (ignored by engines without it):
//!   a lost chunk after a power cut is re-fetched from the checkpoint, which commits with it.
//! * **Errors.** A `QuotaExceededError` (Chromium reports it as a transaction abort) becomes
//!   [`Error::QuotaExceeded`]; the aborted transaction changes nothing. Anything else is
//!   [`Error::Storage`] naming the operation.
//!
//! # Example
//! ```no_run
//! # async fn run() -> Result<(), background_assets::core::error::Error> {
//! use background_assets::web::container::{Container, FinishedAsset};
//! use wasm_bindgen::JsValue;
//! let container = Container::open(Container::DEFAULT_NAME).await?;
//! let epoch = container.begin_epoch("level-2").await?;
//! container.write_chunk("level-2", epoch, 0, b"hello", &JsValue::from_str("state")).await?;
//! container.finish("level-2", epoch, FinishedAsset { size: 5, sha256: "2cf2...".into(), content_type: None }).await?;
//! assert_eq!(container.read_range("level-2", 1, 3).await?, b"el");
//! # Ok(()) }
//! ```

use std::cell::RefCell;
use std::rc::Rc;

use idb::{DatabaseEvent, Factory, KeyRange, ObjectStoreParams, Query};
use js_sys::{Array, Promise, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{IdbDatabase, IdbTransaction};

use super::js;
use crate::core::error::Error;

mod batch;
pub use batch::{BatchStats, MAX_BATCH};

/// The schema version this code writes; [`migrate`] brings older databases up to it.
pub const SCHEMA_VERSION: u32 = 1;

const DOWNLOADS: &str = "downloads";
const CHUNKS: &str = "chunks";
const ASSETS: &str = "assets";
const META: &str = "meta";

#[wasm_bindgen]
extern "C" {
    /// `IDBDatabase.transaction(stores, mode, options)` (web-sys has no binding for the options).
    #[wasm_bindgen(extends = js_sys::Object)]
    type IdbDatabaseWithOptions;
    #[wasm_bindgen(method, catch, js_name = transaction)]
    fn transaction_with_options(
        this: &IdbDatabaseWithOptions,
        stores: &Array,
        mode: &str,
        options: &JsValue,
    ) -> Result<IdbTransaction, JsValue>;
}

/// A download's stored state: its fencing epoch, chunk generation and the core's checkpoint.
#[derive(Debug, Clone)]
pub struct DownloadRecord {
    /// The download's identifier.
    pub identifier: String,
    /// The current fencing token; only a writer holding it may write.
    pub epoch: u64,
    /// The generation its chunks are stored under.
    pub generation: u64,
    /// Bytes stored contiguously from offset 0 (the next chunk must start here).
    pub stored: u64,
    /// The core's checkpoint as it was last written (opaque here; `null` before the first).
    pub checkpoint: JsValue,
}

/// What [`Container::finish`] records about a verified download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinishedAsset {
    /// Total size in bytes (equals the sum of the stored chunks).
    pub size: u64,
    /// SHA-256 of the content, lowercase hex.
    pub sha256: String,
    /// `Content-Type` to serve it with.
    pub content_type: Option<String>,
}

/// A finished asset in the container.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredAsset {
    /// The download identifier it was stored under.
    pub identifier: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256, lowercase hex.
    pub sha256: String,
    /// `Content-Type`, if known.
    pub content_type: Option<String>,
    /// When it finished (`Date.now()` milliseconds).
    pub finished_at: f64,
    /// The chunk generation holding its bytes.
    pub generation: u64,
    /// How many chunks hold its bytes.
    pub chunk_count: u32,
}

/// `navigator.storage.estimate()`: bytes used by the origin and its quota.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StorageEstimate {
    /// Bytes the origin uses (all storage kinds).
    pub usage: f64,
    /// Bytes the origin may use.
    pub quota: f64,
}

/// The chunks covering a byte range of one asset, still as JavaScript `Uint8Array`s.
#[derive(Debug, Clone)]
pub struct ChunkWindow {
    /// The chunks in order, contiguous.
    pub chunks: Vec<Uint8Array>,
    /// The asset offset of the first chunk's first byte.
    pub first_offset: u64,
    /// The asset it belongs to.
    pub asset: StoredAsset,
}

/// An open connection to the container database.
///
/// # Example
/// ```no_run
/// # async fn run() -> Result<(), background_assets::core::error::Error> {
/// use background_assets::web::container::Container;
/// let container = Container::open("background-assets").await?;
/// for asset in container.list().await? {
///     let _ = (asset.identifier, asset.size);
/// }
/// # Ok(()) }
/// ```
pub struct Container {
    name: String,
    db: IdbDatabase,
    /// Group commit of begins and whole small-file writes (see [`BatchStats`]).
    batcher: Rc<RefCell<batch::Batcher>>,
    _on_version_change: Closure<dyn FnMut(JsValue)>,
}

impl std::fmt::Debug for Container {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Container")
            .field("name", &self.name)
            .finish()
    }
}

fn storage(operation: &str, error: impl std::fmt::Display) -> Error {
    Error::Storage {
        message: format!("{operation}: {error}"),
    }
}

fn storage_js(operation: &str, error: &JsValue) -> Error {
    storage(operation, js::describe(error))
}

/// Creates the object stores of each schema version after `old_version`, in order.
///
/// Runs inside the `versionchange` transaction of [`Container::open`]; each step only adds what
/// its version introduced, so a database at any older version ends at [`SCHEMA_VERSION`].
pub fn migrate(db: &idb::Database, old_version: u32) -> Result<(), Error> {
    for version in old_version + 1..=SCHEMA_VERSION {
        match version {
            1 => {
                for store in [DOWNLOADS, CHUNKS, ASSETS, META] {
                    if !db.store_names().iter().any(|s| s == store) {
                        db.create_object_store(store, ObjectStoreParams::new())
                            .map_err(|e| storage(&format!("migrate to v1: create `{store}`"), e))?;
                    }
                }
            }
            other => {
                return Err(storage("migrate", format!("no migration to v{other}")));
            }
        }
    }
    Ok(())
}

/// One raw transaction and the promise of its end.
struct Tx {
    raw: IdbTransaction,
    /// The end: `complete` resolves it, `abort` rejects it with the abort event. Awaited from
    /// its creation (a `JsFuture` handles the promise at once), so a transaction that aborts
    /// while nobody awaits its end (a refused write, a killed run) leaves no unhandled rejection.
    done: JsFuture,
    operation: String,
    identifier: String,
}

impl Tx {
    fn store(&self, name: &str) -> Result<idb::ObjectStore, Error> {
        self.raw
            .object_store(name)
            .map(idb::ObjectStore::from)
            .map_err(|e| storage_js(&self.operation, &e))
    }

    /// Aborts (nothing is written) and returns `error`.
    fn abort_with<T>(self, error: Error) -> Result<T, Error> {
        let _ = self.raw.abort();
        Err(error)
    }

    /// Asks the browser to commit now (`IDBTransaction.commit()`, where the engine has it): once
    /// every request is issued, the commit need not wait for their answers to come back to this
    /// thread first. No request may be issued after it. Then waits as [`Tx::commit`].
    ///
    /// Not for a transaction whose requests may fail as a check (an `add` of a key that must be
    /// new): Firefox then commits the other requests' writes anyway.
    async fn commit_now(self) -> Result<(), Error> {
        let commit = js::get(&self.raw, "commit");
        if let Some(commit) = commit.dyn_ref::<js_sys::Function>() {
            // Throws only when the transaction is already finishing (aborted): its end says why.
            let _ = commit.call0(&self.raw);
        }
        self.commit().await
    }

    /// Waits for the transaction to commit; maps an abort to the typed error.
    async fn commit(self) -> Result<(), Error> {
        match self.done.await {
            Ok(_) => Ok(()),
            Err(event) => {
                let error = self.raw.error();
                let name = error.as_ref().map(|e| e.name()).unwrap_or_default();
                if name == "QuotaExceededError" {
                    Err(Error::QuotaExceeded {
                        identifier: self.identifier,
                    })
                } else {
                    let what = match error {
                        Some(e) => format!("{}: {}", e.name(), e.message()),
                        None => format!("aborted ({})", js::describe(&event)),
                    };
                    Err(storage(
                        &format!("{} `{}`", self.operation, self.identifier),
                        what,
                    ))
                }
            }
        }
    }
}

/// What [`Container::begin_unless_finished`] found.
#[derive(Debug)]
pub enum Began {
    /// The download's record after the epoch bump: write with its epoch and generation.
    Download(DownloadRecord),
    /// The finished asset, kept: nothing to download.
    Finished(StoredAsset),
}

/// Where [`Container::append_chunk`] puts a chunk: the download, the epoch the writer holds, the
/// chunk generation of its record and the byte offset (the end of the stored bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkAt<'a> {
    /// The download's identifier.
    pub identifier: &'a str,
    /// The fencing token the writer holds.
    pub epoch: u64,
    /// The record's chunk generation ([`DownloadRecord::generation`]).
    pub generation: u64,
    /// Byte offset of the chunk in the file.
    pub offset: u64,
}

/// In `tx` (over DOWNLOADS, CHUNKS and ASSETS): turns the download `record` into the finished
/// asset — the asset record points at its chunks, an older version's chunks are deleted, the
/// download record is removed. The caller has checked the epoch and the size; on an error it
/// aborts `tx`.
async fn finish_in(
    tx: &Tx,
    identifier: &str,
    record: &DownloadRecord,
    asset: FinishedAsset,
) -> Result<StoredAsset, Error> {
    let fail = |e: idb::Error| storage(&format!("finish `{identifier}`"), e);
    let key = JsValue::from_str(identifier);
    let chunks = tx.store(CHUNKS)?;
    let assets = tx.store(ASSETS)?;
    // Both requests issued at once, then awaited.
    let keys = std::future::IntoFuture::into_future(
        chunks
            .get_all_keys(Some(generation_range(identifier, record.generation)?), None)
            .map_err(fail)?,
    );
    let old =
        std::future::IntoFuture::into_future(assets.get(Query::from(key.clone())).map_err(fail)?);
    let keys = keys.await.map_err(fail)?;
    let old = old.await.map_err(fail)?.map(|old| stored_asset(&old));
    record_finished(tx, record, old, asset, keys.len() as u32)
}

impl FinishedAsset {
    /// The asset record of `identifier` finished now as this, its `chunk_count` chunks stored
    /// in `generation`.
    fn stored(self, identifier: &str, generation: u64, chunk_count: u32) -> StoredAsset {
        StoredAsset {
            identifier: identifier.to_string(),
            size: self.size,
            sha256: self.sha256,
            content_type: self.content_type,
            finished_at: js_sys::Date::now(),
            generation,
            chunk_count,
        }
    }
}

/// In `tx` (over DOWNLOADS, CHUNKS and ASSETS), once `record`'s generation holds all of its
/// `chunk_count` chunks: an older asset's (`old`) chunks are deleted, the asset record is
/// written and the download record removed. Gives the stored asset.
fn record_finished(
    tx: &Tx,
    record: &DownloadRecord,
    old: Option<StoredAsset>,
    asset: FinishedAsset,
    chunk_count: u32,
) -> Result<StoredAsset, Error> {
    let identifier = record.identifier.as_str();
    let fail = |e: idb::Error| storage(&format!("finish `{identifier}`"), e);
    let key = JsValue::from_str(identifier);
    if let Some(old) = old.filter(|old| old.generation != record.generation) {
        tx.store(CHUNKS)?
            .delete(generation_range(identifier, old.generation)?)
            .map_err(fail)?;
    }
    let stored = asset.stored(identifier, record.generation, chunk_count);
    tx.store(ASSETS)?
        .put(&asset_value(&stored), Some(&key))
        .map_err(fail)?;
    tx.store(DOWNLOADS)?
        .delete(Query::from(key))
        .map_err(fail)?;
    Ok(stored)
}

/// A whole file up to this size, written and finished by one [`Container::append_chunk`], is
/// stored as values of at most [`inline_piece`] bytes.
///
/// Chromium stores an IndexedDB value whose serialization exceeds 64 KiB as a blob file of its
/// own, and writing that file costs more than the value. Measured in headless Chromium 156 (one
/// readwrite transaction with the record, relaxed durability): 64 KiB as one value 4.6–5.1 ms,
/// as two 2.0–3.0 ms; 128 KiB 7.1–8.9 ms vs 4.8–5.3 ms as three; 192 KiB 7.7 vs 5.4 as four.
///
/// Only whole small files: inline values are freed when LevelDB compacts, not when deleted, so a
/// larger download's chunks stay blob files, whose space a failure after `QuotaExceeded` frees
/// at once (a small file's failed write stored nothing to free).
pub const INLINE_MAX: u32 = 192 * 1024;

/// The largest inline piece of a small file ([`INLINE_MAX`]) in Chromium: under 64 KiB with room
/// for the serialization's header (see [`inline_piece`]).
pub const INLINE_PIECE: u32 = 60 * 1024;

/// The largest piece of a whole small file in this engine: [`INLINE_PIECE`] in Chromium, the
/// whole file ([`INLINE_MAX`]) in Firefox, which keeps IndexedDB values under 1 MiB in its
/// database (`dom.indexedDB.dataThreshold`) rather than in files. Each piece is a request of its
/// own, and under load each request costs Firefox a round trip between its threads: 1,000 ×
/// 64 KiB through the engine, 6 at a time, took a median 5.0 s as one value against 5.9 s as
/// two (`BA_BENCH_ONLY=small cargo xtask bench --engine firefox --runs 2`, both alternately in
/// one session, three times each per run).
pub fn inline_piece() -> u32 {
    if js::is_firefox() {
        INLINE_MAX
    } else {
        INLINE_PIECE
    }
}

/// Whether a chunk of `len` bytes is stored as a `Uint8Array` value ([`chunk_value`]), not as a
/// `Blob`.
fn stored_inline(len: u32) -> bool {
    len <= INLINE_PIECE
}

/// What a chunk of `bytes` is stored as: the `Uint8Array` itself up to [`INLINE_PIECE`] bytes, a
/// `Blob` of them above.
///
/// Chromium stores a value whose serialization exceeds 64 KiB as a blob file either way, but from
/// a `Uint8Array` it first serializes and wraps the bytes on the calling thread: a 4 MiB chunk
/// took ~11 ms of the worker's thread that way and ~5 ms as a `Blob` (`cargo xtask bench`,
/// Chromium 156), and the transfer reads and hashes on that thread. Readers take both forms
/// ([`chunk_bytes`]), so chunks stored before are read as they were.
fn chunk_value(bytes: &Uint8Array, op: &str) -> Result<JsValue, Error> {
    if stored_inline(bytes.length()) {
        return Ok(bytes.clone().into());
    }
    web_sys::Blob::new_with_u8_array_sequence(&Array::of1(bytes))
        .map(Into::into)
        .map_err(|e| storage_js(op, &e))
}

/// A chunk's bytes made into the value the container stores ([`chunk_value`]): a copy, so the
/// array they came from may be reused at once. See [`Container::append_chunk_value`].
pub struct ChunkValue {
    value: JsValue,
    len: u32,
}

impl ChunkValue {
    /// Copies `bytes` into the value a chunk is stored as (a small chunk, stored as the array
    /// itself, into an array of its own).
    pub fn of(bytes: &Uint8Array) -> Result<ChunkValue, Error> {
        let len = bytes.length();
        let value = if stored_inline(len) {
            bytes.slice(0, len).into()
        } else {
            chunk_value(bytes, "write_chunk")?
        };
        Ok(ChunkValue { value, len })
    }

    /// The chunk's length in bytes.
    pub fn len(&self) -> u32 {
        self.len
    }

    /// Whether the chunk has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The length of a stored chunk value (`Uint8Array` or `Blob`); `None` for anything else.
fn chunk_len(value: &JsValue) -> Option<u64> {
    if let Some(bytes) = value.dyn_ref::<Uint8Array>() {
        return Some(u64::from(bytes.length()));
    }
    value
        .dyn_ref::<web_sys::Blob>()
        .map(|blob| blob.size() as u64)
}

/// The error for a stored chunk value that is neither a `Uint8Array` nor a `Blob`.
fn not_a_chunk(op: &str, value: &JsValue) -> Error {
    storage(op, format!("a chunk is not bytes: {}", js::describe(value)))
}

/// A stored chunk's bytes: a `Uint8Array` as it is, a `Blob` read into memory.
async fn chunk_bytes(value: JsValue, op: &str) -> Result<Uint8Array, Error> {
    if let Some(blob) = value.dyn_ref::<web_sys::Blob>() {
        let buffer = JsFuture::from(blob.array_buffer())
            .await
            .map_err(|e| storage_js(op, &e))?;
        return Ok(Uint8Array::new(&buffer));
    }
    value
        .dyn_into::<Uint8Array>()
        .map_err(|v| not_a_chunk(op, &v))
}

/// In `chunks`, puts a whole small file `bytes` (at most [`INLINE_MAX`]) as `identifier`'s
/// `generation`: pieces of at most [`inline_piece`] bytes at their own offsets (readers find
/// chunks by offset), one value when it fits in one. Gives the number of pieces.
fn put_pieces(
    chunks: &idb::ObjectStore,
    identifier: &str,
    generation: u64,
    bytes: &Uint8Array,
) -> Result<u32, idb::Error> {
    let len = bytes.length();
    let piece = inline_piece();
    if len <= piece {
        chunks.put(bytes, Some(&chunk_key(identifier, generation, 0)))?;
        return Ok(1);
    }
    let (mut start, mut pieces) = (0, 0);
    while start < len {
        let end = (start + piece).min(len);
        let key = chunk_key(identifier, generation, u64::from(start));
        chunks.put(&bytes.slice(start, end), Some(&key))?;
        (start, pieces) = (end, pieces + 1);
    }
    Ok(pieces)
}

fn chunk_key(identifier: &str, generation: u64, offset: u64) -> JsValue {
    Array::of3(
        &JsValue::from_str(identifier),
        &JsValue::from_f64(generation as f64),
        &JsValue::from_f64(offset as f64),
    )
    .into()
}

/// Every chunk of one generation of one identifier.
fn generation_range(identifier: &str, generation: u64) -> Result<Query, Error> {
    KeyRange::bound(
        &chunk_key(identifier, generation, 0),
        &Array::of3(
            &JsValue::from_str(identifier),
            &JsValue::from_f64(generation as f64),
            &JsValue::from_f64(f64::INFINITY),
        ),
        None,
        None,
    )
    .map(Query::from)
    .map_err(|e| storage("key range", e))
}

/// Every chunk of every generation of one identifier: `[id] < [id, g, o] < [id, []]`.
fn identifier_range(identifier: &str) -> Result<Query, Error> {
    KeyRange::bound(
        &Array::of1(&JsValue::from_str(identifier)),
        &Array::of2(&JsValue::from_str(identifier), &Array::new()),
        None,
        None,
    )
    .map(Query::from)
    .map_err(|e| storage("key range", e))
}

fn number(record: &JsValue, key: &str) -> u64 {
    js::get(record, key).as_f64().unwrap_or(0.0) as u64
}

fn download_record(record: &JsValue) -> DownloadRecord {
    DownloadRecord {
        identifier: js::get(record, "identifier")
            .as_string()
            .unwrap_or_default(),
        epoch: number(record, "epoch"),
        generation: number(record, "generation"),
        stored: number(record, "stored"),
        checkpoint: js::get(record, "checkpoint"),
    }
}

fn download_value(record: &DownloadRecord) -> JsValue {
    let value = js::object();
    js::set(&value, "identifier", &JsValue::from_str(&record.identifier));
    js::set(&value, "epoch", &JsValue::from_f64(record.epoch as f64));
    js::set(
        &value,
        "generation",
        &JsValue::from_f64(record.generation as f64),
    );
    js::set(&value, "stored", &JsValue::from_f64(record.stored as f64));
    js::set(&value, "checkpoint", &record.checkpoint);
    js::set(&value, "updatedAt", &JsValue::from_f64(js_sys::Date::now()));
    value.into()
}

fn stored_asset(record: &JsValue) -> StoredAsset {
    StoredAsset {
        identifier: js::get(record, "identifier")
            .as_string()
            .unwrap_or_default(),
        size: number(record, "size"),
        sha256: js::get(record, "sha256").as_string().unwrap_or_default(),
        content_type: js::get(record, "contentType").as_string(),
        finished_at: js::get(record, "finishedAt").as_f64().unwrap_or(0.0),
        generation: number(record, "generation"),
        chunk_count: number(record, "chunkCount") as u32,
    }
}

fn asset_value(asset: &StoredAsset) -> JsValue {
    let value = js::object();
    js::set(&value, "identifier", &JsValue::from_str(&asset.identifier));
    js::set(&value, "size", &JsValue::from_f64(asset.size as f64));
    js::set(&value, "sha256", &JsValue::from_str(&asset.sha256));
    if let Some(content_type) = &asset.content_type {
        js::set(&value, "contentType", &JsValue::from_str(content_type));
    }
    js::set(&value, "finishedAt", &JsValue::from_f64(asset.finished_at));
    js::set(
        &value,
        "generation",
        &JsValue::from_f64(asset.generation as f64),
    );
    js::set(
        &value,
        "chunkCount",
        &JsValue::from_f64(asset.chunk_count as f64),
    );
    value.into()
}

fn transaction(
    db: &IdbDatabase,
    stores: &[&str],
    readwrite: bool,
    relaxed: bool,
    operation: &str,
    identifier: &str,
) -> Result<Tx, Error> {
    let names: Array = stores.iter().map(|s| JsValue::from_str(s)).collect();
    let options = js::object();
    if relaxed {
        js::set(&options, "durability", &JsValue::from_str("relaxed"));
    }
    let mode = if readwrite { "readwrite" } else { "readonly" };
    let raw = db
        .unchecked_ref::<IdbDatabaseWithOptions>()
        .transaction_with_options(&names, mode, &options)
        .map_err(|e| storage_js(&format!("{operation} `{identifier}`"), &e))?;
    let done = Promise::new(&mut |resolve, reject| {
        raw.set_oncomplete(Some(&resolve));
        raw.set_onabort(Some(&reject));
    });
    Ok(Tx {
        raw,
        done: JsFuture::from(done),
        operation: operation.to_string(),
        identifier: identifier.to_string(),
    })
}

/// In `tx` (over ASSETS and CHUNKS): the finished asset `identifier` and the offsets of the
/// chunks that hold its bytes `start..end` (`end` exclusive; none when `start == end`). Reads only
/// keys, no chunk bytes.
async fn covering_chunks(
    tx: &Tx,
    identifier: &str,
    start: u64,
    end: u64,
    op: &str,
) -> Result<(StoredAsset, Vec<u64>), Error> {
    let fail = |e: idb::Error| storage(&format!("{op} `{identifier}`"), e);
    let asset = tx
        .store(ASSETS)?
        .get(Query::from(JsValue::from_str(identifier)))
        .map_err(fail)?
        .await
        .map_err(fail)?
        .map(|v| stored_asset(&v))
        .ok_or_else(|| Error::DownloadDoesNotExist {
            identifier: identifier.to_string(),
        })?;
    if start > end || end > asset.size {
        return Err(storage(
            &format!("{op} `{identifier}`"),
            format!(
                "range {start}..{end} is outside the asset's 0..{}",
                asset.size
            ),
        ));
    }
    if start == end {
        return Ok((asset, Vec::new()));
    }
    let keys = tx
        .store(CHUNKS)?
        .get_all_keys(Some(generation_range(identifier, asset.generation)?), None)
        .map_err(fail)?
        .await
        .map_err(fail)?;
    let offsets = chunk_offsets(&keys);
    // Chunk i covers offsets[i]..offsets[i+1] (the last one up to size).
    let (first, last) = covering(&offsets, start, end)
        .ok_or_else(|| storage(op, format!("`{identifier}` has no chunk at {start}")))?;
    Ok((asset, offsets[first..=last].to_vec()))
}

/// The indices `first..=last` of the chunks (given by their sorted start `offsets`) that cover
/// bytes `start..end` (`start < end`), or `None` if no chunk starts at or before `start`.
fn covering(offsets: &[u64], start: u64, end: u64) -> Option<(usize, usize)> {
    let first = offsets.iter().rposition(|&o| o <= start)?;
    let last = offsets
        .iter()
        .rposition(|&o| o < end)
        .unwrap_or(first)
        .max(first);
    Some((first, last))
}

fn chunk_offsets(keys: &[JsValue]) -> Vec<u64> {
    keys.iter()
        .map(|k| Array::from(k).get(2).as_f64().unwrap_or(0.0) as u64)
        .collect()
}

/// Where bytes `start..end` of a finished asset are stored: the chunks to read, in order.
/// Made by [`Container::plan`]; read chunk by chunk with a [`ChunkReader`], so a large range
/// never has to be in memory at once.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkPlan {
    /// The asset.
    pub asset: StoredAsset,
    /// Start offsets of the covering chunks, ascending (empty when `start == end`).
    pub offsets: Vec<u64>,
    /// First byte wanted.
    pub start: u64,
    /// One past the last byte wanted.
    pub end: u64,
}

/// Reads single chunks, each in its own short read-only transaction; cheap to clone and
/// `'static`, for streams that outlive a borrow of the [`Container`].
#[derive(Debug, Clone)]
pub struct ChunkReader {
    db: IdbDatabase,
}

impl ChunkReader {
    /// The chunk of `identifier` (generation `generation`) starting at `offset`.
    /// [`Error::Storage`] if it is gone (for example deleted by an update that finished since).
    pub async fn read(
        &self,
        identifier: &str,
        generation: u64,
        offset: u64,
    ) -> Result<Uint8Array, Error> {
        let op = "read chunk";
        let tx = transaction(&self.db, &[CHUNKS], false, false, op, identifier)?;
        let fail = |e: idb::Error| storage(&format!("{op} `{identifier}`"), e);
        let value = tx
            .store(CHUNKS)?
            .get(Query::from(chunk_key(identifier, generation, offset)))
            .map_err(fail)?
            .await
            .map_err(fail)?
            .ok_or_else(|| {
                storage(
                    &format!("{op} `{identifier}`"),
                    format!("no chunk at {offset} (generation {generation})"),
                )
            })?;
        chunk_bytes(value, op).await
    }
}

/// What a fenced write does once the epoch check passed.
enum Fenced<'a> {
    Chunk {
        offset: u64,
        bytes: &'a [u8],
        checkpoint: &'a JsValue,
    },
    Checkpoint {
        checkpoint: &'a JsValue,
    },
    Discard {
        checkpoint: &'a JsValue,
    },
    Finish {
        asset: FinishedAsset,
    },
}

impl Container {
    /// The database name used by the library (tests pass their own names).
    pub const DEFAULT_NAME: &'static str = "background-assets";

    /// Opens (creating or migrating) the container database `name`.
    ///
    /// # Example
    /// ```no_run
    /// # async fn run() -> Result<(), background_assets::core::error::Error> {
    /// let c = background_assets::web::container::Container::open("background-assets").await?;
    /// assert_eq!(c.name(), "background-assets");
    /// # Ok(()) }
    /// ```
    pub async fn open(name: &str) -> Result<Container, Error> {
        let operation = format!("open database `{name}`");
        let factory = Factory::new().map_err(|e| storage(&operation, e))?;
        let mut request = factory
            .open(name, Some(SCHEMA_VERSION))
            .map_err(|e| storage(&operation, e))?;
        let migration_error: Rc<RefCell<Option<Error>>> = Rc::default();
        let seen = migration_error.clone();
        request.on_upgrade_needed(move |event| {
            let old = event.old_version().unwrap_or(0);
            let outcome = event
                .database()
                .map_err(|e| storage("upgrade", e))
                .and_then(|db| migrate(&db, old));
            if let Err(error) = outcome {
                *seen.borrow_mut() = Some(error);
                // Abort the upgrade: the database stays at its old version, untouched.
                let target = js::get(&JsValue::from(event.clone()), "target");
                {
                    let tx = js::get(&target, "transaction");
                    if let Some(tx) = tx.dyn_ref::<IdbTransaction>() {
                        let _ = tx.abort();
                    }
                }
            }
        });
        let opened = request.await;
        if let Some(error) = migration_error.borrow_mut().take() {
            return Err(error);
        }
        let db: IdbDatabase = opened.map_err(|e| storage(&operation, e))?.into();
        // Another context upgrading or deleting the database: let it, by closing this connection.
        let closing = db.clone();
        let on_version_change = Closure::<dyn FnMut(JsValue)>::new(move |_event: JsValue| {
            closing.close();
        });
        db.set_onversionchange(Some(on_version_change.as_ref().unchecked_ref()));
        Ok(Container {
            name: name.to_string(),
            db,
            batcher: Rc::default(),
            _on_version_change: on_version_change,
        })
    }

    /// Deletes the whole database `name` (close every connection to it first).
    pub async fn delete_database(name: &str) -> Result<(), Error> {
        let operation = format!("delete database `{name}`");
        let factory = Factory::new().map_err(|e| storage(&operation, e))?;
        factory
            .delete(name)
            .map_err(|e| storage(&operation, e))?
            .await
            .map_err(|e| storage(&operation, e))
    }

    /// The database name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Closes the connection (after running transactions finish).
    pub fn close(&self) {
        self.db.close();
    }

    fn transaction(
        &self,
        stores: &[&str],
        readwrite: bool,
        relaxed: bool,
        operation: &str,
        identifier: &str,
    ) -> Result<Tx, Error> {
        transaction(&self.db, stores, readwrite, relaxed, operation, identifier)
    }

    /// Starts (or takes over) the download `identifier`: bumps its epoch in one transaction and
    /// returns the new epoch, the fencing token every later write must present.
    ///
    /// A download seen for the first time gets a fresh chunk generation (one above the finished
    /// asset's, if there is one) and a `null` checkpoint.
    pub async fn begin_epoch(&self, identifier: &str) -> Result<u64, Error> {
        Ok(self.begin_epoch_record(identifier).await?.epoch)
    }

    /// [`Container::begin_epoch`], returning the whole stored record as it is after the bump
    /// (epoch, generation, stored bytes, checkpoint): one transaction where a run needs both.
    pub async fn begin_epoch_record(&self, identifier: &str) -> Result<DownloadRecord, Error> {
        match self.begin_unless_finished(identifier, |_| false).await? {
            Began::Download(record) => Ok(record),
            Began::Finished(_) => unreachable!("no finished asset is kept"),
        }
    }

    /// [`Container::begin_epoch_record`], unless `identifier` has no download record and its
    /// finished asset is one that `keep` accepts: then that asset, and nothing is written. One
    /// transaction where a run would first look up whether the file is already there.
    ///
    /// Begins (and whole small-file writes) that arrive while an earlier batch of them runs share
    /// the next transaction (group commit, [`Container::batch_stats`]); each is checked and
    /// answered on its own.
    pub async fn begin_unless_finished(
        &self,
        identifier: &str,
        keep: impl FnOnce(&StoredAsset) -> bool + 'static,
    ) -> Result<Began, Error> {
        let (reply, answer) = futures::channel::oneshot::channel();
        let op = batch::Op::Begin {
            identifier: identifier.to_string(),
            keep: Box::new(keep),
            reply,
        };
        batch::submit(&self.db, &self.batcher, op);
        batch::answered(answer, "begin_epoch", identifier.to_string()).await
    }

    /// Begins `identifier` and stores `bytes` as its whole file, finished, in ONE group-committed
    /// transaction: what [`Container::begin_unless_finished`] followed by
    /// [`Container::append_chunk`] at offset 0 with `finish` do, for a run that had the whole
    /// small file (at most [`INLINE_MAX`] bytes, verified) before it read the stored state.
    ///
    /// With no download record, a finished asset `keep` accepts is kept and returned, and
    /// nothing is written (as [`Began::Finished`]). Otherwise the epoch moves on (fencing any
    /// other writer out, as a begin does), chunks an interrupted run left are deleted, and the
    /// file is stored and finished; a previous version is replaced as by
    /// [`Container::finish`]. `bytes` are copied at once. Errors: [`Error::DownloadInvalid`]
    /// when `bytes` are larger than [`INLINE_MAX`] or not `finish.size` long (nothing queued);
    /// a storage error of the transaction (nothing written).
    pub fn begin_and_store_whole(
        &self,
        identifier: &str,
        keep: impl FnOnce(&StoredAsset) -> bool + 'static,
        bytes: &Uint8Array,
        finish: FinishedAsset,
    ) -> impl std::future::Future<Output = Result<StoredAsset, Error>> + 'static {
        let len = bytes.length();
        if len > INLINE_MAX || u64::from(len) != finish.size {
            let reason = format!(
                "a whole file of {len} bytes for `{identifier}` declared {} bytes long                  (at most {INLINE_MAX} are stored in one go)",
                finish.size
            );
            return futures::future::Either::Left(std::future::ready(Err(
                Error::DownloadInvalid { reason },
            )));
        }
        let (reply, answer) = futures::channel::oneshot::channel();
        let op = batch::Op::Fresh {
            identifier: identifier.to_string(),
            keep: Box::new(keep),
            bytes: bytes.slice(0, len),
            finish,
            reply,
        };
        batch::submit(&self.db, &self.batcher, op);
        futures::future::Either::Right(batch::answered(
            answer,
            "begin+write+finish",
            identifier.to_string(),
        ))
    }

    /// How many group-commit transactions this connection ran for begins and whole small-file
    /// writes, and how many of those operations they carried (see [`MAX_BATCH`]).
    pub fn batch_stats(&self) -> BatchStats {
        self.batcher.borrow().stats()
    }

    /// Appends one chunk and its checkpoint in ONE transaction, fenced like
    /// [`Container::write_chunk`], and — with `finish` — also turns the download into the finished
    /// asset in that same transaction (what [`Container::finish`] does).
    ///
    /// Everything is issued before this returns (the chunk is copied into the store's own clone
    /// right away), so `bytes` may be reused at once, and writes issued in order commit in order;
    /// the returned future only waits for the commit. The chunk `put` is issued before the epoch
    /// check and undone by aborting the transaction when the check fails: [`Error::StaleEpoch`],
    /// [`Error::DownloadDoesNotExist`], or [`Error::Storage`] for an offset that is not the end of
    /// the stored bytes or a `generation` that is not the record's — nothing changes then.
    ///
    /// A whole small file — written at offset 0 and finished by this one call, at most
    /// [`INLINE_MAX`] bytes — is stored as inline pieces (readers see the same bytes), and goes
    /// with the group commit of [`Container::begin_unless_finished`]: `bytes` are copied at once,
    /// its checks run before its writes in the batch's transaction, and nothing is written when
    /// they fail or when the future is dropped before its batch starts.
    pub fn append_chunk(
        &self,
        at: ChunkAt<'_>,
        bytes: &Uint8Array,
        checkpoint: &JsValue,
        finish: Option<FinishedAsset>,
    ) -> impl std::future::Future<Output = Result<Option<StoredAsset>, Error>> + 'static {
        let ChunkAt {
            identifier,
            epoch,
            generation,
            offset,
        } = at;
        let op = if finish.is_some() {
            "write_chunk+finish"
        } else {
            "write_chunk"
        };
        let identifier = identifier.to_string();
        let len = bytes.length() as u64;
        if let Some(finish) = finish
            .as_ref()
            .filter(|f| offset == 0 && f.size == len && len <= u64::from(INLINE_MAX))
        {
            // A whole small file: its only write goes with the next group commit. A copy, as
            // the caller may reuse `bytes` at once.
            let (reply, answer) = futures::channel::oneshot::channel();
            let op = batch::Op::Whole {
                identifier: identifier.clone(),
                epoch,
                generation,
                bytes: bytes.slice(0, bytes.length()),
                finish: finish.clone(),
                reply,
            };
            batch::submit(&self.db, &self.batcher, op);
            return futures::future::Either::Left(batch::answered(
                answer,
                "write_chunk+finish",
                identifier,
            ));
        }
        let value = chunk_value(bytes, op);
        futures::future::Either::Right(self.append_issued(
            identifier,
            (epoch, generation, offset),
            value,
            len,
            checkpoint,
            finish,
        ))
    }

    /// Appends a chunk already made into its stored value ([`ChunkValue::of`]), as
    /// [`Container::append_chunk`] does without `finish`: for a chunk copied before it may be
    /// written (while its declared digest is checked), so it is not copied again.
    pub fn append_chunk_value(
        &self,
        at: ChunkAt<'_>,
        chunk: ChunkValue,
        checkpoint: &JsValue,
    ) -> impl std::future::Future<Output = Result<Option<StoredAsset>, Error>> + 'static {
        self.append_issued(
            at.identifier.to_string(),
            (at.epoch, at.generation, at.offset),
            Ok(chunk.value),
            u64::from(chunk.len),
            checkpoint,
            None,
        )
    }

    /// [`Container::append_chunk`] once the chunk is its stored value: issues the transaction's
    /// requests now and returns the future of its commit.
    fn append_issued(
        &self,
        identifier: String,
        at_epoch: (u64, u64, u64),
        value: Result<JsValue, Error>,
        len: u64,
        checkpoint: &JsValue,
        finish: Option<FinishedAsset>,
    ) -> impl std::future::Future<Output = Result<Option<StoredAsset>, Error>> + 'static {
        let (_, generation, offset) = at_epoch;
        let (op, stores): (&str, &[&str]) = if finish.is_some() {
            ("write_chunk+finish", &[DOWNLOADS, CHUNKS, ASSETS])
        } else {
            ("write_chunk", &[DOWNLOADS, CHUNKS])
        };
        let issued = self
            .transaction(stores, true, true, op, &identifier)
            .and_then(|tx| {
                let key = JsValue::from_str(&identifier);
                let value = value?;
                // The success handler is attached now: the result may come before a first poll.
                let record = std::future::IntoFuture::into_future(
                    tx.store(DOWNLOADS)?
                        .get(Query::from(key))
                        .map_err(|e| storage(op, e))?,
                );
                tx.store(CHUNKS)?
                    .put(&value, Some(&chunk_key(&identifier, generation, offset)))
                    .map_err(|e| storage(&format!("{op} `{identifier}`"), e))?;
                Ok((tx, record))
            });
        let checkpoint = checkpoint.clone();
        // The checks and the record's put run as their own task: they must run when the
        // chunk's `get` answers, while the transaction is active, whatever the caller is busy with.
        let raw = issued.as_ref().ok().map(|(tx, _)| tx.raw.clone());
        let (sender, receiver) = futures::channel::oneshot::channel();
        js::spawn(async move {
            let outcome = match issued {
                Ok((tx, record)) => {
                    append_checked(
                        tx, record, op, identifier, at_epoch, len, checkpoint, finish,
                    )
                    .await
                }
                Err(e) => Err(e),
            };
            let _ = sender.send(outcome);
        });
        async move {
            // Dropped before the end (a killed run): abort, so the chunk is not left behind.
            let mut guard = AbortOnDrop(raw);
            let outcome = receiver.await.unwrap_or_else(|_| {
                Err(storage(
                    "write_chunk",
                    "the write's task ended without an answer",
                ))
            });
            guard.0 = None;
            outcome
        }
    }
}

/// Aborts a transaction when dropped armed.
struct AbortOnDrop(Option<IdbTransaction>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.abort();
        }
    }
}

/// The checked part of [`Container::append_chunk`], once its requests are issued.
#[allow(clippy::too_many_arguments)]
async fn append_checked(
    tx: Tx,
    record: idb::request::futures::GetStoreRequestFuture,
    op: &str,
    identifier: String,
    at: (u64, u64, u64),
    len: u64,
    checkpoint: JsValue,
    finish: Option<FinishedAsset>,
) -> Result<Option<StoredAsset>, Error> {
    let (epoch, generation, offset) = at;
    {
        let fail = |e: idb::Error| storage(&format!("{op} `{identifier}`"), e);
        let value = record.await.map_err(fail)?;
        let Some(value) = value else {
            return tx.abort_with(Error::DownloadDoesNotExist { identifier });
        };
        let mut record = download_record(&value);
        if record.epoch != epoch {
            return tx.abort_with(Error::StaleEpoch {
                identifier,
                held: epoch,
                current: record.epoch,
            });
        }
        if offset != record.stored || generation != record.generation {
            let why = format!(
                "a chunk at {offset} of generation {generation}, but {} bytes of generation {} \
                     are stored (chunks are appended)",
                record.stored, record.generation
            );
            return tx.abort_with(storage(&format!("{op} `{identifier}`"), why));
        }
        record.stored = offset + len;
        record.checkpoint = checkpoint;
        let key = JsValue::from_str(&identifier);
        let downloads = tx.store(DOWNLOADS)?;
        let stored = match finish {
            None => {
                downloads
                    .put(&download_value(&record), Some(&key))
                    .map_err(fail)?;
                None
            }
            Some(asset) => {
                if record.stored != asset.size {
                    return tx.abort_with(Error::SizeMismatch {
                        identifier,
                        expected: asset.size,
                        actual: record.stored,
                    });
                }
                match finish_in(&tx, &identifier, &record, asset).await {
                    Ok(stored) => Some(stored),
                    Err(e) => return tx.abort_with(e),
                }
            }
        };
        tx.commit_now().await?;
        Ok(stored)
    }
}

impl Container {
    /// The stored state of download `identifier` (`None` if it has none).
    pub async fn load_checkpoint(&self, identifier: &str) -> Result<Option<DownloadRecord>, Error> {
        let op = "load_checkpoint";
        let tx = self.transaction(&[DOWNLOADS], false, false, op, identifier)?;
        let value = tx
            .store(DOWNLOADS)?
            .get(Query::from(JsValue::from_str(identifier)))
            .map_err(|e| storage(op, e))?
            .await
            .map_err(|e| storage(op, e))?;
        Ok(value.map(|v| download_record(&v)))
    }

    /// Stores `value` under `key` in the `meta` store (library state such as the download
    /// manager's), in its own transaction.
    ///
    /// The write is issued before this returns, so writes issued in order commit in order even if
    /// their futures are awaited later (or never: the write still happens); the future waits for
    /// the commit.
    ///
    /// # Example
    /// ```no_run
    /// # async fn run(c: &background_assets::web::container::Container) -> Result<(), background_assets::core::error::Error> {
    /// c.put_meta("example", &wasm_bindgen::JsValue::from_str("{}")).await?;
    /// assert!(c.get_meta("example").await?.is_some());
    /// # Ok(()) }
    /// ```
    pub fn put_meta(
        &self,
        key: &str,
        value: &JsValue,
    ) -> impl std::future::Future<Output = Result<(), Error>> + 'static {
        let op = "put_meta";
        let issued = self
            .transaction(&[META], true, false, op, key)
            .and_then(|tx| {
                tx.store(META)?
                    .put(value, Some(&JsValue::from_str(key)))
                    .map_err(|e| storage(op, e))?;
                Ok(tx)
            });
        async move { issued?.commit().await }
    }

    /// Puts every `(key, value)` of `puts` and deletes every key of `deletes` in the `meta`
    /// store, in ONE transaction (all or nothing) with relaxed durability. Issued before this
    /// returns, like [`Container::put_meta`]; the future waits for the commit.
    ///
    /// # Example
    /// ```no_run
    /// # async fn run(c: &background_assets::web::container::Container) -> Result<(), background_assets::core::error::Error> {
    /// use wasm_bindgen::JsValue;
    /// c.write_meta(&[("a/1".into(), JsValue::from_str("x"))], &["a/0".into()]).await?;
    /// # Ok(()) }
    /// ```
    pub fn write_meta(
        &self,
        puts: &[(String, JsValue)],
        deletes: &[String],
    ) -> impl std::future::Future<Output = Result<(), Error>> + 'static {
        let op = "write_meta";
        let what = puts.first().map_or("", |(key, _)| key.as_str());
        // Relaxed like the data it describes: a power loss can only lose the newest commits,
        // in order, and every context recovers from older ones (checkpoints, epochs).
        let issued = self
            .transaction(&[META], true, true, op, what)
            .and_then(|tx| {
                let store = tx.store(META)?;
                for key in deletes {
                    store
                        .delete(Query::from(JsValue::from_str(key)))
                        .map_err(|e| storage(op, e))?;
                }
                for (key, value) in puts {
                    store
                        .put(value, Some(&JsValue::from_str(key)))
                        .map_err(|e| storage(op, e))?;
                }
                Ok(tx)
            });
        async move { issued?.commit_now().await }
    }

    /// The value under `key` and every `(key, value)` whose key starts with `prefix`, in the
    /// `meta` store, read in ONE transaction (a consistent snapshot).
    ///
    /// # Example
    /// ```no_run
    /// # async fn run(c: &background_assets::web::container::Container) -> Result<(), background_assets::core::error::Error> {
    /// let (head, parts) = c.read_meta_with_prefix("manager", "manager/").await?;
    /// # let _ = (head, parts); Ok(()) }
    /// ```
    pub async fn read_meta_with_prefix(
        &self,
        key: &str,
        prefix: &str,
    ) -> Result<(Option<JsValue>, Vec<(String, JsValue)>), Error> {
        let op = "read_meta";
        let tx = self.transaction(&[META], false, false, op, key)?;
        let store = tx.store(META)?;
        let range = || {
            KeyRange::bound(
                &JsValue::from_str(prefix),
                &JsValue::from_str(&format!("{prefix}{}", char::MAX)),
                None,
                None,
            )
            .map(Query::from)
            .map_err(|e| storage("key range", e))
        };
        let value = std::future::IntoFuture::into_future(
            store
                .get(Query::from(JsValue::from_str(key)))
                .map_err(|e| storage(op, e))?,
        );
        let keys = std::future::IntoFuture::into_future(
            store
                .get_all_keys(Some(range()?), None)
                .map_err(|e| storage(op, e))?,
        );
        let values = std::future::IntoFuture::into_future(
            store
                .get_all(Some(range()?), None)
                .map_err(|e| storage(op, e))?,
        );
        let value = value.await.map_err(|e| storage(op, e))?;
        let keys = keys.await.map_err(|e| storage(op, e))?;
        let values = values.await.map_err(|e| storage(op, e))?;
        if keys.len() != values.len() {
            return Err(storage(op, "keys and values of the range differ in number"));
        }
        let pairs = keys
            .iter()
            .map(|k| k.as_string().unwrap_or_default())
            .zip(values)
            .collect();
        Ok((value, pairs))
    }

    /// The value stored under `key` in the `meta` store, if any.
    pub async fn get_meta(&self, key: &str) -> Result<Option<JsValue>, Error> {
        let op = "get_meta";
        let tx = self.transaction(&[META], false, false, op, key)?;
        let value = tx
            .store(META)?
            .get(Query::from(JsValue::from_str(key)))
            .map_err(|e| storage(op, e))?
            .await
            .map_err(|e| storage(op, e))?;
        Ok(value)
    }

    /// Every unfinished download's stored state.
    pub async fn downloads(&self) -> Result<Vec<DownloadRecord>, Error> {
        let op = "downloads";
        let tx = self.transaction(&[DOWNLOADS], false, false, op, "*")?;
        let values = tx
            .store(DOWNLOADS)?
            .get_all(None, None)
            .map_err(|e| storage(op, e))?
            .await
            .map_err(|e| storage(op, e))?;
        Ok(values.iter().map(download_record).collect())
    }

    /// Stores one chunk at `offset` and the checkpoint that includes it, in ONE transaction, if
    /// `epoch` is still the download's epoch; else [`Error::StaleEpoch`] and nothing changes.
    /// Chunks are appended: `offset` must equal [`DownloadRecord::stored`] ([`Error::Storage`]
    /// otherwise); a full quota is [`Error::QuotaExceeded`], with nothing changed.
    pub async fn write_chunk(
        &self,
        identifier: &str,
        epoch: u64,
        offset: u64,
        bytes: &[u8],
        checkpoint: &JsValue,
    ) -> Result<(), Error> {
        self.fenced(
            identifier,
            epoch,
            Fenced::Chunk {
                offset,
                bytes,
                checkpoint,
            },
        )
        .await
        .map(|_| ())
    }

    /// Replaces the checkpoint alone (for example after the response head), fenced by `epoch`.
    pub async fn save_checkpoint(
        &self,
        identifier: &str,
        epoch: u64,
        checkpoint: &JsValue,
    ) -> Result<(), Error> {
        self.fenced(identifier, epoch, Fenced::Checkpoint { checkpoint })
            .await
            .map(|_| ())
    }

    /// Restart from zero: deletes the download's chunks and stores `checkpoint` (the reset
    /// state) in one transaction, fenced by `epoch`.
    pub async fn discard_chunks(
        &self,
        identifier: &str,
        epoch: u64,
        checkpoint: &JsValue,
    ) -> Result<(), Error> {
        self.fenced(identifier, epoch, Fenced::Discard { checkpoint })
            .await
            .map(|_| ())
    }

    /// Turns the download into a finished asset in one transaction, fenced by `epoch`: the asset
    /// record points at the download's chunks, an older version's chunks are deleted and the
    /// download record is removed. [`Error::SizeMismatch`] (nothing changed) when the stored
    /// bytes do not add up to `asset.size`.
    pub async fn finish(
        &self,
        identifier: &str,
        epoch: u64,
        asset: FinishedAsset,
    ) -> Result<StoredAsset, Error> {
        self.fenced(identifier, epoch, Fenced::Finish { asset })
            .await?
            .ok_or_else(|| storage("finish", format!("`{identifier}` vanished after finish")))
    }

    async fn fenced(
        &self,
        identifier: &str,
        epoch: u64,
        action: Fenced<'_>,
    ) -> Result<Option<StoredAsset>, Error> {
        let (op, stores, relaxed): (&str, &[&str], bool) = match action {
            Fenced::Chunk { .. } => ("write_chunk", &[DOWNLOADS, CHUNKS], true),
            Fenced::Checkpoint { .. } => ("save_checkpoint", &[DOWNLOADS], false),
            Fenced::Discard { .. } => ("discard_chunks", &[DOWNLOADS, CHUNKS], false),
            Fenced::Finish { .. } => ("finish", &[DOWNLOADS, CHUNKS, ASSETS], false),
        };
        // Copy the chunk into JS before the transaction starts (no work between requests).
        let chunk = match &action {
            Fenced::Chunk { bytes, .. } => Some(chunk_value(&Uint8Array::from(*bytes), op)?),
            _ => None,
        };
        let tx = self.transaction(stores, true, relaxed, op, identifier)?;
        let key = JsValue::from_str(identifier);
        let downloads = tx.store(DOWNLOADS)?;
        let value = downloads
            .get(Query::from(key.clone()))
            .map_err(|e| storage(op, e))?
            .await
            .map_err(|e| storage(op, e))?;
        let Some(value) = value else {
            return tx.abort_with(Error::DownloadDoesNotExist {
                identifier: identifier.to_string(),
            });
        };
        let mut record = download_record(&value);
        if record.epoch != epoch {
            return tx.abort_with(Error::StaleEpoch {
                identifier: identifier.to_string(),
                held: epoch,
                current: record.epoch,
            });
        }
        let fail = |e: idb::Error| storage(&format!("{op} `{identifier}`"), e);
        match action {
            Fenced::Chunk {
                offset,
                bytes,
                checkpoint,
            } => {
                if offset != record.stored {
                    return tx.abort_with(storage(
                        &format!("{op} `{identifier}`"),
                        format!(
                            "a chunk at {offset}, but {} bytes are stored (chunks are appended)",
                            record.stored
                        ),
                    ));
                }
                record.stored = offset + bytes.len() as u64;
                let chunk = chunk.expect("made above");
                tx.store(CHUNKS)?
                    .put(
                        &chunk,
                        Some(&chunk_key(identifier, record.generation, offset)),
                    )
                    .map_err(fail)?;
                record.checkpoint = checkpoint.clone();
                downloads
                    .put(&download_value(&record), Some(&key))
                    .map_err(fail)?;
            }
            Fenced::Checkpoint { checkpoint } => {
                record.checkpoint = checkpoint.clone();
                downloads
                    .put(&download_value(&record), Some(&key))
                    .map_err(fail)?;
            }
            Fenced::Discard { checkpoint } => {
                tx.store(CHUNKS)?
                    .delete(generation_range(identifier, record.generation)?)
                    .map_err(fail)?;
                record.stored = 0;
                record.checkpoint = checkpoint.clone();
                downloads
                    .put(&download_value(&record), Some(&key))
                    .map_err(fail)?;
            }
            Fenced::Finish { asset } => {
                if record.stored != asset.size {
                    return tx.abort_with(Error::SizeMismatch {
                        identifier: identifier.to_string(),
                        expected: asset.size,
                        actual: record.stored,
                    });
                }
                let stored = match finish_in(&tx, identifier, &record, asset).await {
                    Ok(stored) => stored,
                    Err(e) => return tx.abort_with(e),
                };
                tx.commit().await?;
                return Ok(Some(stored));
            }
        }
        tx.commit().await?;
        Ok(None)
    }

    /// The finished asset `identifier`, if there is one.
    pub async fn asset(&self, identifier: &str) -> Result<Option<StoredAsset>, Error> {
        let op = "asset";
        let tx = self.transaction(&[ASSETS], false, false, op, identifier)?;
        let value = tx
            .store(ASSETS)?
            .get(Query::from(JsValue::from_str(identifier)))
            .map_err(|e| storage(op, e))?
            .await
            .map_err(|e| storage(op, e))?;
        Ok(value.map(|v| stored_asset(&v)))
    }

    /// Every finished asset.
    pub async fn list(&self) -> Result<Vec<StoredAsset>, Error> {
        let op = "list";
        let tx = self.transaction(&[ASSETS], false, false, op, "*")?;
        let values = tx
            .store(ASSETS)?
            .get_all(None, None)
            .map_err(|e| storage(op, e))?
            .await
            .map_err(|e| storage(op, e))?;
        Ok(values.iter().map(stored_asset).collect())
    }

    /// Deletes everything stored under `identifier` (asset, download state, every chunk) in one
    /// transaction. Returns whether anything was there.
    pub async fn delete(&self, identifier: &str) -> Result<bool, Error> {
        let op = "delete";
        let tx = self.transaction(&[DOWNLOADS, CHUNKS, ASSETS], true, false, op, identifier)?;
        let key = JsValue::from_str(identifier);
        let fail = |e: idb::Error| storage(&format!("{op} `{identifier}`"), e);
        let mut existed = false;
        for store in [DOWNLOADS, ASSETS] {
            let store = tx.store(store)?;
            let count = store
                .count(Some(Query::from(key.clone())))
                .map_err(fail)?
                .await
                .map_err(fail)?;
            existed |= count > 0;
            store.delete(Query::from(key.clone())).map_err(fail)?;
        }
        tx.store(CHUNKS)?
            .delete(identifier_range(identifier)?)
            .map_err(fail)?;
        tx.commit().await?;
        Ok(existed)
    }

    /// The chunks of the finished asset `identifier` that cover bytes `start..end`
    /// (`end` exclusive, `start < end <= size`), read in one transaction.
    pub async fn chunk_window(
        &self,
        identifier: &str,
        start: u64,
        end: u64,
    ) -> Result<ChunkWindow, Error> {
        let (values, first_offset, asset) = self.stored_window(identifier, start, end).await?;
        let mut chunks = Vec::with_capacity(values.len());
        for value in values {
            chunks.push(chunk_bytes(value, "read").await?);
        }
        Ok(ChunkWindow {
            chunks,
            first_offset,
            asset,
        })
    }

    /// The stored values (`Uint8Array`s or `Blob`s, see [`chunk_value`]) of the chunks covering
    /// bytes `start..end` of the finished asset `identifier`, the offset of the first one and
    /// the asset, read in one transaction.
    async fn stored_window(
        &self,
        identifier: &str,
        start: u64,
        end: u64,
    ) -> Result<(Vec<JsValue>, u64, StoredAsset), Error> {
        let op = "read";
        let tx = self.transaction(&[ASSETS, CHUNKS], false, false, op, identifier)?;
        let fail = |e: idb::Error| storage(&format!("{op} `{identifier}`"), e);
        let (asset, offsets) = covering_chunks(&tx, identifier, start, end, op).await?;
        let (Some(&first), Some(&last)) = (offsets.first(), offsets.last()) else {
            return Ok((Vec::new(), start, asset));
        };
        let chunks = tx.store(CHUNKS)?;
        let range = KeyRange::bound(
            &chunk_key(identifier, asset.generation, first),
            &chunk_key(identifier, asset.generation, last),
            None,
            None,
        )
        .map_err(fail)?;
        let values = chunks
            .get_all(Some(Query::from(range)), None)
            .map_err(fail)?
            .await
            .map_err(fail)?;
        let mut covered = first;
        for value in &values {
            covered += chunk_len(value).ok_or_else(|| not_a_chunk(op, value))?;
        }
        if covered < end {
            return Err(storage(
                &format!("{op} `{identifier}`"),
                format!("stored chunks end at {covered}, before {end}"),
            ));
        }
        Ok((values, first, asset))
    }

    /// Which chunks hold bytes `start..end` (`end` exclusive, `start <= end <= size`) of the
    /// finished asset `identifier`, reading only keys (no chunk bytes).
    pub async fn plan(&self, identifier: &str, start: u64, end: u64) -> Result<ChunkPlan, Error> {
        let op = "plan";
        let tx = self.transaction(&[ASSETS, CHUNKS], false, false, op, identifier)?;
        let (asset, offsets) = covering_chunks(&tx, identifier, start, end, op).await?;
        Ok(ChunkPlan {
            asset,
            offsets,
            start,
            end,
        })
    }

    /// A [`ChunkReader`] on this connection.
    pub fn chunk_reader(&self) -> ChunkReader {
        ChunkReader {
            db: self.db.clone(),
        }
    }

    /// Bytes `start..end` (`end` exclusive) of the finished asset `identifier`, copied into
    /// wasm memory (ranges may span chunks). Use [`Container::as_blob`] for large reads.
    pub async fn read_range(
        &self,
        identifier: &str,
        start: u64,
        end: u64,
    ) -> Result<Vec<u8>, Error> {
        let window = self.chunk_window(identifier, start, end).await?;
        let mut out = Vec::with_capacity((end - start) as usize);
        let mut offset = window.first_offset;
        for chunk in &window.chunks {
            let len = chunk.length() as u64;
            let from = start.max(offset);
            let to = end.min(offset + len);
            if from < to {
                let part = chunk.subarray((from - offset) as u32, (to - offset) as u32);
                let at = out.len();
                out.resize(at + part.length() as usize, 0);
                part.copy_to(&mut out[at..]);
            }
            offset += len;
        }
        Ok(out)
    }

    /// Bytes `start..end` of the asset as a `Blob` built from the covering chunks (no copy
    /// into wasm memory).
    pub async fn blob_range(
        &self,
        identifier: &str,
        start: u64,
        end: u64,
    ) -> Result<(web_sys::Blob, StoredAsset), Error> {
        // Stored `Blob`s go in as they are: nothing is read into memory.
        let (values, first_offset, asset) = self.stored_window(identifier, start, end).await?;
        let parts: Array = values.iter().collect();
        let options = web_sys::BlobPropertyBag::new();
        if let Some(content_type) = &asset.content_type {
            options.set_type(content_type);
        }
        let op = format!("blob `{identifier}`");
        let whole = web_sys::Blob::new_with_u8_array_sequence_and_options(&parts, &options)
            .map_err(|e| storage_js(&op, &e))?;
        let from = (start - first_offset) as f64;
        let to = (end - first_offset) as f64;
        let blob = if from == 0.0 && to == whole.size() {
            whole
        } else {
            whole
                .slice_with_f64_and_f64_and_content_type(
                    from,
                    to,
                    asset.content_type.as_deref().unwrap_or(""),
                )
                .map_err(|e| storage_js(&op, &e))?
        };
        Ok((blob, asset))
    }

    /// The whole finished asset as a `Blob` (typed with its content type), built from the stored
    /// chunks without copying them into wasm memory.
    pub async fn as_blob(&self, identifier: &str) -> Result<web_sys::Blob, Error> {
        let asset = self
            .asset(identifier)
            .await?
            .ok_or_else(|| Error::DownloadDoesNotExist {
                identifier: identifier.to_string(),
            })?;
        Ok(self.blob_range(identifier, 0, asset.size).await?.0)
    }

    /// The whole finished asset as a `200` `Response` (see also [`crate::web::serve`] for
    /// `Range` requests).
    pub async fn as_response(&self, identifier: &str) -> Result<web_sys::Response, Error> {
        super::serve::serve(self, identifier, None).await
    }

    /// `navigator.storage.estimate()`.
    pub async fn estimate() -> Result<StorageEstimate, Error> {
        let estimate = call_storage("estimate").await?;
        Ok(StorageEstimate {
            usage: js::get(&estimate, "usage").as_f64().unwrap_or(0.0),
            quota: js::get(&estimate, "quota").as_f64().unwrap_or(0.0),
        })
    }

    /// `navigator.storage.persist()`: asks for persistent storage. Pages only: a worker gets
    /// [`Error::Unsupported`]. The browser may decline (or ask the user).
    pub async fn persist() -> Result<bool, Error> {
        Ok(call_storage("persist").await?.as_bool().unwrap_or(false))
    }

    /// `navigator.storage.persisted()`: whether storage is already persistent.
    pub async fn persisted() -> Result<bool, Error> {
        Ok(call_storage("persisted").await?.as_bool().unwrap_or(false))
    }
}

async fn call_storage(method: &str) -> Result<JsValue, Error> {
    let storage_manager = js::get(&js::navigator(), "storage");
    let function = js::get(&storage_manager, method);
    let Some(function) = function.dyn_ref::<js_sys::Function>() else {
        return Err(Error::Unsupported {
            what: format!("navigator.storage.{method}() in this context"),
        });
    };
    let op = format!("navigator.storage.{method}()");
    let promise = function
        .call0(&storage_manager)
        .map_err(|e| storage_js(&op, &e))?;
    JsFuture::from(Promise::from(promise))
        .await
        .map_err(|e| storage_js(&op, &e))
}
