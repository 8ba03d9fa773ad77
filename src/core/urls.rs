//! URL parsing for the whole crate: the `url` crate (the WHATWG URL Standard, as browsers parse),
//! with international domain names converted by the platform's own URL parser.
//!
//! The `url` crate converts a non-ASCII host (`bücher.example`) to its ASCII form
//! (`xn--bcher-kva.example`) with the Unicode tables of its IDNA back end. This workspace's
//! `Cargo.lock` selects `idna_adapter` 1.0, the back end without tables (about 106 KB less
//! wasm, 41 KB gzipped): then the `url` crate refuses such a host with
//! [`ParseError::IdnaError`], and these functions ask the browser's `URL` parser (the same
//! standard, with the browser's own tables) for the ASCII form and parse that. On the host there
//! is no browser: a non-ASCII host is refused there unless the build has a Unicode back end
//! (a dependent crate's own `Cargo.lock` chooses; the default, ICU4X, has one).
//!
//! Every URL the crate reads from its caller or from a document goes through [`parse`],
//! [`join`] or [`parse_host`].
//!
//! # Example
//! ```
//! use background_assets::core::urls;
//! let url = urls::parse("https://CDN.example/a b").unwrap();
//! assert_eq!(url.as_str(), "https://cdn.example/a%20b");
//! let joined = urls::join(&url, "../c").unwrap();
//! assert_eq!(joined.as_str(), "https://cdn.example/c");
//! ```

use url::{Host, ParseError, Url};

/// Turns a URL text, resolved against an optional base (both as given), into the platform
/// parser's serialization (`new URL(input, base).href` in a browser), or `None` when the
/// platform has no parser or refuses the text.
pub type PlatformParser = fn(&str, Option<&str>) -> Option<String>;

/// Parses an absolute URL.
pub fn parse(input: &str) -> Result<Url, ParseError> {
    parse_with(None, input, crate::platform::url_href)
}

/// Resolves `input` against `base` (as [`Url::join`], `new URL(input, base)` in JS).
pub fn join(base: &Url, input: &str) -> Result<Url, ParseError> {
    parse_with(Some(base), input, crate::platform::url_href)
}

/// Parses a host as a URL's host is parsed (a domain is lowercased and converted to ASCII;
/// IPv4 and bracketed IPv6 literals are addresses).
pub fn parse_host(input: &str) -> Result<Host<String>, ParseError> {
    parse_host_with(input, crate::platform::url_href)
}

/// [`parse`] (no `base`) or [`join`] with the given platform parser, which is asked only when
/// the `url` crate cannot convert an international domain name itself: its answer must be an
/// ASCII, absolute URL that the `url` crate parses, else the result is
/// [`ParseError::IdnaError`]. Every other error is the `url` crate's, unchanged.
pub fn parse_with(
    base: Option<&Url>,
    input: &str,
    platform: PlatformParser,
) -> Result<Url, ParseError> {
    let parsed = match base {
        Some(base) => base.join(input),
        None => Url::parse(input),
    };
    match parsed {
        Err(ParseError::IdnaError) => {
            let ascii = platform(input, base.map(Url::as_str))
                .filter(|text| text.is_ascii())
                .ok_or(ParseError::IdnaError)?;
            Url::parse(&ascii).map_err(|_| ParseError::IdnaError)
        }
        other => other,
    }
}

/// [`parse_host`] with the given platform parser (see [`parse_with`]). The platform is asked
/// only for a text that can be nothing but a host (no `/ ? # @ \ :`, brackets, `%`, spaces or
/// controls), as the host of an `http:` URL.
pub fn parse_host_with(input: &str, platform: PlatformParser) -> Result<Host<String>, ParseError> {
    match Host::parse(input) {
        Err(ParseError::IdnaError) => {
            let only_a_host = !input.is_empty()
                && !input.chars().any(|c| {
                    matches!(c, '/' | '?' | '#' | '@' | '\\' | ':' | '[' | ']' | '%')
                        || c.is_whitespace()
                        || c.is_control()
                });
            if !only_a_host {
                return Err(ParseError::IdnaError);
            }
            let url = parse_with(None, &format!("http://{input}/"), platform)?;
            match url.host() {
                Some(Host::Domain(domain)) => Ok(Host::Domain(domain.to_string())),
                _ => Err(ParseError::IdnaError),
            }
        }
        other => other,
    }
}
