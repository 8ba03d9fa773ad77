//! Group commit for the two readwrite transactions that every download makes once: its begin
//! (the epoch bump) and, for a small file, the one write that stores and finishes it whole —
//! or, for a fresh small file fetched before its state was read, the one operation that does
//! both ([`Op::Fresh`]).
//!
//! IndexedDB runs readwrite transactions over the same stores one at a time, and each of these
//! needs a round trip through this thread between its read and its writes. With many runs at
//! once (an asset pack of many small files) they queue behind each other, and a busy thread holds
//! every queued one up. Here, operations that arrive while one batch's transaction runs wait, and
//! go together into the next one: one transaction, one round trip and one commit for all of them.
//! Under contention (an operation arrived while a batch ran, within the last [`BUSY_WITHIN_MS`]),
//! a batch with few operations first waits [`GATHER_MS`] for more; otherwise it starts at once,
//! so a lone caller (one download at a time) never waits for a timer.
//!
//! Fresh small files ([`Op::Fresh`]: nothing is expected to be stored under them) go first in a
//! transaction of their own that reads nothing: each write checks as it goes that nothing was
//! stored, and if one finds something, that transaction stores nothing and they all run again
//! with the others, in the transaction that reads first (see `run_unread`).
//!
//! Each operation keeps its own checks and its own answer: one whose check fails writes nothing,
//! and the others in its batch go on. Two operations on the same identifier never share a batch
//! (the later one waits for the next), so each sees the other's writes. An operation whose caller
//! has gone (a dropped future) before its batch starts is skipped; once started, it commits with
//! its batch, like a write that committed just before its context died.

use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;

use futures::channel::oneshot;
use idb::Query;
use js_sys::Uint8Array;
use wasm_bindgen::JsValue;
use web_sys::IdbDatabase;

use super::{
    asset_value, download_record, download_value, generation_range, put_pieces, record_finished,
    storage, stored_asset, transaction, Began, DownloadRecord, FinishedAsset, StoredAsset, Tx,
    ASSETS, CHUNKS, DOWNLOADS,
};
use crate::core::error::Error;

/// At most this many operations share one transaction (a bound on its size and on how long the
/// first of them waits for the last).
pub const MAX_BATCH: usize = 64;

/// A batch with fewer than [`GATHER_BELOW`] operations waiting first waits this long for more
/// when the connection is contended: an operation arrived while a batch ran or gathered within
/// the last [`BUSY_WITHIN_MS`]. Each batch is a readwrite transaction and a commit, and with many
/// small files at once their commits compete with the transfers for the CPU.
/// (`BA_BENCH_ONLY=small cargo xtask bench --runs 3`, six runs: the manager's row 5.5–5.9 s
/// against 5.9–6.4 without it; 2.4 → 3.8–4.1 operations per transaction.)
///
/// A lone caller's operations arrive one after another, each once the one before is answered,
/// and never wait: nobody else would join them, and each wait is a timer round trip for
/// nothing (twice per download: its begin and its small-file write). One small file at a time
/// (`BA_BENCH_CONCURRENCY=1 BA_BENCH_ONLY=small cargo xtask bench --runs 1`): the engine
/// 7.61 → 6.11 s for 1,000 files in Chromium, 10.1 → 7.8 s in Firefox, when batches that
/// merely ended within [`BUSY_WITHIN_MS`] of the one before also waited.
pub const GATHER_MS: u32 = 1;

/// See [`GATHER_MS`].
pub const GATHER_BELOW: usize = 3;

/// See [`GATHER_MS`].
pub const BUSY_WITHIN_MS: f64 = 50.0;

/// How many batch transactions ran and how many operations they carried.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchStats {
    /// Transactions started.
    pub transactions: u64,
    /// Operations carried by them.
    pub operations: u64,
    /// Batches that first waited [`GATHER_MS`] for more operations (the connection contended).
    pub gathered: u64,
    /// Microseconds the batch transactions ran, from their start to their commit, summed.
    pub busy_us: u64,
    /// Of the transactions, those that wrote fresh small files without reading first
    /// ([`Op::Fresh`] operations only; see `run_unread`).
    pub unread: u64,
    /// Operations whose unread transaction aborted (something was stored under an identifier
    /// after all, or the write failed) and that ran again in a transaction that reads first.
    pub retried: u64,
}

/// One operation waiting for its batch.
pub(super) enum Op {
    /// [`super::Container::begin_unless_finished`].
    Begin {
        identifier: String,
        keep: Box<dyn FnOnce(&StoredAsset) -> bool>,
        reply: oneshot::Sender<Result<Began, Error>>,
    },
    /// [`super::Container::append_chunk`] of a whole file that fits [`super::INLINE_MAX`]: its
    /// only write, at offset 0, finishing it.
    Whole {
        identifier: String,
        epoch: u64,
        generation: u64,
        bytes: Uint8Array,
        finish: FinishedAsset,
        reply: oneshot::Sender<Result<Option<StoredAsset>, Error>>,
    },
    /// [`super::Container::begin_and_store_whole`]: a [`Op::Begin`] and an [`Op::Whole`] in one.
    Fresh {
        identifier: String,
        keep: Box<dyn FnOnce(&StoredAsset) -> bool>,
        bytes: Uint8Array,
        finish: FinishedAsset,
        reply: oneshot::Sender<Result<StoredAsset, Error>>,
    },
}

impl Op {
    fn identifier(&self) -> &str {
        match self {
            Op::Begin { identifier, .. }
            | Op::Whole { identifier, .. }
            | Op::Fresh { identifier, .. } => identifier,
        }
    }

    fn abandoned(&self) -> bool {
        match self {
            Op::Begin { reply, .. } => reply.is_canceled(),
            Op::Whole { reply, .. } => reply.is_canceled(),
            Op::Fresh { reply, .. } => reply.is_canceled(),
        }
    }
}

/// The queue of one connection.
#[derive(Default)]
pub(super) struct Batcher {
    queue: Vec<Op>,
    running: bool,
    stats: BatchStats,
    /// When an operation last arrived while a batch ran or gathered (`Date.now()`), 0 before:
    /// the sign that several callers use this connection at once.
    last_contended: f64,
}

impl Batcher {
    pub(super) fn stats(&self) -> BatchStats {
        self.stats
    }
}

/// Queues `op`; starts a batch now unless one is running (its end starts the next).
pub(super) fn submit(db: &IdbDatabase, batcher: &Rc<RefCell<Batcher>>, op: Op) {
    let mut queued = batcher.borrow_mut();
    queued.queue.push(op);
    if queued.running {
        queued.last_contended = js_sys::Date::now();
    } else {
        queued.running = true;
        crate::web::js::spawn(drain(db.clone(), batcher.clone()));
    }
}

/// The answer to an operation submitted with its `reply` sender (`operation` on `identifier`
/// names it in the error if its batch ended without answering).
pub(super) async fn answered<T>(
    answer: oneshot::Receiver<Result<T, Error>>,
    operation: &str,
    identifier: String,
) -> Result<T, Error> {
    answer.await.unwrap_or_else(|_| {
        Err(storage(
            &format!("{operation} `{identifier}`"),
            "the batch ended without an answer",
        ))
    })
}

/// Runs batches until the queue is empty.
async fn drain(db: IdbDatabase, batcher: Rc<RefCell<Batcher>>) {
    loop {
        // Contended (operations arrived while a batch ran, a moment ago): others run at the
        // same time, so a few more are likely within a millisecond (see GATHER_MS).
        let wait = {
            let queued = batcher.borrow();
            !queued.queue.is_empty()
                && queued.queue.len() < GATHER_BELOW
                && js_sys::Date::now() - queued.last_contended < BUSY_WITHIN_MS
        };
        if wait {
            batcher.borrow_mut().stats.gathered += 1;
            gloo_timers::future::TimeoutFuture::new(GATHER_MS).await;
        }
        let ops = {
            let mut queued = batcher.borrow_mut();
            let waiting = std::mem::take(&mut queued.queue);
            let mut identifiers = HashSet::new();
            let mut ops = Vec::new();
            for op in waiting {
                if op.abandoned() {
                    continue;
                }
                if ops.len() < MAX_BATCH && identifiers.insert(op.identifier().to_string()) {
                    ops.push(op);
                } else {
                    queued.queue.push(op);
                }
            }
            if ops.is_empty() {
                queued.running = false;
                return;
            }
            queued.stats.operations += ops.len() as u64;
            ops
        };
        let started = js_sys::Date::now();
        // Fresh small files are written without reading first; if one was not fresh after all,
        // they all go through the checked transaction with the others.
        let (fresh, mut checked): (Vec<Op>, Vec<Op>) = ops
            .into_iter()
            .partition(|op| matches!(op, Op::Fresh { .. }));
        if !fresh.is_empty() {
            {
                let mut queued = batcher.borrow_mut();
                queued.stats.transactions += 1;
                queued.stats.unread += 1;
            }
            if let Err(fresh) = run_unread(&db, fresh).await {
                batcher.borrow_mut().stats.retried += fresh.len() as u64;
                checked.extend(fresh);
            }
        }
        if !checked.is_empty() {
            batcher.borrow_mut().stats.transactions += 1;
            run_batch(&db, checked).await;
        }
        batcher.borrow_mut().stats.busy_us += ((js_sys::Date::now() - started) * 1000.0) as u64;
    }
}

/// What one operation decided, answered once its batch's transaction ended.
enum Decided {
    Begin(oneshot::Sender<Result<Began, Error>>, Result<Began, Error>),
    Whole(
        oneshot::Sender<Result<Option<StoredAsset>, Error>>,
        Result<Option<StoredAsset>, Error>,
    ),
    Fresh(
        oneshot::Sender<Result<StoredAsset, Error>>,
        Result<StoredAsset, Error>,
    ),
}

impl Decided {
    /// Sends the answer: the decision if the transaction committed or the operation wrote
    /// nothing, else the transaction's error (as this operation's).
    fn answer(self, identifier: &str, committed: &Result<(), Error>, wrote: bool) {
        let failure = match committed {
            Err(error) if wrote => Some(own_error(error, identifier)),
            _ => None,
        };
        match self {
            Decided::Begin(reply, outcome) => {
                let _ = reply.send(failure.map_or(outcome, Err));
            }
            Decided::Whole(reply, outcome) => {
                let _ = reply.send(failure.map_or(outcome, Err));
            }
            Decided::Fresh(reply, outcome) => {
                let _ = reply.send(failure.map_or(outcome, Err));
            }
        }
    }
}

/// A batch transaction's error, named for one of its operations.
fn own_error(error: &Error, identifier: &str) -> Error {
    match error {
        Error::QuotaExceeded { .. } => Error::QuotaExceeded {
            identifier: identifier.to_string(),
        },
        other => other.clone(),
    }
}

type Get = idb::request::futures::GetStoreRequestFuture;

/// A batch's readwrite transaction (relaxed durability) over the stores its operations touch,
/// named for the first of `ops` in errors.
fn batch_transaction(db: &IdbDatabase, ops: &[Op]) -> Result<Tx, Error> {
    let first = ops.first().map_or("", Op::identifier);
    transaction(db, &[DOWNLOADS, CHUNKS, ASSETS], true, true, "batch", first)
}

/// One transaction for `ops` (distinct identifiers): every read issued at once, then each
/// operation's checks and writes in order, then one commit.
async fn run_batch(db: &IdbDatabase, ops: Vec<Op>) {
    let tx = match batch_transaction(db, &ops) {
        Ok(tx) => tx,
        Err(error) => {
            for op in ops {
                let identifier = op.identifier().to_string();
                let (decided, _) = decline(op, own_error(&error, &identifier));
                decided.answer(&identifier, &Ok(()), false);
            }
            return;
        }
    };
    // Every read first: the answers come back together, in one round trip.
    let reads: Vec<_> = ops
        .into_iter()
        .map(|op| {
            let issued = issue_reads(&tx, op.identifier());
            (op, issued)
        })
        .collect();
    let mut decided = Vec::with_capacity(reads.len());
    let mut broken: Option<Error> = None;
    for (op, issued) in reads {
        let identifier = op.identifier().to_string();
        let (decision, wrote) = match &broken {
            Some(error) => decline(op, own_error(error, &identifier)),
            None => decide(&tx, op, issued).await,
        };
        match wrote {
            Ok(wrote) => decided.push((identifier, decision, wrote)),
            Err(error) => {
                // A request failed: some of this batch's writes may be issued, so none commits.
                let _ = tx.raw.abort();
                decided.push((identifier, decision, false));
                broken.get_or_insert(error);
            }
        }
    }
    let committed = match broken {
        Some(error) => Err(error),
        None => tx.commit_now().await,
    };
    for (identifier, decision, wrote) in decided {
        decision.answer(&identifier, &committed, wrote);
    }
}

/// Stores the fresh small files `ops` (all [`Op::Fresh`], distinct identifiers) in one
/// transaction that reads nothing: each is written as new — its pieces in generation 1, its
/// asset record — with no round trip through this thread between reads and writes. Under
/// contention that round trip is most of a batch's time (Firefox: 5.8 of 9 ms, with the parent
/// process busy copying response bodies).
///
/// The hint that nothing is stored can be wrong, so each write checks it as it goes: an `add` of
/// the asset record fails if a finished asset is there, and an `add` of a download record
/// (deleted again at once) fails if an interrupted run left one. A failed request aborts the
/// transaction (nobody handles its error event, and the transaction is left to commit by
/// itself once every request has answered), so nothing of the batch is stored and the
/// operations come back as `Err`, for the transaction that reads first (it keeps or replaces
/// what is there). A file with neither record has no chunks: chunks are written only under a
/// download record, and a record goes only when its chunks become an asset's or are deleted.
async fn run_unread(db: &IdbDatabase, ops: Vec<Op>) -> Result<(), Vec<Op>> {
    let Ok(tx) = batch_transaction(db, &ops) else {
        return Err(ops);
    };
    let mut stored = Vec::with_capacity(ops.len());
    for op in &ops {
        let Op::Fresh {
            identifier,
            bytes,
            finish,
            ..
        } = op
        else {
            unreachable!("only fresh small files are written unread");
        };
        match write_new(&tx, identifier, bytes, finish) {
            Ok(asset) => stored.push(asset),
            Err(_) => {
                let _ = tx.raw.abort();
                let _ = tx.commit().await;
                return Err(ops);
            }
        }
    }
    // Not `commit()` (`Tx::commit_now`): Firefox (153) then commits the others' writes even
    // when one of the checking `add`s fails, which the standard says aborts the transaction.
    // Left to commit by itself, it aborts in both engines once that error event goes unhandled.
    if tx.commit().await.is_err() {
        return Err(ops);
    }
    for (op, asset) in ops.into_iter().zip(stored) {
        if let Op::Fresh { reply, .. } = op {
            let _ = reply.send(Ok(asset));
        }
    }
    Ok(())
}

/// Issues the writes of a whole new file (see [`run_unread`]): each fails, and aborts `tx`, if a
/// download record or an asset is stored under `identifier`.
fn write_new(
    tx: &Tx,
    identifier: &str,
    bytes: &Uint8Array,
    finish: &FinishedAsset,
) -> Result<StoredAsset, Error> {
    let key = JsValue::from_str(identifier);
    let fail = |e: idb::Error| storage(&format!("write_chunk+finish `{identifier}`"), e);
    let downloads = tx.store(DOWNLOADS)?;
    downloads.add(&JsValue::NULL, Some(&key)).map_err(fail)?;
    downloads.delete(Query::from(key.clone())).map_err(fail)?;
    let chunk_count = put_pieces(&tx.store(CHUNKS)?, identifier, 1, bytes).map_err(fail)?;
    let stored = finish.clone().stored(identifier, 1, chunk_count);
    tx.store(ASSETS)?
        .add(&asset_value(&stored), Some(&key))
        .map_err(fail)?;
    Ok(stored)
}

/// `op` answered with `error`, nothing written.
fn decline(op: Op, error: Error) -> (Decided, Result<bool, Error>) {
    let decided = match op {
        Op::Begin { reply, .. } => Decided::Begin(reply, Err(error.clone())),
        Op::Whole { reply, .. } => Decided::Whole(reply, Err(error.clone())),
        Op::Fresh { reply, .. } => Decided::Fresh(reply, Err(error.clone())),
    };
    (decided, Err(error))
}

/// The download record and the finished asset of `identifier`, both requested now.
fn issue_reads(tx: &Tx, identifier: &str) -> Result<(Get, Get), Error> {
    let key = JsValue::from_str(identifier);
    let fail = |e: idb::Error| storage(&format!("batch `{identifier}`"), e);
    let record = tx
        .store(DOWNLOADS)?
        .get(Query::from(key.clone()))
        .map_err(fail)?;
    let asset = tx.store(ASSETS)?.get(Query::from(key)).map_err(fail)?;
    // The success handlers are attached now: the answers may come before a first poll.
    Ok((
        std::future::IntoFuture::into_future(record),
        std::future::IntoFuture::into_future(asset),
    ))
}

/// One operation's checks and writes, once its reads answer: its decision, and whether it issued
/// writes (`Err` when a request failed: the batch is aborted then).
async fn decide(
    tx: &Tx,
    op: Op,
    issued: Result<(Get, Get), Error>,
) -> (Decided, Result<bool, Error>) {
    let identifier = op.identifier().to_string();
    let fail = |e: idb::Error| storage(&format!("batch `{identifier}`"), e);
    let read = async {
        let (record, asset) = issued?;
        let record = record.await.map_err(fail)?.map(|r| download_record(&r));
        let asset = asset.await.map_err(fail)?.map(|a| stored_asset(&a));
        Ok::<_, Error>((record, asset))
    };
    let (record, asset) = match read.await {
        Ok(read) => read,
        Err(error) => return decline(op, error),
    };
    match op {
        Op::Begin {
            identifier,
            keep,
            reply,
        } => {
            let record = match begun(&identifier, record, asset.as_ref(), keep) {
                Ok(record) => record,
                Err(kept) => return (Decided::Begin(reply, Ok(Began::Finished(kept))), Ok(false)),
            };
            let key = JsValue::from_str(&identifier);
            let put = tx
                .store(DOWNLOADS)
                .and_then(|s| s.put(&download_value(&record), Some(&key)).map_err(fail));
            match put {
                Ok(_) => (Decided::Begin(reply, Ok(Began::Download(record))), Ok(true)),
                Err(error) => (Decided::Begin(reply, Err(error.clone())), Err(error)),
            }
        }
        Op::Whole {
            identifier,
            epoch,
            generation,
            bytes,
            finish,
            reply,
            ..
        } => {
            let mut record = match check_whole(&identifier, record, epoch, generation) {
                Ok(record) => record,
                Err(error) => return (Decided::Whole(reply, Err(error)), Ok(false)),
            };
            record.stored = bytes.length() as u64;
            match write_whole(tx, &record, &bytes, asset, finish) {
                Ok(stored) => (Decided::Whole(reply, Ok(Some(stored))), Ok(true)),
                Err(error) => (Decided::Whole(reply, Err(error.clone())), Err(error)),
            }
        }
        Op::Fresh {
            identifier,
            keep,
            bytes,
            finish,
            reply,
        } => {
            // The begin's decision (a kept asset, or the next epoch), then the whole write in
            // the new epoch: chunks an interrupted run left in the record's generation go.
            let record = match begun(&identifier, record, asset.as_ref(), keep) {
                Ok(record) => record,
                Err(kept) => return (Decided::Fresh(reply, Ok(kept)), Ok(false)),
            };
            let record = DownloadRecord {
                stored: bytes.length() as u64,
                checkpoint: JsValue::NULL,
                ..record
            };
            match write_whole(tx, &record, &bytes, asset, finish) {
                Ok(stored) => (Decided::Fresh(reply, Ok(stored)), Ok(true)),
                Err(error) => (Decided::Fresh(reply, Err(error.clone())), Err(error)),
            }
        }
    }
}

/// A begin's decision on what it read: the download record with the next epoch (a new one,
/// in the generation after a finished asset's, when there is none), or `Err` with the finished
/// asset `keep` accepts when there is no download record.
fn begun(
    identifier: &str,
    record: Option<DownloadRecord>,
    asset: Option<&StoredAsset>,
    keep: Box<dyn FnOnce(&StoredAsset) -> bool>,
) -> Result<DownloadRecord, StoredAsset> {
    match record {
        Some(record) => Ok(DownloadRecord {
            epoch: record.epoch + 1,
            ..record
        }),
        None => match asset {
            Some(asset) if keep(asset) => Err(asset.clone()),
            _ => Ok(DownloadRecord {
                identifier: identifier.to_string(),
                epoch: 1,
                stored: 0,
                generation: asset.map_or(1, |a| a.generation + 1),
                checkpoint: JsValue::NULL,
            }),
        },
    }
}

/// The checks of [`super::Container::append_chunk`] for a first and only write at offset 0.
fn check_whole(
    identifier: &str,
    record: Option<DownloadRecord>,
    epoch: u64,
    generation: u64,
) -> Result<DownloadRecord, Error> {
    let Some(record) = record else {
        return Err(Error::DownloadDoesNotExist {
            identifier: identifier.to_string(),
        });
    };
    if record.epoch != epoch {
        return Err(Error::StaleEpoch {
            identifier: identifier.to_string(),
            held: epoch,
            current: record.epoch,
        });
    }
    if record.stored != 0 || generation != record.generation {
        let why = format!(
            "a chunk at 0 of generation {generation}, but {} bytes of generation {} are stored \
             (chunks are appended)",
            record.stored, record.generation
        );
        return Err(storage(&format!("write_chunk+finish `{identifier}`"), why));
    }
    Ok(record)
}

/// Stores `bytes` as the whole of `record`'s generation and finishes it (what
/// [`super::Container::append_chunk`] with `finish` does): anything left in that generation is
/// deleted first (no bytes of it are recorded as stored), an older asset's chunks are deleted,
/// the asset record is written and the download record removed.
fn write_whole(
    tx: &Tx,
    record: &DownloadRecord,
    bytes: &Uint8Array,
    old: Option<StoredAsset>,
    finish: FinishedAsset,
) -> Result<StoredAsset, Error> {
    let identifier = record.identifier.as_str();
    let fail = |e: idb::Error| storage(&format!("write_chunk+finish `{identifier}`"), e);
    let chunks = tx.store(CHUNKS)?;
    chunks
        .delete(generation_range(identifier, record.generation)?)
        .map_err(fail)?;
    let pieces = put_pieces(&chunks, identifier, record.generation, bytes).map_err(fail)?;
    record_finished(tx, record, old, finish, pieces)
}
