//! The JS face (`background_assets::web::bindings`) exercised FROM JavaScript (sw and page
//! suites): each test runs a small async JS body (built with `new Function`) that gets the
//! exported `DownloadManager` and `UrlDownload` classes, opens its own manager on a fresh
//! database with `DownloadManager.open({ database, declaration })`, and talks to the local CDN.
//! The JS returns plain data (errors flattened with `shape(e)`), which Rust checks.

use background_assets::web::bindings::{DownloadManagerJs, UrlDownloadJs};
use background_assets::web::container::Container;
use background_assets::web::js;
use js_sys::{Array, Function, Promise};
use serde_json::{json, Value};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::wasm_bindgen_test;

use super::common::{cdn_origin, cdn_sha256, gen_path, probe, unique_id, unique_name};

const MIB: u64 = 1 << 20;

/// Helpers every JS body can use.
const PRELUDE: &str = r#"
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
async function until(what, ready, ms = 15000) {
  const end = Date.now() + ms;
  while (!ready()) {
    if (Date.now() > end) throw new Error('timed out waiting until ' + what);
    await sleep(5);
  }
}
async function rejection(what, promise) {
  try { await promise; } catch (e) { return e; }
  throw new Error(what + ' did not reject');
}
function thrown(what, f) {
  try { f(); } catch (e) { return e; }
  throw new Error(what + ' did not throw');
}
async function sha256(blob) {
  const digest = await crypto.subtle.digest('SHA-256', await blob.arrayBuffer());
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('');
}
const shape = (e) => ({ ...e, isError: e instanceof Error, name: e.name, message: e.message });
function record() {
  const r = { events: [], finished: {}, errors: {} };
  r.delegate = {
    didBegin(id) { r.events.push({ kind: 'begin', id }); },
    didPause(id) { r.events.push({ kind: 'pause', id }); },
    didWriteData(id, bytesWritten, totalWritten, totalExpected) {
      r.events.push({ kind: 'write', id, bytesWritten, totalWritten, totalExpected });
    },
    didFail(id, error) { r.events.push({ kind: 'fail', id, name: error.name }); r.errors[id] = error; },
    didFinish(id, finished) { r.events.push({ kind: 'finish', id }); r.finished[id] = finished; },
    didRequeueAsNonEssential(id) { r.events.push({ kind: 'requeue', id }); },
  };
  r.of = (id) => r.events.filter((e) => e.id === id);
  r.ended = (id) => r.of(id).some((e) => e.kind === 'finish' || e.kind === 'fail');
  r.written = (id) => Math.max(0, ...r.of(id).filter((e) => e.kind === 'write').map((e) => e.totalWritten));
  return r;
}
const declaration = {
  initialDownloadRestrictions: { domainAllowList: ['127.0.0.1'], downloadAllowance: 1073741824 },
};
const open = () => DownloadManager.open({ database, declaration });
"#;

/// The exported classes, taken from instances (the test's JS glue does not make them global).
fn classes() -> (JsValue, JsValue) {
    let manager: JsValue = DownloadManagerJs::shared().into();
    let descriptor = js_sys::JSON::parse(r#"{ "id": "x", "url": "https://cdn.example/x" }"#)
        .expect("descriptor");
    let download: JsValue = UrlDownloadJs::new(descriptor)
        .expect("a valid UrlDownload")
        .into();
    (
        js::get(&manager, "constructor"),
        js::get(&download, "constructor"),
    )
}

/// Runs `body` (after [`PRELUDE`]) as an async JS function of `DownloadManager`,
/// `UrlDownload`, `cdn` and `database`, and returns what it returned as JSON (panics with the
/// JS error if it threw). The database is deleted afterwards.
async fn run_js(label: &str, body: &str) -> Value {
    let database = unique_name(&format!("ba-js-{label}"));
    let (manager_class, download_class) = classes();
    let function = Function::new_with_args(
        "DownloadManager, UrlDownload, cdn, database",
        &format!(
            "{PRELUDE}\nreturn (async () => {{\n{body}\n}})().then((v) => JSON.stringify(v ?? null));"
        ),
    );
    let args: Array = [
        manager_class,
        download_class,
        JsValue::from_str(cdn_origin()),
        JsValue::from_str(&database),
    ]
    .iter()
    .collect();
    let outcome = match function.apply(&JsValue::UNDEFINED, &args) {
        Ok(promise) => JsFuture::from(Promise::from(promise)).await,
        Err(e) => Err(e),
    };
    let _ = Container::delete_database(&database).await;
    match outcome {
        Ok(text) => serde_json::from_str(&text.as_string().expect("JSON text")).expect("JSON"),
        Err(e) => panic!("the JS of `{label}` failed: {}", js::describe(&e)),
    }
}

/// Asserts `error` is a typed error of `name` and `code` whose message contains `needle`.
fn assert_error(error: &Value, name: &str, code: u64, needle: &str) {
    assert_eq!(error["isError"], json!(true), "not an Error: {error}");
    assert_eq!(error["name"], json!(name), "{error}");
    assert_eq!(error["code"], json!(code), "{error}");
    assert!(error["transient"].is_boolean(), "{error}");
    let message = error["message"].as_str().unwrap_or_default();
    assert!(message.contains(needle), "`{needle}` not in {error}");
}

#[wasm_bindgen_test]
async fn js_schedule_reports_begin_progress_finish_and_the_blob_is_the_cdn_body() {
    let len = 5 * MIB + 123;
    let seed = 40_000 + probe() % 1000;
    let id = unique_id("js-sched");
    let url = format!("{}{}", cdn_origin(), gen_path(len, seed, ""));
    let body = format!(
        r#"
        const manager = await open();
        const r = record();
        manager.setDelegate(r.delegate);
        const download = new UrlDownload({{ id: '{id}', url: '{url}', size: {len}, priority: 70 }});
        await manager.schedule(download);
        await until('finished', () => r.ended('{id}'));
        const finished = r.finished['{id}'];
        const blob = await finished.blob();
        const response = await finished.response();
        const length = blob.size;
        const digest = await sha256(blob);
        const responseLength = (await response.arrayBuffer()).byteLength;
        let objectUrl;
        if (typeof URL.createObjectURL === 'function') {{
          const u = await finished.objectUrl();
          objectUrl = {{ url: u, length: (await (await fetch(u)).arrayBuffer()).byteLength }};
          URL.revokeObjectURL(u);
        }} else {{
          objectUrl = shape(await rejection('objectUrl', finished.objectUrl()));
        }}
        const after = await manager.fetchCurrentDownloads();
        await manager.close();
        return {{
          events: r.of('{id}'), length, digest, responseStatus: response.status, responseLength, objectUrl,
          handle: {{ id: finished.id, size: finished.size, sha256: finished.sha256, url: finished.url }},
          download: {{ id: download.id, url: download.url, size: download.size,
                       priority: download.priority, essential: download.essential,
                       json: JSON.parse(JSON.stringify(download)) }},
          after,
        }};
        "#
    );
    let out = run_js("sched", &body).await;
    let events = out["events"].as_array().unwrap();
    assert_eq!(events.first().unwrap()["kind"], "begin", "{events:?}");
    assert_eq!(events.last().unwrap()["kind"], "finish", "{events:?}");
    let writes: Vec<&Value> = events.iter().filter(|e| e["kind"] == "write").collect();
    assert!(writes.len() >= 2, "one write per 4 MiB chunk: {writes:?}");
    let totals: Vec<u64> = writes
        .iter()
        .map(|w| w["totalWritten"].as_u64().unwrap())
        .collect();
    assert!(totals.windows(2).all(|w| w[0] < w[1]), "{totals:?}");
    assert_eq!(*totals.last().unwrap(), len);
    let deltas: u64 = writes
        .iter()
        .map(|w| w["bytesWritten"].as_u64().unwrap())
        .sum();
    assert_eq!(deltas, len, "bytesWritten adds up: {writes:?}");
    assert!(writes.iter().all(|w| w["totalExpected"] == json!(len)));

    let digest = cdn_sha256(len, seed).await;
    assert_eq!(out["length"], json!(len));
    assert_eq!(out["digest"], json!(digest));
    assert_eq!(out["handle"]["sha256"], json!(digest));
    assert_eq!(out["handle"]["size"], json!(len));
    assert_eq!(out["handle"]["id"], json!(id));
    let served = out["handle"]["url"].as_str().unwrap();
    assert!(
        served.ends_with(&format!("/background-assets/id/{id}")),
        "{served}"
    );
    assert_eq!(out["responseStatus"], json!(200));
    assert_eq!(out["responseLength"], json!(len));
    match out["objectUrl"]["url"].as_str() {
        Some(blob_url) => {
            assert!(blob_url.starts_with("blob:"), "{blob_url}");
            assert_eq!(out["objectUrl"]["length"], json!(len));
        }
        // A service worker has no object URLs.
        None => assert_error(&out["objectUrl"], "Unsupported", 1700, "object URLs"),
    }
    assert_eq!(
        out["download"],
        json!({ "id": id, "url": url, "size": len, "priority": 70, "essential": false,
                "json": { "id": id, "url": url, "size": len, "priority": 70, "essential": false,
                          "headers": {} } })
    );
    assert_eq!(out["after"], json!([]));
}

#[wasm_bindgen_test]
async fn js_errors_are_typed_errors_with_name_code_and_fields() {
    let id = unique_id("js-dup");
    let url = format!(
        "{}{}",
        cdn_origin(),
        gen_path(
            2 * MIB,
            41_000 + probe() % 1000,
            "fault=stall:5&stall-ms=20000&times=1"
        )
    );
    let body = format!(
        r#"
        const manager = await open();
        await manager.schedule({{ id: '{id}', url: '{url}', size: {size} }});
        const out = {{}};
        out.duplicate = shape(await rejection('duplicate', manager.schedule({{ id: '{id}', url: '{url}' }})));
        out.missingId = shape(await rejection('missing id', manager.schedule({{ url: '{url}' }})));
        out.badId = shape(await rejection('bad id', manager.schedule({{ id: 'no spaces allowed', url: '{url}' }})));
        out.urlNumber = shape(await rejection('url number', manager.schedule({{ id: 'u', url: 5 }})));
        out.urlScheme = shape(await rejection('ftp url', manager.schedule({{ id: 'u', url: 'ftp://127.0.0.1/x' }})));
        out.negativeSize = shape(await rejection('negative size', manager.schedule({{ id: 'u', url: '{url}', size: -1 }})));
        out.fractionSize = shape(await rejection('fraction size', manager.schedule({{ id: 'u', url: '{url}', size: 1.5 }})));
        out.unknownKey = shape(await rejection('unknown key', manager.schedule({{ id: 'u', url: '{url}', sise: 3 }})));
        out.essentialWithoutSize = shape(await rejection('essential', manager.schedule({{ id: 'u', url: '{url}', essential: true }})));
        out.notObject = shape(await rejection('string', manager.schedule('{url}')));
        out.badHeader = shape(await rejection('header', manager.schedule({{ id: 'u', url: '{url}', headers: {{ Range: 'bytes=0-' }} }})));
        out.constructorThrows = shape(thrown('new UrlDownload', () => new UrlDownload({{ id: 'u', url: '{url}', priority: 'high' }})));
        out.cancelUnknown = shape(await rejection('cancel unknown', manager.cancel('never-scheduled-{id}')));
        out.pauseNumber = shape(await rejection('pause number', manager.pause(7)));
        out.delegateNumber = shape(thrown('setDelegate(5)', () => manager.setDelegate(5)));
        out.delegateBadMethod = shape(thrown('setDelegate', () => manager.setDelegate({{ didFinish: 'yes' }})));
        out.delegateNoMethods = shape(thrown('setDelegate', () => manager.setDelegate({{ onFinish() {{}} }})));
        out.openUnknown = shape(await rejection('open', DownloadManager.open({{ database, bogus: 1 }})));
        out.openBadDeclaration = shape(await rejection('open', DownloadManager.open({{ database: database + '-2', declaration: {{ assetPacks: 5 }} }})));
        out.current = (await manager.fetchCurrentDownloads()).map((d) => d.id);
        await manager.cancel('{id}');
        out.cancelTwice = shape(await rejection('cancel twice', manager.cancel({{ id: '{id}' }})));
        await manager.close();
        out.closed = shape(await rejection('closed', manager.fetchCurrentDownloads()));
        return out;
        "#,
        size = 2 * MIB
    );
    let out = run_js("errors", &body).await;
    assert_error(&out["duplicate"], "DownloadAlreadyScheduled", 100, &id);
    assert_eq!(out["duplicate"]["identifier"], json!(id));
    assert_eq!(out["duplicate"]["transient"], json!(false));
    assert_error(&out["missingId"], "DownloadInvalid", 0, "`id`");
    assert_error(
        &out["badId"],
        "InvalidIdentifier",
        1001,
        "no spaces allowed",
    );
    assert_eq!(out["badId"]["identifier"], json!("no spaces allowed"));
    assert_error(&out["urlNumber"], "DownloadInvalid", 0, "`url`");
    assert_error(&out["urlScheme"], "DownloadInvalid", 0, "ftp");
    assert_error(&out["negativeSize"], "DownloadInvalid", 0, "`size`");
    assert_error(&out["fractionSize"], "DownloadInvalid", 0, "`size`");
    assert_error(&out["unknownKey"], "DownloadInvalid", 0, "`sise`");
    assert_error(&out["essentialWithoutSize"], "DownloadInvalid", 0, "size");
    assert_error(&out["notObject"], "DownloadInvalid", 0, "got string");
    assert_error(&out["badHeader"], "DownloadInvalid", 0, "Range");
    assert_error(
        &out["constructorThrows"],
        "DownloadInvalid",
        0,
        "priority \"high\"",
    );
    assert_error(
        &out["cancelUnknown"],
        "DownloadDoesNotExist",
        113,
        "never-scheduled",
    );
    assert_error(
        &out["pauseNumber"],
        "InvalidArgument",
        1800,
        "pause(download)",
    );
    assert_eq!(out["pauseNumber"]["argument"], json!("pause(download)"));
    assert_error(
        &out["delegateNumber"],
        "InvalidArgument",
        1800,
        "setDelegate",
    );
    assert_error(
        &out["delegateBadMethod"],
        "InvalidArgument",
        1800,
        "didFinish",
    );
    assert_error(
        &out["delegateNoMethods"],
        "InvalidArgument",
        1800,
        "none of the delegate methods",
    );
    assert_error(&out["openUnknown"], "InvalidArgument", 1800, "bogus");
    assert_error(
        &out["openBadDeclaration"],
        "InvalidDeclaration",
        1000,
        "assetPacks",
    );
    assert!(out["openBadDeclaration"]["path"]
        .as_str()
        .unwrap()
        .contains("assetPacks"));
    assert_eq!(out["current"], json!([id]));
    assert_error(&out["cancelTwice"], "DownloadNotScheduled", 101, &id);
    assert_error(&out["closed"], "Storage", 1500, "closed");
}

#[wasm_bindgen_test]
async fn js_exclusive_control_returns_values_and_a_deadline_fails_with_lock_timeout() {
    let body = r#"
        const manager = await open();
        const out = {};
        out.sync = await manager.withExclusiveControl(() => 42);
        out.async = await manager.withExclusiveControl(async () => { await sleep(1); return 'done'; });
        out.beforeDate = await manager.withExclusiveControlBefore(new Date(Date.now() + 2000), () => 7);
        let calledInside = false;
        out.nested = await manager.withExclusiveControl(async () => {
          const started = Date.now();
          const e = await rejection('nested', manager.withExclusiveControlBefore(Date.now() + 150, () => { calledInside = true; }));
          return { error: shape(e), waited: Date.now() - started };
        });
        out.calledInside = calledInside;
        out.thrown = shape(await rejection('throwing f', manager.withExclusiveControl(() => { throw new TypeError('mine'); })));
        out.notFunction = shape(await rejection('not a function', manager.withExclusiveControl(5)));
        out.badDeadline = shape(await rejection('bad deadline', manager.withExclusiveControlBefore('soon', () => 1)));
        out.afterwards = await manager.withExclusiveControlBefore(Date.now() + 1000, () => 'free again');
        await manager.close();
        return out;
    "#;
    let out = run_js("lock", body).await;
    assert_eq!(out["sync"], json!(42));
    assert_eq!(out["async"], json!("done"));
    assert_eq!(out["beforeDate"], json!(7));
    assert_error(
        &out["nested"]["error"],
        "LockTimeout",
        1400,
        "background-assets/manager",
    );
    assert_eq!(
        out["nested"]["error"]["lockName"],
        json!("background-assets/manager")
    );
    let waited = out["nested"]["waited"].as_u64().unwrap();
    assert!((120..5000).contains(&waited), "waited {waited} ms");
    assert_eq!(out["calledInside"], json!(false));
    assert_eq!(out["thrown"]["name"], json!("TypeError"));
    assert_eq!(out["thrown"]["message"], json!("mine"));
    assert_error(
        &out["notFunction"],
        "InvalidArgument",
        1800,
        "withExclusiveControl(f)",
    );
    assert_error(&out["badDeadline"], "InvalidArgument", 1800, "deadline");
    assert_eq!(out["afterwards"], json!("free again"));
}

#[wasm_bindgen_test]
async fn js_pause_resume_and_fetch_current_downloads_fields() {
    let len = 5 * MIB;
    let seed = 42_000 + probe() % 1000;
    let id = unique_id("js-pause");
    let url = format!(
        "{}{}",
        cdn_origin(),
        gen_path(
            len,
            seed,
            &format!("fault=stall:{}&stall-ms=3000&times=1", 4 * MIB + 5)
        )
    );
    let body = format!(
        r#"
        const manager = await open();
        const r = record();
        manager.setDelegate(r.delegate);
        await manager.schedule({{ id: '{id}', url: '{url}', size: {len}, priority: 'max', headers: {{ 'X-Requested-With': 'js-api' }} }});
        await until('4 MiB written', () => r.written('{id}') >= {chunk});
        const running = (await manager.fetchCurrentDownloads()).find((d) => d.id === '{id}');
        await manager.pause('{id}');
        await until('paused', () => r.of('{id}').some((e) => e.kind === 'pause'));
        const paused = (await manager.fetchCurrentDownloads()).find((d) => d.id === '{id}');
        await manager.resume({{ id: '{id}' }});
        await until('finished', () => r.ended('{id}'));
        const blob = await r.finished['{id}'].blob();
        return {{
          running, paused, events: r.of('{id}').map((e) => e.kind),
          length: blob.size, digest: await sha256(blob),
          after: await manager.fetchCurrentDownloads().finally(() => manager.close()),
        }};
        "#,
        chunk = 4 * MIB
    );
    let out = run_js("pause", &body).await;
    assert_eq!(
        out["running"],
        json!({ "id": id, "url": url, "state": "downloading", "essential": false,
                "priority": 100, "foreground": false, "totalWritten": 4 * MIB,
                "totalExpected": len, "requeuedFromEssential": false, "pack": null })
    );
    assert_eq!(out["paused"]["state"], json!("paused"));
    // The pause stores what had arrived (`core::transfer`: a possibly short write): the 5 bytes
    // past the chunk too, if the run had read them and their write was reported by then.
    let written = out["paused"]["totalWritten"].as_u64();
    assert!(
        written == Some(4 * MIB) || written == Some(4 * MIB + 5),
        "written when paused: {written:?}"
    );
    let kinds: Vec<&str> = out["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    let pause = kinds.iter().position(|k| *k == "pause").unwrap();
    assert_eq!(kinds.first(), Some(&"begin"), "{kinds:?}");
    assert!(
        kinds[pause..].contains(&"begin"),
        "began again after the pause: {kinds:?}"
    );
    assert_eq!(kinds.last(), Some(&"finish"), "{kinds:?}");
    assert_eq!(out["length"], json!(len));
    assert_eq!(out["digest"], json!(cdn_sha256(len, seed).await));
    assert_eq!(out["after"], json!([]));
}

#[wasm_bindgen_test]
async fn js_start_foreground_download_promotes_in_a_page_and_is_refused_in_the_worker() {
    let len = 2 * MIB;
    let id = unique_id("js-fg");
    let url = format!(
        "{}{}",
        cdn_origin(),
        gen_path(
            len,
            43_000 + probe() % 1000,
            "fault=stall:5&stall-ms=20000&times=1"
        )
    );
    let body = format!(
        r#"
        const manager = await open();
        await manager.schedule({{ id: '{id}', url: '{url}', size: {len} }});
        let outcome;
        try {{
          await manager.startForegroundDownload('{id}');
          outcome = {{ promoted: (await manager.fetchCurrentDownloads()).find((d) => d.id === '{id}') }};
        }} catch (e) {{
          outcome = {{ refused: shape(e) }};
        }}
        outcome.unknown = shape(await rejection('unknown', manager.startForegroundDownload('missing-{id}')));
        await manager.cancel('{id}');
        await manager.close();
        outcome.worker = typeof document === 'undefined';
        return outcome;
        "#
    );
    let out = run_js("fg", &body).await;
    if out["worker"] == json!(true) {
        assert_error(
            &out["refused"],
            "CallFromExtensionNotAllowed",
            50,
            "startForeground",
        );
        assert_error(&out["unknown"], "CallFromExtensionNotAllowed", 50, "");
    } else {
        assert_eq!(out["promoted"]["foreground"], json!(true), "{out}");
        assert_eq!(out["promoted"]["id"], json!(id));
        assert_error(&out["unknown"], "DownloadDoesNotExist", 113, "missing-");
    }
}

/// A pack declaration entry for the CDN body `/gen/<len>/<seed>`, with its true digest.
async fn pack_entry(id: &str, version: &str, files: &[(&str, u64, u64)]) -> Value {
    let mut declared = Vec::new();
    for (path, len, seed) in files {
        declared.push(json!({
            "path": path,
            "url": format!("{}{}", cdn_origin(), gen_path(*len, *seed, "")),
            "size": len,
            "sha256": cdn_sha256(*len, *seed).await,
        }));
    }
    json!({ "id": id, "version": version, "downloadPolicy": "onDemand", "files": declared })
}

/// A CDN URL that answers `body` (the CDN's `/echo`).
fn echo_url(body: &str) -> String {
    let encoded: String = body
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!("{}/echo?probe={}&body={encoded}", cdn_origin(), probe())
}

#[wasm_bindgen_test]
async fn js_packs_status_updates_ensure_file_check_for_updates_remove() {
    let base = 44_000 + probe() % 1000;
    let (len_a, len_b, len_x) = (300_000, 200_000, 1000);
    let maps_v1 = pack_entry(
        "maps",
        "1",
        &[("maps/a.bin", len_a, base), ("maps/b.bin", len_b, base + 1)],
    )
    .await;
    let extra = pack_entry("extra", "1", &[("extra/x.bin", len_x, base + 2)]).await;
    let maps_v2 = pack_entry("maps", "2", &[("maps/a.bin", len_a, base + 3)]).await;
    let manifest = json!({ "version": "2", "assetPacks": [maps_v2] });
    let declaration = json!({
        "initialDownloadRestrictions": { "domainAllowList": ["127.0.0.1"],
            "downloadAllowance": 10_000_000, "essentialDownloadAllowance": 10_000_000 },
        "manifestURL": echo_url(&manifest.to_string()),
        "assetPacks": [maps_v1, extra],
    });
    let body = format!(
        r#"
        const manager = await DownloadManager.open({{ database, declaration: {declaration} }});
        const out = {{ heard: [], iterated: [] }};
        const updates = manager.statusUpdates();
        updates.addEventListener('status', (e) => out.heard.push([e.detail.pack, e.detail.status]));
        const iterating = (async () => {{
          for await (const {{ pack, status }} of updates) {{
            out.iterated.push([pack, status]);
            if (pack === 'maps' && status === 'downloaded') break;
          }}
        }})();
        out.before = await manager.packs();
        out.statusBefore = await manager.packStatus('maps');
        await manager.ensureLocalAvailability('maps');
        await Promise.race([iterating, sleep(5000).then(() => {{ throw new Error('iterator never saw downloaded'); }})]);
        out.statusAfter = await manager.packStatus('maps');
        const a = await manager.file('maps/a.bin');
        out.fileA = {{ id: a.id, size: a.size, sha256: a.sha256, url: a.url,
                       bytes: (await (await a.blob()).arrayBuffer()).byteLength }};
        out.missingFile = await manager.file('maps/none.bin');
        await manager.ready();
        out.summary = await manager.checkForUpdates();
        await manager.ensureLocalAvailability('maps');
        const a2 = await manager.file('maps/a.bin');
        out.fileA2 = {{ sha256: a2.sha256, blobSha: await sha256(await a2.blob()) }};
        out.fileB2 = await manager.file('maps/b.bin');
        out.after = (await manager.packs()).map((p) => [p.id, p.version, p.status]);
        await manager.removePack('maps');
        out.removedStatus = await manager.packStatus('maps');
        out.removedFile = await manager.file('maps/a.bin');
        out.unknown = shape(await rejection('unknown pack', manager.packStatus('ghost')));
        out.unknownEnsure = shape(await rejection('unknown pack', manager.ensureLocalAvailability('ghost')));
        out.notString = shape(await rejection('number pack', manager.removePack(5)));
        const heardBeforeClose = out.heard.length;
        updates.close();
        const late = updates[Symbol.asyncIterator]();
        out.lateNext = await late.next();
        await manager.close();
        out.quietAfterClose = out.heard.length === heardBeforeClose;
        return out;
        "#
    );
    let out = run_js("packs", &body).await;
    let before = out["before"].as_array().unwrap();
    assert_eq!(before.len(), 2, "{before:?}");
    assert_eq!(before[0]["id"], json!("maps"));
    assert_eq!(before[0]["version"], json!("1"));
    assert_eq!(before[0]["policy"], json!("onDemand"));
    assert_eq!(before[0]["status"], json!("downloadAvailable"));
    assert_eq!(before[0]["size"], json!(len_a + len_b));
    assert_eq!(before[0]["files"][0]["path"], json!("maps/a.bin"));
    assert_eq!(before[0]["files"][0]["size"], json!(len_a));
    assert_eq!(
        before[0]["files"][0]["sha256"],
        json!(cdn_sha256(len_a, base).await)
    );
    assert_eq!(before[0]["files"][0]["stored"], json!(false));
    assert_eq!(before[1]["id"], json!("extra"));
    assert_eq!(out["statusBefore"], json!("downloadAvailable"));
    assert_eq!(out["statusAfter"], json!("downloaded"));

    // Both faces of statusUpdates() saw the same updates, in order, for `maps`.
    let maps = |list: &Value| -> Vec<String> {
        list.as_array()
            .unwrap()
            .iter()
            .filter(|u| u[0] == "maps")
            .map(|u| u[1].as_str().unwrap().to_string())
            .collect()
    };
    let iterated = maps(&out["iterated"]);
    assert_eq!(
        iterated,
        ["downloadAvailable", "downloading", "downloaded"],
        "{out}"
    );
    let heard = maps(&out["heard"]);
    assert_eq!(&heard[..3], &iterated[..], "{out}");
    assert!(out["heard"]
        .as_array()
        .unwrap()
        .contains(&json!(["extra", "downloadAvailable"])));

    assert_eq!(out["fileA"]["size"], json!(len_a));
    assert_eq!(out["fileA"]["bytes"], json!(len_a));
    assert_eq!(out["fileA"]["sha256"], json!(cdn_sha256(len_a, base).await));
    assert!(out["fileA"]["url"]
        .as_str()
        .unwrap()
        .contains("/background-assets/"));
    assert_eq!(out["missingFile"], Value::Null);
    assert_eq!(
        out["summary"],
        json!({ "updated": ["maps"], "removed": [], "added": [] })
    );
    let v2 = cdn_sha256(len_a, base + 3).await;
    assert_eq!(out["fileA2"], json!({ "sha256": v2, "blobSha": v2 }));
    assert_eq!(out["fileB2"], Value::Null, "v2 has no b.bin: {out}");
    assert!(out["after"]
        .as_array()
        .unwrap()
        .contains(&json!(["maps", "2", "downloaded"])));
    assert_eq!(out["removedStatus"], json!("downloadAvailable"));
    assert_eq!(out["removedFile"], Value::Null);
    assert_error(&out["unknown"], "AssetPackDoesNotExist", 1003, "ghost");
    assert_error(
        &out["unknownEnsure"],
        "AssetPackDoesNotExist",
        1003,
        "ghost",
    );
    assert_error(
        &out["notString"],
        "InvalidArgument",
        1800,
        "removePack(pack)",
    );
    assert_eq!(out["lateNext"], json!({ "done": true }));
    assert_eq!(out["quietAfterClose"], json!(true));
}

#[wasm_bindgen_test]
async fn js_authentication_challenge_answers_retry_and_a_decline_fails_typed() {
    let len = 100_000;
    let seed = 45_000 + probe() % 1000;
    let (ok_id, no_id) = (unique_id("js-auth-ok"), unique_id("js-auth-no"));
    let ok_url = format!(
        "{}{}",
        cdn_origin(),
        gen_path(len, seed, "fault=status:401&times=1")
    );
    let no_url = format!(
        "{}{}",
        cdn_origin(),
        gen_path(len, seed, "fault=status:401")
    );
    let body = format!(
        r#"
        const manager = await open();
        const r = record();
        const challenges = [];
        r.delegate.authenticationChallenge = async (id, challenge) => {{
          challenges.push({{ id, ...challenge }});
          await sleep(1);
          return id === '{ok_id}' ? {{ Authorization: 'Bearer js-api' }} : null;
        }};
        manager.setDelegate(r.delegate);
        await manager.schedule({{ id: '{ok_id}', url: '{ok_url}', size: {len} }});
        await manager.schedule({{ id: '{no_id}', url: '{no_url}', size: {len} }});
        await until('both ended', () => r.ended('{ok_id}') && r.ended('{no_id}'));
        const finished = r.finished['{ok_id}'];
        const out = {{
          challenges,
          ok: r.of('{ok_id}').map((e) => e.kind),
          okSha: finished && finished.sha256,
          declined: r.errors['{no_id}'] && shape(r.errors['{no_id}']),
        }};
        await manager.close();
        return out;
        "#
    );
    let out = run_js("auth", &body).await;
    let challenges = out["challenges"].as_array().unwrap();
    let asked = |id: &str| -> Vec<&Value> { challenges.iter().filter(|c| c["id"] == id).collect() };
    let ok_asked = asked(&ok_id);
    assert_eq!(ok_asked.len(), 1, "{out}");
    assert_eq!(ok_asked[0]["status"], json!(401));
    assert_eq!(ok_asked[0]["url"], json!(ok_url));
    assert!(ok_asked[0].get("wwwAuthenticate").is_some(), "{out}");
    assert_eq!(
        out["ok"].as_array().unwrap().last(),
        Some(&json!("finish")),
        "{out}"
    );
    assert_eq!(out["okSha"], json!(cdn_sha256(len, seed).await));
    assert!(!asked(&no_id).is_empty(), "{out}");
    assert_error(&out["declined"], "AuthenticationRequired", 1302, &no_id);
    assert_eq!(out["declined"]["status"], json!(401));
}
