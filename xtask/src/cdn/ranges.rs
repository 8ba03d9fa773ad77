//! `Range` and `If-Range` as the CDN understands them (RFC 9110 §14), single ranges only.

use std::time::SystemTime;

/// What a `Range` header asks of a representation of a known length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RangeAsk {
    /// No usable range (absent, malformed, or several ranges): send the whole body with 200.
    Whole,
    /// Bytes `start..=end` (already clamped to the length): send 206.
    Part { start: u64, end: u64 },
    /// A well-formed range that selects nothing: send 416 with `Content-Range: bytes */len`.
    Unsatisfiable,
}

/// Interprets a `Range` header value for a body of `len` bytes.
///
/// Multi-range requests (`bytes=0-1,5-6`) and malformed values are ignored (RFC 9110 allows a
/// server to ignore Range), which yields [`RangeAsk::Whole`].
pub(crate) fn parse_range(header: Option<&str>, len: u64) -> RangeAsk {
    let Some(value) = header else {
        return RangeAsk::Whole;
    };
    let value = value.trim();
    let Some(spec) = value
        .get(..6)
        .filter(|unit| unit.eq_ignore_ascii_case("bytes="))
        .map(|_| value[6..].trim())
    else {
        return RangeAsk::Whole;
    };
    if spec.contains(',') {
        return RangeAsk::Whole;
    }
    let Some((first, last)) = spec.split_once('-') else {
        return RangeAsk::Whole;
    };
    let (first, last) = (first.trim(), last.trim());
    let number = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            None
        } else {
            s.parse().ok()
        }
    };
    match (first.is_empty(), last.is_empty()) {
        // "-n": the last n bytes.
        (true, false) => match number(last) {
            None => RangeAsk::Whole,
            Some(0) => RangeAsk::Unsatisfiable,
            Some(_) if len == 0 => RangeAsk::Unsatisfiable,
            Some(n) => RangeAsk::Part {
                start: len.saturating_sub(n),
                end: len - 1,
            },
        },
        // "a-": from a to the end.
        (false, true) => match number(first) {
            None => RangeAsk::Whole,
            Some(a) if a >= len => RangeAsk::Unsatisfiable,
            Some(a) => RangeAsk::Part {
                start: a,
                end: len - 1,
            },
        },
        // "a-b".
        (false, false) => match (number(first), number(last)) {
            (Some(a), Some(b)) if a <= b => {
                if a >= len {
                    RangeAsk::Unsatisfiable
                } else {
                    RangeAsk::Part {
                        start: a,
                        end: b.min(len - 1),
                    }
                }
            }
            _ => RangeAsk::Whole,
        },
        (true, true) => RangeAsk::Whole,
    }
}

/// Whether an `If-Range` value still designates the current representation, so the Range may be
/// honoured: a strong entity tag equal to `etag`, or an HTTP-date equal to `last_modified`.
/// Weak tags never match (RFC 9110 §13.1.5).
pub(crate) fn if_range_matches(value: &str, etag: &str, last_modified: SystemTime) -> bool {
    let value = value.trim();
    if value.starts_with('"') {
        value == etag
    } else if value.starts_with("W/") {
        false
    } else {
        httpdate::parse_http_date(value)
            .map(|date| date == truncate_to_seconds(last_modified))
            .unwrap_or(false)
    }
}

/// HTTP dates have a resolution of one second.
pub(crate) fn truncate_to_seconds(time: SystemTime) -> SystemTime {
    match time.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(since) => SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(since.as_secs()),
        Err(_) => SystemTime::UNIX_EPOCH,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_forms() {
        let p = |s, e| RangeAsk::Part { start: s, end: e };
        assert_eq!(parse_range(None, 10), RangeAsk::Whole);
        assert_eq!(parse_range(Some("bytes=2-4"), 10), p(2, 4));
        assert_eq!(parse_range(Some("bytes=2-"), 10), p(2, 9));
        assert_eq!(parse_range(Some("bytes=-3"), 10), p(7, 9));
        assert_eq!(parse_range(Some("bytes=-30"), 10), p(0, 9));
        assert_eq!(parse_range(Some("bytes=5-100"), 10), p(5, 9));
        assert_eq!(parse_range(Some("bytes=10-"), 10), RangeAsk::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=-0"), 10), RangeAsk::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-"), 0), RangeAsk::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-1,4-5"), 10), RangeAsk::Whole);
        assert_eq!(parse_range(Some("bytes=5-2"), 10), RangeAsk::Whole);
        assert_eq!(parse_range(Some("items=0-1"), 10), RangeAsk::Whole);
        assert_eq!(parse_range(Some("bytes=x-1"), 10), RangeAsk::Whole);
    }

    #[test]
    fn if_range_forms() {
        let lm = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        let date = httpdate::fmt_http_date(lm);
        assert!(if_range_matches("\"a\"", "\"a\"", lm));
        assert!(!if_range_matches("\"b\"", "\"a\"", lm));
        assert!(!if_range_matches("W/\"a\"", "\"a\"", lm));
        assert!(if_range_matches(&date, "\"a\"", lm));
        assert!(!if_range_matches(
            "Mon, 01 Jan 2001 00:00:00 GMT",
            "\"a\"",
            lm
        ));
    }
}
