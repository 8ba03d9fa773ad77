#![cfg(not(target_arch = "wasm32"))]
//! Host tests of identifiers, requests, priorities, `UrlDownload` and the state machine.

use background_assets::core::download::*;
use background_assets::core::error::{Error, Label};
use proptest::prelude::*;

fn id(s: &str) -> Identifier {
    Identifier::new(s).unwrap()
}

fn request() -> DownloadRequest {
    DownloadRequest::get("https://cdn.example.com/a.bin").unwrap()
}

#[test]
fn identifiers_accept_the_safe_alphabet() {
    for ok in [
        "a",
        "A-z_0.9",
        "level-2",
        "..a",
        "a..",
        ".hidden",
        &"x".repeat(128),
    ] {
        assert_eq!(Identifier::new(ok).unwrap().as_str(), ok);
    }
}

#[test]
fn identifiers_refuse_escapes_and_junk() {
    let cases: &[(&str, &str)] = &[
        ("", "empty"),
        (".", "reserved"),
        ("..", "reserved"),
        ("../x", "'/'"),
        ("a/b", "'/'"),
        ("a\\b", "'\\\\'"),
        ("a b", "' '"),
        ("a\0b", "'\\0'"),
        ("é", "'é'"),
        ("a:b", "':'"),
        ("%2e%2e", "'%'"),
    ];
    for (bad, word) in cases {
        match Identifier::new(*bad) {
            Err(Error::InvalidIdentifier { reason, .. }) => {
                assert!(reason.contains(word), "{bad:?}: {reason}")
            }
            other => panic!("{bad:?} gave {other:?}"),
        }
    }
    let long = "x".repeat(129);
    assert!(
        matches!(Identifier::new(long), Err(Error::InvalidIdentifier { reason, .. }) if reason.contains("129"))
    );
    assert_eq!(Identifier::new("").unwrap_err().code(), 1001);
}

#[test]
fn identifiers_deserialize_only_when_valid() {
    let ok: Identifier = serde_json::from_str("\"abc\"").unwrap();
    assert_eq!(ok, "abc");
    assert!(serde_json::from_str::<Identifier>("\"../abc\"").is_err());
    assert_eq!(serde_json::to_string(&id("abc")).unwrap(), "\"abc\"");
}

#[test]
fn priority_clamps_and_orders() {
    assert!(Priority::MIN < Priority::DEFAULT && Priority::DEFAULT < Priority::MAX);
    assert_eq!(Priority::default(), Priority::DEFAULT);
    assert_eq!(Priority::new(i64::MIN), Priority::MIN);
    assert_eq!(Priority::new(i64::MAX), Priority::MAX);
    assert_eq!(Priority::new(42).value(), 42);
    assert_eq!("min".parse::<Priority>().unwrap(), Priority::MIN);
    assert_eq!("max".parse::<Priority>().unwrap(), Priority::MAX);
    assert_eq!("-3".parse::<Priority>().unwrap(), Priority::MIN);
    assert!(matches!(
        "high".parse::<Priority>(),
        Err(Error::DownloadInvalid { .. })
    ));
    assert_eq!(
        serde_json::from_str::<Priority>("250").unwrap(),
        Priority::MAX
    );
    assert_eq!(
        serde_json::from_str::<Priority>("\"default\"").unwrap(),
        Priority::DEFAULT
    );
    assert!(serde_json::from_str::<Priority>("\"urgent\"").is_err());
    assert_eq!(
        serde_json::from_str::<Priority>("-3").unwrap(),
        Priority::MIN
    );
    assert_eq!(
        serde_json::from_str::<Priority>("18446744073709551615").unwrap(),
        Priority::MAX
    );
    assert_eq!(
        serde_json::from_str::<Priority>("\"min\"").unwrap(),
        Priority::MIN
    );
    for bad in ["1.5", "true", "null", "[1]", "{}"] {
        let err = serde_json::from_str::<Priority>(bad).unwrap_err();
        assert!(err.to_string().contains("min/default/max"), "{bad}: {err}");
    }
    assert_eq!(serde_json::to_string(&Priority::new(7)).unwrap(), "7");
}

#[test]
fn requests_are_http_get_with_checked_headers() {
    let r = request()
        .with_header("Authorization", "Bearer x")
        .unwrap()
        .with_header("X-A", "1")
        .unwrap();
    assert_eq!(
        r.headers,
        vec![
            ("Authorization".into(), "Bearer x".into()),
            ("X-A".into(), "1".into())
        ]
    );
    assert_eq!(DownloadRequest::METHOD, "GET");
    r.validate().unwrap();
    for url in [
        "ftp://cdn.example.com/a",
        "file:///etc/passwd",
        "data:,x",
        "blob:https://a/b",
        "https://u:p@cdn.example.com/a",
        "not a url",
    ] {
        assert!(
            matches!(
                DownloadRequest::get(url),
                Err(Error::DownloadInvalid { .. })
            ),
            "{url}"
        );
    }
    let long = format!("https://cdn.example.com/{}", "a".repeat(MAX_URL_LEN));
    assert!(DownloadRequest::get(&long).is_err());
    for name in [
        "Host",
        "content-length",
        "RANGE",
        "If-Range",
        "Cookie",
        "Origin",
        "Referer",
        "Proxy-Authorization",
        "Sec-Fetch-Mode",
        "Transfer-Encoding",
    ] {
        let err = request().with_header(name, "x").unwrap_err();
        assert!(
            matches!(&err, Error::DownloadInvalid { reason } if reason.contains("may not be given")),
            "{name}: {err}"
        );
    }
    for (name, value) in [
        ("", "x"),
        ("X A", "x"),
        ("X:A", "x"),
        ("X-É", "x"),
        ("X-A", "a\r\nB: c"),
        ("X-A", "a\nb"),
        ("X-A", "a\0"),
        ("X-A", " padded"),
    ] {
        assert!(
            request().with_header(name, value).is_err(),
            "{name:?}: {value:?}"
        );
    }
    let mut r = request();
    for i in 0..MAX_HEADERS {
        r = r.with_header(&format!("X-{i}"), "v").unwrap();
    }
    assert!(r.with_header("X-Last", "v").is_err());
}

#[test]
fn stored_requests_are_revalidated() {
    let mut r = request();
    r.headers.push(("Host".into(), "evil".into()));
    assert!(r.validate().is_err());
    // Deserialization validates: tampered records are refused.
    for text in [
        r#"{"url":"ftp://x/y","headers":[]}"#,
        r#"{"url":"https://x/y","headers":[["Range","bytes=0-"]]}"#,
        r#"{"url":"https://x/y","headers":[["X-A","a\r\nB: c"]]}"#,
        r#"{"url":"https://u:p@x/y"}"#,
    ] {
        assert!(
            serde_json::from_str::<DownloadRequest>(text).is_err(),
            "{text}"
        );
    }
    let ok: DownloadRequest = serde_json::from_str(r#"{"url":"https://x/y"}"#).unwrap();
    assert!(ok.headers.is_empty());
}

#[test]
fn essential_downloads_need_an_exact_size() {
    let err = UrlDownload::new(id("a"), request(), true, None, Priority::DEFAULT, 0).unwrap_err();
    assert!(
        matches!(&err, Error::DownloadInvalid { reason } if reason.contains("exact file size"))
    );
    assert_eq!(err.code(), 0);
    let d = UrlDownload::new(id("a"), request(), true, Some(10), Priority::DEFAULT, 0).unwrap();
    assert_eq!(d.file_size, Some(10));
    let d = UrlDownload::new(id("b"), request(), false, None, Priority::MIN, 5).unwrap();
    assert_eq!(d.created_at, 5);
    assert!(UrlDownload::new(
        id("c"),
        request(),
        false,
        Some(MAX_SAFE_INTEGER + 1),
        Priority::MIN,
        5
    )
    .is_err());
}

#[test]
fn url_download_options_and_storage_form() {
    let d = UrlDownload::new(id("lvl"), request(), true, Some(3), Priority::MAX, 9)
        .unwrap()
        .with_application_group("group.example")
        .unwrap()
        .with_pack(id("levels"), "levels/1.bin");
    assert!(matches!(
        d.clone().with_application_group("bad group"),
        Err(Error::InvalidIdentifier { .. })
    ));
    let json = serde_json::to_value(&d).unwrap();
    assert_eq!(json["identifier"], "lvl");
    assert_eq!(json["fileSize"], 3);
    assert_eq!(json["applicationGroup"], "group.example");
    assert_eq!(json["createdAt"], 9);
    assert_eq!(json["priority"], 100);
    assert_eq!(json["request"]["url"], "https://cdn.example.com/a.bin");
    assert_eq!(json["pack"]["packId"], "levels");
    let back: UrlDownload = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(back, d);
    back.validate().unwrap();
    let tamper = |field: &str, value: serde_json::Value| {
        let mut t = json.clone();
        t[field] = value;
        serde_json::from_value::<UrlDownload>(t)
    };
    assert!(tamper("identifier", "../x".into()).is_err());
    assert!(
        tamper("fileSize", serde_json::Value::Null).is_err(),
        "essential without size"
    );
    assert!(tamper("applicationGroup", "a/b".into()).is_err());
    assert!(tamper("fileSize", (MAX_SAFE_INTEGER + 1).into()).is_err());
    assert_eq!(
        tamper("priority", "max".into()).unwrap().priority,
        Priority::MAX
    );
}

const LEGAL: &[(DownloadState, DownloadState)] = {
    use DownloadState::*;
    &[
        (Created, Waiting),
        (Created, Downloading),
        (Created, Failed),
        (Waiting, Downloading),
        (Waiting, Paused),
        (Waiting, Failed),
        (Downloading, Paused),
        (Downloading, Waiting),
        (Downloading, Finished),
        (Downloading, Failed),
        (Paused, Waiting),
        (Paused, Downloading),
        (Paused, Failed),
    ]
};

#[test]
fn the_transition_table_is_exactly_the_documented_one() {
    let who = id("x");
    for from in DownloadState::ALL {
        for to in DownloadState::ALL {
            let mut s = from;
            let legal = LEGAL.contains(&(from, to));
            match s.transition(to, &who) {
                Ok(()) => {
                    assert!(legal, "{from} -> {to} should be refused");
                    assert_eq!(s, to);
                }
                Err(Error::InvalidTransition {
                    identifier,
                    from: f,
                    to: t,
                }) => {
                    assert!(!legal, "{from} -> {to} should be allowed");
                    assert_eq!(
                        (identifier.as_str(), &*f, &*t),
                        ("x", from.label(), to.label())
                    );
                    assert_eq!(s, from, "a refused move leaves the state alone");
                }
                Err(other) => panic!("{other:?}"),
            }
        }
    }
}

#[test]
fn only_failed_can_be_rescheduled() {
    let who = id("x");
    for from in DownloadState::ALL {
        let mut s = from;
        let result = s.reschedule(&who);
        if from == DownloadState::Failed {
            result.unwrap();
            assert_eq!(s, DownloadState::Waiting);
        } else {
            assert!(
                matches!(result, Err(Error::InvalidTransition { .. })),
                "{from}"
            );
            assert_eq!(s, from);
        }
    }
    assert!(DownloadState::Finished.is_terminal() && DownloadState::Failed.is_terminal());
    assert!(DownloadState::Paused.is_scheduled() && !DownloadState::Created.is_scheduled());
}

#[test]
fn states_have_stable_names() {
    let names: Vec<String> = DownloadState::ALL
        .iter()
        .map(|s| serde_json::to_string(s).unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "\"created\"",
            "\"waiting\"",
            "\"downloading\"",
            "\"paused\"",
            "\"finished\"",
            "\"failed\""
        ]
    );
    for s in DownloadState::ALL {
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            format!("\"{}\"", s.label())
        );
        assert_eq!(
            serde_json::from_str::<DownloadState>(&format!("\"{s}\"")).unwrap(),
            s
        );
    }
}

proptest! {
    #[test]
    fn identifier_validation_matches_the_rule(s in "\\PC{0,10}|[A-Za-z0-9._/-]{0,140}") {
        let expected = !s.is_empty() && s.len() <= 128 && s != "." && s != ".."
            && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        prop_assert_eq!(Identifier::new(s.clone()).is_ok(), expected, "{:?}", s);
    }

    #[test]
    fn random_walks_only_take_legal_steps(steps in prop::collection::vec(0usize..6, 0..40)) {
        let who = id("walk");
        let mut s = DownloadState::Created;
        for i in steps {
            let to = DownloadState::ALL[i];
            let before = s;
            let ok = s.transition(to, &who).is_ok();
            prop_assert_eq!(ok, LEGAL.contains(&(before, to)));
            if before.is_terminal() { prop_assert_eq!(s, before); }
        }
    }
}
