#![cfg(not(target_arch = "wasm32"))]
//! Host tests of the download manager: scheduling rules and their errors, the install flow under
//! restrictions, foreground promotion, reports from the driver, essential re-queueing, event
//! routing, storage round trips, asset packs, and a property test of its invariants.

use std::collections::BTreeSet;

use background_assets::core::declaration::{
    parse_declaration, Declaration, DownloadPolicy, InstallationEvent,
};
use background_assets::core::download::*;
use background_assets::core::error::Error;
use background_assets::core::manager::*;
use background_assets::core::policy::RemainingAllowance;
use background_assets::core::queue::QueueLimits;
use background_assets::core::transfer::Progress;
use proptest::prelude::*;
use url::Url;

const INSTALL: Caller = Caller::Extension {
    event: Some(ExtensionEvent::Install),
};
const UPDATE: Caller = Caller::Extension {
    event: Some(ExtensionEvent::Update),
};

fn id(s: &str) -> Identifier {
    Identifier::new(s).unwrap()
}

fn page() -> Url {
    Url::parse("https://app.example.com/").unwrap()
}

fn declaration(json: &str) -> Declaration {
    parse_declaration(json, &page().join("pkg.json").unwrap()).unwrap()
}

/// A manager after first launch, with `max` slots.
fn launched(max: usize) -> Manager {
    let mut m = Manager::new(declaration("{}"), &page());
    assert!(m.did_launch());
    m.set_limits(QueueLimits {
        max_concurrent: max,
        bandwidth: None,
    });
    m
}

fn download(name: &str, essential: bool, size: Option<u64>, priority: i64) -> UrlDownload {
    UrlDownload::new(
        id(name),
        DownloadRequest::get(&format!("https://app.example.com/{name}.bin")).unwrap(),
        essential,
        size,
        Priority::new(priority),
        0,
    )
    .unwrap()
}

fn plain(name: &str) -> UrlDownload {
    download(name, false, None, 50)
}

fn events(m: &mut Manager) -> Vec<RoutedEvent> {
    std::iter::from_fn(|| m.poll_event()).collect()
}

fn kinds(m: &mut Manager) -> Vec<ManagerEvent> {
    events(m).into_iter().map(|e| e.event).collect()
}

fn state(m: &Manager, name: &str) -> DownloadState {
    m.download(&id(name)).unwrap().state
}

fn progress(written: u64, received: u64, expected: Option<u64>) -> Progress {
    Progress {
        bytes_written: written,
        bytes_received: received,
        total_expected: expected,
        ..Progress::default()
    }
}

fn code(result: Result<impl std::fmt::Debug, Error>) -> &'static str {
    result.expect_err("expected an error").name()
}

// ---------------------------------------------------------------------------------------------
// schedule
// ---------------------------------------------------------------------------------------------

#[test]
fn schedule_validates_the_description_and_changes_nothing_on_refusal() {
    let mut m = launched(3);
    // Fields are public: a description can be made invalid after construction.
    let mut essential = download("core", true, Some(10), 50);
    essential.file_size = None;
    assert!(matches!(
        m.schedule(essential, INSTALL, 0),
        Err(Error::DownloadInvalid { reason }) if reason.contains("exact file size")
    ));
    let mut too_big = plain("big");
    too_big.file_size = Some(MAX_SAFE_INTEGER + 1);
    assert_eq!(
        code(m.schedule(too_big, Caller::Page, 0)),
        "DownloadInvalid"
    );
    assert!(m.current_downloads().is_empty());
    assert!(m.poll_event().is_none());
}

#[test]
fn schedule_refuses_an_identifier_that_is_waiting_running_or_paused() {
    let mut m = launched(1);
    m.schedule(plain("a"), Caller::Page, 0).unwrap();
    m.schedule(plain("b"), Caller::Page, 0).unwrap();
    assert_eq!(m.poll_start(1), vec![id("a")]);
    m.pause(&id("b")).unwrap();
    for (name, expected) in [
        ("a", DownloadState::Downloading),
        ("b", DownloadState::Paused),
    ] {
        assert_eq!(state(&m, name), expected);
        assert_eq!(
            m.schedule(plain(name), Caller::Page, 2),
            Err(Error::DownloadAlreadyScheduled {
                identifier: name.into()
            })
        );
    }
    m.schedule(plain("c"), Caller::Page, 0).unwrap();
    assert_eq!(
        code(m.schedule(plain("c"), Caller::Page, 0)),
        "DownloadAlreadyScheduled"
    );
    // Finished and failed identifiers may be scheduled again.
    m.on_finished(&id("a"), 4, [0; 32]).unwrap();
    m.schedule(plain("a"), Caller::Page, 3).unwrap();
    assert_eq!(state(&m, "a"), DownloadState::Waiting);
    m.cancel(&id("c")).unwrap();
    m.schedule(plain("c"), Caller::Page, 3).unwrap();
    assert_eq!(state(&m, "c"), DownloadState::Waiting);
}

#[test]
fn essential_downloads_only_from_the_extension_during_install_or_update() {
    let mut m = launched(3);
    for caller in [
        Caller::Page,
        Caller::Extension { event: None },
        Caller::Extension {
            event: Some(ExtensionEvent::CheckForUpdates),
        },
    ] {
        assert_eq!(
            m.schedule(download("e", true, Some(5), 50), caller, 0),
            Err(Error::DownloadEssentialDownloadNotPermitted {
                identifier: "e".into()
            }),
            "{caller:?}"
        );
    }
    assert!(m.current_downloads().is_empty());
    m.schedule(download("e1", true, Some(5), 50), INSTALL, 0)
        .unwrap();
    m.schedule(download("e2", true, Some(5), 50), UPDATE, 0)
        .unwrap();
    // Non-essential downloads may come from anyone.
    m.schedule(plain("n1"), Caller::Extension { event: None }, 0)
        .unwrap();
    let essential: Vec<bool> = m.current_downloads().iter().map(|d| d.essential).collect();
    assert_eq!(essential, vec![true, true, false]);
}

#[test]
fn install_flow_enforces_the_restrictions_until_first_launch() {
    let decl = declaration(
        r#"{ "initialDownloadRestrictions": { "downloadAllowance": 100,
             "essentialDownloadAllowance": 50, "domainAllowList": ["cdn.example.com"] } }"#,
    );
    let mut m = Manager::new(decl, &page());
    let cdn = |name: &str, essential: bool, size: Option<u64>| {
        UrlDownload::new(
            id(name),
            DownloadRequest::get(&format!("https://cdn.example.com/{name}")).unwrap(),
            essential,
            size,
            Priority::DEFAULT,
            0,
        )
        .unwrap()
    };
    let full = RemainingAllowance {
        essential: 50,
        total: 100,
    };
    assert_eq!(m.remaining_allowance(), Some(full));

    // Each refusal is typed and changes nothing.
    assert_eq!(
        m.schedule(cdn("nosize", false, None), INSTALL, 0),
        Err(Error::SessionDownloadDisallowedByAllowance {
            identifier: "nosize".into()
        })
    );
    assert_eq!(
        m.schedule(cdn("big", false, Some(101)), INSTALL, 0),
        Err(Error::DownloadWouldExceedAllowance {
            identifier: "big".into(),
            requested: 101,
            remaining: 100
        })
    );
    assert_eq!(
        m.schedule(cdn("ebig", true, Some(51)), INSTALL, 0),
        Err(Error::DownloadWouldExceedAllowance {
            identifier: "ebig".into(),
            requested: 51,
            remaining: 50
        })
    );
    let elsewhere = UrlDownload::new(
        id("evil"),
        DownloadRequest::get("https://evil.example/x").unwrap(),
        false,
        Some(1),
        Priority::DEFAULT,
        0,
    )
    .unwrap();
    assert_eq!(
        m.schedule(elsewhere.clone(), INSTALL, 0),
        Err(Error::SessionDownloadDisallowedByDomain {
            host: "evil.example".into()
        })
    );
    assert_eq!(m.remaining_allowance(), Some(full));
    assert!(m.current_downloads().is_empty());

    // Admitted downloads are charged to their own pool; the page's own origin is allowed.
    m.schedule(cdn("core", true, Some(50)), INSTALL, 0).unwrap();
    m.schedule(cdn("extra", false, Some(60)), INSTALL, 0)
        .unwrap();
    m.schedule(download("own", false, Some(40), 50), INSTALL, 0)
        .unwrap();
    assert_eq!(
        m.remaining_allowance(),
        Some(RemainingAllowance {
            essential: 0,
            total: 0
        })
    );
    assert_eq!(
        code(m.schedule(cdn("one-more", false, Some(1)), INSTALL, 0)),
        "DownloadWouldExceedAllowance"
    );

    // A server that sends more than the charged size fails the download.
    m.poll_start(1);
    events(&mut m);
    m.on_progress(&id("extra"), &progress(60, 60, Some(60)))
        .unwrap();
    assert_eq!(
        m.on_progress(&id("extra"), &progress(61, 61, Some(60))),
        Err(Error::SessionDownloadAllowanceExceeded {
            identifier: "extra".into()
        })
    );
    assert_eq!(state(&m, "extra"), DownloadState::Failed);
    assert!(kinds(&mut m).contains(&ManagerEvent::Failed {
        id: id("extra"),
        error: Error::SessionDownloadAllowanceExceeded {
            identifier: "extra".into()
        }
    }));

    // First launch lifts the allowances, once.
    assert!(m.did_launch());
    assert!(!m.did_launch());
    assert_eq!(m.remaining_allowance(), None);
    m.schedule(cdn("nosize", false, None), Caller::Page, 2)
        .unwrap();
    m.schedule(cdn("big", false, Some(10_000)), Caller::Page, 2)
        .unwrap();
    // Running downloads admitted before launch are no longer limited to their charge.
    m.on_progress(&id("own"), &progress(1_000, 1_000, None))
        .unwrap();
    // The allow-list keeps applying after launch (see core::policy: it is the app's statement
    // of where its assets come from).
    assert_eq!(
        code(m.schedule(elsewhere, Caller::Page, 2)),
        "SessionDownloadDisallowedByDomain"
    );
}

// ---------------------------------------------------------------------------------------------
// start_foreground
// ---------------------------------------------------------------------------------------------

#[test]
fn start_foreground_is_for_pages_only_and_checks_its_target() {
    let mut m = launched(2);
    for caller in [Caller::Extension { event: None }, INSTALL] {
        assert_eq!(
            m.start_foreground(plain("a"), caller, 0),
            Err(Error::CallFromExtensionNotAllowed {
                call: "startForegroundDownload".into()
            })
        );
    }
    assert!(m.current_downloads().is_empty());
    assert_eq!(
        code(m.start_foreground(id("ghost"), Caller::Page, 0)),
        "DownloadDoesNotExist"
    );
    m.schedule(plain("a"), Caller::Page, 0).unwrap();
    m.poll_start(0);
    m.on_finished(&id("a"), 1, [0; 32]).unwrap();
    assert_eq!(
        code(m.start_foreground(id("a"), Caller::Page, 0)),
        "DownloadNotScheduled"
    );
    m.schedule(plain("b"), Caller::Page, 0).unwrap();
    let mut other = plain("b");
    other.request = DownloadRequest::get("https://app.example.com/other.bin").unwrap();
    assert_eq!(
        code(m.start_foreground(other, Caller::Page, 0)),
        "DownloadAlreadyScheduled"
    );
    // Essential rules apply to new descriptions too.
    assert_eq!(
        code(m.start_foreground(download("e", true, Some(1), 50), Caller::Page, 0)),
        "DownloadEssentialDownloadNotPermitted"
    );
}

#[test]
fn foreground_promotion_keeps_the_download_and_preempts_the_lowest_background_one() {
    let mut m = launched(2);
    m.schedule(download("high", false, None, 90), Caller::Page, 0)
        .unwrap();
    m.schedule(download("low", false, None, 10), Caller::Page, 0)
        .unwrap();
    m.schedule(download("wanted", false, Some(100), 5), Caller::Page, 7)
        .unwrap();
    assert_eq!(m.poll_start(1), vec![id("high"), id("low")]);
    // `wanted` was paused earlier with 40 bytes written (its checkpoint).
    m.pause(&id("wanted")).unwrap();
    m.on_progress(&id("wanted"), &progress(40, 40, Some(100)))
        .unwrap();
    events(&mut m);

    let paused = m.start_foreground(id("wanted"), Caller::Page, 2).unwrap();
    assert_eq!(paused, vec![id("low")]);
    assert_eq!(state(&m, "low"), DownloadState::Waiting);
    assert_eq!(state(&m, "high"), DownloadState::Downloading);
    assert_eq!(
        kinds(&mut m),
        vec![ManagerEvent::DidPause { id: id("low") }]
    );
    assert_eq!(m.poll_start(3), vec![id("wanted")]);
    let info = m.download(&id("wanted")).unwrap();
    assert_eq!(info.identifier, id("wanted"));
    assert!(info.foreground);
    assert_eq!(info.state, DownloadState::Downloading);
    assert_eq!(info.scheduled_at, 7, "the same record, not a new download");
    assert_eq!(info.progress.total_written, 40, "the checkpoint is kept");
    // The next progress report continues from 40, it does not restart.
    m.on_progress(&id("wanted"), &progress(60, 60, Some(100)))
        .unwrap();
    assert_eq!(
        kinds(&mut m).last(),
        Some(&ManagerEvent::Progress {
            id: id("wanted"),
            bytes_written: 20,
            total_written: 60,
            total_expected: Some(100)
        })
    );

    // Promoting the same description again (a page calling startForegroundDownload with the
    // same download) keeps it running and pre-empts nothing.
    let again = m
        .start_foreground(download("wanted", false, Some(100), 5), Caller::Page, 4)
        .unwrap();
    assert!(again.is_empty());
    assert_eq!(state(&m, "wanted"), DownloadState::Downloading);

    // A new description is scheduled and promoted: it pre-empts the remaining background one.
    let paused = m.start_foreground(plain("fresh"), Caller::Page, 5).unwrap();
    assert_eq!(paused, vec![id("high")]);
    assert_eq!(m.poll_start(5), vec![id("fresh")]);
    let running: Vec<_> = m
        .current_downloads()
        .into_iter()
        .filter(|d| d.state == DownloadState::Downloading)
        .map(|d| d.identifier)
        .collect();
    assert_eq!(running, vec![id("fresh"), id("wanted")]);
}

// ---------------------------------------------------------------------------------------------
// cancel, pause, resume, poll_start
// ---------------------------------------------------------------------------------------------

#[test]
fn cancel_pause_resume_errors() {
    let mut m = launched(1);
    let ghost = id("ghost");
    assert_eq!(code(m.cancel(&ghost)), "DownloadDoesNotExist");
    assert_eq!(code(m.pause(&ghost)), "DownloadDoesNotExist");
    assert_eq!(code(m.resume(&ghost)), "DownloadDoesNotExist");

    m.schedule(plain("a"), Caller::Page, 0).unwrap();
    m.schedule(plain("b"), Caller::Page, 0).unwrap();
    // Resume of a waiting or running download is an invalid transition.
    assert_eq!(
        m.resume(&id("b")),
        Err(Error::InvalidTransition {
            identifier: "b".into(),
            from: "waiting".into(),
            to: "waiting".into()
        })
    );
    m.poll_start(0);
    assert_eq!(code(m.resume(&id("a"))), "InvalidTransition");
    // Pause twice.
    assert!(!m.pause(&id("b")).unwrap(), "b was only waiting");
    assert_eq!(
        m.pause(&id("b")),
        Err(Error::InvalidTransition {
            identifier: "b".into(),
            from: "paused".into(),
            to: "paused".into()
        })
    );
    assert!(m.pause(&id("a")).unwrap(), "a was running");
    assert_eq!(
        kinds(&mut m),
        vec![
            ManagerEvent::DidBegin { id: id("a") },
            ManagerEvent::DidPause { id: id("b") },
            ManagerEvent::DidPause { id: id("a") },
        ]
    );
    assert!(m.poll_start(1).is_empty(), "paused downloads do not start");
    m.resume(&id("a")).unwrap();
    assert_eq!(m.poll_start(2), vec![id("a")]);

    // Cancel: a Failed(Cancelled) event, the download ends, and ended ones are not scheduled.
    assert!(m.cancel(&id("a")).unwrap());
    assert!(!m.cancel(&id("b")).unwrap());
    let failed: Vec<_> = kinds(&mut m)
        .into_iter()
        .filter_map(|e| match e {
            ManagerEvent::Failed { id, error } => Some((id, error)),
            _ => None,
        })
        .collect();
    assert_eq!(
        failed,
        vec![
            (
                id("a"),
                Error::Cancelled {
                    identifier: "a".into()
                }
            ),
            (
                id("b"),
                Error::Cancelled {
                    identifier: "b".into()
                }
            ),
        ]
    );
    for name in ["a", "b"] {
        assert_eq!(state(&m, name), DownloadState::Failed);
        assert_eq!(code(m.cancel(&id(name))), "DownloadNotScheduled");
        assert_eq!(code(m.pause(&id(name))), "DownloadNotScheduled");
        assert_eq!(code(m.resume(&id(name))), "DownloadNotScheduled");
    }
    assert!(m.current_downloads().is_empty());
}

#[test]
fn poll_start_respects_concurrency_and_order() {
    let mut m = launched(2);
    for (name, priority) in [("p10", 10), ("p90", 90), ("p50", 50)] {
        m.schedule(download(name, false, None, priority), Caller::Page, 0)
            .unwrap();
    }
    m.schedule(download("ess", true, Some(1), 0), INSTALL, 0)
        .unwrap();
    let upcoming = |m: &Manager, now| m.upcoming(now).cloned().collect::<Vec<_>>();
    assert_eq!(
        upcoming(&m, 0),
        vec![id("ess"), id("p90"), id("p50"), id("p10")]
    );
    assert_eq!(m.poll_start(0), vec![id("ess"), id("p90")]);
    assert!(m.poll_start(1).is_empty());
    // What starts as slots free up, in order; a paused one is not among them.
    assert_eq!(upcoming(&m, 1), vec![id("p50"), id("p10")]);
    m.pause(&id("p50")).unwrap();
    assert_eq!(upcoming(&m, 1), vec![id("p10")]);
    m.resume(&id("p50")).unwrap();
    assert_eq!(upcoming(&m, 1), vec![id("p50"), id("p10")]);
    m.on_finished(&id("ess"), 1, [0; 32]).unwrap();
    assert_eq!(m.poll_start(2), vec![id("p50")]);
    assert_eq!(upcoming(&m, 2), vec![id("p10")]);
    let begun: Vec<_> = kinds(&mut m)
        .into_iter()
        .filter_map(|e| match e {
            ManagerEvent::DidBegin { id } => Some(id),
            _ => None,
        })
        .collect();
    assert_eq!(begun, vec![id("ess"), id("p90"), id("p50")]);
}

// ---------------------------------------------------------------------------------------------
// Reports
// ---------------------------------------------------------------------------------------------

/// `nothing_received` is true from scheduling until a report says a byte arrived, and again
/// after a report of a restart from zero; false for an unknown download.
#[test]
fn nothing_received_until_a_byte_is_reported() {
    let mut m = launched(1);
    assert!(!m.nothing_received(&id("ghost")));
    m.schedule(download("a", false, Some(100), 50), Caller::Page, 0)
        .unwrap();
    assert!(m.nothing_received(&id("a")));
    m.poll_start(0);
    assert!(m.nothing_received(&id("a")));
    m.on_progress(&id("a"), &progress(0, 10, None)).unwrap();
    assert!(!m.nothing_received(&id("a")), "received, not yet written");
    m.on_progress(&id("a"), &progress(0, 0, None)).unwrap();
    assert!(m.nothing_received(&id("a")), "restarted from zero");
    m.on_progress(&id("a"), &progress(40, 40, None)).unwrap();
    assert!(!m.nothing_received(&id("a")));
}

#[test]
fn progress_and_finish_reports() {
    let mut m = launched(1);
    assert_eq!(
        code(m.on_progress(&id("ghost"), &progress(1, 1, None))),
        "DownloadDoesNotExist"
    );
    assert_eq!(
        code(m.on_finished(&id("ghost"), 1, [0; 32])),
        "DownloadDoesNotExist"
    );
    m.schedule(download("a", false, Some(100), 50), Caller::Page, 0)
        .unwrap();
    assert_eq!(
        m.on_finished(&id("a"), 100, [0; 32]),
        Err(Error::InvalidTransition {
            identifier: "a".into(),
            from: "waiting".into(),
            to: "finished".into()
        })
    );
    m.poll_start(0);
    events(&mut m);
    m.on_progress(&id("a"), &progress(30, 50, None)).unwrap();
    m.on_progress(&id("a"), &progress(30, 60, None)).unwrap(); // nothing new written
    m.on_progress(&id("a"), &progress(0, 0, None)).unwrap(); // a restart from zero
    m.on_progress(&id("a"), &progress(80, 80, Some(100)))
        .unwrap();
    assert_eq!(
        kinds(&mut m),
        vec![
            ManagerEvent::Progress {
                id: id("a"),
                bytes_written: 30,
                total_written: 30,
                total_expected: Some(100)
            },
            ManagerEvent::Progress {
                id: id("a"),
                bytes_written: 0,
                total_written: 0,
                total_expected: Some(100)
            },
            ManagerEvent::Progress {
                id: id("a"),
                bytes_written: 80,
                total_written: 80,
                total_expected: Some(100)
            },
        ]
    );
    let digest = [7u8; 32];
    assert!(m.on_finished(&id("a"), 100, digest).unwrap().is_empty());
    assert_eq!(
        kinds(&mut m),
        vec![ManagerEvent::Finished {
            id: id("a"),
            size: 100,
            sha256: digest
        }]
    );
    assert_eq!(state(&m, "a"), DownloadState::Finished);
    assert!(m.current_downloads().is_empty());
    assert_eq!(
        code(m.on_progress(&id("a"), &progress(1, 1, None))),
        "DownloadNotScheduled"
    );
    assert_eq!(
        code(m.on_failed(
            &id("a"),
            Error::Network {
                message: "x".into()
            },
            9
        )),
        "InvalidTransition"
    );

    // A finish whose size contradicts the declaration fails the download.
    m.schedule(download("b", false, Some(10), 50), Caller::Page, 0)
        .unwrap();
    m.poll_start(1);
    assert_eq!(
        m.on_finished(&id("b"), 11, digest),
        Err(Error::SizeMismatch {
            identifier: "b".into(),
            expected: 10,
            actual: 11
        })
    );
    assert_eq!(state(&m, "b"), DownloadState::Failed);
}

#[test]
fn a_failed_essential_download_is_requeued_once_as_non_essential() {
    let decl = declaration(
        r#"{ "initialDownloadRestrictions": { "downloadAllowance": 100,
             "essentialDownloadAllowance": 100 } }"#,
    );
    let mut m = Manager::new(decl, &page());
    m.schedule(download("core", true, Some(80), 50), INSTALL, 0)
        .unwrap();
    m.poll_start(0);
    m.on_progress(&id("core"), &progress(30, 30, None)).unwrap();
    events(&mut m);
    let http404 = Error::HttpStatus {
        identifier: "core".into(),
        status: 404,
    };
    m.on_failed(&id("core"), http404.clone(), 5).unwrap();
    assert_eq!(
        kinds(&mut m),
        vec![
            ManagerEvent::Failed {
                id: id("core"),
                error: http404.clone()
            },
            ManagerEvent::EssentialRequeued { id: id("core") },
        ]
    );
    let info = m.download(&id("core")).unwrap();
    assert_eq!(info.state, DownloadState::Waiting);
    assert!(!info.essential && info.requeued_from_essential);
    assert_eq!(info.failed_at, Some(5));
    assert_eq!(info.progress.total_written, 30, "its checkpoint is kept");
    // The 50 unreceived essential bytes were refunded; it is now charged to the download pool.
    assert_eq!(
        m.remaining_allowance(),
        Some(RemainingAllowance {
            essential: 70,
            total: 20
        })
    );
    // A second failure is final.
    assert_eq!(m.poll_start(6), vec![id("core")]);
    m.on_failed(&id("core"), http404.clone(), 7).unwrap();
    assert_eq!(state(&m, "core"), DownloadState::Failed);
    assert!(!kinds(&mut m).contains(&ManagerEvent::EssentialRequeued { id: id("core") }));

    // A non-essential failure is final at once.
    m.schedule(download("extra", false, Some(10), 50), INSTALL, 0)
        .unwrap();
    m.poll_start(8);
    m.on_failed(&id("extra"), http404.clone(), 9).unwrap();
    assert_eq!(state(&m, "extra"), DownloadState::Failed);

    // If the download pool cannot take it before launch, the failure stands.
    m.schedule(download("filler", false, Some(40), 50), INSTALL, 0)
        .unwrap();
    m.schedule(download("huge", true, Some(70), 50), INSTALL, 0)
        .unwrap();
    m.poll_start(10);
    events(&mut m);
    m.on_failed(&id("huge"), http404, 11).unwrap();
    assert_eq!(state(&m, "huge"), DownloadState::Failed);
    assert_eq!(kinds(&mut m).len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Routing
// ---------------------------------------------------------------------------------------------

#[test]
fn routing_follows_the_page_delegate_count() {
    let mut m = launched(3);
    for name in ["a", "b", "c"] {
        m.schedule(plain(name), Caller::Page, 0).unwrap();
    }
    assert_eq!(m.route(), Route::Extension);
    m.poll_start(0);
    m.set_page_delegates(1);
    m.on_progress(&id("a"), &progress(1, 1, None)).unwrap();
    m.set_page_delegates(3);
    m.pause(&id("b")).unwrap();
    m.set_page_delegates(0);
    m.cancel(&id("c")).unwrap();
    let routes: Vec<_> = events(&mut m).into_iter().map(|e| e.route).collect();
    assert_eq!(
        routes,
        vec![
            Route::Extension, // DidBegin a
            Route::Extension, // DidBegin b
            Route::Extension, // DidBegin c
            Route::Pages,     // Progress a
            Route::Pages,     // DidPause b
            Route::Extension, // Failed c
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Storage round trip
// ---------------------------------------------------------------------------------------------

const PACKS: &str = r#"{
  "initialDownloadRestrictions": { "downloadAllowance": 1000, "essentialDownloadAllowance": 1000 },
  "assetPacks": [
    { "id": "intro", "version": "1", "downloadPolicy": "essential", "files": [
      { "path": "video/intro.mp4", "url": "https://app.example.com/intro.mp4", "size": 3,
        "sha256": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" } ] },
    { "id": "levels", "version": "1", "downloadPolicy": "prefetch",
      "installationEventTypes": ["firstInstallation"], "files": [
      { "path": "levels/1.bin", "url": "https://app.example.com/l1.bin", "size": 4,
        "sha256": "1111111111111111111111111111111111111111111111111111111111111111" },
      { "path": "levels/2.bin", "url": "https://app.example.com/l2.bin", "size": 5,
        "sha256": "2222222222222222222222222222222222222222222222222222222222222222" } ] },
    { "id": "maps", "version": "1", "downloadPolicy": "onDemand", "files": [
      { "path": "maps/eu.map", "url": "https://app.example.com/eu.map", "size": 6,
        "sha256": "3333333333333333333333333333333333333333333333333333333333333333" } ] }
  ] }"#;

/// Schedules and runs a few downloads, leaves events pending, pauses one, fails an essential.
fn busy_manager() -> Manager {
    let mut m = Manager::new(declaration(PACKS), &page());
    m.set_limits(QueueLimits {
        max_concurrent: 2,
        bandwidth: None,
    });
    for d in m
        .downloads_for(InstallationEvent::FirstInstallation, 1)
        .unwrap()
    {
        m.schedule(d, INSTALL, 1).unwrap();
    }
    m.schedule(download("x", false, Some(10), 50), INSTALL, 2)
        .unwrap();
    m.schedule(download("y", true, Some(10), 70), INSTALL, 2)
        .unwrap();
    let started = m.poll_start(3);
    m.on_progress(&started[0], &progress(2, 2, None)).unwrap();
    m.pause(&id("x")).unwrap();
    m.on_failed(
        &started[1],
        Error::InvalidTransition {
            identifier: started[1].to_string(),
            from: "waiting".into(),
            to: "finished".into(),
        },
        4,
    )
    .unwrap();
    m.did_launch();
    m.set_page_delegates(1);
    m
}

/// Stored part by part, a manager with packs, failures, pauses and page delegates reads back
/// equal; a decision that touches one download stores a few small parts (not the whole state);
/// a download that ends and is forgotten deletes its part.
#[test]
fn a_manager_stored_by_parts_reads_back_equal_and_stores_only_what_changed() {
    let mut m = busy_manager();
    events(&mut m);
    let mut stored = StoredParts::default();
    let mut store: std::collections::BTreeMap<String, String> = Default::default();
    let first = m.changed_parts(&mut stored).unwrap();
    assert!(first.delete.is_empty());
    let keys: Vec<&str> = first.put.iter().map(|(k, _)| k.as_str()).collect();
    assert!(
        keys.contains(&HEAD_PART) && keys.contains(&DECLARATION_PART),
        "{keys:?}"
    );
    assert!(
        keys.contains(&"download/x") && keys.contains(&"pack/levels"),
        "{keys:?}"
    );
    store.extend(first.put);
    let (restored, _) = Manager::from_parts(store.clone()).unwrap();
    assert_eq!(restored, m);

    // One download's progress (after launch: no allowance to count): its part, nothing else.
    let running = m
        .current_downloads()
        .into_iter()
        .find(|d| d.state == DownloadState::Downloading)
        .unwrap()
        .identifier;
    m.on_progress(&running, &progress(5, 5, None)).unwrap();
    events(&mut m);
    let changes = m.changed_parts(&mut stored).unwrap();
    let keys: Vec<&str> = changes.put.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, [format!("download/{running}")]);
    store.extend(changes.put);
    assert_eq!(Manager::from_parts(store.clone()).unwrap().0, m);

    // Cancelled and forgotten: the part is deleted.
    m.cancel(&id("x")).unwrap();
    let changes = m.changed_parts(&mut stored).unwrap();
    for key in &changes.delete {
        store.remove(key);
    }
    store.extend(changes.put);
    let mut read = m.clone();
    events(&mut read);
    assert_eq!(Manager::from_parts(store.clone()).unwrap().0, read);

    // Bad parts are typed errors naming the part.
    let mut bad = store.clone();
    bad.insert("download/x".into(), "{".into());
    let error = Manager::from_parts(bad).unwrap_err();
    assert_eq!(error.name(), "Storage");
    assert!(error.to_string().contains("download/x"), "{error}");
    let mut unknown = store;
    unknown.insert("nonsense".into(), "{}".into());
    assert!(Manager::from_parts(unknown)
        .unwrap_err()
        .to_string()
        .contains("nonsense"));
}

/// A store of the manager's parts, kept as a driver keeps it: only the changed parts written.
#[derive(Default)]
struct PartStore {
    stored: StoredParts,
    store: std::collections::BTreeMap<String, String>,
}

impl PartStore {
    /// Writes `m`'s changed parts and checks that the store reads back as `m`.
    fn sync(&mut self, m: &mut Manager, after: &str) {
        let changes = m.changed_parts(&mut self.stored).unwrap();
        for key in &changes.delete {
            assert!(
                self.store.remove(key).is_some(),
                "{after}: {key} was not stored"
            );
        }
        self.store.extend(changes.put);
        let mut expected = m.clone();
        events(&mut expected);
        let (read, _) = Manager::from_parts(self.store.clone()).unwrap();
        assert_eq!(read, expected, "after {after}");
    }
}

/// The asset-pack decisions (install, a pack fetched on demand, an update, a removal, new
/// limits) keep the stored parts equal to the manager.
#[test]
fn pack_decisions_stored_by_parts_read_back_equal() {
    let mut m = Manager::new(declaration(PACKS), &page());
    let mut parts = PartStore::default();
    parts.sync(&mut m, "new");
    for d in m
        .downloads_for(InstallationEvent::FirstInstallation, 0)
        .unwrap()
    {
        m.schedule(d, INSTALL, 0).unwrap();
    }
    parts.sync(&mut m, "install");
    m.did_launch();
    parts.sync(&mut m, "launch");
    m.schedule_pack("maps", Caller::Page, 1).unwrap();
    parts.sync(&mut m, "schedule_pack");
    m.set_limits(QueueLimits {
        max_concurrent: 1,
        bandwidth: None,
    });
    parts.sync(&mut m, "set_limits");
    finish_all(&mut m);
    parts.sync(&mut m, "finish_all");
    let v2 = PACKS.replace(
        r#""id": "levels", "version": "1""#,
        r#""id": "levels", "version": "2""#,
    );
    m.apply_manifest(declaration(&v2));
    parts.sync(&mut m, "apply_manifest");
    for d in m.ensure_local_availability("levels", 10).unwrap() {
        m.schedule(d, Caller::Page, 10).unwrap();
    }
    parts.sync(&mut m, "ensure_local_availability");
    for d in m.update_downloads(11).unwrap() {
        let _ = m.schedule(d, Caller::Page, 11);
    }
    parts.sync(&mut m, "update_downloads");
    finish_all(&mut m);
    parts.sync(&mut m, "update finished");
    m.remove_pack("maps").unwrap();
    parts.sync(&mut m, "remove_pack");
}

/// A pack file that finishes stores one small part of its own: the pack's part (whose size
/// grows with its files) is not written again. A pack part stored with its stored-file sets (as
/// before the files had parts) reads back the same and is rewritten without them.
#[test]
fn a_finished_pack_file_stores_its_own_part_not_the_pack() {
    let mut m = Manager::new(declaration(PACKS), &page());
    let mut parts = PartStore::default();
    m.did_launch();
    m.schedule_pack("levels", Caller::Page, 1).unwrap();
    parts.sync(&mut m, "schedule_pack");
    let started = m.poll_start(2);
    parts.sync(&mut m, "poll_start");
    let first = started.first().cloned().expect("a levels file starts");
    let file = m.pack_file(&first).unwrap().clone();
    m.on_finished(&first, file.size, file.sha256).unwrap();
    let changes = m.changed_parts(&mut parts.stored).unwrap();
    let keys: Vec<&str> = changes.put.iter().map(|(k, _)| k.as_str()).collect();
    assert!(
        keys.contains(&format!("packfile/{first}").as_str()),
        "{keys:?}"
    );
    assert!(
        !keys.iter().any(|k| k.starts_with("pack/")),
        "the pack's part is not rewritten: {keys:?}"
    );
    parts.store.extend(changes.put);
    parts.sync(&mut m, "on_finished");

    // Every pack part written the old way: the stored paths inside it, no file parts.
    let mut legacy = parts.store.clone();
    legacy.retain(|key, _| !key.starts_with("packfile/"));
    let whole: serde_json::Value = serde_json::to_value(&m).unwrap();
    for (pack, store) in whole["packs"].as_object().unwrap() {
        legacy.insert(format!("pack/{pack}"), store.to_string());
    }
    let (mut read, mut stored) = Manager::from_parts(legacy.clone()).unwrap();
    let mut expected = m.clone();
    events(&mut expected);
    assert_eq!(read, expected);
    let changes = read.changed_parts(&mut stored).unwrap();
    let keys: Vec<&str> = changes.put.iter().map(|(k, _)| k.as_str()).collect();
    assert!(keys.contains(&"pack/levels"), "rewritten: {keys:?}");
    assert!(
        keys.contains(&format!("packfile/{first}").as_str()),
        "{keys:?}"
    );
    legacy.extend(changes.put);
    let rewritten: serde_json::Value = serde_json::from_str(&legacy["pack/levels"]).unwrap();
    for version in ["complete", "pending"] {
        let stored = &rewritten[version]["stored"];
        assert!(
            stored.is_null() || stored.as_array().is_some_and(|s| s.is_empty()),
            "{rewritten}"
        );
    }
    assert_eq!(Manager::from_parts(legacy).unwrap().0, expected);

    // The pack removed: its part and its files' parts are deleted.
    m.remove_pack("levels").unwrap();
    parts.sync(&mut m, "remove_pack");
    assert!(
        !parts
            .store
            .keys()
            .any(|k| k.starts_with("packfile/") || k == "pack/levels"),
        "{:?}",
        parts.store.keys().collect::<Vec<_>>()
    );
}

#[test]
fn a_stored_busy_manager_is_equal_and_decides_the_same() {
    let mut original = busy_manager();
    let json = serde_json::to_string(&original).unwrap();
    let mut restored: Manager = serde_json::from_str(&json).unwrap();
    assert_eq!(restored, original);
    assert!(!original.current_downloads().is_empty());

    // The same calls give the same answers and the same events.
    let drive = |m: &mut Manager| {
        let mut log = Vec::new();
        log.push(format!("{:?}", events(m)));
        log.push(format!("{:?}", m.poll_start(10)));
        log.push(format!("{:?}", m.resume(&id("x"))));
        log.push(format!(
            "{:?}",
            m.start_foreground(id("x"), Caller::Page, 11)
        ));
        log.push(format!("{:?}", m.poll_start(12)));
        log.push(format!("{:?}", m.pack_status("levels")));
        log.push(format!("{:?}", m.current_downloads()));
        log.push(format!("{:?}", events(m)));
        log
    };
    assert_eq!(drive(&mut restored), drive(&mut original));
    assert_eq!(restored, original);
}

// ---------------------------------------------------------------------------------------------
// Asset packs
// ---------------------------------------------------------------------------------------------

/// Runs every scheduled download to completion with the declared digests.
fn finish_all(m: &mut Manager) -> Vec<Identifier> {
    let mut obsolete = Vec::new();
    loop {
        let started = m.poll_start(100);
        if started.is_empty() {
            return obsolete;
        }
        for d in started {
            let file = m.pack_file(&d).unwrap().clone();
            obsolete.extend(m.on_finished(&d, file.size, file.sha256).unwrap());
        }
    }
}

#[test]
fn install_downloads_come_from_essential_and_prefetch_packs() {
    let mut m = Manager::new(declaration(PACKS), &page());
    let first = m
        .downloads_for(InstallationEvent::FirstInstallation, 5)
        .unwrap();
    let names: Vec<(&str, bool, Option<u64>)> = first
        .iter()
        .map(|d| (d.identifier.as_str(), d.essential, d.file_size))
        .collect();
    assert_eq!(
        names,
        vec![
            ("intro.1.video_2fintro_2emp4", true, Some(3)),
            ("levels.1.levels_2f1_2ebin", false, Some(4)),
            ("levels.1.levels_2f2_2ebin", false, Some(5)),
        ]
    );
    assert_eq!(
        first[0].pack,
        Some(PackMember {
            pack_id: id("intro"),
            path: "video/intro.mp4".into()
        })
    );
    // `levels` only downloads on first installation; `maps` is on demand.
    let update = m
        .downloads_for(InstallationEvent::SubsequentUpdate, 5)
        .unwrap();
    assert_eq!(update.len(), 1);
    assert_eq!(m.pack_status("maps"), Ok(PackStatus::DownloadAvailable));

    for d in first {
        m.schedule(d, INSTALL, 5).unwrap();
    }
    // Scheduled files are not offered again.
    assert!(m
        .downloads_for(InstallationEvent::FirstInstallation, 6)
        .unwrap()
        .is_empty());
    assert_eq!(m.pack_status("levels"), Ok(PackStatus::Downloading));
    assert_eq!(m.file_for_path("levels/1.bin"), None, "not complete yet");
    assert!(finish_all(&mut m).is_empty());
    for pack in ["intro", "levels"] {
        assert_eq!(m.pack_status(pack), Ok(PackStatus::Downloaded));
    }
    assert_eq!(
        m.file_for_path("levels/2.bin"),
        Some((id("levels"), id("levels.1.levels_2f2_2ebin")))
    );
    assert_eq!(m.file_for_path("levels/3.bin"), None);
    assert_eq!(code(m.pack_status("nope")), "AssetPackDoesNotExist");
}

#[test]
fn an_update_keeps_the_old_version_readable_until_the_new_one_is_complete() {
    let mut m = Manager::new(declaration(PACKS), &page());
    m.did_launch();
    for d in m
        .downloads_for(InstallationEvent::FirstInstallation, 0)
        .unwrap()
    {
        m.schedule(d, INSTALL, 0).unwrap();
    }
    finish_all(&mut m);
    let old_l1 = id("levels.1.levels_2f1_2ebin");

    // The manifest bumps `levels` to 2, drops `intro`, adds `music`.
    let v2 = PACKS
        .replace(
            r#""id": "levels", "version": "1""#,
            r#""id": "levels", "version": "2""#,
        )
        .replace(r#""id": "intro""#, r#""id": "music""#);
    let update = m.apply_manifest(declaration(&v2));
    assert_eq!(update.updated, vec![id("levels")]);
    assert_eq!(update.removed, vec![id("intro")]);
    assert_eq!(update.added, vec![id("music")]);
    assert!(update.cancelled.is_empty());
    assert_eq!(m.pack_status("levels"), Ok(PackStatus::UpdateAvailable));
    assert_eq!(m.pack_status("intro"), Ok(PackStatus::Obsolete));
    assert_eq!(m.pack_status("music"), Ok(PackStatus::DownloadAvailable));

    let fetch = m.ensure_local_availability("levels", 10).unwrap();
    assert_eq!(fetch.len(), 2);
    assert!(fetch.iter().all(|d| !d.essential));
    for d in fetch {
        m.schedule(d, Caller::Page, 10).unwrap();
    }
    assert_eq!(m.pack_status("levels"), Ok(PackStatus::Downloading));
    m.set_limits(QueueLimits {
        max_concurrent: 1,
        bandwidth: None,
    });
    // Half done: the old version is still what paths resolve to.
    let started = m.poll_start(11);
    let file = m.pack_file(&started[0]).unwrap().clone();
    assert!(m
        .on_finished(&started[0], file.size, file.sha256)
        .unwrap()
        .is_empty());
    assert_eq!(
        m.file_for_path("levels/1.bin"),
        Some((id("levels"), old_l1.clone()))
    );
    // Complete: the new version swaps in and the old files are handed back for deletion.
    let mut obsolete = finish_all(&mut m);
    obsolete.sort();
    assert_eq!(obsolete, vec![old_l1, id("levels.1.levels_2f2_2ebin")]);
    assert_eq!(m.pack_status("levels"), Ok(PackStatus::Downloaded));
    assert_eq!(
        m.file_for_path("levels/1.bin"),
        Some((id("levels"), id("levels.2.levels_2f1_2ebin")))
    );
    assert!(m
        .ensure_local_availability("levels", 12)
        .unwrap()
        .is_empty());

    // An obsolete pack still answers paths until it is removed.
    assert_eq!(
        m.file_for_path("video/intro.mp4").map(|(pack, _)| pack),
        Some(id("intro"))
    );
    assert_eq!(
        m.remove_pack("intro").unwrap(),
        vec![id("intro.1.video_2fintro_2emp4")]
    );
    assert_eq!(m.file_for_path("video/intro.mp4"), None);
    assert_eq!(code(m.pack_status("intro")), "AssetPackDoesNotExist");
    assert_eq!(code(m.remove_pack("intro")), "AssetPackDoesNotExist");
    assert_eq!(
        code(m.ensure_local_availability("intro", 0)),
        "AssetPackDoesNotExist"
    );
}

#[test]
fn a_failed_update_is_outdated_and_a_superseded_one_is_cancelled() {
    let mut m = Manager::new(declaration(PACKS), &page());
    m.did_launch();
    for d in m.ensure_local_availability("maps", 0).unwrap() {
        m.schedule(d, Caller::Page, 0).unwrap();
    }
    finish_all(&mut m);
    assert_eq!(m.pack_status("maps"), Ok(PackStatus::Downloaded));

    let v2 = PACKS.replace(
        r#""id": "maps", "version": "1""#,
        r#""id": "maps", "version": "2""#,
    );
    m.apply_manifest(declaration(&v2));
    for d in m.ensure_local_availability("maps", 1).unwrap() {
        m.schedule(d, Caller::Page, 1).unwrap();
    }
    let started = m.poll_start(2);
    // A wrong digest fails the file: the pack is outdated (v1 still readable).
    assert!(matches!(
        m.on_finished(&started[0], 6, [0; 32]),
        Err(Error::IntegrityMismatch { .. })
    ));
    assert_eq!(m.pack_status("maps"), Ok(PackStatus::Outdated));
    assert_eq!(
        m.file_for_path("maps/eu.map"),
        Some((id("maps"), id("maps.1.maps_2feu_2emap")))
    );

    // Retry, then a version 3 supersedes version 2 while it downloads: it is cancelled.
    let retry = m.ensure_local_availability("maps", 3).unwrap();
    assert_eq!(retry.len(), 1);
    m.schedule(retry[0].clone(), Caller::Page, 3).unwrap();
    m.poll_start(3);
    let v3 = PACKS.replace(
        r#""id": "maps", "version": "1""#,
        r#""id": "maps", "version": "3""#,
    );
    let update = m.apply_manifest(declaration(&v3));
    assert_eq!(update.cancelled, vec![id("maps.2.maps_2feu_2emap")]);
    assert_eq!(state(&m, "maps.2.maps_2feu_2emap"), DownloadState::Failed);
    assert_eq!(m.pack_status("maps"), Ok(PackStatus::UpdateAvailable));

    // remove_pack cancels what is scheduled and returns every stored identifier.
    for d in m.ensure_local_availability("maps", 4).unwrap() {
        m.schedule(d, Caller::Page, 4).unwrap();
    }
    let removed = m.remove_pack("maps").unwrap();
    assert_eq!(
        removed,
        vec![id("maps.1.maps_2feu_2emap"), id("maps.3.maps_2feu_2emap")]
    );
    assert_eq!(state(&m, "maps.3.maps_2feu_2emap"), DownloadState::Failed);
    assert_eq!(m.pack_status("maps"), Ok(PackStatus::DownloadAvailable));
}

#[test]
fn pack_file_identifiers_separate_look_alike_inputs() {
    let cases = [
        ("a", "1", "b/c"),
        ("a", "1", "b_2fc"),
        ("a", "1", "b.c"),
        ("a", "1", "b_c"),
        ("a", "1.b", "c"),
        ("a.1", "b", "c"),
        ("a", "", "1.b/c"),
        ("a", "1", "B/c"),
    ];
    let ids: BTreeSet<Identifier> = cases
        .iter()
        .map(|(p, v, f)| pack_file_identifier(&id(p), v, f))
        .collect();
    assert_eq!(ids.len(), cases.len(), "{ids:?}");
    // Long inputs fall back to the hashed family, still distinct and valid.
    let long_a = pack_file_identifier(&id("p"), "1", &"dir/".repeat(40));
    let long_b = pack_file_identifier(&id("p"), "2", &"dir/".repeat(40));
    assert!(long_a.as_str().starts_with("sha256.") && long_a.len() <= Identifier::MAX_LEN);
    assert_ne!(long_a, long_b);
}

proptest! {
    #[test]
    fn pack_file_identifiers_are_valid_and_injective(
        a in ("[a-z._-]{1,6}", "[0-9a-z._/-]{0,4}", "[a-zA-Z0-9._/%-]{1,80}"),
        b in ("[a-z._-]{1,6}", "[0-9a-z._/-]{0,4}", "[a-zA-Z0-9._/%-]{1,80}"),
    ) {
        let (Ok(pa), Ok(pb)) = (Identifier::new(a.0.clone()), Identifier::new(b.0.clone())) else {
            return Ok(());
        };
        let ia = pack_file_identifier(&pa, &a.1, &a.2);
        let ib = pack_file_identifier(&pb, &b.1, &b.2);
        prop_assert!(Identifier::new(ia.as_str()).is_ok());
        prop_assert_eq!(ia == ib, (pa, &a.1, &a.2) == (pb, &b.1, &b.2));
        prop_assert_eq!(&ia, &pack_file_identifier(&Identifier::new(a.0).unwrap(), &a.1, &a.2));
    }
}

// ---------------------------------------------------------------------------------------------
// Property test
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Op {
    Schedule(usize, bool),
    Foreground(usize),
    Cancel(usize),
    Pause(usize),
    Resume(usize),
    Finish(usize),
    Fail(usize),
    PollStart,
}

const NAMES: [&str; 5] = ["d0", "d1", "d2", "d3", "d4"];

fn op() -> impl Strategy<Value = Op> {
    let i = 0..NAMES.len();
    prop_oneof![
        (i.clone(), any::<bool>()).prop_map(|(i, e)| Op::Schedule(i, e)),
        i.clone().prop_map(Op::Foreground),
        i.clone().prop_map(Op::Cancel),
        i.clone().prop_map(Op::Pause),
        i.clone().prop_map(Op::Resume),
        i.clone().prop_map(Op::Finish),
        i.prop_map(Op::Fail),
        Just(Op::PollStart),
        Just(Op::PollStart),
    ]
}

/// The errors each operation may give: anything else (or a panic) fails the property.
fn allowed(op: &Op) -> &'static [&'static str] {
    match op {
        Op::Schedule(..) => &["DownloadAlreadyScheduled"],
        Op::Foreground(_) => &["DownloadAlreadyScheduled"],
        Op::Cancel(_) => &["DownloadDoesNotExist", "DownloadNotScheduled"],
        Op::Pause(_) => &[
            "DownloadDoesNotExist",
            "DownloadNotScheduled",
            "InvalidTransition",
        ],
        Op::Resume(_) => &[
            "DownloadDoesNotExist",
            "DownloadNotScheduled",
            "InvalidTransition",
        ],
        Op::Finish(_) | Op::Fail(_) => &["DownloadDoesNotExist", "InvalidTransition"],
        Op::PollStart => &[],
    }
}

fn run(ops: &[Op], max: usize) -> Result<Vec<String>, TestCaseError> {
    let mut m = launched(max);
    let mut log = Vec::new();
    // The state stored part by part after every operation, as a driver stores it.
    let mut store: std::collections::BTreeMap<String, String> = Default::default();
    let mut stored = StoredParts::default();
    // A model of what runs, from the manager's answers alone: it must match its own view.
    let mut model: BTreeSet<Identifier> = BTreeSet::new();
    for (now, op) in ops.iter().enumerate() {
        let now = now as u64;
        let name = |i: &usize| id(NAMES[*i]);
        let mut started = Vec::new();
        let result: Result<(), Error> = match op {
            Op::Schedule(i, essential) => {
                let d = download(NAMES[*i], *essential, Some(10), (*i as i64) * 20);
                m.schedule(d, INSTALL, now)
            }
            Op::Foreground(i) => m
                .start_foreground(download(NAMES[*i], false, Some(10), 0), Caller::Page, now)
                .map(|preempted| {
                    for p in &preempted {
                        model.remove(p);
                    }
                }),
            Op::Cancel(i) => match m.cancel(&name(i)) {
                Ok(was_running) => {
                    prop_assert_eq!(was_running, model.remove(&name(i)));
                    Ok(())
                }
                Err(e) => Err(e),
            },
            Op::Pause(i) => match m.pause(&name(i)) {
                Ok(was_running) => {
                    prop_assert_eq!(was_running, model.remove(&name(i)));
                    Ok(())
                }
                Err(e) => Err(e),
            },
            Op::Resume(i) => m.resume(&name(i)),
            Op::Finish(i) => m.on_finished(&name(i), 10, [0; 32]).map(|_| {
                model.remove(&name(i));
            }),
            Op::Fail(i) => m
                .on_failed(
                    &name(i),
                    Error::Network {
                        message: "reset".into(),
                    },
                    now,
                )
                .map(|()| {
                    model.remove(&name(i));
                }),
            Op::PollStart => {
                started = m.poll_start(now);
                model.extend(started.iter().cloned());
                Ok(())
            }
        };
        if let Err(e) = &result {
            prop_assert!(allowed(op).contains(&e.name()), "{:?} gave {:?}", op, e);
        }
        log.push(format!("{op:?} -> {result:?} {started:?}"));

        let current = m.current_downloads();
        let running: Vec<&DownloadInfo> = current
            .iter()
            .filter(|d| d.state == DownloadState::Downloading)
            .collect();
        prop_assert!(running.len() <= max.max(1), "{} running", running.len());
        let running_ids: BTreeSet<Identifier> =
            running.iter().map(|d| d.identifier.clone()).collect();
        prop_assert_eq!(&running_ids, &model, "after {:?}", op);
        let downloading: BTreeSet<Identifier> = m.downloading().into_iter().collect();
        prop_assert_eq!(&downloading, &running_ids, "downloading() after {:?}", op);
        let essential_waiting = current
            .iter()
            .any(|d| d.essential && d.state == DownloadState::Waiting);
        if essential_waiting && matches!(op, Op::PollStart) {
            // The queue is full, and what was just started outranks a waiting essential.
            prop_assert_eq!(running.len(), max.max(1));
            for started in &started {
                let info = m.download(started).unwrap();
                prop_assert!(
                    info.essential || info.foreground,
                    "{:?} started while an essential waits",
                    started
                );
            }
        }
        // Every event names a known download; Failed events carry a typed error.
        for e in events(&mut m) {
            if let ManagerEvent::Failed { id, error } = &e.event {
                prop_assert!(m.download(id).is_some());
                prop_assert!(!error.name().is_empty());
            }
        }
        // Storing only the changed parts keeps the stored state equal to the manager.
        let changes = m.changed_parts(&mut stored).unwrap();
        for key in &changes.delete {
            prop_assert!(
                store.remove(key).is_some(),
                "deleted {} was not stored",
                key
            );
        }
        store.extend(changes.put);
        let (restored, read) = Manager::from_parts(store.clone()).unwrap();
        prop_assert_eq!(&restored, &m, "after {:?}", op);
        prop_assert_eq!(&read, &stored);
        prop_assert!(m.changed_parts(&mut stored.clone()).unwrap().is_empty());
    }
    // A stored manager decides the same.
    let restored: Manager = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
    prop_assert_eq!(&restored, &m);
    let ids: BTreeSet<_> = m
        .current_downloads()
        .into_iter()
        .map(|d| d.identifier)
        .collect();
    log.push(format!("{ids:?}"));
    Ok(log)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn manager_invariants_hold(ops in prop::collection::vec(op(), 0..60), max in 1usize..4) {
        let first = run(&ops, max)?;
        prop_assert_eq!(first, run(&ops, max)?);
    }
}

// ---------------------------------------------------------------------------------------------
// Asset packs: what the web layer's pack API reads and decides with
// ---------------------------------------------------------------------------------------------

fn v(version: &str, pack: &str) -> String {
    PACKS.replace(
        &format!(r#""id": "{pack}", "version": "1""#),
        &format!(r#""id": "{pack}", "version": "{version}""#),
    )
}

#[test]
fn packs_lists_declared_then_obsolete_packs_with_status_and_files() {
    let mut m = Manager::new(declaration(PACKS), &page());
    m.did_launch();
    let packs = m.packs();
    let ids: Vec<&str> = packs.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, vec!["intro", "levels", "maps"]);
    let levels = &packs[1];
    assert_eq!(
        (levels.version.as_str(), levels.stored_version.as_deref()),
        ("1", None)
    );
    assert_eq!(
        (levels.policy, levels.size, levels.status),
        (
            Some(DownloadPolicy::Prefetch),
            9,
            PackStatus::DownloadAvailable
        )
    );
    assert_eq!(levels.files[1].path, "levels/2.bin");
    assert_eq!(
        levels.files[1].identifier,
        pack_file_identifier(&id("levels"), "1", "levels/2.bin")
    );
    assert_eq!(
        levels.files[1].url.as_deref(),
        Some("https://app.example.com/l2.bin")
    );
    assert_eq!(levels.files[1].sha256.as_deref(), Some(&*"2".repeat(64)));

    // Half of `levels` stored: that file says so, the pack is still downloading.
    m.schedule_pack("levels", Caller::Page, 0).unwrap();
    m.set_limits(QueueLimits {
        max_concurrent: 1,
        bandwidth: None,
    });
    let first = m.poll_start(1).remove(0);
    let file = m.pack_file(&first).unwrap().clone();
    m.on_finished(&first, file.size, file.sha256).unwrap();
    let levels = m.packs().remove(1);
    assert_eq!(levels.status, PackStatus::Downloading);
    let stored: Vec<bool> = levels.files.iter().map(|f| f.stored).collect();
    assert_eq!(stored, vec![true, false]);
    finish_all(&mut m);
    let levels = m.packs().remove(1);
    assert_eq!(levels.stored_version.as_deref(), Some("1"));
    assert!(levels.files.iter().all(|f| f.stored));

    // Dropped from the manifest: listed after the declared ones, obsolete, with stored sizes.
    m.apply_manifest(declaration(
        &PACKS.replace(r#""id": "levels""#, r#""id": "music""#),
    ));
    let packs = m.packs();
    let ids: Vec<&str> = packs.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, vec!["intro", "music", "maps", "levels"]);
    let obsolete = &packs[3];
    assert_eq!(
        (obsolete.status, obsolete.policy, obsolete.size),
        (PackStatus::Obsolete, None, 9)
    );
    assert!(obsolete
        .files
        .iter()
        .all(|f| f.stored && f.url.is_none() && f.sha256.is_none()));
    // The listing survives storage (the web layer hands it to JS as JSON).
    let json = serde_json::to_value(&packs).unwrap();
    assert_eq!(json[3]["storedVersion"], "1");
    assert_eq!(json[0]["status"], "downloadAvailable");
}

#[test]
fn a_failed_pack_file_keeps_its_error_until_it_is_scheduled_again() {
    let mut m = Manager::new(declaration(PACKS), &page());
    m.did_launch();
    assert_eq!(m.pack_failure("maps"), None);
    let ids = m.schedule_pack("maps", Caller::Page, 0).unwrap();
    let started = m.poll_start(1);
    assert_eq!(started, ids);
    let wrong = m.on_finished(&started[0], 6, [7; 32]).unwrap_err();
    assert_eq!(wrong.name(), "IntegrityMismatch");
    assert_eq!(m.failure(&started[0]), Some(&wrong));
    assert_eq!(m.pack_failure("maps"), Some(wrong.clone()));
    assert_eq!(m.pack_status("maps"), Ok(PackStatus::DownloadAvailable));
    // The error survives storage, and a state stored before errors were kept still loads.
    let json = serde_json::to_string(&m).unwrap();
    let restored: Manager = serde_json::from_str(&json).unwrap();
    assert_eq!(restored.pack_failure("maps"), Some(wrong.clone()));
    let mut old: serde_json::Value = serde_json::from_str(&json).unwrap();
    for record in old["records"].as_object_mut().unwrap().values_mut() {
        record.as_object_mut().unwrap().remove("error");
    }
    let old: Manager = serde_json::from_value(old).unwrap();
    assert_eq!(
        old.pack_failure("maps").map(|e| e.name()),
        Some("Cancelled"),
        "a failure without its stored reason is still a failure"
    );
    // Scheduled again: no failure while it runs.
    assert_eq!(m.schedule_pack("maps", Caller::Page, 2).unwrap(), ids);
    assert_eq!(m.failure(&ids[0]), None);
    assert_eq!(m.pack_failure("maps"), None);
    assert_eq!(
        code(m.schedule_pack("nope", Caller::Page, 2)),
        "AssetPackDoesNotExist"
    );
}

#[test]
fn schedule_pack_changes_nothing_when_one_file_is_refused() {
    // Before launch, the extension's allowance admits `levels/1.bin` (4) but not both (9).
    let limited = PACKS.replace(r#""downloadAllowance": 1000"#, r#""downloadAllowance": 6"#);
    let mut m = Manager::new(declaration(&limited), &page());
    let before = m.clone();
    let refused = m.schedule_pack("levels", INSTALL, 0);
    assert_eq!(code(refused), "DownloadWouldExceedAllowance");
    assert_eq!(m, before, "nothing scheduled, nothing tracked");
    assert!(m.current_downloads().is_empty());
    assert_eq!(m.remaining_allowance().unwrap().total, 6);
}

#[test]
fn essential_pending_lasts_through_a_requeue_until_the_download_ends() {
    let mut m = Manager::new(declaration(PACKS), &page());
    assert!(!m.essential_pending());
    for d in m
        .downloads_for(InstallationEvent::FirstInstallation, 0)
        .unwrap()
    {
        m.schedule(d, INSTALL, 0).unwrap();
    }
    assert!(m.essential_pending());
    let intro = pack_file_identifier(&id("intro"), "1", "video/intro.mp4");
    m.poll_start(1);
    m.on_failed(
        &intro,
        Error::HttpStatus {
            identifier: intro.to_string(),
            status: 500,
        },
        2,
    )
    .unwrap();
    let info = m.download(&intro).unwrap();
    assert!(info.requeued_from_essential && !info.essential);
    assert!(m.essential_pending(), "re-queued essential still gates");
    // Prefetch files finishing change nothing; the requeued one failing again ends the wait.
    m.poll_start(3);
    m.on_failed(
        &intro,
        Error::HttpStatus {
            identifier: intro.to_string(),
            status: 500,
        },
        4,
    )
    .unwrap();
    assert_eq!(state(&m, intro.as_str()), DownloadState::Failed);
    assert!(!m.essential_pending());
    assert_eq!(m.pack_failure("intro").unwrap().name(), "HttpStatus");
}

#[test]
fn update_downloads_fetch_new_versions_of_stored_packs_only() {
    let mut m = Manager::new(declaration(PACKS), &page());
    m.did_launch();
    m.schedule_pack("maps", Caller::Page, 0).unwrap();
    finish_all(&mut m);
    assert!(m.update_downloads(1).unwrap().is_empty(), "all current");
    // maps (stored) and levels (never stored) both change version.
    let two = v("2", "maps").replace(
        r#""id": "levels", "version": "1""#,
        r#""id": "levels", "version": "2""#,
    );
    let update = m.apply_manifest(declaration(&two));
    assert_eq!(update.updated, vec![id("levels"), id("maps")]);
    let downloads = m.update_downloads(2).unwrap();
    let ids: Vec<&str> = downloads.iter().map(|d| d.identifier.as_str()).collect();
    assert_eq!(ids, vec!["maps.2.maps_2feu_2emap"]);
    assert!(!downloads[0].essential);
    for d in downloads {
        m.schedule(d, Caller::Page, 2).unwrap();
    }
    assert_eq!(
        m.scheduled_pack_files("maps"),
        vec![id("maps.2.maps_2feu_2emap")]
    );
    assert!(m.scheduled_pack_files("levels").is_empty());
    assert!(m.scheduled_pack_files("no pack").is_empty());
    // A version 3 would cancel the pending version 2; version 2 again would not.
    assert_eq!(
        m.superseded_by(&declaration(&v("3", "maps"))),
        vec![id("maps.2.maps_2feu_2emap")]
    );
    assert!(m.superseded_by(&declaration(&two)).is_empty());
    let update = m.apply_manifest(declaration(&v("3", "maps")));
    assert_eq!(update.cancelled, vec![id("maps.2.maps_2feu_2emap")]);
    assert!(m.scheduled_pack_files("maps").is_empty());
}

/// The stored form of every event, as earlier builds wrote it (serde's internally tagged enum:
/// the kind in camelCase, the fields as named), reads back to the same event and writes back to
/// the same JSON.
#[test]
fn stored_events_keep_their_json_form() {
    let sha = [7u8; 32];
    let sha_json = serde_json::to_string(&sha).unwrap();
    let cases: Vec<(ManagerEvent, String)> = vec![
        (
            ManagerEvent::DidBegin { id: id("a") },
            r#"{"kind":"didBegin","id":"a"}"#.into(),
        ),
        (
            ManagerEvent::DidPause { id: id("a") },
            r#"{"kind":"didPause","id":"a"}"#.into(),
        ),
        (
            ManagerEvent::Progress {
                id: id("a"),
                bytes_written: 3,
                total_written: 10,
                total_expected: Some(20),
            },
            r#"{"kind":"progress","id":"a","bytes_written":3,"total_written":10,"total_expected":20}"#
                .into(),
        ),
        (
            ManagerEvent::Progress {
                id: id("a"),
                bytes_written: 3,
                total_written: 10,
                total_expected: None,
            },
            r#"{"kind":"progress","id":"a","bytes_written":3,"total_written":10,"total_expected":null}"#
                .into(),
        ),
        (
            ManagerEvent::Failed {
                id: id("a"),
                error: Error::DownloadNotScheduled {
                    identifier: "a".into(),
                },
            },
            r#"{"kind":"failed","id":"a","error":{"DownloadNotScheduled":{"identifier":"a"}}}"#
                .into(),
        ),
        (
            ManagerEvent::Finished {
                id: id("a"),
                size: 5,
                sha256: sha,
            },
            format!(r#"{{"kind":"finished","id":"a","size":5,"sha256":{sha_json}}}"#),
        ),
        (
            ManagerEvent::EssentialRequeued { id: id("a") },
            r#"{"kind":"essentialRequeued","id":"a"}"#.into(),
        ),
    ];
    for (event, json) in cases {
        assert_eq!(serde_json::to_string(&event).unwrap(), json);
        let back: ManagerEvent = serde_json::from_str(&json).unwrap();
        assert_eq!(back, event, "{json}");
    }
    // Fields in another order, and fields that are not the kind's, still read.
    let back: ManagerEvent =
        serde_json::from_str(r#"{"id":"b","size":1,"kind":"didBegin","extra":true}"#).unwrap();
    assert_eq!(back, ManagerEvent::DidBegin { id: id("b") });
    // A missing total is no total.
    let back: ManagerEvent =
        serde_json::from_str(r#"{"kind":"progress","id":"a","bytes_written":1,"total_written":1}"#)
            .unwrap();
    assert!(matches!(
        back,
        ManagerEvent::Progress {
            total_expected: None,
            ..
        }
    ));
}

/// A stored event missing what its kind needs, or of an unknown kind, or with a bad identifier,
/// is refused with an error naming what was wrong.
#[test]
fn malformed_stored_events_are_refused_by_name() {
    for (json, named) in [
        (r#"{"kind":"failed","id":"a"}"#, "error"),
        (r#"{"kind":"finished","id":"a","size":1}"#, "sha256"),
        (
            r#"{"kind":"progress","id":"a","total_written":1}"#,
            "bytes_written",
        ),
        (r#"{"kind":"didBegin"}"#, "id"),
        (r#"{"kind":"didExplode","id":"a"}"#, "didExplode"),
        (r#"{"id":"a"}"#, "kind"),
        (r#"{"kind":"didBegin","id":"../x"}"#, "../x"),
    ] {
        let err = serde_json::from_str::<ManagerEvent>(json).unwrap_err();
        assert!(err.to_string().contains(named), "{json}: {err}");
    }
}
