//! Asset packs on `web::manager::DownloadManager` (sw and page suites): declarations whose pack
//! files are CDN `/gen` bodies with their true digests, remote manifests and re-read
//! declarations served by the CDN's `/echo`, a fresh database per test (deleted at the end).
//!
//! Mid-way points use `throttle=`: a throttled file is still downloading when the test looks.

use background_assets::core::declaration::parse_declaration;
use background_assets::core::download::Identifier;
use background_assets::core::error::{hex, Error};
use background_assets::core::integrity::ChunkDigests;
use background_assets::core::manager::{Caller, ExtensionEvent, PackStatus};
use background_assets::web::container::Container;
use background_assets::web::js;
use background_assets::web::manager::{DownloadManager, FinishedDownload, ManagerConfig};
use background_assets::web::packs::{PackStatusUpdate, PackStatusUpdates};
use futures::future::{select, Either};
use futures::StreamExt;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::wasm_bindgen_test;

use super::common::{cdn_chunk_digests, cdn_sha256, fetch_all, gen_path, probe, unique_name};

const INSTALL: Caller = Caller::Extension {
    event: Some(ExtensionEvent::Install),
};

fn cdn() -> &'static str {
    super::common::cdn_origin()
}

/// One pack file: a CDN `/gen/<len>/<seed>` body (with `query` faults) and its true digest.
struct GenFile {
    path: String,
    url: String,
    len: u64,
    seed: u64,
    sha256: String,
}

async fn gen_file(path: &str, len: u64, query: &str) -> GenFile {
    let seed = 40_000 + probe() % 10_000;
    GenFile {
        path: path.to_string(),
        url: format!("{}{}", cdn(), gen_path(len, seed, query)),
        len,
        seed,
        sha256: cdn_sha256(len, seed).await,
    }
}

/// The bytes the CDN serves for `file` (without faults).
async fn source_bytes(file: &GenFile) -> Vec<u8> {
    fetch_all(&format!("{}/gen/{}/{}", cdn(), file.len, file.seed)).await
}

fn pack_json(id: &str, version: &str, policy: &str, files: &[&GenFile]) -> String {
    let files: Vec<String> = files
        .iter()
        .map(|f| {
            format!(
                r#"{{ "path": "{}", "url": "{}", "size": {}, "sha256": "{}" }}"#,
                f.path, f.url, f.len, f.sha256
            )
        })
        .collect();
    format!(
        r#"{{ "id": "{id}", "version": "{version}", "downloadPolicy": "{policy}", "files": [{}] }}"#,
        files.join(", ")
    )
}

/// A declaration with the CDN allowed, generous allowances, `extra` root keys and `packs`.
fn declaration_json(extra: &str, packs: &[String]) -> String {
    format!(
        r#"{{ "initialDownloadRestrictions": {{ "domainAllowList": ["127.0.0.1"],
              "downloadAllowance": 10000000, "essentialDownloadAllowance": 10000000 }},
              {extra} "assetPacks": [{}] }}"#,
        packs.join(", ")
    )
}

/// A CDN URL that answers `body` (percent-encoded into the query).
fn echo_url(body: &str) -> String {
    let mut encoded = String::new();
    for b in body.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("{}/echo?probe={}&body={encoded}", cdn(), probe())
}

fn config(database: &str, json: &str, caller: Caller) -> ManagerConfig {
    let page = url::Url::parse(&js::origin()).unwrap().join("/").unwrap();
    let declaration = parse_declaration(json, &page).unwrap();
    let mut config = ManagerConfig::new(declaration, page);
    config.database = database.to_string();
    config.caller = Some(caller);
    config.transfer.backoff_base_ms = 50;
    config.transfer.backoff_max_ms = 400;
    config
}

/// A manager on a fresh database with `config` tweaks; launched unless it is the installing
/// extension.
async fn open(label: &str, json: &str, caller: Caller) -> (DownloadManager, String) {
    open_with(label, json, caller, |_| {}).await
}

async fn open_with(
    label: &str,
    json: &str,
    caller: Caller,
    tweak: impl FnOnce(&mut ManagerConfig),
) -> (DownloadManager, String) {
    let database = unique_name(&format!("ba-packs-{label}"));
    let mut config = config(&database, json, caller);
    tweak(&mut config);
    let manager = within("DownloadManager::open", DownloadManager::open(config))
        .await
        .unwrap();
    if caller != INSTALL {
        manager.did_launch().await.unwrap();
    }
    (manager, database)
}

async fn remove(manager: DownloadManager, database: &str) {
    within("close", manager.close()).await;
    drop(manager);
    within("delete_database", Container::delete_database(database))
        .await
        .unwrap();
}

async fn bytes_of(finished: &FinishedDownload) -> Vec<u8> {
    let response = finished.response().await.unwrap();
    let buffer = JsFuture::from(response.array_buffer().unwrap())
        .await
        .unwrap();
    js_sys::Uint8Array::new(buffer.unchecked_ref()).to_vec()
}

/// `future`'s output, or a panic naming `what` after 30 s: a wait that never ends fails its test
/// instead of hanging the whole suite.
async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    let timeout = gloo_timers::future::TimeoutFuture::new(30_000);
    match select(Box::pin(future), timeout).await {
        Either::Left((value, _)) => value,
        Either::Right(_) => panic!("{what} did not end within 30 s"),
    }
}

/// The next update, or a panic after 10 s.
async fn next_update(updates: &mut PackStatusUpdates) -> PackStatusUpdate {
    let timeout = gloo_timers::future::TimeoutFuture::new(10_000);
    match select(updates.next(), timeout).await {
        Either::Left((Some(update), _)) => update,
        Either::Left((None, _)) => panic!("the status stream ended"),
        Either::Right(_) => panic!("no status update within 10 s"),
    }
}

/// Polls `check` every 10 ms; panics naming `what` after 10 s.
async fn eventually<F: std::future::Future<Output = bool>>(
    what: &str,
    mut check: impl FnMut() -> F,
) {
    for _ in 0..1000 {
        if check().await {
            return;
        }
        gloo_timers::future::TimeoutFuture::new(10).await;
    }
    panic!("timed out waiting until {what}");
}

async fn is_stored(manager: &DownloadManager, id: &Identifier) -> bool {
    let container = manager.container().await.unwrap();
    container.asset(id.as_str()).await.unwrap().is_some()
}

fn update(pack: &str, status: PackStatus) -> PackStatusUpdate {
    PackStatusUpdate {
        pack: Identifier::new(pack).unwrap(),
        status,
    }
}

#[wasm_bindgen_test]
async fn an_on_demand_pack_goes_available_downloading_downloaded_and_reads_back() {
    let eu = gen_file("maps/eu.map", 3_000, "").await;
    let us = gen_file("maps/us.map", 5_000, "").await;
    let json = declaration_json("", &[pack_json("maps", "1", "onDemand", &[&eu, &us])]);
    let (manager, database) = open("status", &json, Caller::Page).await;

    let mut updates = manager.status_updates();
    assert_eq!(
        next_update(&mut updates).await,
        update("maps", PackStatus::DownloadAvailable)
    );
    assert!(manager.file("maps/eu.map").await.unwrap().is_none());
    within(
        "ensure_local_availability",
        manager.ensure_local_availability("maps"),
    )
    .await
    .unwrap();
    assert_eq!(
        next_update(&mut updates).await,
        update("maps", PackStatus::Downloading)
    );
    assert_eq!(
        next_update(&mut updates).await,
        update("maps", PackStatus::Downloaded)
    );
    assert_eq!(
        manager.pack_status("maps").await.unwrap(),
        PackStatus::Downloaded
    );
    let info = manager.packs().await.unwrap().remove(0);
    assert_eq!(
        (info.size, info.stored_version.as_deref()),
        (8_000, Some("1"))
    );
    assert!(info.files.iter().all(|f| f.stored), "{info:?}");

    for file in [&eu, &us] {
        let stored = manager.file(&file.path).await.unwrap().expect("stored");
        assert_eq!(
            (stored.size, stored.sha256.as_str()),
            (file.len, file.sha256.as_str())
        );
        assert_eq!(bytes_of(&stored).await, source_bytes(file).await);
        assert!(stored.url().contains("/background-assets/id/"));
    }
    assert!(manager.file("maps/none.map").await.unwrap().is_none());
    // Available already: resolves at once, fetches nothing new.
    within(
        "ensure_local_availability",
        manager.ensure_local_availability("maps"),
    )
    .await
    .unwrap();

    // remove_pack deletes the stored files; the pack can be fetched again.
    let eu_id = manager
        .file("maps/eu.map")
        .await
        .unwrap()
        .unwrap()
        .identifier;
    manager.remove_pack("maps").await.unwrap();
    assert!(!is_stored(&manager, &eu_id).await);
    assert!(manager.file("maps/eu.map").await.unwrap().is_none());
    assert_eq!(
        manager.pack_status("maps").await.unwrap(),
        PackStatus::DownloadAvailable
    );
    assert_eq!(
        next_update(&mut updates).await,
        update("maps", PackStatus::DownloadAvailable)
    );
    drop(updates);
    remove(manager, &database).await;
}

#[wasm_bindgen_test]
async fn unknown_packs_are_typed_errors() {
    let json = declaration_json("", &[]);
    let (manager, database) = open("unknown", &json, Caller::Page).await;
    let is_missing =
        |r: Result<_, Error>| matches!(r, Err(Error::AssetPackDoesNotExist { id }) if id == "nope");
    assert!(is_missing(manager.pack_status("nope").await.map(|_| ())));
    assert!(is_missing(
        within(
            "ensure_local_availability",
            manager.ensure_local_availability("nope")
        )
        .await
    ));
    assert!(is_missing(manager.remove_pack("nope").await));
    assert!(manager.packs().await.unwrap().is_empty());
    remove(manager, &database).await;
}

#[wasm_bindgen_test]
async fn check_for_updates_swaps_a_pack_atomically_then_deletes_the_old_files() {
    let v1 = gen_file("levels/1.bin", 2_000, "").await;
    // Version 2 arrives slowly (about 0.6 s), so the test sees the swap half-way.
    let v2 = gen_file("levels/1.bin", 3_000, "throttle=5000").await;
    let gone = gen_file("intro/a.bin", 1_000, "").await;
    let old = declaration_json(
        "",
        &[
            pack_json("levels", "1", "onDemand", &[&v1]),
            pack_json("gone", "1", "onDemand", &[&gone]),
        ],
    );
    // pkg.json as re-read: `levels` is at version 2 and `gone` is no longer declared.
    let new = declaration_json("", &[pack_json("levels", "2", "onDemand", &[&v2])]);
    let pkg_json = url::Url::parse(&echo_url(&new)).unwrap();
    let (manager, database) = open_with("update", &old, Caller::Page, |config| {
        config.declaration_url = Some(pkg_json);
    })
    .await;
    within(
        "ensure_local_availability",
        manager.ensure_local_availability("levels"),
    )
    .await
    .unwrap();
    within(
        "ensure_local_availability",
        manager.ensure_local_availability("gone"),
    )
    .await
    .unwrap();
    let old_file = manager.file("levels/1.bin").await.unwrap().unwrap();

    let summary = within("check_for_updates", manager.check_for_updates())
        .await
        .unwrap();
    assert_eq!(summary.updated, vec![Identifier::new("levels").unwrap()]);
    assert_eq!(summary.removed, vec![Identifier::new("gone").unwrap()]);
    // The new version is being fetched; the old one is what `file` answers meanwhile.
    assert_eq!(
        manager.pack_status("levels").await.unwrap(),
        PackStatus::Downloading
    );
    let during = manager.file("levels/1.bin").await.unwrap().unwrap();
    assert_eq!(during.identifier, old_file.identifier);
    assert_eq!(bytes_of(&during).await, source_bytes(&v1).await);

    within(
        "ensure_local_availability",
        manager.ensure_local_availability("levels"),
    )
    .await
    .unwrap();
    let after = manager.file("levels/1.bin").await.unwrap().unwrap();
    assert_ne!(after.identifier, old_file.identifier);
    assert_eq!(
        (after.size, after.sha256.as_str()),
        (v2.len, v2.sha256.as_str())
    );
    assert_eq!(bytes_of(&after).await, source_bytes(&v2).await);
    eventually("the old version is deleted", || {
        let (manager, id) = (manager.clone(), old_file.identifier.clone());
        async move { !is_stored(&manager, &id).await }
    })
    .await;

    // A pack dropped by the new declaration is obsolete but readable until removed.
    assert_eq!(
        manager.pack_status("gone").await.unwrap(),
        PackStatus::Obsolete
    );
    let gone_file = manager.file("intro/a.bin").await.unwrap().unwrap();
    assert_eq!(bytes_of(&gone_file).await, source_bytes(&gone).await);
    manager.remove_pack("gone").await.unwrap();
    assert!(!is_stored(&manager, &gone_file.identifier).await);
    assert!(matches!(
        manager.pack_status("gone").await,
        Err(Error::AssetPackDoesNotExist { .. })
    ));
    // Nothing changed since: a second check updates nothing.
    let again = within("check_for_updates", manager.check_for_updates())
        .await
        .unwrap();
    assert!(
        again.updated.is_empty() && again.removed.is_empty(),
        "{again:?}"
    );
    remove(manager, &database).await;
}

#[wasm_bindgen_test]
async fn a_wrong_digest_in_the_manifest_fails_typed_and_keeps_the_old_version() {
    let v1 = gen_file("maps/eu.map", 2_000, "").await;
    let mut v2 = gen_file("maps/eu.map", 2_500, "").await;
    let declared_digest = cdn_sha256(2_500, v2.seed + 1).await; // another body's digest
    v2.sha256 = declared_digest.clone();
    let manifest = format!(
        r#"{{ "version": "7", "assetPacks": [{}] }}"#,
        pack_json("maps", "2", "onDemand", &[&v2])
    );
    let json = declaration_json(
        &format!(r#""manifestURL": "{}","#, echo_url(&manifest)),
        &[pack_json("maps", "1", "onDemand", &[&v1])],
    );
    let (manager, database) = open("digest", &json, Caller::Page).await;
    within(
        "ensure_local_availability",
        manager.ensure_local_availability("maps"),
    )
    .await
    .unwrap();
    let old_file = manager.file("maps/eu.map").await.unwrap().unwrap();

    let summary = within("check_for_updates", manager.check_for_updates())
        .await
        .unwrap();
    assert_eq!(summary.updated, vec![Identifier::new("maps").unwrap()]);
    let failed = within(
        "ensure_local_availability",
        manager.ensure_local_availability("maps"),
    )
    .await;
    match &failed {
        Err(Error::IntegrityMismatch {
            expected, actual, ..
        }) => {
            assert_eq!(expected, &declared_digest);
            assert_eq!(actual, &cdn_sha256(2_500, v2.seed).await);
        }
        other => panic!("expected IntegrityMismatch, got {other:?}"),
    }
    assert_eq!(
        manager.pack_status("maps").await.unwrap(),
        PackStatus::Outdated
    );
    let still = manager.file("maps/eu.map").await.unwrap().unwrap();
    assert_eq!(still.identifier, old_file.identifier);
    assert_eq!(bytes_of(&still).await, source_bytes(&v1).await);
    let new_id = manager.packs().await.unwrap()[0].files[0]
        .identifier
        .clone();
    assert_ne!(new_id, old_file.identifier);
    eventually("the failed file's bytes are deleted", || {
        let (manager, id) = (manager.clone(), new_id.clone());
        async move { !is_stored(&manager, &id).await }
    })
    .await;
    remove(manager, &database).await;
}

#[wasm_bindgen_test]
async fn ready_resolves_only_after_the_essential_packs_are_stored() {
    // `core` is quick; `boot` fails once with 404, is re-queued as non-essential, and its
    // second attempt is slow (about 0.5 s): a gate that forgot re-queued essentials would open
    // while it still runs.
    let core = gen_file("core/data.bin", 1_500, "").await;
    let boot = gen_file(
        "boot/app.bin",
        2_500,
        "fault=status:404&times=1&throttle=5000",
    )
    .await;
    let later = gen_file("later/x.bin", 1_000, "").await;
    let json = declaration_json(
        "",
        &[
            pack_json("core", "1", "essential", &[&core]),
            pack_json("boot", "1", "essential", &[&boot]),
            pack_json("later", "1", "onDemand", &[&later]),
        ],
    );
    let (manager, database) = open("ready", &json, INSTALL).await;
    // Nothing essential is scheduled yet: the gate is open.
    within("ready", manager.ready()).await.unwrap();

    let downloads = manager
        .downloads_for(ExtensionEvent::Install)
        .await
        .unwrap();
    let names: Vec<(String, bool)> = downloads
        .iter()
        .map(|d| (d.identifier.to_string(), d.essential))
        .collect();
    assert_eq!(
        names,
        vec![
            ("core.1.core_2fdata_2ebin".to_string(), true),
            ("boot.1.boot_2fapp_2ebin".to_string(), true),
        ],
        "essential packs only, as essential downloads"
    );
    for download in downloads {
        manager.schedule(download).await.unwrap();
    }
    assert_eq!(
        manager.pack_status("boot").await.unwrap(),
        PackStatus::Downloading
    );
    within("ready", manager.ready()).await.unwrap();
    for pack in ["core", "boot"] {
        assert_eq!(
            manager.pack_status(pack).await.unwrap(),
            PackStatus::Downloaded,
            "{pack} when ready() resolved"
        );
    }
    let requeued = manager
        .container()
        .await
        .unwrap()
        .asset("boot.1.boot_2fapp_2ebin")
        .await
        .unwrap();
    assert!(requeued.is_some(), "boot stored after its re-queue");
    let boot_info = manager
        .fetch_current_downloads()
        .await
        .unwrap()
        .into_iter()
        .find(|d| d.identifier.as_str().starts_with("boot"));
    assert!(boot_info.is_none(), "nothing of boot is still scheduled");
    let stored = manager.file("boot/app.bin").await.unwrap().unwrap();
    assert_eq!(bytes_of(&stored).await, source_bytes(&boot).await);
    assert_eq!(
        manager.pack_status("later").await.unwrap(),
        PackStatus::DownloadAvailable
    );
    // Scheduled again: everything is stored, so nothing is offered.
    assert!(manager
        .downloads_for(ExtensionEvent::Install)
        .await
        .unwrap()
        .is_empty());
    remove(manager, &database).await;
}

#[wasm_bindgen_test]
async fn bad_declarations_and_manifests_are_typed_errors_naming_the_url_and_change_nothing() {
    use background_assets::web::packs::{fetch_declaration, fetch_manifest};
    let typo = url::Url::parse(&echo_url(r#"{ "maxInstalSize": 10 }"#)).unwrap();
    match within("fetch", fetch_declaration(&typo)).await {
        Err(Error::InvalidDeclaration { path, reason }) => {
            assert_eq!(path, "$.maxInstalSize");
            assert!(reason.contains(typo.as_str()), "{reason}");
        }
        other => panic!("expected InvalidDeclaration, got {other:?}"),
    }
    let missing =
        url::Url::parse(&format!("{}{}", cdn(), gen_path(10, 1, "fault=status:404"))).unwrap();
    match within("fetch", fetch_manifest(&missing)).await {
        Err(Error::HttpStatus { identifier, status }) => {
            assert_eq!((identifier.as_str(), status), (missing.as_str(), 404));
        }
        other => panic!("expected HttpStatus 404, got {other:?}"),
    }
    let no_packs = url::Url::parse(&echo_url(r#"{ "version": "2" }"#)).unwrap();
    assert!(matches!(
        within("fetch", fetch_manifest(&no_packs)).await,
        Err(Error::InvalidDeclaration { .. })
    ));

    // A manager whose manifest is invalid: check_for_updates fails typed, nothing changes.
    let file = gen_file("a.bin", 500, "").await;
    let json = declaration_json(
        &format!(r#""manifestURL": "{}","#, no_packs),
        &[pack_json("a", "1", "onDemand", &[&file])],
    );
    let (manager, database) = open("bad-manifest", &json, Caller::Page).await;
    within(
        "ensure_local_availability",
        manager.ensure_local_availability("a"),
    )
    .await
    .unwrap();
    let checked = within("check_for_updates", manager.check_for_updates()).await;
    assert!(
        matches!(&checked, Err(Error::InvalidDeclaration { path, .. }) if path == "$"),
        "{checked:?}"
    );
    let info = manager.packs().await.unwrap();
    assert_eq!(info.len(), 1);
    assert_eq!(
        (info[0].version.as_str(), info[0].status),
        ("1", PackStatus::Downloaded)
    );
    assert!(manager.file("a.bin").await.unwrap().is_some());
    remove(manager, &database).await;
}

#[wasm_bindgen_test]
async fn another_contexts_pack_decisions_reach_this_contexts_stream_gate_and_files() {
    let core = gen_file("core/x.bin", 2_000, "throttle=8000").await;
    let json = declaration_json("", &[pack_json("core", "1", "essential", &[&core])]);
    let database = unique_name("ba-packs-two");
    let page = within(
        "DownloadManager::open",
        DownloadManager::open(config(&database, &json, Caller::Page)),
    )
    .await
    .unwrap();
    let worker = within(
        "DownloadManager::open",
        DownloadManager::open(config(&database, &json, INSTALL)),
    )
    .await
    .unwrap();
    let mut updates = page.status_updates();
    assert_eq!(
        next_update(&mut updates).await,
        update("core", PackStatus::DownloadAvailable)
    );
    // The worker's install schedules the essential pack; the page only waits.
    for download in worker.downloads_for(ExtensionEvent::Install).await.unwrap() {
        worker.schedule(download).await.unwrap();
    }
    assert_eq!(
        next_update(&mut updates).await,
        update("core", PackStatus::Downloading)
    );
    within("ready", page.ready()).await.unwrap();
    assert_eq!(
        page.pack_status("core").await.unwrap(),
        PackStatus::Downloaded
    );
    assert_eq!(
        next_update(&mut updates).await,
        update("core", PackStatus::Downloaded)
    );
    let stored = page.file("core/x.bin").await.unwrap().expect("stored");
    assert_eq!(bytes_of(&stored).await, source_bytes(&core).await);

    worker.remove_pack("core").await.unwrap();
    assert_eq!(
        next_update(&mut updates).await,
        update("core", PackStatus::DownloadAvailable)
    );
    assert!(page.file("core/x.bin").await.unwrap().is_none());
    drop(updates);
    within("close", page.close()).await;
    within("close", worker.close()).await;
    within("delete_database", Container::delete_database(&database))
        .await
        .unwrap();
}

/// `file`'s pack entry with `chunks` declared.
fn chunked_file_json(file: &GenFile, chunks: &ChunkDigests) -> String {
    format!(
        r#"{{ "path": "{}", "url": "{}", "size": {}, "sha256": "{}", "chunks": {} }}"#,
        file.path,
        file.url,
        file.len,
        file.sha256,
        serde_json::to_string(chunks).unwrap()
    )
}

#[wasm_bindgen_test]
async fn pack_files_with_chunk_digests_are_verified_chunk_by_chunk() {
    const CHUNK: u64 = 16_384;
    let good = gen_file("maps/eu.map", 7 * CHUNK + 100, "").await;
    let bad = gen_file("maps/us.map", 5 * CHUNK, "").await;
    let good_chunks = cdn_chunk_digests(good.len, good.seed, CHUNK).await;
    // `us.map`'s chunk 3 is declared as another body's: the server's chunk 3 is wrong.
    let mut bad_chunks = cdn_chunk_digests(bad.len, bad.seed, CHUNK).await;
    let other = cdn_chunk_digests(bad.len, bad.seed + 1, CHUNK).await;
    bad_chunks.sha256[3] = other.sha256[3];
    let pack = |id: &str, file: String| {
        format!(
            r#"{{ "id": "{id}", "version": "1", "downloadPolicy": "onDemand", "files": [{file}] }}"#
        )
    };
    let json = declaration_json(
        "",
        &[
            pack("eu", chunked_file_json(&good, &good_chunks)),
            pack("us", chunked_file_json(&bad, &bad_chunks)),
        ],
    );
    let (manager, database) = open("chunks", &json, Caller::Page).await;

    within("ensure eu", manager.ensure_local_availability("eu"))
        .await
        .unwrap();
    let stored = manager.file("maps/eu.map").await.unwrap().unwrap();
    assert_eq!(stored.sha256, good.sha256);
    assert_eq!(bytes_of(&stored).await, source_bytes(&good).await);

    match within("ensure us", manager.ensure_local_availability("us")).await {
        Err(Error::ChunkIntegrityMismatch {
            offset,
            expected,
            actual,
            ..
        }) => {
            assert_eq!(offset, 3 * CHUNK);
            assert_eq!(expected, hex(&other.sha256[3]));
            assert_ne!(expected, actual);
        }
        other => panic!("expected ChunkIntegrityMismatch, got {other:?}"),
    }
    assert!(manager.file("maps/us.map").await.unwrap().is_none());
    remove(manager, &database).await;
}
