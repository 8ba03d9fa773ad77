//! HTTP byte ranges (RFC 9110 §14): the `Range` request header a stored asset is served for, and
//! the `Content-Range` response header a resumed download is checked against. Pure logic; the
//! web driver does the IO.
//!
//! # Example
//! ```
//! use background_assets::core::range::{resolve, RangeOutcome};
//! assert_eq!(resolve(Some("bytes=0-99"), 1000), RangeOutcome::Partial { start: 0, end: 99 });
//! assert_eq!(resolve(Some("bytes=-100"), 1000), RangeOutcome::Partial { start: 900, end: 999 });
//! assert_eq!(resolve(Some("bytes=1000-"), 1000), RangeOutcome::Unsatisfiable);
//! assert_eq!(resolve(None, 1000), RangeOutcome::Full);
//! ```

/// How to answer a request for a representation of `size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeOutcome {
    /// `200`: the whole representation (no `Range`, an unparsable one, or several ranges, which
    /// a server may ignore).
    Full,
    /// `206` with bytes `start..=end` (inclusive, as in `Content-Range`).
    Partial {
        /// First byte.
        start: u64,
        /// Last byte (inclusive).
        end: u64,
    },
    /// `416` with `Content-Range: bytes */size`.
    Unsatisfiable,
}

impl RangeOutcome {
    /// The HTTP status to answer with.
    pub fn status(&self) -> u16 {
        match self {
            RangeOutcome::Full => 200,
            RangeOutcome::Partial { .. } => 206,
            RangeOutcome::Unsatisfiable => 416,
        }
    }

    /// The `Content-Range` header to send, if any, for a representation of `size` bytes.
    pub fn content_range(&self, size: u64) -> Option<String> {
        match self {
            RangeOutcome::Full => None,
            RangeOutcome::Partial { start, end } => Some(format!("bytes {start}-{end}/{size}")),
            RangeOutcome::Unsatisfiable => Some(format!("bytes */{size}")),
        }
    }

    /// The body length to send for a representation of `size` bytes.
    pub fn length(&self, size: u64) -> u64 {
        match self {
            RangeOutcome::Full => size,
            RangeOutcome::Partial { start, end } => end - start + 1,
            RangeOutcome::Unsatisfiable => 0,
        }
    }
}

/// One parsed `Range` spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spec {
    /// `a-b` or `a-` (`last == None`).
    From { first: u64, last: Option<u64> },
    /// `-n`: the last `n` bytes.
    Suffix(u64),
}

fn parse_spec(text: &str) -> Option<Spec> {
    let (first, last) = text.trim().split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        return digits(last).then(|| last.parse().ok().map(Spec::Suffix))?;
    }
    if !digits(first) {
        return None;
    }
    let first: u64 = first.parse().ok()?;
    if last.is_empty() {
        return Some(Spec::From { first, last: None });
    }
    if !digits(last) {
        return None;
    }
    let last: u64 = last.parse().ok()?;
    (last >= first).then_some(Spec::From {
        first,
        last: Some(last),
    })
}

/// Decides the answer to a `Range` header (`None` when absent) for `size` bytes.
///
/// Single ranges are honoured (`a-b` clamped to the end, `a-`, `-n`); a range starting at or
/// beyond the end, or `-0`, is unsatisfiable; a header that does not parse, uses another unit
/// or asks for several ranges is ignored (`Full`), as RFC 9110 allows.
///
/// # Example
/// ```
/// use background_assets::core::range::{resolve, RangeOutcome};
/// assert_eq!(resolve(Some("bytes=10-"), 20), RangeOutcome::Partial { start: 10, end: 19 });
/// assert_eq!(resolve(Some("bytes=5-500"), 20), RangeOutcome::Partial { start: 5, end: 19 });
/// assert_eq!(resolve(Some("items=0-1"), 20), RangeOutcome::Full);
/// ```
pub fn resolve(header: Option<&str>, size: u64) -> RangeOutcome {
    let Some(header) = header else {
        return RangeOutcome::Full;
    };
    let Some((unit, specs)) = header.trim().split_once('=') else {
        return RangeOutcome::Full;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") || specs.contains(',') {
        return RangeOutcome::Full;
    }
    let Some(spec) = parse_spec(specs) else {
        return RangeOutcome::Full;
    };
    match spec {
        Spec::From { first, .. } if first >= size => RangeOutcome::Unsatisfiable,
        Spec::From { first, last } => RangeOutcome::Partial {
            start: first,
            end: last.map_or(size - 1, |l| l.min(size - 1)),
        },
        Spec::Suffix(0) => RangeOutcome::Unsatisfiable,
        Spec::Suffix(_) if size == 0 => RangeOutcome::Unsatisfiable,
        Spec::Suffix(n) => RangeOutcome::Partial {
            start: size.saturating_sub(n),
            end: size - 1,
        },
    }
}

/// A parsed `Content-Range` response header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentRange {
    /// `bytes first-last/complete` (`complete` is `None` for `*`).
    Bytes {
        /// First byte sent.
        first: u64,
        /// Last byte sent (inclusive).
        last: u64,
        /// The complete length, if the server knows it.
        complete: Option<u64>,
    },
    /// `bytes */complete` (sent with 416).
    Unsatisfied {
        /// The complete length.
        complete: u64,
    },
}

/// Parses a `Content-Range` header; `None` when it is malformed (`last < first`, `last` beyond
/// the complete length, another unit...).
///
/// # Example
/// ```
/// use background_assets::core::range::{parse_content_range, ContentRange};
/// assert_eq!(
///     parse_content_range("bytes 100-199/1000"),
///     Some(ContentRange::Bytes { first: 100, last: 199, complete: Some(1000) })
/// );
/// assert_eq!(parse_content_range("bytes */1000"), Some(ContentRange::Unsatisfied { complete: 1000 }));
/// assert_eq!(parse_content_range("bytes 5-1/10"), None);
/// ```
pub fn parse_content_range(header: &str) -> Option<ContentRange> {
    let rest = header.trim().strip_prefix("bytes")?;
    if !rest.starts_with(' ') {
        return None;
    }
    let (range, complete) = rest.trim().split_once('/')?;
    let number = |s: &str| -> Option<u64> {
        let s = s.trim();
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    let complete = match complete.trim() {
        "*" => None,
        other => Some(number(other)?),
    };
    if range.trim() == "*" {
        return complete.map(|complete| ContentRange::Unsatisfied { complete });
    }
    let (first, last) = range.split_once('-')?;
    let (first, last) = (number(first)?, number(last)?);
    if last < first || complete.is_some_and(|c| last >= c) {
        return None;
    }
    Some(ContentRange::Bytes {
        first,
        last,
        complete,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_or_ignored_headers_serve_everything() {
        for header in [
            None,
            Some(""),
            Some("bytes"),
            Some("bytes="),
            Some("bytes=a-b"),
            Some("bytes=5-2"),
            Some("bytes=-"),
            Some("bytes=0-1,5-6"),
            Some("items=0-1"),
            Some("bytes=1-2-3"),
            Some("bytes=+1-2"),
        ] {
            assert_eq!(resolve(header, 100), RangeOutcome::Full, "{header:?}");
        }
    }

    #[test]
    fn single_ranges() {
        let p = |start, end| RangeOutcome::Partial { start, end };
        assert_eq!(resolve(Some("bytes=0-0"), 100), p(0, 0));
        assert_eq!(resolve(Some("bytes=0-99"), 100), p(0, 99));
        assert_eq!(resolve(Some("bytes=10-1000"), 100), p(10, 99));
        assert_eq!(resolve(Some("bytes=99-"), 100), p(99, 99));
        assert_eq!(resolve(Some("bytes=-1"), 100), p(99, 99));
        assert_eq!(resolve(Some("bytes=-500"), 100), p(0, 99));
        assert_eq!(resolve(Some(" Bytes = 3 - 4 "), 100), p(3, 4));
    }

    #[test]
    fn unsatisfiable_ranges() {
        for header in ["bytes=100-", "bytes=100-200", "bytes=-0", "bytes=500-501"] {
            assert_eq!(
                resolve(Some(header), 100),
                RangeOutcome::Unsatisfiable,
                "{header}"
            );
        }
        assert_eq!(resolve(Some("bytes=0-"), 0), RangeOutcome::Unsatisfiable);
        assert_eq!(resolve(Some("bytes=-5"), 0), RangeOutcome::Unsatisfiable);
    }

    #[test]
    fn headers_and_lengths() {
        let partial = RangeOutcome::Partial { start: 10, end: 19 };
        assert_eq!(partial.status(), 206);
        assert_eq!(partial.length(100), 10);
        assert_eq!(
            partial.content_range(100).as_deref(),
            Some("bytes 10-19/100")
        );
        assert_eq!(RangeOutcome::Unsatisfiable.status(), 416);
        assert_eq!(
            RangeOutcome::Unsatisfiable.content_range(100).as_deref(),
            Some("bytes */100")
        );
        assert_eq!(RangeOutcome::Full.content_range(100), None);
        assert_eq!(RangeOutcome::Full.length(100), 100);
    }

    #[test]
    fn content_range_parsing() {
        assert_eq!(
            parse_content_range("bytes 0-0/1"),
            Some(ContentRange::Bytes {
                first: 0,
                last: 0,
                complete: Some(1)
            })
        );
        assert_eq!(
            parse_content_range("bytes 7-9/*"),
            Some(ContentRange::Bytes {
                first: 7,
                last: 9,
                complete: None
            })
        );
        for bad in [
            "",
            "bytes",
            "bytes 1-2",
            "bytes 2-1/10",
            "bytes 0-10/10",
            "items 0-1/2",
            "bytes */*",
            "bytes a-b/3",
            "bytes0-1/2",
        ] {
            assert_eq!(parse_content_range(bad), None, "{bad}");
        }
    }
}
