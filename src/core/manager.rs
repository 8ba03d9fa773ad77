//! One origin's download manager, as a state machine: Apple's `BADownloadManager` without the IO.
//!
//! The [`Manager`] decides; a driver (the web layer, or a test) does the IO and reports back:
//!
//! ```text
//!  page / extension calls            driver                         Manager
//!  schedule, startForeground ──────▶ forwards ──────────────────▶ validate, policy, queue
//!                                    poll_start(now) ◀─────────── ids to start (Downloading)
//!                                    runs transfers, reports ───▶ on_progress / on_finished / on_failed
//!  delegates (pages or worker) ◀──── poll_event() ◀────────────── DidBegin, Progress, Finished, ...
//! ```
//!
//! It is serializable (`serde`), so whichever context drives it (a page or the service worker)
//! can store it in IndexedDB and another can load it and continue: pending events, the queue,
//! the allowance accounting and the asset-pack bookkeeping all survive the round trip.
//!
//! Rules (Apple's where they exist):
//!
//! * Essential downloads may only be scheduled by the extension during install or update, and
//!   must give their exact size. An essential download that fails is re-queued once as a
//!   non-essential one (the failure is still reported), as Apple does; a failure of a
//!   non-essential download is final (transient faults were already retried by the transfer).
//! * `startForegroundDownload` is for pages only. It promotes an already scheduled download
//!   without restarting it (its transfer resumes from its checkpoint) and pre-empts the
//!   worst-ranked running background downloads when all slots are taken.
//! * Before first launch ([`Manager::did_launch`]) the policy charges each download's size to
//!   its allowance; the domain allow-list applies before and after (see [`super::policy`]).
//! * Events go to pages if at least one page has set a delegate, otherwise to the extension
//!   ([`Manager::set_page_delegates`]). The route is decided when the event happens.
//!
//! # Example
//! ```
//! use background_assets::core::declaration::parse_declaration;
//! use background_assets::core::download::*;
//! use background_assets::core::manager::*;
//! use url::Url;
//!
//! let page = Url::parse("https://app.example.com/").unwrap();
//! let declaration = parse_declaration("{}", &page.join("pkg.json").unwrap())?;
//! let mut manager = Manager::new(declaration, &page);
//! manager.did_launch(); // no allowance limits from now on
//!
//! let request = DownloadRequest::get("https://app.example.com/a.bin")?;
//! let download = UrlDownload::new(Identifier::new("a")?, request, false, None, Priority::DEFAULT, 0)?;
//! manager.schedule(download, Caller::Page, 0)?;
//! let started = manager.poll_start(1);
//! assert_eq!(started, vec![Identifier::new("a")?]);
//! let event = manager.poll_event().unwrap();
//! assert_eq!(event.event, ManagerEvent::DidBegin { id: Identifier::new("a")? });
//! assert_eq!(event.route, Route::Extension); // no page has a delegate
//! # Ok::<(), background_assets::core::error::Error>(())
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use serde::{Deserialize, Serialize};
use url::Url;

use super::declaration::{
    AssetPack, AssetPackList, Declaration, DownloadPolicy, InstallationEvent, PackFile,
};
use super::download::{
    DownloadRequest, DownloadState, Identifier, PackMember, Priority, UrlDownload,
};
use super::error::{hex, Error, Label, Result};
use super::policy::{Admitted, Policy, PolicyHead, RemainingAllowance};
use super::queue::{Queue, QueueEntry, QueueHead, QueueLimits, Slot};
use super::transfer::Progress;
use super::Millis;

// ---------------------------------------------------------------------------------------------
// Callers, routes, events
// ---------------------------------------------------------------------------------------------

/// The extension (service worker) event during which a call is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ExtensionEvent {
    /// `install`: Apple's didInstall.
    Install,
    /// `activate` of a new version: Apple's didUpdate.
    Update,
    /// `periodicsync` or a page-load check: Apple's checkForUpdates.
    CheckForUpdates,
}

/// Who makes a call: a page (the app) or the extension (the service worker).
///
/// # Example
/// ```
/// use background_assets::core::manager::{Caller, ExtensionEvent};
/// let installing = Caller::Extension { event: Some(ExtensionEvent::Install) };
/// assert!(installing.may_schedule_essential());
/// assert!(!Caller::Page.may_schedule_essential());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Caller {
    /// A page of the origin.
    Page,
    /// The service worker, inside `event` if it is handling one.
    Extension {
        /// The lifecycle event being handled, if any.
        event: Option<ExtensionEvent>,
    },
}

impl Caller {
    /// Whether essential downloads may be scheduled: only by the extension during install or
    /// update.
    pub fn may_schedule_essential(self) -> bool {
        matches!(
            self,
            Caller::Extension {
                event: Some(ExtensionEvent::Install | ExtensionEvent::Update)
            }
        )
    }
}

/// Who receives an event: the pages that set a delegate, or the extension's handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Route {
    /// Every page that has set a delegate.
    Pages,
    /// The service worker's extension handler.
    Extension,
}

/// A delegate callback to deliver (Apple's `BADownloadManagerDelegate` methods).
///
/// Stored and sent as one object tagged by `kind` (`{"kind":"progress","id":…,"bytes_written":…}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind", try_from = "EventFields")]
pub enum ManagerEvent {
    /// The download started (or restarted after a pause or pre-emption).
    DidBegin {
        /// The download.
        id: Identifier,
    },
    /// The download stopped without ending: paused by the app or pre-empted by a foreground one.
    DidPause {
        /// The download.
        id: Identifier,
    },
    /// Bytes were written.
    Progress {
        /// The download.
        id: Identifier,
        /// Bytes written since the previous progress event.
        bytes_written: u64,
        /// Bytes written in total.
        total_written: u64,
        /// The expected size, if known.
        total_expected: Option<u64>,
    },
    /// The download failed (or was cancelled: [`Error::Cancelled`]).
    Failed {
        /// The download.
        id: Identifier,
        /// Why.
        error: Error,
    },
    /// The download is stored and verified.
    Finished {
        /// The download.
        id: Identifier,
        /// Its size in bytes.
        size: u64,
        /// Its SHA-256.
        sha256: [u8; 32],
    },
    /// A failed essential download was scheduled again as a non-essential one.
    EssentialRequeued {
        /// The download.
        id: Identifier,
    },
}

/// [`ManagerEvent`]'s kinds, the `kind` of its stored form.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "camelCase")]
enum EventKind {
    DidBegin,
    DidPause,
    Progress,
    Failed,
    Finished,
    EssentialRequeued,
}

/// Every field of a stored [`ManagerEvent`], read flat and checked against its `kind`. Serde's own
/// internally tagged form buffers each value and deserializes every nested type (all of [`Error`])
/// a second time, which costs wasm size; this reads the same JSON in one pass.
#[derive(Deserialize)]
struct EventFields {
    kind: EventKind,
    id: Identifier,
    bytes_written: Option<u64>,
    total_written: Option<u64>,
    total_expected: Option<u64>,
    error: Option<Error>,
    size: Option<u64>,
    sha256: Option<[u8; 32]>,
}

impl TryFrom<EventFields> for ManagerEvent {
    type Error = String;
    fn try_from(f: EventFields) -> std::result::Result<Self, String> {
        let missing = |field: &str| format!("missing field `{field}`");
        let id = f.id;
        Ok(match f.kind {
            EventKind::DidBegin => ManagerEvent::DidBegin { id },
            EventKind::DidPause => ManagerEvent::DidPause { id },
            EventKind::EssentialRequeued => ManagerEvent::EssentialRequeued { id },
            EventKind::Progress => ManagerEvent::Progress {
                id,
                bytes_written: f.bytes_written.ok_or_else(|| missing("bytes_written"))?,
                total_written: f.total_written.ok_or_else(|| missing("total_written"))?,
                total_expected: f.total_expected,
            },
            EventKind::Failed => ManagerEvent::Failed {
                id,
                error: f.error.ok_or_else(|| missing("error"))?,
            },
            EventKind::Finished => ManagerEvent::Finished {
                id,
                size: f.size.ok_or_else(|| missing("size"))?,
                sha256: f.sha256.ok_or_else(|| missing("sha256"))?,
            },
        })
    }
}

/// An event and who receives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoutedEvent {
    /// Who receives it (decided when it happened).
    pub route: Route,
    /// The callback.
    pub event: ManagerEvent,
}

/// A download's progress as last reported by the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DownloadProgress {
    /// Bytes whose writes were confirmed.
    pub total_written: u64,
    /// The declared size, else the server's, if known.
    pub total_expected: Option<u64>,
}

/// One download as [`Manager::current_downloads`] sees it (Apple's `fetchCurrentDownloads`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DownloadInfo {
    /// The download.
    pub identifier: Identifier,
    /// Where it is in its life.
    pub state: DownloadState,
    /// Whether it is (still) essential.
    pub essential: bool,
    /// Its priority.
    pub priority: Priority,
    /// Whether a page started it in the foreground.
    pub foreground: bool,
    /// Progress so far.
    pub progress: DownloadProgress,
    /// Whether it was essential, failed, and was re-queued as non-essential.
    pub requeued_from_essential: bool,
    /// When it was scheduled, on the driver's clock.
    pub scheduled_at: Millis,
    /// When its last failure was reported, if any.
    pub failed_at: Option<Millis>,
    /// The asset-pack file it fetches, if any.
    pub pack: Option<PackMember>,
}

/// What [`Manager::start_foreground`] should run in the foreground: a scheduled download, by
/// identifier, or a download description (scheduled now if it is not yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Foreground {
    /// A download that is already scheduled.
    Scheduled(Identifier),
    /// A download description.
    Download(Box<UrlDownload>),
}

impl From<Identifier> for Foreground {
    fn from(id: Identifier) -> Self {
        Foreground::Scheduled(id)
    }
}

impl From<UrlDownload> for Foreground {
    fn from(download: UrlDownload) -> Self {
        Foreground::Download(Box::new(download))
    }
}

// ---------------------------------------------------------------------------------------------
// Asset packs
// ---------------------------------------------------------------------------------------------

/// An asset pack's status ([`Manager::pack_status`]).
///
/// | status | when |
/// |---|---|
/// | `downloadAvailable` | declared; nothing stored; none of its files is scheduled |
/// | `downloading` | a file of the declared version is scheduled (waiting, running or paused) |
/// | `downloaded` | the declared version is stored completely (or it has no files) |
/// | `updateAvailable` | an older version is stored (and readable); the declared one is not being fetched |
/// | `outdated` | an older version is stored and fetching the declared one failed; retry with [`Manager::ensure_local_availability`] |
/// | `obsolete` | stored, but no longer declared (remove it with [`Manager::remove_pack`]) |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PackStatus {
    /// Declared, not stored, not downloading.
    DownloadAvailable,
    /// An older version is stored; the declared one can be fetched.
    UpdateAvailable,
    /// Files of the declared version are being fetched.
    Downloading,
    /// The declared version is stored.
    Downloaded,
    /// An older version is stored, and fetching the declared one failed.
    Outdated,
    /// Stored but no longer declared.
    Obsolete,
}

/// What [`Manager::apply_manifest`] changed.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PackUpdate {
    /// Packs whose declared version changed (their stored version stays readable until the new
    /// one is complete; fetch it with [`Manager::ensure_local_availability`]).
    pub updated: Vec<Identifier>,
    /// Packs no longer declared (now `obsolete` if stored).
    pub removed: Vec<Identifier>,
    /// Packs declared for the first time.
    pub added: Vec<Identifier>,
    /// Scheduled downloads of a superseded or removed version, cancelled: the driver stops their
    /// transfers and deletes their partial bytes.
    pub cancelled: Vec<Identifier>,
}

/// One file of an asset pack, as [`Manager::packs`] lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PackFileInfo {
    /// Its path inside the pack (what [`Manager::file_for_path`] answers).
    pub path: String,
    /// Its storage identifier ([`pack_file_identifier`]).
    pub identifier: Identifier,
    /// Where it is downloaded from (`None` for a file of an obsolete pack).
    pub url: Option<String>,
    /// Its size in bytes (declared; for an obsolete pack, as stored).
    pub size: u64,
    /// Its declared SHA-256, lowercase hex (`None` for a file of an obsolete pack).
    pub sha256: Option<String>,
    /// Whether this file of this version is stored and verified.
    pub stored: bool,
}

/// An asset pack with its status ([`Manager::packs`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PackInfo {
    /// The pack.
    pub id: Identifier,
    /// The declared version (for an obsolete pack, the stored one).
    pub version: String,
    /// The stored, readable version, if any (older than `version` while an update is pending).
    pub stored_version: Option<String>,
    /// Its download policy (`None` for an obsolete pack: it is no longer declared).
    pub policy: Option<DownloadPolicy>,
    /// Total bytes of `version`'s files.
    pub size: u64,
    /// Its status.
    pub status: PackStatus,
    /// The files of `version`, in declaration order (stored order for an obsolete pack).
    pub files: Vec<PackFileInfo>,
}

/// The storage identifier of one file of one version of an asset pack.
///
/// Encoding (deterministic, injective, always a valid [`Identifier`]):
///
/// * Each of `pack_id`, `version` and `path` is escaped: ASCII letters, digits and `-` stay;
///   every other byte (including `.`, `_` and `/`) becomes `_` followed by two lowercase hex
///   digits. The three escaped parts are joined with `.`: `levels.3.maps_2feu_2ebin`. Escaped
///   parts contain no `.`, and `_` only starts an escape, so the text decodes back to exactly one
///   triple: the encoding is injective.
/// * When that is longer than [`Identifier::MAX_LEN`], the identifier is `sha256.` followed by
///   the hex SHA-256 of the readable form. It has one `.` where readable forms have two, so the
///   two families never meet; within it, distinct inputs collide only if SHA-256 does.
///
/// The version is part of the name so that a new version is stored beside the old one, which
/// stays readable until the new one is complete.
///
/// # Example
/// ```
/// use background_assets::core::download::Identifier;
/// use background_assets::core::manager::pack_file_identifier;
///
/// let pack = Identifier::new("levels")?;
/// let id = pack_file_identifier(&pack, "3", "maps/eu.bin");
/// assert_eq!(id.as_str(), "levels.3.maps_2feu_2ebin");
/// // `/` and `_` are escaped differently: no two paths share an identifier.
/// assert_ne!(pack_file_identifier(&pack, "3", "a_2fb"), pack_file_identifier(&pack, "3", "a/b"));
/// let long = pack_file_identifier(&pack, "3", &"x/".repeat(100));
/// assert!(long.as_str().starts_with("sha256.") && long.len() == 7 + 64);
/// # Ok::<(), background_assets::core::error::Error>(())
/// ```
pub fn pack_file_identifier(pack_id: &Identifier, version: &str, path: &str) -> Identifier {
    fn escape(text: &str, out: &mut String) {
        for b in text.bytes() {
            if b.is_ascii_alphanumeric() || b == b'-' {
                out.push(b as char);
            } else {
                out.push('_');
                out.push_str(&hex(&[b]));
            }
        }
    }
    let mut readable = String::new();
    escape(pack_id.as_str(), &mut readable);
    readable.push('.');
    escape(version, &mut readable);
    readable.push('.');
    escape(path, &mut readable);
    let text = if readable.len() <= Identifier::MAX_LEN {
        readable
    } else {
        use sha2::{Digest, Sha256};
        format!("sha256.{}", hex(&Sha256::digest(readable.as_bytes())))
    };
    // Non-empty, only [A-Za-z0-9._-], at most MAX_LEN, never `.`/`..`: always valid.
    Identifier::new(text).expect("pack file identifiers are valid by construction")
}

/// One version of a pack: its files' identifiers and which are stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PackVersion {
    version: String,
    /// Path → storage identifier.
    files: BTreeMap<String, Identifier>,
    /// Paths whose file is stored and verified.
    stored: BTreeSet<String>,
}

/// A `BTreeSet` or `BTreeMap` of `items`, inserted one after the other (for a repeated key the
/// last wins, as with `collect`). `collect()` sorts a `Vec` of them first, and each sorted type
/// brings its own copy of the sort into the wasm.
fn sorted<C: Default + Extend<T>, T>(items: impl IntoIterator<Item = T>) -> C {
    let mut collection = C::default();
    collection.extend(items);
    collection
}

impl PackVersion {
    fn of(pack: &AssetPack) -> PackVersion {
        PackVersion {
            version: pack.version.clone(),
            files: sorted(pack.files.iter().map(|f| {
                (
                    f.path.clone(),
                    pack_file_identifier(&pack.id, &pack.version, &f.path),
                )
            })),
            stored: BTreeSet::new(),
        }
    }

    fn is_complete(&self) -> bool {
        self.stored.len() == self.files.len()
    }
}

/// What is stored of a pack: the complete, readable version, and the one being fetched.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PackStore {
    complete: Option<PackVersion>,
    pending: Option<PackVersion>,
}

// ---------------------------------------------------------------------------------------------
// The manager
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Record {
    download: UrlDownload,
    state: DownloadState,
    foreground: bool,
    /// Bytes written, as last reported.
    written: u64,
    /// Bytes received for the current version of the file, as last reported (allowance).
    received: u64,
    expected: Option<u64>,
    requeued: bool,
    scheduled_at: Millis,
    failed_at: Option<Millis>,
    /// Why it last failed (kept while it stays failed; states stored before this field read
    /// back as `None`).
    #[serde(default)]
    error: Option<Error>,
}

impl Record {
    fn info(&self) -> DownloadInfo {
        DownloadInfo {
            identifier: self.download.identifier.clone(),
            state: self.state,
            essential: self.download.essential,
            priority: self.download.priority,
            foreground: self.foreground,
            progress: DownloadProgress {
                total_written: self.written,
                total_expected: self.expected.or(self.download.file_size),
            },
            requeued_from_essential: self.requeued,
            scheduled_at: self.scheduled_at,
            failed_at: self.failed_at,
            pack: self.download.pack.clone(),
        }
    }
}

/// The download manager of one origin. See the [module docs](self) for the model and the rules.
///
/// # Example
/// ```
/// use background_assets::core::declaration::parse_declaration;
/// use background_assets::core::download::*;
/// use background_assets::core::error::Error;
/// use background_assets::core::manager::*;
/// use url::Url;
///
/// let page = Url::parse("https://app.example.com/").unwrap();
/// let declaration = parse_declaration(
///     r#"{ "initialDownloadRestrictions": { "essentialDownloadAllowance": 100 } }"#,
///     &page.join("pkg.json").unwrap())?;
/// let mut manager = Manager::new(declaration, &page);
/// let essential = UrlDownload::new(Identifier::new("core")?,
///     DownloadRequest::get("https://app.example.com/core.bin")?, true, Some(100), Priority::DEFAULT, 0)?;
///
/// // Only the extension, while installing or updating, may schedule essential downloads.
/// assert!(matches!(manager.schedule(essential.clone(), Caller::Page, 0),
///                  Err(Error::DownloadEssentialDownloadNotPermitted { .. })));
/// let install = Caller::Extension { event: Some(ExtensionEvent::Install) };
/// manager.schedule(essential, install, 0)?;
/// assert_eq!(manager.remaining_allowance().unwrap().essential, 0);
///
/// // The state survives storage.
/// let stored = serde_json::to_string(&manager).unwrap();
/// let restored: Manager = serde_json::from_str(&stored).unwrap();
/// assert_eq!(restored, manager);
/// # Ok::<(), Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manager {
    #[serde(with = "declaration_json")]
    declaration: Declaration,
    policy: Policy,
    queue: Queue,
    records: BTreeMap<Identifier, Record>,
    events: VecDeque<RoutedEvent>,
    page_delegates: usize,
    packs: BTreeMap<Identifier, PackStore>,
    /// What changed since the last [`Manager::changed_parts`] (not part of the state).
    #[serde(skip)]
    touched: Touched,
}

/// What a manager changed since its parts were last compared with what is stored — downloads,
/// packs, pack files newly stored: [`Manager::changed_parts`] compares only those (or all, after
/// a bulk change, which also covers the declaration). Never part of the state: two managers are
/// equal whatever they touched.
#[derive(Debug, Clone, Default)]
struct Touched {
    ids: BTreeSet<Identifier>,
    all: bool,
    /// Packs whose part or stored files may have changed in bulk: compared whole.
    packs: BTreeSet<Identifier>,
    /// Pack files newly stored, by file identifier: one part each.
    pack_files: BTreeMap<Identifier, PackFilePart>,
}

impl PartialEq for Touched {
    fn eq(&self, _: &Touched) -> bool {
        true
    }
}

impl Eq for Touched {}

fn does_not_exist(id: &Identifier) -> Error {
    Error::DownloadDoesNotExist {
        identifier: id.to_string(),
    }
}

fn not_scheduled(id: &Identifier) -> Error {
    Error::DownloadNotScheduled {
        identifier: id.to_string(),
    }
}

fn invalid_transition(id: &Identifier, from: DownloadState, to: DownloadState) -> Error {
    Error::InvalidTransition {
        identifier: id.to_string(),
        from: from.label().into(),
        to: to.label().into(),
    }
}

impl Manager {
    /// A manager for the origin of `page_url`, before first launch, with the default
    /// [`QueueLimits`].
    pub fn new(declaration: Declaration, page_url: &Url) -> Manager {
        Manager {
            policy: Policy::new(declaration.restrictions.clone(), page_url),
            declaration,
            queue: Queue::new(QueueLimits::default()),
            records: BTreeMap::new(),
            events: VecDeque::new(),
            page_delegates: 0,
            packs: BTreeMap::new(),
            touched: Touched::default(),
        }
    }

    /// Changes the concurrency and bandwidth limits (running downloads above a lower limit keep
    /// running).
    pub fn set_limits(&mut self, limits: QueueLimits) {
        self.queue.set_limits(limits);
    }

    /// The limits in force.
    pub fn limits(&self) -> QueueLimits {
        self.queue.limits()
    }

    /// The declaration (updated by [`apply_manifest`](Self::apply_manifest)).
    pub fn declaration(&self) -> &Declaration {
        &self.declaration
    }

    /// The allowance accounting and domain checks (the driver checks `response.url` with
    /// [`Policy::check_redirect`]).
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Marks `id`'s part as changed (see [`Manager::changed_parts`]).
    fn touch(&mut self, id: &Identifier) {
        if !self.touched.all {
            self.touched.ids.insert(id.clone());
        }
    }

    /// Marks every download's part as changed (a bulk change).
    fn touch_all(&mut self) {
        self.touched.all = true;
        self.touched.ids.clear();
    }

    fn emit(&mut self, event: ManagerEvent) {
        self.events.push_back(RoutedEvent {
            route: self.route(),
            event,
        });
    }

    fn record(&self, id: &Identifier) -> Result<&Record> {
        self.records.get(id).ok_or_else(|| does_not_exist(id))
    }

    fn record_mut(&mut self, id: &Identifier) -> Result<&mut Record> {
        self.touch(id);
        self.records.get_mut(id).ok_or_else(|| does_not_exist(id))
    }

    fn is_scheduled(&self, id: &Identifier) -> bool {
        self.records.get(id).is_some_and(|r| r.state.is_scheduled())
    }

    // -----------------------------------------------------------------------------------------
    // Scheduling
    // -----------------------------------------------------------------------------------------

    /// Schedules a download; it starts when the queue decides ([`poll_start`](Self::poll_start)).
    ///
    /// Refusals, in this order, leave everything unchanged:
    /// the description is invalid (an essential download without its exact size included) →
    /// [`Error::DownloadInvalid`]; the identifier is waiting, running or paused →
    /// [`Error::DownloadAlreadyScheduled`]; an essential download from anyone but the extension
    /// during install/update → [`Error::DownloadEssentialDownloadNotPermitted`]; the policy
    /// refuses (domain; before first launch, a missing size or the allowance) →
    /// [`Error::SessionDownloadDisallowedByDomain`],
    /// [`Error::SessionDownloadDisallowedByAllowance`], [`Error::DownloadWouldExceedAllowance`].
    ///
    /// A finished or failed identifier may be scheduled again (a new download).
    ///
    /// # Example
    /// ```
    /// use background_assets::core::declaration::parse_declaration;
    /// use background_assets::core::download::*;
    /// use background_assets::core::error::Error;
    /// use background_assets::core::manager::*;
    /// use url::Url;
    ///
    /// let page = Url::parse("https://app.example.com/").unwrap();
    /// let mut manager = Manager::new(parse_declaration("{}", &page)?, &page);
    /// manager.did_launch();
    /// let d = UrlDownload::new(Identifier::new("a")?,
    ///     DownloadRequest::get("https://app.example.com/a")?, false, None, Priority::DEFAULT, 0)?;
    /// manager.schedule(d.clone(), Caller::Page, 5)?;
    /// assert!(matches!(manager.schedule(d, Caller::Page, 6),
    ///                  Err(Error::DownloadAlreadyScheduled { .. })));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn schedule(&mut self, download: UrlDownload, caller: Caller, now: Millis) -> Result<()> {
        self.schedule_as(download, caller, false, now)
    }

    fn schedule_as(
        &mut self,
        download: UrlDownload,
        caller: Caller,
        foreground: bool,
        now: Millis,
    ) -> Result<()> {
        download.validate()?;
        let id = download.identifier.clone();
        self.touch(&id);
        if self.is_scheduled(&id) {
            return Err(Error::DownloadAlreadyScheduled {
                identifier: id.to_string(),
            });
        }
        if download.essential && !caller.may_schedule_essential() {
            return Err(Error::DownloadEssentialDownloadNotPermitted {
                identifier: id.to_string(),
            });
        }
        self.policy.admit(&download)?;
        if let Err(e) = self
            .queue
            .push(QueueEntry::for_download(&download, foreground))
        {
            self.policy.release(&id);
            return Err(e);
        }
        self.records.insert(
            id,
            Record {
                download,
                state: DownloadState::Waiting,
                foreground,
                written: 0,
                received: 0,
                expected: None,
                requeued: false,
                scheduled_at: now,
                failed_at: None,
                error: None,
            },
        );
        Ok(())
    }

    /// Apple's `startForegroundDownload`: runs a download now, for a page that waits for it.
    ///
    /// Only pages may call it ([`Error::CallFromExtensionNotAllowed`]). A scheduled download is
    /// promoted — same identifier, same record: a running one keeps running, a waiting or paused
    /// one waits at the head of the queue and its transfer resumes from its checkpoint. A new
    /// description is scheduled (same rules as [`schedule`](Self::schedule)) and promoted. A
    /// description whose identifier is scheduled with another request is
    /// [`Error::DownloadAlreadyScheduled`]; an identifier that is not scheduled is
    /// [`Error::DownloadNotScheduled`] (or [`Error::DownloadDoesNotExist`] if unknown).
    ///
    /// Returns the running background downloads pre-empted to make room (now waiting again, a
    /// `DidPause` event each): the driver stops their transfers, then calls
    /// [`poll_start`](Self::poll_start).
    ///
    /// # Example
    /// ```
    /// use background_assets::core::declaration::parse_declaration;
    /// use background_assets::core::download::*;
    /// use background_assets::core::manager::*;
    /// use background_assets::core::queue::QueueLimits;
    /// use url::Url;
    ///
    /// let page = Url::parse("https://app.example.com/").unwrap();
    /// let mut manager = Manager::new(parse_declaration("{}", &page)?, &page);
    /// manager.did_launch();
    /// manager.set_limits(QueueLimits { max_concurrent: 1, bandwidth: None });
    /// let d = |name: &str| UrlDownload::new(Identifier::new(name).unwrap(),
    ///     DownloadRequest::get(&format!("https://app.example.com/{name}")).unwrap(),
    ///     false, None, Priority::DEFAULT, 0).unwrap();
    /// manager.schedule(d("background"), Caller::Page, 0)?;
    /// manager.poll_start(0);
    /// let paused = manager.start_foreground(d("now"), Caller::Page, 1)?;
    /// assert_eq!(paused, vec![Identifier::new("background")?]);
    /// assert_eq!(manager.poll_start(1), vec![Identifier::new("now")?]);
    /// # Ok::<(), background_assets::core::error::Error>(())
    /// ```
    pub fn start_foreground(
        &mut self,
        target: impl Into<Foreground>,
        caller: Caller,
        now: Millis,
    ) -> Result<Vec<Identifier>> {
        if caller != Caller::Page {
            return Err(Error::CallFromExtensionNotAllowed {
                call: "startForegroundDownload".into(),
            });
        }
        let id = match target.into() {
            Foreground::Scheduled(id) => {
                if !self.record(&id)?.state.is_scheduled() {
                    return Err(not_scheduled(&id));
                }
                id
            }
            Foreground::Download(download) => {
                let id = download.identifier.clone();
                match self.records.get(&id) {
                    Some(r) if r.state.is_scheduled() => {
                        if r.download.request != download.request {
                            return Err(Error::DownloadAlreadyScheduled {
                                identifier: id.to_string(),
                            });
                        }
                    }
                    _ => self.schedule_as(*download, caller, true, now)?,
                }
                id
            }
        };
        self.queue.promote(&id)?;
        let record = self.record_mut(&id)?;
        record.foreground = true;
        if record.state == DownloadState::Paused {
            record.state.transition(DownloadState::Waiting, &id)?;
        }
        let preempted = self.queue.preempt(now);
        for victim in &preempted {
            self.touch(victim);
            if let Some(r) = self.records.get_mut(victim) {
                r.state.transition(DownloadState::Waiting, victim)?;
            }
            self.emit(ManagerEvent::DidPause { id: victim.clone() });
        }
        Ok(preempted)
    }

    /// Cancels a scheduled download: it fails with [`Error::Cancelled`] (a `Failed` event), its
    /// unreceived allowance is refunded. Returns whether its transfer was running (the driver
    /// aborts it and deletes its stored bytes).
    /// [`Error::DownloadDoesNotExist`] if unknown, [`Error::DownloadNotScheduled`] if it already
    /// finished or failed.
    ///
    /// # Example
    /// ```
    /// use background_assets::core::declaration::parse_declaration;
    /// use background_assets::core::download::*;
    /// use background_assets::core::manager::*;
    /// use url::Url;
    ///
    /// let page = Url::parse("https://app.example.com/").unwrap();
    /// let mut manager = Manager::new(parse_declaration("{}", &page)?, &page);
    /// manager.did_launch();
    /// let id = Identifier::new("a")?;
    /// manager.schedule(UrlDownload::new(id.clone(), DownloadRequest::get("https://app.example.com/a")?,
    ///     false, None, Priority::DEFAULT, 0)?, Caller::Page, 0)?;
    /// assert_eq!(manager.cancel(&id)?, false); // it was only waiting
    /// assert!(manager.cancel(&id).is_err());   // not scheduled any more
    /// # Ok::<(), background_assets::core::error::Error>(())
    /// ```
    pub fn cancel(&mut self, id: &Identifier) -> Result<bool> {
        self.touch(id);
        let record = self.record(id)?;
        if !record.state.is_scheduled() {
            return Err(not_scheduled(id));
        }
        let was_running = record.state == DownloadState::Downloading;
        self.end_failed(
            id,
            Error::Cancelled {
                identifier: id.to_string(),
            },
        )?;
        Ok(was_running)
    }

    /// Moves a scheduled download to `failed`, frees its slot and allowance, reports it.
    fn end_failed(&mut self, id: &Identifier, error: Error) -> Result<()> {
        let record = self.record_mut(id)?;
        record.state.transition(DownloadState::Failed, id)?;
        record.error = Some(error.clone());
        self.queue.remove(id);
        self.policy.release(id);
        self.emit(ManagerEvent::Failed {
            id: id.clone(),
            error,
        });
        Ok(())
    }

    /// Pauses a waiting or running download (beyond Apple). Returns whether its transfer was
    /// running (the driver stops it; the checkpoint stays). Emits `DidPause`.
    /// [`Error::DownloadDoesNotExist`] if unknown, [`Error::DownloadNotScheduled`] if finished
    /// or failed, [`Error::InvalidTransition`] if already paused.
    ///
    /// # Example
    /// ```
    /// use background_assets::core::declaration::parse_declaration;
    /// use background_assets::core::download::*;
    /// use background_assets::core::manager::*;
    /// use url::Url;
    ///
    /// let page = Url::parse("https://app.example.com/").unwrap();
    /// let mut manager = Manager::new(parse_declaration("{}", &page)?, &page);
    /// manager.did_launch();
    /// let id = Identifier::new("a")?;
    /// manager.schedule(UrlDownload::new(id.clone(), DownloadRequest::get("https://app.example.com/a")?,
    ///     false, None, Priority::DEFAULT, 0)?, Caller::Page, 0)?;
    /// manager.poll_start(0);
    /// assert!(manager.pause(&id)?);              // it was running
    /// assert!(manager.poll_start(1).is_empty()); // paused downloads do not start
    /// manager.resume(&id)?;
    /// assert_eq!(manager.poll_start(2), vec![id]);
    /// # Ok::<(), background_assets::core::error::Error>(())
    /// ```
    pub fn pause(&mut self, id: &Identifier) -> Result<bool> {
        self.touch(id);
        let state = self.record(id)?.state;
        if state.is_terminal() || state == DownloadState::Created {
            return Err(not_scheduled(id));
        }
        if !state.can_transition(DownloadState::Paused) {
            return Err(invalid_transition(id, state, DownloadState::Paused));
        }
        self.queue.pause(id)?;
        self.record_mut(id)?
            .state
            .transition(DownloadState::Paused, id)?;
        self.emit(ManagerEvent::DidPause { id: id.clone() });
        Ok(state == DownloadState::Downloading)
    }

    /// Resumes a paused download: it waits again (keeping its age and its checkpoint).
    /// [`Error::DownloadDoesNotExist`] if unknown, [`Error::DownloadNotScheduled`] if finished
    /// or failed, [`Error::InvalidTransition`] if it is not paused.
    ///
    /// # Example
    /// ```
    /// use background_assets::core::declaration::parse_declaration;
    /// use background_assets::core::download::*;
    /// use background_assets::core::error::Error;
    /// use background_assets::core::manager::*;
    /// use url::Url;
    ///
    /// let page = Url::parse("https://app.example.com/").unwrap();
    /// let mut manager = Manager::new(parse_declaration("{}", &page)?, &page);
    /// manager.did_launch();
    /// let id = Identifier::new("a")?;
    /// manager.schedule(UrlDownload::new(id.clone(), DownloadRequest::get("https://app.example.com/a")?,
    ///     false, None, Priority::DEFAULT, 0)?, Caller::Page, 0)?;
    /// assert!(matches!(manager.resume(&id), Err(Error::InvalidTransition { .. })));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn resume(&mut self, id: &Identifier) -> Result<()> {
        self.touch(id);
        let state = self.record(id)?.state;
        if state.is_terminal() || state == DownloadState::Created {
            return Err(not_scheduled(id));
        }
        if state != DownloadState::Paused {
            return Err(invalid_transition(id, state, DownloadState::Waiting));
        }
        self.queue.resume(id)?;
        self.record_mut(id)?
            .state
            .transition(DownloadState::Waiting, id)?;
        Ok(())
    }

    /// Apple's `fetchCurrentDownloads`: the scheduled downloads (waiting, running, paused), by
    /// identifier.
    ///
    /// # Example
    /// ```
    /// use background_assets::core::declaration::parse_declaration;
    /// use background_assets::core::download::*;
    /// use background_assets::core::manager::*;
    /// use url::Url;
    ///
    /// let page = Url::parse("https://app.example.com/").unwrap();
    /// let mut manager = Manager::new(parse_declaration("{}", &page)?, &page);
    /// manager.did_launch();
    /// manager.schedule(UrlDownload::new(Identifier::new("a")?,
    ///     DownloadRequest::get("https://app.example.com/a")?, false, Some(10), Priority::MAX, 0)?,
    ///     Caller::Page, 0)?;
    /// let current = manager.current_downloads();
    /// assert_eq!(current[0].state, DownloadState::Waiting);
    /// assert_eq!(current[0].progress.total_expected, Some(10));
    /// # Ok::<(), background_assets::core::error::Error>(())
    /// ```
    pub fn current_downloads(&self) -> Vec<DownloadInfo> {
        self.records
            .values()
            .filter(|r| r.state.is_scheduled())
            .map(Record::info)
            .collect()
    }

    /// Any known download, including finished and failed ones.
    pub fn download(&self, id: &Identifier) -> Option<DownloadInfo> {
        self.records.get(id).map(Record::info)
    }

    /// Whether no byte of `id`'s file was reported received (or written) since it was scheduled
    /// or last restarted from zero: its next run most likely starts from byte 0, so the driver
    /// may request a small file before it has read the stored state
    /// (the web driver's `RunOptions::fresh`). `false` for an unknown
    /// download. Reports are throttled, so a run killed before reporting can leave stored bytes
    /// behind a `true`: the run still handles them (a small file fetched whole replaces them).
    pub fn nothing_received(&self, id: &Identifier) -> bool {
        self.records
            .get(id)
            .is_some_and(|r| r.received == 0 && r.written == 0)
    }

    /// The description of a known download (the driver builds its transfer from it).
    pub fn description(&self, id: &Identifier) -> Option<&UrlDownload> {
        self.records.get(id).map(|r| &r.download)
    }

    /// What the driver should start now: as many waiting downloads as free slots allow (see
    /// [`super::queue`] for the order), now `downloading`, each with a `DidBegin` event.
    pub fn poll_start(&mut self, now: Millis) -> Vec<Identifier> {
        let started = self.queue.schedule(now);
        for id in &started {
            self.touch(id);
            if let Some(record) = self.records.get_mut(id) {
                // The queue only holds scheduled records; a waiting one may start.
                let _ = record.state.transition(DownloadState::Downloading, id);
            }
            self.emit(ManagerEvent::DidBegin { id: id.clone() });
        }
        started
    }

    /// The waiting downloads that [`poll_start`](Self::poll_start) would start next, in that
    /// order, as running ones end (nothing else scheduled or changed in between): what a driver
    /// may prepare before a slot is free, such as a small file's request.
    pub fn upcoming(&self, now: Millis) -> impl Iterator<Item = &Identifier> + '_ {
        self.queue.eligible(now)
    }

    /// When a waiting download next becomes eligible, if one is held back (see
    /// [`Queue::next_wakeup`]).
    pub fn next_wakeup(&self, now: Millis) -> Option<Millis> {
        self.queue.next_wakeup(now)
    }

    /// The downloads in the `downloading` state (they hold a queue slot), best first: what a
    /// driver's transfers must match. Reads only the running ones, however many are scheduled.
    ///
    /// # Example
    /// ```
    /// use background_assets::core::declaration::parse_declaration;
    /// use background_assets::core::download::{DownloadRequest, Identifier, Priority, UrlDownload};
    /// use background_assets::core::manager::{Caller, Manager};
    /// let page = url::Url::parse("https://app.example.com/").unwrap();
    /// let mut manager = Manager::new(parse_declaration("{}", &page).unwrap(), &page);
    /// manager.did_launch();
    /// let id = Identifier::new("a").unwrap();
    /// manager.schedule(UrlDownload::new(id.clone(),
    ///     DownloadRequest::get("https://app.example.com/a").unwrap(), false, None, Priority::DEFAULT, 0).unwrap(),
    ///     Caller::Page, 0).unwrap();
    /// assert!(manager.downloading().is_empty());
    /// manager.poll_start(0);
    /// assert_eq!(manager.downloading(), vec![id]);
    /// ```
    pub fn downloading(&self) -> Vec<Identifier> {
        self.queue
            .running()
            .filter(|id| {
                self.records
                    .get(*id)
                    .is_some_and(|r| r.state == DownloadState::Downloading)
            })
            .cloned()
            .collect()
    }

    // -----------------------------------------------------------------------------------------
    // Reports from the driver
    // -----------------------------------------------------------------------------------------

    /// The driver reports a transfer's progress. Emits `Progress` when the written bytes
    /// changed, and charges received bytes to the allowance: before first launch a download may
    /// not receive more than its declared size — it then fails with
    /// [`Error::SessionDownloadAllowanceExceeded`] (returned too: the driver aborts the
    /// transfer). A restart from zero re-uses the same charge.
    /// [`Error::DownloadDoesNotExist`] if unknown, [`Error::DownloadNotScheduled`] if it ended.
    ///
    /// # Example
    /// ```
    /// use background_assets::core::declaration::parse_declaration;
    /// use background_assets::core::download::*;
    /// use background_assets::core::manager::*;
    /// use background_assets::core::transfer::Progress;
    /// use url::Url;
    ///
    /// let page = Url::parse("https://app.example.com/").unwrap();
    /// let mut manager = Manager::new(parse_declaration("{}", &page)?, &page);
    /// manager.did_launch();
    /// let id = Identifier::new("a")?;
    /// manager.schedule(UrlDownload::new(id.clone(), DownloadRequest::get("https://app.example.com/a")?,
    ///     false, Some(100), Priority::DEFAULT, 0)?, Caller::Page, 0)?;
    /// manager.poll_start(0);
    /// manager.poll_event(); // DidBegin
    /// for written in [40, 100] {
    ///     let progress = Progress { bytes_written: written, bytes_received: written, ..Progress::default() };
    ///     manager.on_progress(&id, &progress)?;
    /// }
    /// manager.poll_event(); // the first Progress
    /// assert_eq!(manager.poll_event().unwrap().event, ManagerEvent::Progress {
    ///     id, bytes_written: 60, total_written: 100, total_expected: Some(100) });
    /// # Ok::<(), background_assets::core::error::Error>(())
    /// ```
    pub fn on_progress(&mut self, id: &Identifier, progress: &Progress) -> Result<()> {
        self.touch(id);
        let record = self.record(id)?;
        if !record.state.is_scheduled() {
            return Err(not_scheduled(id));
        }
        let (previous_received, previous_written) = (record.received, record.written);
        let charged = if progress.bytes_received < previous_received {
            self.policy.rewind(id, progress.bytes_received)
        } else {
            self.policy
                .bytes_received(id, progress.bytes_received - previous_received)
        };
        if let Err(error) = charged {
            self.end_failed(id, error.clone())?;
            return Err(error);
        }
        let record = self.record_mut(id)?;
        record.received = progress.bytes_received;
        record.written = progress.bytes_written;
        record.expected = progress.total_expected.or(record.download.file_size);
        let total_expected = record.expected;
        if progress.bytes_written != previous_written {
            self.emit(ManagerEvent::Progress {
                id: id.clone(),
                bytes_written: progress.bytes_written.saturating_sub(previous_written),
                total_written: progress.bytes_written,
                total_expected,
            });
        }
        Ok(())
    }

    /// The driver reports a finished, verified transfer. Emits `Finished`; for an asset-pack
    /// file, records it, and when that completes a new version of its pack, the new version
    /// replaces the old one. Returns the stored files that became obsolete (the old version's):
    /// the driver deletes them.
    ///
    /// A size different from the declared one ([`Error::SizeMismatch`]) or, for a pack file, a
    /// digest different from the declared one ([`Error::IntegrityMismatch`]) fails the download
    /// instead, and is returned. [`Error::DownloadDoesNotExist`] if unknown,
    /// [`Error::InvalidTransition`] if it is not running.
    ///
    /// # Example
    /// ```
    /// use background_assets::core::declaration::parse_declaration;
    /// use background_assets::core::download::*;
    /// use background_assets::core::manager::*;
    /// use url::Url;
    ///
    /// let page = Url::parse("https://app.example.com/").unwrap();
    /// let mut manager = Manager::new(parse_declaration("{}", &page)?, &page);
    /// manager.did_launch();
    /// let id = Identifier::new("a")?;
    /// manager.schedule(UrlDownload::new(id.clone(), DownloadRequest::get("https://app.example.com/a")?,
    ///     false, Some(3), Priority::DEFAULT, 0)?, Caller::Page, 0)?;
    /// manager.poll_start(0);
    /// manager.on_finished(&id, 3, [0xab; 32])?;
    /// assert_eq!(manager.download(&id).unwrap().state, DownloadState::Finished);
    /// assert!(manager.current_downloads().is_empty());
    /// # Ok::<(), background_assets::core::error::Error>(())
    /// ```
    pub fn on_finished(
        &mut self,
        id: &Identifier,
        size: u64,
        sha256: [u8; 32],
    ) -> Result<Vec<Identifier>> {
        self.touch(id);
        let record = self.record(id)?;
        if record.state != DownloadState::Downloading {
            return Err(invalid_transition(
                id,
                record.state,
                DownloadState::Finished,
            ));
        }
        let mismatch = match (record.download.file_size, self.pack_file(id)) {
            (Some(expected), _) if expected != size => Some(Error::SizeMismatch {
                identifier: id.to_string(),
                expected,
                actual: size,
            }),
            (_, Some(file)) if file.sha256 != sha256 => Some(Error::IntegrityMismatch {
                identifier: id.to_string(),
                expected: hex(&file.sha256),
                actual: hex(&sha256),
            }),
            _ => None,
        };
        if let Some(error) = mismatch {
            self.end_failed(id, error.clone())?;
            return Err(error);
        }
        let record = self.record_mut(id)?;
        record.state.transition(DownloadState::Finished, id)?;
        record.written = size;
        self.queue.remove(id);
        self.policy.complete(id);
        self.emit(ManagerEvent::Finished {
            id: id.clone(),
            size,
            sha256,
        });
        Ok(self.pack_file_stored(id))
    }

    /// The driver reports a transfer that failed for good (transient faults were retried by the
    /// transfer). Emits `Failed`. An essential download is then re-queued once as a
    /// non-essential one (`EssentialRequeued`), keeping its identifier and checkpoint, if the
    /// policy admits it as such (before first launch it is charged to the download allowance;
    /// if that refuses, the failure stands). [`Error::DownloadDoesNotExist`] if unknown,
    /// [`Error::InvalidTransition`] if it already ended.
    ///
    /// # Example
    /// ```
    /// use background_assets::core::declaration::parse_declaration;
    /// use background_assets::core::download::*;
    /// use background_assets::core::error::Error;
    /// use background_assets::core::manager::*;
    /// use url::Url;
    ///
    /// let page = Url::parse("https://app.example.com/").unwrap();
    /// let mut manager = Manager::new(parse_declaration("{}", &page)?, &page);
    /// manager.did_launch();
    /// let id = Identifier::new("core")?;
    /// let d = UrlDownload::new(id.clone(), DownloadRequest::get("https://app.example.com/core")?,
    ///     true, Some(10), Priority::DEFAULT, 0)?;
    /// manager.schedule(d, Caller::Extension { event: Some(ExtensionEvent::Update) }, 0)?;
    /// manager.poll_start(0);
    /// manager.on_failed(&id, Error::HttpStatus { identifier: "core".into(), status: 404 }, 1)?;
    /// let info = manager.download(&id).unwrap();
    /// assert_eq!((info.state, info.essential, info.requeued_from_essential),
    ///            (DownloadState::Waiting, false, true));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn on_failed(&mut self, id: &Identifier, error: Error, now: Millis) -> Result<()> {
        self.touch(id);
        let record = self.record(id)?;
        if !record.state.can_transition(DownloadState::Failed) {
            return Err(invalid_transition(id, record.state, DownloadState::Failed));
        }
        self.end_failed(id, error)?;
        let record = self.record_mut(id)?;
        record.failed_at = Some(now);
        if !record.download.essential || record.requeued {
            return Ok(());
        }
        let mut download = record.download.clone();
        download.essential = false;
        let foreground = record.foreground;
        if self.policy.admit(&download).is_err() {
            return Ok(());
        }
        if self
            .queue
            .push(QueueEntry::for_download(&download, foreground))
            .is_err()
        {
            self.policy.release(id);
            return Ok(());
        }
        let record = self.record_mut(id)?;
        record.state.reschedule(id)?;
        record.download = download;
        record.requeued = true;
        self.emit(ManagerEvent::EssentialRequeued { id: id.clone() });
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // Events and routing
    // -----------------------------------------------------------------------------------------

    /// The next event to deliver, oldest first.
    pub fn poll_event(&mut self) -> Option<RoutedEvent> {
        self.events.pop_front()
    }

    /// How many pages currently have a delegate set (the web layer counts them with a shared
    /// Web Lock per page). Apple's routing: while any page has one, events go to pages;
    /// otherwise to the extension.
    ///
    /// # Example
    /// ```
    /// use background_assets::core::declaration::parse_declaration;
    /// use background_assets::core::manager::*;
    /// use url::Url;
    ///
    /// let page = Url::parse("https://app.example.com/").unwrap();
    /// let mut manager = Manager::new(parse_declaration("{}", &page).unwrap(), &page);
    /// assert_eq!(manager.route(), Route::Extension);
    /// manager.set_page_delegates(2);
    /// assert_eq!(manager.route(), Route::Pages);
    /// ```
    pub fn set_page_delegates(&mut self, count: usize) {
        self.page_delegates = count;
    }

    /// Where an event happening now goes.
    pub fn route(&self) -> Route {
        if self.page_delegates > 0 {
            Route::Pages
        } else {
            Route::Extension
        }
    }

    // -----------------------------------------------------------------------------------------
    // First launch
    // -----------------------------------------------------------------------------------------

    /// The app launched for the first time: the allowances stop applying (the domain allow-list
    /// still does). Returns whether this call lifted them (later calls change nothing).
    ///
    /// # Example
    /// ```
    /// use background_assets::core::declaration::parse_declaration;
    /// use background_assets::core::manager::Manager;
    /// use url::Url;
    ///
    /// let page = Url::parse("https://app.example.com/").unwrap();
    /// let declaration = parse_declaration(
    ///     r#"{ "initialDownloadRestrictions": { "downloadAllowance": 10 } }"#, &page).unwrap();
    /// let mut manager = Manager::new(declaration, &page);
    /// assert_eq!(manager.remaining_allowance().unwrap().total, 10);
    /// assert!(manager.did_launch());
    /// assert!(!manager.did_launch()); // idempotent
    /// assert_eq!(manager.remaining_allowance(), None);
    /// ```
    pub fn did_launch(&mut self) -> bool {
        self.touch_all();
        if self.policy.launched() {
            return false;
        }
        self.policy.lift();
        true
    }

    /// Bytes still admissible before first launch (didInstall's info); `None` after it.
    pub fn remaining_allowance(&self) -> Option<RemainingAllowance> {
        self.policy.remaining()
    }

    // -----------------------------------------------------------------------------------------
    // Asset packs
    // -----------------------------------------------------------------------------------------

    fn declared_pack(&self, pack_id: &str) -> Result<&AssetPack> {
        self.declaration
            .pack(pack_id)
            .ok_or_else(|| Error::AssetPackDoesNotExist {
                id: pack_id.to_string(),
            })
    }

    /// The declared file a known pack download fetches (the driver verifies against its size
    /// and digest), if `id` is a file of a declared pack's declared version.
    pub fn pack_file(&self, id: &Identifier) -> Option<&PackFile> {
        let member = self.records.get(id)?.download.pack.as_ref()?;
        let pack = self.declaration.pack(&member.pack_id)?;
        let file = pack.file(&member.path)?;
        (pack_file_identifier(&pack.id, &pack.version, &file.path) == *id).then_some(file)
    }

    /// A pack's status (see [`PackStatus`] for the rules); [`Error::AssetPackDoesNotExist`] for
    /// a pack neither declared nor stored.
    pub fn pack_status(&self, pack_id: &str) -> Result<PackStatus> {
        let key = Identifier::new(pack_id).ok();
        let store = key.as_ref().and_then(|k| self.packs.get(k));
        let Some(pack) = self.declaration.pack(pack_id) else {
            return match store {
                Some(s) if s.complete.is_some() || s.pending.is_some() => Ok(PackStatus::Obsolete),
                _ => Err(Error::AssetPackDoesNotExist {
                    id: pack_id.to_string(),
                }),
            };
        };
        let complete = store.and_then(|s| s.complete.as_ref());
        if pack.files.is_empty() || complete.is_some_and(|v| v.version == pack.version) {
            return Ok(PackStatus::Downloaded);
        }
        let pending = store
            .and_then(|s| s.pending.as_ref())
            .filter(|v| v.version == pack.version);
        let ids = || pending.into_iter().flat_map(|v| v.files.values());
        if ids().any(|id| self.is_scheduled(id)) {
            return Ok(PackStatus::Downloading);
        }
        let failed = ids().any(|id| {
            self.records
                .get(id)
                .is_some_and(|r| r.state == DownloadState::Failed)
        });
        Ok(match (complete.is_some(), failed) {
            (false, _) => PackStatus::DownloadAvailable,
            (true, true) => PackStatus::Outdated,
            (true, false) => PackStatus::UpdateAvailable,
        })
    }

    /// The downloads of `pack`'s declared version that are neither stored nor scheduled, and
    /// starts tracking that version.
    fn missing_downloads(
        &mut self,
        pack_id: &Identifier,
        essential: bool,
        now: Millis,
    ) -> Result<Vec<UrlDownload>> {
        let pack = self.declared_pack(pack_id)?.clone();
        self.touched.packs.insert(pack.id.clone());
        let store = self.packs.entry(pack.id.clone()).or_default();
        if store
            .complete
            .as_ref()
            .is_some_and(|v| v.version == pack.version)
        {
            return Ok(Vec::new());
        }
        if !store
            .pending
            .as_ref()
            .is_some_and(|v| v.version == pack.version)
        {
            store.pending = Some(PackVersion::of(&pack));
        }
        let pending = store
            .pending
            .clone()
            .unwrap_or_else(|| PackVersion::of(&pack));
        let mut downloads = Vec::new();
        for file in &pack.files {
            let id = pack_file_identifier(&pack.id, &pack.version, &file.path);
            if pending.stored.contains(&file.path) || self.is_scheduled(&id) {
                continue;
            }
            let request = DownloadRequest::from_url(file.url.clone())?;
            downloads.push(
                UrlDownload::new(
                    id,
                    request,
                    essential,
                    Some(file.size),
                    Priority::DEFAULT,
                    now,
                )?
                .with_pack(pack.id.clone(), file.path.clone()),
            );
        }
        Ok(downloads)
    }

    /// The downloads the extension schedules on an installation event: every file of the
    /// essential and prefetch packs that list `event`, not yet stored nor scheduled. Essential
    /// packs give essential downloads (exact size from the declaration). Identifiers come from
    /// [`pack_file_identifier`]; `now` is their creation time.
    ///
    /// # Example
    /// ```
    /// use background_assets::core::declaration::{parse_declaration, InstallationEvent};
    /// use background_assets::core::manager::*;
    /// use url::Url;
    ///
    /// let page = Url::parse("https://app.example.com/").unwrap();
    /// let declaration = parse_declaration(r#"{ "assetPacks": [
    ///   { "id": "intro", "version": "1", "downloadPolicy": "essential", "files": [
    ///     { "path": "video/intro.mp4", "url": "intro.mp4", "size": 3,
    ///       "sha256": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" } ] } ] }"#,
    ///   &page)?;
    /// let mut manager = Manager::new(declaration, &page);
    /// let downloads = manager.downloads_for(InstallationEvent::FirstInstallation, 0)?;
    /// assert_eq!(downloads[0].identifier.as_str(), "intro.1.video_2fintro_2emp4");
    /// assert!(downloads[0].essential);
    /// # Ok::<(), background_assets::core::error::Error>(())
    /// ```
    pub fn downloads_for(
        &mut self,
        event: InstallationEvent,
        now: Millis,
    ) -> Result<Vec<UrlDownload>> {
        let packs: Vec<(Identifier, bool)> = self
            .declaration
            .asset_packs
            .iter()
            .filter(|p| p.downloads_on(event))
            .map(|p| (p.id.clone(), p.download_policy == DownloadPolicy::Essential))
            .collect();
        let mut downloads = Vec::new();
        for (pack_id, essential) in packs {
            downloads.extend(self.missing_downloads(&pack_id, essential, now)?);
        }
        Ok(downloads)
    }

    /// Apple's `ensureLocalAvailability`: the (non-essential) downloads still needed for the
    /// declared version of `pack_id` to be stored — any download policy, `onDemand` included.
    /// Empty when it is stored. [`Error::AssetPackDoesNotExist`] if it is not declared.
    ///
    /// # Example
    /// ```
    /// use background_assets::core::declaration::parse_declaration;
    /// use background_assets::core::manager::*;
    /// use url::Url;
    ///
    /// let page = Url::parse("https://app.example.com/").unwrap();
    /// let declaration = parse_declaration(r#"{ "assetPacks": [
    ///   { "id": "maps", "version": "1", "downloadPolicy": "onDemand", "files": [
    ///     { "path": "eu.map", "url": "eu.map", "size": 3,
    ///       "sha256": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" } ] } ] }"#,
    ///   &page)?;
    /// let mut manager = Manager::new(declaration, &page);
    /// manager.did_launch();
    /// assert_eq!(manager.pack_status("maps")?, PackStatus::DownloadAvailable);
    /// for download in manager.ensure_local_availability("maps", 0)? {
    ///     manager.schedule(download, Caller::Page, 0)?;
    /// }
    /// assert_eq!(manager.pack_status("maps")?, PackStatus::Downloading);
    /// let id = manager.poll_start(1).remove(0);
    /// let file = manager.pack_file(&id).unwrap().clone();
    /// manager.on_finished(&id, file.size, file.sha256)?;
    /// assert_eq!(manager.pack_status("maps")?, PackStatus::Downloaded);
    /// assert_eq!(manager.file_for_path("eu.map"), Some(("maps".parse()?, id.clone())));
    /// assert_eq!(manager.remove_pack("maps")?, vec![id]);
    /// assert_eq!(manager.pack_status("maps")?, PackStatus::DownloadAvailable);
    /// # Ok::<(), background_assets::core::error::Error>(())
    /// ```
    pub fn ensure_local_availability(
        &mut self,
        pack_id: &str,
        now: Millis,
    ) -> Result<Vec<UrlDownload>> {
        let id = self.declared_pack(pack_id)?.id.clone();
        self.missing_downloads(&id, false, now)
    }

    /// Replaces the declaration by an updated one (e.g. [`Declaration::with_manifest`]) and says
    /// which packs changed. A pack whose version changed keeps its stored version readable (see
    /// [`file_for_path`](Self::file_for_path)) until the new one is complete; scheduled
    /// downloads of a superseded or removed version are cancelled.
    ///
    /// # Example
    /// ```
    /// use background_assets::core::declaration::parse_declaration;
    /// use background_assets::core::manager::*;
    /// use url::Url;
    ///
    /// let page = Url::parse("https://app.example.com/").unwrap();
    /// let pack = |id: &str, v: &str| format!(r#"{{ "id": "{id}", "version": "{v}", "downloadPolicy": "onDemand", "files": [] }}"#);
    /// let old = parse_declaration(&format!(r#"{{ "assetPacks": [{}, {}] }}"#, pack("a", "1"), pack("b", "1")), &page)?;
    /// let new = parse_declaration(&format!(r#"{{ "assetPacks": [{}, {}] }}"#, pack("a", "2"), pack("c", "1")), &page)?;
    /// let mut manager = Manager::new(old, &page);
    /// let update = manager.apply_manifest(new);
    /// assert_eq!((update.updated[0].as_str(), update.removed[0].as_str(), update.added[0].as_str()), ("a", "b", "c"));
    /// # Ok::<(), background_assets::core::error::Error>(())
    /// ```
    pub fn apply_manifest(&mut self, declaration: Declaration) -> PackUpdate {
        self.touch_all();
        let mut update = PackUpdate::default();
        for old in &self.declaration.asset_packs {
            match declaration.pack(&old.id) {
                None => update.removed.push(old.id.clone()),
                Some(new) if new.version != old.version => update.updated.push(old.id.clone()),
                Some(_) => {}
            }
        }
        for new in &declaration.asset_packs {
            if self.declaration.pack(&new.id).is_none() {
                update.added.push(new.id.clone());
            }
        }
        self.declaration = declaration;
        let superseded: Vec<Identifier> = self
            .packs
            .iter()
            .filter_map(|(pack_id, store)| {
                let pending = store.pending.as_ref()?;
                let still_declared = self
                    .declaration
                    .pack(pack_id)
                    .is_some_and(|p| p.version == pending.version);
                (!still_declared).then(|| pack_id.clone())
            })
            .collect();
        for pack_id in superseded {
            let pending = self.packs.get_mut(&pack_id).and_then(|s| s.pending.take());
            for id in pending.iter().flat_map(|v| v.files.values()) {
                if self.is_scheduled(id) && self.cancel(id).is_ok() {
                    update.cancelled.push(id.clone());
                }
            }
        }
        update
    }

    /// Forgets a pack's stored files and cancels its scheduled downloads. Returns every
    /// identifier whose stored bytes the driver deletes (both versions, complete or partial).
    /// [`Error::AssetPackDoesNotExist`] if the pack is neither declared nor stored. A pack that
    /// is still declared is `downloadAvailable` afterwards.
    pub fn remove_pack(&mut self, pack_id: &str) -> Result<Vec<Identifier>> {
        self.touch_all();
        let key = Identifier::new(pack_id).ok();
        let store = key.as_ref().and_then(|k| self.packs.remove(k));
        if store.is_none() && self.declaration.pack(pack_id).is_none() {
            return Err(Error::AssetPackDoesNotExist {
                id: pack_id.to_string(),
            });
        }
        let mut removed = BTreeSet::new();
        for version in store
            .iter()
            .flat_map(|s| s.complete.iter().chain(&s.pending))
        {
            removed.extend(version.files.values().cloned());
        }
        for id in &removed {
            if self.is_scheduled(id) {
                self.cancel(id)?;
            }
        }
        Ok(removed.into_iter().collect())
    }

    /// Which stored file answers `path`: the first pack (declared packs in declaration order,
    /// then obsolete ones) whose readable (complete) version has that path. Returns the pack id
    /// and the file's storage identifier.
    ///
    /// # Example
    /// ```
    /// use background_assets::core::declaration::parse_declaration;
    /// use background_assets::core::manager::*;
    /// use url::Url;
    ///
    /// let page = Url::parse("https://app.example.com/").unwrap();
    /// let manager = Manager::new(parse_declaration("{}", &page)?, &page);
    /// assert_eq!(manager.file_for_path("levels/1.bin"), None); // nothing stored
    /// # Ok::<(), background_assets::core::error::Error>(())
    /// ```
    pub fn file_for_path(&self, path: &str) -> Option<(Identifier, Identifier)> {
        let declared = self.declaration.asset_packs.iter().map(|p| &p.id);
        let obsolete = self
            .packs
            .keys()
            .filter(|id| self.declaration.pack(id).is_none());
        declared.chain(obsolete).find_map(|pack_id| {
            let version = self.packs.get(pack_id)?.complete.as_ref()?;
            let id = version.files.get(path)?;
            Some((pack_id.clone(), id.clone()))
        })
    }

    /// Every pack, declared ones in declaration order, then obsolete (stored, no longer
    /// declared) ones, each with its status and files.
    ///
    /// # Example
    /// ```
    /// use background_assets::core::declaration::parse_declaration;
    /// use background_assets::core::manager::*;
    /// use url::Url;
    ///
    /// let page = Url::parse("https://app.example.com/").unwrap();
    /// let declaration = parse_declaration(r#"{ "assetPacks": [
    ///   { "id": "maps", "version": "1", "downloadPolicy": "onDemand", "files": [
    ///     { "path": "eu.map", "url": "eu.map", "size": 3,
    ///       "sha256": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" } ] } ] }"#,
    ///   &page)?;
    /// let manager = Manager::new(declaration, &page);
    /// let packs = manager.packs();
    /// assert_eq!((packs[0].id.as_str(), packs[0].size, packs[0].status), ("maps", 3, PackStatus::DownloadAvailable));
    /// assert_eq!(packs[0].files[0].url.as_deref(), Some("https://app.example.com/eu.map"));
    /// assert!(!packs[0].files[0].stored);
    /// # Ok::<(), background_assets::core::error::Error>(())
    /// ```
    pub fn packs(&self) -> Vec<PackInfo> {
        let mut out = Vec::new();
        for pack in &self.declaration.asset_packs {
            let store = self.packs.get(&pack.id);
            let stored_version = store
                .and_then(|s| s.complete.as_ref())
                .map(|v| v.version.clone());
            // Paths of the declared version that are stored and verified.
            let stored: BTreeSet<String> = match store {
                Some(s)
                    if s.complete
                        .as_ref()
                        .is_some_and(|v| v.version == pack.version) =>
                {
                    sorted(pack.files.iter().map(|f| f.path.clone()))
                }
                Some(s) => s
                    .pending
                    .as_ref()
                    .filter(|v| v.version == pack.version)
                    .map(|v| v.stored.clone())
                    .unwrap_or_default(),
                None => BTreeSet::new(),
            };
            out.push(PackInfo {
                id: pack.id.clone(),
                version: pack.version.clone(),
                stored_version,
                policy: Some(pack.download_policy),
                size: pack.size(),
                status: self
                    .pack_status(pack.id.as_str())
                    .unwrap_or(PackStatus::DownloadAvailable),
                files: pack
                    .files
                    .iter()
                    .map(|f| PackFileInfo {
                        path: f.path.clone(),
                        identifier: pack_file_identifier(&pack.id, &pack.version, &f.path),
                        url: Some(f.url.to_string()),
                        size: f.size,
                        sha256: Some(hex(&f.sha256)),
                        stored: stored.contains(&f.path),
                    })
                    .collect(),
            });
        }
        for (pack_id, store) in &self.packs {
            if self.declaration.pack(pack_id.as_str()).is_some() {
                continue;
            }
            let Ok(status) = self.pack_status(pack_id.as_str()) else {
                continue;
            };
            let Some(version) = store.complete.as_ref().or(store.pending.as_ref()) else {
                continue;
            };
            let files: Vec<PackFileInfo> = version
                .files
                .iter()
                .map(|(path, identifier)| PackFileInfo {
                    path: path.clone(),
                    identifier: identifier.clone(),
                    url: None,
                    size: self.records.get(identifier).map_or(0, |r| r.written),
                    sha256: None,
                    stored: version.stored.contains(path),
                })
                .collect();
            out.push(PackInfo {
                id: pack_id.clone(),
                version: version.version.clone(),
                stored_version: store.complete.as_ref().map(|v| v.version.clone()),
                policy: None,
                size: files.iter().map(|f| f.size).sum(),
                status,
                files,
            });
        }
        out
    }

    /// Why a known download last failed, while it stays failed (`None` once it is scheduled
    /// again or finished).
    pub fn failure(&self, id: &Identifier) -> Option<&Error> {
        let record = self.records.get(id)?;
        (record.state == DownloadState::Failed)
            .then_some(record.error.as_ref())
            .flatten()
    }

    /// Why fetching the declared version of `pack_id` failed: the error of a failed file of
    /// that version (while nothing of it is scheduled), if any.
    pub fn pack_failure(&self, pack_id: &str) -> Option<Error> {
        let pack = self.declaration.pack(pack_id)?;
        let pending = self
            .packs
            .get(&pack.id)?
            .pending
            .as_ref()
            .filter(|v| v.version == pack.version)?;
        if pending.files.values().any(|id| self.is_scheduled(id)) {
            return None;
        }
        pending.files.values().find_map(|id| {
            let record = self.records.get(id)?;
            (record.state == DownloadState::Failed).then(|| {
                record.error.clone().unwrap_or_else(|| Error::Cancelled {
                    identifier: id.to_string(),
                })
            })
        })
    }

    /// Whether a download that is essential, or was before it failed and was re-queued as a
    /// non-essential one, is still waiting, running or paused: the launch gate waits for none
    /// to be.
    ///
    /// # Example
    /// ```
    /// use background_assets::core::declaration::parse_declaration;
    /// use background_assets::core::download::*;
    /// use background_assets::core::manager::*;
    /// use url::Url;
    ///
    /// let page = Url::parse("https://app.example.com/").unwrap();
    /// let mut manager = Manager::new(parse_declaration("{}", &page)?, &page);
    /// manager.did_launch();
    /// assert!(!manager.essential_pending());
    /// let core = UrlDownload::new(Identifier::new("core")?,
    ///     DownloadRequest::get("https://app.example.com/core")?, true, Some(3), Priority::DEFAULT, 0)?;
    /// manager.schedule(core, Caller::Extension { event: Some(ExtensionEvent::Install) }, 0)?;
    /// assert!(manager.essential_pending());
    /// let id = manager.poll_start(0).remove(0);
    /// manager.on_finished(&id, 3, [0; 32])?;
    /// assert!(!manager.essential_pending());
    /// # Ok::<(), background_assets::core::error::Error>(())
    /// ```
    pub fn essential_pending(&self) -> bool {
        self.records
            .values()
            .any(|r| r.state.is_scheduled() && (r.download.essential || r.requeued))
    }

    /// Schedules, as one decision, every file of `pack_id`'s declared version that is neither
    /// stored nor scheduled (non-essential downloads; Apple's `ensureLocalAvailability`), and
    /// returns their identifiers. When any of them is refused, nothing changes and that error
    /// is returned. [`Error::AssetPackDoesNotExist`] if the pack is not declared.
    ///
    /// # Example
    /// ```
    /// use background_assets::core::declaration::parse_declaration;
    /// use background_assets::core::manager::*;
    /// use url::Url;
    ///
    /// let page = Url::parse("https://app.example.com/").unwrap();
    /// let declaration = parse_declaration(r#"{ "assetPacks": [
    ///   { "id": "maps", "version": "1", "downloadPolicy": "onDemand", "files": [
    ///     { "path": "eu.map", "url": "eu.map", "size": 3,
    ///       "sha256": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" } ] } ] }"#,
    ///   &page)?;
    /// let mut manager = Manager::new(declaration, &page);
    /// manager.did_launch();
    /// assert_eq!(manager.schedule_pack("maps", Caller::Page, 0)?.len(), 1);
    /// assert!(manager.schedule_pack("maps", Caller::Page, 0)?.is_empty()); // already scheduled
    /// assert_eq!(manager.pack_status("maps")?, PackStatus::Downloading);
    /// # Ok::<(), background_assets::core::error::Error>(())
    /// ```
    pub fn schedule_pack(
        &mut self,
        pack_id: &str,
        caller: Caller,
        now: Millis,
    ) -> Result<Vec<Identifier>> {
        let mut trial = self.clone();
        let downloads = trial.ensure_local_availability(pack_id, now)?;
        let ids = downloads.iter().map(|d| d.identifier.clone()).collect();
        for download in downloads {
            trial.schedule(download, caller, now)?;
        }
        *self = trial;
        Ok(ids)
    }

    /// The downloads that bring stored packs up to date: every missing file of the declared
    /// version of each pack whose stored (readable) version is an older one (`updateAvailable`
    /// or `outdated`), as non-essential downloads. Apple starts these after `checkForUpdates`.
    pub fn update_downloads(&mut self, now: Millis) -> Result<Vec<UrlDownload>> {
        self.touch_all();
        let stale: Vec<Identifier> = self
            .declaration
            .asset_packs
            .iter()
            .filter(|p| {
                self.packs
                    .get(&p.id)
                    .and_then(|s| s.complete.as_ref())
                    .is_some_and(|v| v.version != p.version)
            })
            .map(|p| p.id.clone())
            .collect();
        let mut downloads = Vec::new();
        for pack_id in stale {
            downloads.extend(self.missing_downloads(&pack_id, false, now)?);
        }
        Ok(downloads)
    }

    /// The scheduled (waiting, running or paused) downloads of `pack_id`'s files, any version.
    pub fn scheduled_pack_files(&self, pack_id: &str) -> Vec<Identifier> {
        let Some(store) = Identifier::new(pack_id)
            .ok()
            .and_then(|k| self.packs.get(&k))
        else {
            return Vec::new();
        };
        store
            .complete
            .iter()
            .chain(&store.pending)
            .flat_map(|v| v.files.values())
            .filter(|id| self.is_scheduled(id))
            .cloned()
            .collect()
    }

    /// The scheduled downloads that [`apply_manifest`](Self::apply_manifest) with
    /// `declaration` would cancel (files of a pending version it no longer declares): a driver
    /// stops their transfers first.
    pub fn superseded_by(&self, declaration: &Declaration) -> Vec<Identifier> {
        self.packs
            .iter()
            .filter_map(|(pack_id, store)| {
                let pending = store.pending.as_ref()?;
                let kept = declaration
                    .pack(pack_id.as_str())
                    .is_some_and(|p| p.version == pending.version);
                (!kept).then_some(pending)
            })
            .flat_map(|v| v.files.values())
            .filter(|id| self.is_scheduled(id))
            .cloned()
            .collect()
    }

    /// Records a finished pack file; when its version is complete it replaces the stored one.
    /// Returns the identifiers of the replaced version's files.
    fn pack_file_stored(&mut self, id: &Identifier) -> Vec<Identifier> {
        let Some(member) = self.records.get(id).and_then(|r| r.download.pack.clone()) else {
            return Vec::new();
        };
        let Some(store) = self.packs.get_mut(&member.pack_id) else {
            return Vec::new();
        };
        let Some(pending) = store.pending.as_mut() else {
            return Vec::new();
        };
        if pending.files.get(&member.path) != Some(id) {
            return Vec::new();
        }
        let part = PackFilePart {
            pack: member.pack_id.clone(),
            version: pending.version.clone(),
            path: member.path.clone(),
        };
        pending.stored.insert(member.path);
        if !pending.is_complete() {
            self.touched.pack_files.insert(id.clone(), part);
            return Vec::new();
        }
        // The version is complete and replaces the stored one: the pack changes whole.
        self.touched.packs.insert(member.pack_id.clone());
        let new = store.pending.take();
        let old = std::mem::replace(&mut store.complete, new);
        let kept: BTreeSet<&Identifier> =
            sorted(store.complete.iter().flat_map(|v| v.files.values()));
        old.into_iter()
            .flat_map(|v| v.files.into_values())
            .filter(|f| !kept.contains(f))
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Storage by parts
// ---------------------------------------------------------------------------------------------

/// The key of the manager's own fields among the stored parts ([`Manager::changed_parts`]).
pub const HEAD_PART: &str = "head";

/// The key of the declaration among the stored parts.
pub const DECLARATION_PART: &str = "declaration";

/// The key prefix of each download's part (`download/<identifier>`).
pub const DOWNLOAD_PART_PREFIX: &str = "download/";

/// The key prefix of each asset pack's part (`pack/<pack id>`): its versions and their files,
/// without which files are stored (those are parts of their own, [`PACK_FILE_PART_PREFIX`]).
pub const PACK_PART_PREFIX: &str = "pack/";

/// The key prefix of each stored pack file's part (`packfile/<file identifier>`): a file that
/// finishes adds one small part instead of rewriting its pack's part, whose size grows with the
/// pack's files.
pub const PACK_FILE_PART_PREFIX: &str = "packfile/";

/// A stored pack file's part: the pack, the version and the path it is stored for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct PackFilePart {
    pack: Identifier,
    version: String,
    path: String,
}

impl PackFilePart {
    /// Whether `packs` still has this file stored.
    fn is_stored_in(&self, packs: &BTreeMap<Identifier, PackStore>) -> bool {
        packs.get(&self.pack).is_some_and(|store| {
            store.versions().any(|v| {
                v.version == self.version
                    && v.stored.contains(&self.path)
                    && v.files.contains_key(&self.path)
            })
        })
    }
}

impl PackStore {
    fn versions(&self) -> impl Iterator<Item = &PackVersion> {
        self.complete.iter().chain(self.pending.iter())
    }

    /// The pack's part: its versions and files, without the stored-file sets.
    fn view(&self) -> PackStore {
        let strip = |v: &PackVersion| PackVersion {
            version: v.version.clone(),
            files: v.files.clone(),
            stored: BTreeSet::new(),
        };
        PackStore {
            complete: self.complete.as_ref().map(strip),
            pending: self.pending.as_ref().map(strip),
        }
    }

    /// Whether `stored` (a pack part as stored) is this pack's [`PackStore::view`].
    fn has_view(&self, stored: &PackStore) -> bool {
        let same = |a: &Option<PackVersion>, b: &Option<PackVersion>| match (a, b) {
            (None, None) => true,
            (Some(a), Some(b)) => {
                a.version == b.version && a.files == b.files && b.stored.is_empty()
            }
            _ => false,
        };
        same(&self.complete, &stored.complete) && same(&self.pending, &stored.pending)
    }
}

/// The manager's own fields, stored apart from the declaration and the per-download and
/// per-pack parts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Head {
    policy: PolicyHead,
    queue: QueueHead,
    page_delegates: usize,
}

/// One download's part: its record, its queue slot and its admission (each may be absent).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DownloadPart {
    #[serde(default)]
    record: Option<Record>,
    #[serde(default)]
    slot: Option<Slot>,
    #[serde(default)]
    admitted: Option<Admitted>,
}

/// What a driver last stored (or read) of a manager's state, part by part: what
/// [`Manager::changed_parts`] compares the state with, so that a decision stores only what it
/// changed. [`StoredParts::default`] is "nothing stored": every part is then a change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredParts {
    /// Whether every download was compared with the state at least once (or read from storage):
    /// then only the touched ones need comparing.
    compared: bool,
    head: Option<Head>,
    declaration: Option<Declaration>,
    downloads: BTreeMap<Identifier, DownloadPart>,
    /// The pack parts as stored (their views; an old part may still hold stored-file sets).
    packs: BTreeMap<Identifier, PackStore>,
    /// The stored pack files' parts, by file identifier.
    pack_files: BTreeMap<Identifier, PackFilePart>,
}

/// The parts to write (key, JSON text) and to delete (key) so that the stored parts match the
/// state ([`Manager::changed_parts`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartChanges {
    /// Parts to store, by key.
    pub put: Vec<(String, String)>,
    /// Keys of parts to delete.
    pub delete: Vec<String>,
}

impl PartChanges {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.put.is_empty() && self.delete.is_empty()
    }
}

fn part_error(what: &str, error: impl std::fmt::Display) -> Error {
    Error::Storage {
        message: format!("stored manager state, part `{what}`: {error}"),
    }
}

/// Part `what` as JSON text.
fn part_json(what: &str, value: &impl Serialize) -> Result<String> {
    serde_json::to_string(value).map_err(|e| part_error(what, e))
}

/// Stores the part of the pack file `file` (newly stored) into `changes` and `stored`.
fn put_pack_file(
    file: Identifier,
    part: PackFilePart,
    stored: &mut StoredParts,
    changes: &mut PartChanges,
) -> Result<()> {
    let key = format!("{PACK_FILE_PART_PREFIX}{file}");
    changes.put.push((key.clone(), part_json(&key, &part)?));
    stored.pack_files.insert(file, part);
    Ok(())
}

impl Manager {
    /// The parts of the state that differ from `stored` — the manager's own fields, the
    /// declaration, one part per download (its record, queue slot and admission) and one per
    /// asset pack — as JSON texts to store under their keys, and the keys of parts that are
    /// gone; `stored` is updated to match. A decision that touches one download changes a few
    /// small parts, whatever the number of downloads; [`Manager::from_parts`] reads them back.
    /// Pending events are not part of the state.
    ///
    /// # Example
    /// ```
    /// use background_assets::core::declaration::parse_declaration;
    /// use background_assets::core::download::{DownloadRequest, Identifier, Priority, UrlDownload};
    /// use background_assets::core::manager::{Caller, Manager, StoredParts};
    /// let page = url::Url::parse("https://app.example.com/").unwrap();
    /// let mut manager = Manager::new(parse_declaration("{}", &page).unwrap(), &page);
    /// manager.did_launch();
    /// let mut stored = StoredParts::default();
    /// let first = manager.changed_parts(&mut stored).unwrap();
    /// assert_eq!(first.put.len(), 2); // the head and the declaration
    /// let d = UrlDownload::new(Identifier::new("a").unwrap(),
    ///     DownloadRequest::get("https://app.example.com/a").unwrap(), false, None, Priority::DEFAULT, 0).unwrap();
    /// manager.schedule(d, Caller::Page, 0).unwrap();
    /// let next = manager.changed_parts(&mut stored).unwrap();
    /// assert!(next.put.iter().any(|(key, _)| key == "download/a"));
    /// let (restored, _) = Manager::from_parts(first.put.into_iter().chain(next.put)).unwrap();
    /// assert_eq!(restored.download(&Identifier::new("a").unwrap()), manager.download(&Identifier::new("a").unwrap()));
    /// ```
    pub fn changed_parts(&mut self, stored: &mut StoredParts) -> Result<PartChanges> {
        let mut changes = PartChanges::default();
        let head = Head {
            policy: self.policy.head(),
            queue: self.queue.head(),
            page_delegates: self.page_delegates,
        };
        if stored.head.as_ref() != Some(&head) {
            changes
                .put
                .push((HEAD_PART.to_string(), part_json(HEAD_PART, &head)?));
            stored.head = Some(head);
        }
        let touched = std::mem::take(&mut self.touched);
        // Only what was touched since the last comparison, unless nothing was compared yet (or
        // a bulk change touched everything): then every part, and what is gone.
        let full = !stored.compared || touched.all;
        // Only bulk changes (a new manifest) change the declaration.
        if full && stored.declaration.as_ref() != Some(&self.declaration) {
            let value = self.declaration.to_json();
            changes.put.push((
                DECLARATION_PART.to_string(),
                part_json(DECLARATION_PART, &value)?,
            ));
            stored.declaration = Some(self.declaration.clone());
        }
        let slots = self.queue.slots();
        let admitted = self.policy.admitted();
        let ids: BTreeSet<Identifier> = if full {
            let mut all: BTreeSet<Identifier> = sorted(self.records.keys().cloned());
            all.extend(slots.keys().cloned());
            all.extend(admitted.keys().cloned());
            all.extend(stored.downloads.keys().cloned());
            all
        } else {
            touched.ids
        };
        for id in &ids {
            let (record, slot, admission) = (self.records.get(id), slots.get(id), admitted.get(id));
            let key = format!("{DOWNLOAD_PART_PREFIX}{id}");
            if record.is_none() && slot.is_none() && admission.is_none() {
                if stored.downloads.remove(id).is_some() {
                    changes.delete.push(key);
                }
                continue;
            }
            let same = stored.downloads.get(id).is_some_and(|part| {
                part.record.as_ref() == record
                    && part.slot.as_ref() == slot
                    && part.admitted.as_ref() == admission
            });
            if !same {
                let part = DownloadPart {
                    record: record.cloned(),
                    slot: slot.cloned(),
                    admitted: admission.cloned(),
                };
                changes.put.push((key.clone(), part_json(&key, &part)?));
                stored.downloads.insert(id.clone(), part);
            }
        }
        stored.compared = true;
        if full {
            let all: BTreeSet<Identifier> =
                sorted(self.packs.keys().chain(stored.packs.keys()).cloned());
            self.pack_changes(&all, stored, &mut changes)?;
        } else {
            self.pack_changes(&touched.packs, stored, &mut changes)?;
            for (file, part) in touched.pack_files {
                if touched.packs.contains(&part.pack)
                    || stored.pack_files.contains_key(&file)
                    || !part.is_stored_in(&self.packs)
                {
                    continue;
                }
                put_pack_file(file, part, stored, &mut changes)?;
            }
        }
        Ok(changes)
    }

    /// The parts of the packs `ids` that differ from `stored` (each pack compared whole: its
    /// part, and its files' parts), into `changes`; `stored` is updated to match.
    fn pack_changes(
        &self,
        ids: &BTreeSet<Identifier>,
        stored: &mut StoredParts,
        changes: &mut PartChanges,
    ) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        for id in ids {
            let key = format!("{PACK_PART_PREFIX}{id}");
            let Some(pack) = self.packs.get(id) else {
                if stored.packs.remove(id).is_some() {
                    changes.delete.push(key);
                }
                continue;
            };
            if !stored.packs.get(id).is_some_and(|part| pack.has_view(part)) {
                let view = pack.view();
                changes.put.push((key.clone(), part_json(&key, &view)?));
                stored.packs.insert(id.clone(), view);
            }
            for version in pack.versions() {
                for path in &version.stored {
                    let Some(file) = version.files.get(path) else {
                        continue;
                    };
                    if stored.pack_files.contains_key(file) {
                        continue;
                    }
                    let part = PackFilePart {
                        pack: id.clone(),
                        version: version.version.clone(),
                        path: path.clone(),
                    };
                    put_pack_file(file.clone(), part, stored, changes)?;
                }
            }
        }
        let packs = &self.packs;
        stored.pack_files.retain(|file, part| {
            let kept = !ids.contains(&part.pack) || part.is_stored_in(packs);
            if !kept {
                changes
                    .delete
                    .push(format!("{PACK_FILE_PART_PREFIX}{file}"));
            }
            kept
        });
        Ok(())
    }

    /// The manager stored as `parts` (key, JSON text), as [`Manager::changed_parts`] wrote them,
    /// and what is stored (for the next [`Manager::changed_parts`]). A missing head or
    /// declaration, an unknown key or an unreadable part is [`Error::Storage`] naming the part.
    ///
    /// # Example
    /// ```
    /// use background_assets::core::manager::Manager;
    /// let missing = Manager::from_parts(Vec::new()).unwrap_err();
    /// assert!(missing.to_string().contains("head"), "{missing}");
    /// ```
    pub fn from_parts(
        parts: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(Manager, StoredParts)> {
        let mut stored = StoredParts {
            compared: true,
            ..StoredParts::default()
        };
        for (key, text) in parts {
            if key == HEAD_PART {
                stored.head = Some(serde_json::from_str(&text).map_err(|e| part_error(&key, e))?);
            } else if key == DECLARATION_PART {
                let value: serde_json::Value =
                    serde_json::from_str(&text).map_err(|e| part_error(&key, e))?;
                stored.declaration =
                    Some(declaration_json::from_value(&value).map_err(|e| part_error(&key, e))?);
            } else if let Some(id) = key.strip_prefix(DOWNLOAD_PART_PREFIX) {
                let id = Identifier::new(id).map_err(|e| part_error(&key, e))?;
                let part = serde_json::from_str(&text).map_err(|e| part_error(&key, e))?;
                stored.downloads.insert(id, part);
            } else if let Some(id) = key.strip_prefix(PACK_PART_PREFIX) {
                let id = Identifier::new(id).map_err(|e| part_error(&key, e))?;
                let pack = serde_json::from_str(&text).map_err(|e| part_error(&key, e))?;
                stored.packs.insert(id, pack);
            } else if let Some(file) = key.strip_prefix(PACK_FILE_PART_PREFIX) {
                let file = Identifier::new(file).map_err(|e| part_error(&key, e))?;
                let part = serde_json::from_str(&text).map_err(|e| part_error(&key, e))?;
                stored.pack_files.insert(file, part);
            } else {
                return Err(part_error(&key, "not a part of the manager's state"));
            }
        }
        let head = stored
            .head
            .clone()
            .ok_or_else(|| part_error(HEAD_PART, "missing"))?;
        let declaration = stored
            .declaration
            .clone()
            .ok_or_else(|| part_error(DECLARATION_PART, "missing"))?;
        let mut records = BTreeMap::new();
        let mut slots = HashMap::new();
        let mut admitted = BTreeMap::new();
        for (id, part) in &stored.downloads {
            if let Some(record) = &part.record {
                records.insert(id.clone(), record.clone());
            }
            if let Some(slot) = &part.slot {
                slots.insert(id.clone(), slot.clone());
            }
            if let Some(admission) = &part.admitted {
                admitted.insert(id.clone(), admission.clone());
            }
        }
        // A pack's stored files: its part's own sets (parts written before the files had parts
        // of their own) and the files' parts that name one of its versions and files. A file
        // part that names none is no longer stored: the next save deletes it.
        let mut packs = stored.packs.clone();
        // A pack part that still holds stored-file sets is rewritten by the next save.
        let legacy: BTreeSet<Identifier> = sorted(
            packs
                .iter()
                .filter(|(_, store)| store.versions().any(|v| !v.stored.is_empty()))
                .map(|(id, _)| id.clone()),
        );
        for part in stored.pack_files.values() {
            let Some(store) = packs.get_mut(&part.pack) else {
                continue;
            };
            for version in [&mut store.complete, &mut store.pending]
                .into_iter()
                .flatten()
            {
                if version.version == part.version && version.files.contains_key(&part.path) {
                    version.stored.insert(part.path.clone());
                }
            }
        }
        let manager = Manager {
            declaration,
            policy: Policy::from_parts(head.policy, admitted),
            queue: Queue::from_parts(head.queue, slots),
            records,
            events: VecDeque::new(),
            page_delegates: head.page_delegates,
            packs,
            touched: Touched {
                packs: legacy,
                ..Touched::default()
            },
        };
        Ok((manager, stored))
    }
}

/// Stores a [`Declaration`] as its canonical JSON (all URLs absolute) and validates it again on
/// the way in.
mod declaration_json {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use serde_json::Value;
    use url::Url;

    use crate::core::declaration::{declaration_from_value, Declaration};

    pub fn serialize<S: Serializer>(d: &Declaration, s: S) -> Result<S::Ok, S::Error> {
        d.to_json().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Declaration, D::Error> {
        let value = Value::deserialize(d)?;
        from_value(&value).map_err(serde::de::Error::custom)
    }

    /// The declaration in its canonical JSON form.
    pub fn from_value(value: &Value) -> Result<Declaration, String> {
        // The canonical form has only absolute URLs, so the base is never used.
        let base = Url::parse("https://declaration.invalid/").map_err(|e| e.to_string())?;
        declaration_from_value(value, &base).map_err(|e| e.to_string())
    }
}
