#![cfg(not(target_arch = "wasm32"))]
//! Bad input and security, host side (issue 8): everything the sans-IO core decides.
//!
//! * A corpus of bad `pkg.json` files and manifests under `tests/corpus/`, each paired with a
//!   `.expect` file naming the exact JSON path the refusal must name (and a piece of its reason).
//!   A corpus file without an `.expect` (or the reverse) fails the test, so the corpus cannot rot.
//! * Inputs too big to commit (huge arrays, strings, keys, nesting), generated here.
//! * Identifiers that try to escape their key space, requests the browser would refuse, URLs
//!   outside the allow-list (also after a redirect), allowance exceeded before first launch — each
//!   refused with its typed error and the policy's accounting unchanged.
//! * A structure-aware fuzzer: a valid declaration with one corruption at a random JSON path is
//!   either still valid or refused at a path on the way to (or inside) the corruption.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use background_assets::core::declaration::*;
use background_assets::core::download::*;
use background_assets::core::error::Error;
use background_assets::core::policy::*;
use proptest::prelude::*;
use serde_json::{json, Value};
use url::Url;

const DIGEST: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Where the corpus `pkg.json` files are "fetched" from.
fn declaration_base() -> Url {
    Url::parse("https://app.example.com/game/pkg.json").unwrap()
}

/// Where the corpus manifests are "fetched" from.
fn manifest_base() -> Url {
    Url::parse("https://cdn.example.com/v1/manifest.json").unwrap()
}

fn url(text: &str) -> Url {
    Url::parse(text).unwrap()
}

fn id(text: &str) -> Identifier {
    Identifier::new(text).unwrap()
}

// ---------------------------------------------------------------------------------------------
// The corpus
// ---------------------------------------------------------------------------------------------

fn corpus_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(name)
}

/// What a corpus file's `.expect` sidecar says: `path: <exact JSON path>` and optionally
/// `reason: <substring of the reason>`.
#[derive(Debug)]
struct Expectation {
    path: String,
    reason: Option<String>,
}

fn read_expectation(file: &Path) -> Expectation {
    let text = fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let mut path = None;
    let mut reason = None;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(p) = line.strip_prefix("path: ") {
            path = Some(p.to_string());
        } else if let Some(r) = line.strip_prefix("reason: ") {
            reason = Some(r.to_string());
        } else {
            panic!("{}: unexpected line {line:?}", file.display());
        }
    }
    Expectation {
        path: path.unwrap_or_else(|| panic!("{}: no `path:` line", file.display())),
        reason,
    }
}

/// The corpus files of one folder, by stem: `(document, expectation file if any)`. Any file that
/// is neither `.json` nor `.expect`, and any `.expect` without its `.json`, fails.
fn corpus_files(folder: &str) -> BTreeMap<String, (PathBuf, Option<PathBuf>)> {
    let dir = corpus_dir(folder);
    let mut documents = BTreeMap::new();
    let mut expectations = BTreeMap::new();
    for entry in fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if let Some(stem) = name.strip_suffix(".json") {
            documents.insert(stem.to_string(), path);
        } else if let Some(stem) = name.strip_suffix(".expect") {
            expectations.insert(stem.to_string(), path);
        } else {
            panic!(
                "{}: corpus files are NAME.json and NAME.expect",
                path.display()
            );
        }
    }
    for stem in expectations.keys() {
        assert!(
            documents.contains_key(stem),
            "{folder}/{stem}.expect has no {stem}.json"
        );
    }
    documents
        .into_iter()
        .map(|(stem, doc)| {
            let expect = expectations.remove(&stem);
            (stem, (doc, expect))
        })
        .collect()
}

/// The text the library sees: like `Response.text()`, invalid UTF-8 becomes U+FFFD.
fn read_document(path: &Path) -> String {
    String::from_utf8_lossy(&fs::read(path).unwrap()).into_owned()
}

/// Parses every file of a bad-corpus folder and checks each refusal against its `.expect`.
/// Returns how many files were checked; panics listing every mismatch.
fn check_bad_corpus(folder: &str, parse: impl Fn(&str) -> Result<(), Error>) -> usize {
    let files = corpus_files(folder);
    let mut failures = Vec::new();
    for (stem, (doc, expect)) in &files {
        let Some(expect) = expect else {
            failures.push(format!(
                "{stem}: no {stem}.expect (every bad file names its path)"
            ));
            continue;
        };
        let expect = read_expectation(expect);
        match parse(&read_document(doc)) {
            Err(Error::InvalidDeclaration { path, reason }) => {
                if path != expect.path {
                    failures.push(format!(
                        "{stem}: path {path:?}, expected {:?} ({reason})",
                        expect.path
                    ));
                } else if let Some(want) = &expect.reason {
                    if !reason.contains(want.as_str()) {
                        failures.push(format!("{stem}: reason {reason:?} lacks {want:?}"));
                    }
                }
                if reason.len() > 512 {
                    failures.push(format!("{stem}: reason is {} bytes long", reason.len()));
                }
            }
            other => failures.push(format!(
                "{stem}: expected InvalidDeclaration, got {other:?}"
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} files in {folder} failed:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
    files.len()
}

fn parse_declaration_file(name: &str) -> Declaration {
    let path = corpus_dir("good-declarations").join(format!("{name}.json"));
    parse_declaration(&read_document(&path), &declaration_base())
        .unwrap_or_else(|e| panic!("{name}: {e:?}"))
}

#[test]
fn every_bad_declaration_in_the_corpus_is_refused_at_its_path() {
    let checked = check_bad_corpus("bad-declarations", |text| {
        parse_declaration(text, &declaration_base()).map(|_| ())
    });
    assert!(checked >= 100, "only {checked} bad declarations");
}

#[test]
fn every_bad_manifest_in_the_corpus_is_refused_at_its_path() {
    let checked = check_bad_corpus("bad-manifests", |text| {
        parse_manifest(text, &manifest_base()).map(|_| ())
    });
    assert!(checked >= 20, "only {checked} bad manifests");
}

#[test]
fn every_good_declaration_in_the_corpus_parses_and_round_trips() {
    let files = corpus_files("good-declarations");
    assert!(files.len() >= 5);
    for (stem, (doc, expect)) in files {
        assert!(expect.is_none(), "{stem}: good files have no .expect");
        let declaration = parse_declaration(&read_document(&doc), &declaration_base())
            .unwrap_or_else(|e| panic!("{stem}: {e:?}"));
        let again = parse_declaration(&declaration.to_json().to_string(), &declaration_base())
            .unwrap_or_else(|e| panic!("{stem} (canonical form): {e:?}"));
        assert_eq!(again, declaration, "{stem}");
    }
}

#[test]
fn apple_keys_alone_mean_the_same_as_camel_case() {
    let apple = parse_declaration_file("apple-keys-only");
    let camel = parse_declaration_file("full-camel-case");
    assert_eq!(apple, camel);
    assert_eq!(apple.asset_packs.len(), 3);
    assert_eq!(
        apple.pack("soundtrack").unwrap().installation_event_types,
        InstallationEventTypes {
            first_installation: false,
            subsequent_update: true
        }
    );
    assert_eq!(
        apple.pack("maps").unwrap().download_policy,
        DownloadPolicy::OnDemand
    );
}

#[test]
fn exact_limits_are_accepted() {
    let d = parse_declaration_file("limits-exact");
    assert_eq!(d.restrictions.download_allowance, MAX_SAFE_INTEGER);
    assert_eq!(d.restrictions.essential_download_allowance, 1_000);
    let file = &d.asset_packs[0].files[0];
    assert_eq!(file.size, MAX_SAFE_INTEGER);
    assert_eq!(file.path.len(), MAX_FILE_PATH_LEN);
    assert_eq!(d.asset_packs[0].id.len(), Identifier::MAX_LEN);
    assert_eq!(d.asset_packs[0].version.len(), MAX_VERSION_LEN);
    assert_eq!(file.sha256[0], 0xe3);
}

/// Relative URLs that "escape" with `..` only climb to the origin's root: they are allowed (the
/// README's rule), and a protocol-relative URL to another host parses but the policy refuses it.
#[test]
fn relative_urls_stay_on_their_origin_or_meet_the_allow_list() {
    let d = parse_declaration_file("relative-urls");
    let urls: Vec<&str> = d.asset_packs[0]
        .files
        .iter()
        .map(|f| f.url.as_str())
        .collect();
    assert_eq!(
        urls,
        [
            "https://app.example.com/etc/passwd",
            "https://cdn.example.com/b.bin",
            "https://app.example.com/game/pkg.json?v=2",
            "https://app.example.com/d.bin",
        ]
    );
    assert_eq!(
        d.manifest_url.as_ref().map(Url::as_str),
        Some("https://app.example.com/manifest.json")
    );
    // Nothing allow-listed: only the page's own origin; 10 essential bytes before launch.
    let mut policy = Policy::new(d.restrictions.clone(), &declaration_base());
    let mut refused = Vec::new();
    for (i, file) in d.asset_packs[0].files.iter().enumerate() {
        let download = UrlDownload::new(
            id(&format!("f{i}")),
            DownloadRequest::from_url(file.url.clone()).unwrap(),
            true,
            Some(file.size),
            Priority::DEFAULT,
            0,
        )
        .unwrap();
        let before = serde_json::to_value(&policy).unwrap();
        if let Err(e) = policy.admit(&download) {
            assert_eq!(serde_json::to_value(&policy).unwrap(), before, "{e:?}");
            refused.push(e);
        }
    }
    assert_eq!(
        refused,
        [Error::SessionDownloadDisallowedByDomain {
            host: "cdn.example.com".into()
        }]
    );
    assert_eq!(policy.used().essential, 1 + 3 + 4);
}

// ---------------------------------------------------------------------------------------------
// Generated big inputs
// ---------------------------------------------------------------------------------------------

fn refusal(result: Result<impl std::fmt::Debug, Error>) -> (String, String) {
    match result {
        Err(Error::InvalidDeclaration { path, reason }) => (path, reason),
        other => {
            let shown: String = format!("{other:?}").chars().take(300).collect();
            panic!("expected InvalidDeclaration, got {shown}")
        }
    }
}

fn declaration_refusal(value: &Value) -> (String, String) {
    refusal(parse_declaration(&value.to_string(), &declaration_base()))
}

fn manifest_refusal(text: &str) -> (String, String) {
    refusal(parse_manifest(text, &manifest_base()))
}

fn pack_json(id: &str, files: Vec<Value>) -> Value {
    json!({ "id": id, "version": "1", "downloadPolicy": "onDemand", "files": files })
}

fn file_json(path: &str, size: u64) -> Value {
    json!({ "path": path, "url": format!("https://cdn.example.com/{path}"), "size": size, "sha256": DIGEST })
}

#[test]
fn an_allow_list_longer_than_the_limit_is_refused_at_the_first_extra_entry() {
    let hosts: Vec<String> = (0..=MAX_ALLOW_LIST_ENTRIES)
        .map(|i| format!("h{i}.example.com"))
        .collect();
    let (path, reason) = declaration_refusal(
        &json!({ "BAInitialDownloadRestrictions": { "BADownloadDomainAllowList": hosts } }),
    );
    assert_eq!(
        path,
        format!(
            "$.BAInitialDownloadRestrictions.BADownloadDomainAllowList[{MAX_ALLOW_LIST_ENTRIES}]"
        )
    );
    assert!(reason.contains("at most 1000"), "{reason}");
    // Exactly the limit is fine.
    let (_, hosts) = hosts.split_last().unwrap();
    parse_declaration(
        &json!({ "initialDownloadRestrictions": { "domainAllowList": hosts } }).to_string(),
        &declaration_base(),
    )
    .unwrap();
}

#[test]
fn manifests_have_the_same_size_limits_as_declarations() {
    let packs: Vec<Value> = (0..=MAX_PACKS)
        .map(|i| pack_json(&format!("p{i}"), vec![]))
        .collect();
    let (path, reason) = manifest_refusal(&json!({ "assetPacks": packs }).to_string());
    assert_eq!(path, "$.assetPacks");
    assert!(reason.contains("at most 10000"), "{reason}");

    // Files are counted over all packs (one array alone would hit the array limit first).
    let half = MAX_FILES / 2;
    let files =
        |n: usize| -> Vec<Value> { (0..n).map(|i| file_json(&format!("f{i}"), 1)).collect() };
    let text =
        json!({ "assetPacks": [pack_json("a", files(half)), pack_json("b", files(half + 1))] })
            .to_string();
    let (path, reason) = manifest_refusal(&text);
    assert_eq!(path, format!("$.assetPacks[1].files[{half}]"));
    assert!(reason.contains("more than 100000 files"), "{reason}");

    let text = format!(
        "{{\"assetPacks\": [], \"x-big\": [{}0]}}",
        "0,".repeat(MAX_ARRAY_LEN)
    );
    let (path, reason) = manifest_refusal(&text);
    assert_eq!(path, "$[\"x-big\"]");
    assert!(reason.contains("more than 100000 items"), "{reason}");

    let text = format!(
        "{{\"assetPacks\": [], \"x-pad\": \"{}\"}}",
        " ".repeat(MAX_INPUT_BYTES)
    );
    let (path, reason) = manifest_refusal(&text);
    assert_eq!(path, "$");
    assert!(reason.contains("16 MiB"), "{reason}");

    let (path, _) = manifest_refusal(&"{\"assetPacks\":".repeat(50_000));
    assert!(path.starts_with("$.assetPacks.assetPacks"), "{path}");
}

#[test]
fn a_huge_array_inside_a_pack_is_refused_while_parsing() {
    let events = vec!["firstInstallation"; MAX_ARRAY_LEN + 1];
    let text = json!({ "assetPacks": [{ "id": "a", "version": "1", "downloadPolicy": "essential",
        "installationEventTypes": events, "files": [] }] })
    .to_string();
    let (path, reason) = refusal(parse_declaration(&text, &declaration_base()));
    assert_eq!(path, "$.assetPacks[0].installationEventTypes");
    assert!(reason.contains("more than 100000 items"), "{reason}");
}

/// Megabyte-long values and keys are refused with short paths and reasons: an attacker's input
/// is never echoed whole into an error (which ends up in logs and in JavaScript).
#[test]
fn huge_strings_and_keys_give_short_errors() {
    let big = "a/".repeat(512 * 1024);
    for (doc, want_path) in [
        (
            json!({ "assetPacks": [pack_json(&big, vec![])] }),
            "$.assetPacks[0].id".to_string(),
        ),
        (
            json!({ "assetPacks": [pack_json("a", vec![file_json(&big, 1)])] }),
            "$.assetPacks[0].files[0].path".to_string(),
        ),
        (
            json!({ "assetPacks": [pack_json("a", vec![json!({"path": "a", "url": big, "size": 1, "sha256": DIGEST})])] }),
            "$.assetPacks[0].files[0].url".to_string(),
        ),
        (
            json!({ "assetPacks": [pack_json("a", vec![json!({"path": "a", "url": "a", "size": 1, "sha256": big})])] }),
            "$.assetPacks[0].files[0].sha256".to_string(),
        ),
        (
            json!({ "initialDownloadRestrictions": { "domainAllowList": [big] } }),
            "$.initialDownloadRestrictions.domainAllowList[0]".to_string(),
        ),
        (
            json!({ "assetPacks": [{ "id": "a", "version": "1", "downloadPolicy": big, "files": [] }] }),
            "$.assetPacks[0].downloadPolicy".to_string(),
        ),
    ] {
        let (path, reason) = declaration_refusal(&doc);
        assert_eq!(path, want_path);
        assert!(reason.len() < 512, "{want_path}: {} bytes", reason.len());
    }
    let (path, reason) = declaration_refusal(&json!({ big.clone(): 1 }));
    assert!(path.len() < 100 && reason.len() < 512, "{path}");
    assert!(path.starts_with("$[\"a/a/"), "{path}");
    let (path, reason) = declaration_refusal(&json!({ "x-ok": 1, "assetPacks": [], big: {} }));
    assert!(path.len() < 100 && reason.len() < 512, "{path}");
}

/// 2048 files of 2^53 − 1 bytes and one of 2448 bytes add up to 2^64 + 400: a wrapping sum would
/// be 400 and slip under a 1000-byte limit. Sums saturate instead, so the limit holds.
#[test]
fn summed_sizes_cannot_wrap_past_the_install_limits() {
    let files = |extra: u64| -> Vec<Value> {
        (0..2048)
            .map(|i| file_json(&format!("f{i}"), MAX_SAFE_INTEGER))
            .chain([file_json("last", 2048 + extra)])
            .collect()
    };
    let essential = |files: Vec<Value>| json!({ "id": "a", "version": "1", "downloadPolicy": "essential", "files": files });
    assert_eq!(
        (2048 * u128::from(MAX_SAFE_INTEGER) + 2048 + 400) % (1u128 << 64),
        400
    );
    for limit in ["maxInstallSize", "essentialMaxInstallSize"] {
        let (path, reason) =
            declaration_refusal(&json!({ limit: 1000, "assetPacks": [essential(files(400))] }));
        assert_eq!(path, "$.assetPacks", "{limit}");
        assert!(
            reason.contains(&format!("total {} bytes", u64::MAX)),
            "{reason}"
        );
    }
    // Without a limit the declaration is valid and its sums saturate rather than wrap.
    let d = parse_declaration(
        &json!({ "assetPacks": [essential(files(400))] }).to_string(),
        &declaration_base(),
    )
    .unwrap();
    assert_eq!((d.total_size(), d.essential_size()), (u64::MAX, u64::MAX));
    assert_eq!(d.asset_packs[0].size(), u64::MAX);
    // A manifest cannot wrap past the declaration's limit either.
    let declared = parse_declaration(
        &json!({ "maxInstallSize": 1000, "assetPacks": [] }).to_string(),
        &declaration_base(),
    )
    .unwrap();
    let manifest = parse_manifest(
        &json!({ "assetPacks": [essential(files(400))] }).to_string(),
        &manifest_base(),
    )
    .unwrap();
    assert_eq!(manifest.essential_size(), u64::MAX);
    assert_eq!(
        declared.with_manifest(&manifest),
        Err(Error::MaxInstallSizeExceeded {
            needed: u64::MAX,
            limit: 1000
        })
    );
}

// ---------------------------------------------------------------------------------------------
// Identifiers
// ---------------------------------------------------------------------------------------------

/// Identifiers that look like path or key tricks, including Unicode look-alikes of `.` and `/`.
const ESCAPING_IDENTIFIERS: &[&str] = &[
    "",
    ".",
    "..",
    "../x",
    "a/b",
    "/a",
    "a\\b",
    "%2e%2e",
    "%2F",
    "a\0b",
    "\u{ff0e}\u{ff0e}", // fullwidth full stops
    "\u{2024}\u{2024}", // one dot leaders
    "\u{2215}etc",      // division slash
    "\u{ff0f}etc",      // fullwidth solidus
    "\u{430}pp",        // Cyrillic а
    "a\u{202e}b",       // right-to-left override
    "a\u{200b}b",       // zero-width space
    "e\u{301}",         // combining accent
    "\u{130}",          // dotted capital I (lowercases to two chars)
    "con:",             // a drive / scheme shape
    "a b",
    "a\tb",
    "a\nb",
];

#[test]
fn identifiers_that_escape_their_key_space_are_refused_everywhere() {
    let too_long = "x".repeat(Identifier::MAX_LEN + 1);
    let multibyte = "\u{e9}".repeat(65); // 65 chars, 130 bytes
    let cases: Vec<&str> = ESCAPING_IDENTIFIERS
        .iter()
        .copied()
        .chain([too_long.as_str(), multibyte.as_str()])
        .collect();
    let request = DownloadRequest::get("https://cdn.example.com/a").unwrap();
    let good = UrlDownload::new(id("ok"), request, false, Some(1), Priority::DEFAULT, 0).unwrap();
    let stored_good = serde_json::to_value(&good).unwrap();
    for bad in cases {
        // The constructor, with a typed error that names the identifier (escaped, shortened).
        match Identifier::new(bad) {
            Err(Error::InvalidIdentifier { identifier, reason }) => {
                assert!(!reason.is_empty());
                // At most 64 characters are shown, each escaped to at most 10 (`\u{10ffff}`).
                assert!(identifier.len() <= 10 * 64 + 3, "{identifier}");
                assert!(!identifier.contains('\0') && !identifier.contains('\n'));
            }
            other => panic!("{bad:?}: {other:?}"),
        }
        // Parsing a stored identifier.
        assert!(
            serde_json::from_value::<Identifier>(json!(bad)).is_err(),
            "{bad:?}"
        );
        // An application group is a key space too.
        assert!(
            matches!(
                good.clone().with_application_group(bad),
                Err(Error::InvalidIdentifier { .. })
            ),
            "{bad:?}"
        );
        // Tampered stored records: the download's identifier, its group, its pack (each edit is
        // accepted with a valid identifier, so only the identifier makes it fail).
        for (field, make) in [
            ("/identifier", (|s| json!(s)) as fn(&str) -> Value),
            ("/applicationGroup", |s| json!(s)),
            ("/pack", |s| json!({ "packId": s, "path": "a" })),
        ] {
            let stored_with = |s: &str| {
                let mut stored = stored_good.clone();
                *stored.pointer_mut(field).unwrap() = make(s);
                serde_json::from_value::<UrlDownload>(stored)
            };
            assert!(stored_with("valid-id").is_ok(), "{field}");
            assert!(stored_with(bad).is_err(), "{field} = {bad:?}");
        }
        // A stored policy whose admitted map was tampered with.
        let mut policy = Policy::new(InitialDownloadRestrictions::default(), &declaration_base());
        let empty = UrlDownload::new(
            id("e"),
            DownloadRequest::get("https://app.example.com/e").unwrap(),
            false,
            Some(0),
            Priority::DEFAULT,
            0,
        )
        .unwrap();
        policy.admit(&empty).unwrap();
        let text = serde_json::to_string(&policy).unwrap();
        assert!(text.contains("\"e\":"), "{text}");
        let tampered = text.replace("\"e\":", &format!("{}:", json!(bad)));
        let control = text.replace("\"e\":", "\"valid-id\":");
        assert!(
            serde_json::from_str::<Policy>(&control).is_ok(),
            "{control}"
        );
        assert!(
            serde_json::from_str::<Policy>(&tampered).is_err(),
            "{bad:?}: {tampered}"
        );
        // In a declaration, under either key name, at the id's path.
        for key in ["id", "assetPackID"] {
            let doc = json!({ "assetPacks": [{ key: bad, "version": "1", "downloadPolicy": "onDemand", "files": [] }] });
            let (path, _) = declaration_refusal(&doc);
            assert_eq!(path, format!("$.assetPacks[0].{key}"), "{bad:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------------

#[test]
fn request_urls_must_be_plain_http_or_https() {
    for bad in [
        "javascript:alert(1)",
        "about:blank",
        "ws://cdn.example.com/a",
        "wss://cdn.example.com/a",
        "chrome-extension://abc/a",
        "filesystem:https://app.example.com/temporary/a",
        "custom://cdn.example.com/a",
        "https://user@cdn.example.com/a",
        "https://:secret@cdn.example.com/a",
        "https://user:@cdn.example.com/a",
        "https://%75ser:p@cdn.example.com/a",
        "/relative/a",
        "//cdn.example.com/a",
        "https://",
        "https://exa mple.com/a",
    ] {
        assert!(
            matches!(
                DownloadRequest::get(bad),
                Err(Error::DownloadInvalid { .. })
            ),
            "{bad}"
        );
        if let Ok(parsed) = Url::parse(bad) {
            assert!(
                matches!(
                    DownloadRequest::from_url(parsed.clone()),
                    Err(Error::DownloadInvalid { .. })
                ),
                "{bad}"
            );
            assert!(check_download_url(&parsed).is_err(), "{bad}");
        }
    }
    // A stored download whose URL was tampered with is refused on load.
    let good = UrlDownload::new(
        id("a"),
        DownloadRequest::get("https://cdn.example.com/a").unwrap(),
        false,
        None,
        Priority::DEFAULT,
        0,
    )
    .unwrap();
    let stored_with = |u: &str| {
        let mut stored = serde_json::to_value(&good).unwrap();
        stored["request"]["url"] = json!(u);
        serde_json::from_value::<UrlDownload>(stored)
    };
    assert!(stored_with("https://cdn.example.com/other").is_ok());
    for bad in [
        "https://u:p@cdn.example.com/a",
        "javascript:alert(1)",
        "file:///etc/passwd",
    ] {
        assert!(stored_with(bad).is_err(), "{bad}");
    }
}

/// Every forbidden request header of the Fetch standard (typed here, independently of the
/// library's list) is refused in any case, plus the method-override headers: a download is
/// always a `GET`.
#[test]
fn every_fetch_forbidden_header_is_refused_in_any_case() {
    const FETCH_FORBIDDEN: &[&str] = &[
        "Accept-Charset",
        "Accept-Encoding",
        "Access-Control-Request-Headers",
        "Access-Control-Request-Method",
        "Connection",
        "Content-Length",
        "Cookie",
        "Cookie2",
        "Date",
        "DNT",
        "Expect",
        "Host",
        "Keep-Alive",
        "Origin",
        "Referer",
        "Set-Cookie",
        "TE",
        "Trailer",
        "Transfer-Encoding",
        "Upgrade",
        "Via",
        "Proxy-Authorization",
        "Proxy-Connection",
        "Sec-Fetch-Site",
        "Sec-Anything",
        "X-HTTP-Method",
        "X-HTTP-Method-Override",
        "X-Method-Override",
        // Owned by the engine's resumption.
        "Range",
        "If-Range",
    ];
    let request = DownloadRequest::get("https://cdn.example.com/a").unwrap();
    for name in FETCH_FORBIDDEN {
        for spelled in [
            name.to_string(),
            name.to_ascii_lowercase(),
            name.to_ascii_uppercase(),
        ] {
            match request.clone().with_header(&spelled, "TRACE") {
                Err(Error::DownloadInvalid { reason }) => {
                    assert!(reason.contains(&spelled), "{spelled}: {reason}")
                }
                other => panic!("{spelled}: {other:?}"),
            }
            let mut tampered = request.clone();
            tampered.headers.push((spelled.clone(), "x".into()));
            assert!(tampered.validate().is_err(), "{spelled}");
        }
    }
    // Look-alike names are not tokens at all.
    for name in ["C\u{43e}\u{43e}kie", "Host\u{0}", "Ho st", "Range:"] {
        assert!(request.clone().with_header(name, "x").is_err(), "{name:?}");
    }
    // Ordinary credentials headers are the app's to give (cross-origin use is the fetcher's check).
    request
        .clone()
        .with_header("Authorization", "Bearer t")
        .unwrap()
        .with_header("X-Api-Key", "k")
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// Allow-list, redirects and allowances
// ---------------------------------------------------------------------------------------------

fn page() -> Url {
    url("https://app.example.net/index.html")
}

fn restricted_policy(total: u64, essential: u64, hosts: &[&str]) -> Policy {
    Policy::new(
        InitialDownloadRestrictions {
            download_allowance: total,
            essential_download_allowance: essential,
            domain_allow_list: DomainAllowList::parse(hosts).unwrap(),
        },
        &page(),
    )
}

fn download(name: &str, u: &str, essential: bool, size: Option<u64>) -> UrlDownload {
    UrlDownload::new(
        id(name),
        DownloadRequest::get(u).unwrap(),
        essential,
        size,
        Priority::DEFAULT,
        0,
    )
    .unwrap()
}

/// The policy as stored: comparing it shows that nothing was charged or recorded.
fn snapshot(policy: &Policy) -> Value {
    serde_json::to_value(policy).unwrap()
}

/// Hosts that look like allowed ones but are not (suffix tricks, look-alikes, userinfo, other
/// ports and schemes of the page's own host).
const OUTSIDE: &[(&str, &str)] = &[
    (
        "https://cdn.example.com.evil.net/a",
        "cdn.example.com.evil.net",
    ),
    ("https://evilcdn.example.com/a", "evilcdn.example.com"),
    ("https://cdn.example.com@evil.example/a", "evil.example"),
    // A homograph (`cdn.exаmple.com`, Cyrillic `а`) needs the browser's URL parser: tested in
    // the sw and page suites (`tests/common/urls.rs`).
    ("https://cdn.example.com./a", "cdn.example.com."),
    ("https://example.org/a", "example.org"),
    ("https://notexample.org/a", "notexample.org"),
    ("https://example.org.evil.net/a", "example.org.evil.net"),
    ("http://app.example.net/a", "app.example.net"),
    ("https://app.example.net:8443/a", "app.example.net"),
    (
        "https://app.example.net.evil.net/a",
        "app.example.net.evil.net",
    ),
    ("http://127.0.0.2/a", "127.0.0.2"),
    ("http://[::2]/a", "[::2]"),
];

#[test]
fn urls_outside_the_allow_list_are_refused_before_and_after_a_redirect() {
    let hosts = ["cdn.example.com", "*.example.org", "127.0.0.1", "[::1]"];
    let mut policy = restricted_policy(1_000, 1_000, &hosts);
    for (i, (u, host)) in OUTSIDE.iter().enumerate() {
        let want = Err(Error::SessionDownloadDisallowedByDomain {
            host: host.to_string(),
        });
        assert_eq!(policy.check_redirect(&url(u)), want, "redirect to {u}");
        // As a request (a URL with a user name cannot even be one).
        let Ok(request) = DownloadRequest::get(u) else {
            assert!(u.contains('@'), "{u}");
            continue;
        };
        let d = UrlDownload::new(
            id(&format!("d{i}")),
            request,
            i % 2 == 0,
            Some(1),
            Priority::DEFAULT,
            0,
        )
        .unwrap();
        let before = snapshot(&policy);
        assert_eq!(
            policy.admit(&d),
            Err(Error::SessionDownloadDisallowedByDomain {
                host: host.to_string()
            }),
            "{u}"
        );
        assert_eq!(snapshot(&policy), before, "{u}");
    }
    // Non-web schemes of an allowed host, or with the page's own origin inside, are refused too.
    for u in [
        "ws://cdn.example.com/a",
        "blob:https://app.example.net/0f4e",
        "file:///etc/passwd",
        "javascript:alert(1)",
    ] {
        assert!(
            matches!(
                policy.check_redirect(&url(u)),
                Err(Error::SessionDownloadDisallowedByDomain { .. })
            ),
            "{u}"
        );
    }
    // The same hosts in their canonical or other spellings are allowed.
    for u in [
        "https://CDN.Example.Com:9443/a",
        "http://a.b.example.org/a",
        "http://2130706433/a", // 127.0.0.1 as one number
        "http://0x7f.0.0.1/a",
        "http://[0:0::1]/a",
        "https://app.example.net/own",
    ] {
        policy.check_redirect(&url(u)).unwrap();
    }
    assert_eq!(
        policy.used(),
        RemainingAllowance {
            essential: 0,
            total: 0
        }
    );
    // After first launch the allow-list still applies.
    policy.lift();
    let (u, host) = OUTSIDE[0];
    assert_eq!(
        policy.admit(&download("late", u, false, None)),
        Err(Error::SessionDownloadDisallowedByDomain {
            host: host.to_string()
        })
    );
    assert!(policy.check_redirect(&url(u)).is_err());
}

/// A same-origin-only policy (no list) refuses every other host, including localhost spellings.
#[test]
fn without_a_list_only_the_page_origin_is_allowed() {
    let policy = restricted_policy(0, 0, &[]);
    for u in [
        "http://localhost/a",
        "http://127.0.0.1/a",
        "https://cdn.example.com/a",
        "https://www.app.example.net/a",
    ] {
        assert!(
            matches!(
                policy.check_redirect(&url(u)),
                Err(Error::SessionDownloadDisallowedByDomain { .. })
            ),
            "{u}"
        );
    }
    policy
        .check_redirect(&url("https://app.example.net:443/x"))
        .unwrap();
}

#[test]
fn allowance_refusals_before_first_launch_store_nothing() {
    let mut policy = restricted_policy(100, 50, &["cdn.example.com"]);
    policy
        .admit(&download(
            "e1",
            "https://cdn.example.com/e1",
            true,
            Some(30),
        ))
        .unwrap();
    policy
        .admit(&download(
            "n1",
            "https://cdn.example.com/n1",
            false,
            Some(60),
        ))
        .unwrap();
    let before = snapshot(&policy);
    let refusals = [
        (
            download("e2", "https://cdn.example.com/e2", true, Some(21)),
            Error::DownloadWouldExceedAllowance {
                identifier: "e2".into(),
                requested: 21,
                remaining: 20,
            },
        ),
        (
            download("n2", "https://cdn.example.com/n2", false, Some(41)),
            Error::DownloadWouldExceedAllowance {
                identifier: "n2".into(),
                requested: 41,
                remaining: 40,
            },
        ),
        (
            download(
                "huge",
                "https://cdn.example.com/h",
                true,
                Some(MAX_SAFE_INTEGER),
            ),
            Error::DownloadWouldExceedAllowance {
                identifier: "huge".into(),
                requested: MAX_SAFE_INTEGER,
                remaining: 20,
            },
        ),
        (
            download("nosize", "https://cdn.example.com/x", false, None),
            Error::SessionDownloadDisallowedByAllowance {
                identifier: "nosize".into(),
            },
        ),
        (
            download("e1", "https://cdn.example.com/e1", true, Some(1)),
            Error::DownloadAlreadyScheduled {
                identifier: "e1".into(),
            },
        ),
    ];
    for (d, want) in refusals {
        // Twice: a refused download is not half-recorded so that a retry is treated differently.
        for _ in 0..2 {
            assert_eq!(policy.admit(&d), Err(want.clone()));
            assert_eq!(snapshot(&policy), before, "{want:?}");
        }
        // It was never admitted, so it cannot receive bytes.
        if d.identifier.as_str() != "e1" {
            assert_eq!(
                policy.bytes_received(&d.identifier, 1),
                Err(Error::DownloadNotScheduled {
                    identifier: d.identifier.to_string()
                })
            );
            assert_eq!(policy.release(&d.identifier), 0);
        }
    }
    // Exactly what is left still fits, in each pool separately.
    policy
        .admit(&download(
            "e3",
            "https://cdn.example.com/e3",
            true,
            Some(20),
        ))
        .unwrap();
    policy
        .admit(&download(
            "n3",
            "https://cdn.example.com/n3",
            false,
            Some(40),
        ))
        .unwrap();
    assert_eq!(
        policy.remaining(),
        Some(RemainingAllowance {
            essential: 0,
            total: 0
        })
    );
}

/// Allowances at 2^53 − 1 and sizes at 2^53 − 1 never overflow the accounting.
#[test]
fn allowance_accounting_at_the_largest_sizes() {
    let mut policy = restricted_policy(MAX_SAFE_INTEGER, MAX_SAFE_INTEGER, &[]);
    for (name, essential) in [("e", true), ("n", false)] {
        policy
            .admit(&download(
                name,
                "https://app.example.net/a",
                essential,
                Some(MAX_SAFE_INTEGER),
            ))
            .unwrap();
    }
    let before = snapshot(&policy);
    for (name, essential) in [("e2", true), ("n2", false)] {
        assert_eq!(
            policy.admit(&download(
                name,
                "https://app.example.net/b",
                essential,
                Some(1)
            )),
            Err(Error::DownloadWouldExceedAllowance {
                identifier: name.into(),
                requested: 1,
                remaining: 0
            })
        );
    }
    assert_eq!(snapshot(&policy), before);
    assert_eq!(
        policy.bytes_received(&id("e"), MAX_SAFE_INTEGER + 1),
        Err(Error::SessionDownloadAllowanceExceeded {
            identifier: "e".into()
        })
    );
    policy.bytes_received(&id("e"), MAX_SAFE_INTEGER).unwrap();
    assert!(policy.bytes_received(&id("e"), u64::MAX).is_err());
}

/// The allowances from a declaration apply to the downloads made from its own packs.
#[test]
fn a_declaration_whose_essential_packs_exceed_the_allowance_is_refused_at_admission() {
    let json = json!({
        "initialDownloadRestrictions": { "essentialDownloadAllowance": 100, "domainAllowList": ["cdn.example.com"] },
        "assetPacks": [{ "id": "big", "version": "1", "downloadPolicy": "essential",
            "files": [file_json("a", 60), file_json("b", 60)] }]
    });
    let d = parse_declaration(&json.to_string(), &declaration_base()).unwrap();
    let mut policy = Policy::new(d.restrictions.clone(), &declaration_base());
    let pack = &d.asset_packs[0];
    let mut outcomes = Vec::new();
    for file in &pack.files {
        let download = UrlDownload::new(
            id(&format!("{}.{}", pack.id, file.path)),
            DownloadRequest::from_url(file.url.clone()).unwrap(),
            true,
            Some(file.size),
            Priority::DEFAULT,
            0,
        )
        .unwrap()
        .with_pack(pack.id.clone(), file.path.clone());
        outcomes.push(policy.admit(&download));
    }
    assert_eq!(
        outcomes,
        [
            Ok(Admission::Charged {
                pool: Pool::Essential,
                bytes: 60
            }),
            Err(Error::DownloadWouldExceedAllowance {
                identifier: "big.b".into(),
                requested: 60,
                remaining: 40
            })
        ]
    );
    assert_eq!(policy.used().essential, 60);
}

// ---------------------------------------------------------------------------------------------
// Structure-aware fuzzing
// ---------------------------------------------------------------------------------------------

fn arb_file(index: usize) -> impl Strategy<Value = Value> {
    (
        "[a-z0-9]{1,6}(/[a-z0-9._-]{1,6}){0,2}",
        0u64..(1u64 << 40),
        prop::array::uniform32(any::<u8>()),
        any::<bool>(),
    )
        .prop_filter("no dot segments", |(p, ..)| {
            !p.split('/').any(|s| s == "." || s == "..")
        })
        .prop_map(move |(path, size, digest, relative)| {
            // `f<index>/` keeps paths unique and distinct from any corruption value.
            let path = format!("f{index}/{path}");
            let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
            let url = if relative {
                path.clone()
            } else {
                format!("https://cdn.example.com/{path}")
            };
            json!({ "path": path, "url": url, "size": size, "sha256": hex })
        })
}

fn arb_pack(index: usize) -> impl Strategy<Value = Value> {
    (
        0usize..4,
        "[0-9]{1,3}",
        (0usize..3).prop_flat_map(|n| {
            (0..n).map(arb_file).collect::<Vec<_>>()
        }),
        any::<bool>(),
    )
        .prop_map(move |(shape, version, files, apple_id)| {
            let key = if apple_id { "assetPackID" } else { "id" };
            let mut pack = json!({ key: format!("pack-{index}"), "version": version, "files": files });
            let (policy, events) = match shape {
                0 => (json!("essential"), Some(json!(["firstInstallation"]))),
                1 => (json!("prefetch"), None),
                2 => (json!("onDemand"), None),
                _ => (
                    json!({ "prefetch": { "installationEventTypes": ["subsequentUpdate", "firstInstallation"] } }),
                    None,
                ),
            };
            pack["downloadPolicy"] = policy;
            if let Some(events) = events {
                pack["installationEventTypes"] = events;
            }
            pack
        })
}

/// Valid declarations exercising every key (both spellings) and the extension keys.
fn arb_declaration() -> impl Strategy<Value = Value> {
    (
        (0usize..4).prop_flat_map(|n| (0..n).map(arb_pack).collect::<Vec<_>>()),
        prop::collection::btree_set("[a-z]{1,6}\\.(com|org)", 0..3),
        0u64..(1u64 << 50),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(packs, hosts, allowance, apple, limits)| {
            let hosts: Vec<String> = hosts
                .into_iter()
                .enumerate()
                .map(|(i, h)| if i == 0 { format!("*.{h}") } else { h })
                .collect();
            let mut doc = if apple {
                json!({ "BAInitialDownloadRestrictions": { "BADownloadAllowance": allowance,
                    "BAEssentialDownloadAllowance": allowance, "BADownloadDomainAllowList": hosts },
                    "BAManifestURL": "manifest.json" })
            } else {
                json!({ "initialDownloadRestrictions": { "downloadAllowance": allowance,
                    "essentialDownloadAllowance": allowance, "domainAllowList": hosts },
                    "manifestURL": "https://cdn.example.com/manifest.json" })
            };
            if limits {
                doc["maxInstallSize"] = json!(MAX_SAFE_INTEGER);
                doc["essentialMaxInstallSize"] = json!(1u64 << 52);
            }
            doc["assetPacks"] = Value::Array(packs);
            doc["x-note"] = json!({ "free": [1, "two", null] });
            doc
        })
}

/// One place in a JSON document: its JSON pointer (to edit it) and its path as the parser names
/// it (to compare).
#[derive(Debug, Clone)]
struct Location {
    pointer: String,
    path: String,
}

fn path_key(parent: &str, key: &str) -> String {
    let plain = key
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '$')
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$');
    if plain {
        format!("{parent}.{key}")
    } else {
        format!("{parent}[{}]", json!(key))
    }
}

fn locations(value: &Value, at: Location, out: &mut Vec<Location>) {
    out.push(at.clone());
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let escaped = key.replace('~', "~0").replace('/', "~1");
                let next = Location {
                    pointer: format!("{}/{escaped}", at.pointer),
                    path: path_key(&at.path, key),
                };
                locations(child, next, out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                let next = Location {
                    pointer: format!("{}/{i}", at.pointer),
                    path: format!("{}[{i}]", at.path),
                };
                locations(child, next, out);
            }
        }
        _ => {}
    }
}

/// One corruption of the value at a location.
#[derive(Debug, Clone)]
enum Corruption {
    /// Replace the value.
    Replace(Value),
    /// Remove it from its parent object or array.
    Remove,
    /// Add a key to it (when it is an object).
    AddKey(&'static str, Value),
    /// Add the other spelling of one of its keys (Apple alias ↔ camelCase).
    AddAlias,
}

fn arb_corruption() -> impl Strategy<Value = Corruption> {
    prop_oneof![
        prop_oneof![
            Just(json!(null)),
            Just(json!(true)),
            Just(json!([])),
            Just(json!({})),
            Just(json!(-1)),
            Just(json!(1.5)),
            Just(json!(MAX_SAFE_INTEGER + 1)),
            Just(json!("x")),
            Just(json!("../x")),
            Just(json!("*")),
            Just(json!("javascript:alert(1)")),
            Just(json!([{}])),
            Just(json!("\u{0}")),
        ]
        .prop_map(Corruption::Replace),
        Just(Corruption::Remove),
        prop_oneof![
            Just(("bogus", json!(1))),
            Just(("x-extra", json!({"deep": [1]}))),
            Just(("$schema", json!(7))),
            Just(("assetPacks", json!([]))),
        ]
        .prop_map(|(k, v)| Corruption::AddKey(k, v)),
        Just(Corruption::AddAlias),
    ]
}

const ALIASES: &[(&str, &str)] = &[
    (
        "initialDownloadRestrictions",
        "BAInitialDownloadRestrictions",
    ),
    ("downloadAllowance", "BADownloadAllowance"),
    ("essentialDownloadAllowance", "BAEssentialDownloadAllowance"),
    ("domainAllowList", "BADownloadDomainAllowList"),
    ("maxInstallSize", "BAMaxInstallSize"),
    ("essentialMaxInstallSize", "BAEssentialMaxInstallSize"),
    ("manifestURL", "BAManifestURL"),
    ("id", "assetPackID"),
];

/// Applies `corruption` at `at`; returns the location it touched (the parent's for a removal),
/// or `None` when it does not apply there.
fn corrupt(doc: &mut Value, at: &Location, corruption: &Corruption) -> Option<Location> {
    match corruption {
        Corruption::Replace(v) => {
            *doc.pointer_mut(&at.pointer)? = v.clone();
            Some(at.clone())
        }
        Corruption::Remove => {
            let (parent_pointer, last) = at.pointer.rsplit_once('/')?;
            let parent_path = parent_path(&at.path)?;
            match doc.pointer_mut(parent_pointer)? {
                Value::Object(map) => {
                    map.remove(&last.replace("~1", "/").replace("~0", "~"));
                }
                Value::Array(items) => {
                    items.remove(last.parse().ok()?);
                }
                _ => return None,
            }
            Some(Location {
                pointer: parent_pointer.to_string(),
                path: parent_path,
            })
        }
        Corruption::AddKey(key, v) => {
            let map = doc.pointer_mut(&at.pointer)?.as_object_mut()?;
            if map.contains_key(*key) {
                return None;
            }
            map.insert(key.to_string(), v.clone());
            Some(Location {
                pointer: format!("{}/{key}", at.pointer),
                path: path_key(&at.path, key),
            })
        }
        Corruption::AddAlias => {
            let map = doc.pointer_mut(&at.pointer)?.as_object_mut()?;
            let (have, other) = ALIASES.iter().find_map(|(a, b)| {
                if map.contains_key(*a) {
                    Some((*a, *b))
                } else if map.contains_key(*b) {
                    Some((*b, *a))
                } else {
                    None
                }
            })?;
            let value = map[have].clone();
            map.insert(other.to_string(), value);
            Some(Location {
                pointer: format!("{}/{other}", at.pointer),
                path: path_key(&at.path, other),
            })
        }
    }
}

/// `$.a.b[2]` → `$.a.b`; `$["x-a"]` → `$`.
fn parent_path(path: &str) -> Option<String> {
    let cut = if path.ends_with(']') {
        path.rfind('[')?
    } else {
        path.rfind('.')?
    };
    Some(path[..cut].to_string())
}

/// Whether `a` is `b` or an ancestor of it (as paths, not as strings: `$.a` is not an ancestor
/// of `$.ab`).
fn is_ancestor_or_same(a: &str, b: &str) -> bool {
    b.strip_prefix(a)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.') || rest.starts_with('['))
}

/// `path` with Apple's key names replaced by the camelCase ones.
fn canonical(path: &str) -> String {
    ALIASES.iter().fold(path.to_string(), |p, (camel, apple)| {
        p.replace(&format!(".{apple}"), &format!(".{camel}"))
    })
}

fn arb_corrupted_declaration() -> impl Strategy<Value = (Value, Location, Corruption)> {
    (
        arb_declaration(),
        any::<prop::sample::Index>(),
        arb_corruption(),
    )
        .prop_map(|(doc, index, corruption)| {
            let mut all = Vec::new();
            locations(
                &doc,
                Location {
                    pointer: String::new(),
                    path: "$".into(),
                },
                &mut all,
            );
            // Only places where the corruption applies (keys go into objects, and so on).
            let fits: Vec<Location> = all
                .into_iter()
                .filter(|at| corrupt(&mut doc.clone(), at, &corruption).is_some())
                .collect();
            let at = if fits.is_empty() {
                Location {
                    pointer: String::new(),
                    path: "$".into(),
                }
            } else {
                fits[index.index(fits.len())].clone()
            };
            (doc, at, corruption)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    /// A valid declaration with one corruption is still valid, or is refused with a typed error
    /// at a path on the way to the corruption or inside it.
    #[test]
    fn one_corruption_is_reported_at_its_location(
        (doc, at, corruption) in arb_corrupted_declaration(),
    ) {
        let base = declaration_base();
        parse_declaration(&doc.to_string(), &base).expect("the generator makes valid documents");
        let mut bad = doc.clone();
        let Some(touched) = corrupt(&mut bad, &at, &corruption) else {
            return Ok(());
        };
        match parse_declaration(&bad.to_string(), &base) {
            Ok(_) => {}
            Err(Error::InvalidDeclaration { path, reason }) => {
                // Both spellings of a key name the same key (either may be reported).
                let (path, touched) = (canonical(&path), canonical(&touched.path));
                prop_assert!(
                    is_ancestor_or_same(&path, &touched) || is_ancestor_or_same(&touched, &path),
                    "error at {path} ({reason}) for {corruption:?} at {touched}"
                );
                prop_assert!(!reason.is_empty() && reason.len() < 512);
            }
            Err(other) => prop_assert!(false, "untyped error {other:?}"),
        }
    }

    /// Extension keys never change the meaning, wherever they go.
    #[test]
    fn extension_keys_are_ignored_everywhere(
        (doc, at, _) in arb_corrupted_declaration(),
    ) {
        let base = declaration_base();
        let plain = parse_declaration(&doc.to_string(), &base).unwrap();
        let mut extended = doc.clone();
        let corruption = Corruption::AddKey("x-extra", json!({ "assetPacks": [] }));
        if corrupt(&mut extended, &at, &corruption).is_some() {
            prop_assert_eq!(parse_declaration(&extended.to_string(), &base), Ok(plain));
        }
    }

    /// Random bytes (decoded as a browser's `Response.text()` would) never panic either parser.
    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let text = String::from_utf8_lossy(&bytes);
        for result in [
            parse_declaration(&text, &declaration_base()).map(|_| ()),
            parse_manifest(&text, &manifest_base()).map(|_| ()),
        ] {
            prop_assert!(
                !matches!(&result, Err(e) if !matches!(e, Error::InvalidDeclaration { .. })),
                "untyped error {result:?}"
            );
        }
    }

    /// Byte-level edits of a near-valid manifest: never a panic, always a typed error or a
    /// valid manifest.
    #[test]
    fn mutated_manifests_never_panic(
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0u8..3, any::<u8>()), 1..6),
    ) {
        let manifest = json!({ "version": "7", "assetPacks": [
            { "id": "maps", "version": "7", "downloadPolicy": "onDemand",
              "files": [file_json("eu.map", 3), { "path": "us.map", "url": "us.map", "size": 1e3, "sha256": DIGEST }] }
        ] });
        let mut bytes = manifest.to_string().into_bytes();
        for (at, kind, byte) in edits {
            let i = at.index(bytes.len().max(1));
            match kind {
                0 if !bytes.is_empty() => { bytes.remove(i); }
                1 => bytes.insert(i.min(bytes.len()), byte),
                _ if !bytes.is_empty() => bytes[i] = byte,
                _ => {}
            }
        }
        let text = String::from_utf8_lossy(&bytes);
        match parse_manifest(&text, &manifest_base()) {
            Ok(m) => prop_assert!(m.asset_packs.len() <= 1),
            Err(Error::InvalidDeclaration { path, .. }) => prop_assert!(path.starts_with('$')),
            Err(other) => prop_assert!(false, "untyped error {other:?}"),
        }
    }
}
