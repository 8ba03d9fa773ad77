//! The `#[wasm_bindgen]` face the JS side calls (pages through `pkg/background_assets.js`, the
//! service worker through `pkg/worker/background_assets.js`).
//!
//! # Example (JavaScript)
//! ```js
//! import init, { version, globalContext } from '/pkg/background_assets.js';
//! await init();
//! console.log(version(), globalContext()); // "0.1.0" "window"
//! ```

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

mod delegate;
mod download;
mod errors;
mod finished;
mod manager;
mod packs;

pub use delegate::{JsDelegate, DELEGATE_METHODS};
pub use download::{download_from_js, download_to_js, UrlDownloadJs, DESCRIPTOR_KEYS};
pub use errors::{error_to_js, to_js_result};
pub use finished::FinishedDownloadJs;
pub(crate) use manager::promise;
pub use manager::{download_info_to_js, open_options_from_js, DownloadManagerJs, OPEN_OPTION_KEYS};

/// The TypeScript of the plain objects the JS face takes and returns (the classes are typed by
/// wasm-bindgen itself).
#[wasm_bindgen(typescript_custom_section)]
const TYPES: &'static str = r#"
/** What `new UrlDownload(init)` and `schedule(init)` take (Apple's `identifier`/`fileSize` are accepted as aliases of `id`/`size`). */
export interface UrlDownloadInit {
  id: string;
  url: string | URL;
  essential?: boolean;
  /** The exact size in bytes (required when `essential`). */
  size?: number;
  /** 0..100 (default 50), or 'min' | 'default' | 'max'. */
  priority?: number | 'min' | 'default' | 'max';
  headers?: Record<string, string> | Headers | [string, string][];
  applicationGroup?: string;
}

/** `DownloadManager.open(options)`. */
export interface DownloadManagerOptions {
  /** The IndexedDB container database (default "background-assets"). */
  database?: string;
  /** The declaration (pkg.json) object or its JSON text (default: the origin's /pkg.json). */
  declaration?: object | string;
}

/** Where a download is in its life. */
export type DownloadState = 'created' | 'waiting' | 'downloading' | 'paused' | 'finished' | 'failed';

/** One entry of `fetchCurrentDownloads()`. */
export interface DownloadInfo {
  id: string;
  url: string;
  state: DownloadState;
  essential: boolean;
  priority: number;
  /** Whether a page started it with `startForegroundDownload`. */
  foreground: boolean;
  totalWritten: number;
  totalExpected: number | null;
  /** It was essential, failed, and was scheduled again as non-essential. */
  requeuedFromEssential: boolean;
  /** The asset-pack file it fetches, if any. */
  pack: { id: string; path: string } | null;
}

/** What `authenticationChallenge` is asked about. */
export interface AuthChallenge {
  url: string;
  /** 401, 403 or 407. */
  status: number;
  wwwAuthenticate: string | null;
}

/** Apple's BADownloadManagerDelegate: any subset of these methods. */
export interface DownloadManagerDelegate {
  didBegin?(id: string): void;
  didPause?(id: string): void;
  didWriteData?(id: string, bytesWritten: number, totalWritten: number, totalExpected: number | null): void;
  didFail?(id: string, error: BackgroundAssetsError): void;
  didFinish?(id: string, finished: FinishedDownload): void;
  didRequeueAsNonEssential?(id: string): void;
  /** Return request headers to retry with, or null to fail with AuthenticationRequired. */
  authenticationChallenge?(id: string, challenge: AuthChallenge): Record<string, string> | null | undefined | Promise<Record<string, string> | null | undefined>;
}

/** Every rejection and throw of this library: `name` is the variant, `code` its stable number. */
export interface BackgroundAssetsError extends Error {
  name: BackgroundAssetsErrorName;
  code: number;
  /** Whether another attempt may succeed. */
  transient: boolean;
  /** The variant's fields, for example `identifier`, `status`, `path`, `reason`, `argument`. */
  identifier?: string;
  status?: number;
  path?: string;
  reason?: string;
  argument?: string;
  [field: string]: unknown;
}

/** A pack's status (Apple's AssetPackManager statuses). */
export type PackStatus = 'downloadAvailable' | 'updateAvailable' | 'downloading' | 'downloaded' | 'outdated' | 'obsolete';

/** One file of a pack's declared version. */
export interface PackFileInfo {
  path: string;
  /** Its storage identifier. */
  identifier: string;
  /** Where it is downloaded from (null for a file of an obsolete pack). */
  url: string | null;
  size: number;
  /** Declared SHA-256, lowercase hex (null for an obsolete pack). */
  sha256: string | null;
  /** Whether this file of this version is stored and verified. */
  stored: boolean;
}

/** One entry of `packs()`. */
export interface PackInfo {
  id: string;
  /** The declared version (for an obsolete pack, the stored one). */
  version: string;
  /** The stored, readable version (older than `version` while an update is pending). */
  storedVersion: string | null;
  policy: 'essential' | 'prefetch' | 'onDemand' | null;
  size: number;
  status: PackStatus;
  files: PackFileInfo[];
}

/** What `checkForUpdates()` found (pack ids). */
export interface PackUpdateSummary {
  updated: string[];
  removed: string[];
  added: string[];
}

/** `event.detail` of a 'status' event, and each value of the async iterator. */
export interface PackStatusUpdate {
  pack: string;
  status: PackStatus;
}

/** `statusUpdates()`: an EventTarget of 'status' events and an async iterable of updates. */
export interface PackStatusUpdates extends EventTarget, AsyncIterable<PackStatusUpdate> {
  addEventListener(type: 'status', listener: (event: CustomEvent<PackStatusUpdate>) => void, options?: boolean | AddEventListenerOptions): void;
  addEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | AddEventListenerOptions): void;
  /** Stops watching: no more events; iterators end. */
  close(): void;
}

export type BackgroundAssetsErrorName =
  | 'DownloadInvalid' | 'CallFromExtensionNotAllowed' | 'CallFromInactiveProcessNotAllowed'
  | 'DownloadAlreadyScheduled' | 'DownloadNotScheduled' | 'DownloadFailedToStart'
  | 'DownloadAlreadyFailed' | 'DownloadEssentialDownloadNotPermitted'
  | 'DownloadBackgroundActivityProhibited' | 'DownloadWouldExceedAllowance' | 'DownloadDoesNotExist'
  | 'SessionDownloadDisallowedByDomain' | 'SessionDownloadDisallowedByAllowance'
  | 'SessionDownloadAllowanceExceeded' | 'SessionDownloadNotPermittedBeforeAppLaunch'
  | 'InvalidDeclaration' | 'InvalidIdentifier' | 'InvalidTransition' | 'AssetPackDoesNotExist'
  | 'MaxInstallSizeExceeded' | 'QuotaExceeded' | 'InsufficientStorage' | 'IntegrityMismatch'
  | 'ChunkIntegrityMismatch' | 'SizeMismatch' | 'ServerRefusedRange' | 'HttpStatus' | 'AuthenticationRequired' | 'Network'
  | 'RetriesExhausted' | 'Stalled' | 'OpaqueResponseRefused' | 'CrossOriginCredentials'
  | 'LockTimeout' | 'StaleEpoch' | 'Storage' | 'Cancelled' | 'Unsupported' | 'InvalidArgument';
"#;

/// The crate version this wasm was built from (`CARGO_PKG_VERSION`).
///
/// # Example
/// ```no_run
/// assert_eq!(background_assets::web::bindings::version(), env!("CARGO_PKG_VERSION"));
/// ```
#[wasm_bindgen]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}

/// What kind of global this wasm runs in: `"serviceworker"`, `"window"`, `"worker"` (a
/// dedicated or shared worker) or `"unknown"`. The end-to-end test uses it to prove the answer
/// came from the worker's own wasm.
///
/// # Example
/// ```no_run
/// let context = background_assets::web::bindings::global_context();
/// assert!(["serviceworker", "window", "worker", "unknown"].contains(&context.as_str()));
/// ```
#[wasm_bindgen(js_name = globalContext)]
pub fn global_context() -> String {
    let global = js_sys::global();
    let name = if global.has_type::<web_sys::ServiceWorkerGlobalScope>() {
        "serviceworker"
    } else if global.has_type::<web_sys::Window>() {
        "window"
    } else if global.has_type::<web_sys::WorkerGlobalScope>() {
        "worker"
    } else {
        "unknown"
    };
    name.to_string()
}

/// The SHA-256 of `bytes` as 64 lower-case hex digits. The demo's worker uses it to prove it
/// fetched and hashed a CDN body with its own wasm.
///
/// # Example
/// ```no_run
/// let hex = background_assets::web::bindings::sha256_hex(b"abc");
/// assert!(hex.starts_with("ba7816bf"));
/// ```
#[wasm_bindgen(js_name = sha256Hex)]
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
