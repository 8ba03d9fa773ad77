//! The browser side of `cargo xtask chaos`: downloads through the library's
//! [`DownloadManager`] in a service worker that the driver keeps killing.
//!
//! ```text
//!   xtask chaos ──WebDriver──► chaos page ──postMessage {run, plan}──► chaos service worker
//!        │  kills the worker         │                                    │ chaos_run: open the
//!        │  (CDP stopAllWorkers /    │ chaos_status (counts)              │ manager, schedule what
//!        │   Firefox idle prefs)     │ chaos_verify (bytes + SHA-256       │ is not known yet, keep
//!        ▼                           ▼  read back from IndexedDB)          ▼ the worker busy
//!   classify: corrupt / lost / failed-typed / untyped        outcomes (delegate) in `meta`
//! ```
//!
//! The plan (ids, CDN paths with faults, sizes) comes from the driver, generated from the seed.
//! The worker's delegate writes each download's end into the container's `meta` store under
//! `chaos/outcome/<id>`; each worker instance that runs counts itself in `chaos/starts`, so the
//! driver knows how many times the worker really started again. Entry points return JSON
//! strings. On other targets this crate is empty.
#![cfg(target_arch = "wasm32")]

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;

use background_assets::core::declaration::parse_declaration;
use background_assets::core::download::{
    DownloadRequest, DownloadState, Identifier, Priority, UrlDownload,
};
use background_assets::core::error::{hex, Error};
use background_assets::core::manager::Manager as CoreManager;
use background_assets::core::queue::QueueLimits;
use background_assets::web::container::Container;
use background_assets::web::js;
use background_assets::web::manager::{
    stored_state, DownloadManager, DownloadManagerDelegate, FinishedDownload, ManagerConfig,
};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{spawn_local, JsFuture};

/// The run the driver generated from its seed.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Plan {
    /// The container database the manager uses.
    database: String,
    /// The CDN's origin.
    cdn: String,
    /// How long one `chaos_run` keeps the worker busy at most (ms).
    window_ms: f64,
    /// Concurrent transfers.
    concurrency: usize,
    runs: Vec<Run>,
}

/// One download of the plan.
#[derive(Debug, Clone, Deserialize)]
struct Run {
    id: String,
    /// Path and query on the CDN (`/gen/<len>/<seed>?fault=…`).
    path: String,
    /// The size declared to the manager, if any.
    declared: Option<u64>,
}

const STARTS_KEY: &str = "chaos/starts";
/// When the plan was first scheduled (`Date.now()`); outcomes carry their own `at`.
const T0_KEY: &str = "chaos/t0";

fn outcome_key(id: &str) -> String {
    format!("chaos/outcome/{id}")
}

fn err(e: impl std::fmt::Display) -> JsValue {
    JsValue::from_str(&e.to_string())
}

fn parse_plan(plan: &str) -> Result<Plan, JsValue> {
    serde_json::from_str(plan).map_err(|e| err(format!("chaos plan: {e}")))
}

/// A download's typed failure as an outcome record: `{"kind": "failed", "name", "code",
/// "message"}`.
fn failed_outcome(error: &Error) -> serde_json::Value {
    json!({ "kind": "failed", "name": error.name(), "code": error.code(),
            "message": error.to_string() })
}

/// Writes each download's end into `meta` (idempotent: a re-delivered event writes the same).
struct OutcomeRecorder {
    container: Rc<Container>,
}

impl OutcomeRecorder {
    fn record(&self, id: &Identifier, mut value: serde_json::Value) {
        value["at"] = json!(js_sys::Date::now());
        let written = self.container.put_meta(
            &outcome_key(id.as_str()),
            &JsValue::from_str(&value.to_string()),
        );
        spawn_local(async move {
            if let Err(e) = written.await {
                web_sys_console_warn(&format!("chaos: recording an outcome: {e}"));
            }
        });
    }
}

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = console, js_name = warn)]
    fn web_sys_console_warn(message: &str);
}

impl DownloadManagerDelegate for OutcomeRecorder {
    fn did_finish(&self, id: &Identifier, finished: FinishedDownload) {
        self.record(
            id,
            json!({ "kind": "finished", "size": finished.size, "sha256": finished.sha256 }),
        );
    }
    fn did_fail(&self, id: &Identifier, error: &Error) {
        self.record(id, failed_outcome(error));
    }
}

thread_local! {
    /// This worker instance's manager (opened by the first `chaos_run`).
    static MANAGER: RefCell<Option<(DownloadManager, Rc<Container>)>> = const { RefCell::new(None) };
}

fn page_url() -> Result<url::Url, JsValue> {
    url::Url::parse(&js::origin())
        .and_then(|u| u.join("/"))
        .map_err(err)
}

/// Opens this instance's manager (counting the instance in `chaos/starts`) or returns it.
async fn manager(plan: &Plan) -> Result<(DownloadManager, Rc<Container>), JsValue> {
    if let Some(open) = MANAGER.with(|m| m.borrow().clone()) {
        return Ok(open);
    }
    let page = page_url()?;
    let declaration = parse_declaration(
        r#"{ "initialDownloadRestrictions": { "domainAllowList": ["127.0.0.1"] } }"#,
        &page,
    )
    .map_err(err)?;
    let mut config = ManagerConfig::new(declaration, page);
    config.database = plan.database.clone();
    config.limits = QueueLimits {
        max_concurrent: plan.concurrency.max(1),
        bandwidth: None,
    };
    config.transfer.chunk_size = 128 << 10;
    config.transfer.max_attempts = 4;
    config.transfer.backoff_base_ms = 100;
    config.transfer.backoff_max_ms = 800;
    config.transfer.retry_after_max_ms = 1_500;
    config.transfer.stall_min_bytes_per_sec = 1024;
    config.transfer.stall_window_ms = 700;
    let manager = DownloadManager::open(config).await.map_err(err)?;
    manager.did_launch().await.map_err(err)?;
    let container = manager.container().await.map_err(err)?;
    manager.set_delegate(Some(Rc::new(OutcomeRecorder {
        container: container.clone(),
    })));
    let starts = container
        .get_meta(STARTS_KEY)
        .await
        .map_err(err)?
        .and_then(|v| v.as_f64())
        .unwrap_or(0.0);
    container
        .put_meta(STARTS_KEY, &JsValue::from_f64(starts + 1.0))
        .await
        .map_err(err)?;
    let open = (manager, container);
    MANAGER.with(|m| *m.borrow_mut() = Some(open.clone()));
    Ok(open)
}

/// The downloads the stored manager state knows (any state), or none.
async fn known_downloads(container: &Container) -> Result<Option<CoreManager>, JsValue> {
    // Unreadable counts as unknown, as before.
    Ok(stored_state(container).await.ok().flatten())
}

/// Downloads that ended: their end was recorded, or the stored manager state says finished or
/// failed (a worker killed right after the manager's decision may not have recorded it).
async fn ended(container: &Container, plan: &Plan) -> Result<usize, JsValue> {
    let known = known_downloads(container).await?;
    let mut count = 0;
    for run in &plan.runs {
        let state = Identifier::new(run.id.as_str())
            .ok()
            .and_then(|id| known.as_ref()?.download(&id))
            .map(|info| info.state);
        let over = matches!(
            state,
            Some(DownloadState::Finished) | Some(DownloadState::Failed)
        );
        if over
            || container
                .get_meta(&outcome_key(&run.id))
                .await
                .map_err(err)?
                .is_some()
        {
            count += 1;
        }
    }
    Ok(count)
}

/// Worker: opens the manager (which continues what a killed instance left running), schedules
/// every planned download it does not know yet, and keeps the worker busy until every download
/// ended or `window_ms` passed. Returns `{"ended", "total", "starts"}`.
#[wasm_bindgen]
pub async fn chaos_run(plan: String) -> Result<String, JsValue> {
    let plan = parse_plan(&plan)?;
    let (manager, container) = manager(&plan).await?;
    if container.get_meta(T0_KEY).await.map_err(err)?.is_none() {
        container
            .put_meta(T0_KEY, &JsValue::from_f64(js_sys::Date::now()))
            .await
            .map_err(err)?;
    }
    let known = known_downloads(&container).await?;
    for run in &plan.runs {
        let id = Identifier::new(run.id.as_str()).map_err(err)?;
        if known.as_ref().is_some_and(|k| k.download(&id).is_some()) {
            continue;
        }
        if container
            .get_meta(&outcome_key(&run.id))
            .await
            .map_err(err)?
            .is_some()
        {
            continue;
        }
        let request = DownloadRequest::get(&format!("{}{}", plan.cdn, run.path)).map_err(err)?;
        let download = UrlDownload::new(
            id.clone(),
            request,
            false,
            run.declared,
            Priority::DEFAULT,
            js_sys::Date::now() as u64,
        )
        .map_err(err)?;
        match manager.schedule(download).await {
            Ok(()) | Err(Error::DownloadAlreadyScheduled { .. }) => {}
            Err(error) => {
                // Refused when scheduling: that is its end, typed.
                let value = failed_outcome(&error);
                container
                    .put_meta(
                        &outcome_key(&run.id),
                        &JsValue::from_str(&value.to_string()),
                    )
                    .await
                    .map_err(err)?;
            }
        }
    }
    let started = js_sys::Date::now();
    let total = plan.runs.len();
    let mut done = ended(&container, &plan).await?;
    while done < total && js_sys::Date::now() - started < plan.window_ms {
        gloo_timers::future::TimeoutFuture::new(200).await;
        done = ended(&container, &plan).await?;
    }
    status_json(&container, &plan).await
}

async fn status_json(container: &Container, plan: &Plan) -> Result<String, JsValue> {
    let starts = container
        .get_meta(STARTS_KEY)
        .await
        .map_err(err)?
        .and_then(|v| v.as_f64())
        .unwrap_or(0.0);
    let ended = ended(container, plan).await?;
    Ok(json!({ "ended": ended, "total": plan.runs.len(), "starts": starts }).to_string())
}

/// Page: `{"ended", "total", "starts"}` read from the container (no manager is opened).
#[wasm_bindgen]
pub async fn chaos_status(plan: String) -> Result<String, JsValue> {
    let plan = parse_plan(&plan)?;
    let container = Container::open(&plan.database).await.map_err(err)?;
    let status = status_json(&container, &plan).await;
    container.close();
    status
}

/// Page: for every planned download, what the container holds — the delegate's recorded end,
/// the state the stored manager gives it (and its failure, if it failed), and the stored asset's
/// size and the SHA-256 of its bytes as read back. Returns a JSON array; the driver classifies it.
#[wasm_bindgen]
pub async fn chaos_verify(plan: String) -> Result<String, JsValue> {
    let plan = parse_plan(&plan)?;
    let container = Container::open(&plan.database).await.map_err(err)?;
    let known = known_downloads(&container).await?;
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for run in &plan.runs {
        seen.insert(run.id.clone());
        let outcome = container
            .get_meta(&outcome_key(&run.id))
            .await
            .map_err(err)?
            .and_then(|v| v.as_string())
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok());
        let id = Identifier::new(run.id.as_str()).ok();
        let state = id
            .as_ref()
            .and_then(|id| known.as_ref()?.download(id))
            .map(|info| format!("{:?}", info.state));
        // Why it failed, as the shared state keeps it (the delegate's record may be missing
        // when the worker was killed right after the failure was saved).
        let failure = id
            .as_ref()
            .and_then(|id| known.as_ref()?.failure(id))
            .map(failed_outcome);
        let stored = match container.asset(&run.id).await.map_err(err)? {
            Some(asset) => {
                let blob = container.as_blob(&run.id).await.map_err(err)?;
                let buffer = JsFuture::from(blob.array_buffer()).await?;
                let bytes = js_sys::Uint8Array::new(&buffer).to_vec();
                json!({ "recordSize": asset.size, "recordSha256": asset.sha256,
                        "size": bytes.len(), "sha256": hex(&Sha256::digest(&bytes)) })
            }
            None => serde_json::Value::Null,
        };
        out.push(
            json!({ "id": run.id, "outcome": outcome, "state": state, "stored": stored,
                         "failure": failure }),
        );
    }
    // Anything stored that the plan never asked for is corruption too.
    let strays: Vec<String> = container
        .list()
        .await
        .map_err(err)?
        .into_iter()
        .map(|a| a.identifier)
        .filter(|id| !seen.contains(id))
        .collect();
    let t0 = container
        .get_meta(T0_KEY)
        .await
        .map_err(err)?
        .and_then(|v| v.as_f64());
    container.close();
    Ok(json!({ "runs": out, "strays": strays, "t0": t0 }).to_string())
}
