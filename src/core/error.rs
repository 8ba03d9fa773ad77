//! The one error type of the library, with stable numeric codes.
//!
//! Codes below 1000 follow Apple's `BAErrorCode` raw values, so code ported from Swift can match on
//! the same numbers; codes from 1000 up are the web's own (storage quota, integrity, HTTP, locks).
//! A code, once published, never changes meaning. JavaScript sees each error as an `Error` whose
//! `code` is [`Error::code`] and whose `name` is [`Error::name`].
//!
//! # Example
//! ```
//! use background_assets::core::error::Error;
//!
//! let e = Error::DownloadDoesNotExist { identifier: "level-2".into() };
//! assert_eq!(e.code(), 113);
//! assert_eq!(e.name(), "DownloadDoesNotExist");
//! assert!(e.to_string().contains("level-2"));
//! ```

use std::fmt;

/// Everything that can go wrong, one variant per cause. Each variant names what was wrong.
///
/// Serializable (externally tagged by variant name: `{"HttpStatus":{"identifier":"a","status":404}}`)
/// so that a stored manager keeps its pending events. Deserialized by hand ([`Error::from_json`]):
/// serde's derive gives each variant its own copy of the JSON reader (about 60 KB of wasm), so a
/// new variant also needs its line there (the round-trip test lists every variant).
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize)]
pub enum Error {
    // --- Apple's BAErrorCode analogues -------------------------------------------------------
    /// The download description itself is invalid (bad identifier, URL, size, header...).
    #[error("download invalid: {reason}")]
    DownloadInvalid { reason: String },
    /// The call is only allowed from a page (the "app"), not from the service worker.
    #[error("{call} cannot be called from the extension (service worker)")]
    CallFromExtensionNotAllowed { call: Text },
    /// The call needs a visible, active page.
    #[error("{call} cannot be called from an inactive page")]
    CallFromInactiveProcessNotAllowed { call: Text },
    /// A download with this identifier is already scheduled or running.
    #[error("download `{identifier}` is already scheduled")]
    DownloadAlreadyScheduled { identifier: String },
    /// The download is not scheduled, so it cannot be paused, cancelled or promoted.
    #[error("download `{identifier}` is not scheduled")]
    DownloadNotScheduled { identifier: String },
    /// The download could not be started.
    #[error("download `{identifier}` failed to start: {reason}")]
    DownloadFailedToStart { identifier: String, reason: String },
    /// The download has already failed; schedule it again to retry.
    #[error("download `{identifier}` has already failed")]
    DownloadAlreadyFailed { identifier: String },
    /// Essential downloads may only be scheduled during install or update.
    #[error("essential download `{identifier}` is not permitted outside install/update")]
    DownloadEssentialDownloadNotPermitted { identifier: String },
    /// Background activity is prohibited (for example the engine or user disabled it).
    #[error("background activity is prohibited: {reason}")]
    DownloadBackgroundActivityProhibited { reason: String },
    /// Scheduling this download would exceed the remaining allowance.
    #[error("download `{identifier}` of {requested} bytes would exceed the allowance ({remaining} bytes left)")]
    DownloadWouldExceedAllowance {
        identifier: String,
        requested: u64,
        remaining: u64,
    },
    /// No download or stored asset has this identifier.
    #[error("download `{identifier}` does not exist")]
    DownloadDoesNotExist { identifier: String },
    /// The URL's host is not in the declaration's domain allow-list.
    #[error("host `{host}` is not in the download domain allow-list")]
    SessionDownloadDisallowedByDomain { host: String },
    /// The download needs an exact size before first launch, and has none.
    #[error("download `{identifier}` has no declared size, required before first launch")]
    SessionDownloadDisallowedByAllowance { identifier: String },
    /// The server sent more bytes than the allowance permits before first launch.
    #[error("download `{identifier}` exceeded the allowance before first launch")]
    SessionDownloadAllowanceExceeded { identifier: String },
    /// This kind of download may not run before the app's first launch.
    #[error("download `{identifier}` is not permitted before the app's first launch")]
    SessionDownloadNotPermittedBeforeAppLaunch { identifier: String },

    // --- Declaration (pkg.json / manifest) ---------------------------------------------------
    /// The declaration or manifest is invalid; `path` is the JSON path of the bad value
    /// (for example `$.assetPacks[1].files[0].sha256`).
    #[error("invalid declaration at {path}: {reason}")]
    InvalidDeclaration { path: String, reason: String },
    /// An identifier is empty, too long or has characters outside `[A-Za-z0-9._-]`.
    #[error("invalid identifier `{identifier}`: {reason}")]
    InvalidIdentifier { identifier: String, reason: String },
    /// A state change that the download state machine does not allow.
    #[error("download `{identifier}` cannot go from {from} to {to}")]
    InvalidTransition {
        identifier: String,
        from: Text,
        to: Text,
    },
    /// No asset pack has this id.
    #[error("asset pack `{id}` does not exist")]
    AssetPackDoesNotExist { id: String },
    /// The install would take more space than the declaration's maximum install size.
    #[error("installing {needed} bytes would exceed the max install size of {limit} bytes")]
    MaxInstallSizeExceeded { needed: u64, limit: u64 },

    // --- The web's own -----------------------------------------------------------------------
    /// The origin's storage quota is exhausted; nothing else stored was changed.
    #[error("storage quota exceeded while storing `{identifier}`")]
    QuotaExceeded { identifier: String },
    /// Not enough storage is available for the download to start.
    #[error("not enough storage: {needed} bytes needed, {available} available")]
    InsufficientStorage { needed: u64, available: u64 },
    /// The finished file's SHA-256 differs from the declared one.
    #[error("`{identifier}` failed integrity check: expected sha256 {expected}, got {actual}")]
    IntegrityMismatch {
        identifier: String,
        expected: String,
        actual: String,
    },
    /// A chunk's SHA-256 differs from the one the declaration lists for it (see
    /// [`ChunkDigests`](crate::core::integrity::ChunkDigests)): the chunk was not stored; the
    /// chunks before it were, each verified.
    #[error(
        "`{identifier}` failed integrity check at byte {offset}: expected the chunk's sha256 {expected}, got {actual}"
    )]
    ChunkIntegrityMismatch {
        identifier: String,
        offset: u64,
        expected: String,
        actual: String,
    },
    /// The finished file's size differs from the declared one.
    #[error("`{identifier}` has {actual} bytes, {expected} were declared")]
    SizeMismatch {
        identifier: String,
        expected: u64,
        actual: u64,
    },
    /// The server answered a range request in a way that cannot be resumed from.
    #[error("server refused the range request: {reason}")]
    ServerRefusedRange { reason: String },
    /// The server answered with an HTTP status that ends the download (404, 410, 4xx...).
    #[error("HTTP {status} for `{identifier}`")]
    HttpStatus { identifier: String, status: u16 },
    /// Authentication was required (401/403/407) and the delegate declined.
    #[error("authentication required for `{identifier}` (HTTP {status})")]
    AuthenticationRequired { identifier: String, status: u16 },
    /// A network error (connection refused, reset, DNS...).
    #[error("network error: {message}")]
    Network { message: String },
    /// Retries ran out; `last` says what the last attempt saw.
    #[error("`{identifier}` failed after {attempts} attempts; last: {last}")]
    RetriesExhausted {
        identifier: String,
        attempts: u32,
        last: String,
    },
    /// The transfer ran below the lowest accepted speed for too long.
    #[error("`{identifier}` stalled: below {min_bytes_per_sec} B/s for {window_ms} ms")]
    Stalled {
        identifier: String,
        min_bytes_per_sec: u64,
        window_ms: u64,
    },
    /// `no-cors` / opaque responses are refused: they allow no progress, Range or hashing.
    #[error("opaque (no-cors) response refused for {url}")]
    OpaqueResponseRefused { url: String },
    /// Credentials would be sent to another origin.
    #[error("credentials may not be sent to another origin ({url})")]
    CrossOriginCredentials { url: String },
    /// An exclusive-control lock was not acquired before its deadline.
    #[error("lock `{name}` not acquired within {timeout_ms} ms")]
    LockTimeout { name: String, timeout_ms: u64 },
    /// This writer's fencing token is stale: another context took over the download.
    #[error("`{identifier}` is now owned by another context (epoch {held} < {current})")]
    StaleEpoch {
        identifier: String,
        held: u64,
        current: u64,
    },
    /// The container (IndexedDB) failed.
    #[error("storage error: {message}")]
    Storage { message: String },
    /// The download was cancelled.
    #[error("`{identifier}` was cancelled")]
    Cancelled { identifier: String },
    /// The engine lacks an API the call needs.
    #[error("not supported in this engine: {what}")]
    Unsupported { what: String },
    /// A JavaScript caller passed a value of the wrong type or shape (`argument` names it, for
    /// example `setDelegate(delegate)` or `open(options).database`).
    #[error("invalid argument `{argument}`: {reason}")]
    InvalidArgument { argument: String, reason: String },
}

/// A call name or a state label: `&'static str` when the code makes the error, owned text
/// when a stored error is read back (so deserializing never leaks or borrows).
pub type Text = std::borrow::Cow<'static, str>;

/// A stable numeric code, as JavaScript sees it in `error.code`.
pub type Code = u32;

impl Error {
    /// The stable numeric code of this error. Codes below 1000 are Apple's `BAErrorCode` values.
    pub fn code(&self) -> Code {
        use Error::*;
        match self {
            DownloadInvalid { .. } => 0,
            CallFromExtensionNotAllowed { .. } => 50,
            CallFromInactiveProcessNotAllowed { .. } => 51,
            DownloadAlreadyScheduled { .. } => 100,
            DownloadNotScheduled { .. } => 101,
            DownloadFailedToStart { .. } => 102,
            DownloadAlreadyFailed { .. } => 103,
            DownloadEssentialDownloadNotPermitted { .. } => 109,
            DownloadBackgroundActivityProhibited { .. } => 111,
            DownloadWouldExceedAllowance { .. } => 112,
            DownloadDoesNotExist { .. } => 113,
            SessionDownloadDisallowedByDomain { .. } => 202,
            SessionDownloadDisallowedByAllowance { .. } => 203,
            SessionDownloadAllowanceExceeded { .. } => 204,
            SessionDownloadNotPermittedBeforeAppLaunch { .. } => 206,
            InvalidDeclaration { .. } => 1000,
            InvalidIdentifier { .. } => 1001,
            InvalidTransition { .. } => 1002,
            AssetPackDoesNotExist { .. } => 1003,
            MaxInstallSizeExceeded { .. } => 1004,
            QuotaExceeded { .. } => 1100,
            InsufficientStorage { .. } => 1101,
            IntegrityMismatch { .. } => 1200,
            ChunkIntegrityMismatch { .. } => 1202,
            SizeMismatch { .. } => 1201,
            ServerRefusedRange { .. } => 1300,
            HttpStatus { .. } => 1301,
            AuthenticationRequired { .. } => 1302,
            Network { .. } => 1303,
            RetriesExhausted { .. } => 1304,
            Stalled { .. } => 1305,
            OpaqueResponseRefused { .. } => 1306,
            CrossOriginCredentials { .. } => 1307,
            LockTimeout { .. } => 1400,
            StaleEpoch { .. } => 1401,
            Storage { .. } => 1500,
            Cancelled { .. } => 1600,
            Unsupported { .. } => 1700,
            InvalidArgument { .. } => 1800,
        }
    }

    /// The variant's name, as JavaScript sees it in `error.name` (stable, like the code).
    pub fn name(&self) -> &'static str {
        use Error::*;
        match self {
            DownloadInvalid { .. } => "DownloadInvalid",
            CallFromExtensionNotAllowed { .. } => "CallFromExtensionNotAllowed",
            CallFromInactiveProcessNotAllowed { .. } => "CallFromInactiveProcessNotAllowed",
            DownloadAlreadyScheduled { .. } => "DownloadAlreadyScheduled",
            DownloadNotScheduled { .. } => "DownloadNotScheduled",
            DownloadFailedToStart { .. } => "DownloadFailedToStart",
            DownloadAlreadyFailed { .. } => "DownloadAlreadyFailed",
            DownloadEssentialDownloadNotPermitted { .. } => "DownloadEssentialDownloadNotPermitted",
            DownloadBackgroundActivityProhibited { .. } => "DownloadBackgroundActivityProhibited",
            DownloadWouldExceedAllowance { .. } => "DownloadWouldExceedAllowance",
            DownloadDoesNotExist { .. } => "DownloadDoesNotExist",
            SessionDownloadDisallowedByDomain { .. } => "SessionDownloadDisallowedByDomain",
            SessionDownloadDisallowedByAllowance { .. } => "SessionDownloadDisallowedByAllowance",
            SessionDownloadAllowanceExceeded { .. } => "SessionDownloadAllowanceExceeded",
            SessionDownloadNotPermittedBeforeAppLaunch { .. } => {
                "SessionDownloadNotPermittedBeforeAppLaunch"
            }
            InvalidDeclaration { .. } => "InvalidDeclaration",
            InvalidIdentifier { .. } => "InvalidIdentifier",
            InvalidTransition { .. } => "InvalidTransition",
            AssetPackDoesNotExist { .. } => "AssetPackDoesNotExist",
            MaxInstallSizeExceeded { .. } => "MaxInstallSizeExceeded",
            QuotaExceeded { .. } => "QuotaExceeded",
            InsufficientStorage { .. } => "InsufficientStorage",
            IntegrityMismatch { .. } => "IntegrityMismatch",
            ChunkIntegrityMismatch { .. } => "ChunkIntegrityMismatch",
            SizeMismatch { .. } => "SizeMismatch",
            ServerRefusedRange { .. } => "ServerRefusedRange",
            HttpStatus { .. } => "HttpStatus",
            AuthenticationRequired { .. } => "AuthenticationRequired",
            Network { .. } => "Network",
            RetriesExhausted { .. } => "RetriesExhausted",
            Stalled { .. } => "Stalled",
            OpaqueResponseRefused { .. } => "OpaqueResponseRefused",
            CrossOriginCredentials { .. } => "CrossOriginCredentials",
            LockTimeout { .. } => "LockTimeout",
            StaleEpoch { .. } => "StaleEpoch",
            Storage { .. } => "Storage",
            Cancelled { .. } => "Cancelled",
            Unsupported { .. } => "Unsupported",
            InvalidArgument { .. } => "InvalidArgument",
        }
    }

    /// Whether another attempt may succeed (network faults, 5xx, stalls), as opposed to a
    /// verdict that retrying cannot change (404, integrity, policy, bad input).
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Network { .. } | Error::Stalled { .. })
            || matches!(self, Error::HttpStatus { status, .. } if *status >= 500 || *status == 408 || *status == 429)
    }
}

impl Error {
    /// An error from its JSON form (what `serde_json::to_string` of it writes):
    /// `{"<Variant>":{<fields>}}`. The `Err` names what was wrong.
    ///
    /// # Example
    /// ```
    /// use background_assets::core::error::Error;
    /// let json = serde_json::json!({ "HttpStatus": { "identifier": "a", "status": 404 } });
    /// assert_eq!(
    ///     Error::from_json(&json),
    ///     Ok(Error::HttpStatus { identifier: "a".into(), status: 404 })
    /// );
    /// assert!(Error::from_json(&serde_json::json!({ "Nope": {} })).unwrap_err().contains("Nope"));
    /// ```
    pub fn from_json(value: &serde_json::Value) -> std::result::Result<Error, String> {
        let only = value
            .as_object()
            .filter(|outer| outer.len() == 1)
            .and_then(|outer| outer.iter().next());
        let Some((name, fields)) = only else {
            return Err("an error is an object with one key, its variant".into());
        };
        let Some(fields) = fields.as_object() else {
            return Err(format!("the fields of error `{name}` are not an object"));
        };
        let field = |key: &str| {
            fields
                .get(key)
                .ok_or_else(|| format!("missing field `{key}` of error `{name}`"))
        };
        let s = |key: &str| {
            field(key)?
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| format!("field `{key}` of error `{name}` is not a string"))
        };
        let n = |key: &str| {
            field(key)?
                .as_u64()
                .ok_or_else(|| format!("field `{key}` of error `{name}` is not a whole number"))
        };
        let small = |key: &str, max: u64| {
            n(key).and_then(|v| {
                if v <= max {
                    Ok(v)
                } else {
                    Err(format!("field `{key}` of error `{name}` is above {max}"))
                }
            })
        };
        let t = |key: &str| s(key).map(Text::from);
        use Error::*;
        Ok(match name.as_str() {
            "DownloadInvalid" => DownloadInvalid {
                reason: s("reason")?,
            },
            "CallFromExtensionNotAllowed" => CallFromExtensionNotAllowed { call: t("call")? },
            "CallFromInactiveProcessNotAllowed" => {
                CallFromInactiveProcessNotAllowed { call: t("call")? }
            }
            "DownloadAlreadyScheduled" => DownloadAlreadyScheduled {
                identifier: s("identifier")?,
            },
            "DownloadNotScheduled" => DownloadNotScheduled {
                identifier: s("identifier")?,
            },
            "DownloadFailedToStart" => DownloadFailedToStart {
                identifier: s("identifier")?,
                reason: s("reason")?,
            },
            "DownloadAlreadyFailed" => DownloadAlreadyFailed {
                identifier: s("identifier")?,
            },
            "DownloadEssentialDownloadNotPermitted" => DownloadEssentialDownloadNotPermitted {
                identifier: s("identifier")?,
            },
            "DownloadBackgroundActivityProhibited" => DownloadBackgroundActivityProhibited {
                reason: s("reason")?,
            },
            "DownloadWouldExceedAllowance" => DownloadWouldExceedAllowance {
                identifier: s("identifier")?,
                requested: n("requested")?,
                remaining: n("remaining")?,
            },
            "DownloadDoesNotExist" => DownloadDoesNotExist {
                identifier: s("identifier")?,
            },
            "SessionDownloadDisallowedByDomain" => {
                SessionDownloadDisallowedByDomain { host: s("host")? }
            }
            "SessionDownloadDisallowedByAllowance" => SessionDownloadDisallowedByAllowance {
                identifier: s("identifier")?,
            },
            "SessionDownloadAllowanceExceeded" => SessionDownloadAllowanceExceeded {
                identifier: s("identifier")?,
            },
            "SessionDownloadNotPermittedBeforeAppLaunch" => {
                SessionDownloadNotPermittedBeforeAppLaunch {
                    identifier: s("identifier")?,
                }
            }
            "InvalidDeclaration" => InvalidDeclaration {
                path: s("path")?,
                reason: s("reason")?,
            },
            "InvalidIdentifier" => InvalidIdentifier {
                identifier: s("identifier")?,
                reason: s("reason")?,
            },
            "InvalidTransition" => InvalidTransition {
                identifier: s("identifier")?,
                from: t("from")?,
                to: t("to")?,
            },
            "AssetPackDoesNotExist" => AssetPackDoesNotExist { id: s("id")? },
            "MaxInstallSizeExceeded" => MaxInstallSizeExceeded {
                needed: n("needed")?,
                limit: n("limit")?,
            },
            "QuotaExceeded" => QuotaExceeded {
                identifier: s("identifier")?,
            },
            "InsufficientStorage" => InsufficientStorage {
                needed: n("needed")?,
                available: n("available")?,
            },
            "IntegrityMismatch" => IntegrityMismatch {
                identifier: s("identifier")?,
                expected: s("expected")?,
                actual: s("actual")?,
            },
            "ChunkIntegrityMismatch" => ChunkIntegrityMismatch {
                identifier: s("identifier")?,
                offset: n("offset")?,
                expected: s("expected")?,
                actual: s("actual")?,
            },
            "SizeMismatch" => SizeMismatch {
                identifier: s("identifier")?,
                expected: n("expected")?,
                actual: n("actual")?,
            },
            "ServerRefusedRange" => ServerRefusedRange {
                reason: s("reason")?,
            },
            "HttpStatus" => HttpStatus {
                identifier: s("identifier")?,
                status: small("status", u16::MAX.into())? as u16,
            },
            "AuthenticationRequired" => AuthenticationRequired {
                identifier: s("identifier")?,
                status: small("status", u16::MAX.into())? as u16,
            },
            "Network" => Network {
                message: s("message")?,
            },
            "RetriesExhausted" => RetriesExhausted {
                identifier: s("identifier")?,
                attempts: small("attempts", u32::MAX.into())? as u32,
                last: s("last")?,
            },
            "Stalled" => Stalled {
                identifier: s("identifier")?,
                min_bytes_per_sec: n("min_bytes_per_sec")?,
                window_ms: n("window_ms")?,
            },
            "OpaqueResponseRefused" => OpaqueResponseRefused { url: s("url")? },
            "CrossOriginCredentials" => CrossOriginCredentials { url: s("url")? },
            "LockTimeout" => LockTimeout {
                name: s("name")?,
                timeout_ms: n("timeout_ms")?,
            },
            "StaleEpoch" => StaleEpoch {
                identifier: s("identifier")?,
                held: n("held")?,
                current: n("current")?,
            },
            "Storage" => Storage {
                message: s("message")?,
            },
            "Cancelled" => Cancelled {
                identifier: s("identifier")?,
            },
            "Unsupported" => Unsupported { what: s("what")? },
            "InvalidArgument" => InvalidArgument {
                argument: s("argument")?,
                reason: s("reason")?,
            },
            other => return Err(format!("unknown error variant `{other}`")),
        })
    }
}

impl<'de> serde::Deserialize<'de> for Error {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        Error::from_json(&value).map_err(serde::de::Error::custom)
    }
}

/// A short, stable label for a state or kind, used in [`Error::InvalidTransition`].
pub trait Label {
    /// The label.
    fn label(&self) -> &'static str;
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Formats a byte string as lowercase hex (for digests in errors and logs).
pub fn hex(bytes: &[u8]) -> String {
    struct Hex<'a>(&'a [u8]);
    impl fmt::Display for Hex<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            for b in self.0 {
                write!(f, "{b:02x}")?;
            }
            Ok(())
        }
    }
    Hex(bytes).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn all() -> Vec<Error> {
        let id = || "x".to_string();
        vec![
            Error::DownloadInvalid { reason: id() },
            Error::CallFromExtensionNotAllowed { call: "c".into() },
            Error::CallFromInactiveProcessNotAllowed { call: "c".into() },
            Error::DownloadAlreadyScheduled { identifier: id() },
            Error::DownloadNotScheduled { identifier: id() },
            Error::DownloadFailedToStart {
                identifier: id(),
                reason: id(),
            },
            Error::DownloadAlreadyFailed { identifier: id() },
            Error::DownloadEssentialDownloadNotPermitted { identifier: id() },
            Error::DownloadBackgroundActivityProhibited { reason: id() },
            Error::DownloadWouldExceedAllowance {
                identifier: id(),
                requested: 1,
                remaining: 0,
            },
            Error::DownloadDoesNotExist { identifier: id() },
            Error::SessionDownloadDisallowedByDomain { host: id() },
            Error::SessionDownloadDisallowedByAllowance { identifier: id() },
            Error::SessionDownloadAllowanceExceeded { identifier: id() },
            Error::SessionDownloadNotPermittedBeforeAppLaunch { identifier: id() },
            Error::InvalidDeclaration {
                path: id(),
                reason: id(),
            },
            Error::InvalidIdentifier {
                identifier: id(),
                reason: id(),
            },
            Error::InvalidTransition {
                identifier: id(),
                from: "a".into(),
                to: "b".into(),
            },
            Error::AssetPackDoesNotExist { id: id() },
            Error::MaxInstallSizeExceeded {
                needed: 2,
                limit: 1,
            },
            Error::QuotaExceeded { identifier: id() },
            Error::InsufficientStorage {
                needed: 2,
                available: 1,
            },
            Error::IntegrityMismatch {
                identifier: id(),
                expected: id(),
                actual: id(),
            },
            Error::ChunkIntegrityMismatch {
                identifier: id(),
                offset: 4,
                expected: id(),
                actual: id(),
            },
            Error::SizeMismatch {
                identifier: id(),
                expected: 1,
                actual: 2,
            },
            Error::ServerRefusedRange { reason: id() },
            Error::HttpStatus {
                identifier: id(),
                status: 404,
            },
            Error::AuthenticationRequired {
                identifier: id(),
                status: 401,
            },
            Error::Network { message: id() },
            Error::RetriesExhausted {
                identifier: id(),
                attempts: 3,
                last: id(),
            },
            Error::Stalled {
                identifier: id(),
                min_bytes_per_sec: 1,
                window_ms: 1,
            },
            Error::OpaqueResponseRefused { url: id() },
            Error::CrossOriginCredentials { url: id() },
            Error::LockTimeout {
                name: id(),
                timeout_ms: 1,
            },
            Error::StaleEpoch {
                identifier: id(),
                held: 1,
                current: 2,
            },
            Error::Storage { message: id() },
            Error::Cancelled { identifier: id() },
            Error::Unsupported { what: id() },
            Error::InvalidArgument {
                argument: id(),
                reason: id(),
            },
        ]
    }

    #[test]
    fn codes_and_names_are_unique() {
        let errors = all();
        let codes: HashSet<_> = errors.iter().map(Error::code).collect();
        let names: HashSet<_> = errors.iter().map(Error::name).collect();
        assert_eq!(codes.len(), errors.len());
        assert_eq!(names.len(), errors.len());
        for e in &errors {
            assert!(format!("{e:?}").starts_with(e.name()), "name of {e:?}");
        }
    }

    #[test]
    fn apple_codes_are_apples() {
        assert_eq!(Error::DownloadInvalid { reason: "".into() }.code(), 0);
        assert_eq!(
            Error::CallFromExtensionNotAllowed { call: "x".into() }.code(),
            50
        );
        assert_eq!(
            Error::SessionDownloadDisallowedByDomain { host: "".into() }.code(),
            202
        );
    }

    #[test]
    fn transient_errors() {
        assert!(Error::Network {
            message: "reset".into()
        }
        .is_transient());
        assert!(Error::HttpStatus {
            identifier: "a".into(),
            status: 503
        }
        .is_transient());
        assert!(!Error::HttpStatus {
            identifier: "a".into(),
            status: 404
        }
        .is_transient());
        assert!(!Error::IntegrityMismatch {
            identifier: "a".into(),
            expected: "".into(),
            actual: "".into()
        }
        .is_transient());
    }

    #[test]
    fn serde_round_trips_every_variant() {
        for e in all() {
            let json = serde_json::to_string(&e).unwrap();
            let back: Error = serde_json::from_str(&json).unwrap();
            assert_eq!(back, e, "{json}");
        }
    }

    /// Every variant of `all()` has its own name, so a variant missing from `from_json` fails
    /// the round trip; malformed forms are refused naming what was wrong.
    #[test]
    fn from_json_refuses_malformed_errors_by_name() {
        use serde_json::json;
        for (value, named) in [
            (json!("HttpStatus"), "one key"),
            (json!({ "HttpStatus": {}, "Network": {} }), "one key"),
            (json!({ "HttpStatus": 5 }), "not an object"),
            (
                json!({ "HttpStatus": { "identifier": "a" } }),
                "missing field `status`",
            ),
            (
                json!({ "HttpStatus": { "identifier": 1, "status": 404 } }),
                "`identifier` of error `HttpStatus` is not a string",
            ),
            (
                json!({ "HttpStatus": { "identifier": "a", "status": 70000 } }),
                "above 65535",
            ),
            (
                json!({ "SizeMismatch": { "identifier": "a", "expected": -1, "actual": 1 } }),
                "not a whole number",
            ),
            (json!({ "Nope": {} }), "unknown error variant `Nope`"),
        ] {
            let err = Error::from_json(&value).unwrap_err();
            assert!(err.contains(named), "{value}: {err}");
            let err = serde_json::from_value::<Error>(value.clone()).unwrap_err();
            assert!(err.to_string().contains(named), "{value}: {err}");
        }
        // Unknown extra fields are ignored, as serde's derive did.
        assert_eq!(
            Error::from_json(&json!({ "Cancelled": { "identifier": "a", "extra": true } })),
            Ok(Error::Cancelled {
                identifier: "a".into()
            })
        );
    }

    /// Every variant (each has an arm in `code()`, which the compiler keeps exhaustive) has its
    /// arm in `from_json` and is in `all()`, so the round trip above covers it.
    #[test]
    fn from_json_and_the_test_list_name_every_variant() {
        let src = include_str!("error.rs");
        let between = |from: &str, to: &str| {
            let start = src.find(from).unwrap();
            &src[start..start + src[start..].find(to).unwrap()]
        };
        let code = between("pub fn code(&self)", "pub fn name(&self)");
        let from_json = between("pub fn from_json(", "other => return Err");
        let listed: HashSet<&str> = all().iter().map(Error::name).collect();
        let mut variants = 0;
        for line in code.lines() {
            let Some((variant, _)) = line.trim().split_once(" { .. } =>") else {
                continue;
            };
            variants += 1;
            assert!(
                from_json.contains(&format!("\"{variant}\" =>")),
                "{variant} in from_json"
            );
            assert!(listed.contains(variant), "{variant} in all()");
        }
        assert_eq!(variants, listed.len());
    }

    #[test]
    fn hex_formats() {
        assert_eq!(hex(&[0, 15, 255]), "000fff");
    }
}
