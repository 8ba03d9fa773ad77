//! Parsing of the few response headers a resumable transfer depends on: `ETag`,
//! `Content-Length`, `Content-Range`, `Retry-After` and `Date` (IMF-fixdate).
//!
//! Every parser takes the raw header string as the driver received it and is strict: a value it
//! cannot read is reported as `None` / `Err(reason)`, never guessed.

use crate::core::Millis;

/// A parsed `Content-Range` response header (RFC 9110 §14.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ContentRange {
    /// `bytes first-last/complete` (`complete` is `None` for `*`).
    Bytes {
        first: u64,
        last: u64,
        complete: Option<u64>,
    },
    /// `bytes */complete`, sent with 416.
    Unsatisfied { complete: u64 },
}

/// The strong entity tag in `raw`, or `None` for a weak (`W/"..."`) or empty one. Weak tags do
/// not promise byte-identical content, so they cannot be used in `If-Range` (RFC 9110 §13.1.5).
pub(crate) fn strong_etag(raw: &str) -> Option<String> {
    let tag = raw.trim();
    if tag.is_empty() || tag.starts_with("W/") || tag.starts_with("w/") {
        return None;
    }
    Some(tag.to_string())
}

/// A `Content-Length`: ASCII digits only.
pub(crate) fn content_length(raw: &str) -> Option<u64> {
    digits(raw.trim())
}

fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parses `Content-Range`; the error says what was wrong.
pub(crate) fn content_range(raw: &str) -> Result<ContentRange, String> {
    let raw = raw.trim();
    let rest = raw
        .strip_prefix("bytes ")
        .ok_or_else(|| format!("`{raw}` does not start with `bytes `"))?
        .trim_start();
    let (range, complete) = rest
        .split_once('/')
        .ok_or_else(|| format!("`{raw}` has no `/`"))?;
    let complete = match complete.trim() {
        "*" => None,
        n => Some(digits(n).ok_or_else(|| format!("`{raw}` has a bad complete length"))?),
    };
    if range.trim() == "*" {
        return complete
            .map(|complete| ContentRange::Unsatisfied { complete })
            .ok_or_else(|| format!("`{raw}` is `*/*`"));
    }
    let (first, last) = range
        .split_once('-')
        .ok_or_else(|| format!("`{raw}` has no `-` in its range"))?;
    let first = digits(first.trim()).ok_or_else(|| format!("`{raw}` has a bad first byte"))?;
    let last = digits(last.trim()).ok_or_else(|| format!("`{raw}` has a bad last byte"))?;
    if last < first {
        return Err(format!("`{raw}` ends before it starts"));
    }
    if let Some(c) = complete {
        if last >= c {
            return Err(format!("`{raw}` ends beyond its complete length"));
        }
    }
    Ok(ContentRange::Bytes {
        first,
        last,
        complete,
    })
}

/// `Retry-After` as a delay in milliseconds: delta-seconds, or an HTTP-date taken relative to
/// the response's own `Date` header (the core has no wall clock). `None` when unreadable or when
/// an HTTP-date comes without a `Date` to compare it with.
pub(crate) fn retry_after(raw: &str, date: Option<&str>) -> Option<Millis> {
    let raw = raw.trim();
    if let Some(seconds) = digits(raw) {
        return Some(seconds.saturating_mul(1000));
    }
    let at = http_date(raw)?;
    let now = http_date(date?)?;
    Some(at.saturating_sub(now).saturating_mul(1000))
}

/// Seconds since the Unix epoch of an IMF-fixdate such as `Sun, 06 Nov 1994 08:49:37 GMT`
/// (the only HTTP-date format senders may generate, RFC 9110 §5.6.7).
pub(crate) fn http_date(raw: &str) -> Option<u64> {
    let mut parts = raw.split_whitespace();
    let weekday = parts.next()?;
    if weekday.len() != 4 || !weekday.ends_with(',') {
        return None;
    }
    let day = digits(parts.next()?)?;
    let month = match parts.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year = digits(parts.next()?)?;
    let mut hms = parts.next()?.split(':');
    let (h, m, s) = (
        digits(hms.next()?)?,
        digits(hms.next()?)?,
        digits(hms.next()?)?,
    );
    if hms.next().is_some() || parts.next()? != "GMT" || parts.next().is_some() {
        return None;
    }
    if !(1..=31).contains(&day) || year < 1970 || h > 23 || m > 59 || s > 60 {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm), for years >= 1970.
    let (y, mo) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * mo + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + m * 60 + s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags() {
        assert_eq!(strong_etag(" \"abc\" "), Some("\"abc\"".into()));
        assert_eq!(strong_etag("W/\"abc\""), None);
        assert_eq!(strong_etag(""), None);
    }

    #[test]
    fn content_ranges() {
        assert_eq!(
            content_range("bytes 10-19/20"),
            Ok(ContentRange::Bytes {
                first: 10,
                last: 19,
                complete: Some(20)
            })
        );
        assert_eq!(
            content_range("bytes 0-9/*"),
            Ok(ContentRange::Bytes {
                first: 0,
                last: 9,
                complete: None
            })
        );
        assert_eq!(
            content_range("bytes */20"),
            Ok(ContentRange::Unsatisfied { complete: 20 })
        );
        for bad in [
            "",
            "bytes",
            "items 0-1/2",
            "bytes 5-4/10",
            "bytes 0-10/10",
            "bytes a-4/10",
            "bytes 0-4/x",
            "bytes */*",
            "bytes 0-+4/10",
        ] {
            assert!(content_range(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lengths() {
        assert_eq!(content_length("42"), Some(42));
        assert_eq!(content_length("-1"), None);
        assert_eq!(content_length("4 2"), None);
    }

    #[test]
    fn dates_and_retry_after() {
        assert_eq!(
            http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            http_date("Thu, 29 Feb 2024 12:00:00 GMT"),
            Some(1_709_208_000)
        );
        assert_eq!(http_date("Sunday, 06-Nov-94 08:49:37 GMT"), None);
        assert_eq!(http_date("Sun, 06 Nov 1994 08:49:37 UTC"), None);
        assert_eq!(retry_after("120", None), Some(120_000));
        assert_eq!(
            retry_after(
                "Sun, 06 Nov 1994 08:50:07 GMT",
                Some("Sun, 06 Nov 1994 08:49:37 GMT")
            ),
            Some(30_000)
        );
        assert_eq!(retry_after("Sun, 06 Nov 1994 08:50:07 GMT", None), None);
        assert_eq!(retry_after("soon", None), None);
    }
}
