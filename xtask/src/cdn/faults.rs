//! The fault query language (documented in the [module doc](super)) and its parser.

use std::fmt;

/// Default for `stall-ms=` when `fault=stall:N` is given without it.
pub(crate) const DEFAULT_STALL_MS: u64 = 30_000;
/// Default for `outage-ms=` when `fault=outage:N` is given without it.
pub(crate) const DEFAULT_OUTAGE_MS: u64 = 2_000;

/// Where `fault=redirect…` sends the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Redirect {
    /// `redirect:/path` — a path on this server.
    SameOrigin(String),
    /// `redirect-origin:http://host:port/path` — an absolute URL.
    OtherOrigin(String),
}

/// Everything the query string asks of one response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FaultPlan {
    /// `fault=drop:N`: close the connection after N body bytes.
    pub drop_after: Option<u64>,
    /// `fault=no-range`: ignore `Range`.
    pub no_range: bool,
    /// `fault=etag-change`: the ETag version is the URL's request count minus one.
    pub etag_change: bool,
    /// `fault=bad-content-range`: shift the advertised range start by one chunk.
    pub bad_content_range: bool,
    /// `fault=no-validator`: send neither `ETag` nor `Last-Modified` (so nothing can resume).
    pub no_validator: bool,
    /// `fault=short:N`: end the body N bytes before `Content-Length` and close.
    pub short_by: Option<u64>,
    /// `fault=long:N`: serve N bytes past the generated length (Content-Length len+N).
    pub long_by: Option<u64>,
    /// `fault=status:CODE`.
    pub status: Option<u16>,
    /// `retry-after=SECS` (sent with `fault=status`).
    pub retry_after: Option<u64>,
    /// `fault=stall:N`: after N body bytes send nothing for `stall_ms`, then close.
    pub stall_after: Option<u64>,
    /// `stall-ms=MS`.
    pub stall_ms: u64,
    /// `fault=outage:N`: close the connection after N body bytes, then refuse every request of
    /// this exact URL (no answer) for `outage_ms`.
    pub outage_after: Option<u64>,
    /// `outage-ms=MS`.
    pub outage_ms: u64,
    /// `fault=redirect:…` / `fault=redirect-origin:…`.
    pub redirect: Option<Redirect>,
    /// `times=K`: faults apply to the first K requests of the exact URL only.
    pub times: Option<u64>,
    /// `throttle=BYTES_PER_SEC`: pace the body (not a fault: never limited by `times`).
    pub throttle: Option<u64>,
    /// `auth=TOKEN`: answer 401 (`WWW-Authenticate: Bearer realm="cdn"`) unless the request
    /// sends `Authorization: Bearer TOKEN` (not a fault: never limited by `times`).
    pub auth: Option<String>,
}

impl Default for FaultPlan {
    fn default() -> Self {
        FaultPlan {
            drop_after: None,
            no_range: false,
            etag_change: false,
            bad_content_range: false,
            no_validator: false,
            short_by: None,
            long_by: None,
            status: None,
            retry_after: None,
            stall_after: None,
            stall_ms: DEFAULT_STALL_MS,
            outage_after: None,
            outage_ms: DEFAULT_OUTAGE_MS,
            redirect: None,
            times: None,
            throttle: None,
            auth: None,
        }
    }
}

/// A query string the CDN cannot honour; the message names the parameter and what was wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FaultQueryError(pub String);

impl fmt::Display for FaultQueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FaultQueryError {}

impl FaultPlan {
    /// Parses the query string of a request (without the `?`). Unknown parameters are ignored
    /// (cache busters); a known parameter with a bad value is an error.
    pub(crate) fn parse(query: Option<&str>) -> Result<FaultPlan, FaultQueryError> {
        let mut plan = FaultPlan::default();
        let Some(query) = query else {
            return Ok(plan);
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (raw_key, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
            let key = percent_decode(raw_key)
                .ok_or_else(|| FaultQueryError(format!("bad percent-encoding in `{raw_key}`")))?;
            match key.as_str() {
                "fault" => {
                    // Split before decoding so that an encoded comma (%2C) stays inside an item.
                    for raw_item in raw_value.split(',').filter(|i| !i.is_empty()) {
                        let item = percent_decode(raw_item).ok_or_else(|| {
                            FaultQueryError(format!("fault: bad percent-encoding in `{raw_item}`"))
                        })?;
                        plan.add_fault(&item)?;
                    }
                }
                "times" => plan.times = Some(number("times", raw_value)?),
                "throttle" => {
                    let rate = number("throttle", raw_value)?;
                    if rate == 0 {
                        return Err(FaultQueryError(
                            "throttle: bytes per second must be at least 1".into(),
                        ));
                    }
                    plan.throttle = Some(rate);
                }
                "stall-ms" => plan.stall_ms = number("stall-ms", raw_value)?,
                "outage-ms" => plan.outage_ms = number("outage-ms", raw_value)?,
                "auth" => {
                    let token = percent_decode(raw_value)
                        .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()))
                        .ok_or_else(|| {
                            FaultQueryError(format!(
                                "auth: `{raw_value}` is not a token (visible ASCII, at least one)"
                            ))
                        })?;
                    plan.auth = Some(token);
                }
                "retry-after" => plan.retry_after = Some(number("retry-after", raw_value)?),
                _ => {}
            }
        }
        Ok(plan)
    }

    fn add_fault(&mut self, item: &str) -> Result<(), FaultQueryError> {
        let (name, arg) = match item.split_once(':') {
            Some((name, arg)) => (name, Some(arg)),
            None => (item, None),
        };
        let needs = |what: &str| -> Result<&str, FaultQueryError> {
            arg.filter(|a| !a.is_empty())
                .ok_or_else(|| FaultQueryError(format!("fault={name} needs `:{what}`")))
        };
        let label = format!("fault={name}");
        match name {
            "drop" => self.drop_after = Some(number(&label, needs("N")?)?),
            "short" => self.short_by = Some(number(&label, needs("N")?)?),
            "long" => self.long_by = Some(number(&label, needs("N")?)?),
            "stall" => self.stall_after = Some(number(&label, needs("N")?)?),
            "outage" => self.outage_after = Some(number(&label, needs("N")?)?),
            "no-range" => self.no_range = true,
            "etag-change" => self.etag_change = true,
            "bad-content-range" => self.bad_content_range = true,
            "no-validator" => self.no_validator = true,
            "status" => {
                let code = number(&label, needs("CODE")?)?;
                if !(200..=599).contains(&code) {
                    return Err(FaultQueryError(format!(
                        "fault=status: code {code} is outside 200..=599"
                    )));
                }
                self.status = Some(code as u16);
            }
            "redirect" => {
                let path = needs("/path")?;
                if !path.starts_with('/') || path.starts_with("//") {
                    return Err(FaultQueryError(format!(
                        "fault=redirect: `{path}` is not a path starting with a single `/`"
                    )));
                }
                self.redirect = Some(Redirect::SameOrigin(path.to_owned()));
            }
            "redirect-origin" => {
                let url = needs("http://host:port/path")?;
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(FaultQueryError(format!(
                        "fault=redirect-origin: `{url}` is not an absolute http(s) URL"
                    )));
                }
                self.redirect = Some(Redirect::OtherOrigin(url.to_owned()));
            }
            other => {
                return Err(FaultQueryError(format!(
                    "fault: unknown fault `{other}` (known: drop:N, short:N, long:N, stall:N, \
                     outage:N, no-range, etag-change, bad-content-range, no-validator, status:CODE, redirect:/path, \
                     redirect-origin:URL)"
                )))
            }
        }
        Ok(())
    }

    /// The plan for the `nth` (1-based) request of this exact URL: past `times`, every fault is
    /// dropped and only the throttle remains.
    pub(crate) fn for_request(&self, nth: u64) -> FaultPlan {
        match self.times {
            Some(k) if nth > k => FaultPlan {
                throttle: self.throttle,
                times: self.times,
                auth: self.auth.clone(),
                ..FaultPlan::default()
            },
            _ => self.clone(),
        }
    }
}

fn number(label: &str, text: &str) -> Result<u64, FaultQueryError> {
    text.parse::<u64>().map_err(|_| {
        FaultQueryError(format!(
            "{label}: `{text}` is not a non-negative whole number"
        ))
    })
}

/// Decodes `%XX` escapes; `None` on a malformed escape or invalid UTF-8. `+` stays `+`.
pub(crate) fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_combined_faults() {
        let plan = FaultPlan::parse(Some(
            "v=3&fault=drop:100,etag-change&fault=status:503&retry-after=7&times=2&throttle=1000",
        ))
        .unwrap();
        assert_eq!(plan.drop_after, Some(100));
        assert!(plan.etag_change);
        assert_eq!(plan.status, Some(503));
        assert_eq!(plan.retry_after, Some(7));
        assert_eq!(plan.times, Some(2));
        assert_eq!(plan.throttle, Some(1000));
        let later = plan.for_request(3);
        assert_eq!(later.drop_after, None);
        assert!(!later.etag_change);
        assert_eq!(later.throttle, Some(1000));
        assert_eq!(plan.for_request(2), plan);
    }

    #[test]
    fn outage_takes_a_byte_count_and_a_window() {
        let plan = FaultPlan::parse(Some("fault=outage:1000&outage-ms=750&times=1")).unwrap();
        assert_eq!((plan.outage_after, plan.outage_ms), (Some(1000), 750));
        assert_eq!(plan.for_request(2).outage_after, None);
        let default = FaultPlan::parse(Some("fault=outage:5")).unwrap();
        assert_eq!(default.outage_ms, DEFAULT_OUTAGE_MS);
        let err = |q| FaultPlan::parse(Some(q)).unwrap_err().0;
        assert!(err("fault=outage").contains("fault=outage needs"));
        assert!(err("fault=outage:1&outage-ms=soon").contains("outage-ms"));
    }

    #[test]
    fn no_validator_is_a_fault_limited_by_times() {
        let plan = FaultPlan::parse(Some("fault=no-validator&times=1")).unwrap();
        assert!(plan.no_validator);
        assert!(!plan.for_request(2).no_validator);
    }

    #[test]
    fn auth_is_kept_past_times_and_must_be_a_token() {
        let plan = FaultPlan::parse(Some("auth=s3cr%21t&fault=drop:5&times=1")).unwrap();
        assert_eq!(plan.auth.as_deref(), Some("s3cr!t"));
        assert_eq!(plan.for_request(2).auth.as_deref(), Some("s3cr!t"));
        assert!(FaultPlan::parse(Some("auth="))
            .unwrap_err()
            .0
            .starts_with("auth:"));
        assert!(FaultPlan::parse(Some("auth=a%20b")).is_err());
    }

    #[test]
    fn redirect_keeps_encoded_query() {
        let plan = FaultPlan::parse(Some("fault=redirect:/gen/10/1%3Ffault%3Dno-range")).unwrap();
        assert_eq!(
            plan.redirect,
            Some(Redirect::SameOrigin("/gen/10/1?fault=no-range".into()))
        );
    }

    #[test]
    fn errors_name_the_problem() {
        let err = |q| FaultPlan::parse(Some(q)).unwrap_err().0;
        assert!(err("fault=drop").contains("fault=drop needs"));
        assert!(err("fault=drop:x").contains("fault=drop"));
        assert!(err("fault=explode").contains("unknown fault `explode`"));
        assert!(err("fault=status:99").contains("outside"));
        assert!(err("throttle=0").contains("throttle"));
        assert!(err("fault=redirect:http://x").contains("redirect"));
        assert!(err("fault=redirect-origin:/x").contains("redirect-origin"));
    }
}
