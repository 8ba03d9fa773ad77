//! The fault matrix (issue 8), through `background_assets::web::manager::DownloadManager` in a
//! real browser (sw and page suites): each case schedules one download against the local CDN's
//! fault language and asserts its final state — finished with exactly the CDN's bytes and
//! SHA-256, or failed with the expected typed [`Error`] through the delegate's `did_fail` — and
//! that the asset stored before it in the same container (the "bystander") is unchanged and
//! that nothing else was stored.
//!
//! Interruptions that the fault language cannot time (a `200`, a new `ETag` or a bad
//! `Content-Range` in answer to a *resume*) are made with a throttled body and the manager's
//! `pause`/`resume`: the resume is the second request of the URL, and the fault applies to it.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use background_assets::core::declaration::parse_declaration;
use background_assets::core::download::{Identifier, PackMember};
use background_assets::core::error::{hex, Error};
use background_assets::core::manager::pack_file_identifier;
use background_assets::web::container::Container;
use background_assets::web::js;
use background_assets::web::locks::{acquire, LockOptions};
use background_assets::web::manager::{
    DownloadManager, DownloadManagerDelegate, FinishedDownload, ManagerConfig,
};
use background_assets::web::transfer::lock_name;
use sha2::{Digest, Sha256};
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::wasm_bindgen_test;

use super::common::{
    cdn_download, cdn_sha256, gen_path, gets, probe, unique_id, unique_name, wait_until,
};

const KIB: u64 = 1 << 10;
/// Chunk size of every case: interruptions land between known chunk boundaries.
const CHUNK: u64 = 64 * KIB;
/// Attempts before a transfer gives up (small: the retry-cap cases stay quick).
const MAX_ATTEMPTS: u32 = 3;

fn cdn() -> &'static str {
    super::common::cdn_origin()
}

/// `http://localhost:PORT`: the same CDN under a host name the allow-list may leave out.
fn cdn_as_localhost() -> String {
    cdn().replacen("127.0.0.1", "localhost", 1)
}

/// How a download ended, as the delegate saw it.
#[derive(Debug, Clone)]
enum Outcome {
    Finished { size: u64, sha256: String },
    Failed(Error),
}

/// Records each download's end and its written total.
#[derive(Default)]
struct Recorder {
    ends: RefCell<BTreeMap<String, Outcome>>,
    written: RefCell<BTreeMap<String, u64>>,
}

impl Recorder {
    fn outcome(&self, id: &str) -> Option<Outcome> {
        self.ends.borrow().get(id).cloned()
    }

    fn written(&self, id: &str) -> u64 {
        self.written.borrow().get(id).copied().unwrap_or(0)
    }
}

impl DownloadManagerDelegate for Recorder {
    fn did_write_data(&self, id: &Identifier, _: u64, total: u64, _: Option<u64>) {
        let mut written = self.written.borrow_mut();
        let entry = written.entry(id.to_string()).or_default();
        *entry = (*entry).max(total);
    }
    fn did_fail(&self, id: &Identifier, error: &Error) {
        self.ends
            .borrow_mut()
            .insert(id.to_string(), Outcome::Failed(error.clone()));
    }
    fn did_finish(&self, id: &Identifier, finished: FinishedDownload) {
        self.ends.borrow_mut().insert(
            id.to_string(),
            Outcome::Finished {
                size: finished.size,
                sha256: finished.sha256,
            },
        );
    }
}

async fn sleep(ms: u32) {
    gloo_timers::future::TimeoutFuture::new(ms).await;
}

/// The asset stored before the case: it must come out of every case byte-for-byte unchanged.
struct Bystander {
    id: String,
    len: u64,
    sha256: String,
}

/// One case: a manager on its own database, with a finished bystander asset.
struct Case {
    manager: DownloadManager,
    recorder: Rc<Recorder>,
    database: String,
    bystander: Bystander,
}

fn page_url() -> url::Url {
    url::Url::parse(&js::origin()).unwrap().join("/").unwrap()
}

/// The case's configuration: `declaration` (JSON), 64 KiB chunks, quick retries.
fn config(database: &str, declaration: &str) -> ManagerConfig {
    let declaration = parse_declaration(declaration, &page_url()).unwrap();
    let mut config = ManagerConfig::new(declaration, page_url());
    config.database = database.to_string();
    config.transfer.chunk_size = CHUNK as u32;
    config.transfer.max_attempts = MAX_ATTEMPTS;
    config.transfer.backoff_base_ms = 50;
    config.transfer.backoff_max_ms = 200;
    config.transfer.retry_after_max_ms = 5_000;
    config.transfer.stall_min_bytes_per_sec = 1024;
    config.transfer.stall_window_ms = 300;
    // A pause aborts at once: the cases that pause make the resume the URL's second request.
    config.transfer.pause_hold_ms = 0;
    config
}

const ALLOW_LOOPBACK: &str = r#"{ "initialDownloadRestrictions":
    { "domainAllowList": ["127.0.0.1"] } }"#;

async fn blob_sha256(blob: &web_sys::Blob) -> (u64, String) {
    let buffer = JsFuture::from(blob.array_buffer()).await.unwrap();
    let bytes = js_sys::Uint8Array::new(&buffer).to_vec();
    (bytes.len() as u64, hex(&Sha256::digest(&bytes)))
}

/// A seed in `base..base + 1000` no other run of the suite uses for the same case.
fn seed_near(base: u64) -> u64 {
    base + probe() % 1000
}

/// One download of a case, as it ended.
struct Ran {
    id: String,
    /// The CDN path (and query) it fetched.
    path: String,
    outcome: Outcome,
    /// From scheduling to its end, in ms.
    took_ms: f64,
}

impl Case {
    /// Opens a manager on a fresh database with `config` tuned by `tune`, and stores the
    /// bystander (a 96 KiB asset, finished and checked against the CDN).
    async fn open(label: &str, tune: impl FnOnce(&mut ManagerConfig)) -> Case {
        Case::open_with(label, ALLOW_LOOPBACK, tune).await
    }

    async fn open_with(
        label: &str,
        declaration: &str,
        tune: impl FnOnce(&mut ManagerConfig),
    ) -> Case {
        let database = unique_name(&format!("ba-faults-{label}"));
        let mut config = config(&database, declaration);
        tune(&mut config);
        let manager = DownloadManager::open(config).await.unwrap();
        manager.did_launch().await.unwrap();
        let recorder = Rc::new(Recorder::default());
        manager.set_delegate(Some(recorder.clone()));
        let len = 96 * KIB + 7;
        let seed = seed_near(90_000);
        let id = unique_id("bystander");
        let path = gen_path(len, seed, "");
        manager
            .schedule(cdn_download(&id, &path, Some(len)))
            .await
            .unwrap();
        let mut case = Case {
            manager,
            recorder,
            database,
            bystander: Bystander {
                id,
                len,
                sha256: cdn_sha256(len, seed).await,
            },
        };
        let id = case.bystander.id.clone();
        let outcome = case.end_of(&id).await;
        match outcome {
            Outcome::Finished { size, sha256 } => {
                assert_eq!((size, &sha256), (len, &case.bystander.sha256))
            }
            other => panic!("the bystander did not finish: {other:?}"),
        }
        case.bystander.sha256 = case.stored_sha256(&id).await.unwrap().1;
        case
    }

    /// Waits for `id`'s end (finished or failed).
    async fn end_of(&self, id: &str) -> Outcome {
        let recorder = self.recorder.clone();
        wait_until(&format!("`{id}` ended"), || recorder.outcome(id).is_some()).await;
        self.recorder.outcome(id).unwrap()
    }

    /// Schedules a fresh download labelled `label` of `/gen/len/seed?query` on the CDN with the
    /// declared size `declared`, without waiting: its identifier and path.
    async fn start(
        &self,
        label: &str,
        len: u64,
        seed: u64,
        query: &str,
        declared: Option<u64>,
    ) -> (String, String) {
        let id = unique_id(label);
        let path = gen_path(len, seed, query);
        self.manager
            .schedule(cdn_download(&id, &path, declared))
            .await
            .unwrap();
        (id, path)
    }

    /// Downloads `/gen/len/seed?query` (declared size `len`) as a fresh `label` download and
    /// waits for its end.
    async fn run_gen(&self, label: &str, len: u64, seed: u64, query: &str) -> Ran {
        let started = js_sys::Date::now();
        let (id, path) = self.start(label, len, seed, query, Some(len)).await;
        let outcome = self.end_of(&id).await;
        let took_ms = js_sys::Date::now() - started;
        Ran {
            id,
            path,
            outcome,
            took_ms,
        }
    }

    /// [`Case::run_gen`], asserting it finished with exactly the CDN's bytes
    /// ([`Case::assert_finished`]).
    async fn finishes(&self, label: &str, len: u64, seed: u64, query: &str) -> Ran {
        let ran = self.run_gen(label, len, seed, query).await;
        self.assert_finished(&ran.id, &ran.outcome, len, seed).await;
        ran
    }

    /// [`Case::run_gen`], asserting it failed and left nothing stored
    /// ([`Case::assert_failed_and_gone`]): the download and its error.
    async fn fails(&self, label: &str, len: u64, seed: u64, query: &str) -> (Ran, Error) {
        let ran = self.run_gen(label, len, seed, query).await;
        let error = self.assert_failed_and_gone(&ran.id, &ran.outcome).await;
        (ran, error)
    }

    /// The stored asset's size and the SHA-256 of its bytes as read back, if stored.
    async fn stored_sha256(&self, id: &str) -> Option<(u64, String)> {
        let container = self.manager.container().await.unwrap();
        let asset = container.asset(id).await.unwrap()?;
        let (size, sha256) = blob_sha256(&container.as_blob(id).await.unwrap()).await;
        assert_eq!(
            (asset.size, &asset.sha256),
            (size, &sha256),
            "`{id}`: the stored record disagrees with its bytes"
        );
        Some((size, sha256))
    }

    /// `id` finished with exactly the CDN's bytes of `/gen/len/seed`, read back from storage.
    async fn assert_finished(&self, id: &str, outcome: &Outcome, len: u64, seed: u64) {
        let expected = cdn_sha256(len, seed).await;
        match outcome {
            Outcome::Finished { size, sha256 } => {
                assert_eq!((*size, sha256), (len, &expected), "`{id}` reported")
            }
            other => panic!("`{id}` should have finished: {other:?}"),
        }
        assert_eq!(
            self.stored_sha256(id).await,
            Some((len, expected)),
            "`{id}` stored"
        );
        self.assert_nothing_else_changed(Some(id)).await;
    }

    /// `id` failed, and nothing of it is stored (eventually: the manager deletes after the
    /// event).
    async fn assert_failed_and_gone(&self, id: &str, outcome: &Outcome) -> Error {
        let Outcome::Failed(error) = outcome else {
            panic!("`{id}` should have failed: {outcome:?}");
        };
        let container = self.manager.container().await.unwrap();
        for _ in 0..400 {
            let checkpoint = container.load_checkpoint(id).await.unwrap();
            let asset = container.asset(id).await.unwrap();
            if checkpoint.is_none() && asset.is_none() {
                break;
            }
            sleep(5).await;
        }
        assert!(
            container.asset(id).await.unwrap().is_none(),
            "`{id}` failed ({error}) but an asset is stored"
        );
        assert!(
            container.load_checkpoint(id).await.unwrap().is_none(),
            "`{id}` failed ({error}) but its chunks are kept"
        );
        self.assert_nothing_else_changed(None).await;
        error.clone()
    }

    /// The bystander reads back unchanged, and the container holds only it (and `finished`).
    async fn assert_nothing_else_changed(&self, finished: Option<&str>) {
        let by = &self.bystander;
        assert_eq!(
            self.stored_sha256(&by.id).await,
            Some((by.len, by.sha256.clone())),
            "the bystander changed"
        );
        let container = self.manager.container().await.unwrap();
        let mut stored: Vec<String> = container
            .list()
            .await
            .unwrap()
            .into_iter()
            .map(|a| a.identifier)
            .collect();
        stored.sort();
        let mut expected: Vec<String> = std::iter::once(by.id.clone())
            .chain(finished.map(str::to_string))
            .collect();
        expected.sort();
        assert_eq!(stored, expected, "what the container holds");
    }

    /// Waits until `id` wrote at least `bytes`, pauses it and resumes it: the resume is the
    /// URL's second request.
    async fn pause_and_resume_after(&self, id: &str, bytes: u64) {
        let recorder = self.recorder.clone();
        wait_until(&format!("`{id}` wrote {bytes} bytes"), || {
            recorder.written(id) >= bytes
        })
        .await;
        let ident = Identifier::new(id).unwrap();
        self.manager.pause(&ident).await.unwrap();
        self.manager.resume(&ident).await.unwrap();
    }

    async fn close(self) {
        self.manager.close().await;
        drop(self.manager);
        Container::delete_database(&self.database).await.unwrap();
    }
}

/// A case of its own (the default configuration tuned by `tune`) in which one download of
/// `/gen/len/<a seed near seed_base>?query` must finish with exactly the CDN's bytes: the
/// download and the CDN's log of its URL.
async fn finishes_in_own_case(
    label: &str,
    tune: impl FnOnce(&mut ManagerConfig),
    len: u64,
    seed_base: u64,
    query: &str,
) -> (Ran, Vec<super::common::Logged>) {
    let case = Case::open(label, tune).await;
    let ran = case.finishes(label, len, seed_near(seed_base), query).await;
    let logged = gets(&ran.path).await;
    case.close().await;
    (ran, logged)
}

/// A case of its own (the default configuration tuned by `tune`) in which one download of
/// `/gen/len/<a seed near seed_base>?query` must fail and leave nothing stored: the download,
/// its error and the CDN's log of its URL.
async fn fails_in_own_case(
    label: &str,
    tune: impl FnOnce(&mut ManagerConfig),
    len: u64,
    seed_base: u64,
    query: &str,
) -> (Ran, Error, Vec<super::common::Logged>) {
    let case = Case::open(label, tune).await;
    let (ran, error) = case.fails(label, len, seed_near(seed_base), query).await;
    let logged = gets(&ran.path).await;
    case.close().await;
    (ran, error, logged)
}

/// A fault answered to the resume of a throttled download (`fault`, applied to every request):
/// the download still finishes with exact bytes; returns the CDN's log of its requests.
async fn resume_answered_with(label: &str, fault: &str) -> Vec<super::common::Logged> {
    const LEN: u64 = 384 * KIB;
    let case = Case::open(label, |_| {}).await;
    let seed = seed_near(91_000);
    let query = format!("{fault}&throttle=786432");
    let (id, path) = case
        .start(label, LEN, seed, query.trim_start_matches('&'), Some(LEN))
        .await;
    case.pause_and_resume_after(&id, CHUNK).await;
    let outcome = case.end_of(&id).await;
    case.assert_finished(&id, &outcome, LEN, seed).await;
    let logged = gets(&path).await;
    assert!(logged.len() >= 2, "{logged:?}");
    assert!(
        logged[1].range.is_some(),
        "the resume asked for a range: {logged:?}"
    );
    case.close().await;
    logged
}

#[wasm_bindgen_test]
async fn fault_connection_dropped_mid_body_resumes_with_range() {
    let query = "fault=drop:200000&times=1";
    let (_, logged) = finishes_in_own_case("drop", |_| {}, 512 * KIB, 92_000, query).await;
    assert_eq!(logged.len(), 2, "{logged:?}");
    assert_eq!(logged[0].sent, 200_000, "{logged:?}");
    // The browser may discard what was still queued when the connection broke (Chromium does):
    // with nothing received there is nothing to resume from, else the rest comes as a 206.
    let expected = if logged[1].range.is_some() { 206 } else { 200 };
    assert_eq!(logged[1].status, expected, "{logged:?}");
}

#[wasm_bindgen_test]
async fn fault_network_offline_and_back_resumes_with_range() {
    // The CDN cuts the body after 200000 bytes and then gives no answer at all (the connection
    // closes before any byte) to every request of the URL for 800 ms: the network is gone for a
    // while. The body is paced so that chunks reach storage before the cut.
    const LEN: u64 = 512 * KIB;
    const CUT: u64 = 200_000;
    // Backoffs of 100, 200, 400, 400… ms: several attempts fall inside the outage, and
    // enough are allowed to outlast it.
    let case = Case::open("offline", |c| {
        c.transfer.max_attempts = 8;
        c.transfer.backoff_base_ms = 100;
        c.transfer.backoff_max_ms = 400;
    })
    .await;
    let seed = seed_near(108_000);
    let query = format!("fault=outage:{CUT}&outage-ms=800&times=1&throttle=262144");
    let ran = case.run_gen("offline", LEN, seed, &query).await;
    let logged = gets(&ran.path).await;
    wasm_bindgen_test::console_log!("offline case: {:?} {logged:?}", ran.outcome);
    case.assert_finished(&ran.id, &ran.outcome, LEN, seed).await;
    assert_eq!(
        (logged[0].range.as_deref(), logged[0].sent),
        (None, CUT),
        "{logged:?}"
    );
    let refused = logged.iter().filter(|l| l.status == 0).count();
    assert!(
        refused >= 1,
        "attempts while the network was down got no answer: {logged:?}"
    );
    let last = logged.last().unwrap();
    assert_eq!(last.status, 206, "back online, it resumed: {logged:?}");
    let from = last
        .open_range_start()
        .unwrap_or_else(|| panic!("an open range: {logged:?}"));
    assert!(
        (CHUNK..=CUT).contains(&from),
        "resumed from its stored bytes (not from zero, not past the cut): {logged:?}"
    );
    assert_eq!(
        logged.iter().filter(|l| l.status == 200).count(),
        1,
        "fetched from zero only once: {logged:?}"
    );
    case.close().await;
}

#[wasm_bindgen_test]
async fn fault_200_instead_of_206_restarts_from_zero() {
    let logged = resume_answered_with("no-range", "fault=no-range").await;
    assert_eq!(logged.len(), 2, "{logged:?}");
    assert_eq!(logged[1].status, 200, "{logged:?}");
}

#[wasm_bindgen_test]
async fn fault_etag_changed_between_attempts_restarts_from_zero() {
    let logged = resume_answered_with("etag", "fault=etag-change").await;
    assert_eq!(logged.len(), 2, "{logged:?}");
    assert_eq!(
        logged[1].status, 200,
        "If-Range no longer matches: {logged:?}"
    );
    assert!(logged[1].if_range.is_some(), "{logged:?}");
}

#[wasm_bindgen_test]
async fn fault_wrong_content_range_restarts_from_zero() {
    let logged = resume_answered_with("bad-range", "fault=bad-content-range").await;
    assert_eq!(logged[1].status, 206, "{logged:?}");
    let last = logged.last().unwrap();
    assert_eq!(
        (last.range.as_deref(), last.status),
        (None, 200),
        "fetched again from zero: {logged:?}"
    );
}

#[wasm_bindgen_test]
async fn fault_no_validator_restarts_from_zero() {
    let query = "fault=no-validator,drop:200000&times=1";
    let (_, logged) = finishes_in_own_case("no-validator", |_| {}, 512 * KIB, 93_000, query).await;
    assert_eq!(logged.len(), 2, "{logged:?}");
    assert_eq!(
        (logged[1].range.as_deref(), logged[1].if_range.as_deref()),
        (None, None),
        "nothing to resume against: {logged:?}"
    );
}

#[wasm_bindgen_test]
async fn fault_body_shorter_than_content_length_resumes() {
    // Paced, so that chunks reach storage before the body ends short: unpaced, the whole body
    // can arrive at once and Chromium may discard what was still queued when the connection
    // closed, leaving nothing to resume from (then the resume is a 200 from zero).
    let query = "fault=short:100000&times=1&throttle=262144";
    let (_, logged) = finishes_in_own_case("short", |_| {}, 512 * KIB, 94_000, query).await;
    assert_eq!(logged.len(), 2, "{logged:?}");
    assert_eq!(logged[1].status, 206, "{logged:?}");
}

#[wasm_bindgen_test]
async fn fault_body_longer_than_declared_fails_with_size_mismatch() {
    const LEN: u64 = 256 * KIB;
    let (ran, error, logged) =
        fails_in_own_case("long", |_| {}, LEN, 95_000, "fault=long:1000").await;
    assert_eq!(
        error,
        Error::SizeMismatch {
            identifier: ran.id,
            expected: LEN,
            actual: LEN + 1000
        }
    );
    assert_eq!(logged.len(), 1, "no retry");
}

#[wasm_bindgen_test]
async fn fault_416_for_a_resume_restarts_from_zero() {
    // The first response is longer than the file (no size declared): the download is paused
    // past the real end, and the resume asks for a range the file no longer has.
    const LEN: u64 = 192 * KIB;
    const EXTRA: u64 = 256 * KIB;
    let case = Case::open("416", |_| {}).await;
    let seed = seed_near(96_000);
    let query = format!("fault=long:{EXTRA}&times=1&throttle=393216");
    let (id, path) = case.start("r416", LEN, seed, &query, None).await;
    case.pause_and_resume_after(&id, LEN + CHUNK).await;
    let outcome = case.end_of(&id).await;
    let logged = gets(&path).await;
    wasm_bindgen_test::console_log!("416 case: {outcome:?} {logged:?}");
    case.assert_finished(&id, &outcome, LEN, seed).await;
    assert_eq!(logged.len(), 3, "{logged:?}");
    assert_eq!(logged[1].status, 416, "{logged:?}");
    assert_eq!(
        (logged[2].range.as_deref(), logged[2].status),
        (None, 200),
        "{logged:?}"
    );
    case.close().await;
}

#[wasm_bindgen_test]
async fn fault_503_retry_after_is_honoured() {
    let query = "fault=status:503&retry-after=1&times=1";
    let (ran, logged) = finishes_in_own_case("retry-after", |_| {}, 128 * KIB, 97_000, query).await;
    let took = ran.took_ms;
    assert!(
        took >= 900.0,
        "waited {took} ms, not the 1 s Retry-After (the backoff is 50 ms)"
    );
    assert_eq!(logged.len(), 2);
}

#[wasm_bindgen_test]
async fn fault_503_retry_after_is_clamped() {
    let clamp = |c: &mut ManagerConfig| c.transfer.retry_after_max_ms = 400;
    let query = "fault=status:503&retry-after=3600&times=1";
    let (ran, _) = finishes_in_own_case("clamped", clamp, 128 * KIB, 98_000, query).await;
    let took = ran.took_ms;
    assert!(
        (350.0..5_000.0).contains(&took),
        "waited {took} ms: should be the 400 ms clamp (not an hour, not the 50 ms backoff)"
    );
}

#[wasm_bindgen_test]
async fn fault_repeated_503_ends_in_retries_exhausted() {
    let (ran, error, logged) =
        fails_in_own_case("always-503", |_| {}, 128 * KIB, 99_000, "fault=status:503").await;
    assert!(
        matches!(&error, Error::RetriesExhausted { identifier, attempts, .. }
            if *identifier == ran.id && *attempts == MAX_ATTEMPTS),
        "{error:?}"
    );
    assert_eq!(logged.len(), MAX_ATTEMPTS as usize);
}

#[wasm_bindgen_test]
async fn fault_404_and_410_fail_without_retries() {
    let case = Case::open("gone", |_| {}).await;
    for status in [404u16, 410] {
        let label = format!("s{status}");
        let query = format!("fault=status:{status}");
        let (ran, error) = case
            .fails(&label, 128 * KIB, seed_near(100_000), &query)
            .await;
        assert_eq!(
            error,
            Error::HttpStatus {
                identifier: ran.id.clone(),
                status
            }
        );
        assert_eq!(gets(&ran.path).await.len(), 1, "{status}: no retry");
    }
    case.close().await;
}

#[wasm_bindgen_test]
async fn fault_stall_after_n_bytes_ends_in_stalled() {
    // Every attempt restarts from zero (no-range) and stalls at the same byte: no progress.
    let two_attempts = |c: &mut ManagerConfig| c.transfer.max_attempts = 2;
    let query = "fault=stall:32768,no-range&stall-ms=4000";
    let (ran, error, logged) =
        fails_in_own_case("stall", two_attempts, 256 * KIB, 101_000, query).await;
    assert_eq!(
        error,
        Error::Stalled {
            identifier: ran.id,
            min_bytes_per_sec: 1024,
            window_ms: 300
        }
    );
    assert_eq!(logged.len(), 2);
}

#[wasm_bindgen_test]
async fn fault_a_stall_that_recovers_finishes() {
    let query = "fault=stall:100000&stall-ms=4000&times=1";
    let (_, logged) = finishes_in_own_case("stall-once", |_| {}, 256 * KIB, 102_000, query).await;
    assert_eq!(logged.len(), 2, "{logged:?}");
    assert_eq!(logged[1].status, 206, "{logged:?}");
}

#[wasm_bindgen_test]
async fn fault_redirect_to_an_allowed_domain_finishes() {
    const LEN: u64 = 256 * KIB;
    let allow_both = r#"{ "initialDownloadRestrictions":
        { "domainAllowList": ["127.0.0.1", "localhost"] } }"#;
    let case = Case::open_with("redirect-ok", allow_both, |_| {}).await;
    let seed = seed_near(103_000);
    let target = format!("{}/gen/{LEN}/{seed}", cdn_as_localhost());
    let query = format!("fault=redirect-origin:{target}");
    let ran = case.finishes("redirect-ok", LEN, seed, &query).await;
    assert_eq!(gets(&ran.path).await[0].status, 302);
    case.close().await;
}

#[wasm_bindgen_test]
async fn fault_redirect_to_a_disallowed_domain_is_refused() {
    const LEN: u64 = 256 * KIB;
    let case = Case::open("redirect-no", |_| {}).await;
    let seed = seed_near(104_000);
    let target = format!("{}/gen/{LEN}/{seed}", cdn_as_localhost());
    let query = format!("fault=redirect-origin:{target}");
    let (_, error) = case.fails("redirect-no", LEN, seed, &query).await;
    assert_eq!(
        error,
        Error::SessionDownloadDisallowedByDomain {
            host: "localhost".into()
        }
    );
    case.close().await;
}

#[wasm_bindgen_test]
async fn fault_digest_mismatch_of_a_pack_file_fails_typed() {
    const LEN: u64 = 256 * KIB;
    let seed = seed_near(105_000);
    let path = gen_path(LEN, seed, "");
    let wrong = "ab".repeat(32);
    let declaration = format!(
        r#"{{ "initialDownloadRestrictions": {{ "domainAllowList": ["127.0.0.1"] }},
            "assetPacks": [ {{ "id": "faulty", "version": "1", "downloadPolicy": "onDemand",
              "files": [ {{ "path": "f.bin", "url": "{}{path}", "size": {LEN},
                           "sha256": "{wrong}" }} ] }} ] }}"#,
        cdn()
    );
    let case = Case::open_with("digest", &declaration, |_| {}).await;
    let pack = Identifier::new("faulty").unwrap();
    let id = pack_file_identifier(&pack, "1", "f.bin");
    let mut file = cdn_download(id.as_str(), &path, Some(LEN));
    file.pack = Some(PackMember {
        pack_id: pack,
        path: "f.bin".into(),
    });
    case.manager.schedule(file).await.unwrap();
    let outcome = case.end_of(id.as_str()).await;
    let error = case.assert_failed_and_gone(id.as_str(), &outcome).await;
    assert_eq!(
        error,
        Error::IntegrityMismatch {
            identifier: id.to_string(),
            expected: wrong,
            actual: cdn_sha256(LEN, seed).await
        }
    );
    case.close().await;
}

#[wasm_bindgen_test]
async fn fault_a_stolen_lock_stops_the_transfer_writing() {
    const LEN: u64 = 512 * KIB;
    let case = Case::open("steal", |_| {}).await;
    let seed = seed_near(106_000);
    let (id, _) = case
        .start("steal", LEN, seed, "throttle=262144", Some(LEN))
        .await;
    let recorder = case.recorder.clone();
    wait_until("a chunk is written", || recorder.written(&id) >= CHUNK).await;
    let thief = acquire(&lock_name(&id), LockOptions::exclusive().steal())
        .await
        .unwrap()
        .expect("steal is granted");
    let container = case.manager.container().await.unwrap();
    let epoch = container.begin_epoch(&id).await.unwrap();
    let checkpoint = || async {
        let checkpoint = container.load_checkpoint(&id).await.unwrap();
        checkpoint.unwrap_or_else(|| {
            panic!(
                "the fenced context deleted the download the thief now owns (its outcome: {:?})",
                case.recorder.outcome(&id)
            )
        })
    };
    let at_theft = checkpoint().await;
    assert_eq!(at_theft.epoch, epoch);
    // Long enough for the old holder to receive two more chunks had it kept going.
    sleep(600).await;
    let later = checkpoint().await;
    assert_eq!(
        (later.epoch, later.stored),
        (epoch, at_theft.stored),
        "the fenced holder wrote after its lock was stolen"
    );
    assert!(
        !matches!(case.recorder.outcome(&id), Some(Outcome::Finished { .. })),
        "finished without its lock"
    );
    assert!(container.asset(&id).await.unwrap().is_none());
    thief.release().await;
    // The thief let go: the download is not lost — a run under the lock continues it from the
    // checkpoint, to exactly the CDN's bytes.
    let outcome = case.end_of(&id).await;
    case.assert_finished(&id, &outcome, LEN, seed).await;
    case.close().await;
}

/// A context killed mid-download (its manager closed: transfers dropped, state kept), a new
/// manager opened on the same database continues from the checkpoint, and the server answers
/// that resume with `fault` (applied to every request).
async fn killed_then_resumed_with(label: &str, fault: &str) -> Vec<super::common::Logged> {
    const LEN: u64 = 384 * KIB;
    let case = Case::open(label, |_| {}).await;
    let seed = seed_near(107_000);
    let query = format!("{fault}&throttle=786432");
    let (id, path) = case
        .start(label, LEN, seed, query.trim_start_matches('&'), Some(LEN))
        .await;
    let recorder = case.recorder.clone();
    wait_until("two chunks are written", || {
        recorder.written(&id) >= 2 * CHUNK
    })
    .await;
    case.manager.close().await; // like a killed worker: the state says it runs
    let manager = DownloadManager::open(config(&case.database, ALLOW_LOOPBACK))
        .await
        .unwrap();
    let recorder = Rc::new(Recorder::default());
    manager.set_delegate(Some(recorder.clone()));
    let case = Case {
        manager,
        recorder,
        ..case
    };
    let outcome = case.end_of(&id).await;
    let logged = gets(&path).await;
    wasm_bindgen_test::console_log!("{label}: {outcome:?} {logged:?}");
    case.assert_finished(&id, &outcome, LEN, seed).await;
    case.close().await;
    logged
}

#[wasm_bindgen_test]
async fn fault_killed_context_resumes_from_its_checkpoint() {
    let logged = killed_then_resumed_with("killed", "").await;
    assert!(logged.len() >= 2, "{logged:?}");
    assert_eq!(logged[1].status, 206, "{logged:?}");
}

#[wasm_bindgen_test]
async fn fault_killed_context_resume_answered_with_a_wrong_content_range_restarts() {
    let logged = killed_then_resumed_with("killed-bad-range", "fault=bad-content-range").await;
    assert_eq!(logged[1].status, 206, "{logged:?}");
    let last = logged.last().unwrap();
    assert_eq!(
        (last.range.as_deref(), last.status),
        (None, 200),
        "{logged:?}"
    );
}
