#![cfg(not(target_arch = "wasm32"))]
//! Host tests of the domain allow-list, allowance accounting and pre-flight checks.

use background_assets::core::download::*;
use background_assets::core::error::Error;
use background_assets::core::policy::*;
use proptest::prelude::*;
use url::Url;

fn url(s: &str) -> Url {
    Url::parse(s).unwrap()
}

fn page() -> Url {
    url("https://app.example.net/index.html")
}

fn list(entries: &[&str]) -> DomainAllowList {
    DomainAllowList::parse(entries).unwrap()
}

fn allowed(list: &DomainAllowList, u: &str) -> bool {
    list.allows(&url(u), &page().origin())
}

fn download(name: &str, u: &str, essential: bool, size: Option<u64>) -> UrlDownload {
    UrlDownload::new(
        Identifier::new(name).unwrap(),
        DownloadRequest::get(u).unwrap(),
        essential,
        size,
        Priority::DEFAULT,
        0,
    )
    .unwrap()
}

fn policy(total: u64, essential: u64, entries: &[&str]) -> Policy {
    Policy::new(
        InitialDownloadRestrictions {
            download_allowance: total,
            essential_download_allowance: essential,
            domain_allow_list: list(entries),
        },
        &page(),
    )
}

#[test]
fn exact_hosts_match_case_insensitively_on_any_port_and_web_scheme() {
    let l = list(&["cdn.example.com"]);
    assert!(allowed(&l, "https://cdn.example.com/a"));
    assert!(allowed(&l, "https://CDN.Example.COM/a"));
    assert!(allowed(&l, "http://cdn.example.com:8080/a"));
    assert!(!allowed(&l, "https://a.cdn.example.com/a"));
    assert!(!allowed(&l, "https://cdn.example.com.evil.net/a"));
    assert!(!allowed(&l, "https://xcdn.example.com/a"));
    assert!(!allowed(&l, "ftp://cdn.example.com/a"));
    let upper = list(&["CDN.EXAMPLE.COM"]);
    assert!(allowed(&upper, "https://cdn.example.com/a"));
}

#[test]
fn wildcards_match_subdomains_only() {
    let l = list(&["*.example.org"]);
    assert!(allowed(&l, "https://a.example.org/x"));
    assert!(allowed(&l, "https://a.b.example.org/x"));
    assert!(!allowed(&l, "https://example.org/x"));
    assert!(!allowed(&l, "https://badexample.org/x"));
    assert!(!allowed(&l, "https://a.example.org.evil.net/x"));
    assert!(!allowed(&l, "https://example.org.a/x"));
}

// International names in the allow-list are converted by the browser's URL parser: tested in
// the sw and page suites (`tests/common/urls.rs`), and the host's refusal in `core_urls.rs`.

#[test]
fn ip_literals_match_exactly() {
    let l = list(&["127.0.0.1", "[::1]"]);
    assert!(allowed(&l, "http://127.0.0.1:9000/a"));
    assert!(allowed(&l, "http://[::1]:9000/a"));
    assert!(allowed(&l, "http://[0:0:0:0:0:0:0:1]/a"));
    assert!(!allowed(&l, "http://127.0.0.2/a"));
    assert!(!allowed(&l, "http://localhost/a"));
    // A host name that only looks like the IP in the list is not it.
    let names = list(&["localhost"]);
    assert!(!allowed(&names, "http://127.0.0.1/a"));
}

#[test]
fn same_origin_is_always_allowed_and_is_the_default() {
    let none = DomainAllowList::SameOriginOnly;
    assert!(allowed(&none, "https://app.example.net/assets/a.bin"));
    assert!(
        !allowed(&none, "http://app.example.net/assets/a.bin"),
        "other scheme is another origin"
    );
    assert!(
        !allowed(&none, "https://app.example.net:444/a"),
        "other port is another origin"
    );
    assert!(!allowed(&none, "https://cdn.example.net/a"));
    assert_eq!(
        DomainAllowList::parse(Vec::<String>::new()).unwrap(),
        DomainAllowList::SameOriginOnly
    );
    let l = list(&["cdn.example.com"]);
    assert!(allowed(&l, "https://app.example.net/a"));
}

#[test]
fn malformed_entries_are_refused_with_their_index() {
    for bad in [
        "",
        "*",
        "*.",
        "**.a.com",
        "a.*.com",
        "*a.com",
        "a.com*",
        "https://a.com",
        "a.com:80",
        "a.com/x",
        "a.com?x",
        "u@a.com",
        "a..com",
        ".a.com",
        "a.com.",
        "*.127.0.0.1",
        "a b",
        "[::1",
        "exa\tmple.com",
        "a%00.com",
    ] {
        match DomainAllowList::parse(["ok.example", bad]) {
            Err(Error::InvalidDeclaration { path, .. }) => {
                assert_eq!(path, "$.domainAllowList[1]", "{bad:?}")
            }
            other => panic!("{bad:?} gave {other:?}"),
        }
    }
    let err = DomainAllowList::parse(["a.com", "A.COM"]).unwrap_err();
    assert!(
        matches!(err, Error::InvalidDeclaration { reason, .. } if reason.contains("duplicate"))
    );
    let many: Vec<String> = (0..=MAX_ALLOW_LIST_ENTRIES)
        .map(|i| format!("h{i}.example"))
        .collect();
    assert!(DomainAllowList::parse(&many).is_err());
}

#[test]
fn allow_lists_serialize_as_their_entries() {
    let l = list(&["cdn.example.com", "*.example.org", "127.0.0.1", "[::1]"]);
    let json = serde_json::to_string(&l).unwrap();
    assert_eq!(
        json,
        r#"["cdn.example.com","*.example.org","127.0.0.1","[::1]"]"#
    );
    assert_eq!(serde_json::from_str::<DomainAllowList>(&json).unwrap(), l);
    assert_eq!(
        serde_json::to_string(&DomainAllowList::SameOriginOnly).unwrap(),
        "[]"
    );
    assert!(serde_json::from_str::<DomainAllowList>(r#"["a.*.com"]"#).is_err());
}

#[test]
fn before_launch_domains_are_checked_first() {
    let mut p = policy(1_000, 1_000, &["cdn.example.com"]);
    let d = download("a", "https://evil.example/a", false, Some(1));
    assert_eq!(
        p.admit(&d),
        Err(Error::SessionDownloadDisallowedByDomain {
            host: "evil.example".into()
        })
    );
    assert_eq!(
        p.used(),
        RemainingAllowance {
            essential: 0,
            total: 0
        }
    );
}

#[test]
fn before_launch_a_size_is_required() {
    let mut p = policy(1_000, 1_000, &["cdn.example.com"]);
    let d = download("a", "https://cdn.example.com/a", false, None);
    assert_eq!(
        p.admit(&d),
        Err(Error::SessionDownloadDisallowedByAllowance {
            identifier: "a".into()
        })
    );
}

#[test]
fn pools_are_charged_separately() {
    let mut p = policy(1_000, 300, &["cdn.example.com"]);
    let e = download("e", "https://cdn.example.com/e", true, Some(200));
    let n = download("n", "https://cdn.example.com/n", false, Some(900));
    assert_eq!(
        p.admit(&e),
        Ok(Admission::Charged {
            pool: Pool::Essential,
            bytes: 200
        })
    );
    assert_eq!(
        p.admit(&n),
        Ok(Admission::Charged {
            pool: Pool::Download,
            bytes: 900
        })
    );
    assert_eq!(
        p.remaining(),
        Some(RemainingAllowance {
            essential: 100,
            total: 100
        })
    );
    let e2 = download("e2", "https://cdn.example.com/e2", true, Some(101));
    assert_eq!(
        p.admit(&e2),
        Err(Error::DownloadWouldExceedAllowance {
            identifier: "e2".into(),
            requested: 101,
            remaining: 100
        })
    );
    let e3 = download("e3", "https://cdn.example.com/e3", true, Some(100));
    p.admit(&e3).unwrap();
    assert_eq!(
        p.remaining(),
        Some(RemainingAllowance {
            essential: 0,
            total: 100
        })
    );
    // The same identifier twice is refused and not charged twice.
    assert_eq!(
        p.admit(&n),
        Err(Error::DownloadAlreadyScheduled {
            identifier: "n".into()
        })
    );
    assert_eq!(
        p.remaining(),
        Some(RemainingAllowance {
            essential: 0,
            total: 100
        })
    );
}

#[test]
fn essential_allowance_larger_than_download_allowance_works() {
    let mut p = policy(10, 1_000, &[]);
    let e = download("e", "https://app.example.net/e", true, Some(900));
    p.admit(&e).unwrap();
    let n = download("n", "https://app.example.net/n", false, Some(11));
    assert!(matches!(
        p.admit(&n),
        Err(Error::DownloadWouldExceedAllowance { remaining: 10, .. })
    ));
}

#[test]
fn zero_allowance_refuses_everything_but_empty_files() {
    let mut p = Policy::new(InitialDownloadRestrictions::default(), &page());
    let d = download("a", "https://app.example.net/a", false, Some(1));
    assert!(matches!(
        p.admit(&d),
        Err(Error::DownloadWouldExceedAllowance {
            requested: 1,
            remaining: 0,
            ..
        })
    ));
    let empty = download("b", "https://app.example.net/b", false, Some(0));
    p.admit(&empty).unwrap();
}

#[test]
fn release_refunds_what_was_not_received() {
    let mut p = policy(1_000, 0, &["cdn.example.com"]);
    let d = download("a", "https://cdn.example.com/a", false, Some(600));
    p.admit(&d).unwrap();
    p.bytes_received(&d.identifier, 250).unwrap();
    assert_eq!(p.release(&d.identifier), 350);
    // 250 bytes were really fetched: they stay spent.
    assert_eq!(p.remaining().unwrap().total, 750);
    assert_eq!(
        p.release(&d.identifier),
        0,
        "releasing twice refunds nothing"
    );
    // After release the identifier can be admitted again.
    p.admit(&download(
        "a",
        "https://cdn.example.com/a",
        false,
        Some(750),
    ))
    .unwrap();
    assert_eq!(p.remaining().unwrap().total, 0);
    // A completed download keeps its charge.
    p.complete(&d.identifier);
    assert_eq!(p.remaining().unwrap().total, 0);
}

#[test]
fn restricted_downloads_cannot_receive_more_than_admitted() {
    let mut p = policy(1_000, 0, &["cdn.example.com"]);
    let d = download("a", "https://cdn.example.com/a", false, Some(100));
    p.admit(&d).unwrap();
    p.bytes_received(&d.identifier, 60).unwrap();
    p.bytes_received(&d.identifier, 40).unwrap();
    assert_eq!(
        p.bytes_received(&d.identifier, 1),
        Err(Error::SessionDownloadAllowanceExceeded {
            identifier: "a".into()
        })
    );
    // A restart from zero does not charge the wasted bytes twice.
    p.rewind(&d.identifier, 0).unwrap();
    p.bytes_received(&d.identifier, 100).unwrap();
    let unknown = Identifier::new("zzz").unwrap();
    assert_eq!(
        p.bytes_received(&unknown, 1),
        Err(Error::DownloadNotScheduled {
            identifier: "zzz".into()
        })
    );
    assert!(p.rewind(&unknown, 0).is_err());
}

#[test]
fn lifting_ends_allowances_but_not_the_allow_list() {
    let mut p = policy(100, 0, &["cdn.example.com"]);
    let d = download("a", "https://cdn.example.com/a", false, Some(100));
    p.admit(&d).unwrap();
    p.bytes_received(&d.identifier, 100).unwrap();
    p.lift();
    assert!(p.launched());
    assert_eq!(p.remaining(), None);
    // Admitted before launch: no longer capped.
    p.bytes_received(&d.identifier, 1_000).unwrap();
    // New downloads: no size needed, no allowance.
    let big = download("big", "https://cdn.example.com/big", false, None);
    assert_eq!(p.admit(&big), Ok(Admission::Unrestricted));
    p.bytes_received(&big.identifier, u64::MAX).unwrap();
    // The allow-list still applies.
    let evil = download("evil", "https://evil.example/a", false, None);
    assert!(matches!(
        p.admit(&evil),
        Err(Error::SessionDownloadDisallowedByDomain { .. })
    ));
}

#[test]
fn redirects_are_checked_against_the_allow_list() {
    let p = policy(0, 0, &["cdn.example.com", "*.cdn.example.org"]);
    p.check_redirect(&url("https://cdn.example.com/x")).unwrap();
    p.check_redirect(&url("https://edge1.cdn.example.org/x"))
        .unwrap();
    p.check_redirect(&url("https://app.example.net/x")).unwrap();
    assert_eq!(
        p.check_redirect(&url("https://tracker.example/x")),
        Err(Error::SessionDownloadDisallowedByDomain {
            host: "tracker.example".into()
        })
    );
    assert!(p.check_redirect(&url("data:text/plain,x")).is_err());
}

#[test]
fn policy_state_survives_storage() {
    let mut p = policy(1_000, 500, &["cdn.example.com", "*.example.org"]);
    p.admit(&download("a", "https://cdn.example.com/a", true, Some(100)))
        .unwrap();
    p.bytes_received(&Identifier::new("a").unwrap(), 10)
        .unwrap();
    let json = serde_json::to_string(&p).unwrap();
    let mut back: Policy = serde_json::from_str(&json).unwrap();
    assert_eq!(back, p);
    assert_eq!(back.release(&Identifier::new("a").unwrap()), 90);
}

#[test]
fn preflight_checks_install_size_then_storage() {
    let est = StorageEstimate {
        usage: 100,
        quota: 1_100,
    };
    preflight_install(1_000, 1_000, Some(1_000), est).unwrap();
    assert_eq!(
        preflight_install(1_001, 1, Some(1_000), est),
        Err(Error::MaxInstallSizeExceeded {
            needed: 1_001,
            limit: 1_000
        })
    );
    assert_eq!(
        preflight_install(5, 1_001, None, est),
        Err(Error::InsufficientStorage {
            needed: 1_001,
            available: 1_000
        })
    );
    // usage above quota (can happen after a quota change) means nothing is available.
    let over = StorageEstimate {
        usage: 2_000,
        quota: 1_000,
    };
    assert_eq!(
        preflight_install(0, 1, None, over),
        Err(Error::InsufficientStorage {
            needed: 1,
            available: 0
        })
    );
    preflight_install(0, 0, Some(0), over).unwrap();
}

proptest! {
    /// Charged bytes never exceed an allowance, and admits + releases balance out.
    #[test]
    fn allowances_are_never_exceeded(
        ops in prop::collection::vec((0usize..8, any::<bool>(), 0u64..400, any::<bool>()), 0..60),
        total in 0u64..1_000,
        essential in 0u64..1_000,
    ) {
        let mut p = policy(total, essential, &[]);
        for (n, ess, size, release) in ops {
            let name = format!("d{n}");
            let id = Identifier::new(name.clone()).unwrap();
            if release {
                p.release(&id);
            } else {
                let _ = p.admit(&download(&name, "https://app.example.net/x", ess, Some(size)));
            }
            let used = p.used();
            prop_assert!(used.total <= total && used.essential <= essential);
            let left = p.remaining().unwrap();
            prop_assert_eq!(left.total + used.total, total);
            prop_assert_eq!(left.essential + used.essential, essential);
        }
        for n in 0..8 {
            p.release(&Identifier::new(format!("d{n}")).unwrap());
        }
        prop_assert_eq!(p.used(), RemainingAllowance { essential: 0, total: 0 });
    }

    /// A wildcard never matches its own apex and always matches a label in front of it.
    #[test]
    fn wildcard_semantics(apex in "[a-z]{1,8}\\.[a-z]{2,4}", label in "[a-z0-9]{1,8}") {
        let l = DomainAllowList::parse([format!("*.{apex}")]).unwrap();
        let other_origin = url("https://elsewhere.invalid/").origin();
        let apex_url = url(&format!("https://{apex}/"));
        let sub_url = url(&format!("https://{label}.{apex}/"));
        let glued_url = url(&format!("https://{label}{apex}/"));
        prop_assert!(!l.allows(&apex_url, &other_origin));
        prop_assert!(l.allows(&sub_url, &other_origin));
        prop_assert!(!l.allows(&glued_url, &other_origin));
    }

    #[test]
    fn entry_parsing_never_panics(entry in "\\PC{0,40}") {
        let _ = DomainPattern::parse(&entry);
    }
}
