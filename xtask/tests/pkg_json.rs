//! The demo app's `pkg.json` parses with the library's own parser, and every file it declares on
//! the local CDN has exactly the size and SHA-256 the CDN serves for it.

use background_assets::core::declaration::{parse_declaration, AssetPackList, DownloadPolicy};
use background_assets::core::error::hex;
use sha2::{Digest, Sha256};
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
    let size_of = |policy| -> u64 {
        d.asset_packs
            .iter()
            .filter(|p| p.download_policy == policy)
            .flat_map(|p| &p.files)
            .map(|f| f.size)
            .sum()
    };
    assert_eq!(
        size_of(DownloadPolicy::Essential),
        64 << 20,
        "essential 64 MiB"
    );
    assert_eq!(
        size_of(DownloadPolicy::Prefetch),
        128 << 20,
        "prefetch 128 MiB"
    );
    // Essential and prefetch packs fit the pre-launch allowance, so the install fetches both.
    assert!(
        size_of(DownloadPolicy::Essential) + size_of(DownloadPolicy::Prefetch)
            <= d.restrictions.download_allowance
    );
}

#[test]
fn demo_files_match_what_the_cdn_serves() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let (mut checked, mut chunked) = (0, 0);
    for pack in declaration().asset_packs {
        for file in &pack.files {
            let segments: Vec<_> = file.url.path_segments().unwrap().collect();
            match segments[0] {
                // A generated body: /gen/<len>/<seed>.
                "gen" => {
                    let len: u64 = segments[1].parse().unwrap();
                    let seed: u64 = segments[2].parse().unwrap();
                    assert_eq!(file.size, len, "size of {}", file.path);
                    assert_eq!(
                        hex(&file.sha256),
                        xtask::cdn::generated_sha256(len, seed),
                        "sha256 of {}",
                        file.path
                    );
                    if let Some(chunks) = &file.chunks {
                        let served: serde_json::Value =
                            serde_json::from_str(&xtask::cdn::generated_chunk_digests(
                                len,
                                seed,
                                u64::from(chunks.chunk_size),
                            ))
                            .unwrap();
                        assert_eq!(
                            serde_json::to_value(chunks).unwrap(),
                            served,
                            "chunk digests of {}",
                            file.path
                        );
                        chunked += 1;
                    }
                }
                // A committed file the demo CDN serves from xtask/assets/ at /assets/.
                "assets" => {
                    let bytes = std::fs::read(root.join("assets").join(segments[1..].join("/")))
                        .unwrap_or_else(|e| panic!("{}: {e}", file.url));
                    assert_eq!(file.size, bytes.len() as u64, "size of {}", file.path);
                    assert_eq!(
                        hex(&file.sha256),
                        hex(&Sha256::digest(&bytes)),
                        "sha256 of {}",
                        file.path
                    );
                }
                other => panic!("{} is neither /gen/ nor /assets/ ({other})", file.url),
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 4, "every declared file was checked");
    assert_eq!(chunked, 1, "world-1 declares its chunk digests");
}

#[test]
fn demo_video_is_a_webm_the_on_demand_pack_declares() {
    let d = declaration();
    let pack = d
        .asset_packs
        .iter()
        .find(|p| p.download_policy == DownloadPolicy::OnDemand)
        .expect("an on-demand pack");
    let video = pack
        .files
        .iter()
        .find(|f| f.path.ends_with(".webm"))
        .expect("a .webm file in the on-demand pack");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let bytes = std::fs::read(root.join("assets/demo.webm")).unwrap();
    // EBML magic, then the "webm" DocType somewhere in the header.
    assert_eq!(&bytes[..4], &[0x1a, 0x45, 0xdf, 0xa3], "EBML header");
    assert!(bytes[..64].windows(4).any(|w| w == b"webm"), "DocType webm");
    assert!(video.size < 2 * 1024 * 1024, "the video stays small");
}
