#![cfg(not(target_arch = "wasm32"))]
//! Host tests of `pkg.json` / manifest parsing: every rule, every error path.

use background_assets::core::declaration::*;
use background_assets::core::download::Identifier;
use background_assets::core::error::Error;
use background_assets::core::policy::{DomainAllowList, DomainPattern};
use proptest::prelude::*;
use serde_json::{json, Value};
use url::Url;

const DIGEST: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

fn base() -> Url {
    Url::parse("https://app.example.com/game/pkg.json").unwrap()
}

fn file(path: &str, size: u64) -> Value {
    json!({ "path": path, "url": format!("https://cdn.example.com/{path}"), "size": size, "sha256": DIGEST })
}

/// `file` with `chunks` declared: 16 KiB chunks, each listed with `DIGEST`.
fn chunked(mut file: Value) -> Value {
    let size = file["size"].as_u64().unwrap();
    let count = size.div_ceil(16384) as usize;
    file["chunks"] = json!({ "size": 16384, "sha256": vec![DIGEST; count] });
    file
}

fn valid() -> Value {
    json!({
        "$schema": "https://example.com/pkg.schema.json",
        "x-comment": { "anything": [1, 2, {"goes": null}] },
        "initialDownloadRestrictions": {
            "downloadAllowance": 268435456u64,
            "essentialDownloadAllowance": 134217728u64,
            "domainAllowList": ["cdn.example.com", "*.example.org", "127.0.0.1"]
        },
        "maxInstallSize": 536870912u64,
        "essentialMaxInstallSize": 134217728u64,
        "manifestURL": "https://cdn.example.com/manifest.json",
        "assetPacks": [
            { "id": "levels", "version": "3", "downloadPolicy": "essential",
              "installationEventTypes": ["firstInstallation", "subsequentUpdate"],
              "files": [file("levels/1.bin", 67108864), chunked(file("levels/2.bin", 10))] },
            { "id": "music", "version": "1", "downloadPolicy": "prefetch",
              "installationEventTypes": ["subsequentUpdate"],
              "files": [file("music/a.ogg", 5)] },
            { "id": "maps", "version": "2024.1", "downloadPolicy": "onDemand",
              "files": [] }
        ]
    })
}

fn parse(value: &Value) -> Result<Declaration, Error> {
    parse_declaration(&value.to_string(), &base())
}

/// The (path, reason) of the error `value` is refused with.
fn refusal(value: &Value) -> (String, String) {
    refusal_text(&value.to_string())
}

fn refusal_text(text: &str) -> (String, String) {
    match parse_declaration(text, &base()) {
        Err(Error::InvalidDeclaration { path, reason }) => (path, reason),
        other => panic!("expected InvalidDeclaration, got {other:?} for {text:.200}"),
    }
}

/// Sets the value at a simple JSON pointer in a copy of `valid()`.
fn with(pointer: &str, new: Value) -> Value {
    let mut v = valid();
    *v.pointer_mut(pointer)
        .unwrap_or_else(|| panic!("no {pointer}")) = new;
    v
}

fn without(parent: &str, key: &str) -> Value {
    let mut v = valid();
    v.pointer_mut(parent)
        .unwrap()
        .as_object_mut()
        .unwrap()
        .remove(key);
    v
}

fn insert(parent: &str, key: &str, new: Value) -> Value {
    let mut v = valid();
    v.pointer_mut(parent)
        .unwrap()
        .as_object_mut()
        .unwrap()
        .insert(key.into(), new);
    v
}

#[test]
fn parses_the_full_schema() {
    let d = parse(&valid()).unwrap();
    assert_eq!(d.restrictions.download_allowance, 268435456);
    assert_eq!(d.restrictions.essential_download_allowance, 134217728);
    assert_eq!(
        d.restrictions.domain_allow_list.patterns(),
        &[
            DomainPattern::Host("cdn.example.com".into()),
            DomainPattern::SubdomainsOf("example.org".into()),
            DomainPattern::Ip("127.0.0.1".parse().unwrap()),
        ]
    );
    assert_eq!(d.max_install_size, Some(536870912));
    assert_eq!(d.essential_max_install_size, Some(134217728));
    assert_eq!(
        d.manifest_url.as_ref().map(Url::as_str),
        Some("https://cdn.example.com/manifest.json")
    );
    assert_eq!(d.asset_packs.len(), 3);
    let levels = d.pack("levels").unwrap();
    assert_eq!(levels.id, Identifier::new("levels").unwrap());
    assert_eq!(levels.version, "3");
    assert_eq!(levels.download_policy, DownloadPolicy::Essential);
    assert_eq!(levels.installation_event_types, InstallationEventTypes::ALL);
    assert_eq!(levels.files[0].path, "levels/1.bin");
    assert_eq!(levels.files[0].size, 67108864);
    assert_eq!(levels.files[0].sha256[0], 0xe3);
    assert_eq!(levels.files[0].sha256[31], 0x55);
    assert_eq!(levels.files[0].chunks, None);
    let chunks = levels.files[1]
        .chunks
        .as_ref()
        .expect("levels/2.bin declares chunks");
    assert_eq!(chunks.chunk_size, 16384);
    assert_eq!(chunks.sha256, [levels.files[0].sha256]); // 10 bytes: one chunk
    assert_eq!(levels.file("levels/2.bin").unwrap().size, 10);
    let music = d.pack("music").unwrap();
    assert!(!music.installation_event_types.first_installation);
    assert!(music.downloads_on(InstallationEvent::SubsequentUpdate));
    assert!(!music.downloads_on(InstallationEvent::FirstInstallation));
    let maps = d.pack("maps").unwrap();
    assert_eq!(maps.installation_event_types, InstallationEventTypes::NONE);
    assert!(!maps.downloads_on(InstallationEvent::FirstInstallation));
    assert!(d.pack("nope").is_none());
    assert_eq!(d.total_size(), 67108864 + 10 + 5);
    assert_eq!(d.essential_size(), 67108864 + 10);
}

#[test]
fn apple_aliases_parse_like_camel_case() {
    let apple = json!({
        "BAInitialDownloadRestrictions": {
            "BADownloadAllowance": 268435456u64,
            "BAEssentialDownloadAllowance": 134217728u64,
            "BADownloadDomainAllowList": ["cdn.example.com", "*.example.org", "127.0.0.1"]
        },
        "BAMaxInstallSize": 536870912u64,
        "BAEssentialMaxInstallSize": 134217728u64,
        "BAManifestURL": "https://cdn.example.com/manifest.json",
        "assetPacks": valid()["assetPacks"].clone(),
    });
    assert_eq!(parse(&apple).unwrap(), parse(&valid()).unwrap());
    let lower_url = json!({ "manifestUrl": "https://cdn.example.com/manifest.json" });
    let upper_url = json!({ "manifestURL": "https://cdn.example.com/manifest.json" });
    assert_eq!(parse(&lower_url).unwrap(), parse(&upper_url).unwrap());
}

#[test]
fn apple_managed_pack_shape_is_accepted() {
    let apple = json!({ "assetPacks": [
        { "assetPackID": "levels", "version": "3",
          "downloadPolicy": { "essential": { "installationEventTypes": ["firstInstallation"] } },
          "files": [file("a.bin", 1)] },
        { "id": "maps", "version": "1", "downloadPolicy": { "onDemand": {} }, "files": [] }
    ]});
    let d = parse(&apple).unwrap();
    let levels = d.pack("levels").unwrap();
    assert_eq!(levels.download_policy, DownloadPolicy::Essential);
    assert!(levels.installation_event_types.first_installation);
    assert!(!levels.installation_event_types.subsequent_update);
    assert_eq!(
        d.pack("maps").unwrap().download_policy,
        DownloadPolicy::OnDemand
    );
}

#[test]
fn defaults_when_keys_are_missing() {
    let d = parse(&json!({})).unwrap();
    assert_eq!(d.restrictions.download_allowance, 0);
    assert_eq!(d.restrictions.essential_download_allowance, 0);
    assert_eq!(
        d.restrictions.domain_allow_list,
        DomainAllowList::SameOriginOnly
    );
    assert_eq!(d.max_install_size, None);
    assert_eq!(d.manifest_url, None);
    assert!(d.asset_packs.is_empty());
    let d = parse(&json!({"initialDownloadRestrictions": {"domainAllowList": []}})).unwrap();
    assert_eq!(
        d.restrictions.domain_allow_list,
        DomainAllowList::SameOriginOnly
    );
    // Events default to both.
    let d = parse(&without("/assetPacks/0", "installationEventTypes")).unwrap();
    assert_eq!(
        d.asset_packs[0].installation_event_types,
        InstallationEventTypes::ALL
    );
}

#[test]
fn relative_urls_resolve_against_the_base() {
    let v = json!({ "manifestURL": "../cdn/manifest.json", "assetPacks": [
        { "id": "a", "version": "1", "downloadPolicy": "prefetch",
          "files": [{ "path": "x.bin", "url": "assets/x.bin", "size": 1, "sha256": DIGEST }] } ] });
    let d = parse(&v).unwrap();
    assert_eq!(
        d.manifest_url.unwrap().as_str(),
        "https://app.example.com/cdn/manifest.json"
    );
    assert_eq!(
        d.asset_packs[0].files[0].url.as_str(),
        "https://app.example.com/game/assets/x.bin"
    );
}

#[test]
fn essential_allowance_may_exceed_download_allowance() {
    let v = json!({"initialDownloadRestrictions": {"downloadAllowance": 1, "essentialDownloadAllowance": 100}});
    let d = parse(&v).unwrap();
    assert_eq!(d.restrictions.essential_download_allowance, 100);
}

#[test]
fn uppercase_digests_are_accepted() {
    let d = parse(&with(
        "/assetPacks/0/files/0/sha256",
        json!(DIGEST.to_uppercase()),
    ))
    .unwrap();
    assert_eq!(
        d.asset_packs[0].files[0].sha256,
        parse(&valid()).unwrap().asset_packs[0].files[0].sha256
    );
}

#[test]
fn whole_valued_floats_are_byte_counts() {
    let d = parse_declaration(r#"{"maxInstallSize": 1e3}"#, &base()).unwrap();
    assert_eq!(d.max_install_size, Some(1000));
}

/// (document, expected path, a word the reason must contain)
fn bad_cases() -> Vec<(Value, &'static str, &'static str)> {
    let f0 = "/assetPacks/0/files/0";
    let chunks = "/assetPacks/0/files/1/chunks";
    let at = "$.assetPacks[0].files[1].chunks";
    vec![
        // A file's chunk digests.
        (with(chunks, json!([])), at, "object"),
        (
            with(&format!("{chunks}/size"), json!(1000)),
            "$.assetPacks[0].files[1].chunks.size",
            "16 KiB to 64 MiB",
        ),
        (
            with(&format!("{chunks}/size"), json!(128 << 20)),
            "$.assetPacks[0].files[1].chunks.size",
            "16 KiB to 64 MiB",
        ),
        (
            with(&format!("{chunks}/sha256"), json!([DIGEST, DIGEST])),
            "$.assetPacks[0].files[1].chunks.sha256",
            "2 chunk digests given, 1 expected",
        ),
        (
            with(&format!("{chunks}/sha256"), json!("abc")),
            "$.assetPacks[0].files[1].chunks.sha256",
            "array",
        ),
        (
            with(&format!("{chunks}/sha256/0"), json!("zz")),
            "$.assetPacks[0].files[1].chunks.sha256[0]",
            "64 hex digits",
        ),
        (
            insert(chunks, "sizes", json!(1)),
            "$.assetPacks[0].files[1].chunks.sizes",
            "unknown key",
        ),
        (without(chunks, "size"), at, "missing required key `size`"),
        // Wrong types.
        (json!([]), "$", "object"),
        (
            with("/initialDownloadRestrictions", json!(5)),
            "$.initialDownloadRestrictions",
            "object",
        ),
        (
            with("/initialDownloadRestrictions/downloadAllowance", json!("1")),
            "$.initialDownloadRestrictions.downloadAllowance",
            "found a string",
        ),
        (
            with(
                "/initialDownloadRestrictions/domainAllowList",
                json!("cdn.example.com"),
            ),
            "$.initialDownloadRestrictions.domainAllowList",
            "array",
        ),
        (
            with("/initialDownloadRestrictions/domainAllowList/1", json!(7)),
            "$.initialDownloadRestrictions.domainAllowList[1]",
            "string",
        ),
        (with("/assetPacks", json!({})), "$.assetPacks", "array"),
        (
            with("/assetPacks/1", json!("music")),
            "$.assetPacks[1]",
            "object",
        ),
        (
            with("/assetPacks/0/files", json!(null)),
            "$.assetPacks[0].files",
            "null",
        ),
        (
            with("/assetPacks/0/version", json!(3)),
            "$.assetPacks[0].version",
            "\"3\"",
        ),
        (
            with("/assetPacks/0/version", json!("")),
            "$.assetPacks[0].version",
            "empty",
        ),
        (
            with("/assetPacks/0/id", json!(true)),
            "$.assetPacks[0].id",
            "boolean",
        ),
        (
            with(&format!("{f0}/size"), json!("10")),
            "$.assetPacks[0].files[0].size",
            "found a string",
        ),
        (
            with(&format!("{f0}/url"), json!(["x"])),
            "$.assetPacks[0].files[0].url",
            "found an array",
        ),
        // Numbers.
        (
            with("/maxInstallSize", json!(-1)),
            "$.maxInstallSize",
            "negative",
        ),
        (
            with("/maxInstallSize", json!(-1.5)),
            "$.maxInstallSize",
            "negative",
        ),
        (
            with("/maxInstallSize", json!(1.5)),
            "$.maxInstallSize",
            "whole",
        ),
        (
            with("/maxInstallSize", json!(9007199254740992u64)),
            "$.maxInstallSize",
            "2^53",
        ),
        (
            with("/maxInstallSize", json!(u64::MAX)),
            "$.maxInstallSize",
            "2^53",
        ),
        (
            with("/maxInstallSize", json!(1e300)),
            "$.maxInstallSize",
            "2^53",
        ),
        (
            with(&format!("{f0}/size"), json!(-5)),
            "$.assetPacks[0].files[0].size",
            "negative",
        ),
        (
            with(
                "/initialDownloadRestrictions/essentialDownloadAllowance",
                json!(0.25),
            ),
            "$.initialDownloadRestrictions.essentialDownloadAllowance",
            "whole",
        ),
        // Limits between sizes.
        (
            with("/essentialMaxInstallSize", json!(600000000u64)),
            "$.essentialMaxInstallSize",
            "maxInstallSize",
        ),
        (
            with("/essentialMaxInstallSize", json!(100)),
            "$.assetPacks",
            "essentialMaxInstallSize",
        ),
        (
            with("/maxInstallSize", json!(100)),
            "$.essentialMaxInstallSize",
            "maxInstallSize",
        ),
        // Policies and events.
        (
            with("/assetPacks/1/downloadPolicy", json!("sometimes")),
            "$.assetPacks[1].downloadPolicy",
            "unknown download policy",
        ),
        (
            with("/assetPacks/1/downloadPolicy", json!("Essential")),
            "$.assetPacks[1].downloadPolicy",
            "unknown download policy",
        ),
        (
            with("/assetPacks/1/downloadPolicy", json!({"later": {}})),
            "$.assetPacks[1].downloadPolicy.later",
            "unknown download policy",
        ),
        (
            with(
                "/assetPacks/1/downloadPolicy",
                json!({"essential": {}, "prefetch": {}}),
            ),
            "$.assetPacks[1].downloadPolicy",
            "exactly one",
        ),
        (
            with(
                "/assetPacks/1/downloadPolicy",
                json!({"prefetch": {"installationEventTypes": ["firstInstallation"]}}),
            ),
            "$.assetPacks[1].installationEventTypes",
            "once",
        ),
        (
            with(
                "/assetPacks/1/installationEventTypes/0",
                json!("firstLaunch"),
            ),
            "$.assetPacks[1].installationEventTypes[0]",
            "unknown installation event",
        ),
        (
            with(
                "/assetPacks/0/installationEventTypes/1",
                json!("firstInstallation"),
            ),
            "$.assetPacks[0].installationEventTypes[1]",
            "twice",
        ),
        (
            with("/assetPacks/0/installationEventTypes", json!([])),
            "$.assetPacks[0].installationEventTypes",
            "no event",
        ),
        (
            insert(
                "/assetPacks/2",
                "installationEventTypes",
                json!(["firstInstallation"]),
            ),
            "$.assetPacks[2].installationEventTypes",
            "onDemand",
        ),
        // Required keys.
        (
            without("/assetPacks/0", "id"),
            "$.assetPacks[0]",
            "missing required key `id`",
        ),
        (
            without("/assetPacks/0", "version"),
            "$.assetPacks[0]",
            "`version`",
        ),
        (
            without("/assetPacks/0", "downloadPolicy"),
            "$.assetPacks[0]",
            "`downloadPolicy`",
        ),
        (
            without("/assetPacks/0", "files"),
            "$.assetPacks[0]",
            "`files`",
        ),
        (
            without(f0, "sha256"),
            "$.assetPacks[0].files[0]",
            "`sha256`",
        ),
        (without(f0, "size"), "$.assetPacks[0].files[0]", "`size`"),
        // Unknown keys (typos).
        (
            insert("", "maxInstalSize", json!(1)),
            "$.maxInstalSize",
            "did you mean `maxInstallSize`",
        ),
        (
            insert(
                "/initialDownloadRestrictions",
                "downloadAllowence",
                json!(1),
            ),
            "$.initialDownloadRestrictions.downloadAllowence",
            "downloadAllowance",
        ),
        // Case does not count, and a non-ASCII letter is one edit.
        (
            insert("", "MAXINSTALSIZE", json!(1)),
            "$.MAXINSTALSIZE",
            "did you mean `maxInstallSize`",
        ),
        (
            insert("", "maxInstallSizé", json!(1)),
            "$[\"maxInstallSizé\"]",
            "did you mean `maxInstallSize`",
        ),
        (
            insert("/assetPacks/0", "fles", json!([])),
            "$.assetPacks[0].fles",
            "did you mean `files`",
        ),
        (
            insert(f0, "sha-256", json!(DIGEST)),
            "$.assetPacks[0].files[0][\"sha-256\"]",
            "sha256",
        ),
        (
            insert(f0, "completelyDifferent", json!(1)),
            "$.assetPacks[0].files[0].completelyDifferent",
            "expected one of",
        ),
        (
            insert("", "priority", json!(1)),
            "$.priority",
            "unknown key",
        ),
        // Alias given twice.
        (
            insert("", "BAMaxInstallSize", json!(1)),
            "$.BAMaxInstallSize",
            "same key",
        ),
        (
            insert("", "manifestUrl", json!("https://cdn.example.com/m.json")),
            "$.manifestUrl",
            "same key",
        ),
        (
            insert(
                "/initialDownloadRestrictions",
                "BADownloadAllowance",
                json!(1),
            ),
            "$.initialDownloadRestrictions.BADownloadAllowance",
            "same key",
        ),
        (
            insert("/assetPacks/0", "assetPackID", json!("x")),
            "$.assetPacks[0].assetPackID",
            "same key",
        ),
        // Identifiers and duplicates.
        (
            with("/assetPacks/1/id", json!("levels")),
            "$.assetPacks[1].id",
            "duplicate pack id `levels` (first at $.assetPacks[0])",
        ),
        (
            with("/assetPacks/1/id", json!("")),
            "$.assetPacks[1].id",
            "empty",
        ),
        (
            with("/assetPacks/1/id", json!("a/b")),
            "$.assetPacks[1].id",
            "'/'",
        ),
        (
            with("/assetPacks/1/id", json!("..")),
            "$.assetPacks[1].id",
            "reserved",
        ),
        (
            with("/assetPacks/1/id", json!("x".repeat(129))),
            "$.assetPacks[1].id",
            "128",
        ),
        (
            with("/assetPacks/0/files/1/path", json!("levels/1.bin")),
            "$.assetPacks[0].files[1].path",
            "duplicate file path",
        ),
        // File paths.
        (
            with(&format!("{f0}/path"), json!("/etc/passwd")),
            "$.assetPacks[0].files[0].path",
            "absolute",
        ),
        (
            with(&format!("{f0}/path"), json!("a/../../b")),
            "$.assetPacks[0].files[0].path",
            "..",
        ),
        (
            with(&format!("{f0}/path"), json!("a\\b")),
            "$.assetPacks[0].files[0].path",
            "\\",
        ),
        (
            with(&format!("{f0}/path"), json!("a//b")),
            "$.assetPacks[0].files[0].path",
            "empty segment",
        ),
        (
            with(&format!("{f0}/path"), json!("a/")),
            "$.assetPacks[0].files[0].path",
            "empty segment",
        ),
        (
            with(&format!("{f0}/path"), json!("a/./b")),
            "$.assetPacks[0].files[0].path",
            "`.`",
        ),
        (
            with(&format!("{f0}/path"), json!("a\u{7}b")),
            "$.assetPacks[0].files[0].path",
            "control",
        ),
        (
            with(&format!("{f0}/path"), json!("")),
            "$.assetPacks[0].files[0].path",
            "empty",
        ),
        (
            with(&format!("{f0}/path"), json!("a".repeat(1025))),
            "$.assetPacks[0].files[0].path",
            "1024",
        ),
        // URLs.
        (
            with(&format!("{f0}/url"), json!("ftp://cdn.example.com/a")),
            "$.assetPacks[0].files[0].url",
            "http",
        ),
        (
            with(&format!("{f0}/url"), json!("javascript:alert(1)")),
            "$.assetPacks[0].files[0].url",
            "http",
        ),
        (
            with(
                &format!("{f0}/url"),
                json!("https://user:pw@cdn.example.com/a"),
            ),
            "$.assetPacks[0].files[0].url",
            "password",
        ),
        (
            with(&format!("{f0}/url"), json!("https://exa mple.com/a")),
            "$.assetPacks[0].files[0].url",
            "does not parse",
        ),
        (
            with(&format!("{f0}/url"), json!("http://[::1/a")),
            "$.assetPacks[0].files[0].url",
            "does not parse",
        ),
        (
            with("/manifestURL", json!("file:///etc/passwd")),
            "$.manifestURL",
            "http",
        ),
        // Digests.
        (
            with(&format!("{f0}/sha256"), json!(&DIGEST[..63])),
            "$.assetPacks[0].files[0].sha256",
            "63",
        ),
        (
            with(&format!("{f0}/sha256"), json!(format!("{DIGEST}00"))),
            "$.assetPacks[0].files[0].sha256",
            "66",
        ),
        (
            with(&format!("{f0}/sha256"), json!(format!("g{}", &DIGEST[1..]))),
            "$.assetPacks[0].files[0].sha256",
            "'g'",
        ),
        (
            with(&format!("{f0}/sha256"), json!(format!("é{}", &DIGEST[2..]))),
            "$.assetPacks[0].files[0].sha256",
            "hex digit",
        ),
        (
            with(&format!("{f0}/sha256"), json!(42)),
            "$.assetPacks[0].files[0].sha256",
            "string",
        ),
        // Wildcards and allow-list entries.
        (
            with(
                "/initialDownloadRestrictions/domainAllowList/1",
                json!("cdn.*.example.com"),
            ),
            "$.initialDownloadRestrictions.domainAllowList[1]",
            "leading",
        ),
        (
            with(
                "/initialDownloadRestrictions/domainAllowList/1",
                json!("*example.com"),
            ),
            "$.initialDownloadRestrictions.domainAllowList[1]",
            "leading",
        ),
        (
            with(
                "/initialDownloadRestrictions/domainAllowList/1",
                json!("*.*.example.com"),
            ),
            "$.initialDownloadRestrictions.domainAllowList[1]",
            "leading",
        ),
        (
            with("/initialDownloadRestrictions/domainAllowList/1", json!("*")),
            "$.initialDownloadRestrictions.domainAllowList[1]",
            "leading",
        ),
        (
            with(
                "/initialDownloadRestrictions/domainAllowList/1",
                json!("*."),
            ),
            "$.initialDownloadRestrictions.domainAllowList[1]",
            "empty",
        ),
        (
            with(
                "/initialDownloadRestrictions/domainAllowList/1",
                json!("a..example.com"),
            ),
            "$.initialDownloadRestrictions.domainAllowList[1]",
            "empty label",
        ),
        (
            with(
                "/initialDownloadRestrictions/domainAllowList/1",
                json!("example.com."),
            ),
            "$.initialDownloadRestrictions.domainAllowList[1]",
            "empty label",
        ),
        (
            with(
                "/initialDownloadRestrictions/domainAllowList/1",
                json!("https://cdn.example.com"),
            ),
            "$.initialDownloadRestrictions.domainAllowList[1]",
            "scheme",
        ),
        (
            with(
                "/initialDownloadRestrictions/domainAllowList/1",
                json!("cdn.example.com:443"),
            ),
            "$.initialDownloadRestrictions.domainAllowList[1]",
            "port",
        ),
        (
            with(
                "/initialDownloadRestrictions/domainAllowList/1",
                json!("cdn.example.com/assets"),
            ),
            "$.initialDownloadRestrictions.domainAllowList[1]",
            "path",
        ),
        (
            with("/initialDownloadRestrictions/domainAllowList/1", json!("")),
            "$.initialDownloadRestrictions.domainAllowList[1]",
            "empty",
        ),
        (
            with(
                "/initialDownloadRestrictions/domainAllowList/1",
                json!("*.10.0.0.1"),
            ),
            "$.initialDownloadRestrictions.domainAllowList[1]",
            "IP",
        ),
        (
            with(
                "/initialDownloadRestrictions/domainAllowList/1",
                json!("CDN.example.com"),
            ),
            "$.initialDownloadRestrictions.domainAllowList[1]",
            "duplicate",
        ),
        (
            with(
                "/initialDownloadRestrictions/domainAllowList/1",
                json!("a b.com"),
            ),
            "$.initialDownloadRestrictions.domainAllowList[1]",
            "spaces",
        ),
        // Extension keys are allowed only with their exact prefix.
        (
            insert("", "X-comment", json!(1)),
            "$[\"X-comment\"]",
            "unknown key",
        ),
        // Odd keys are JSON-quoted in the path.
        (
            insert("", "a\"b\u{1}é", json!(1)),
            r#"$["a\"b\u0001é"]"#,
            "unknown key",
        ),
    ]
}

#[test]
fn every_bad_input_is_refused_with_its_path() {
    for (doc, path, word) in bad_cases() {
        let (got_path, reason) = refusal(&doc);
        assert_eq!(got_path, path, "reason: {reason}");
        assert!(
            reason.contains(word),
            "reason {reason:?} should mention {word:?} ({path})"
        );
    }
}

#[test]
fn error_codes_are_invalid_declaration() {
    let err = parse(&with("/maxInstallSize", json!(-1))).unwrap_err();
    assert_eq!(err.code(), 1000);
    assert_eq!(err.name(), "InvalidDeclaration");
    assert!(err.to_string().contains("$.maxInstallSize"));
}

#[test]
fn duplicate_keys_in_the_text_are_refused() {
    let (path, reason) = refusal_text(
        r#"{"initialDownloadRestrictions": {"downloadAllowance": 1, "downloadAllowance": 999999}}"#,
    );
    assert_eq!(path, "$.initialDownloadRestrictions.downloadAllowance");
    assert!(reason.contains("duplicate key"), "{reason}");
    assert!(reason.contains("line 1"), "{reason}");
    let (path, _) = refusal_text(r#"{"assetPacks": [{"id": "a", "id": "b"}]}"#);
    assert_eq!(path, "$.assetPacks[0].id");
}

#[test]
fn invalid_json_is_reported_at_the_root_with_line_and_column() {
    for (text, line) in [
        ("{\n  \"maxInstallSize\": ,\n}", 2),
        ("", 1),
        ("{} {}", 1),
        ("{\"a\": 1", 1),
        ("nul", 1),
    ] {
        let (path, reason) = refusal_text(text);
        assert_eq!(path, "$", "{text:?}");
        assert!(
            reason.contains(&format!("line {line}")),
            "{text:?}: {reason}"
        );
        assert!(reason.contains("column"), "{reason}");
    }
}

#[test]
fn oversized_input_is_refused_before_parsing() {
    let text = format!("{{\"x-pad\": \"{}\"}}", "a".repeat(MAX_INPUT_BYTES));
    let (path, reason) = refusal_text(&text);
    assert_eq!(path, "$");
    assert!(reason.contains("16 MiB"), "{reason}");
}

#[test]
fn deep_nesting_is_refused_with_a_path() {
    let depth = MAX_DEPTH + 5;
    let text = format!("{{\"x-deep\": {}{}}}", "[".repeat(depth), "]".repeat(depth));
    let (path, reason) = refusal_text(&text);
    assert!(path.starts_with("$[\"x-deep\"][0][0]"), "{path}");
    assert!(reason.contains("nested deeper"), "{reason}");
    // serde_json's own limit is beyond ours, and nothing overflows the stack.
    let text = "[".repeat(100_000);
    let (path, _) = refusal_text(&text);
    assert!(path.starts_with('$'));
}

#[test]
fn huge_arrays_are_refused_while_parsing() {
    let text = format!("{{\"x-big\": [{}0]}}", "0,".repeat(MAX_ARRAY_LEN));
    let (path, reason) = refusal_text(&text);
    assert_eq!(path, "$[\"x-big\"]");
    assert!(reason.contains("more than 100000 items"), "{reason}");
    // Exactly the limit is fine.
    let text = format!("{{\"x-big\": [{}0]}}", "0,".repeat(MAX_ARRAY_LEN - 1));
    parse_declaration(&text, &base()).unwrap();
}

#[test]
fn too_many_packs_are_refused() {
    let packs: Vec<Value> = (0..=MAX_PACKS)
        .map(|i| json!({"id": format!("p{i}"), "version": "1", "downloadPolicy": "onDemand", "files": []}))
        .collect();
    let (path, reason) = refusal(&json!({ "assetPacks": packs }));
    assert_eq!(path, "$.assetPacks");
    assert!(reason.contains("10000"), "{reason}");
}

#[test]
fn too_many_files_in_all_packs_are_refused() {
    let files: Vec<Value> = (0..50_001).map(|i| file(&format!("f{i}"), 1)).collect();
    let pack =
        |id: &str| json!({"id": id, "version": "1", "downloadPolicy": "onDemand", "files": files});
    let (path, reason) = refusal(&json!({ "assetPacks": [pack("a"), pack("b")] }));
    assert_eq!(path, "$.assetPacks[1].files[49999]");
    assert!(reason.contains("100000 files"), "{reason}");
}

#[test]
fn manifest_parses_and_validates() {
    let base = Url::parse("https://cdn.example.com/v2/manifest.json").unwrap();
    let text = json!({ "version": "2", "x-built": "today", "assetPacks": [
        { "id": "a", "version": "2", "downloadPolicy": "prefetch",
          "files": [{ "path": "a.bin", "url": "a.bin", "size": 4, "sha256": DIGEST }] } ] })
    .to_string();
    let m = parse_manifest(&text, &base).unwrap();
    assert_eq!(m.version.as_deref(), Some("2"));
    assert_eq!(
        m.pack("a").unwrap().files[0].url.as_str(),
        "https://cdn.example.com/v2/a.bin"
    );
    assert_eq!(m.total_size(), 4);
    assert_eq!(m.essential_size(), 0);
    assert_eq!(parse_manifest(&m.to_json().to_string(), &base).unwrap(), m);

    let refuse = |v: Value| match parse_manifest(&v.to_string(), &base) {
        Err(Error::InvalidDeclaration { path, reason }) => (path, reason),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        refuse(json!({})),
        ("$".into(), "missing required key `assetPacks`".into())
    );
    assert_eq!(
        refuse(json!({"version": 2, "assetPacks": []})).0,
        "$.version"
    );
    assert_eq!(
        refuse(json!({"maxInstallSize": 2, "assetPacks": []})).0,
        "$.maxInstallSize"
    );
    assert_eq!(
        refuse(json!({"assetPacks": [{"id": "a", "version": "1", "downloadPolicy": "prefetch", "files": [{"path": "a", "url": "a", "size": 1, "sha256": "00"}]}]})).0,
        "$.assetPacks[0].files[0].sha256"
    );
}

#[test]
fn a_manifest_updates_and_extends_the_declared_packs() {
    let d = parse(&valid()).unwrap();
    let m = parse_manifest(
        &json!({ "assetPacks": [
            { "id": "music", "version": "2", "downloadPolicy": "onDemand", "files": [] },
            { "id": "extra", "version": "1", "downloadPolicy": "prefetch", "files": [file("e.bin", 3)] }
        ]})
        .to_string(),
        &base(),
    )
    .unwrap();
    let updated = d.with_manifest(&m).unwrap();
    let order: Vec<&str> = updated.asset_packs.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(order, ["levels", "music", "maps", "extra"]);
    assert_eq!(updated.pack("music").unwrap().version, "2");
    assert_eq!(updated.restrictions, d.restrictions);
    // An essential pack that no longer fits the declared limits is refused.
    let too_big = parse_manifest(
        &json!({ "assetPacks": [
            { "id": "huge", "version": "1", "downloadPolicy": "essential", "files": [file("h.bin", 134217728)] }
        ]})
        .to_string(),
        &base(),
    )
    .unwrap();
    assert_eq!(
        d.with_manifest(&too_big),
        Err(Error::MaxInstallSizeExceeded {
            needed: 134217728 + 67108864 + 10,
            limit: 134217728
        })
    );
}

#[test]
fn canonical_json_round_trips() {
    let d = parse(&valid()).unwrap();
    let again = parse_declaration(&d.to_json().to_string(), &base()).unwrap();
    assert_eq!(again, d);
    let serialized = serde_json::to_value(&d).unwrap();
    assert_eq!(serialized, d.to_json());
}

#[test]
fn declaration_from_value_agrees_with_text_parsing() {
    assert_eq!(
        declaration_from_value(&valid(), &base()).unwrap(),
        parse(&valid()).unwrap()
    );
}

// ---------------------------------------------------------------------------------------------
// Property tests
// ---------------------------------------------------------------------------------------------

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "[a-zA-Z0-9./*:_ -]{0,12}".prop_map(Value::from),
        prop_oneof![
            Just("essential"),
            Just("prefetch"),
            Just("onDemand"),
            Just("firstInstallation"),
            Just("https://cdn.example.com/a"),
            Just(DIGEST),
            Just("*.example.com"),
            Just("levels/1.bin")
        ]
        .prop_map(Value::from),
    ];
    let keys = prop_oneof![
        Just("assetPacks".to_string()),
        Just("id".to_string()),
        Just("files".to_string()),
        Just("path".to_string()),
        Just("url".to_string()),
        Just("size".to_string()),
        Just("sha256".to_string()),
        Just("version".to_string()),
        Just("downloadPolicy".to_string()),
        Just("installationEventTypes".to_string()),
        Just("initialDownloadRestrictions".to_string()),
        Just("BADownloadAllowance".to_string()),
        Just("domainAllowList".to_string()),
        Just("maxInstallSize".to_string()),
        Just("manifestURL".to_string()),
        "[a-zA-Z$-]{0,6}",
    ];
    leaf.prop_recursive(6, 64, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(keys.clone(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn arb_file() -> impl Strategy<Value = Value> {
    (
        "[a-z0-9]{1,8}(/[a-z0-9._-]{1,8}){0,2}",
        0u64..=(1u64 << 53) - 1,
        prop::array::uniform32(any::<u8>()),
        any::<bool>(),
    )
        .prop_filter("no dot segments", |(p, ..)| {
            !p.split('/').any(|s| s == "." || s == "..")
        })
        .prop_map(|(path, size, digest, upper)| {
            let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
            json!({
                "path": path,
                "url": format!("https://cdn.example.com/{path}"),
                "size": size,
                "sha256": if upper { hex.to_uppercase() } else { hex },
            })
        })
}

fn arb_declaration() -> impl Strategy<Value = Value> {
    let pack = (
        prop_oneof![Just("essential"), Just("prefetch"), Just("onDemand")],
        "[0-9]{1,3}(\\.[0-9]{1,3})?",
        prop::collection::vec(arb_file(), 0..4),
        prop_oneof![
            Just(None),
            Just(Some(vec!["firstInstallation"])),
            Just(Some(vec!["subsequentUpdate", "firstInstallation"]))
        ],
    );
    (
        prop::collection::vec(pack, 0..5),
        any::<u32>(),
        any::<u32>(),
        prop::collection::btree_set("[a-z]{1,6}\\.(com|org|net)", 0..4),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(packs, allowance, essential, hosts, wildcard, apple)| {
            let packs: Vec<Value> = packs
                .into_iter()
                .enumerate()
                .map(|(i, (policy, version, files, events))| {
                    // Unique paths within the pack.
                    let mut seen = std::collections::HashSet::new();
                    let files: Vec<Value> = files
                        .into_iter()
                        .filter(|f| seen.insert(f["path"].as_str().unwrap().to_string()))
                        .collect();
                    let mut p = json!({ "id": format!("pack-{i}"), "version": version, "downloadPolicy": policy, "files": files });
                    if let (Some(events), false) = (events, policy == "onDemand") {
                        p["installationEventTypes"] = json!(events);
                    }
                    p
                })
                .collect();
            let hosts: Vec<String> = hosts
                .into_iter()
                .map(|h| if wildcard { format!("*.{h}") } else { h })
                .collect();
            if apple {
                json!({ "BAInitialDownloadRestrictions": { "BADownloadAllowance": allowance,
                    "BAEssentialDownloadAllowance": essential, "BADownloadDomainAllowList": hosts },
                    "assetPacks": packs })
            } else {
                json!({ "initialDownloadRestrictions": { "downloadAllowance": allowance,
                    "essentialDownloadAllowance": essential, "domainAllowList": hosts },
                    "assetPacks": packs })
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn never_panics_on_arbitrary_text(text in "\\PC{0,200}") {
        let _ = parse_declaration(&text, &base());
        let _ = parse_manifest(&text, &base());
    }

    #[test]
    fn never_panics_on_arbitrary_json(value in arb_json()) {
        let text = value.to_string();
        for result in [parse_declaration(&text, &base()).map(|_| ()), parse_manifest(&text, &base()).map(|_| ())] {
            if let Err(e) = result {
                match e {
                    Error::InvalidDeclaration { path, .. } => prop_assert!(path.starts_with('$')),
                    other => prop_assert!(false, "untyped error {other:?}"),
                }
            }
        }
    }

    /// Random edits of a valid document (a cheap fuzzer): never a panic, always a typed error.
    #[test]
    fn never_panics_on_mutated_documents(
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0u8..3, prop::sample::select(
            vec!['{', '}', '[', ']', '"', ',', ':', '0', '9', '-', '.', 'e', 'a', '\\', '*', '/', ' ', 'é', '\u{0}'])), 1..8),
    ) {
        let mut text: Vec<char> = valid().to_string().chars().collect();
        for (at, kind, c) in edits {
            let i = at.index(text.len().max(1));
            match kind {
                0 if !text.is_empty() => { text.remove(i); }
                1 => text.insert(i, c),
                _ if !text.is_empty() => text[i] = c,
                _ => {}
            }
        }
        let text: String = text.into_iter().collect();
        match parse_declaration(&text, &base()) {
            Ok(_) => {}
            Err(Error::InvalidDeclaration { path, .. }) => prop_assert!(path.starts_with('$')),
            Err(other) => prop_assert!(false, "untyped error {other:?}"),
        }
    }

    #[test]
    fn valid_declarations_round_trip(value in arb_declaration()) {
        let d = parse(&value).unwrap();
        let again = parse_declaration(&d.to_json().to_string(), &base()).unwrap();
        prop_assert_eq!(&again, &d);
        prop_assert_eq!(d.asset_packs.len(), value["assetPacks"].as_array().unwrap().len());
    }

    /// Replacing any one file field by a value of the wrong type is refused at exactly that path.
    #[test]
    fn a_wrong_type_is_reported_at_its_path(
        value in arb_declaration().prop_filter("has a file", |v| v["assetPacks"].as_array().unwrap().iter().any(|p| !p["files"].as_array().unwrap().is_empty())),
        field in prop_oneof![Just("path"), Just("url"), Just("size"), Just("sha256")],
        bad in prop_oneof![Just(json!(null)), Just(json!([1])), Just(json!({"a": 1})), Just(json!(true))],
    ) {
        let mut value = value;
        let pack_index = value["assetPacks"].as_array().unwrap().iter().position(|p| !p["files"].as_array().unwrap().is_empty()).unwrap();
        value["assetPacks"][pack_index]["files"][0][field] = bad;
        let (path, _) = refusal(&value);
        prop_assert_eq!(path, format!("$.assetPacks[{pack_index}].files[0].{field}"));
    }
}

#[test]
fn background_fetch_is_an_opt_in_boolean() {
    assert!(!parse(&valid()).unwrap().background_fetch, "off by default");
    let on = parse(&insert("", "backgroundFetch", json!(true))).unwrap();
    assert!(on.background_fetch);
    // The canonical form keeps it, and parses back equal.
    let again = parse_declaration(&on.to_json().to_string(), &base()).unwrap();
    assert_eq!(again, on);
    assert!(parse(&insert("", "backgroundFetch", json!(false)))
        .unwrap()
        .to_json()
        .get("backgroundFetch")
        .is_none());
    let (path, reason) = refusal(&insert("", "backgroundFetch", json!("yes")));
    assert_eq!(path, "$.backgroundFetch");
    assert!(reason.contains("expected a boolean"), "{reason}");
}
