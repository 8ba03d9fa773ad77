//! International domain names (sw and page suites): the wasm's `url` crate has no Unicode
//! tables (the lockfile's `idna_adapter` 1.0), so `core::urls` asks the browser's `URL` parser.
//! What is checked: download URLs, declaration URLs (joined on their document) and allow-list
//! entries with non-ASCII hosts become their ASCII (punycode) form, the same the browser's own
//! `new URL` gives; names the browser refuses stay typed errors.

use background_assets::core::declaration::parse_declaration;
use background_assets::core::download::DownloadRequest;
use background_assets::core::error::Error;
use background_assets::core::policy::{DomainAllowList, DomainPattern};
use background_assets::core::urls;
use url::{ParseError, Url};
use wasm_bindgen_test::wasm_bindgen_test;

fn browser_href(input: &str) -> String {
    web_sys::Url::new(input).unwrap().href()
}

#[wasm_bindgen_test]
fn a_download_url_with_an_international_host_is_its_ascii_form() {
    for (input, ascii) in [
        (
            "https://BÜCHER.example/a",
            "https://xn--bcher-kva.example/a",
        ),
        (
            "https://münchen.de:8080/p?q=ü#f",
            "https://xn--mnchen-3ya.de:8080/p?q=%C3%BC#f",
        ),
        ("https://faß.de/", "https://xn--fa-hia.de/"),
    ] {
        let url = urls::parse(input).unwrap();
        assert_eq!(url.as_str(), ascii, "{input}");
        assert_eq!(url.as_str(), browser_href(input), "{input}");
        let request = DownloadRequest::get(input).unwrap();
        assert_eq!(request.url.as_str(), ascii);
    }
}

#[wasm_bindgen_test]
fn a_name_the_browser_refuses_is_a_typed_error() {
    assert_eq!(
        urls::parse("https://a\u{FFFD}.example/"),
        Err(ParseError::IdnaError)
    );
    match DownloadRequest::get("https://a\u{FFFD}.example/x") {
        Err(Error::DownloadInvalid { reason }) => {
            assert!(reason.contains("international domain name"), "{reason}")
        }
        other => panic!("expected DownloadInvalid, got {other:?}"),
    }
}

#[wasm_bindgen_test]
fn declaration_urls_are_joined_and_converted() {
    let base = Url::parse("https://app.example/game/pkg.json").unwrap();
    let joined = urls::join(&base, "//cdn.école.example/x").unwrap();
    assert_eq!(joined.as_str(), "https://cdn.xn--cole-9oa.example/x");

    let json = r#"{
        "initialDownloadRestrictions": { "domainAllowList": ["*.école.example"] },
        "manifestURL": "//cdn.école.example/manifest.json",
        "assetPacks": [{ "id": "levels", "version": "1", "downloadPolicy": "prefetch",
            "files": [{ "path": "1.bin", "url": "https://cdn.école.example/1.bin",
                        "size": 3, "sha256": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" }] }]
    }"#;
    let declaration = parse_declaration(json, &base);
    let declaration = declaration.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        declaration.manifest_url.as_ref().map(Url::as_str),
        Some("https://cdn.xn--cole-9oa.example/manifest.json")
    );
    let file_url = declaration.asset_packs[0].files[0].url.clone();
    assert_eq!(file_url.as_str(), "https://cdn.xn--cole-9oa.example/1.bin");
    let page = base.origin();
    let allow = &declaration.restrictions.domain_allow_list;
    assert!(allow.allows(&file_url, &page));
}

#[wasm_bindgen_test]
fn allow_list_entries_are_normalised_by_the_browser() {
    let list = DomainAllowList::parse(["bücher.example", "*.ÉCOLE.example"]).unwrap();
    assert_eq!(
        list.patterns()[0],
        DomainPattern::Host("xn--bcher-kva.example".into())
    );
    assert_eq!(
        list.patterns()[1],
        DomainPattern::SubdomainsOf("xn--cole-9oa.example".into())
    );
    let page = Url::parse("https://app.example.net/").unwrap().origin();
    let allowed = |u: &str| list.allows(&urls::parse(u).unwrap(), &page);
    assert!(allowed("https://BÜCHER.example/a"));
    assert!(allowed("https://xn--bcher-kva.example/a"));
    assert!(allowed("https://cdn.école.example/a"));
    assert!(!allowed("https://bucher.example/a"));
    assert!(DomainAllowList::parse(["a\u{FFFD}.example"]).is_err());
}

#[wasm_bindgen_test]
fn a_homograph_of_an_allowed_host_is_refused_by_its_ascii_name() {
    use background_assets::core::download::{Identifier, Priority, UrlDownload};
    use background_assets::core::policy::{InitialDownloadRestrictions, Policy};
    // `cdn.exаmple.com` with a Cyrillic `а`: another host than the allowed `cdn.example.com`.
    let homograph = "https://cdn.ex\u{430}mple.com/a";
    let restrictions = InitialDownloadRestrictions {
        download_allowance: 1_000,
        essential_download_allowance: 1_000,
        domain_allow_list: DomainAllowList::parse(["cdn.example.com"]).unwrap(),
    };
    let page = Url::parse("https://app.example.net/").unwrap();
    let mut policy = Policy::new(restrictions, &page);
    let refusal = Error::SessionDownloadDisallowedByDomain {
        host: "cdn.xn--exmple-4nf.com".into(),
    };
    assert_eq!(
        policy.check_redirect(&urls::parse(homograph).unwrap()),
        Err(refusal.clone())
    );
    let download = UrlDownload::new(
        Identifier::new("homograph").unwrap(),
        DownloadRequest::get(homograph).unwrap(),
        false,
        Some(1),
        Priority::DEFAULT,
        0,
    )
    .unwrap();
    assert_eq!(policy.admit(&download), Err(refusal));
}
