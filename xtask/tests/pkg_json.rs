//! The demo app's `pkg.json` parses with the library's own parser, and every file it declares on
//! the local CDN has exactly the size and SHA-256 the CDN serves for it.

use background_assets::core::declaration::{parse_declaration, AssetPackList, DownloadPolicy};
use background_assets::core::error::hex;
use url::Url;

fn declaration() -> background_assets::core::declaration::Declaration {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let text = std::fs::read_to_string(root.join("pkg.json")).expect("read pkg.json");
    let base = Url::parse("http://127.0.0.1:8787/pkg.json").unwrap();
    parse_declaration(&text, &base).expect("pkg.json is a valid declaration")
}

#[test]
fn demo_declaration_has_one_pack_of_each_policy() {
    let d = declaration();
    for policy in [
        DownloadPolicy::Essential,
        DownloadPolicy::Prefetch,
        DownloadPolicy::OnDemand,
    ] {
        assert!(
            d.asset_packs.iter().any(|p| p.download_policy == policy),
            "no {policy:?} pack in pkg.json"
        );
    }
    assert!(d.essential_size() <= d.restrictions.essential_download_allowance);
}

#[test]
fn demo_files_match_what_the_cdn_generates() {
    for pack in declaration().asset_packs {
        for file in &pack.files {
            let segments: Vec<_> = file.url.path_segments().unwrap().collect();
            assert_eq!(
                segments[0], "gen",
                "{} is not a generated CDN body",
                file.url
            );
            let len: u64 = segments[1].parse().unwrap();
            let seed: u64 = segments[2].parse().unwrap();
            assert_eq!(file.size, len, "size of {}", file.path);
            assert_eq!(
                hex(&file.sha256),
                xtask::cdn::generated_sha256(len, seed),
                "sha256 of {}",
                file.path
            );
        }
    }
}
