//! `pkg.json`, the app's Info.plist analogue, and the remote manifest.
//!
//! [`parse_declaration`] and [`parse_manifest`] walk the JSON themselves so that every refusal is
//! an [`Error::InvalidDeclaration`] whose `path` names the exact value, such as
//! `$.assetPacks[1].files[0].sha256`. Apple's Info.plist key names are accepted as aliases
//! (giving both spellings of one key is refused), unknown keys are refused (typos are caught),
//! except `$schema` and keys starting with `x-`.
//!
//! # Schema
//!
//! ```json
//! {
//!   "initialDownloadRestrictions": {
//!     "downloadAllowance": 268435456,
//!     "essentialDownloadAllowance": 134217728,
//!     "domainAllowList": ["cdn.example.com", "*.example.org", "127.0.0.1"]
//!   },
//!   "maxInstallSize": 536870912,
//!   "essentialMaxInstallSize": 134217728,
//!   "manifestURL": "https://cdn.example.com/manifest.json",
//!   "assetPacks": [
//!     { "id": "levels", "version": "3", "downloadPolicy": "essential",
//!       "installationEventTypes": ["firstInstallation", "subsequentUpdate"],
//!       "files": [ { "path": "levels/1.bin", "url": "https://cdn.example.com/levels/1.bin",
//!                    "size": 67108864, "sha256": "…64 hex digits…" } ] }
//!   ]
//! }
//! ```
//!
//! | key | Apple alias | type | default |
//! |---|---|---|---|
//! | `initialDownloadRestrictions` | `BAInitialDownloadRestrictions` | object | all zero, same origin only |
//! | `.downloadAllowance` | `BADownloadAllowance` | bytes | 0 |
//! | `.essentialDownloadAllowance` | `BAEssentialDownloadAllowance` | bytes | 0 |
//! | `.domainAllowList` | `BADownloadDomainAllowList` | array of host patterns | same origin only |
//! | `maxInstallSize` | `BAMaxInstallSize` | bytes | no limit |
//! | `essentialMaxInstallSize` | `BAEssentialMaxInstallSize` | bytes | no limit |
//! | `manifestURL` (also `manifestUrl`) | `BAManifestURL` | URL, relative to `pkg.json` | none |
//! | `assetPacks` | — | array of packs | `[]` |
//! | `backgroundFetch` | — | boolean: pages may hand scheduled downloads to Background Fetch | `false` |
//! | pack `id` | `assetPackID` | identifier | required |
//! | pack `version` | — | string | required |
//! | pack `downloadPolicy` | — | `essential` \| `prefetch` \| `onDemand`, or Apple's `{"essential": {"installationEventTypes": [...]}}` | required |
//! | pack `installationEventTypes` | — | `firstInstallation`, `subsequentUpdate` | both |
//! | pack `files` | — | array of files | required |
//! | file `path`, `url`, `size`, `sha256` | — | relative path, URL, bytes, hex digest | required |
//! | file `chunks` | — | `{"size": <bytes, 16 KiB–64 MiB>, "sha256": [<hex digest of each chunk>]}`: each chunk is verified by the browser as it arrives (see [`ChunkDigests`]) | none: the whole file is hashed in wasm |
//!
//! Bytes are JSON integers in `0..=2^53-1` (a whole-valued float such as `1e3` is accepted).
//! The manifest is `{ "version"?: string, "assetPacks": [...] }` with the same pack shape; its
//! relative URLs resolve against the manifest's own URL.
//!
//! Limits: input ≤ [`MAX_INPUT_BYTES`]; nesting ≤ [`MAX_DEPTH`]; any array ≤ [`MAX_ARRAY_LEN`]
//! items (checked while parsing, before it is built); ≤ [`MAX_PACKS`] packs; ≤ [`MAX_FILES`]
//! files in all packs together.
//!
//! # Example
//! ```
//! use background_assets::core::declaration::{parse_declaration, AssetPackList, DownloadPolicy};
//! use background_assets::core::error::Error;
//! use url::Url;
//!
//! let base = Url::parse("https://app.example.com/pkg.json").unwrap();
//! let json = r#"{
//!   "BAInitialDownloadRestrictions": { "BADownloadAllowance": 1000, "BAEssentialDownloadAllowance": 500 },
//!   "assetPacks": [ { "id": "intro", "version": "1", "downloadPolicy": "essential",
//!     "files": [ { "path": "intro.bin", "url": "assets/intro.bin", "size": 400,
//!                  "sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" } ] } ]
//! }"#;
//! let declaration = parse_declaration(json, &base)?;
//! let pack = declaration.pack("intro").unwrap();
//! assert_eq!(pack.download_policy, DownloadPolicy::Essential);
//! assert_eq!(pack.files[0].url.as_str(), "https://app.example.com/assets/intro.bin");
//! assert_eq!(declaration.essential_size(), 400);
//!
//! let bad = json.replace("400", "-1");
//! match parse_declaration(&bad, &base) {
//!     Err(Error::InvalidDeclaration { path, .. }) => assert_eq!(path, "$.assetPacks[0].files[0].size"),
//!     other => panic!("{other:?}"),
//! }
//! # Ok::<(), Error>(())
//! ```

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::Serialize;
use serde_json::{Map, Value};
use url::Url;

use super::download::{check_download_url, printable, Identifier, MAX_SAFE_INTEGER};
use super::error::{hex, Error, Result};
use super::integrity::ChunkDigests;
use super::policy::{DomainAllowList, InitialDownloadRestrictions};

/// Largest accepted input, in bytes (16 MiB).
pub const MAX_INPUT_BYTES: usize = 16 * 1024 * 1024;
/// Deepest accepted nesting of arrays and objects.
pub const MAX_DEPTH: usize = 32;
/// Longest accepted array anywhere in the input.
pub const MAX_ARRAY_LEN: usize = 100_000;
/// Most asset packs in one declaration or manifest.
pub const MAX_PACKS: usize = 10_000;
/// Most files in all packs of one declaration or manifest together.
pub const MAX_FILES: usize = 100_000;
/// Longest file path inside a pack, in bytes.
pub const MAX_FILE_PATH_LEN: usize = 1024;
/// Longest version string, in bytes.
pub const MAX_VERSION_LEN: usize = 128;

// ---------------------------------------------------------------------------------------------
// Types
// ---------------------------------------------------------------------------------------------

/// A parsed, validated `pkg.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declaration {
    /// What may be downloaded before first launch.
    pub restrictions: InitialDownloadRestrictions,
    /// Most bytes all installed assets may take (`BAMaxInstallSize`).
    pub max_install_size: Option<u64>,
    /// Most bytes the essential assets may take (`BAEssentialMaxInstallSize`).
    pub essential_max_install_size: Option<u64>,
    /// Where the remote manifest lives (`BAManifestURL`), absolute.
    pub manifest_url: Option<Url>,
    /// The declared asset packs, in document order.
    pub asset_packs: Vec<AssetPack>,
    /// Whether a page may hand scheduled downloads to the browser's Background Fetch where the
    /// engine lets it (`backgroundFetch`, default `false`): the browser then runs them even
    /// after the page and the worker are gone, and the worker stores what it delivers.
    pub background_fetch: bool,
}

/// A parsed, validated remote manifest: asset packs that supplement or update the declaration's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The manifest's own version, if it gives one.
    pub version: Option<String>,
    /// The asset packs, in document order.
    pub asset_packs: Vec<AssetPack>,
}

/// When a pack is downloaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum DownloadPolicy {
    /// Before the app may be used, on the listed installation events.
    Essential,
    /// In the background on the listed installation events; the app may start before it is done.
    Prefetch,
    /// Only when the app asks for it.
    OnDemand,
}

impl DownloadPolicy {
    /// The JSON name (`essential`, `prefetch`, `onDemand`).
    pub fn as_str(self) -> &'static str {
        match self {
            DownloadPolicy::Essential => "essential",
            DownloadPolicy::Prefetch => "prefetch",
            DownloadPolicy::OnDemand => "onDemand",
        }
    }

    fn parse(name: &str) -> Option<DownloadPolicy> {
        match name {
            "essential" => Some(DownloadPolicy::Essential),
            "prefetch" => Some(DownloadPolicy::Prefetch),
            "onDemand" => Some(DownloadPolicy::OnDemand),
            _ => None,
        }
    }
}

/// An installation event: the first install of the app, or a later update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum InstallationEvent {
    /// The service worker installs for the first time.
    FirstInstallation,
    /// A new service worker version installs over an old one.
    SubsequentUpdate,
}

/// Which installation events download a pack (a two-element set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstallationEventTypes {
    /// Downloaded on first installation.
    pub first_installation: bool,
    /// Downloaded on each subsequent update.
    pub subsequent_update: bool,
}

impl InstallationEventTypes {
    /// Both events (the default).
    pub const ALL: InstallationEventTypes = InstallationEventTypes {
        first_installation: true,
        subsequent_update: true,
    };
    /// No event (on-demand packs).
    pub const NONE: InstallationEventTypes = InstallationEventTypes {
        first_installation: false,
        subsequent_update: false,
    };

    /// Whether `event` is in the set.
    pub fn contains(self, event: InstallationEvent) -> bool {
        match event {
            InstallationEvent::FirstInstallation => self.first_installation,
            InstallationEvent::SubsequentUpdate => self.subsequent_update,
        }
    }
}

impl Default for InstallationEventTypes {
    fn default() -> Self {
        Self::ALL
    }
}

/// One asset pack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetPack {
    /// Unique within the declaration (the [`Identifier`] rules apply).
    pub id: Identifier,
    /// The pack's version; a new version replaces the stored files.
    pub version: String,
    /// When it is downloaded.
    pub download_policy: DownloadPolicy,
    /// On which installation events (empty for `onDemand` packs).
    pub installation_event_types: InstallationEventTypes,
    /// Its files, in document order; paths are unique within the pack.
    pub files: Vec<PackFile>,
}

/// One file of an asset pack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackFile {
    /// Relative path inside the pack (`levels/1.bin`).
    pub path: String,
    /// Where it is downloaded from (absolute, `http(s)`).
    pub url: Url,
    /// Exact size in bytes.
    pub size: u64,
    /// Expected SHA-256 of the whole file.
    pub sha256: [u8; 32],
    /// The SHA-256 of each of its chunks, if declared (`chunks`): each chunk is then verified
    /// as it arrives, by the browser, before it is stored (see [`ChunkDigests`]).
    pub chunks: Option<ChunkDigests>,
}

impl AssetPack {
    /// Sum of the file sizes (saturating).
    pub fn size(&self) -> u64 {
        self.files
            .iter()
            .fold(0u64, |sum, f| sum.saturating_add(f.size))
    }

    /// The file at `path`, if any.
    pub fn file(&self, path: &str) -> Option<&PackFile> {
        self.files.iter().find(|f| f.path == path)
    }

    /// Whether the pack is downloaded automatically on `event` (essential or prefetch, and the
    /// event is listed).
    pub fn downloads_on(&self, event: InstallationEvent) -> bool {
        self.download_policy != DownloadPolicy::OnDemand
            && self.installation_event_types.contains(event)
    }

    fn to_json(&self) -> Value {
        let mut events = Vec::new();
        if self.installation_event_types.first_installation {
            events.push(Value::from("firstInstallation"));
        }
        if self.installation_event_types.subsequent_update {
            events.push(Value::from("subsequentUpdate"));
        }
        let mut pack = Map::new();
        pack.insert("id".into(), Value::from(self.id.as_str()));
        pack.insert("version".into(), Value::from(self.version.as_str()));
        pack.insert(
            "downloadPolicy".into(),
            Value::from(self.download_policy.as_str()),
        );
        if self.download_policy != DownloadPolicy::OnDemand {
            pack.insert("installationEventTypes".into(), Value::Array(events));
        }
        let files = self
            .files
            .iter()
            .map(|f| {
                let mut file = serde_json::json!({
                    "path": f.path,
                    "url": f.url.as_str(),
                    "size": f.size,
                    "sha256": hex(&f.sha256),
                });
                if let Some(chunks) = &f.chunks {
                    file["chunks"] = serde_json::to_value(chunks).unwrap_or(Value::Null);
                }
                file
            })
            .collect();
        pack.insert("files".into(), Value::Array(files));
        Value::Object(pack)
    }
}

/// What a [`Declaration`] and a [`Manifest`] share: a list of asset packs, looked up by id and
/// summed by size.
///
/// # Example
/// ```
/// use background_assets::core::declaration::{parse_manifest, AssetPackList};
/// let base = url::Url::parse("https://cdn.example.com/manifest.json").unwrap();
/// let manifest = parse_manifest(r#"{"assetPacks": [{"id": "a", "version": "1",
///     "downloadPolicy": "onDemand", "files": [{"path": "a.bin", "url": "a.bin", "size": 4,
///     "sha256": "0000000000000000000000000000000000000000000000000000000000000000"}]}]}"#,
///     &base).unwrap();
/// assert_eq!(manifest.pack("a").unwrap().version, "1");
/// assert_eq!((manifest.total_size(), manifest.essential_size()), (4, 0));
/// ```
pub trait AssetPackList {
    /// The packs, in declaration order.
    fn packs(&self) -> &[AssetPack];

    /// The pack with this id.
    fn pack(&self, id: &str) -> Option<&AssetPack> {
        self.packs().iter().find(|p| p.id.as_str() == id)
    }

    /// Bytes of all files.
    fn total_size(&self) -> u64 {
        self.packs()
            .iter()
            .fold(0u64, |sum, p| sum.saturating_add(p.size()))
    }

    /// Bytes of the essential packs' files.
    fn essential_size(&self) -> u64 {
        self.packs()
            .iter()
            .filter(|p| p.download_policy == DownloadPolicy::Essential)
            .fold(0u64, |sum, p| sum.saturating_add(p.size()))
    }
}

impl AssetPackList for Declaration {
    fn packs(&self) -> &[AssetPack] {
        &self.asset_packs
    }
}

impl AssetPackList for Manifest {
    fn packs(&self) -> &[AssetPack] {
        &self.asset_packs
    }
}

impl Declaration {
    /// The declaration updated by a remote manifest: a manifest pack replaces the declared pack
    /// with the same id (in place), new ids are appended. The essential packs must still fit
    /// `essentialMaxInstallSize` and `maxInstallSize` ([`Error::MaxInstallSizeExceeded`]).
    ///
    /// # Example
    /// ```
    /// use background_assets::core::declaration::{parse_declaration, parse_manifest, AssetPackList};
    /// use url::Url;
    ///
    /// let base = Url::parse("https://app.example.com/pkg.json").unwrap();
    /// let pack = |v: &str| format!(r#"{{ "id": "maps", "version": "{v}", "downloadPolicy": "onDemand", "files": [] }}"#);
    /// let declaration = parse_declaration(&format!(r#"{{ "assetPacks": [{}] }}"#, pack("1")), &base)?;
    /// let manifest = parse_manifest(&format!(r#"{{ "assetPacks": [{}] }}"#, pack("2")), &base)?;
    /// let updated = declaration.with_manifest(&manifest)?;
    /// assert_eq!(updated.pack("maps").unwrap().version, "2");
    /// # Ok::<(), background_assets::core::error::Error>(())
    /// ```
    pub fn with_manifest(&self, manifest: &Manifest) -> Result<Declaration> {
        let mut updated = self.clone();
        for pack in &manifest.asset_packs {
            match updated.asset_packs.iter_mut().find(|p| p.id == pack.id) {
                Some(slot) => *slot = pack.clone(),
                None => updated.asset_packs.push(pack.clone()),
            }
        }
        let needed = updated.essential_size();
        for limit in [updated.essential_max_install_size, updated.max_install_size]
            .into_iter()
            .flatten()
        {
            if needed > limit {
                return Err(Error::MaxInstallSizeExceeded { needed, limit });
            }
        }
        Ok(updated)
    }

    /// The canonical JSON form (camelCase keys, absolute URLs, lowercase digests); parsing it
    /// again gives an equal declaration.
    pub fn to_json(&self) -> Value {
        let r = &self.restrictions;
        let mut root = Map::new();
        root.insert(
            "initialDownloadRestrictions".into(),
            serde_json::json!({
                "downloadAllowance": r.download_allowance,
                "essentialDownloadAllowance": r.essential_download_allowance,
                "domainAllowList": r.domain_allow_list,
            }),
        );
        if let Some(v) = self.max_install_size {
            root.insert("maxInstallSize".into(), Value::from(v));
        }
        if let Some(v) = self.essential_max_install_size {
            root.insert("essentialMaxInstallSize".into(), Value::from(v));
        }
        if let Some(url) = &self.manifest_url {
            root.insert("manifestURL".into(), Value::from(url.as_str()));
        }
        if self.background_fetch {
            root.insert("backgroundFetch".into(), Value::Bool(true));
        }
        root.insert(
            "assetPacks".into(),
            Value::Array(self.asset_packs.iter().map(AssetPack::to_json).collect()),
        );
        Value::Object(root)
    }
}

impl Manifest {
    /// The canonical JSON form; parsing it again gives an equal manifest.
    pub fn to_json(&self) -> Value {
        let mut root = Map::new();
        if let Some(v) = &self.version {
            root.insert("version".into(), Value::from(v.as_str()));
        }
        root.insert(
            "assetPacks".into(),
            Value::Array(self.asset_packs.iter().map(AssetPack::to_json).collect()),
        );
        Value::Object(root)
    }
}

impl Serialize for Declaration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.to_json().serialize(s)
    }
}

impl Serialize for Manifest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.to_json().serialize(s)
    }
}

// ---------------------------------------------------------------------------------------------
// Entry points
// ---------------------------------------------------------------------------------------------

/// Parses and validates a `pkg.json`. Relative URLs resolve against `base_url` (the URL the
/// declaration was fetched from). Every refusal is [`Error::InvalidDeclaration`] with the JSON
/// path of the bad value.
///
/// Rules beyond the types: `essentialMaxInstallSize` ≤ `maxInstallSize`; the essential packs'
/// total size ≤ both; `essentialDownloadAllowance` may exceed `downloadAllowance` (separate
/// pools). See the [module docs](self) for the schema.
///
/// # Example
/// ```
/// use background_assets::core::declaration::parse_declaration;
/// use background_assets::core::error::Error;
/// use url::Url;
///
/// let base = Url::parse("https://app.example.com/pkg.json").unwrap();
/// let err = parse_declaration(r#"{ "maxInstalSize": 10 }"#, &base).unwrap_err();
/// assert_eq!(err, Error::InvalidDeclaration {
///     path: "$.maxInstalSize".into(),
///     reason: "unknown key; did you mean `maxInstallSize`?".into(),
/// });
/// ```
pub fn parse_declaration(json: &str, base_url: &Url) -> Result<Declaration> {
    let root = parse_value(json)?;
    declaration_from_value(&root, base_url)
}

/// Parses and validates a remote manifest `{ "version"?: "…", "assetPacks": [...] }`. Relative
/// URLs resolve against `base_url` (the manifest's URL).
///
/// # Example
/// ```
/// use background_assets::core::declaration::{parse_manifest, AssetPackList};
/// use url::Url;
///
/// let base = Url::parse("https://cdn.example.com/v7/manifest.json").unwrap();
/// let manifest = parse_manifest(r#"{ "version": "7", "assetPacks": [
///   { "id": "maps", "version": "7", "downloadPolicy": "onDemand", "files": [
///     { "path": "eu.map", "url": "eu.map", "size": 3,
///       "sha256": "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD" } ] } ] }"#, &base)?;
/// assert_eq!(manifest.version.as_deref(), Some("7"));
/// assert_eq!(manifest.pack("maps").unwrap().files[0].url.as_str(), "https://cdn.example.com/v7/eu.map");
/// # Ok::<(), background_assets::core::error::Error>(())
/// ```
pub fn parse_manifest(json: &str, base_url: &Url) -> Result<Manifest> {
    let root = parse_value(json)?;
    manifest_from_value(&root, base_url)
}

/// Validates an already parsed JSON value as a declaration (same rules as
/// [`parse_declaration`], except that duplicate object keys cannot be detected any more).
pub fn declaration_from_value(root: &Value, base_url: &Url) -> Result<Declaration> {
    let root_path = JsonPath::root();
    let mut obj = Obj::new(root, &root_path, DECLARATION_KEYS)?;

    let restrictions = match obj.take(RESTRICTIONS)? {
        None => InitialDownloadRestrictions::default(),
        Some((value, path)) => restrictions(value, &path)?,
    };
    let max_install_size = obj
        .take(MAX_INSTALL)?
        .map(|(v, p)| bytes(v, &p))
        .transpose()?;
    let essential_max = obj.take(ESSENTIAL_MAX_INSTALL)?;
    let essential_max_install_size = match &essential_max {
        None => None,
        Some((v, p)) => Some(bytes(v, p)?),
    };
    let manifest_url = obj
        .take(MANIFEST_URL)?
        .map(|(v, p)| url(v, &p, base_url))
        .transpose()?;
    let asset_packs = match obj.take(ASSET_PACKS)? {
        None => Vec::new(),
        Some((v, p)) => packs(v, &p, base_url)?,
    };
    let background_fetch = match obj.take(BACKGROUND_FETCH)? {
        None => false,
        Some((Value::Bool(on), _)) => *on,
        Some((v, p)) => return Err(expected(&p, "a boolean", v)),
    };

    let declaration = Declaration {
        restrictions,
        max_install_size,
        essential_max_install_size,
        manifest_url,
        asset_packs,
        background_fetch,
    };
    if let (Some(max), Some((_, path))) = (max_install_size, &essential_max) {
        let essential = essential_max_install_size.unwrap_or(0);
        if essential > max {
            return Err(invalid(
                path,
                format!("{essential} is more than maxInstallSize ({max})"),
            ));
        }
    }
    let essential = declaration.essential_size();
    for (limit, name) in [
        (
            declaration.essential_max_install_size,
            "essentialMaxInstallSize",
        ),
        (declaration.max_install_size, "maxInstallSize"),
    ] {
        if let Some(limit) = limit {
            if essential > limit {
                return Err(invalid(
                    &root_path.key("assetPacks"),
                    format!("essential packs total {essential} bytes, more than {name} ({limit})"),
                ));
            }
        }
    }
    Ok(declaration)
}

/// Validates an already parsed JSON value as a manifest (see [`parse_manifest`]).
pub fn manifest_from_value(root: &Value, base_url: &Url) -> Result<Manifest> {
    let root_path = JsonPath::root();
    let mut obj = Obj::new(root, &root_path, MANIFEST_KEYS)?;
    let version = obj
        .take(&["version"])?
        .map(|(v, p)| version(v, &p))
        .transpose()?;
    let asset_packs = match obj.take(ASSET_PACKS)? {
        None => return Err(invalid(&root_path, "missing required key `assetPacks`")),
        Some((v, p)) => packs(v, &p, base_url)?,
    };
    Ok(Manifest {
        version,
        asset_packs,
    })
}

// ---------------------------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------------------------

/// One accepted key: its canonical name first, then aliases.
type Key = &'static [&'static str];

const RESTRICTIONS: Key = &[
    "initialDownloadRestrictions",
    "BAInitialDownloadRestrictions",
];
const DOWNLOAD_ALLOWANCE: Key = &["downloadAllowance", "BADownloadAllowance"];
const ESSENTIAL_ALLOWANCE: Key = &["essentialDownloadAllowance", "BAEssentialDownloadAllowance"];
const ALLOW_LIST: Key = &["domainAllowList", "BADownloadDomainAllowList"];
const MAX_INSTALL: Key = &["maxInstallSize", "BAMaxInstallSize"];
const ESSENTIAL_MAX_INSTALL: Key = &["essentialMaxInstallSize", "BAEssentialMaxInstallSize"];
const MANIFEST_URL: Key = &["manifestURL", "manifestUrl", "BAManifestURL"];
const ASSET_PACKS: Key = &["assetPacks"];
const BACKGROUND_FETCH: Key = &["backgroundFetch"];
const EVENT_TYPES: Key = &["installationEventTypes"];

const DECLARATION_KEYS: &[Key] = &[
    RESTRICTIONS,
    MAX_INSTALL,
    ESSENTIAL_MAX_INSTALL,
    MANIFEST_URL,
    ASSET_PACKS,
    BACKGROUND_FETCH,
];
const RESTRICTION_KEYS: &[Key] = &[DOWNLOAD_ALLOWANCE, ESSENTIAL_ALLOWANCE, ALLOW_LIST];
const MANIFEST_KEYS: &[Key] = &[&["version"], ASSET_PACKS];
const PACK_KEYS: &[Key] = &[
    &["id", "assetPackID"],
    &["version"],
    &["downloadPolicy"],
    EVENT_TYPES,
    &["files"],
];
const FILE_KEYS: &[Key] = &[&["path"], &["url"], &["size"], &["sha256"], &["chunks"]];
const CHUNKS_KEYS: &[Key] = &[&["size"], &["sha256"]];
/// The smallest chunk size a file's `chunks` may declare (16 KiB).
pub const MIN_CHUNK_SIZE: u64 = 16 << 10;
/// The largest chunk size a file's `chunks` may declare (64 MiB): a download holds about three
/// chunks in memory.
pub const MAX_CHUNK_SIZE: u64 = 64 << 20;
const POLICY_OBJECT_KEYS: &[Key] = &[EVENT_TYPES];

// ---------------------------------------------------------------------------------------------
// JSON paths
// ---------------------------------------------------------------------------------------------

/// A JSON path such as `$.assetPacks[1].files[0].sha256`; keys that are not plain identifiers
/// are written `["…"]`.
#[derive(Clone, PartialEq, Eq)]
struct JsonPath(String);

impl JsonPath {
    fn root() -> JsonPath {
        JsonPath("$".into())
    }

    fn key(&self, key: &str) -> JsonPath {
        let plain = key
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '$')
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$');
        if plain {
            JsonPath(format!("{}.{key}", self.0))
        } else {
            // JSON-quoted (escapes quotes and control characters), long keys shortened.
            let mut shown: String = key.chars().take(64).collect();
            if shown.len() < key.len() {
                shown.push('…');
            }
            JsonPath(format!(
                "{}[{}]",
                self.0,
                serde_json::to_string(&shown).unwrap_or_default()
            ))
        }
    }

    fn index(&self, i: usize) -> JsonPath {
        JsonPath(format!("{}[{i}]", self.0))
    }
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn invalid(path: &JsonPath, reason: impl Into<String>) -> Error {
    Error::InvalidDeclaration {
        path: path.0.clone(),
        reason: reason.into(),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn expected(path: &JsonPath, what: &str, found: &Value) -> Error {
    invalid(path, format!("expected {what}, found {}", kind(found)))
}

// ---------------------------------------------------------------------------------------------
// Objects with known keys
// ---------------------------------------------------------------------------------------------

/// An object whose keys are checked against the accepted ones up front.
struct Obj<'a> {
    map: &'a Map<String, Value>,
    path: JsonPath,
}

fn is_extension_key(key: &str) -> bool {
    key == "$schema" || key.starts_with("x-")
}

impl<'a> Obj<'a> {
    fn new(value: &'a Value, path: &JsonPath, keys: &[Key]) -> Result<Obj<'a>> {
        let map = value
            .as_object()
            .ok_or_else(|| expected(path, "an object", value))?;
        for key in map.keys() {
            if is_extension_key(key) || keys.iter().any(|k| k.contains(&key.as_str())) {
                continue;
            }
            let reason = match suggest(key, keys) {
                Some(near) => format!("unknown key; did you mean `{near}`?"),
                None => format!(
                    "unknown key; expected one of {}",
                    keys.iter()
                        .map(|k| format!("`{}`", k[0]))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            return Err(invalid(&path.key(key), reason));
        }
        Ok(Obj {
            map,
            path: path.clone(),
        })
    }

    /// The value of `key` under any of its names; both a name and an alias → error.
    fn take(&mut self, key: Key) -> Result<Option<(&'a Value, JsonPath)>> {
        let mut found: Option<(&str, &'a Value)> = None;
        for name in key {
            if let Some(value) = self.map.get(*name) {
                if let Some((first, _)) = found {
                    return Err(invalid(
                        &self.path.key(name),
                        format!("`{first}` and `{name}` are the same key; give only one"),
                    ));
                }
                found = Some((name, value));
            }
        }
        Ok(found.map(|(name, value)| (value, self.path.key(name))))
    }

    fn require(&mut self, key: Key) -> Result<(&'a Value, JsonPath)> {
        self.take(key)?
            .ok_or_else(|| invalid(&self.path, format!("missing required key `{}`", key[0])))
    }
}

/// The accepted name closest to `key` (case-insensitive edit distance ≤ 2), if any.
fn suggest(key: &str, keys: &[Key]) -> Option<&'static str> {
    fn distance(a: &str, b: &str) -> usize {
        // The accepted keys are ASCII, so ASCII case folding is enough (and keeps Unicode's case
        // tables out of the wasm).
        let a: Vec<char> = a.chars().map(|c| c.to_ascii_lowercase()).collect();
        let b: Vec<char> = b.chars().map(|c| c.to_ascii_lowercase()).collect();
        let mut row: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.iter().enumerate() {
            let mut prev = row[0];
            row[0] = i + 1;
            for (j, cb) in b.iter().enumerate() {
                let cur = row[j + 1];
                row[j + 1] = (prev + usize::from(ca != cb)).min(row[j] + 1).min(cur + 1);
                prev = cur;
            }
        }
        row[b.len()]
    }
    if key.len() > 64 {
        return None;
    }
    keys.iter()
        .flat_map(|k| k.iter())
        .map(|name| (distance(key, name), *name))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, name)| name)
}

// ---------------------------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------------------------

fn bytes(value: &Value, path: &JsonPath) -> Result<u64> {
    let Value::Number(n) = value else {
        return Err(expected(path, "a byte count (integer)", value));
    };
    if let Some(v) = n.as_u64() {
        if v > MAX_SAFE_INTEGER {
            return Err(invalid(path, format!("{v} is above 2^53 - 1")));
        }
        return Ok(v);
    }
    if n.is_i64() {
        return Err(invalid(path, format!("{n} is negative")));
    }
    let f = n.as_f64().unwrap_or(f64::NAN);
    if f < 0.0 {
        Err(invalid(path, format!("{n} is negative")))
    } else if f.fract() != 0.0 {
        Err(invalid(path, format!("{n} is not a whole number of bytes")))
    } else if f > MAX_SAFE_INTEGER as f64 {
        Err(invalid(path, format!("{n} is above 2^53 - 1")))
    } else {
        Ok(f as u64)
    }
}

fn string<'a>(value: &'a Value, path: &JsonPath) -> Result<&'a str> {
    value
        .as_str()
        .ok_or_else(|| expected(path, "a string", value))
}

fn array<'a>(value: &'a Value, path: &JsonPath) -> Result<&'a [Value]> {
    value
        .as_array()
        .map(Vec::as_slice)
        .ok_or_else(|| expected(path, "an array", value))
}

fn url(value: &Value, path: &JsonPath, base: &Url) -> Result<Url> {
    let text = string(value, path)?;
    let parsed = crate::core::urls::join(base, text).map_err(|e| {
        invalid(
            path,
            format!("URL {:?} does not parse: {e}", printable(text)),
        )
    })?;
    check_download_url(&parsed).map_err(|reason| invalid(path, reason))?;
    Ok(parsed)
}

fn version(value: &Value, path: &JsonPath) -> Result<String> {
    let text = match value {
        Value::String(s) => s.as_str(),
        Value::Number(_) => {
            return Err(invalid(
                path,
                format!("expected a string, found a number (write \"{value}\")"),
            ))
        }
        other => return Err(expected(path, "a string", other)),
    };
    if text.is_empty() {
        return Err(invalid(path, "is empty"));
    }
    if text.len() > MAX_VERSION_LEN {
        return Err(invalid(
            path,
            format!("is {} bytes long, at most {MAX_VERSION_LEN}", text.len()),
        ));
    }
    if text.chars().any(char::is_control) {
        return Err(invalid(path, "contains control characters"));
    }
    Ok(text.to_string())
}

fn identifier(value: &Value, path: &JsonPath) -> Result<Identifier> {
    let text = string(value, path)?;
    Identifier::new(text).map_err(|e| match e {
        Error::InvalidIdentifier { identifier, reason } => {
            invalid(path, format!("identifier {identifier:?} {reason}"))
        }
        other => other,
    })
}

fn file_path(value: &Value, path: &JsonPath) -> Result<String> {
    let text = string(value, path)?;
    let refuse = |why: &str| invalid(path, format!("file path {:?} {why}", printable(text)));
    if text.is_empty() {
        return Err(refuse("is empty"));
    }
    if text.len() > MAX_FILE_PATH_LEN {
        return Err(refuse(&format!("is longer than {MAX_FILE_PATH_LEN} bytes")));
    }
    if text.starts_with('/') {
        return Err(refuse("is absolute; give a path relative to the pack"));
    }
    if text.contains('\\') {
        return Err(refuse("contains `\\`; use `/`"));
    }
    if text.chars().any(char::is_control) {
        return Err(refuse("contains control characters"));
    }
    for segment in text.split('/') {
        // A URL parser reads `%2e` as `.`: `%2e%2e` is a `..` segment once the path is in a URL.
        match segment.to_ascii_lowercase().replace("%2e", ".").as_str() {
            "" => return Err(refuse("has an empty segment (`//` or a trailing `/`)")),
            "." | ".." => return Err(refuse("has a `.` or `..` segment (`%2e` is a `.`)")),
            _ => {}
        }
    }
    Ok(text.to_string())
}

fn sha256(value: &Value, path: &JsonPath) -> Result<[u8; 32]> {
    let text = string(value, path)?;
    if text.len() != 64 {
        return Err(invalid(
            path,
            format!(
                "a SHA-256 digest is 64 hex digits; found {} characters",
                text.chars().count()
            ),
        ));
    }
    let mut digest = [0u8; 32];
    let digits = text.as_bytes();
    for (i, byte) in digest.iter_mut().enumerate() {
        let mut v = 0u8;
        for &c in &digits[2 * i..2 * i + 2] {
            let d = (c as char).to_digit(16).ok_or_else(|| {
                let shown = text.chars().find(|c| !c.is_ascii_hexdigit()).unwrap_or('?');
                invalid(path, format!("{shown:?} is not a hex digit"))
            })?;
            v = (v << 4) | d as u8;
        }
        *byte = v;
    }
    Ok(digest)
}

fn restrictions(value: &Value, path: &JsonPath) -> Result<InitialDownloadRestrictions> {
    let mut obj = Obj::new(value, path, RESTRICTION_KEYS)?;
    let download_allowance = obj
        .take(DOWNLOAD_ALLOWANCE)?
        .map(|(v, p)| bytes(v, &p))
        .transpose()?
        .unwrap_or(0);
    let essential_download_allowance = obj
        .take(ESSENTIAL_ALLOWANCE)?
        .map(|(v, p)| bytes(v, &p))
        .transpose()?
        .unwrap_or(0);
    let domain_allow_list = match obj.take(ALLOW_LIST)? {
        None => DomainAllowList::SameOriginOnly,
        Some((v, p)) => {
            let items = array(v, &p)?;
            let mut entries = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                entries.push(string(item, &p.index(i))?);
            }
            DomainAllowList::parse_at(entries, &p.0)?
        }
    };
    Ok(InitialDownloadRestrictions {
        download_allowance,
        essential_download_allowance,
        domain_allow_list,
    })
}

fn event_types(value: &Value, path: &JsonPath) -> Result<InstallationEventTypes> {
    let items = array(value, path)?;
    if items.is_empty() {
        return Err(invalid(
            path,
            "lists no event; omit the key for both, or use downloadPolicy \"onDemand\"",
        ));
    }
    let mut types = InstallationEventTypes::NONE;
    for (i, item) in items.iter().enumerate() {
        let item_path = path.index(i);
        let flag = match string(item, &item_path)? {
            "firstInstallation" => &mut types.first_installation,
            "subsequentUpdate" => &mut types.subsequent_update,
            other => {
                return Err(invalid(
                    &item_path,
                    format!(
                        "unknown installation event type {:?}; expected firstInstallation or subsequentUpdate",
                        printable(other)
                    ),
                ))
            }
        };
        if *flag {
            return Err(invalid(&item_path, "listed twice"));
        }
        *flag = true;
    }
    Ok(types)
}

/// `downloadPolicy`: a name, or Apple's `{ "<name>": { "installationEventTypes": [...] } }`.
fn download_policy(
    value: &Value,
    path: &JsonPath,
) -> Result<(DownloadPolicy, Option<InstallationEventTypes>)> {
    let unknown = |p: &JsonPath, name: &str| {
        invalid(
            p,
            format!(
                "unknown download policy {:?}; expected essential, prefetch or onDemand",
                printable(name)
            ),
        )
    };
    match value {
        Value::String(name) => DownloadPolicy::parse(name)
            .map(|p| (p, None))
            .ok_or_else(|| unknown(path, name)),
        Value::Object(map) => {
            let mut entries = map.iter().filter(|(k, _)| !is_extension_key(k));
            let (Some((name, inner)), None) = (entries.next(), entries.next()) else {
                return Err(invalid(
                    path,
                    "an object policy has exactly one key: essential, prefetch or onDemand",
                ));
            };
            let inner_path = path.key(name);
            let policy = DownloadPolicy::parse(name).ok_or_else(|| unknown(&inner_path, name))?;
            let mut obj = Obj::new(inner, &inner_path, POLICY_OBJECT_KEYS)?;
            let types = obj
                .take(EVENT_TYPES)?
                .map(|(v, p)| event_types(v, &p))
                .transpose()?;
            Ok((policy, types))
        }
        other => Err(expected(
            path,
            "a string (essential, prefetch or onDemand)",
            other,
        )),
    }
}

fn packs(value: &Value, path: &JsonPath, base: &Url) -> Result<Vec<AssetPack>> {
    let items = array(value, path)?;
    if items.len() > MAX_PACKS {
        return Err(invalid(
            path,
            format!("{} packs; at most {MAX_PACKS} are allowed", items.len()),
        ));
    }
    let mut seen: HashMap<Identifier, usize> = HashMap::new();
    let mut files_total = 0usize;
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let pack_path = path.index(i);
        let pack = pack(item, &pack_path, base, &mut files_total)?;
        if let Some(first) = seen.get(&pack.id) {
            return Err(invalid(
                &pack_path.key("id"),
                format!(
                    "duplicate pack id `{}` (first at {})",
                    pack.id,
                    path.index(*first)
                ),
            ));
        }
        seen.insert(pack.id.clone(), i);
        out.push(pack);
    }
    Ok(out)
}

fn pack(value: &Value, path: &JsonPath, base: &Url, files_total: &mut usize) -> Result<AssetPack> {
    let mut obj = Obj::new(value, path, PACK_KEYS)?;
    let (v, p) = obj.require(&["id", "assetPackID"])?;
    let id = identifier(v, &p)?;
    let (v, p) = obj.require(&["version"])?;
    let version = version(v, &p)?;
    let (v, policy_path) = obj.require(&["downloadPolicy"])?;
    let (download_policy, nested_types) = download_policy(v, &policy_path)?;
    let listed = obj.take(EVENT_TYPES)?;
    let installation_event_types = match (listed, nested_types) {
        (Some((_, p)), Some(_)) => {
            return Err(invalid(
                &p,
                "event types are also given inside downloadPolicy; give them once",
            ))
        }
        (Some((_, p)), None) if download_policy == DownloadPolicy::OnDemand => {
            return Err(invalid(
                &p,
                "onDemand packs are not downloaded on installation events; remove this key",
            ))
        }
        (None, Some(_)) if download_policy == DownloadPolicy::OnDemand => {
            return Err(invalid(
                &policy_path.key("onDemand"),
                "onDemand packs are not downloaded on installation events",
            ))
        }
        (Some((v, p)), None) => event_types(v, &p)?,
        (None, Some(types)) => types,
        (None, None) if download_policy == DownloadPolicy::OnDemand => InstallationEventTypes::NONE,
        (None, None) => InstallationEventTypes::ALL,
    };

    let (v, files_path) = obj.require(&["files"])?;
    let items = array(v, &files_path)?;
    let mut paths: HashMap<&str, usize> = HashMap::new();
    let mut files = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let item_path = files_path.index(i);
        *files_total += 1;
        if *files_total > MAX_FILES {
            return Err(invalid(
                &item_path,
                format!("more than {MAX_FILES} files in all packs together"),
            ));
        }
        let parsed = file(item, &item_path, base)?;
        let key = item.get("path").and_then(Value::as_str).unwrap_or_default();
        if let Some(first) = paths.get(key) {
            return Err(invalid(
                &item_path.key("path"),
                format!(
                    "duplicate file path {:?} (first at {})",
                    printable(key),
                    files_path.index(*first)
                ),
            ));
        }
        paths.insert(key, i);
        files.push(parsed);
    }
    Ok(AssetPack {
        id,
        version,
        download_policy,
        installation_event_types,
        files,
    })
}

fn file(value: &Value, path: &JsonPath, base: &Url) -> Result<PackFile> {
    let mut obj = Obj::new(value, path, FILE_KEYS)?;
    let (v, p) = obj.require(&["path"])?;
    let file_path = file_path(v, &p)?;
    let (v, p) = obj.require(&["url"])?;
    let url = url(v, &p, base)?;
    let (v, p) = obj.require(&["size"])?;
    let size = bytes(v, &p)?;
    let (v, p) = obj.require(&["sha256"])?;
    let sha256 = sha256(v, &p)?;
    let chunks = match obj.take(&["chunks"])? {
        Some((v, p)) => Some(chunk_digests(v, &p, size)?),
        None => None,
    };
    Ok(PackFile {
        path: file_path,
        url,
        size,
        sha256,
        chunks,
    })
}

/// A file's `chunks`: `{"size": <bytes per chunk>, "sha256": [<one digest per chunk>]}` for a
/// file of `file_size` bytes.
fn chunk_digests(value: &Value, path: &JsonPath, file_size: u64) -> Result<ChunkDigests> {
    let mut obj = Obj::new(value, path, CHUNKS_KEYS)?;
    let (v, p) = obj.require(&["size"])?;
    let chunk_size = bytes(v, &p)?;
    if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&chunk_size) {
        return Err(invalid(
            &p,
            format!(
                "a chunk size is {MIN_CHUNK_SIZE}..={MAX_CHUNK_SIZE} bytes (16 KiB to 64 MiB); found {chunk_size}"
            ),
        ));
    }
    let (v, p) = obj.require(&["sha256"])?;
    let Value::Array(items) = v else {
        return Err(expected(&p, "an array of SHA-256 digests", v));
    };
    ChunkDigests::check_count(chunk_size as u32, items.len(), file_size)
        .map_err(|reason| invalid(&p, reason))?;
    let sha256 = items
        .iter()
        .enumerate()
        .map(|(i, item)| sha256(item, &p.index(i)))
        .collect::<Result<Vec<_>>>()?;
    Ok(ChunkDigests {
        chunk_size: chunk_size as u32,
        sha256,
    })
}

// ---------------------------------------------------------------------------------------------
// Strict JSON reading: duplicate keys, depth and array length, with paths
// ---------------------------------------------------------------------------------------------

/// Parses `json` into a [`Value`], refusing (with the JSON path) duplicate object keys, nesting
/// deeper than [`MAX_DEPTH`] and arrays longer than [`MAX_ARRAY_LEN`]; syntax errors are reported
/// at `$` with serde_json's line and column.
fn parse_value(json: &str) -> Result<Value> {
    if json.len() > MAX_INPUT_BYTES {
        return Err(invalid(
            &JsonPath::root(),
            format!(
                "input is {} bytes; at most {MAX_INPUT_BYTES} (16 MiB) are allowed",
                json.len()
            ),
        ));
    }
    let failure = RefCell::new(None);
    let mut deserializer = serde_json::Deserializer::from_str(json);
    let seed = StrictValue {
        path: &Segment::Root,
        depth: 0,
        failure: &failure,
    };
    let result = seed
        .deserialize(&mut deserializer)
        .and_then(|v| deserializer.end().map(|()| v));
    match result {
        Ok(value) => Ok(value),
        Err(e) => Err(match failure.into_inner() {
            Some((path, reason)) => Error::InvalidDeclaration {
                path,
                reason: format!("{reason} (line {}, column {})", e.line(), e.column()),
            },
            None => invalid(&JsonPath::root(), format!("invalid JSON: {e}")),
        }),
    }
}

/// A path built while parsing, without allocating until an error needs it.
enum Segment<'a> {
    Root,
    Key(&'a Segment<'a>, &'a str),
    Index(&'a Segment<'a>, usize),
}

impl Segment<'_> {
    fn to_path(&self) -> JsonPath {
        match self {
            Segment::Root => JsonPath::root(),
            Segment::Key(parent, key) => parent.to_path().key(key),
            Segment::Index(parent, i) => parent.to_path().index(*i),
        }
    }
}

struct StrictValue<'p, 'f> {
    path: &'p Segment<'p>,
    depth: usize,
    failure: &'f RefCell<Option<(String, String)>>,
}

impl StrictValue<'_, '_> {
    fn fail<E: de::Error>(&self, path: &Segment<'_>, reason: String) -> E {
        let message = reason.clone();
        *self.failure.borrow_mut() = Some((path.to_path().0, reason));
        E::custom(message)
    }

    fn enter<E: de::Error>(&self) -> std::result::Result<(), E> {
        if self.depth >= MAX_DEPTH {
            return Err(self.fail(self.path, format!("nested deeper than {MAX_DEPTH} levels")));
        }
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for StrictValue<'_, '_> {
    type Value = Value;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> std::result::Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue<'_, '_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> std::result::Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> std::result::Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> std::result::Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> std::result::Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> std::result::Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> std::result::Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Value, A::Error> {
        self.enter()?;
        let mut items = Vec::new();
        loop {
            let index = items.len();
            let child_path = Segment::Index(self.path, index);
            if index >= MAX_ARRAY_LEN {
                // Refuse only if there really is one more element.
                let probe = StrictValue {
                    path: &child_path,
                    depth: self.depth + 1,
                    failure: self.failure,
                };
                if seq.next_element_seed(probe)?.is_some() {
                    return Err(self.fail(
                        self.path,
                        format!("array has more than {MAX_ARRAY_LEN} items"),
                    ));
                }
                break;
            }
            let child = StrictValue {
                path: &child_path,
                depth: self.depth + 1,
                failure: self.failure,
            };
            match seq.next_element_seed(child)? {
                Some(value) => items.push(value),
                None => break,
            }
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Value, A::Error> {
        self.enter()?;
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let child_path = Segment::Key(self.path, &key);
            if out.contains_key(&key) {
                return Err(self.fail(&child_path, "duplicate key".to_string()));
            }
            let child = StrictValue {
                path: &child_path,
                depth: self.depth + 1,
                failure: self.failure,
            };
            let value = map.next_value_seed(child)?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}
