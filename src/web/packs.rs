//! Asset packs on the web [`DownloadManager`]: Apple's `AssetPackManager` (status, status
//! updates, `ensureLocalAvailability`, `checkForUpdates`, removal, file lookup by path) and the
//! launch gate [`DownloadManager::ready`].
//!
//! ```text
//!  pkg.json / remote manifest ──fetch_declaration / fetch_manifest──▶ Declaration
//!                                                                        │ check_for_updates
//!  core Manager (sans-IO): pack_status, schedule_pack, apply_manifest ◀──┘
//!        │ decide / inspect (web::manager hooks)        ▲
//!        ▼                                              │ changes(): a message per state change
//!  transfers store each file under pack_file_identifier(pack, version, path)
//!  a new version is stored beside the old one; when it is complete and verified it replaces it
//!  and the old files are deleted (file(path) answers the old version until then)
//! ```
//!
//! Every call waits for the manager to be open. Statuses are the core's
//! ([`PackStatus`]); errors are the crate's [`Error`] (a pack that does not exist is
//! [`Error::AssetPackDoesNotExist`]).
//!
//! # Example
//! ```no_run
//! # async fn demo() -> Result<(), background_assets::core::error::Error> {
//! use background_assets::web::manager::DownloadManager;
//! let manager = DownloadManager::shared();
//! manager.ready().await?; // essential packs are present
//! manager.ensure_local_availability("maps").await?;
//! if let Some(file) = manager.file("maps/eu.map").await? {
//!     let blob = file.blob().await?;
//!     # let _ = blob;
//! }
//! # Ok(()) }
//! ```

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::channel::{mpsc, oneshot};
use futures::future::{select, Either};
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};

use crate::core::declaration::{
    parse_declaration, parse_manifest, Declaration, InstallationEvent, Manifest,
};
use crate::core::download::{Identifier, UrlDownload};
use crate::core::error::Error;
use crate::core::manager::{ExtensionEvent, Manager as CoreManager, PackInfo, PackStatus};
use crate::core::vec_map::VecMap;
use crate::core::Millis;
use crate::web::manager::{fetch_text, DownloadManager, FinishedDownload};

type Result<T> = std::result::Result<T, Error>;

fn now() -> Millis {
    js_sys::Date::now().max(0.0) as Millis
}

/// A pack's new status, as [`DownloadManager::status_updates`] yields it.
///
/// # Example
/// ```
/// use background_assets::core::manager::PackStatus;
/// use background_assets::web::packs::PackStatusUpdate;
/// let update = PackStatusUpdate { pack: "maps".parse().unwrap(), status: PackStatus::Downloaded };
/// assert_eq!(serde_json::to_value(&update).unwrap()["status"], "downloaded");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PackStatusUpdate {
    /// The pack.
    pub pack: Identifier,
    /// Its status now.
    pub status: PackStatus,
}

/// What [`DownloadManager::check_for_updates`] found.
///
/// # Example
/// ```
/// use background_assets::web::packs::PackUpdateSummary;
/// let summary = PackUpdateSummary::default();
/// assert!(summary.updated.is_empty() && summary.removed.is_empty());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PackUpdateSummary {
    /// Packs whose declared version changed. Those with a stored version are being updated
    /// (their old version stays readable until the new one is complete and verified).
    pub updated: Vec<Identifier>,
    /// Packs no longer declared (`obsolete` while their files are stored: remove them with
    /// [`DownloadManager::remove_pack`]).
    pub removed: Vec<Identifier>,
    /// Packs declared for the first time.
    pub added: Vec<Identifier>,
}

/// The stream [`DownloadManager::status_updates`] returns: the current status of every pack
/// first, then a [`PackStatusUpdate`] each time a pack's status changes. Dropping it stops the
/// watch.
///
/// # Example
/// ```no_run
/// # async fn demo() {
/// use futures::StreamExt;
/// let mut updates = background_assets::web::manager::DownloadManager::shared().status_updates();
/// while let Some(update) = updates.next().await {
///     let _ = (update.pack, update.status);
/// }
/// # }
/// ```
pub struct PackStatusUpdates {
    updates: mpsc::UnboundedReceiver<PackStatusUpdate>,
    /// Dropped with the stream: ends the watching task.
    _stop: oneshot::Sender<()>,
}

impl std::fmt::Debug for PackStatusUpdates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackStatusUpdates").finish_non_exhaustive()
    }
}

impl Stream for PackStatusUpdates {
    type Item = PackStatusUpdate;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.updates.poll_next_unpin(cx)
    }
}

/// Every pack's status (declared and obsolete).
fn statuses(core: &CoreManager) -> VecMap<Identifier, PackStatus> {
    core.packs().into_iter().map(|p| (p.id, p.status)).collect()
}

/// Adds the URL to a declaration or manifest error, so the message says which document.
fn in_document(error: Error, url: &url::Url) -> Error {
    match error {
        Error::InvalidDeclaration { path, reason } => Error::InvalidDeclaration {
            path,
            reason: format!("{reason} (in {url})"),
        },
        other => other,
    }
}

/// GETs `url`'s text; `404` is [`Error::HttpStatus`] like any other non-2xx answer.
async fn fetch_document(url: &url::Url) -> Result<String> {
    fetch_text(url).await?.ok_or_else(|| Error::HttpStatus {
        identifier: url.to_string(),
        status: 404,
    })
}

/// Fetches and validates a declaration (`pkg.json`): relative URLs in it resolve against `url`.
///
/// Errors: [`Error::Network`] (`GET <url>: ...`), [`Error::HttpStatus`] naming the URL for any
/// answer but 2xx (404 included), [`Error::InvalidDeclaration`] with the JSON path of the bad
/// value and the URL in its reason.
///
/// # Example
/// ```no_run
/// # async fn demo() -> Result<(), background_assets::core::error::Error> {
/// let url = url::Url::parse("https://app.example/pkg.json").unwrap();
/// let declaration = background_assets::web::packs::fetch_declaration(&url).await?;
/// let ids: Vec<_> = declaration.asset_packs.iter().map(|p| p.id.clone()).collect();
/// # let _ = ids; Ok(()) }
/// ```
pub async fn fetch_declaration(url: &url::Url) -> Result<Declaration> {
    let text = fetch_document(url).await?;
    parse_declaration(&text, url).map_err(|e| in_document(e, url))
}

/// Fetches and validates a remote manifest (`manifestURL`): relative URLs in it resolve
/// against `url`. Same errors as [`fetch_declaration`].
///
/// # Example
/// ```no_run
/// # async fn demo() -> Result<(), background_assets::core::error::Error> {
/// let url = url::Url::parse("https://cdn.example/manifest.json").unwrap();
/// let manifest = background_assets::web::packs::fetch_manifest(&url).await?;
/// let version = manifest.version;
/// # let _ = version; Ok(()) }
/// ```
pub async fn fetch_manifest(url: &url::Url) -> Result<Manifest> {
    let text = fetch_document(url).await?;
    parse_manifest(&text, url).map_err(|e| in_document(e, url))
}

/// The current declaration of the app: `pkg.json` re-read from `declaration_url` when there is
/// one (else `current`), updated by its remote manifest when it names one.
///
/// # Example
/// ```no_run
/// # async fn demo(current: background_assets::core::declaration::Declaration)
/// #     -> Result<(), background_assets::core::error::Error> {
/// let latest = background_assets::web::packs::fetch_latest_declaration(&current, None).await?;
/// # let _ = latest; Ok(()) }
/// ```
pub async fn fetch_latest_declaration(
    current: &Declaration,
    declaration_url: Option<&url::Url>,
) -> Result<Declaration> {
    let base = match declaration_url {
        Some(url) => fetch_declaration(url).await?,
        None => current.clone(),
    };
    match &base.manifest_url {
        Some(url) => base.with_manifest(&fetch_manifest(url).await?),
        None => Ok(base),
    }
}

impl DownloadManager {
    /// Every asset pack (declared ones in declaration order, then obsolete ones) with its
    /// version, policy, size, status and files.
    ///
    /// # Example
    /// ```no_run
    /// # async fn demo() -> Result<(), background_assets::core::error::Error> {
    /// use background_assets::core::manager::PackStatus;
    /// let manager = background_assets::web::manager::DownloadManager::shared();
    /// let downloaded = manager.packs().await?
    ///     .into_iter().filter(|p| p.status == PackStatus::Downloaded).count();
    /// # let _ = downloaded; Ok(()) }
    /// ```
    pub async fn packs(&self) -> Result<Vec<PackInfo>> {
        self.inspect(CoreManager::packs).await
    }

    /// A pack's status; [`Error::AssetPackDoesNotExist`] if it is neither declared nor stored.
    ///
    /// # Example
    /// ```no_run
    /// # async fn demo() -> Result<(), background_assets::core::error::Error> {
    /// use background_assets::core::manager::PackStatus;
    /// let manager = background_assets::web::manager::DownloadManager::shared();
    /// if manager.pack_status("maps").await? == PackStatus::DownloadAvailable {
    ///     manager.ensure_local_availability("maps").await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn pack_status(&self, pack: &str) -> Result<PackStatus> {
        self.inspect(|core| core.pack_status(pack)).await?
    }

    /// Apple's `AssetPackManager.statusUpdates`: a stream that first yields the current status
    /// of every pack, then one [`PackStatusUpdate`] each time a pack's status changes (its
    /// files scheduled, stored, failed, a new version declared, removed...). Statuses are
    /// compared after every state change this global sees, so a consumer that reads late still
    /// gets each change in order. The stream ends if the manager cannot be opened; dropping it
    /// stops watching.
    ///
    /// # Example
    /// ```no_run
    /// # async fn demo() {
    /// use background_assets::core::manager::PackStatus;
    /// use futures::StreamExt;
    /// let manager = background_assets::web::manager::DownloadManager::shared();
    /// let mut updates = manager.status_updates();
    /// while let Some(update) = updates.next().await {
    ///     if update.pack.as_str() == "maps" && update.status == PackStatus::Downloaded { break; }
    /// }
    /// # }
    /// ```
    pub fn status_updates(&self) -> PackStatusUpdates {
        let (sender, updates) = mpsc::unbounded();
        let (stop_sender, stop) = oneshot::channel::<()>();
        let manager = self.clone();
        crate::web::js::spawn(async move {
            let Ok(mut changes) = manager.changes().await else {
                return;
            };
            let Ok(mut last) = manager.inspect(statuses).await else {
                return;
            };
            for (pack, status) in last.iter() {
                let update = PackStatusUpdate {
                    pack: pack.clone(),
                    status: *status,
                };
                if sender.unbounded_send(update).is_err() {
                    return;
                }
            }
            let mut stop = stop;
            loop {
                match select(changes.next(), stop).await {
                    Either::Left((Some(()), pending_stop)) => stop = pending_stop,
                    // The manager went away, or the stream was dropped.
                    Either::Left((None, _)) | Either::Right(_) => return,
                }
                let Ok(current) = manager.inspect(statuses).await else {
                    return;
                };
                for (pack, status) in current.iter() {
                    if last.get(pack) != Some(status) {
                        let update = PackStatusUpdate {
                            pack: pack.clone(),
                            status: *status,
                        };
                        if sender.unbounded_send(update).is_err() {
                            return;
                        }
                    }
                }
                last = current;
            }
        });
        PackStatusUpdates {
            updates,
            _stop: stop_sender,
        }
    }

    /// Apple's `ensureLocalAvailability`: schedules the files of `pack`'s declared version that
    /// are neither stored nor scheduled (non-essential downloads, any download policy), then
    /// resolves when that version is stored and verified (at once if it already is).
    ///
    /// Errors: [`Error::AssetPackDoesNotExist`]; a refusal to schedule (the policy's, nothing is
    /// scheduled then); the error of a file that failed (for example
    /// [`Error::IntegrityMismatch`] for a wrong digest: an older stored version stays readable);
    /// [`Error::Cancelled`] naming the pack when its fetch stopped without a failure (removed, or
    /// superseded by a newer version).
    ///
    /// # Example
    /// ```no_run
    /// # async fn demo() -> Result<(), background_assets::core::error::Error> {
    /// let manager = background_assets::web::manager::DownloadManager::shared();
    /// manager.ensure_local_availability("maps").await?;
    /// let map = manager.file("maps/eu.map").await?.expect("stored");
    /// # let _ = map; Ok(()) }
    /// ```
    pub async fn ensure_local_availability(&self, pack: &str) -> Result<()> {
        let mut changes = self.changes().await?;
        let caller = self.caller().await?;
        let at = now();
        let pack_id = pack.to_string();
        self.decide(move |core| core.schedule_pack(&pack_id, caller, at))
            .await?;
        let look = |core: &CoreManager| (core.pack_status(pack), core.pack_failure(pack));
        let mut seen = self.inspect(look).await?;
        loop {
            match seen {
                (Ok(PackStatus::Downloaded), _) => return Ok(()),
                (Err(error), _) | (_, Some(error)) => return Err(error),
                (Ok(PackStatus::Downloading), None) => {}
                _ => {
                    return Err(Error::Cancelled {
                        identifier: pack.to_string(),
                    })
                }
            }
            if changes.next().await.is_none() {
                return Err(Error::Storage {
                    message: format!("the download manager closed while `{pack}` was fetched"),
                });
            }
            // Changes told meanwhile are all seen by one look. After a change this global saw
            // (its own decision, or another context's, which it read before telling), its state
            // is current: no need to read it again.
            while changes.try_recv().is_ok() {}
            seen = self.inspect_current(look).await?;
        }
    }

    /// Apple's `checkForUpdates`: reads the app's current declaration (`pkg.json` again from
    /// [`ManagerConfig::declaration_url`](crate::web::manager::ManagerConfig::declaration_url)
    /// when the manager has one, then the remote manifest when the declaration names one;
    /// see [`fetch_latest_declaration`]), applies it, and starts fetching the new version of
    /// every updated pack that has a stored version. The swap is atomic per pack: the old
    /// version stays readable ([`file`](Self::file) answers it) until the new one is complete
    /// and verified, then the old files are deleted. Downloads of a version that is no longer
    /// declared are cancelled and their bytes deleted. Updated packs with nothing stored are
    /// only re-declared (`downloadAvailable`).
    ///
    /// A new version whose files cannot be scheduled (refused by the policy) stays
    /// `updateAvailable`; [`ensure_local_availability`](Self::ensure_local_availability) reports
    /// why. Errors: those of [`fetch_latest_declaration`] (nothing changes then),
    /// [`Error::MaxInstallSizeExceeded`], [`Error::Storage`].
    ///
    /// # Example
    /// ```no_run
    /// # async fn demo() -> Result<(), background_assets::core::error::Error> {
    /// let manager = background_assets::web::manager::DownloadManager::shared();
    /// let summary = manager.check_for_updates().await?;
    /// for pack in &summary.removed {
    ///     manager.remove_pack(pack.as_str()).await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn check_for_updates(&self) -> Result<PackUpdateSummary> {
        let current = self.inspect(|core| core.declaration().clone()).await?;
        let declaration_url = self.declaration_url().await?;
        let latest = fetch_latest_declaration(&current, declaration_url.as_ref()).await?;
        // Stop the transfers of versions the new declaration supersedes, through cancel (which
        // ends this global's running transfer and deletes its bytes).
        let superseded = self.inspect(|core| core.superseded_by(&latest)).await?;
        for id in superseded {
            ignore_not_scheduled(self.cancel(&id).await)?;
        }
        let caller = self.caller().await?;
        let at = now();
        let update = self
            .decide(move |core| {
                let update = core.apply_manifest(latest);
                // Nothing below may fail the decision once the manifest is applied: a refusal
                // leaves the pack `updateAvailable` (see the docs).
                for download in core.update_downloads(at).unwrap_or_default() {
                    let _ = core.schedule(download, caller, at);
                }
                Ok(update)
            })
            .await?;
        let container = self.container().await?;
        for id in &update.cancelled {
            container.delete(id.as_str()).await?;
        }
        Ok(PackUpdateSummary {
            updated: update.updated,
            removed: update.removed,
            added: update.added,
        })
    }

    /// Removes a pack's stored files (every version, complete or partial) and cancels its
    /// scheduled downloads. A declared pack is `downloadAvailable` afterwards; an obsolete one
    /// is gone. [`Error::AssetPackDoesNotExist`] if it is neither declared nor stored.
    ///
    /// # Example
    /// ```no_run
    /// # async fn demo() -> Result<(), background_assets::core::error::Error> {
    /// let manager = background_assets::web::manager::DownloadManager::shared();
    /// manager.remove_pack("maps").await?;
    /// assert!(manager.file("maps/eu.map").await?.is_none());
    /// # Ok(()) }
    /// ```
    pub async fn remove_pack(&self, pack: &str) -> Result<()> {
        let scheduled = self.inspect(|core| core.scheduled_pack_files(pack)).await?;
        for id in scheduled {
            ignore_not_scheduled(self.cancel(&id).await)?;
        }
        let pack_id = pack.to_string();
        let removed = self.decide(move |core| core.remove_pack(&pack_id)).await?;
        let container = self.container().await?;
        for id in removed {
            container.delete(id.as_str()).await?;
        }
        Ok(())
    }

    /// The stored file at `path` in the readable version of the first pack that has it
    /// (declared packs in declaration order, then obsolete ones), or `None`. During an update
    /// this is the old version until the new one is complete and verified. The worker serves the
    /// same file at [`served_file_url`](crate::web::serve::served_file_url).
    ///
    /// # Example
    /// ```no_run
    /// # async fn demo() -> Result<(), background_assets::core::error::Error> {
    /// let manager = background_assets::web::manager::DownloadManager::shared();
    /// if let Some(file) = manager.file("levels/1.bin").await? {
    ///     let response = file.response().await?;
    ///     # let _ = response;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn file(&self, path: &str) -> Result<Option<FinishedDownload>> {
        let Some((_, id)) = self.inspect(|core| core.file_for_path(path)).await? else {
            return Ok(None);
        };
        let container = self.container().await?;
        let Some(asset) = container.asset(id.as_str()).await? else {
            return Ok(None);
        };
        Ok(Some(FinishedDownload::new(
            id,
            asset.size,
            asset.sha256,
            container,
        )))
    }

    /// The launch gate: resolves when no download that is essential — or was, before it failed
    /// and was re-queued as a non-essential one, as Apple does — is waiting, running or paused.
    /// So a re-queued essential download is still waited for until it is stored or fails for
    /// good. It resolves `Ok` either way: a failed essential pack is then not `downloaded`
    /// (check [`pack_status`](Self::pack_status)). It does not wait for essential packs that
    /// nobody scheduled (the extension schedules them on install: [`downloads_for`](Self::downloads_for)).
    ///
    /// # Example
    /// ```no_run
    /// # async fn demo() -> Result<(), background_assets::core::error::Error> {
    /// let manager = background_assets::web::manager::DownloadManager::shared();
    /// manager.ready().await?;
    /// // start the app: essential assets are stored
    /// # Ok(()) }
    /// ```
    pub async fn ready(&self) -> Result<()> {
        let mut changes = self.changes().await?;
        while self.inspect(CoreManager::essential_pending).await? {
            if changes.next().await.is_none() {
                return Err(Error::Storage {
                    message: "the download manager closed before the essential downloads ended"
                        .into(),
                });
            }
        }
        Ok(())
    }

    /// The downloads the extension schedules by default for `event`: on install
    /// (`firstInstallation`) and update (`subsequentUpdate`), every missing file of the
    /// essential and prefetch packs that list the event (essential packs give essential
    /// downloads, scheduled with [`schedule_as`](Self::schedule_as) and the event's caller); on
    /// a check for updates, the missing files of the new versions of stored packs. Files that
    /// are stored or scheduled are left out.
    ///
    /// # Example
    /// ```no_run
    /// # async fn demo() -> Result<(), background_assets::core::error::Error> {
    /// use background_assets::core::manager::{Caller, ExtensionEvent};
    /// let manager = background_assets::web::manager::DownloadManager::shared();
    /// let installing = Caller::Extension { event: Some(ExtensionEvent::Install) };
    /// for download in manager.downloads_for(ExtensionEvent::Install).await? {
    ///     manager.schedule_as(download, installing).await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn downloads_for(&self, event: ExtensionEvent) -> Result<Vec<UrlDownload>> {
        let at = now();
        self.decide(move |core| match event {
            ExtensionEvent::Install => core.downloads_for(InstallationEvent::FirstInstallation, at),
            ExtensionEvent::Update => core.downloads_for(InstallationEvent::SubsequentUpdate, at),
            ExtensionEvent::CheckForUpdates => core.update_downloads(at),
        })
        .await
    }
}

/// A cancel that lost a race with the download's end is not an error here.
fn ignore_not_scheduled(result: Result<()>) -> Result<()> {
    match result {
        Err(Error::DownloadNotScheduled { .. } | Error::DownloadDoesNotExist { .. }) => Ok(()),
        other => other,
    }
}
