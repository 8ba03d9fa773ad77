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

use super::common::{cdn_sha256, gen_path, gets, ident, probe, unique_id, wait_until};

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
    config
}

/// A manager on a fresh database, launched (no allowance limits), with a recording delegate.
async fn open(label: &str) -> (DownloadManager, Rc<Recorder>, String) {
    let database = super::common::unique_name(&format!("ba-manager-{label}"));
    let manager = DownloadManager::open(config(&database)).await.unwrap();
    manager.did_launch().await.unwrap();
    let recorder = Rc::new(Recorder::default());
    manager.set_delegate(Some(recorder.clone()));
    (manager, recorder, database)
}

async fn remove(manager: DownloadManager, database: &str) {
    manager.close().await;
    drop(manager);
    Container::delete_database(database).await.unwrap();
}

fn download(id: &str, path: &str, len: u64) -> UrlDownload {
    super::common::cdn_download(id, path, Some(len))
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

/// The delegate saw begin, then progress up to `len`, then finish with the CDN's digest, and
/// the stored asset reads back at its size.
async fn assert_finished_in_order(recorder: &Recorder, id: &str, len: u64, seed: u64) {
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
    let expected = Seen::Finish {
        id: id.to_string(),
        size: len,
        sha256: cdn_sha256(len, seed).await,
    };
    assert_eq!(seen.last(), Some(&expected), "{seen:?}");
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
    let (a, b) = (unique_id("a"), unique_id("b"));
    let (len_a, len_b) = (2 * MIB + 123, MIB + MIB / 2);
    let (seed_a, seed_b) = (20_000 + probe() % 1000, 21_000 + probe() % 1000);
    let path_a = gen_path(len_a, seed_a, "");
    let path_b = gen_path(len_b, seed_b, "");
    manager
        .schedule(download(&a, &path_a, len_a))
        .await
        .unwrap();
    manager
        .schedule(download(&b, &path_b, len_b))
        .await
        .unwrap();
    let current = manager.fetch_current_downloads().await.unwrap();
    assert_eq!(current.len(), 2, "{current:?}");
    wait_until("both finished", || {
        recorder.finished(&a) && recorder.finished(&b)
    })
    .await;
    assert_finished_in_order(&recorder, &a, len_a, seed_a).await;
    assert_finished_in_order(&recorder, &b, len_b, seed_b).await;
    assert!(manager.fetch_current_downloads().await.unwrap().is_empty());
    remove(manager, &database).await;
}

#[wasm_bindgen_test]
async fn a_duplicate_schedule_is_refused() {
    let (manager, _recorder, database) = open("dup").await;
    let id = unique_id("dup");
    let path = gen_path(2 * MIB, 22_000 + probe() % 1000, &stall(MIB + 5));
    manager
        .schedule(download(&id, &path, 2 * MIB))
        .await
        .unwrap();
    let again = manager.schedule(download(&id, &path, 2 * MIB)).await;
    assert!(
        matches!(&again, Err(Error::DownloadAlreadyScheduled { identifier }) if *identifier == id),
        "{again:?}"
    );
    assert_eq!(manager.fetch_current_downloads().await.unwrap().len(), 1);
    manager.cancel(&ident(&id)).await.unwrap();
    remove(manager, &database).await;
}

#[wasm_bindgen_test]
async fn cancel_reports_cancelled_and_leaves_nothing_stored() {
    let (manager, recorder, database) = open("cancel").await;
    let id = unique_id("cancel");
    let path = gen_path(3 * MIB, 23_000 + probe() % 1000, &stall(2 * MIB + 5));
    manager
        .schedule(download(&id, &path, 3 * MIB))
        .await
        .unwrap();
    wait_until("2 MiB written", || recorder.written(&id) >= 2 * MIB).await;
    assert_eq!(stored(&manager, &id).await, 2 * MIB);
    manager.cancel(&ident(&id)).await.unwrap();
    let cancelled = Seen::Fail {
        id: id.clone(),
        code: Error::Cancelled {
            identifier: id.clone(),
        }
        .code(),
    };
    assert_eq!(recorder.of(&id).last(), Some(&cancelled));
    let container = manager.container().await.unwrap();
    for _ in 0..1000 {
        if container.load_checkpoint(&id).await.unwrap().is_none() {
            break;
        }
        gloo_timers::future::TimeoutFuture::new(5).await;
    }
    assert!(container.load_checkpoint(&id).await.unwrap().is_none());
    assert!(container.asset(&id).await.unwrap().is_none());
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
    remove(manager, &database).await;
}

#[wasm_bindgen_test]
async fn pause_and_resume_finish_with_zero_wasted_bytes() {
    const LEN: u64 = 3 * MIB;
    const STALL_AT: u64 = MIB + MIB / 2 + 777;
    let (manager, recorder, database) = open("pause").await;
    let id = unique_id("pause");
    let seed = 24_000 + probe() % 1000;
    let path = gen_path(LEN, seed, &stall(STALL_AT));
    manager.schedule(download(&id, &path, LEN)).await.unwrap();
    wait_received(&manager, &id, STALL_AT).await;
    manager.pause(&ident(&id)).await.unwrap();
    assert_eq!(recorder.of(&id).last(), Some(&Seen::Pause(id.clone())));
    let info = manager.fetch_current_downloads().await.unwrap();
    assert_eq!(info[0].state, DownloadState::Paused);
    for _ in 0..1000 {
        if stored(&manager, &id).await == STALL_AT {
            break;
        }
        gloo_timers::future::TimeoutFuture::new(5).await;
    }
    assert_eq!(
        stored(&manager, &id).await,
        STALL_AT,
        "pause stores what arrived"
    );
    assert_eq!(gets(&path).await.len(), 1, "nothing fetched while paused");
    manager.resume(&ident(&id)).await.unwrap();
    wait_until("finished", || recorder.finished(&id)).await;
    assert_finished_in_order(&recorder, &id, LEN, seed).await;
    let logged = gets(&path).await;
    assert_eq!(logged.len(), 2, "{logged:?}");
    assert_eq!(logged[1].range, Some(format!("bytes={STALL_AT}-")));
    let sent: u64 = logged.iter().map(|l| l.sent).sum();
    assert_eq!(sent, LEN, "not one byte sent twice: {logged:?}");
    remove(manager, &database).await;
}

#[wasm_bindgen_test]
async fn start_foreground_promotes_a_scheduled_download_and_preempted_ones_continue() {
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
    let stalled = unique_id("stalled");
    let seed = 25_000 + probe() % 1000;
    let stalled_path = gen_path(LEN, seed, &stall(STALL_AT));
    manager
        .schedule(download(&stalled, &stalled_path, LEN))
        .await
        .unwrap();
    wait_received(&manager, &stalled, STALL_AT).await;

    let in_page = manager.caller().await.unwrap() == Caller::Page;
    assert_eq!(
        in_page,
        !js::in_worker(),
        "the caller is detected from the global"
    );
    if !in_page {
        // The service worker may not start foreground downloads (Apple's rule).
        let refused = manager.start_foreground(ident(&stalled)).await;
        let error = refused.unwrap_err();
        assert!(
            matches!(error, Error::CallFromExtensionNotAllowed { .. }),
            "{error:?}"
        );
        assert_eq!(error.code(), 50);
        let info = manager.fetch_current_downloads().await.unwrap();
        assert!(!info[0].foreground);
        manager.cancel(&ident(&stalled)).await.unwrap();
        remove(manager, &database).await;
        return;
    }

    // A waiting download, promoted: the running stalled one is pre-empted (paused, not lost).
    let waiting = unique_id("waiting");
    let waiting_seed = 26_000 + probe() % 1000;
    let waiting_path = gen_path(MIB, waiting_seed, "");
    manager
        .schedule(download(&waiting, &waiting_path, MIB))
        .await
        .unwrap();
    assert!(recorder.of(&waiting).is_empty(), "no free slot yet");
    manager.start_foreground(ident(&waiting)).await.unwrap();
    wait_until("both finished", || {
        recorder.finished(&waiting) && recorder.finished(&stalled)
    })
    .await;
    let paused = recorder.position(&Seen::Pause(stalled.clone())).unwrap();
    let begun = recorder.position(&Seen::Begin(waiting.clone())).unwrap();
    assert!(paused < begun, "pre-empted before the foreground one began");
    assert_finished_in_order(&recorder, &waiting, MIB, waiting_seed).await;
    let waiting_done = recorder
        .seen
        .borrow()
        .iter()
        .position(|s| matches!(s, Seen::Finish { id, .. } if *id == waiting))
        .unwrap();
    let stalled_done = recorder
        .seen
        .borrow()
        .iter()
        .position(|s| matches!(s, Seen::Finish { id, .. } if *id == stalled))
        .unwrap();
    assert!(waiting_done < stalled_done);
    let logged = gets(&stalled_path).await;
    assert_eq!(logged.len(), 2, "{logged:?}");
    assert_eq!(logged[1].range, Some(format!("bytes={STALL_AT}-")));
    assert_eq!(logged.iter().map(|l| l.sent).sum::<u64>(), LEN);

    // A paused, stalled-mid-way download, promoted: it continues from its checkpoint.
    let again = unique_id("again");
    let again_seed = 27_000 + probe() % 1000;
    let again_path = gen_path(LEN, again_seed, &stall(STALL_AT));
    manager
        .schedule(download(&again, &again_path, LEN))
        .await
        .unwrap();
    wait_received(&manager, &again, STALL_AT).await;
    manager.pause(&ident(&again)).await.unwrap();
    manager.start_foreground(ident(&again)).await.unwrap();
    let info = manager.fetch_current_downloads().await.unwrap();
    assert!(info
        .iter()
        .any(|d| d.identifier.as_str() == again && d.foreground));
    wait_until("promoted one finished", || recorder.finished(&again)).await;
    assert_finished_in_order(&recorder, &again, LEN, again_seed).await;
    let logged = gets(&again_path).await;
    assert_eq!(logged.len(), 2, "{logged:?}");
    assert_eq!(logged[1].range, Some(format!("bytes={STALL_AT}-")));
    assert_eq!(logged.iter().map(|l| l.sent).sum::<u64>(), LEN);
    remove(manager, &database).await;
}

#[wasm_bindgen_test]
async fn exclusive_control_with_a_deadline_times_out_while_another_holds_the_lock() {
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
    remove(manager, &database).await;
}

#[wasm_bindgen_test]
async fn a_manager_opened_later_sees_the_stored_downloads_and_continues_them() {
    const LEN: u64 = 3 * MIB;
    const STALL_AT: u64 = 2 * MIB + 99;
    let (first, _recorder, database) = open("reopen").await;
    let id = unique_id("reopen");
    let seed = 28_000 + probe() % 1000;
    let path = gen_path(LEN, seed, &stall(STALL_AT));
    first.schedule(download(&id, &path, LEN)).await.unwrap();
    wait_received(&first, &id, STALL_AT).await;
    let checkpoint = stored(&first, &id).await;
    assert_eq!(checkpoint, 2 * MIB, "two whole chunks written");
    first.close().await; // like a killed context: the transfer stops, the state stays
    let closed = first.fetch_current_downloads().await;
    assert!(matches!(closed, Err(Error::Storage { .. })), "{closed:?}");
    drop(first);

    let second = DownloadManager::open(config(&database)).await.unwrap();
    let recorder = Rc::new(Recorder::default());
    second.set_delegate(Some(recorder.clone()));
    let current = second.fetch_current_downloads().await.unwrap();
    assert_eq!(current.len(), 1, "{current:?}");
    assert_eq!(current[0].identifier.as_str(), id);
    assert_eq!(current[0].progress.total_expected, Some(LEN));
    wait_until("the new manager finished it", || recorder.finished(&id)).await;
    let seen = recorder.of(&id);
    let expected = Seen::Finish {
        id: id.clone(),
        size: LEN,
        sha256: cdn_sha256(LEN, seed).await,
    };
    assert_eq!(seen.last(), Some(&expected), "{seen:?}");
    let logged = gets(&path).await;
    assert_eq!(logged.len(), 2, "{logged:?}");
    assert_eq!(logged[1].range, Some(format!("bytes={checkpoint}-")));
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
    let id = unique_id("shared");
    let path = gen_path(MIB, 29_000 + probe() % 1000, "");
    let scheduled = again.schedule(download(&id, &path, MIB)).await;
    match scheduled {
        Ok(()) if declared => {
            // The served declaration allows the CDN: the download is scheduled for everyone.
            let current = shared.fetch_current_downloads().await.unwrap();
            assert!(current.iter().any(|d| d.identifier.as_str() == id));
            shared.cancel(&ident(&id)).await.unwrap();
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
    let id = unique_id("missing");
    let path = gen_path(MIB, 30_000 + probe() % 1000, "fault=status:404");
    manager.schedule(download(&id, &path, MIB)).await.unwrap();
    wait_until("failed", || recorder.finished(&id)).await;
    let seen = recorder.of(&id);
    let not_found = Error::HttpStatus {
        identifier: id.clone(),
        status: 404,
    };
    assert_eq!(
        seen,
        vec![
            Seen::Begin(id.clone()),
            Seen::Fail {
                id: id.clone(),
                code: not_found.code()
            }
        ]
    );
    assert!(manager.fetch_current_downloads().await.unwrap().is_empty());
    let container = manager.container().await.unwrap();
    for _ in 0..1000 {
        if container.load_checkpoint(&id).await.unwrap().is_none() {
            break;
        }
        gloo_timers::future::TimeoutFuture::new(5).await;
    }
    assert!(container.load_checkpoint(&id).await.unwrap().is_none());
    assert!(container.asset(&id).await.unwrap().is_none());
    remove(manager, &database).await;
}

#[wasm_bindgen_test]
async fn a_failed_essential_download_is_requeued_as_non_essential_and_finishes() {
    use background_assets::core::manager::ExtensionEvent;
    let database = super::common::unique_name("ba-manager-essential");
    let mut installing = config(&database);
    installing.caller = Some(Caller::Extension {
        event: Some(ExtensionEvent::Install),
    });
    let manager = DownloadManager::open(installing).await.unwrap();
    manager.did_launch().await.unwrap();
    let recorder = Rc::new(Recorder::default());
    manager.set_delegate(Some(recorder.clone()));
    let id = unique_id("essential");
    let seed = 31_000 + probe() % 1000;
    let path = gen_path(MIB, seed, "fault=status:404&times=1");
    let mut essential = download(&id, &path, MIB);
    essential.essential = true;
    manager.schedule(essential).await.unwrap();
    wait_until("finished", || {
        recorder
            .of(&id)
            .iter()
            .any(|s| matches!(s, Seen::Finish { .. }))
    })
    .await;
    let seen = recorder.of(&id);
    let code = Error::HttpStatus {
        identifier: id.clone(),
        status: 404,
    }
    .code();
    assert_eq!(
        seen[..4],
        [
            Seen::Begin(id.clone()),
            Seen::Fail {
                id: id.clone(),
                code
            },
            Seen::Requeue(id.clone()),
            Seen::Begin(id.clone()),
        ],
        "{seen:?}"
    );
    assert_eq!(
        seen.last(),
        Some(&Seen::Finish {
            id: id.clone(),
            size: MIB,
            sha256: cdn_sha256(MIB, seed).await
        })
    );
    remove(manager, &database).await;
}
