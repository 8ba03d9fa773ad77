//! What a download is: its [`Identifier`], [`DownloadRequest`], [`Priority`], the
//! [`UrlDownload`] that bundles them (Apple's `BAURLDownload`), and the [`DownloadState`] machine.
//!
//! Every constructor validates, so a value of these types is always usable by the engine; values
//! loaded from storage can be re-checked with [`UrlDownload::validate`].
//!
//! # Example
//! ```
//! use background_assets::core::download::*;
//!
//! let id = Identifier::new("level-2")?;
//! let request = DownloadRequest::get("https://cdn.example.com/levels/2.bin")?;
//! let mut download = UrlDownload::new(id, request, true, Some(1_048_576), Priority::DEFAULT, 0)?;
//! assert!(download.essential);
//!
//! let mut state = DownloadState::Created;
//! state.transition(DownloadState::Waiting, &download.identifier)?;
//! assert!(state.transition(DownloadState::Finished, &download.identifier).is_err());
//! # Ok::<(), background_assets::core::error::Error>(())
//! ```

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use url::Url;

use super::error::{Error, Label, Result};
use super::Millis;

/// The largest integer JavaScript represents exactly (2^53 − 1). Sizes above it are refused so
/// that the JS face never rounds a byte count.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

// ---------------------------------------------------------------------------------------------
// Identifier
// ---------------------------------------------------------------------------------------------

/// A validated download or asset-pack identifier. It becomes an IndexedDB key and part of cache
/// keys, so it is deliberately narrow:
///
/// * 1 to [`Identifier::MAX_LEN`] bytes,
/// * only ASCII letters, digits, `.`, `_` and `-`,
/// * not `.` or `..`.
///
/// # Example
/// ```
/// use background_assets::core::download::Identifier;
///
/// let id = Identifier::new("maps.europe-v2")?;
/// assert_eq!(id.as_str(), "maps.europe-v2");
/// assert!(Identifier::new("../etc/passwd").is_err());
/// assert!(Identifier::new("").is_err());
/// # Ok::<(), background_assets::core::error::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Identifier(String);

impl Identifier {
    /// Longest accepted identifier, in bytes.
    pub const MAX_LEN: usize = 128;

    /// Validates `value` and wraps it; [`Error::InvalidIdentifier`] says what was wrong.
    pub fn new(value: impl Into<String>) -> Result<Self> {
        let value = value.into();
        let refuse = |reason: String| Error::InvalidIdentifier {
            identifier: printable(&value),
            reason,
        };
        if value.is_empty() {
            return Err(refuse("is empty".into()));
        }
        if value.len() > Self::MAX_LEN {
            return Err(refuse(format!(
                "is {} bytes long, at most {} are allowed",
                value.len(),
                Self::MAX_LEN
            )));
        }
        if let Some(c) = value
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(refuse(format!(
                "contains {c:?}; only A-Z, a-z, 0-9, `.`, `_` and `-` are allowed"
            )));
        }
        if value == "." || value == ".." {
            return Err(refuse("`.` and `..` are reserved".into()));
        }
        Ok(Identifier(value))
    }

    /// The identifier as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Shortens and escapes untrusted text for an error message.
pub(crate) fn printable(value: &str) -> String {
    const SHOWN: usize = 64;
    let mut out: String = value
        .chars()
        .take(SHOWN)
        .flat_map(char::escape_default)
        .collect();
    if value.chars().count() > SHOWN {
        out.push('…');
    }
    out
}

impl fmt::Display for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Identifier {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for Identifier {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Identifier {
    type Error = Error;
    fn try_from(value: String) -> Result<Self> {
        Identifier::new(value)
    }
}

impl TryFrom<&str> for Identifier {
    type Error = Error;
    fn try_from(value: &str) -> Result<Self> {
        Identifier::new(value)
    }
}

impl FromStr for Identifier {
    type Err = Error;
    fn from_str(value: &str) -> Result<Self> {
        Identifier::new(value)
    }
}

impl From<Identifier> for String {
    fn from(id: Identifier) -> String {
        id.0
    }
}

impl PartialEq<str> for Identifier {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Identifier {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

// ---------------------------------------------------------------------------------------------
// Priority
// ---------------------------------------------------------------------------------------------

/// How important a download is relative to others of the same kind (Apple's
/// `BADownloaderPriority`: an integer, higher is more important).
///
/// Here the range is `0..=100` with [`Priority::DEFAULT`] = 50 in the middle, so a download can be
/// made less important than the default as well as more. [`Priority::new`] clamps any `i64` into
/// the range (Apple accepts any `Int`), and [`FromStr`] also accepts the names `min`, `default`
/// and `max`. It is stored as a plain JSON number.
///
/// # Example
/// ```
/// use background_assets::core::download::Priority;
///
/// assert!(Priority::MAX > Priority::DEFAULT && Priority::DEFAULT > Priority::MIN);
/// assert_eq!(Priority::new(1_000), Priority::MAX);
/// assert_eq!(Priority::new(-5), Priority::MIN);
/// assert_eq!("default".parse::<Priority>()?, Priority::DEFAULT);
/// assert_eq!("70".parse::<Priority>()?.value(), 70);
/// # Ok::<(), background_assets::core::error::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Priority(u8);

impl Priority {
    /// The lowest priority.
    pub const MIN: Priority = Priority(0);
    /// The priority of a download that does not say (the middle of the range).
    pub const DEFAULT: Priority = Priority(50);
    /// The highest priority.
    pub const MAX: Priority = Priority(100);

    /// A priority from any integer, clamped into `MIN..=MAX`.
    pub fn new(value: i64) -> Priority {
        Priority(value.clamp(Self::MIN.0 as i64, Self::MAX.0 as i64) as u8)
    }

    /// The numeric value, `0..=100`.
    pub fn value(self) -> u8 {
        self.0
    }
}

impl Default for Priority {
    fn default() -> Self {
        Priority::DEFAULT
    }
}

impl FromStr for Priority {
    type Err = Error;
    fn from_str(text: &str) -> Result<Self> {
        match text {
            "min" => Ok(Priority::MIN),
            "default" => Ok(Priority::DEFAULT),
            "max" => Ok(Priority::MAX),
            _ => text
                .parse::<i64>()
                .map(Priority::new)
                .map_err(|_| Error::DownloadInvalid {
                    reason: format!(
                        "priority {:?} is neither an integer nor min/default/max",
                        printable(text)
                    ),
                }),
        }
    }
}

impl<'de> Deserialize<'de> for Priority {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // A visitor, not an untagged enum: those buffer the value through serde's private
        // content type, which costs wasm size.
        struct PriorityVisitor;
        impl serde::de::Visitor<'_> for PriorityVisitor {
            type Value = Priority;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer or one of min/default/max")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Priority, E> {
                Ok(Priority::new(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Priority, E> {
                Ok(Priority::new(i64::try_from(v).unwrap_or(i64::MAX)))
            }
            fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<Priority, E> {
                name.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_any(PriorityVisitor)
    }
}

// ---------------------------------------------------------------------------------------------
// DownloadRequest
// ---------------------------------------------------------------------------------------------

/// Headers the engine sets itself, or the browser forbids scripts to set (the Fetch standard's
/// forbidden request headers plus `Range` / `If-Range`, which resumption owns, and the
/// method-override headers, since a download is always a `GET`). Compared
/// case-insensitively; `Proxy-*` and `Sec-*` prefixes are forbidden too.
pub const FORBIDDEN_HEADERS: &[&str] = &[
    "accept-charset",
    "accept-encoding",
    "access-control-request-headers",
    "access-control-request-method",
    "connection",
    "content-length",
    "cookie",
    "cookie2",
    "date",
    "dnt",
    "expect",
    "host",
    "if-range",
    "keep-alive",
    "origin",
    "range",
    "referer",
    "set-cookie",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "via",
    "x-http-method",
    "x-http-method-override",
    "x-method-override",
];

/// Most headers a request may carry.
pub const MAX_HEADERS: usize = 64;
/// Longest URL accepted, in bytes.
pub const MAX_URL_LEN: usize = 8 * 1024;

/// What to fetch: an `http(s)` URL and extra headers. The method is always `GET` (see
/// [`DownloadRequest::METHOD`]); the engine adds `Range` and `If-Range` itself when it resumes.
///
/// # Example
/// ```
/// use background_assets::core::download::DownloadRequest;
///
/// let request = DownloadRequest::get("https://cdn.example.com/a.bin")?
///     .with_header("Authorization", "Bearer abc")?;
/// assert_eq!(request.headers.len(), 1);
/// assert!(DownloadRequest::get("ftp://cdn.example.com/a.bin").is_err());
/// assert!(request.clone().with_header("Range", "bytes=0-").is_err());
/// # Ok::<(), background_assets::core::error::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", try_from = "RawDownloadRequest")]
pub struct DownloadRequest {
    /// The resource; `http` or `https`, no user name or password.
    #[serde(with = "url_text")]
    pub url: Url,
    /// Extra request headers, in order; names are HTTP tokens, values have no CR, LF or NUL.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
}

impl DownloadRequest {
    /// The only method downloads use.
    pub const METHOD: &'static str = "GET";

    /// A `GET` request for `url` (parsed and checked with [`check_download_url`]).
    pub fn get(url: &str) -> Result<Self> {
        let parsed = crate::core::urls::parse(url).map_err(|e| Error::DownloadInvalid {
            reason: format!("URL {:?} does not parse: {e}", printable(url)),
        })?;
        Self::from_url(parsed)
    }

    /// A `GET` request for an already parsed URL.
    pub fn from_url(url: Url) -> Result<Self> {
        check_download_url(&url).map_err(|reason| Error::DownloadInvalid { reason })?;
        Ok(DownloadRequest {
            url,
            headers: Vec::new(),
        })
    }

    /// Adds a header after validating it (see [`check_header`]).
    pub fn with_header(mut self, name: &str, value: &str) -> Result<Self> {
        check_header(name, value).map_err(|reason| Error::DownloadInvalid { reason })?;
        if self.headers.len() >= MAX_HEADERS {
            return Err(Error::DownloadInvalid {
                reason: format!("more than {MAX_HEADERS} headers"),
            });
        }
        self.headers.push((name.to_string(), value.to_string()));
        Ok(self)
    }

    /// Re-checks the URL and every header (for requests loaded from storage).
    pub fn validate(&self) -> Result<()> {
        check_download_url(&self.url).map_err(|reason| Error::DownloadInvalid { reason })?;
        if self.headers.len() > MAX_HEADERS {
            return Err(Error::DownloadInvalid {
                reason: format!("more than {MAX_HEADERS} headers"),
            });
        }
        for (name, value) in &self.headers {
            check_header(name, value).map_err(|reason| Error::DownloadInvalid { reason })?;
        }
        Ok(())
    }
}

/// Checks that a URL may be downloaded: `http` or `https`, a host, no credentials, at most
/// [`MAX_URL_LEN`] bytes. Returns the reason when it may not.
///
/// # Example
/// ```
/// use background_assets::core::download::check_download_url;
/// use url::Url;
///
/// assert!(check_download_url(&Url::parse("https://cdn.example.com/x").unwrap()).is_ok());
/// assert!(check_download_url(&Url::parse("https://user:pw@cdn.example.com/x").unwrap()).is_err());
/// assert!(check_download_url(&Url::parse("data:text/plain,hi").unwrap()).is_err());
/// ```
pub fn check_download_url(url: &Url) -> std::result::Result<(), String> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "URL scheme `{}` is not http or https",
            printable(url.scheme())
        ));
    }
    if url.host().is_none() {
        return Err("URL has no host".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("URL must not contain a user name or password".into());
    }
    if url.as_str().len() > MAX_URL_LEN {
        return Err(format!(
            "URL is {} bytes long, at most {MAX_URL_LEN} are allowed",
            url.as_str().len()
        ));
    }
    Ok(())
}

/// Checks one request header: the name is an HTTP token and not in [`FORBIDDEN_HEADERS`] (nor
/// `Proxy-*` / `Sec-*`), the value has no CR, LF or NUL and no leading/trailing whitespace.
///
/// # Example
/// ```
/// use background_assets::core::download::check_header;
///
/// assert!(check_header("X-Api-Key", "k").is_ok());
/// assert!(check_header("Host", "evil.example").is_err());
/// assert!(check_header("X-A", "a\r\nInjected: 1").is_err());
/// ```
pub fn check_header(name: &str, value: &str) -> std::result::Result<(), String> {
    let is_tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(is_tchar) {
        return Err(format!(
            "header name {:?} is not an HTTP token",
            printable(name)
        ));
    }
    let lower = name.to_ascii_lowercase();
    if FORBIDDEN_HEADERS.contains(&lower.as_str())
        || lower.starts_with("proxy-")
        || lower.starts_with("sec-")
    {
        return Err(format!(
            "header `{name}` is set by the browser or the engine and may not be given"
        ));
    }
    if value.len() > 8 * 1024 {
        return Err(format!("value of header `{name}` is longer than 8 KiB"));
    }
    if value.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
        return Err(format!("value of header `{name}` contains CR, LF or NUL"));
    }
    if value.trim_matches([' ', '\t']) != value {
        return Err(format!(
            "value of header `{name}` has leading or trailing whitespace"
        ));
    }
    Ok(())
}

mod url_text {
    use serde::{Deserialize, Deserializer, Serializer};
    use url::Url;

    pub fn serialize<S: Serializer>(url: &Url, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(url.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Url, D::Error> {
        let text = String::deserialize(d)?;
        crate::core::urls::parse(&text).map_err(serde::de::Error::custom)
    }
}

// ---------------------------------------------------------------------------------------------
// UrlDownload
// ---------------------------------------------------------------------------------------------

/// The asset-pack file a download belongs to, when it was made from a declaration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PackMember {
    /// The pack's id.
    pub pack_id: Identifier,
    /// The file's path inside the pack (as declared).
    pub path: String,
}

/// One download, Apple's `BAURLDownload(identifier:request:essential:fileSize:
/// applicationGroupIdentifier:priority:)`. Stored as camelCase JSON.
///
/// Rules checked by [`UrlDownload::new`] and [`UrlDownload::validate`] ([`Error::DownloadInvalid`]):
/// an essential download must give its exact `file_size`; a size is at most
/// [`MAX_SAFE_INTEGER`]; the request is valid; the application group, when given, follows the
/// [`Identifier`] rules.
///
/// # Example
/// ```
/// use background_assets::core::download::*;
/// use background_assets::core::error::Error;
///
/// let request = DownloadRequest::get("https://cdn.example.com/big.bin")?;
/// let id = Identifier::new("big")?;
/// // Essential downloads need their exact size.
/// let err = UrlDownload::new(id.clone(), request.clone(), true, None, Priority::DEFAULT, 0);
/// assert!(matches!(err, Err(Error::DownloadInvalid { .. })));
/// let d = UrlDownload::new(id, request, false, None, Priority::MAX, 1_000)?
///     .with_application_group("group.example")?;
/// assert_eq!(d.application_group.as_deref(), Some("group.example"));
/// # Ok::<(), background_assets::core::error::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", try_from = "RawUrlDownload")]
pub struct UrlDownload {
    /// Unique among the origin's downloads; the storage key of the file.
    pub identifier: Identifier,
    /// What to fetch.
    pub request: DownloadRequest,
    /// Essential downloads run during install/update and must finish before the app is "ready".
    pub essential: bool,
    /// The exact size in bytes, if known (required when `essential`).
    pub file_size: Option<u64>,
    /// Relative importance.
    #[serde(default)]
    pub priority: Priority,
    /// Apple's application group: here the name of the container the file is stored in.
    #[serde(default)]
    pub application_group: Option<String>,
    /// The declared asset-pack file this download fetches, if any.
    #[serde(default)]
    pub pack: Option<PackMember>,
    /// When it was created, on the driver's clock (orders equal-priority downloads by age).
    pub created_at: Millis,
}

impl UrlDownload {
    /// A validated download (see the type's rules).
    pub fn new(
        identifier: Identifier,
        request: DownloadRequest,
        essential: bool,
        file_size: Option<u64>,
        priority: Priority,
        created_at: Millis,
    ) -> Result<Self> {
        let download = UrlDownload {
            identifier,
            request,
            essential,
            file_size,
            priority,
            application_group: None,
            pack: None,
            created_at,
        };
        download.validate()?;
        Ok(download)
    }

    /// Sets the application group (validated with the [`Identifier`] rules).
    pub fn with_application_group(mut self, group: impl Into<String>) -> Result<Self> {
        let group = Identifier::new(group)?;
        self.application_group = Some(group.into());
        Ok(self)
    }

    /// Records which asset-pack file this download fetches.
    pub fn with_pack(mut self, pack_id: Identifier, path: impl Into<String>) -> Self {
        self.pack = Some(PackMember {
            pack_id,
            path: path.into(),
        });
        self
    }

    /// Checks every rule again. Deserialization already does this; call it after changing fields.
    pub fn validate(&self) -> Result<()> {
        // The identifier is validated by construction and by deserialization.
        self.request.validate()?;
        match self.file_size {
            None if self.essential => {
                return Err(Error::DownloadInvalid {
                    reason: format!(
                        "essential download `{}` must declare its exact file size",
                        self.identifier
                    ),
                })
            }
            Some(size) if size > MAX_SAFE_INTEGER => {
                return Err(Error::DownloadInvalid {
                    reason: format!(
                        "file size {size} of `{}` is above 2^53 - 1",
                        self.identifier
                    ),
                })
            }
            _ => {}
        }
        if let Some(group) = &self.application_group {
            Identifier::new(group.as_str())?;
        }
        Ok(())
    }
}

/// The stored form of a [`DownloadRequest`], validated on the way in.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDownloadRequest {
    #[serde(with = "url_text")]
    url: Url,
    #[serde(default)]
    headers: Vec<(String, String)>,
}

impl TryFrom<RawDownloadRequest> for DownloadRequest {
    type Error = Error;
    fn try_from(raw: RawDownloadRequest) -> Result<Self> {
        let request = DownloadRequest {
            url: raw.url,
            headers: raw.headers,
        };
        request.validate()?;
        Ok(request)
    }
}

/// The stored form of a [`UrlDownload`], validated on the way in.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawUrlDownload {
    identifier: Identifier,
    request: DownloadRequest,
    essential: bool,
    file_size: Option<u64>,
    #[serde(default)]
    priority: Priority,
    #[serde(default)]
    application_group: Option<String>,
    #[serde(default)]
    pack: Option<PackMember>,
    created_at: Millis,
}

impl TryFrom<RawUrlDownload> for UrlDownload {
    type Error = Error;
    fn try_from(raw: RawUrlDownload) -> Result<Self> {
        let download = UrlDownload {
            identifier: raw.identifier,
            request: raw.request,
            essential: raw.essential,
            file_size: raw.file_size,
            priority: raw.priority,
            application_group: raw.application_group,
            pack: raw.pack,
            created_at: raw.created_at,
        };
        download.validate()?;
        Ok(download)
    }
}

// ---------------------------------------------------------------------------------------------
// DownloadState
// ---------------------------------------------------------------------------------------------

/// Where a download is in its life. Stored as a camelCase string (`"created"`, `"waiting"`, ...).
///
/// The legal moves ([`DownloadState::can_transition`]); anything else, including staying in the
/// same state, is [`Error::InvalidTransition`]:
///
/// | from | to | why |
/// |---|---|---|
/// | created | waiting | scheduled |
/// | created | downloading | started in the foreground straight away |
/// | created | failed | refused by policy before it was queued |
/// | waiting | downloading | the queue started it |
/// | waiting | paused | paused by the app |
/// | waiting | failed | cancelled |
/// | downloading | paused | paused by the app, or the context went away |
/// | downloading | waiting | retry after a transient fault, or pre-empted by a foreground one |
/// | downloading | finished | all bytes stored and verified |
/// | downloading | failed | fatal error or cancelled |
/// | paused | waiting | resumed (background) |
/// | paused | downloading | resumed in the foreground |
/// | paused | failed | cancelled |
///
/// `finished` is terminal. `failed` is terminal for [`transition`](Self::transition); scheduling
/// the same download again is an explicit act, [`reschedule`](Self::reschedule), the only way
/// out of `failed` (to `waiting`).
///
/// # Example
/// ```
/// use background_assets::core::download::{DownloadState, Identifier};
///
/// let id = Identifier::new("a")?;
/// let mut s = DownloadState::Waiting;
/// s.transition(DownloadState::Downloading, &id)?;
/// s.transition(DownloadState::Failed, &id)?;
/// assert!(s.transition(DownloadState::Waiting, &id).is_err());
/// s.reschedule(&id)?;
/// assert_eq!(s, DownloadState::Waiting);
/// # Ok::<(), background_assets::core::error::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum DownloadState {
    /// Described but not yet scheduled.
    Created,
    /// Scheduled; waiting for a slot (or for a retry time).
    Waiting,
    /// Bytes are being fetched.
    Downloading,
    /// Stopped on request; keeps its progress.
    Paused,
    /// Stored and verified.
    Finished,
    /// Ended with an error (or cancelled).
    Failed,
}

impl DownloadState {
    /// Every state, in life order.
    pub const ALL: [DownloadState; 6] = [
        DownloadState::Created,
        DownloadState::Waiting,
        DownloadState::Downloading,
        DownloadState::Paused,
        DownloadState::Finished,
        DownloadState::Failed,
    ];

    /// Whether `self -> to` is in the table above.
    pub fn can_transition(self, to: DownloadState) -> bool {
        use DownloadState::*;
        matches!(
            (self, to),
            (Created, Waiting | Downloading | Failed)
                | (Waiting, Downloading | Paused | Failed)
                | (Downloading, Paused | Waiting | Finished | Failed)
                | (Paused, Waiting | Downloading | Failed)
        )
    }

    /// Moves to `to`, or returns [`Error::InvalidTransition`] naming `identifier` and both states.
    pub fn transition(&mut self, to: DownloadState, identifier: &Identifier) -> Result<()> {
        if self.can_transition(to) {
            *self = to;
            Ok(())
        } else {
            Err(Error::InvalidTransition {
                identifier: identifier.to_string(),
                from: self.label().into(),
                to: to.label().into(),
            })
        }
    }

    /// Schedules a failed download again (`failed -> waiting`); refused from any other state.
    pub fn reschedule(&mut self, identifier: &Identifier) -> Result<()> {
        if *self == DownloadState::Failed {
            *self = DownloadState::Waiting;
            Ok(())
        } else {
            Err(Error::InvalidTransition {
                identifier: identifier.to_string(),
                from: self.label().into(),
                to: DownloadState::Waiting.label().into(),
            })
        }
    }

    /// `finished` or `failed`.
    pub fn is_terminal(self) -> bool {
        matches!(self, DownloadState::Finished | DownloadState::Failed)
    }

    /// `waiting`, `downloading` or `paused`: the download is scheduled and counts against slots
    /// and allowances.
    pub fn is_scheduled(self) -> bool {
        matches!(
            self,
            DownloadState::Waiting | DownloadState::Downloading | DownloadState::Paused
        )
    }
}

impl Label for DownloadState {
    fn label(&self) -> &'static str {
        match self {
            DownloadState::Created => "created",
            DownloadState::Waiting => "waiting",
            DownloadState::Downloading => "downloading",
            DownloadState::Paused => "paused",
            DownloadState::Finished => "finished",
            DownloadState::Failed => "failed",
        }
    }
}

impl fmt::Display for DownloadState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}
