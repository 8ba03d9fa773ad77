//! The cross-context layer of `web::manager` (sw and page suites): several `DownloadManager`s
//! opened on one database inside one global stand for the app's pages and its service worker
//! (a `BroadcastChannel` delivers between different channel objects of one global, and separate
//! lock requests are separate holders). Every test opens a fresh database (deleted at the end)
//! and every CDN URL carries a random `probe`.
//!
//! What is checked: a decision in one context is seen by the others; a download whose context
//! closes mid-transfer is continued by another from its checkpoint (`Range` in the CDN's log);
//! events go to every page with a delegate while one is set, else to the extension's delegate;
//! an authentication challenge is answered (retried with the credentials) or declined (typed
//! failure); the app's request headers reach the CDN, forbidden ones are refused.

use std::cell::RefCell;
use std::rc::Rc;

use background_assets::core::declaration::parse_declaration;
use background_assets::core::download::{DownloadRequest, Identifier, Priority, UrlDownload};
use background_assets::core::error::Error;
use background_assets::core::manager::Caller;
use background_assets::web::container::Container;
use background_assets::web::fetcher::{FetchOptions, Fetcher};
use background_assets::web::js;
use background_assets::web::locks::query;
use background_assets::web::manager::{
    page_delegate_lock_name, AuthChallenge, Credentials, DownloadManager, DownloadManagerDelegate,
    FinishedDownload, ManagerConfig,
};
use futures::future::{FutureExt, LocalBoxFuture};
use wasm_bindgen_test::wasm_bindgen_test;

use super::common::{cdn_sha256, gen_path, gets, ident, probe, unique_id, unique_name, wait_until};

const KIB: u64 = 1024;
const CHUNK: u64 = 64 * KIB;

fn cdn() -> &'static str {
    super::common::cdn_origin()
}

/// What one context's delegate saw.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Begin(String),
    Fail(String, Error),
    Finish(String, u64, String),
    Challenge(String, AuthChallenge),
}

/// A delegate that records, and answers authentication challenges with `answer`.
#[derive(Default)]
struct Recorder {
    seen: RefCell<Vec<Seen>>,
    finished: RefCell<Vec<FinishedDownload>>,
    answer: RefCell<Option<Credentials>>,
}

impl Recorder {
    fn answering(credentials: Option<Credentials>) -> Rc<Recorder> {
        let recorder = Recorder::default();
        *recorder.answer.borrow_mut() = credentials;
        Rc::new(recorder)
    }

    fn of(&self, id: &str) -> Vec<Seen> {
        self.seen
            .borrow()
            .iter()
            .filter(|s| match s {
                Seen::Begin(i) | Seen::Fail(i, _) | Seen::Finish(i, ..) | Seen::Challenge(i, _) => {
                    i == id
                }
            })
            .cloned()
            .collect()
    }

    fn ended(&self, id: &str) -> bool {
        self.of(id)
            .iter()
            .any(|s| matches!(s, Seen::Finish(..) | Seen::Fail(..)))
    }

    fn finished(&self, id: &str) -> Option<FinishedDownload> {
        self.finished
            .borrow()
            .iter()
            .find(|f| f.identifier.as_str() == id)
            .cloned()
    }
}

impl DownloadManagerDelegate for Recorder {
    fn did_begin(&self, id: &Identifier) {
        self.seen.borrow_mut().push(Seen::Begin(id.to_string()));
    }
    fn did_fail(&self, id: &Identifier, error: &Error) {
        self.seen
            .borrow_mut()
            .push(Seen::Fail(id.to_string(), error.clone()));
    }
    fn did_finish(&self, id: &Identifier, finished: FinishedDownload) {
        self.seen.borrow_mut().push(Seen::Finish(
            id.to_string(),
            finished.size,
            finished.sha256.clone(),
        ));
        self.finished.borrow_mut().push(finished);
    }
    fn authentication_challenge(
        &self,
        id: &Identifier,
        challenge: &AuthChallenge,
    ) -> LocalBoxFuture<'static, Option<Credentials>> {
        self.seen
            .borrow_mut()
            .push(Seen::Challenge(id.to_string(), challenge.clone()));
        let answer = self.answer.borrow().clone();
        async move { answer }.boxed_local()
    }
}

fn config(database: &str, caller: Caller) -> ManagerConfig {
    let page = url::Url::parse(&js::origin()).unwrap().join("/").unwrap();
    let declaration = parse_declaration(
        r#"{ "initialDownloadRestrictions": { "domainAllowList": ["127.0.0.1"] } }"#,
        &page,
    )
    .unwrap();
    let mut config = ManagerConfig::new(declaration, page);
    config.database = database.to_string();
    config.caller = Some(caller);
    config.transfer.chunk_size = CHUNK as u32;
    config.transfer.backoff_base_ms = 20;
    config.transfer.backoff_max_ms = 100;
    config
}

const EXTENSION: Caller = Caller::Extension { event: None };

/// A context: a manager on `database` calling as `caller`, with a recording delegate.
async fn context(database: &str, caller: Caller) -> (DownloadManager, Rc<Recorder>) {
    let manager = DownloadManager::open(config(database, caller))
        .await
        .unwrap();
    let recorder = Rc::new(Recorder::default());
    manager.set_delegate(Some(recorder.clone()));
    (manager, recorder)
}

fn download(id: &str, path: &str, len: u64) -> UrlDownload {
    super::common::cdn_download(id, path, Some(len))
}

async fn close_all(managers: Vec<DownloadManager>, database: &str) {
    for manager in managers {
        manager.close().await;
    }
    Container::delete_database(database).await.unwrap();
}

async fn page_delegates(database: &str) -> usize {
    let name = page_delegate_lock_name(database);
    let snapshot = query().await.unwrap();
    snapshot.held.iter().filter(|e| e.name == name).count()
}

async fn assert_stored_bytes(finished: &FinishedDownload, len: u64, seed: u64) {
    assert_eq!(finished.size, len);
    assert_eq!(finished.sha256, cdn_sha256(len, seed).await);
    let blob = finished.blob().await.unwrap();
    assert_eq!(
        blob.size() as u64,
        len,
        "read back from the receiver's container"
    );
}

#[wasm_bindgen_test]
async fn a_decision_in_one_context_is_seen_by_the_others() {
    let database = unique_name("ba-routing-seen");
    let (page, page_seen) = context(&database, Caller::Page).await;
    let (worker, _worker_seen) = context(&database, EXTENSION).await;
    let id = unique_id("seen");
    // Stalls after one chunk for far longer than the test: it stays scheduled and running.
    let path = gen_path(
        4 * CHUNK,
        40_000 + probe() % 1000,
        &format!("fault=stall:{}&stall-ms=20000&times=1", CHUNK + 10),
    );
    page.schedule(download(&id, &path, 4 * CHUNK))
        .await
        .unwrap();
    let listed = worker.fetch_current_downloads().await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].identifier.as_str(), id);
    // The page runs it; the worker's list shows the bytes the page has stored meanwhile.
    let container = page.container().await.unwrap();
    wait_until_async("the page stored a chunk", || async {
        container
            .load_checkpoint(&id)
            .await
            .unwrap()
            .is_some_and(|r| r.stored == CHUNK)
    })
    .await;
    let listed = worker.fetch_current_downloads().await.unwrap();
    assert_eq!(listed[0].progress.total_written, CHUNK, "{listed:?}");
    assert_eq!(listed[0].progress.total_expected, Some(4 * CHUNK));
    assert_eq!(
        worker.schedule(download(&id, &path, 4 * CHUNK)).await,
        Err(Error::DownloadAlreadyScheduled {
            identifier: id.clone()
        }),
        "the worker decides on the state the page saved"
    );

    // Cancelled in the worker: the page's transfer stops and the page's delegate is told.
    worker.cancel(&ident(&id)).await.unwrap();
    wait_until("the page's delegate saw the cancel", || {
        page_seen.ended(&id)
    })
    .await;
    assert!(
        matches!(
            page_seen.of(&id).last(),
            Some(Seen::Fail(_, Error::Cancelled { .. }))
        ),
        "{:?}",
        page_seen.of(&id)
    );
    assert!(page.fetch_current_downloads().await.unwrap().is_empty());
    assert!(page.transfer_progress(&ident(&id)).await.unwrap().is_none());
    wait_until_async("nothing stored", || async {
        container.load_checkpoint(&id).await.unwrap().is_none()
            && container.asset(&id).await.unwrap().is_none()
    })
    .await;
    close_all(vec![page, worker], &database).await;
}

/// Polls an async condition every 10 ms; panics naming `what` after 15 s.
async fn wait_until_async<F, Fut>(what: &str, mut ready: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..1500 {
        if ready().await {
            return;
        }
        gloo_timers::future::TimeoutFuture::new(10).await;
    }
    panic!("timed out waiting until {what}");
}

#[wasm_bindgen_test]
async fn a_download_whose_context_closes_is_continued_by_another_from_its_checkpoint() {
    let unhandled = super::common::UnhandledRejections::watch();
    const LEN: u64 = 5 * CHUNK;
    const STALL_AT: u64 = 2 * CHUNK + 777;
    let database = unique_name("ba-routing-handover");
    let (page, _page_seen) = context(&database, Caller::Page).await;
    let (worker, worker_seen) = context(&database, EXTENSION).await;
    let id = unique_id("handover");
    let seed = 41_000 + probe() % 1000;
    let path = gen_path(
        LEN,
        seed,
        &format!("fault=stall:{STALL_AT}&stall-ms=20000&times=1"),
    );
    page.schedule(download(&id, &path, LEN)).await.unwrap();
    let container = page.container().await.unwrap();
    wait_until_async("the page stored two chunks", || async {
        container
            .load_checkpoint(&id)
            .await
            .unwrap()
            .is_some_and(|r| r.stored == 2 * CHUNK)
    })
    .await;
    assert!(
        page.transfer_progress(&ident(&id)).await.unwrap().is_some(),
        "the page runs it"
    );
    assert!(
        worker
            .transfer_progress(&ident(&id))
            .await
            .unwrap()
            .is_none(),
        "the worker does not (yet)"
    );

    // The tab goes away mid-transfer: its page-delegate lock and its transfer's locks go too.
    page.close().await;
    wait_until("the worker's delegate got did_finish", || {
        worker_seen.ended(&id)
    })
    .await;
    let finished = worker_seen.finished(&id).unwrap_or_else(|| {
        panic!("not finished: {:?}", worker_seen.of(&id));
    });
    assert_stored_bytes(&finished, LEN, seed).await;
    let logged = gets(&path).await;
    assert_eq!(logged.len(), 2, "{logged:?}");
    assert_eq!(
        logged[1].range,
        Some(format!("bytes={}-", 2 * CHUNK)),
        "continued from the checkpoint, not from zero"
    );
    assert_eq!(page_delegates(&database).await, 0);
    assert!(worker.fetch_current_downloads().await.unwrap().is_empty());
    assert_eq!(
        unhandled.seen(),
        Vec::<String>::new(),
        "unhandled rejections"
    );
    close_all(vec![worker], &database).await;
}

#[wasm_bindgen_test]
async fn events_go_to_the_pages_with_a_delegate_else_to_the_extension() {
    const LEN: u64 = 3 * KIB;
    let database = unique_name("ba-routing-route");
    let (page, page_seen) = context(&database, Caller::Page).await;
    let (worker, worker_seen) = context(&database, EXTENSION).await;
    assert_eq!(page_delegates(&database).await, 1);

    // Scheduled by the page, run by the page: the page's delegate, not the worker's.
    let first = unique_id("route-page");
    let first_seed = 42_000 + probe() % 1000;
    page.schedule(download(&first, &gen_path(LEN, first_seed, ""), LEN))
        .await
        .unwrap();
    wait_until("the page saw it finish", || page_seen.ended(&first)).await;
    assert_stored_bytes(&page_seen.finished(&first).unwrap(), LEN, first_seed).await;
    assert_eq!(page_seen.of(&first)[0], Seen::Begin(first.clone()));

    // Scheduled and run by the worker while the page has a delegate: still the page's.
    let second = unique_id("route-worker");
    let second_seed = 43_000 + probe() % 1000;
    worker
        .schedule(download(&second, &gen_path(LEN, second_seed, ""), LEN))
        .await
        .unwrap();
    wait_until("the page saw the worker's download finish", || {
        page_seen.ended(&second)
    })
    .await;
    assert_stored_bytes(&page_seen.finished(&second).unwrap(), LEN, second_seed).await;
    assert_eq!(page_seen.of(&second)[0], Seen::Begin(second.clone()));

    // The page removes its delegate: from now on the extension's delegate gets them.
    page.set_delegate(None);
    let third = unique_id("route-none");
    let third_seed = 44_000 + probe() % 1000;
    page.schedule(download(&third, &gen_path(LEN, third_seed, ""), LEN))
        .await
        .unwrap();
    assert_eq!(page_delegates(&database).await, 0);
    wait_until("the worker saw it finish", || worker_seen.ended(&third)).await;
    assert_stored_bytes(&worker_seen.finished(&third).unwrap(), LEN, third_seed).await;

    assert!(
        worker_seen.of(&first).is_empty(),
        "{:?}",
        worker_seen.of(&first)
    );
    assert!(
        worker_seen.of(&second).is_empty(),
        "{:?}",
        worker_seen.of(&second)
    );
    assert!(
        page_seen.of(&third).is_empty(),
        "{:?}",
        page_seen.of(&third)
    );
    close_all(vec![page, worker], &database).await;
}

#[wasm_bindgen_test]
async fn every_page_with_a_delegate_receives_and_a_closed_tab_stops_counting() {
    const LEN: u64 = 2 * KIB;
    let database = unique_name("ba-routing-tabs");
    let (tab_a, seen_a) = context(&database, Caller::Page).await;
    let (tab_b, seen_b) = context(&database, Caller::Page).await;
    let (worker, worker_seen) = context(&database, EXTENSION).await;
    assert_eq!(page_delegates(&database).await, 2);

    let both = unique_id("tabs-both");
    let seed = 45_000 + probe() % 1000;
    worker
        .schedule(download(&both, &gen_path(LEN, seed, ""), LEN))
        .await
        .unwrap();
    wait_until("both tabs saw it finish", || {
        seen_a.ended(&both) && seen_b.ended(&both)
    })
    .await;
    assert_stored_bytes(&seen_a.finished(&both).unwrap(), LEN, seed).await;
    assert_stored_bytes(&seen_b.finished(&both).unwrap(), LEN, seed).await;

    // One tab closes: the other still gets them.
    tab_a.close().await;
    assert_eq!(page_delegates(&database).await, 1);
    let one = unique_id("tabs-one");
    let seed = 46_000 + probe() % 1000;
    worker
        .schedule(download(&one, &gen_path(LEN, seed, ""), LEN))
        .await
        .unwrap();
    wait_until("the open tab saw it finish", || seen_b.ended(&one)).await;
    assert!(seen_a.of(&one).is_empty());

    // The last one closes: the extension's delegate gets them.
    tab_b.close().await;
    assert_eq!(page_delegates(&database).await, 0);
    let none = unique_id("tabs-none");
    let seed = 47_000 + probe() % 1000;
    worker
        .schedule(download(&none, &gen_path(LEN, seed, ""), LEN))
        .await
        .unwrap();
    wait_until("the worker saw it finish", || worker_seen.ended(&none)).await;
    assert_stored_bytes(&worker_seen.finished(&none).unwrap(), LEN, seed).await;
    assert!(worker_seen.of(&both).is_empty() && worker_seen.of(&one).is_empty());
    close_all(vec![worker], &database).await;
}

#[wasm_bindgen_test]
async fn an_authentication_challenge_answered_with_credentials_finishes() {
    const LEN: u64 = 3 * CHUNK;
    let database = unique_name("ba-routing-auth");
    let token = format!("t{}", probe());
    let manager = DownloadManager::open(config(&database, Caller::Page))
        .await
        .unwrap();
    let answer = vec![("Authorization".to_string(), format!("Bearer {token}"))];
    let recorder = Recorder::answering(Some(answer));
    manager.set_delegate(Some(recorder.clone()));
    let id = unique_id("auth-yes");
    let seed = 48_000 + probe() % 1000;
    let path = gen_path(LEN, seed, &format!("auth={token}"));
    manager.schedule(download(&id, &path, LEN)).await.unwrap();
    wait_until("it finished", || recorder.ended(&id)).await;
    let seen = recorder.of(&id);
    let challenge = seen
        .iter()
        .find_map(|s| match s {
            Seen::Challenge(_, challenge) => Some(challenge.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no challenge: {seen:?}"));
    assert_eq!(
        challenge,
        AuthChallenge {
            url: format!("{}{path}", cdn()),
            status: 401,
            www_authenticate: Some("Bearer realm=\"cdn\"".into()),
        }
    );
    assert_stored_bytes(&recorder.finished(&id).unwrap(), LEN, seed).await;
    let logged = gets(&path).await;
    let statuses: Vec<u64> = logged.iter().map(|l| l.status).collect();
    assert_eq!(statuses, vec![401, 200], "{logged:?}");
    close_all(vec![manager], &database).await;
}

#[wasm_bindgen_test]
async fn a_declined_challenge_or_no_delegate_fails_typed() {
    const LEN: u64 = CHUNK;
    let database = unique_name("ba-routing-noauth");
    // The page declines; the worker (running the other download) has no delegate at all.
    let page = DownloadManager::open(config(&database, Caller::Page))
        .await
        .unwrap();
    let declined = Recorder::answering(None);
    page.set_delegate(Some(declined.clone()));
    let id = unique_id("auth-no");
    let path = gen_path(LEN, 49_000 + probe() % 1000, &format!("auth=x{}", probe()));
    page.schedule(download(&id, &path, LEN)).await.unwrap();
    wait_until("it failed", || declined.ended(&id)).await;
    let seen = declined.of(&id);
    assert!(
        matches!(
            seen.iter()
                .filter(|s| matches!(s, Seen::Challenge(..)))
                .count(),
            1
        ),
        "asked once: {seen:?}"
    );
    assert!(
        matches!(
            seen.last(),
            Some(Seen::Fail(failed, Error::AuthenticationRequired { identifier, status: 401 }))
                if *failed == id && *identifier == id
        ),
        "{seen:?}"
    );

    let worker = DownloadManager::open(config(&database, EXTENSION))
        .await
        .unwrap();
    let unasked = unique_id("auth-none");
    let path = gen_path(LEN, 49_500 + probe() % 400, &format!("auth=y{}", probe()));
    worker
        .schedule(download(&unasked, &path, LEN))
        .await
        .unwrap();
    wait_until("the page was told it failed", || declined.ended(&unasked)).await;
    let seen = declined.of(&unasked);
    assert!(
        !seen.iter().any(|s| matches!(s, Seen::Challenge(..))),
        "the context running it (the worker, no delegate) is asked, not the page: {seen:?}"
    );
    assert!(
        matches!(
            seen.last(),
            Some(Seen::Fail(_, Error::AuthenticationRequired { .. }))
        ),
        "{seen:?}"
    );
    close_all(vec![page, worker], &database).await;
}

#[wasm_bindgen_test]
async fn request_headers_reach_the_cdn_and_forbidden_ones_are_refused() {
    const LEN: u64 = 2 * CHUNK;
    let database = unique_name("ba-routing-headers");
    let (manager, recorder) = context(&database, Caller::Page).await;
    let token = format!("h{}", probe());
    let id = unique_id("headers");
    let seed = 50_000 + probe() % 1000;
    let path = gen_path(LEN, seed, &format!("auth={token}"));
    let request = DownloadRequest::get(&format!("{}{path}", cdn()))
        .unwrap()
        .with_header("Authorization", &format!("Bearer {token}"))
        .unwrap()
        .with_header("X-App-Build", "7")
        .unwrap();
    let download =
        UrlDownload::new(ident(&id), request, false, Some(LEN), Priority::DEFAULT, 0).unwrap();
    manager.schedule(download).await.unwrap();
    wait_until("it finished", || recorder.ended(&id)).await;
    assert_stored_bytes(&recorder.finished(&id).unwrap(), LEN, seed).await;
    assert!(
        !recorder
            .of(&id)
            .iter()
            .any(|s| matches!(s, Seen::Challenge(..))),
        "the app's own Authorization header was sent: no challenge"
    );
    let logged = gets(&path).await;
    assert_eq!(
        logged.iter().map(|l| l.status).collect::<Vec<_>>(),
        vec![200]
    );
    close_all(vec![manager], &database).await;

    // The fetcher: credentials only to the origin the app gave them for; forbidden headers are
    // refused with a typed error instead of being dropped silently.
    let url = format!("{}{}", cdn(), gen_path(10, 1, &format!("auth={token}")));
    let credentials = vec![("Authorization".to_string(), format!("Bearer {token}"))];
    let unnamed = FetchOptions {
        headers: credentials.clone(),
        ..Default::default()
    };
    assert_eq!(
        Fetcher::start(&url, unnamed).await.unwrap_err(),
        Error::CrossOriginCredentials { url: url.clone() }
    );
    let elsewhere = FetchOptions {
        headers: credentials.clone(),
        credentials_origin: Some("http://127.0.0.2:9".into()),
        ..Default::default()
    };
    assert!(matches!(
        Fetcher::start(&url, elsewhere).await,
        Err(Error::CrossOriginCredentials { .. })
    ));
    let named = FetchOptions {
        headers: credentials,
        credentials_origin: Some(cdn().to_string()),
        ..Default::default()
    };
    assert_eq!(
        Fetcher::start(&url, named).await.unwrap().head().status,
        200
    );
    for (name, value) in [
        ("Cookie", "a=b"),
        ("Range", "bytes=0-"),
        ("Sec-Fetch-Mode", "x"),
    ] {
        let forbidden = FetchOptions {
            headers: vec![(name.into(), value.into())],
            ..Default::default()
        };
        let error = Fetcher::start(&url, forbidden).await.unwrap_err();
        assert!(
            matches!(&error, Error::DownloadInvalid { reason } if reason.contains(name)),
            "{name}: {error:?}"
        );
    }
}

/// The message another context sends is one flat JSON object (`type`, `database`, `from`,
/// `kind`, and for an event `route`, `eid` and `event`): one written by hand is delivered to the
/// delegate, a repeated `eid` is not delivered twice, and a malformed one is refused with a typed
/// error naming what was wrong.
#[wasm_bindgen_test]
async fn a_remote_message_is_one_flat_object_and_a_malformed_one_is_refused() {
    let database = unique_name("ba-routing-wire");
    let (page, seen) = context(&database, Caller::Page).await;
    let id = unique_id("wire");
    let message = |rest: String| {
        js_sys::JSON::parse(&format!(
            r#"{{"type":"background-assets","database":"{database}","from":"elsewhere",{rest}}}"#
        ))
        .unwrap()
    };
    let failed = format!(
        r#""kind":"event","route":"pages","eid":"e-{id}","event":{{"kind":"failed","id":"{id}","error":{{"DownloadNotScheduled":{{"identifier":"{id}"}}}}}}"#
    );
    page.deliver_remote(message(failed.clone())).await.unwrap();
    page.deliver_remote(message(failed)).await.unwrap();
    assert_eq!(
        seen.of(&id),
        vec![Seen::Fail(
            id.clone(),
            Error::DownloadNotScheduled {
                identifier: id.clone()
            }
        )],
        "delivered once"
    );

    for (rest, named) in [
        (
            r#""kind":"event","route":"pages","eid":"x""#.to_string(),
            "missing field `event`",
        ),
        (
            r#""kind":"event","eid":"x","event":{"kind":"didBegin","id":"a"}"#.to_string(),
            "missing field `route`",
        ),
        (r#""kind":"shout""#.to_string(), "shout"),
        (
            r#""kind":"event","route":"pages","eid":"y","event":{"kind":"didBegin"}"#.to_string(),
            "missing field `id`",
        ),
    ] {
        let err = page
            .deliver_remote(message(rest.clone()))
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::Unsupported { .. }) && err.to_string().contains(named),
            "{rest}: {err}"
        );
    }
    let err = page
        .deliver_remote(
            js_sys::JSON::parse(r#"{"type":"other","kind":"changed","database":"d","from":"f"}"#)
                .unwrap(),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("type `other`"), "{err}");
    assert_eq!(seen.of(&id).len(), 1);
    close_all(vec![page], &database).await;
}
