//! `background_assets::web::manager::DownloadManager` (sw and page suites): the core manager
//! driven with real transfers against the local CDN, its delegate, its IndexedDB state and its
//! Web Lock. Every test opens a fresh database (deleted at the end) and every CDN URL carries a
//! random `probe`, so runs never share storage, locks or log entries.
//!
//! Mid-way points are made deterministic with `fault=stall:N&times=1`: the first response sends
//! N bytes and then nothing for far longer than any test waits.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use background_assets::core::declaration::parse_declaration;
use background_assets::core::download::{DownloadState, Identifier, UrlDownload};
use background_assets::core::error::Error;
use background_assets::core::manager::Caller;
use background_assets::core::queue::QueueLimits;
use background_assets::web::container::Container;
use background_assets::web::js;
use background_assets::web::locks::{acquire, query, LockOptions};
use background_assets::web::manager::{
    DownloadManager, DownloadManagerDelegate, FinishedDownload, ManagerConfig, EXCLUSIVE_LOCK,
};
use wasm_bindgen_test::wasm_bindgen_test;

use super::common::{
    cdn_sha256, gen_path, gets, ident, probe, requested_within, unique_id, wait_until,
};

const MIB: u64 = 1 << 20;
const STALL_MS: u64 = 20_000;

fn stall(at: u64) -> String {
    format!("fault=stall:{at}&stall-ms={STALL_MS}&times=1")
}

/// What the delegate saw, in order.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Begin(String),
    Pause(String),
    Write {
        id: String,
        total: u64,
    },
    Fail {
        id: String,
        code: u32,
    },
    Finish {
        id: String,
        size: u64,
        sha256: String,
    },
    Requeue(String),
}

#[derive(Default)]
struct Recorder {
    seen: RefCell<Vec<Seen>>,
    finished: RefCell<Vec<FinishedDownload>>,
}

impl Recorder {
    fn of(&self, id: &str) -> Vec<Seen> {
        self.seen
            .borrow()
            .iter()
            .filter(|s| match s {
                Seen::Begin(i) | Seen::Pause(i) | Seen::Requeue(i) => i == id,
                Seen::Write { id: i, .. } | Seen::Fail { id: i, .. } => i == id,
                Seen::Finish { id: i, .. } => i == id,
            })
            .cloned()
            .collect()
    }

    fn written(&self, id: &str) -> u64 {
        self.of(id)
            .iter()
            .filter_map(|s| match s {
                Seen::Write { total, .. } => Some(*total),
                _ => None,
            })
            .max()
            .unwrap_or(0)
    }

    fn finished(&self, id: &str) -> bool {
        self.of(id)
            .iter()
            .any(|s| matches!(s, Seen::Finish { .. } | Seen::Fail { .. }))
    }

    fn position(&self, wanted: &Seen) -> Option<usize> {
        self.seen.borrow().iter().position(|s| s == wanted)
    }

    /// Where in the whole record `id` finished (successfully), if it did.
    fn finish_position(&self, id: &str) -> Option<usize> {
        self.seen
            .borrow()
            .iter()
            .position(|s| matches!(s, Seen::Finish { id: i, .. } if i == id))
    }
}

impl DownloadManagerDelegate for Recorder {
    fn did_begin(&self, id: &Identifier) {
        self.seen.borrow_mut().push(Seen::Begin(id.to_string()));
    }
    fn did_pause(&self, id: &Identifier) {
        self.seen.borrow_mut().push(Seen::Pause(id.to_string()));
    }
    fn did_write_data(&self, id: &Identifier, _: u64, total: u64, _: Option<u64>) {
        self.seen.borrow_mut().push(Seen::Write {
            id: id.to_string(),
            total,
        });
    }
    fn did_fail(&self, id: &Identifier, error: &Error) {
        self.seen.borrow_mut().push(Seen::Fail {
            id: id.to_string(),
            code: error.code(),
        });
    }
    fn did_finish(&self, id: &Identifier, finished: FinishedDownload) {
        self.seen.borrow_mut().push(Seen::Finish {
            id: id.to_string(),
            size: finished.size,
            sha256: finished.sha256.clone(),
        });
        self.finished.borrow_mut().push(finished);
    }
    fn did_requeue_as_non_essential(&self, id: &Identifier) {
        self.seen.borrow_mut().push(Seen::Requeue(id.to_string()));
    }
}

fn config(database: &str) -> ManagerConfig {
    let page = url::Url::parse(&js::origin()).unwrap().join("/").unwrap();
    let declaration = parse_declaration(
        r#"{ "initialDownloadRestrictions": { "domainAllowList": ["127.0.0.1"] } }"#,
        &page,
    )
    .unwrap();
    let mut config = ManagerConfig::new(declaration, page);
    config.database = database.to_string();
    config.transfer.chunk_size = MIB as u32;
    config.transfer.backoff_base_ms = 50;
    config.transfer.backoff_max_ms = 400;
    // A pause aborts at once: these tests see the resume as a `Range` request (the held
    // response is tested in tests/common/transfer.rs).
    config.transfer.pause_hold_ms = 0;
    config
}

/// A manager on a fresh database, launched (no allowance limits), with a recording delegate.
async fn open(label: &str) -> (DownloadManager, Rc<Recorder>, String) {
    open_with(label, |_| {}).await
}

/// [`open_with`] limited to one download at a time.
async fn open_one_at_a_time(label: &str) -> (DownloadManager, Rc<Recorder>, String) {
    open_with(label, |config| {
        config.limits = QueueLimits {
            max_concurrent: 1,
            bandwidth: None,
        };
    })
    .await
}

/// [`open`] with the [`config`] changed by `adjust` first.
async fn open_with(
    label: &str,
    adjust: impl FnOnce(&mut ManagerConfig),
) -> (DownloadManager, Rc<Recorder>, String) {
    let database = super::common::unique_name(&format!("ba-manager-{label}"));
    let mut config = config(&database);
    adjust(&mut config);
    let manager = DownloadManager::open(config).await.unwrap();
    manager.did_launch().await.unwrap();
    let recorder = watch(&manager);
    (manager, recorder, database)
}

/// A fresh recording delegate, set on `manager`.
fn watch(manager: &DownloadManager) -> Rc<Recorder> {
    let recorder = Rc::new(Recorder::default());
    manager.set_delegate(Some(recorder.clone()));
    recorder
}

async fn remove(manager: DownloadManager, database: &str) {
    manager.close().await;
    drop(manager);
    Container::delete_database(database).await.unwrap();
}

/// One generated CDN body as a download: what a test schedules and later checks against.
struct Planned {
    id: String,
    path: String,
    len: u64,
    seed: u64,
}

impl Planned {
    /// A fresh `label` identifier for `len` bytes of a seed in `seed_base..seed_base + 1000`,
    /// served with the CDN `faults` (a query, may be empty).
    fn new(label: &str, len: u64, seed_base: u64, faults: &str) -> Planned {
        let seed = seed_base + probe() % 1000;
        Planned {
            id: unique_id(label),
            path: gen_path(len, seed, faults),
            len,
            seed,
        }
    }

    fn download(&self) -> UrlDownload {
        super::common::cdn_download(&self.id, &self.path, Some(self.len))
    }

    /// Schedules it on `manager`, which must accept it.
    async fn schedule_on(self, manager: &DownloadManager) -> Planned {
        manager.schedule(self.download()).await.unwrap();
        self
    }

    /// What the delegate hears when it finishes: its size and the CDN's digest.
    async fn finish(&self) -> Seen {
        Seen::Finish {
            id: self.id.clone(),
            size: self.len,
            sha256: cdn_sha256(self.len, self.seed).await,
        }
    }
}

/// What the delegate hears when `id` fails with `error`.
fn failed(id: &str, error: Error) -> Seen {
    Seen::Fail {
        id: id.to_string(),
        code: error.code(),
    }
}

async fn stored(manager: &DownloadManager, id: &str) -> u64 {
    let container = manager.container().await.unwrap();
    let record = container.load_checkpoint(id).await.unwrap();
    record.map_or(0, |r| r.stored)
}

async fn received(manager: &DownloadManager, id: &str) -> u64 {
    let progress = manager.transfer_progress(&ident(id)).await.unwrap();
    progress.map_or(0, |p| p.bytes_received)
}

async fn wait_received(manager: &DownloadManager, id: &str, at_least: u64) {
    for _ in 0..3000 {
        if received(manager, id).await >= at_least {
            return;
        }
        gloo_timers::future::TimeoutFuture::new(5).await;
    }
    panic!("`{id}` never received {at_least} bytes");
}

/// Once its checkpoint is dropped (waited for), `id` has neither a checkpoint nor an asset.
async fn assert_nothing_stored(manager: &DownloadManager, id: &str) {
    let container = manager.container().await.unwrap();
    for _ in 0..1000 {
        if container.load_checkpoint(id).await.unwrap().is_none() {
            break;
        }
        gloo_timers::future::TimeoutFuture::new(5).await;
    }
    assert!(container.load_checkpoint(id).await.unwrap().is_none());
    assert!(container.asset(id).await.unwrap().is_none());
}

/// The CDN saw `path` fetched twice, the second time resumed with `Range: bytes=<from>-`;
/// returns the body bytes it sent in all.
async fn resumed_once_from(path: &str, from: u64) -> u64 {
    let logged = gets(path).await;
    assert_eq!(logged.len(), 2, "{logged:?}");
    assert_eq!(logged[1].range, Some(format!("bytes={from}-")));
    logged.iter().map(|l| l.sent).sum()
}
/// The delegate saw begin, then progress up to its length, then finish with the CDN's digest,
/// and the stored asset reads back at its size.
async fn assert_finished_in_order(recorder: &Recorder, planned: &Planned) {
    let (id, len) = (planned.id.as_str(), planned.len);
    let seen = recorder.of(id);
    assert_eq!(seen.first(), Some(&Seen::Begin(id.to_string())), "{seen:?}");
    let totals: Vec<u64> = seen
        .iter()
        .filter_map(|s| match s {
            Seen::Write { total, .. } => Some(*total),
            _ => None,
        })
        .collect();
    assert!(!totals.is_empty(), "no progress for {id}: {seen:?}");
    assert!(totals.windows(2).all(|w| w[0] <= w[1]), "{totals:?}");
    assert_eq!(totals.last(), Some(&len));
    assert_eq!(seen.last(), Some(&planned.finish().await), "{seen:?}");
    let finished = recorder
        .finished
        .borrow()
        .iter()
        .find(|f| f.identifier.as_str() == id)
        .cloned()
        .unwrap();
    assert_eq!(finished.blob().await.unwrap().size() as u64, len);
    let response = finished.response().await.unwrap();
    assert_eq!(response.status(), 200);
}

#[wasm_bindgen_test]
async fn two_scheduled_downloads_finish_and_the_delegate_sees_begin_progress_finish() {
    let (manager, recorder, database) = open("two").await;
    let a = Planned::new("a", 2 * MIB + 123, 20_000, "")
        .schedule_on(&manager)
        .await;
    let b = Planned::new("b", MIB + MIB / 2, 21_000, "")
        .schedule_on(&manager)
        .await;
    let current = manager.fetch_current_downloads().await.unwrap();
    assert_eq!(current.len(), 2, "{current:?}");
    wait_until("both finished", || {
        recorder.finished(&a.id) && recorder.finished(&b.id)
    })
    .await;
    assert_finished_in_order(&recorder, &a).await;
    assert_finished_in_order(&recorder, &b).await;
    assert!(manager.fetch_current_downloads().await.unwrap().is_empty());
    remove(manager, &database).await;
}

/// Once a transfer has received every byte, the small file the queue starts next is requested
/// while the transfer stores its bytes and its result waits for its save (and the next start
/// with it); its run then stores that response and sends no request of its own. One at a time,
/// with the state lock held by the test (no result saved, nothing started): the next file is
/// requested once the first is stored, and the one after it is not. Not in Firefox, where the
/// manager sends no request ahead: there nothing is requested until the next file starts.
#[wasm_bindgen_test]
async fn the_next_small_file_is_requested_while_the_result_before_it_waits_for_its_save() {
    const LEN: u64 = 65_536;
    let (manager, recorder, database) = open_one_at_a_time("prefetch").await;
    // About a second for the first body: time to take the state lock while it runs.
    let first = Planned::new("pf-a", LEN, 23_000, &format!("throttle={LEN}"))
        .schedule_on(&manager)
        .await;
    let next = Planned::new("pf-b", LEN, 24_000, "")
        .schedule_on(&manager)
        .await;
    let last = Planned::new("pf-c", LEN, 25_000, "")
        .schedule_on(&manager)
        .await;
    assert!(requested_within(&first.path, 10_000).await, "never started");
    let state = acquire(
        &background_assets::web::manager::state_lock_name(&database),
        LockOptions::exclusive(),
    )
    .await
    .unwrap()
    .expect("the state lock");
    assert!(!recorder.finished(&first.id), "the first ended too soon");
    let container = manager.container().await.unwrap();
    for _ in 0..500 {
        if container.asset(&first.id).await.unwrap().is_some() {
            break;
        }
        gloo_timers::future::TimeoutFuture::new(10).await;
    }
    assert!(
        container.asset(&first.id).await.unwrap().is_some(),
        "not stored"
    );
    let ahead = !js::is_firefox();
    assert_eq!(
        requested_within(&next.path, 3_000).await,
        ahead,
        "the next file requested while the result before it waited (ahead: {ahead})"
    );
    gloo_timers::future::TimeoutFuture::new(200).await;
    assert!(
        !recorder.finished(&first.id),
        "a result was saved without the state lock"
    );
    assert!(
        gets(&last.path).await.is_empty(),
        "one request ahead at a time"
    );
    state.release().await;
    wait_until("all finished", || {
        [&first, &next, &last]
            .iter()
            .all(|p| recorder.finished(&p.id))
    })
    .await;
    for planned in [&first, &next, &last] {
        assert_finished_in_order(&recorder, planned).await;
        let logged = gets(&planned.path).await;
        assert_eq!(logged.len(), 1, "{}: {logged:?}", planned.id);
        assert_eq!((logged[0].range.as_deref(), logged[0].sent), (None, LEN));
    }
    remove(manager, &database).await;
}

#[wasm_bindgen_test]
async fn a_duplicate_schedule_is_refused() {
    let (manager, _recorder, database) = open("dup").await;
    let dup = Planned::new("dup", 2 * MIB, 22_000, &stall(MIB + 5))
        .schedule_on(&manager)
        .await;
    let again = manager.schedule(dup.download()).await;
    assert!(
        matches!(&again, Err(Error::DownloadAlreadyScheduled { identifier }) if *identifier == dup.id),
        "{again:?}"
    );
    assert_eq!(manager.fetch_current_downloads().await.unwrap().len(), 1);
    manager.cancel(&ident(&dup.id)).await.unwrap();
    remove(manager, &database).await;
}

#[wasm_bindgen_test]
async fn cancel_reports_cancelled_and_leaves_nothing_stored() {
    let unhandled = super::common::UnhandledRejections::watch();
    let (manager, recorder, database) = open("cancel").await;
    let Planned { id, .. } = Planned::new("cancel", 3 * MIB, 23_000, &stall(2 * MIB + 5))
        .schedule_on(&manager)
        .await;
    wait_until("2 MiB written", || recorder.written(&id) >= 2 * MIB).await;
    assert_eq!(stored(&manager, &id).await, 2 * MIB);
    // While it runs, one Web Lock names it: the download's own, held by the manager for the run.
    let naming: Vec<String> = query()
        .await
        .unwrap()
        .held
        .into_iter()
        .map(|lock| lock.name)
        .filter(|name| name.ends_with(&format!("/{id}")))
        .collect();
    assert_eq!(
        naming,
        vec![background_assets::web::transfer::lock_name(&id)]
    );
    manager.cancel(&ident(&id)).await.unwrap();
    let cancelled = failed(
        &id,
        Error::Cancelled {
            identifier: id.clone(),
        },
    );
    assert_eq!(recorder.of(&id).last(), Some(&cancelled));
    assert_nothing_stored(&manager, &id).await;
    assert!(manager.fetch_current_downloads().await.unwrap().is_empty());
    let again = manager.cancel(&ident(&id)).await;
    assert!(
        matches!(again, Err(Error::DownloadNotScheduled { .. })),
        "{again:?}"
    );
    assert!(!recorder
        .of(&id)
        .iter()
        .any(|s| matches!(s, Seen::Finish { .. })));
    assert_eq!(
        unhandled.seen(),
        Vec::<String>::new(),
        "unhandled rejections"
    );
    remove(manager, &database).await;
}

#[wasm_bindgen_test]
async fn pause_and_resume_finish_with_zero_wasted_bytes() {
    let unhandled = super::common::UnhandledRejections::watch();
    const STALL_AT: u64 = MIB + MIB / 2 + 777;
    let (manager, recorder, database) = open("pause").await;
    let paused = Planned::new("pause", 3 * MIB, 24_000, &stall(STALL_AT))
        .schedule_on(&manager)
        .await;
    let id = &paused.id;
    wait_received(&manager, id, STALL_AT).await;
    manager.pause(&ident(id)).await.unwrap();
    assert_eq!(recorder.of(id).last(), Some(&Seen::Pause(id.clone())));
    let info = manager.fetch_current_downloads().await.unwrap();
    assert_eq!(info[0].state, DownloadState::Paused);
    for _ in 0..1000 {
        if stored(&manager, id).await == STALL_AT {
            break;
        }
        gloo_timers::future::TimeoutFuture::new(5).await;
    }
    assert_eq!(
        stored(&manager, id).await,
        STALL_AT,
        "pause stores what arrived"
    );
    assert_eq!(
        gets(&paused.path).await.len(),
        1,
        "nothing fetched while paused"
    );
    manager.resume(&ident(id)).await.unwrap();
    wait_until("finished", || recorder.finished(id)).await;
    assert_finished_in_order(&recorder, &paused).await;
    assert_eq!(
        resumed_once_from(&paused.path, STALL_AT).await,
        paused.len,
        "not one byte sent twice"
    );
    assert_eq!(
        unhandled.seen(),
        Vec::<String>::new(),
        "unhandled rejections"
    );
    remove(manager, &database).await;
}

#[wasm_bindgen_test]
async fn start_foreground_promotes_a_scheduled_download_and_preempted_ones_continue() {
    let unhandled = super::common::UnhandledRejections::watch();
    const LEN: u64 = 3 * MIB;
    const STALL_AT: u64 = MIB + MIB / 2 + 333;
    let (manager, recorder, database) = open("fg").await;
    manager
        .set_limits(QueueLimits {
            max_concurrent: 1,
            bandwidth: None,
        })
        .await
        .unwrap();
    let stalled = Planned::new("stalled", LEN, 25_000, &stall(STALL_AT))
        .schedule_on(&manager)
        .await;
    wait_received(&manager, &stalled.id, STALL_AT).await;

    let in_page = manager.caller().await.unwrap() == Caller::Page;
    assert_eq!(
        in_page,
        !js::in_worker(),
        "the caller is detected from the global"
    );
    if !in_page {
        // The service worker may not start foreground downloads (Apple's rule).
        let refused = manager.start_foreground(ident(&stalled.id)).await;
        let error = refused.unwrap_err();
        assert!(
            matches!(error, Error::CallFromExtensionNotAllowed { .. }),
            "{error:?}"
        );
        assert_eq!(error.code(), 50);
        let info = manager.fetch_current_downloads().await.unwrap();
        assert!(!info[0].foreground);
        manager.cancel(&ident(&stalled.id)).await.unwrap();
        remove(manager, &database).await;
        return;
    }

    // A waiting download, promoted: the running stalled one is pre-empted (paused, not lost).
    let waiting = Planned::new("waiting", MIB, 26_000, "")
        .schedule_on(&manager)
        .await;
    assert!(recorder.of(&waiting.id).is_empty(), "no free slot yet");
    manager.start_foreground(ident(&waiting.id)).await.unwrap();
    wait_until("both finished", || {
        recorder.finished(&waiting.id) && recorder.finished(&stalled.id)
    })
    .await;
    let paused = recorder.position(&Seen::Pause(stalled.id.clone())).unwrap();
    let begun = recorder.position(&Seen::Begin(waiting.id.clone())).unwrap();
    assert!(paused < begun, "pre-empted before the foreground one began");
    assert_finished_in_order(&recorder, &waiting).await;
    let waiting_done = recorder.finish_position(&waiting.id).unwrap();
    let stalled_done = recorder.finish_position(&stalled.id).unwrap();
    assert!(waiting_done < stalled_done);
    assert_eq!(resumed_once_from(&stalled.path, STALL_AT).await, LEN);

    // A paused, stalled-mid-way download, promoted: it continues from its checkpoint.
    let again = Planned::new("again", LEN, 27_000, &stall(STALL_AT))
        .schedule_on(&manager)
        .await;
    wait_received(&manager, &again.id, STALL_AT).await;
    manager.pause(&ident(&again.id)).await.unwrap();
    manager.start_foreground(ident(&again.id)).await.unwrap();
    let info = manager.fetch_current_downloads().await.unwrap();
    assert!(info
        .iter()
        .any(|d| d.identifier.as_str() == again.id && d.foreground));
    wait_until("promoted one finished", || recorder.finished(&again.id)).await;
    assert_finished_in_order(&recorder, &again).await;
    assert_eq!(resumed_once_from(&again.path, STALL_AT).await, LEN);
    assert_eq!(
        unhandled.seen(),
        Vec::<String>::new(),
        "unhandled rejections"
    );
    remove(manager, &database).await;
}

#[wasm_bindgen_test]
async fn exclusive_control_with_a_deadline_times_out_while_another_holds_the_lock() {
    let unhandled = super::common::UnhandledRejections::watch();
    let (manager, _recorder, database) = open("lock").await;
    let holder = acquire(EXCLUSIVE_LOCK, LockOptions::exclusive())
        .await
        .unwrap()
        .unwrap();
    let ran = Cell::new(false);
    let started = js_sys::Date::now();
    let refused = manager
        .with_exclusive_control_before(started + 300.0, || async { ran.set(true) })
        .await;
    let waited = js_sys::Date::now() - started;
    assert!(
        matches!(&refused, Err(Error::LockTimeout { name, .. }) if name == EXCLUSIVE_LOCK),
        "{refused:?}"
    );
    assert!(!ran.get(), "the closure must not run without the lock");
    assert!(waited >= 250.0, "gave up after {waited} ms");
    let past = manager
        .with_exclusive_control_before(js_sys::Date::now() - 1.0, || async { ran.set(true) })
        .await;
    assert!(matches!(past, Err(Error::LockTimeout { .. })), "{past:?}");
    assert!(!ran.get());
    holder.release().await;
    let held_inside = manager
        .with_exclusive_control(|| async { query().await.unwrap().is_held(EXCLUSIVE_LOCK) })
        .await
        .unwrap();
    assert!(held_inside);
    let value = manager
        .with_exclusive_control_before(js_sys::Date::now() + 2000.0, || async { 7 })
        .await
        .unwrap();
    assert_eq!(value, 7);
    assert!(!query().await.unwrap().is_held(EXCLUSIVE_LOCK), "released");
    assert_eq!(
        unhandled.seen(),
        Vec::<String>::new(),
        "unhandled rejections"
    );
    remove(manager, &database).await;
}

#[wasm_bindgen_test]
async fn a_manager_opened_later_sees_the_stored_downloads_and_continues_them() {
    const LEN: u64 = 3 * MIB;
    const STALL_AT: u64 = 2 * MIB + 99;
    let (first, _recorder, database) = open("reopen").await;
    let reopened = Planned::new("reopen", LEN, 28_000, &stall(STALL_AT))
        .schedule_on(&first)
        .await;
    let id = reopened.id.as_str();
    wait_received(&first, id, STALL_AT).await;
    let checkpoint = stored(&first, id).await;
    assert_eq!(checkpoint, 2 * MIB, "two whole chunks written");
    first.close().await; // like a killed context: the transfer stops, the state stays
    let closed = first.fetch_current_downloads().await;
    assert!(matches!(closed, Err(Error::Storage { .. })), "{closed:?}");
    drop(first);

    let second = DownloadManager::open(config(&database)).await.unwrap();
    let recorder = watch(&second);
    let current = second.fetch_current_downloads().await.unwrap();
    assert_eq!(current.len(), 1, "{current:?}");
    assert_eq!(current[0].identifier.as_str(), id);
    assert_eq!(current[0].progress.total_expected, Some(LEN));
    wait_until("the new manager finished it", || recorder.finished(id)).await;
    let seen = recorder.of(id);
    assert_eq!(seen.last(), Some(&reopened.finish().await), "{seen:?}");
    resumed_once_from(&reopened.path, checkpoint).await;
    remove(second, &database).await;
}

#[wasm_bindgen_test]
async fn the_shared_manager_is_one_per_global_and_applies_the_default_declaration() {
    let shared = DownloadManager::shared();
    let again = DownloadManager::shared();
    let in_page = shared.caller().await.unwrap() == Caller::Page;
    assert_eq!(in_page, !js::in_worker());
    let container = shared.container().await.unwrap();
    assert_eq!(container.name(), Container::DEFAULT_NAME);
    assert!(Rc::ptr_eq(&container, &again.container().await.unwrap()));
    // The declaration is the origin's /pkg.json (the test runner may serve the repository's).
    // Without one: same origin only, and (in the worker) nothing before first launch.
    let pkg_json = format!("{}/pkg.json", js::origin());
    let declared = wasm_bindgen_futures::JsFuture::from(super::common::global_fetch(
        &pkg_json,
        &web_sys::RequestInit::new(),
    ))
    .await
    .map(|r| js::get(&r, "status").as_f64() == Some(200.0))
    .unwrap_or(false);
    let planned = Planned::new("shared", MIB, 29_000, "");
    let scheduled = again.schedule(planned.download()).await;
    match scheduled {
        Ok(()) if declared => {
            // The served declaration allows the CDN: the download is scheduled for everyone.
            let current = shared.fetch_current_downloads().await.unwrap();
            assert!(current.iter().any(|d| d.identifier.as_str() == planned.id));
            shared.cancel(&ident(&planned.id)).await.unwrap();
        }
        scheduled => {
            let refused = scheduled.unwrap_err();
            assert!(
                matches!(
                    refused,
                    Error::SessionDownloadDisallowedByDomain { .. }
                        | Error::SessionDownloadDisallowedByAllowance { .. }
                        | Error::DownloadWouldExceedAllowance { .. }
                ),
                "{refused:?}"
            );
        }
    }
    assert!(shared.fetch_current_downloads().await.unwrap().is_empty());
    shared.close().await;
    assert!(again.caller().await.is_err(), "closed for every clone");
    let reopened = DownloadManager::shared();
    let fresh = reopened.container().await.unwrap();
    assert!(
        !Rc::ptr_eq(&container, &fresh),
        "shared() opens a new manager after close"
    );
    reopened.close().await;
    Container::delete_database(Container::DEFAULT_NAME)
        .await
        .unwrap();
}

#[wasm_bindgen_test]
async fn a_failed_download_reports_its_typed_error_and_leaves_nothing() {
    let (manager, recorder, database) = open("fail").await;
    let Planned { id, .. } = Planned::new("missing", MIB, 30_000, "fault=status:404")
        .schedule_on(&manager)
        .await;
    wait_until("failed", || recorder.finished(&id)).await;
    let not_found = failed(
        &id,
        Error::HttpStatus {
            identifier: id.clone(),
            status: 404,
        },
    );
    assert_eq!(recorder.of(&id), vec![Seen::Begin(id.clone()), not_found]);
    assert!(manager.fetch_current_downloads().await.unwrap().is_empty());
    assert_nothing_stored(&manager, &id).await;
    remove(manager, &database).await;
}

#[wasm_bindgen_test]
async fn a_failed_essential_download_is_requeued_as_non_essential_and_finishes() {
    use background_assets::core::manager::ExtensionEvent;
    let (manager, recorder, database) = open_with("essential", |installing| {
        installing.caller = Some(Caller::Extension {
            event: Some(ExtensionEvent::Install),
        });
    })
    .await;
    let planned = Planned::new("essential", MIB, 31_000, "fault=status:404&times=1");
    let mut essential = planned.download();
    essential.essential = true;
    manager.schedule(essential).await.unwrap();
    let id = planned.id.as_str();
    wait_until("finished", || recorder.finish_position(id).is_some()).await;
    let seen = recorder.of(id);
    let not_found = failed(
        id,
        Error::HttpStatus {
            identifier: id.to_string(),
            status: 404,
        },
    );
    assert_eq!(
        seen[..4],
        [
            Seen::Begin(id.to_string()),
            not_found,
            Seen::Requeue(id.to_string()),
            Seen::Begin(id.to_string()),
        ],
        "{seen:?}"
    );
    assert_eq!(seen.last(), Some(&planned.finish().await));
    remove(manager, &database).await;
}

/// A `BroadcastChannel` on `database`'s channel that counts the `changed` messages (one per
/// saved decision batch of another context... or of this one: a channel object does not hear
/// itself, but this one is a separate object).
fn count_changes(database: &str) -> js_sys::Object {
    let make = js_sys::Function::new_with_args(
        "name",
        "const channel = new BroadcastChannel(name);
         const box = { changed: 0, close: () => channel.close() };
         channel.onmessage = (e) => { if (e.data && e.data.kind === 'changed') box.changed++; };
         return box;",
    );
    make.call1(
        &wasm_bindgen::JsValue::NULL,
        &background_assets::web::manager::channel_name(database).into(),
    )
    .unwrap()
    .into()
}

/// Decisions that arrive while a batch runs go into the next batch under the same state lock,
/// which then does not read the stored state again; what every batch saved is there for a
/// manager opened afresh, and a decision of another context made after the streak is kept too.
#[wasm_bindgen_test]
async fn waves_of_decisions_keep_the_state_lock_and_lose_nothing() {
    const WAVES: usize = 20;
    let (manager, _recorder, database) = open_one_at_a_time("keep").await;
    let planned: Vec<Planned> = (0..WAVES * 3)
        .map(|i| Planned::new(&format!("wave-{i}"), MIB, 62_000, &stall(0)))
        .collect();
    let mut calls = Vec::new();
    for wave in planned.chunks(3) {
        let downloads: Vec<UrlDownload> = wave.iter().map(Planned::download).collect();
        let m = manager.clone();
        let (sender, receiver) = futures::channel::oneshot::channel();
        wasm_bindgen_futures::spawn_local(async move {
            let calls = downloads.into_iter().map(|d| m.schedule(d));
            let _ = sender.send(futures::future::join_all(calls).await);
        });
        calls.push(receiver);
        gloo_timers::future::TimeoutFuture::new(1).await;
    }
    for outcome in futures::future::join_all(calls).await {
        assert!(outcome.unwrap().iter().all(Result::is_ok));
    }
    let stats = manager.decision_stats().await.unwrap();
    assert!(
        (1..stats.batches).contains(&stats.kept_batches),
        "{stats:?}"
    );
    // Another context decides after the streak; then everything is stored.
    let mut other = config(&database);
    other.caller = Some(Caller::Page);
    let page = DownloadManager::open(other).await.unwrap();
    let late = Planned::new("late", MIB, 62_000, &stall(0));
    page.schedule(late.download()).await.unwrap();
    let listed = page.fetch_current_downloads().await.unwrap();
    assert_eq!(listed.len(), planned.len() + 1, "{} listed", listed.len());
    page.close().await;
    drop(page);
    let mine = manager.fetch_current_downloads().await.unwrap();
    assert!(mine.iter().any(|d| d.identifier.as_str() == late.id));
    remove(manager, &database).await;
}

#[wasm_bindgen_test]
async fn schedules_made_together_are_group_committed_and_each_settles_on_its_own() {
    const N: usize = 120;
    let (manager, _recorder, database) = open_one_at_a_time("batch").await;
    let changes = count_changes(&database);
    let planned: Vec<Planned> = (0..N)
        .map(|i| Planned::new(&format!("batch-{i}"), MIB, 60_000, &stall(0)))
        .collect();
    let mut downloads: Vec<UrlDownload> = planned.iter().map(Planned::download).collect();
    // One bad call in the middle of the batch: a duplicate of the first identifier.
    downloads.insert(N / 2, planned[0].download());
    let outcomes =
        futures::future::join_all(downloads.into_iter().map(|d| manager.schedule(d))).await;
    for (i, outcome) in outcomes.iter().enumerate() {
        if i == N / 2 {
            assert!(
                matches!(outcome, Err(Error::DownloadAlreadyScheduled { .. })),
                "{outcome:?}"
            );
        } else {
            assert_eq!(outcome, &Ok(()), "call {i}");
        }
    }
    // Every good call is stored: a manager opened afresh on the database reads them all.
    let mut fresh = config(&database);
    fresh.caller = Some(Caller::Page);
    let reader = DownloadManager::open(fresh).await.unwrap();
    let listed = reader.fetch_current_downloads().await.unwrap();
    assert_eq!(listed.len(), N, "{} listed", listed.len());
    for p in &planned {
        assert!(
            listed.iter().any(|d| d.identifier.as_str() == p.id),
            "{}",
            p.id
        );
    }
    reader.close().await;
    drop(reader);
    // Far fewer saves than calls: the other contexts were told once per batch (a save per call
    // would be N + 1 messages).
    let changed = js::get(&changes, "changed").as_f64().unwrap() as usize;
    assert!(
        (1..=N / 10).contains(&changed),
        "{changed} `changed` messages for {} schedule calls",
        N + 1
    );
    // The manager's own count agrees: every call was a decision (and the open one), in far
    // fewer batches, and the time under the lock covers its reads and saves.
    let stats = manager.decision_stats().await.unwrap();
    assert!(stats.decisions > N as u64, "{stats:?}");
    assert!((1..=N as u64 / 4).contains(&stats.batches), "{stats:?}");
    assert!(
        stats.lock_held_ms >= stats.read_ms + stats.save_ms - 1.0,
        "{stats:?}"
    );
    // A claim's time splits into its owner lock, its read and its hand-over.
    let parts = stats.claim_lock_ms + stats.claim_read_ms + stats.claim_spawn_ms;
    assert!(parts <= stats.start_ms + 0.5, "{stats:?}");
    let close: js_sys::Function = js::get(&changes, "close").into();
    close.call0(&changes).unwrap();
    remove(manager, &database).await;
}

/// A database written by an older build holds the whole state's JSON under `manager`: a
/// manager opened on it reads it (the download is listed and runs), and its next decision
/// stores the state by parts — the old whole-state text is gone, and the stored state read back
/// holds both downloads.
#[wasm_bindgen_test]
async fn a_state_stored_whole_by_an_older_build_is_read_and_rewritten_by_parts() {
    use background_assets::core::manager::Manager as CoreManager;
    use background_assets::web::manager::{stored_state, STATE_KEY, STATE_REVISION_KEY};
    let database = super::common::unique_name("ba-manager-old-state");
    let cfg = config(&database);
    let old = Planned::new("old", MIB, 61_000, &stall(0));
    let mut core = CoreManager::new(cfg.declaration.clone(), &cfg.page_url);
    core.did_launch();
    core.schedule(old.download(), Caller::Page, 0).unwrap();
    while core.poll_event().is_some() {}
    let container = Container::open(&database).await.unwrap();
    let record = js::object();
    js::set(&record, "revision", &"old-1".into());
    js::set(
        &record,
        "state",
        &serde_json::to_string(&core).unwrap().into(),
    );
    container.put_meta(STATE_KEY, &record).await.unwrap();
    container
        .put_meta(STATE_REVISION_KEY, &"old-1".into())
        .await
        .unwrap();
    container.close();
    drop(container);

    let manager = DownloadManager::open(config(&database)).await.unwrap();
    let listed = manager.fetch_current_downloads().await.unwrap();
    assert!(
        listed.iter().any(|d| d.identifier.as_str() == old.id),
        "{listed:?}"
    );
    let new = Planned::new("new", MIB, 62_000, &stall(0))
        .schedule_on(&manager)
        .await;
    let container = manager.container().await.unwrap();
    let head = container.get_meta(STATE_KEY).await.unwrap().unwrap();
    assert!(
        js::get(&head, "state").is_undefined(),
        "the whole-state text is gone"
    );
    assert_eq!(js::get(&head, "parts"), wasm_bindgen::JsValue::TRUE);
    let stored = stored_state(&container).await.unwrap().unwrap();
    for id in [&old.id, &new.id] {
        assert!(stored.download(&ident(id)).is_some(), "{id} stored");
    }
    remove(manager, &database).await;
}
