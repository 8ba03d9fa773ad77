//! The IndexedDB container through `background_assets::web::container` (sw and page suites).
//! Every test opens a fresh database and deletes it at the end.

use background_assets::core::error::Error;
use background_assets::web::container::{Container, FinishedAsset};
use background_assets::web::js;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::wasm_bindgen_test;

/// A fresh, uniquely named container.
pub async fn fresh(label: &str) -> Container {
    let name = format!("ba-test-{label}-{}", (js_sys::Math::random() * 1e12) as u64);
    Container::open(&name)
        .await
        .expect("open a fresh container")
}

/// Closes and deletes the container's database.
pub async fn remove(container: Container) {
    let name = container.name().to_string();
    container.close();
    drop(container);
    Container::delete_database(&name)
        .await
        .expect("delete database");
}

/// Deterministic test bytes: `len` bytes starting at `offset` of pattern `seed`.
pub fn pattern(seed: u8, offset: usize, len: usize) -> Vec<u8> {
    (offset..offset + len)
        .map(|i| (i.wrapping_mul(31) as u8) ^ seed ^ ((i >> 8) as u8))
        .collect()
}

fn checkpoint(done: u64) -> JsValue {
    let value = js::object();
    js::set(&value, "done", &JsValue::from_f64(done as f64));
    value.into()
}

fn done_of(checkpoint: &JsValue) -> u64 {
    js::get(checkpoint, "done").as_f64().unwrap_or(-1.0) as u64
}

/// Stores `size` bytes of `pattern(seed)` in chunks of `chunk` bytes and finishes it.
pub async fn store(container: &Container, id: &str, seed: u8, size: usize, chunk: usize) {
    let epoch = container.begin_epoch(id).await.unwrap();
    let mut offset = 0;
    while offset < size {
        let len = chunk.min(size - offset);
        container
            .write_chunk(
                id,
                epoch,
                offset as u64,
                &pattern(seed, offset, len),
                &checkpoint((offset + len) as u64),
            )
            .await
            .unwrap();
        offset += len;
    }
    container
        .finish(
            id,
            epoch,
            FinishedAsset {
                size: size as u64,
                sha256: format!("{seed:02x}{}", "0".repeat(62)),
                content_type: Some("application/x-test".into()),
            },
        )
        .await
        .unwrap();
}

#[wasm_bindgen_test]
async fn begin_epoch_bumps_the_fencing_token() {
    let c = fresh("epoch").await;
    assert!(c.load_checkpoint("a").await.unwrap().is_none());
    assert_eq!(c.begin_epoch("a").await.unwrap(), 1);
    assert_eq!(c.begin_epoch("a").await.unwrap(), 2);
    assert_eq!(c.begin_epoch("b").await.unwrap(), 1);
    let record = c.load_checkpoint("a").await.unwrap().unwrap();
    assert_eq!((record.identifier.as_str(), record.epoch), ("a", 2));
    assert!(record.checkpoint.is_null());
    let mut ids: Vec<_> = c
        .downloads()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.identifier)
        .collect();
    ids.sort();
    assert_eq!(ids, ["a", "b"]);
    remove(c).await;
}

#[wasm_bindgen_test]
async fn chunks_read_back_exactly_across_boundaries() {
    let c = fresh("readback").await;
    store(&c, "asset", 7, 2500, 1000).await;
    let all = pattern(7, 0, 2500);
    assert_eq!(c.read_range("asset", 0, 2500).await.unwrap(), all);
    assert_eq!(
        c.read_range("asset", 990, 2010).await.unwrap(),
        &all[990..2010]
    );
    assert_eq!(
        c.read_range("asset", 1000, 2000).await.unwrap(),
        &all[1000..2000]
    );
    assert_eq!(
        c.read_range("asset", 2499, 2500).await.unwrap(),
        &all[2499..]
    );
    assert_eq!(c.read_range("asset", 5, 5).await.unwrap(), Vec::<u8>::new());
    let asset = c.asset("asset").await.unwrap().unwrap();
    assert_eq!((asset.size, asset.chunk_count), (2500, 3));
    let outside = c.read_range("asset", 2000, 2501).await.unwrap_err();
    assert_eq!(outside.name(), "Storage");
    assert!(outside.to_string().contains("2501"), "{outside}");
    assert_eq!(
        c.read_range("nope", 0, 1).await.unwrap_err(),
        Error::DownloadDoesNotExist {
            identifier: "nope".into()
        }
    );
    remove(c).await;
}

/// A small file written and finished by one `append_chunk` is stored as inline pieces: in
/// Chromium of at most 60 KiB (it writes a blob file for a value over 64 KiB), in Firefox whole
/// (it keeps values under 1 MiB in its database); a chunk that is not the whole file, and a
/// whole file over 192 KiB, stay one value. Every byte reads back, across the pieces'
/// boundaries.
#[wasm_bindgen_test]
async fn a_small_whole_file_is_stored_as_inline_pieces_and_reads_back_exactly() {
    use background_assets::web::container::{inline_piece, ChunkAt, INLINE_MAX, INLINE_PIECE};
    let c = fresh("pieces").await;
    let firefox = js::get(&js::navigator(), "userAgent")
        .as_string()
        .unwrap()
        .contains("Firefox/");
    let piece = inline_piece() as usize;
    assert_eq!(
        piece,
        if firefox { INLINE_MAX } else { INLINE_PIECE } as usize
    );
    let pieces = |size: usize| size.div_ceil(piece) as u32;
    // (identifier, size, chunk size, chunks expected)
    let cases = [
        ("whole-64k", 65_536usize, 65_536usize, pieces(65_536)),
        ("whole-150k", 150_000, 4 << 20, pieces(150_000)),
        (
            "whole-max",
            INLINE_MAX as usize,
            INLINE_MAX as usize,
            pieces(INLINE_MAX as usize),
        ),
        ("whole-piece", piece, piece, 1),
        ("whole-over", INLINE_MAX as usize + 1, 4 << 20, 1),
        ("two-chunks", 131_072, 65_536, 2),
    ];
    if !firefox {
        assert_eq!(
            cases.map(|case| case.3),
            [2, 3, 4, 1, 1, 2],
            "Chromium's pieces"
        );
    }
    for (id, size, chunk, expected) in cases {
        let all = pattern(7, 0, size);
        let record = c.begin_epoch_record(id).await.unwrap();
        let mut offset = 0;
        while offset < size {
            let len = chunk.min(size - offset);
            let at = ChunkAt {
                identifier: id,
                epoch: record.epoch,
                generation: record.generation,
                offset: offset as u64,
            };
            let last = offset + len == size;
            let finish = last.then(|| FinishedAsset {
                size: size as u64,
                sha256: "0".repeat(64),
                content_type: None,
            });
            let array = js_sys::Uint8Array::from(&all[offset..offset + len]);
            let done = checkpoint((offset + len) as u64);
            let stored = c.append_chunk(at, &array, &done, finish).await.unwrap();
            assert_eq!(stored.is_some(), last, "{id} at {offset}");
            offset += len;
        }
        let asset = c.asset(id).await.unwrap().unwrap();
        assert_eq!(
            (asset.size, asset.chunk_count),
            (size as u64, expected),
            "{id}"
        );
        assert_eq!(c.read_range(id, 0, size as u64).await.unwrap(), all, "{id}");
        for (start, end) in [(piece - 1, piece + 1), (1, size - 1), (size - 3, size)] {
            let end = end.min(size);
            let start = start.min(end);
            assert_eq!(
                c.read_range(id, start as u64, end as u64).await.unwrap(),
                &all[start..end],
                "{id} {start}..{end}"
            );
        }
        let blob = c.as_blob(id).await.unwrap();
        assert_eq!(blob.size() as usize, size, "{id}");
        // Deleting it removes every piece.
        assert!(c.delete(id).await.unwrap());
        assert!(c.asset(id).await.unwrap().is_none());
    }
    remove(c).await;
}

/// The raw values of the container's `chunks` store, in key order (another connection).
async fn raw_chunks(c: &Container) -> (idb::Database, Vec<JsValue>, Vec<JsValue>) {
    let factory = idb::Factory::new().expect("indexedDB");
    let db = factory
        .open(c.name(), None)
        .expect("indexedDB.open")
        .await
        .expect("open the container's database");
    let tx = db
        .transaction(&["chunks"], idb::TransactionMode::ReadOnly)
        .expect("readonly transaction");
    let store = tx.object_store("chunks").expect("chunks store");
    let keys = store.get_all_keys(None, None).unwrap().await.unwrap();
    let values = store.get_all(None, None).unwrap().await.unwrap();
    tx.await.expect("readonly transaction end");
    (db, keys, values)
}

/// Chunks over 60 KiB are stored as `Blob`s (both write paths: the fenced `write_chunk` and
/// `append_chunk`), smaller ones as bytes; every reader gives the same bytes. A chunk stored as
/// a large `Uint8Array` (as before) still reads back: readers take both forms.
#[wasm_bindgen_test]
async fn large_chunks_are_stored_as_blobs_and_every_reader_takes_both_forms() {
    use background_assets::web::container::ChunkAt;
    let c = fresh("blobs").await;
    // write_chunk: 200 000 + 200 000 + 40 000 bytes.
    store(&c, "fenced", 3, 440_000, 200_000).await;
    // append_chunk: 150 000 + 150 000 + 20 000 bytes (not a whole small file: three writes).
    let size = 320_000usize;
    let all = pattern(5, 0, size);
    let record = c.begin_epoch_record("appended").await.unwrap();
    let mut offset = 0;
    while offset < size {
        let len = 150_000.min(size - offset);
        let at = ChunkAt {
            identifier: "appended",
            epoch: record.epoch,
            generation: record.generation,
            offset: offset as u64,
        };
        let finish = (offset + len == size).then(|| FinishedAsset {
            size: size as u64,
            sha256: "0".repeat(64),
            content_type: Some("application/x-test".into()),
        });
        let array = js_sys::Uint8Array::from(&all[offset..offset + len]);
        let done = checkpoint((offset + len) as u64);
        c.append_chunk(at, &array, &done, finish).await.unwrap();
        offset += len;
    }

    let (db, keys, values) = raw_chunks(&c).await;
    let kinds: Vec<(String, &'static str, f64)> = keys
        .iter()
        .zip(&values)
        .map(|(key, value)| {
            let key = js_sys::Array::from(key);
            let id = key.get(0).as_string().unwrap();
            match value.dyn_ref::<web_sys::Blob>() {
                Some(blob) => (id, "blob", blob.size()),
                None => (
                    id,
                    "bytes",
                    f64::from(js_sys::Uint8Array::new(value).length()),
                ),
            }
        })
        .collect();
    let expected = [
        ("appended", "blob", 150_000.0),
        ("appended", "blob", 150_000.0),
        ("appended", "bytes", 20_000.0),
        ("fenced", "blob", 200_000.0),
        ("fenced", "blob", 200_000.0),
        ("fenced", "bytes", 40_000.0),
    ];
    let expected: Vec<_> = expected
        .iter()
        .map(|(id, kind, len)| (id.to_string(), *kind, *len))
        .collect();
    assert_eq!(kinds, expected);

    // Every reader: whole, across chunk boundaries, inside one blob chunk, as a Blob, and served.
    let fenced = pattern(3, 0, 440_000);
    for (id, all) in [("fenced", &fenced), ("appended", &all)] {
        let size = all.len();
        assert_eq!(
            c.read_range(id, 0, size as u64).await.unwrap(),
            *all,
            "{id}"
        );
        for (start, end) in [(149_990, 150_010), (199_999, 300_001), (10, 20)] {
            assert_eq!(
                c.read_range(id, start, end).await.unwrap(),
                &all[start as usize..end as usize],
                "{id} {start}..{end}"
            );
        }
        let (blob, _) = c.blob_range(id, 100, size as u64 - 100).await.unwrap();
        let buffer = JsFuture::from(blob.array_buffer()).await.unwrap();
        assert_eq!(
            js_sys::Uint8Array::new(&buffer).to_vec(),
            &all[100..size - 100],
            "{id} as a blob"
        );
        let generation = c.asset(id).await.unwrap().unwrap().generation;
        let chunk = c
            .chunk_reader()
            .read(id, generation, 0)
            .await
            .map(|bytes| bytes.to_vec());
        let first = if id == "fenced" { 200_000 } else { 150_000 };
        assert_eq!(chunk.unwrap(), &all[..first], "{id} chunk 0");
    }

    // The form stored before: the first "fenced" chunk as one large Uint8Array.
    let tx = db
        .transaction(&["chunks"], idb::TransactionMode::ReadWrite)
        .unwrap();
    tx.object_store("chunks")
        .unwrap()
        .put(
            &js_sys::Uint8Array::from(&fenced[..200_000]),
            Some(&keys[3]),
        )
        .unwrap()
        .await
        .unwrap();
    tx.commit().unwrap().await.unwrap();
    db.close();
    let (db, _, values) = raw_chunks(&c).await;
    db.close();
    assert!(values[3].is_instance_of::<js_sys::Uint8Array>());
    assert_eq!(c.read_range("fenced", 0, 440_000).await.unwrap(), fenced);
    assert_eq!(
        c.read_range("fenced", 199_990, 200_010).await.unwrap(),
        &fenced[199_990..200_010]
    );
    remove(c).await;
}

/// Begins and whole small-file writes that arrive together share one transaction (group
/// commit), and each keeps its own checks and answer: a stale writer in the batch gets
/// `StaleEpoch` and stores nothing while the others store their bytes.
#[wasm_bindgen_test]
async fn begins_and_small_writes_together_share_transactions_each_with_its_own_answer() {
    use background_assets::web::container::ChunkAt;
    use futures::future::join_all;
    let c = fresh("batch").await;
    let ids: Vec<String> = (0..12).map(|i| format!("file-{i}")).collect();
    let records = join_all(ids.iter().map(|id| c.begin_epoch_record(id))).await;
    let records: Vec<_> = records.into_iter().map(Result::unwrap).collect();
    assert!(records.iter().all(|r| (r.epoch, r.generation) == (1, 1)));
    let stats = c.batch_stats();
    assert_eq!(stats.operations, 12, "{stats:?}");
    assert!(stats.transactions < 12, "no group commit: {stats:?}");
    // file-0 is taken over: its first writer's epoch is stale now.
    assert_eq!(c.begin_epoch("file-0").await.unwrap(), 2);
    let sizes: Vec<usize> = (0..12).map(|i| 1000 + i * 9000).collect();
    let writes = ids
        .iter()
        .zip(&records)
        .zip(&sizes)
        .map(|((id, record), &size)| {
            let at = ChunkAt {
                identifier: id,
                epoch: record.epoch,
                generation: record.generation,
                offset: 0,
            };
            let bytes = js_sys::Uint8Array::from(&pattern(3, 0, size)[..]);
            let finish = FinishedAsset {
                size: size as u64,
                sha256: "0".repeat(64),
                content_type: None,
            };
            c.append_chunk(at, &bytes, &checkpoint(size as u64), Some(finish))
        });
    let before = c.batch_stats();
    let outcomes = join_all(writes).await;
    let after = c.batch_stats();
    assert_eq!(after.operations - before.operations, 12, "{after:?}");
    assert!(
        after.transactions - before.transactions < 12,
        "no group commit: {before:?} → {after:?}"
    );
    for ((id, outcome), &size) in ids.iter().zip(outcomes).zip(&sizes) {
        if id == "file-0" {
            assert!(
                matches!(
                    outcome,
                    Err(Error::StaleEpoch {
                        held: 1,
                        current: 2,
                        ..
                    })
                ),
                "{outcome:?}"
            );
            assert!(c.asset(id).await.unwrap().is_none());
            let record = c.load_checkpoint(id).await.unwrap().unwrap();
            assert_eq!((record.epoch, record.stored), (2, 0));
            continue;
        }
        let stored = outcome.unwrap().expect("finished");
        assert_eq!((stored.size, stored.generation), (size as u64, 1), "{id}");
        assert_eq!(c.asset(id).await.unwrap(), Some(stored), "{id}");
        assert_eq!(
            c.read_range(id, 0, size as u64).await.unwrap(),
            pattern(3, 0, size),
            "{id}"
        );
        assert!(c.load_checkpoint(id).await.unwrap().is_none(), "{id}");
    }
    remove(c).await;
}

/// `begin_and_store_whole` begins, stores and finishes a whole small file in one operation of
/// the group commit: a new file; a file whose earlier run left chunks and a checkpoint (they
/// are replaced, and that run's epoch is fenced out); a new version over a finished one (kept
/// instead when `keep` accepts it, with nothing written). Bytes that are too many or not the
/// declared size are refused typed, and nothing stored changes.
#[wasm_bindgen_test]
async fn a_whole_small_file_is_begun_stored_and_finished_in_one_operation() {
    use background_assets::web::container::{ChunkAt, INLINE_MAX};
    let c = fresh("whole").await;
    let finish = |size: usize, seed: u8| FinishedAsset {
        size: size as u64,
        sha256: format!("{seed:02x}{}", "0".repeat(62)),
        content_type: Some("application/x-test".into()),
    };
    let bytes = |seed: u8, size: usize| js_sys::Uint8Array::from(&pattern(seed, 0, size)[..]);

    // New: one operation, one transaction, which reads nothing first.
    let before = c.batch_stats();
    let stored = c
        .begin_and_store_whole("new", |_| true, &bytes(1, 70_000), finish(70_000, 1))
        .await
        .unwrap();
    let after = c.batch_stats();
    assert_eq!(
        (
            after.operations - before.operations,
            after.transactions - before.transactions,
            after.unread - before.unread,
            after.retried - before.retried,
        ),
        (1, 1, 1, 0)
    );
    assert_eq!((stored.size, stored.generation), (70_000, 1));
    assert_eq!(c.asset("new").await.unwrap(), Some(stored));
    assert_eq!(
        c.read_range("new", 0, 70_000).await.unwrap(),
        pattern(1, 0, 70_000)
    );
    assert!(c.load_checkpoint("new").await.unwrap().is_none());

    // An interrupted earlier run: its chunks and checkpoint are replaced, its epoch is stale.
    let record = c.begin_epoch_record("torn").await.unwrap();
    let first = ChunkAt {
        identifier: "torn",
        epoch: record.epoch,
        generation: record.generation,
        offset: 0,
    };
    c.append_chunk(first, &bytes(9, 4096), &checkpoint(4096), None)
        .await
        .unwrap();
    // The write that reads nothing finds the interrupted run's record, and the operation runs
    // again in a transaction that reads first.
    let before = c.batch_stats();
    let stored = c
        .begin_and_store_whole("torn", |_| true, &bytes(2, 5000), finish(5000, 2))
        .await
        .unwrap();
    let after = c.batch_stats();
    assert_eq!(
        (
            after.transactions - before.transactions,
            after.retried - before.retried
        ),
        (2, 1)
    );
    assert_eq!(stored.size, 5000);
    assert_eq!(
        c.read_range("torn", 0, 5000).await.unwrap(),
        pattern(2, 0, 5000)
    );
    assert!(c.load_checkpoint("torn").await.unwrap().is_none());
    let late = ChunkAt {
        offset: 4096,
        ..first
    };
    let refused = c
        .append_chunk(late, &bytes(9, 100), &checkpoint(4196), None)
        .await;
    assert!(
        refused.is_err(),
        "the interrupted run still wrote: {refused:?}"
    );
    assert_eq!(c.asset("torn").await.unwrap(), Some(stored.clone()));

    // Over a finished version: kept when `keep` says so (nothing written), replaced otherwise.
    let before = c.batch_stats();
    let kept = c
        .begin_and_store_whole("torn", |a| a.size == 5000, &bytes(3, 6000), finish(6000, 3))
        .await
        .unwrap();
    assert_eq!(kept, stored);
    assert_eq!(c.batch_stats().retried - before.retried, 1);
    assert_eq!(
        c.read_range("torn", 0, 5000).await.unwrap(),
        pattern(2, 0, 5000)
    );
    let updated = c
        .begin_and_store_whole("torn", |_| false, &bytes(3, 6000), finish(6000, 3))
        .await
        .unwrap();
    assert_eq!(
        (updated.size, updated.generation),
        (6000, stored.generation + 1)
    );
    assert_eq!(
        c.read_range("torn", 0, 6000).await.unwrap(),
        pattern(3, 0, 6000)
    );

    // Refused, typed, before anything is queued.
    let too_big = INLINE_MAX as usize + 1;
    let error = c
        .begin_and_store_whole("big", |_| true, &bytes(4, too_big), finish(too_big, 4))
        .await
        .unwrap_err();
    assert_eq!(error.name(), "DownloadInvalid", "{error}");
    let error = c
        .begin_and_store_whole("torn", |_| false, &bytes(4, 100), finish(101, 4))
        .await
        .unwrap_err();
    assert_eq!(error.name(), "DownloadInvalid", "{error}");
    assert!(c.asset("big").await.unwrap().is_none());
    assert_eq!(c.asset("torn").await.unwrap(), Some(updated));
    remove(c).await;
}

/// Fresh small files that arrive together are written in one transaction that reads nothing.
/// When one of them is not new after all (a finished version is stored), that transaction
/// stores nothing, and all of them run again in one that reads first: the new ones are stored,
/// the old version is replaced, and each caller gets its own answer.
#[wasm_bindgen_test]
async fn fresh_small_files_together_are_written_unread_or_all_again_after_reading() {
    use futures::future::join_all;
    let c = fresh("batch-unread").await;
    let finish = |size: usize| FinishedAsset {
        size: size as u64,
        sha256: "0".repeat(64),
        content_type: None,
    };
    let bytes = |seed: u8, size: usize| js_sys::Uint8Array::from(&pattern(seed, 0, size)[..]);
    for round in 0..2u8 {
        let ids: Vec<String> = (0..6).map(|i| format!("r{round}-{i}")).collect();
        if round == 1 {
            // The last one has a finished version.
            c.begin_and_store_whole(&ids[5], |_| false, &bytes(7, 3000), finish(3000))
                .await
                .unwrap();
        }
        let before = c.batch_stats();
        // All submitted in one poll: one batch.
        let stored = join_all(ids.iter().enumerate().map(|(i, id)| {
            let size = 1000 + i * 20_000;
            c.begin_and_store_whole(id, |_| false, &bytes(round + 1, size), finish(size))
        }))
        .await;
        let after = c.batch_stats();
        let retried = after.retried - before.retried;
        assert_eq!(after.unread - before.unread, 1, "{after:?}");
        assert_eq!(retried, if round == 0 { 0 } else { 6 }, "{after:?}");
        for (i, (id, stored)) in ids.iter().zip(stored).enumerate() {
            let size = 1000 + i * 20_000;
            let stored = stored.unwrap();
            let generation = if round == 1 && i == 5 { 2 } else { 1 };
            assert_eq!(
                (stored.size, stored.generation),
                (size as u64, generation),
                "{id}"
            );
            assert_eq!(c.asset(id).await.unwrap(), Some(stored), "{id}");
            assert_eq!(
                c.read_range(id, 0, size as u64).await.unwrap(),
                pattern(round + 1, 0, size),
                "{id}"
            );
            assert!(c.load_checkpoint(id).await.unwrap().is_none(), "{id}");
        }
    }
    remove(c).await;
}

/// A lone caller — each begin and small-file write awaited before the next, as one download at a
/// time does — never waits for others to join its batch, however soon after the batch before it
/// comes. Two callers at once contend, and their batch gathers first.
#[wasm_bindgen_test]
async fn a_lone_caller_never_gathers_and_contended_batches_do() {
    use background_assets::web::container::ChunkAt;
    let c = fresh("batch-lone").await;
    let before = c.batch_stats();
    for i in 0..8 {
        let id = format!("lone-{i}");
        let record = c.begin_epoch_record(&id).await.unwrap();
        let at = ChunkAt {
            identifier: &id,
            epoch: record.epoch,
            generation: record.generation,
            offset: 0,
        };
        let bytes = js_sys::Uint8Array::from(&pattern(5, 0, 5000)[..]);
        let finish = FinishedAsset {
            size: 5000,
            sha256: "0".repeat(64),
            content_type: None,
        };
        c.append_chunk(at, &bytes, &checkpoint(5000), Some(finish))
            .await
            .unwrap()
            .expect("finished");
    }
    let after = c.batch_stats();
    assert_eq!(after.operations - before.operations, 16, "{after:?}");
    assert_eq!(after.transactions - before.transactions, 16, "{after:?}");
    assert_eq!(
        after.gathered, before.gathered,
        "a lone caller waited: {after:?}"
    );
    // Two at once: the second arrives while the first's batch is starting, so the batch (two
    // operations, under GATHER_BELOW) waits for more before it runs; both share it.
    let (a, b) = futures::join!(c.begin_epoch("pair-a"), c.begin_epoch("pair-b"));
    assert_eq!((a.unwrap(), b.unwrap()), (1, 1));
    let pair = c.batch_stats();
    assert_eq!(pair.gathered - after.gathered, 1, "{pair:?}");
    assert_eq!(pair.transactions - after.transactions, 1, "{pair:?}");
    remove(c).await;
}

/// Two begins of the same download at once never share a batch: the second sees the first's
/// epoch. More than `MAX_BATCH` at once take more than one transaction. A whole small-file write
/// whose future is dropped before its batch starts writes nothing.
#[wasm_bindgen_test]
async fn the_same_download_twice_at_once_gets_two_epochs_and_a_dropped_write_stores_nothing() {
    use background_assets::web::container::{ChunkAt, MAX_BATCH};
    use futures::future::join_all;
    let c = fresh("batch-same").await;
    let (a, b) = futures::join!(c.begin_epoch("same"), c.begin_epoch("same"));
    let mut epochs = [a.unwrap(), b.unwrap()];
    epochs.sort();
    assert_eq!(epochs, [1, 2]);

    let many: Vec<String> = (0..MAX_BATCH + 6).map(|i| format!("many-{i}")).collect();
    let before = c.batch_stats();
    let began = join_all(many.iter().map(|id| c.begin_epoch(id))).await;
    assert!(began.into_iter().all(|e| e == Ok(1)));
    let after = c.batch_stats();
    assert_eq!(after.operations - before.operations, many.len() as u64);
    assert_eq!(after.transactions - before.transactions, 2, "{after:?}");

    let record = c.begin_epoch_record("dropped").await.unwrap();
    let at = ChunkAt {
        identifier: "dropped",
        epoch: record.epoch,
        generation: record.generation,
        offset: 0,
    };
    let finish = FinishedAsset {
        size: 3,
        sha256: "0".repeat(64),
        content_type: None,
    };
    let bytes = js_sys::Uint8Array::from(&b"abc"[..]);
    drop(c.append_chunk(at, &bytes, &checkpoint(3), Some(finish)));
    // Anything queued after it runs after it: once this begin answers, the dropped write's turn
    // has passed.
    c.begin_epoch("after-the-drop").await.unwrap();
    assert!(c.asset("dropped").await.unwrap().is_none());
    let record = c.load_checkpoint("dropped").await.unwrap().unwrap();
    assert_eq!((record.epoch, record.stored), (1, 0));
    remove(c).await;
}

#[wasm_bindgen_test]
async fn a_stale_epoch_cannot_write_and_changes_nothing() {
    let c = fresh("stale").await;
    let old = c.begin_epoch("d").await.unwrap();
    c.write_chunk("d", old, 0, &pattern(1, 0, 1000), &checkpoint(1000))
        .await
        .unwrap();
    let new = c.begin_epoch("d").await.unwrap(); // another context takes over
    assert!(new > old);
    for offset in [0u64, 1000] {
        let refused = c
            .write_chunk(
                "d",
                old,
                offset,
                &pattern(9, 0, 1000),
                &checkpoint(offset + 1000),
            )
            .await
            .unwrap_err();
        assert_eq!(
            refused,
            Error::StaleEpoch {
                identifier: "d".into(),
                held: old,
                current: new
            }
        );
    }
    assert_eq!(
        c.save_checkpoint("d", old, &checkpoint(5))
            .await
            .unwrap_err()
            .name(),
        "StaleEpoch"
    );
    assert_eq!(
        c.discard_chunks("d", old, &JsValue::NULL)
            .await
            .unwrap_err()
            .name(),
        "StaleEpoch"
    );
    let record = c.load_checkpoint("d").await.unwrap().unwrap();
    assert_eq!((record.epoch, done_of(&record.checkpoint)), (new, 1000));
    let finish = FinishedAsset {
        size: 1000,
        sha256: "ab".repeat(32),
        content_type: None,
    };
    assert_eq!(
        c.finish("d", old, finish.clone()).await.unwrap_err().name(),
        "StaleEpoch"
    );
    let asset = c.finish("d", new, finish).await.unwrap();
    assert_eq!(
        asset.chunk_count, 1,
        "the refused write at 1000 stored nothing"
    );
    assert_eq!(
        c.read_range("d", 0, 1000).await.unwrap(),
        pattern(1, 0, 1000)
    );
    // Writing to a download that was never begun is refused too.
    assert_eq!(
        c.write_chunk("ghost", 1, 0, b"x", &JsValue::NULL)
            .await
            .unwrap_err(),
        Error::DownloadDoesNotExist {
            identifier: "ghost".into()
        }
    );
    remove(c).await;
}

#[wasm_bindgen_test]
async fn fencing_holds_across_connections_and_data_survives_reopening() {
    let first = fresh("connections").await;
    let second = Container::open(first.name()).await.unwrap();
    let old = first.begin_epoch("x").await.unwrap();
    first
        .write_chunk("x", old, 0, &pattern(3, 0, 64), &checkpoint(64))
        .await
        .unwrap();
    let new = second.begin_epoch("x").await.unwrap(); // the other context takes over
    assert_eq!(
        first
            .write_chunk("x", old, 64, &pattern(3, 64, 64), &checkpoint(128))
            .await
            .unwrap_err(),
        Error::StaleEpoch {
            identifier: "x".into(),
            held: old,
            current: new
        }
    );
    second
        .write_chunk("x", new, 64, &pattern(3, 64, 64), &checkpoint(128))
        .await
        .unwrap();
    let name = second.name().to_string();
    second.close();
    drop(second);
    let reopened = Container::open(&name).await.unwrap();
    let record = reopened.load_checkpoint("x").await.unwrap().unwrap();
    assert_eq!((record.epoch, done_of(&record.checkpoint)), (new, 128));
    reopened
        .finish(
            "x",
            new,
            FinishedAsset {
                size: 128,
                sha256: "00".repeat(32),
                content_type: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        first.read_range("x", 0, 128).await.unwrap(),
        pattern(3, 0, 128)
    );
    reopened.close();
    remove(first).await;
}

#[wasm_bindgen_test]
async fn gaps_and_wrong_sizes_are_refused() {
    let c = fresh("gaps").await;
    let epoch = c.begin_epoch("g").await.unwrap();
    c.write_chunk("g", epoch, 0, &pattern(1, 0, 100), &checkpoint(100))
        .await
        .unwrap();
    let gap = c
        .write_chunk("g", epoch, 200, &pattern(1, 200, 100), &checkpoint(300))
        .await
        .unwrap_err();
    assert_eq!(gap.name(), "Storage");
    assert!(gap.to_string().contains("200"), "{gap}");
    let record = c.load_checkpoint("g").await.unwrap().unwrap();
    assert_eq!((record.stored, done_of(&record.checkpoint)), (100, 100));
    let short = FinishedAsset {
        size: 300,
        sha256: "11".repeat(32),
        content_type: None,
    };
    assert_eq!(
        c.finish("g", epoch, short).await.unwrap_err(),
        Error::SizeMismatch {
            identifier: "g".into(),
            expected: 300,
            actual: 100
        }
    );
    assert!(
        c.asset("g").await.unwrap().is_none(),
        "nothing was finished"
    );
    assert!(
        c.load_checkpoint("g").await.unwrap().is_some(),
        "the download is still there"
    );
    remove(c).await;
}

#[wasm_bindgen_test]
async fn discard_restarts_from_zero() {
    let c = fresh("discard").await;
    let epoch = c.begin_epoch("r").await.unwrap();
    c.write_chunk("r", epoch, 0, &pattern(1, 0, 100), &checkpoint(100))
        .await
        .unwrap();
    c.write_chunk("r", epoch, 100, &pattern(1, 100, 100), &checkpoint(200))
        .await
        .unwrap();
    c.discard_chunks("r", epoch, &checkpoint(0)).await.unwrap();
    let record = c.load_checkpoint("r").await.unwrap().unwrap();
    assert_eq!(done_of(&record.checkpoint), 0);
    c.write_chunk("r", epoch, 0, &pattern(2, 0, 150), &checkpoint(150))
        .await
        .unwrap();
    let asset = c
        .finish(
            "r",
            epoch,
            FinishedAsset {
                size: 150,
                sha256: "cd".repeat(32),
                content_type: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(asset.chunk_count, 1);
    assert_eq!(c.read_range("r", 0, 150).await.unwrap(), pattern(2, 0, 150));
    remove(c).await;
}

#[wasm_bindgen_test]
async fn finish_list_delete() {
    let c = fresh("list").await;
    assert!(c.list().await.unwrap().is_empty());
    store(&c, "one", 1, 300, 128).await;
    store(&c, "two", 2, 10, 128).await;
    let mut listed = c.list().await.unwrap();
    listed.sort_by(|a, b| a.identifier.cmp(&b.identifier));
    assert_eq!(listed.len(), 2);
    assert_eq!(
        (
            listed[0].identifier.as_str(),
            listed[0].size,
            listed[0].chunk_count
        ),
        ("one", 300, 3)
    );
    assert_eq!((listed[1].identifier.as_str(), listed[1].size), ("two", 10));
    assert_eq!(
        listed[0].content_type.as_deref(),
        Some("application/x-test")
    );
    assert!(listed[0].finished_at > 0.0);
    assert!(
        c.downloads().await.unwrap().is_empty(),
        "finished downloads leave no record"
    );
    assert!(c.delete("one").await.unwrap());
    assert!(!c.delete("one").await.unwrap());
    let left: Vec<_> = c
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.identifier)
        .collect();
    assert_eq!(left, ["two"]);
    assert_eq!(
        c.as_blob("one").await.unwrap_err().name(),
        "DownloadDoesNotExist"
    );
    assert_eq!(c.read_range("two", 0, 10).await.unwrap(), pattern(2, 0, 10));
    remove(c).await;
}

#[wasm_bindgen_test]
async fn an_update_keeps_serving_the_old_version_until_it_finishes() {
    let c = fresh("update").await;
    store(&c, "u", 1, 200, 64).await;
    let epoch = c.begin_epoch("u").await.unwrap();
    c.write_chunk("u", epoch, 0, &pattern(5, 0, 100), &checkpoint(100))
        .await
        .unwrap();
    assert_eq!(c.read_range("u", 0, 200).await.unwrap(), pattern(1, 0, 200));
    let updated = c
        .finish(
            "u",
            epoch,
            FinishedAsset {
                size: 100,
                sha256: "ef".repeat(32),
                content_type: None,
            },
        )
        .await
        .unwrap();
    assert_eq!((updated.size, updated.chunk_count), (100, 1));
    assert_eq!(c.read_range("u", 0, 100).await.unwrap(), pattern(5, 0, 100));
    remove(c).await;
}

#[wasm_bindgen_test]
async fn as_blob_holds_the_exact_bytes() {
    let c = fresh("blob").await;
    store(&c, "b", 3, 70_000, 16_384).await;
    let blob = c.as_blob("b").await.unwrap();
    assert_eq!(blob.size(), 70_000.0);
    assert_eq!(blob.type_(), "application/x-test");
    let buffer = JsFuture::from(blob.array_buffer()).await.unwrap();
    assert_eq!(
        js_sys::Uint8Array::new(&buffer).to_vec(),
        pattern(3, 0, 70_000)
    );
    let response = c.as_response("b").await.unwrap();
    assert_eq!(response.status(), 200);
    remove(c).await;
}

#[wasm_bindgen_test]
async fn storage_estimate_and_persistence() {
    let estimate = Container::estimate().await.unwrap();
    assert!(estimate.quota > 0.0, "{estimate:?}");
    assert!(
        estimate.usage >= 0.0 && estimate.usage <= estimate.quota,
        "{estimate:?}"
    );
    let _already: bool = Container::persisted().await.unwrap();
    if js::in_worker() {
        assert_eq!(
            Container::persist().await.unwrap_err().name(),
            "Unsupported"
        );
    } else {
        // The browser decides (and may ask the user, which automation never answers).
        let persist = std::pin::pin!(Container::persist());
        let timer = gloo_timers::future::TimeoutFuture::new(2_000);
        if let futures::future::Either::Left((answer, _)) =
            futures::future::select(persist, timer).await
        {
            let _granted: bool = answer.unwrap();
        }
    }
}
