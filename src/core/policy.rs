//! Who may download what, and how much: the domain allow-list, the allowances before first
//! launch, and the install-size and storage pre-flight checks.
//!
//! Decisions (Apple's rules where they exist, the web's where they do not):
//!
//! * **Allow-list.** Entries are host names (`cdn.example.com`), leading-wildcard host names
//!   (`*.example.org`: any sub-domain, at any depth, but not `example.org` itself) and IP
//!   literals (`127.0.0.1`, `[::1]`), compared after IDNA normalisation (`url` gives lowercase
//!   punycode). Ports and schemes are not part of an entry: `http` and `https` on any port match.
//!   The page's **own origin is always allowed**. An absent or empty list is
//!   [`DomainAllowList::SameOriginOnly`]. Unlike Apple (where the list only restricts the
//!   pre-launch phase), the list **keeps applying after first launch**: it is the app's statement
//!   of where its assets come from, and it is checked again on the final URL after redirects
//!   ([`Policy::check_redirect`]).
//! * **Allowances.** Before first launch ([`Policy::lift`] not yet called), every download needs
//!   an exact size; essential downloads are charged to `essentialDownloadAllowance`, the others to
//!   `downloadAllowance`. The two pools are separate (as Apple's are), so an essential allowance
//!   larger than the download allowance is fine. Cancelling refunds the bytes not yet received.
//!   After first launch nothing is charged.
//!
//! # Example
//! ```
//! use background_assets::core::download::*;
//! use background_assets::core::policy::*;
//! use url::Url;
//!
//! let restrictions = InitialDownloadRestrictions {
//!     download_allowance: 1_000,
//!     essential_download_allowance: 500,
//!     domain_allow_list: DomainAllowList::parse(["cdn.example.com"])?,
//! };
//! let page = Url::parse("https://app.example.com/").unwrap();
//! let mut policy = Policy::new(restrictions, &page);
//!
//! let request = DownloadRequest::get("https://cdn.example.com/a.bin")?;
//! let d = UrlDownload::new(Identifier::new("a")?, request, true, Some(400), Priority::DEFAULT, 0)?;
//! policy.admit(&d)?;
//! assert_eq!(policy.remaining(), Some(RemainingAllowance { essential: 100, total: 1_000 }));
//! policy.lift();
//! assert_eq!(policy.remaining(), None);
//! # Ok::<(), background_assets::core::error::Error>(())
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use url::{Host, Url};

use super::download::{printable, Identifier, UrlDownload};
use super::error::{Error, Result};

/// Most entries an allow-list may have.
pub const MAX_ALLOW_LIST_ENTRIES: usize = 1_000;

// ---------------------------------------------------------------------------------------------
// Domain allow-list
// ---------------------------------------------------------------------------------------------

/// One allow-list entry, normalised.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DomainPattern {
    /// Exactly this host (lowercase, punycode).
    Host(String),
    /// Any strict sub-domain of this domain (`*.example.org` is stored as `example.org`).
    SubdomainsOf(String),
    /// Exactly this IP address.
    Ip(IpAddr),
}

impl DomainPattern {
    /// Parses one entry; the error is the reason it is malformed.
    ///
    /// # Example
    /// ```
    /// use background_assets::core::policy::DomainPattern;
    ///
    /// assert_eq!(DomainPattern::parse("*.Example.ORG"), Ok(DomainPattern::SubdomainsOf("example.org".into())));
    /// assert!(DomainPattern::parse("cdn.*.example.com").is_err());
    /// assert!(DomainPattern::parse("https://cdn.example.com").is_err());
    /// ```
    pub fn parse(entry: &str) -> std::result::Result<DomainPattern, String> {
        if entry.is_empty() {
            return Err("empty entry".into());
        }
        if entry.len() > 253 + 2 + 2 {
            return Err("entry is longer than a host name can be".into());
        }
        if entry.contains("://") {
            return Err("give a host name, not a URL (no scheme)".into());
        }
        if let Some(c) = entry.chars().find(|c| {
            matches!(c, '/' | '?' | '#' | '@' | '\\') || c.is_whitespace() || c.is_control()
        }) {
            return Err(format!(
                "{c:?} is not allowed: give a bare host name (no path, query, user or spaces)"
            ));
        }
        let (wildcard, rest) = match entry.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, entry),
        };
        if rest.contains('*') {
            return Err("`*` is only allowed as a leading `*.` label".into());
        }
        // A port: a colon outside an IPv6 literal.
        let is_bracketed = rest.starts_with('[') && rest.ends_with(']');
        if !is_bracketed && rest.contains(':') {
            return Err("ports are not allowed (an IPv6 literal needs brackets: `[::1]`)".into());
        }
        if !is_bracketed && rest.split('.').any(str::is_empty) {
            return Err("empty label (leading, trailing or doubled `.`)".into());
        }
        let host = crate::core::urls::parse_host(rest)
            .map_err(|e| format!("not a valid host name: {e}"))?;
        match host {
            Host::Domain(domain) => {
                if domain.split('.').any(str::is_empty) {
                    return Err("empty label".into());
                }
                Ok(if wildcard {
                    DomainPattern::SubdomainsOf(domain)
                } else {
                    DomainPattern::Host(domain)
                })
            }
            Host::Ipv4(_) | Host::Ipv6(_) if wildcard => {
                Err("a wildcard cannot apply to an IP address".into())
            }
            Host::Ipv4(ip) => Ok(DomainPattern::Ip(IpAddr::V4(ip))),
            Host::Ipv6(ip) => Ok(DomainPattern::Ip(IpAddr::V6(ip))),
        }
    }

    /// Whether `host` (as `Url::host` gives it) matches this entry.
    pub fn matches(&self, host: &Host<&str>) -> bool {
        match (self, host) {
            (DomainPattern::Host(want), Host::Domain(got)) => want.eq_ignore_ascii_case(got),
            (DomainPattern::SubdomainsOf(suffix), Host::Domain(got)) => {
                got.len() > suffix.len() + 1
                    && got.as_bytes()[got.len() - suffix.len() - 1] == b'.'
                    && got[got.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
            }
            (DomainPattern::Ip(IpAddr::V4(want)), Host::Ipv4(got)) => want == got,
            (DomainPattern::Ip(IpAddr::V6(want)), Host::Ipv6(got)) => want == got,
            _ => false,
        }
    }
}

impl fmt::Display for DomainPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DomainPattern::Host(h) => f.write_str(h),
            DomainPattern::SubdomainsOf(h) => write!(f, "*.{h}"),
            DomainPattern::Ip(IpAddr::V4(ip)) => write!(f, "{ip}"),
            DomainPattern::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
        }
    }
}

/// Where downloads may come from (the declaration's `domainAllowList`).
///
/// Serialized as the list of entries; `[]` is [`SameOriginOnly`](DomainAllowList::SameOriginOnly).
///
/// # Example
/// ```
/// use background_assets::core::policy::DomainAllowList;
/// use url::Url;
///
/// let list = DomainAllowList::parse(["cdn.example.com", "*.example.org", "127.0.0.1"])?;
/// let page = Url::parse("https://app.example.net/").unwrap().origin();
/// let allowed = |u: &str| list.allows(&Url::parse(u).unwrap(), &page);
/// assert!(allowed("https://CDN.example.com:8443/x"));
/// assert!(allowed("https://a.b.example.org/x"));
/// assert!(!allowed("https://example.org/x"));
/// assert!(allowed("http://127.0.0.1:9000/x"));
/// assert!(allowed("https://app.example.net/own-origin"));
/// assert!(!allowed("https://evil.example/x"));
/// # Ok::<(), background_assets::core::error::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum DomainAllowList {
    /// No list given: only the page's own origin.
    #[default]
    SameOriginOnly,
    /// The page's own origin and these hosts.
    Hosts(Vec<DomainPattern>),
}

impl DomainAllowList {
    /// Parses entries; a malformed one is [`Error::InvalidDeclaration`] with path
    /// `$.domainAllowList[i]` (the declaration parser re-roots the path). An empty list is
    /// [`DomainAllowList::SameOriginOnly`]; duplicates are refused.
    pub fn parse<I, S>(entries: I) -> Result<DomainAllowList>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self::parse_at(entries, "$.domainAllowList")
    }

    /// [`parse`](Self::parse), naming entries `{list_path}[i]` in errors.
    pub(crate) fn parse_at<I, S>(entries: I, list_path: &str) -> Result<DomainAllowList>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut patterns: Vec<DomainPattern> = Vec::new();
        for (i, entry) in entries.into_iter().enumerate() {
            let path = || format!("{list_path}[{i}]");
            if i >= MAX_ALLOW_LIST_ENTRIES {
                return Err(Error::InvalidDeclaration {
                    path: path(),
                    reason: format!("at most {MAX_ALLOW_LIST_ENTRIES} entries are allowed"),
                });
            }
            let entry = entry.as_ref();
            let pattern =
                DomainPattern::parse(entry).map_err(|reason| Error::InvalidDeclaration {
                    path: path(),
                    reason: format!("{:?}: {reason}", printable(entry)),
                })?;
            if patterns.contains(&pattern) {
                return Err(Error::InvalidDeclaration {
                    path: path(),
                    reason: format!("duplicate entry `{pattern}`"),
                });
            }
            patterns.push(pattern);
        }
        Ok(if patterns.is_empty() {
            DomainAllowList::SameOriginOnly
        } else {
            DomainAllowList::Hosts(patterns)
        })
    }

    /// The entries (none for `SameOriginOnly`).
    pub fn patterns(&self) -> &[DomainPattern] {
        match self {
            DomainAllowList::SameOriginOnly => &[],
            DomainAllowList::Hosts(p) => p,
        }
    }

    /// Whether `url` may be fetched by a page or worker of `page_origin`: same origin, or an
    /// `http(s)` URL whose host matches an entry.
    pub fn allows(&self, url: &Url, page_origin: &url::Origin) -> bool {
        if !matches!(url.scheme(), "http" | "https") {
            return false;
        }
        if &url.origin() == page_origin {
            return true;
        }
        match url.host() {
            Some(host) => self.patterns().iter().any(|p| p.matches(&host)),
            None => false,
        }
    }
}

impl Serialize for DomainAllowList {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_seq(self.patterns().iter().map(ToString::to_string))
    }
}

impl<'de> Deserialize<'de> for DomainAllowList {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let entries = Vec::<String>::deserialize(d)?;
        DomainAllowList::parse(entries).map_err(serde::de::Error::custom)
    }
}

// ---------------------------------------------------------------------------------------------
// Restrictions and allowance accounting
// ---------------------------------------------------------------------------------------------

/// The declaration's `initialDownloadRestrictions` (Apple's `BAInitialDownloadRestrictions`).
/// The default (no restrictions declared) is zero bytes for both pools and same-origin only:
/// nothing may be downloaded before first launch.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InitialDownloadRestrictions {
    /// Bytes of non-essential downloads allowed before first launch.
    pub download_allowance: u64,
    /// Bytes of essential downloads allowed before first launch (a separate pool).
    pub essential_download_allowance: u64,
    /// Where downloads may come from.
    pub domain_allow_list: DomainAllowList,
}

/// Bytes that may still be admitted before first launch, per pool. `total` is the
/// `downloadAllowance` pool, which non-essential downloads draw on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemainingAllowance {
    /// Left in the essential pool.
    pub essential: u64,
    /// Left in the (non-essential) download pool.
    pub total: u64,
}

/// Which pool a download was charged to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Pool {
    /// `essentialDownloadAllowance`.
    Essential,
    /// `downloadAllowance`.
    Download,
}

/// The outcome of [`Policy::admit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind", try_from = "AdmissionFields")]
pub enum Admission {
    /// After first launch: nothing charged, no byte limit.
    Unrestricted,
    /// Before first launch: `bytes` were charged to `pool`, and the download may not receive more.
    Charged {
        /// The pool charged.
        pool: Pool,
        /// Bytes charged (the download's declared size).
        bytes: u64,
    },
}

/// [`Admission`]'s kinds, the `kind` of its stored form.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "camelCase")]
enum AdmissionKind {
    Unrestricted,
    Charged,
}

/// A stored [`Admission`] read flat (see `EventFields` in `core::manager` for why).
#[derive(Deserialize)]
struct AdmissionFields {
    kind: AdmissionKind,
    pool: Option<Pool>,
    bytes: Option<u64>,
}

impl TryFrom<AdmissionFields> for Admission {
    type Error = String;
    fn try_from(f: AdmissionFields) -> Result<Self, String> {
        Ok(match f.kind {
            AdmissionKind::Unrestricted => Admission::Unrestricted,
            AdmissionKind::Charged => Admission::Charged {
                pool: f.pool.ok_or("missing field `pool`")?,
                bytes: f.bytes.ok_or("missing field `bytes`")?,
            },
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Admitted {
    admission: Admission,
    received: u64,
}

/// A storage estimate (`navigator.storage.estimate()`), in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StorageEstimate {
    /// Bytes the origin uses.
    pub usage: u64,
    /// Bytes the origin may use.
    pub quota: u64,
}

/// The policy's own fields, stored apart from the per-download admissions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PolicyHead {
    restrictions: InitialDownloadRestrictions,
    origin: String,
    launched: bool,
    used_essential: u64,
    used_total: u64,
}

/// Allowance accounting and domain checks for one origin. It is serializable so the driver can
/// store it and continue in the next worker.
///
/// # Example
/// ```
/// use background_assets::core::download::*;
/// use background_assets::core::error::Error;
/// use background_assets::core::policy::*;
/// use url::Url;
///
/// let page = Url::parse("https://app.example.com/").unwrap();
/// let restrictions = InitialDownloadRestrictions { download_allowance: 100, ..Default::default() };
/// let mut policy = Policy::new(restrictions, &page);
/// let d = UrlDownload::new(
///     Identifier::new("x")?,
///     DownloadRequest::get("https://app.example.com/x.bin")?,
///     false, Some(150), Priority::DEFAULT, 0)?;
/// assert!(matches!(policy.admit(&d), Err(Error::DownloadWouldExceedAllowance { requested: 150, remaining: 100, .. })));
/// # Ok::<(), background_assets::core::error::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    restrictions: InitialDownloadRestrictions,
    /// The page's origin, ASCII-serialized (`https://app.example.com`).
    origin: String,
    launched: bool,
    used_essential: u64,
    used_total: u64,
    admitted: BTreeMap<Identifier, Admitted>,
}

impl Policy {
    /// A policy for pages and workers of `page_url`'s origin, before first launch.
    pub fn new(restrictions: InitialDownloadRestrictions, page_url: &Url) -> Policy {
        Policy {
            restrictions,
            origin: page_url.origin().ascii_serialization(),
            launched: false,
            used_essential: 0,
            used_total: 0,
            admitted: BTreeMap::new(),
        }
    }

    /// What is stored of the policy beside the per-download admissions (see
    /// [`Policy::from_parts`]).
    pub(crate) fn head(&self) -> PolicyHead {
        PolicyHead {
            restrictions: self.restrictions.clone(),
            origin: self.origin.clone(),
            launched: self.launched,
            used_essential: self.used_essential,
            used_total: self.used_total,
        }
    }

    /// What each admitted download was admitted with and has received.
    pub(crate) fn admitted(&self) -> &BTreeMap<Identifier, Admitted> {
        &self.admitted
    }

    /// The policy with `head` and the `admitted` downloads.
    pub(crate) fn from_parts(head: PolicyHead, admitted: BTreeMap<Identifier, Admitted>) -> Policy {
        Policy {
            restrictions: head.restrictions,
            origin: head.origin,
            launched: head.launched,
            used_essential: head.used_essential,
            used_total: head.used_total,
            admitted,
        }
    }

    /// The restrictions this policy enforces.
    pub fn restrictions(&self) -> &InitialDownloadRestrictions {
        &self.restrictions
    }

    /// Whether the app has launched ([`lift`](Self::lift) was called).
    pub fn launched(&self) -> bool {
        self.launched
    }

    /// Bytes charged so far to (essential, download) pools.
    pub fn used(&self) -> RemainingAllowance {
        RemainingAllowance {
            essential: self.used_essential,
            total: self.used_total,
        }
    }

    fn check_domain(&self, url: &Url) -> Result<()> {
        let web = matches!(url.scheme(), "http" | "https");
        let same_origin = web && url.origin().ascii_serialization() == self.origin;
        let allowed = same_origin
            || (web
                && url.host().is_some_and(|host| {
                    self.restrictions
                        .domain_allow_list
                        .patterns()
                        .iter()
                        .any(|p| p.matches(&host))
                }));
        if allowed {
            Ok(())
        } else {
            Err(Error::SessionDownloadDisallowedByDomain {
                host: url
                    .host_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| url.scheme().to_string()),
            })
        }
    }

    /// Admits a download, or says why not:
    ///
    /// 1. its host is not allowed → [`Error::SessionDownloadDisallowedByDomain`] (always);
    /// 2. it is already admitted → [`Error::DownloadAlreadyScheduled`];
    /// 3. before first launch: no `file_size` → [`Error::SessionDownloadDisallowedByAllowance`];
    ///    the pool has less left than the size → [`Error::DownloadWouldExceedAllowance`].
    ///
    /// Nothing is charged when it fails.
    pub fn admit(&mut self, download: &UrlDownload) -> Result<Admission> {
        self.check_domain(&download.request.url)?;
        if self.admitted.contains_key(&download.identifier) {
            return Err(Error::DownloadAlreadyScheduled {
                identifier: download.identifier.to_string(),
            });
        }
        let admission = if self.launched {
            Admission::Unrestricted
        } else {
            let size =
                download
                    .file_size
                    .ok_or_else(|| Error::SessionDownloadDisallowedByAllowance {
                        identifier: download.identifier.to_string(),
                    })?;
            let (pool, used, allowance) = if download.essential {
                (
                    Pool::Essential,
                    &mut self.used_essential,
                    self.restrictions.essential_download_allowance,
                )
            } else {
                (
                    Pool::Download,
                    &mut self.used_total,
                    self.restrictions.download_allowance,
                )
            };
            let remaining = allowance.saturating_sub(*used);
            if size > remaining {
                return Err(Error::DownloadWouldExceedAllowance {
                    identifier: download.identifier.to_string(),
                    requested: size,
                    remaining,
                });
            }
            *used += size;
            Admission::Charged { pool, bytes: size }
        };
        self.admitted.insert(
            download.identifier.clone(),
            Admitted {
                admission,
                received: 0,
            },
        );
        Ok(admission)
    }

    /// Forgets a cancelled (or failed) download and refunds the charged bytes it has not
    /// received (bytes already fetched stay spent). Returns the refund; unknown ids refund 0.
    pub fn release(&mut self, identifier: &Identifier) -> u64 {
        let Some(admitted) = self.admitted.remove(identifier) else {
            return 0;
        };
        match admitted.admission {
            Admission::Unrestricted => 0,
            Admission::Charged { pool, bytes } => {
                let refund = bytes.saturating_sub(admitted.received);
                let used = match pool {
                    Pool::Essential => &mut self.used_essential,
                    Pool::Download => &mut self.used_total,
                };
                *used = used.saturating_sub(refund);
                refund
            }
        }
    }

    /// Forgets a finished download; its charge stays spent.
    pub fn complete(&mut self, identifier: &Identifier) {
        self.admitted.remove(identifier);
    }

    /// Bytes left per pool before first launch; `None` once restrictions are lifted (Apple's
    /// `restrictedDownloadSizeRemaining` is `nil` then too).
    pub fn remaining(&self) -> Option<RemainingAllowance> {
        (!self.launched).then(|| RemainingAllowance {
            essential: self
                .restrictions
                .essential_download_allowance
                .saturating_sub(self.used_essential),
            total: self
                .restrictions
                .download_allowance
                .saturating_sub(self.used_total),
        })
    }

    /// The app has launched: allowances no longer apply (the domain allow-list still does), and
    /// downloads admitted before are no longer limited to their charged size.
    pub fn lift(&mut self) {
        self.launched = true;
        for admitted in self.admitted.values_mut() {
            admitted.admission = Admission::Unrestricted;
        }
    }

    /// Checks the final URL of a response (`response.url`, after redirects) against the
    /// allow-list: [`Error::SessionDownloadDisallowedByDomain`] if it left the allowed hosts.
    pub fn check_redirect(&self, final_url: &Url) -> Result<()> {
        self.check_domain(final_url)
    }

    /// Counts `n` body bytes received by `identifier`. Before first launch a download may not
    /// receive more than its charged size: [`Error::SessionDownloadAllowanceExceeded`].
    /// Unknown identifiers are [`Error::DownloadNotScheduled`].
    pub fn bytes_received(&mut self, identifier: &Identifier, n: u64) -> Result<()> {
        let admitted =
            self.admitted
                .get_mut(identifier)
                .ok_or_else(|| Error::DownloadNotScheduled {
                    identifier: identifier.to_string(),
                })?;
        let received = admitted.received.saturating_add(n);
        if let Admission::Charged { bytes, .. } = admitted.admission {
            if received > bytes {
                return Err(Error::SessionDownloadAllowanceExceeded {
                    identifier: identifier.to_string(),
                });
            }
        }
        admitted.received = received;
        Ok(())
    }

    /// The transfer restarted or resumed at `offset`: bytes received from then on are counted
    /// from `offset` (a restart from zero re-uses the same charge; wasted bytes are not charged
    /// twice).
    pub fn rewind(&mut self, identifier: &Identifier, offset: u64) -> Result<()> {
        let admitted =
            self.admitted
                .get_mut(identifier)
                .ok_or_else(|| Error::DownloadNotScheduled {
                    identifier: identifier.to_string(),
                })?;
        admitted.received = admitted.received.min(offset);
        Ok(())
    }
}

/// Checks before an install starts: the installed size must fit `max_install_size`
/// ([`Error::MaxInstallSizeExceeded`]), and the bytes still to write must fit the storage left
/// (`quota − usage`, [`Error::InsufficientStorage`]).
///
/// * `install_size`: bytes the installed assets will take in total once done;
/// * `to_write`: bytes still to be stored (not yet on disk).
///
/// # Example
/// ```
/// use background_assets::core::error::Error;
/// use background_assets::core::policy::{preflight_install, StorageEstimate};
///
/// let estimate = StorageEstimate { usage: 900, quota: 1_000 };
/// assert!(preflight_install(500, 100, Some(600), estimate).is_ok());
/// assert_eq!(preflight_install(700, 100, Some(600), estimate),
///            Err(Error::MaxInstallSizeExceeded { needed: 700, limit: 600 }));
/// assert_eq!(preflight_install(500, 200, None, estimate),
///            Err(Error::InsufficientStorage { needed: 200, available: 100 }));
/// ```
pub fn preflight_install(
    install_size: u64,
    to_write: u64,
    max_install_size: Option<u64>,
    estimate: StorageEstimate,
) -> Result<()> {
    if let Some(limit) = max_install_size {
        if install_size > limit {
            return Err(Error::MaxInstallSizeExceeded {
                needed: install_size,
                limit,
            });
        }
    }
    let available = estimate.quota.saturating_sub(estimate.usage);
    if to_write > available {
        return Err(Error::InsufficientStorage {
            needed: to_write,
            available,
        });
    }
    Ok(())
}
