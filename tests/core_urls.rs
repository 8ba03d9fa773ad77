#![cfg(not(target_arch = "wasm32"))]
//! Host tests of `core::urls`: when the `url` crate cannot convert an international domain name
//! (this workspace's lockfile selects the IDNA back end without Unicode tables), the platform's
//! parser is asked and its ASCII answer parsed; everything else is the `url` crate's own answer.
//! The browser's real conversion is tested in the sw and page suites (`tests/common/urls.rs`).

use background_assets::core::policy::DomainAllowList;
use background_assets::core::urls::{self, parse_host_with, parse_with};
use url::{Host, ParseError, Url};

/// A stand-in for `new URL(input, base).href` that knows two names.
fn fake_platform(input: &str, base: Option<&str>) -> Option<String> {
    let text = match base {
        Some(base) if input.starts_with("//") => {
            format!("{}:{input}", base.split(':').next().unwrap())
        }
        _ => input.to_string(),
    };
    if text.contains('\u{FFFD}') {
        return None;
    }
    Some(
        text.replace("BÜCHER", "xn--bcher-kva")
            .replace("bücher", "xn--bcher-kva")
            .replace("école", "xn--cole-9oa"),
    )
}

fn no_platform(_: &str, _: Option<&str>) -> Option<String> {
    None
}

fn non_ascii_platform(input: &str, _: Option<&str>) -> Option<String> {
    Some(input.to_string())
}

fn panicking_platform(input: &str, _: Option<&str>) -> Option<String> {
    panic!("the platform was asked for {input:?}, which the url crate parses itself")
}

#[test]
fn the_lockfile_keeps_the_idna_back_end_without_unicode_tables() {
    // `cargo update` would move idna_adapter to 1.2 (ICU4X): the wasm would grow by ~106 KB and
    // these tests would no longer exercise the platform path.
    let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.lock")).unwrap();
    let entry = lock
        .split("[[package]]")
        .find(|entry| entry.contains("name = \"idna_adapter\""))
        .expect("idna_adapter in Cargo.lock");
    assert!(
        entry.contains("version = \"1.0."),
        "Cargo.lock must pin idna_adapter 1.0.x (`cargo update -p idna_adapter --precise 1.0.0`):\n{entry}"
    );
    assert_eq!(
        Url::parse("https://bücher.example/"),
        Err(ParseError::IdnaError)
    );
}

#[test]
fn an_international_name_is_converted_by_the_platform() {
    let url = parse_with(None, "https://BÜCHER.example/a?q=1", fake_platform).unwrap();
    assert_eq!(url.host_str(), Some("xn--bcher-kva.example"));
    assert_eq!(url.as_str(), "https://xn--bcher-kva.example/a?q=1");

    let base = Url::parse("https://app.example/game/pkg.json").unwrap();
    let joined = parse_with(Some(&base), "//cdn.école.example/x", fake_platform).unwrap();
    assert_eq!(joined.as_str(), "https://cdn.xn--cole-9oa.example/x");
}

#[test]
fn ascii_urls_and_other_errors_never_ask_the_platform() {
    let base = Url::parse("https://app.example/game/pkg.json").unwrap();
    let cases = [
        (
            None,
            "https://CDN.example/a b",
            Ok("https://cdn.example/a%20b"),
        ),
        (
            None,
            "https://xn--bcher-kva.example/",
            Ok("https://xn--bcher-kva.example/"),
        ),
        (
            Some(&base),
            "../levels/1.bin",
            Ok("https://app.example/levels/1.bin"),
        ),
        (
            None,
            "levels/1.bin",
            Err(ParseError::RelativeUrlWithoutBase),
        ),
        (
            None,
            "https://cdn.example:99999/",
            Err(ParseError::InvalidPort),
        ),
        (None, "http://[::1/", Err(ParseError::InvalidIpv6Address)),
    ];
    for (base, input, want) in cases {
        let got = parse_with(base, input, panicking_platform).map(|u| u.to_string());
        assert_eq!(got, want.map(str::to_string), "{input:?}");
    }
}

#[test]
fn a_refused_or_non_ascii_answer_keeps_the_idna_error() {
    for platform in [no_platform as urls::PlatformParser, non_ascii_platform] {
        assert_eq!(
            parse_with(None, "https://bücher.example/", platform),
            Err(ParseError::IdnaError)
        );
    }
    // The platform refuses a name with a disallowed code point.
    assert_eq!(
        parse_with(None, "https://a\u{FFFD}.example/", fake_platform),
        Err(ParseError::IdnaError)
    );
}

#[test]
fn hosts_are_converted_as_a_urls_host() {
    assert_eq!(
        parse_host_with("bücher.example", fake_platform),
        Ok(Host::Domain("xn--bcher-kva.example".to_string()))
    );
    assert_eq!(
        parse_host_with("127.0.0.1", panicking_platform),
        Ok(Host::Ipv4([127, 0, 0, 1].into()))
    );
    // Only a bare host is handed to the platform: with a path, user or port it could parse as
    // another URL whose host is something else.
    for text in [
        "bücher.example/x",
        "u@bücher.example",
        "bücher.example:1",
        "b ücher.example",
    ] {
        assert_eq!(
            parse_host_with(text, fake_platform),
            Err(ParseError::IdnaError),
            "{text:?}"
        );
    }
}

#[test]
fn without_a_platform_an_international_name_is_a_typed_refusal() {
    // On the host (no browser) with this lockfile: refused, naming the entry; nothing else lost.
    let error = DomainAllowList::parse(["cdn.example", "bücher.example"]).unwrap_err();
    let text = error.to_string();
    assert!(text.contains("domainAllowList[1]"), "{text}");
    assert!(text.contains("international domain name"), "{text}");
    assert!(urls::parse("https://bücher.example/").is_err());
}
