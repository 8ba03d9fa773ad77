//! The demo app's asset packs: what its `pkg.json` declares, at full or small size, with file URLs
//! on the local CDN, on another origin (`--cdn URL`) or relative (`--export DIR`).
//!
//! ```text
//!  pack      policy     files                                   full      small
//!  world-1   essential  levels/world-1.bin      /gen/<len>/1     64 MiB     4 MiB   + chunk digests
//!  world-2   prefetch   levels/world-2a.bin     /gen/<len>/2     64 MiB     4 MiB
//!                       levels/world-2b.bin     /gen/<len>/3     64 MiB     4 MiB
//!  trailer   onDemand   movies/trailer.webm     /assets/demo.webm  (a 10 s VP9 video, both sizes)
//! ```
//!
//! The committed `pkg.json` is [`declaration`] of the full packs on the CDN at
//! `http://127.0.0.1:8788` (a unit test keeps them equal); the demo serves a declaration rebuilt
//! for the ports and origin it actually uses.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use xtask::cdn::{generated_bytes, generated_chunk_digests, generated_sha256, hex};
use xtask::workspace;

/// Bytes in a mebibyte.
const MIB: u64 = 1 << 20;
/// How much smaller `--small` packs (and the restrictions that go with them) are.
const SMALL_DIVISOR: u64 = 16;
/// Full size of each generated file.
const GENERATED_FILE_SIZE: u64 = 64 * MIB;
/// The chunk size world-1's chunk digests are declared at, full size (1/16 of it `--small`).
const DEMO_CHUNK: u64 = 4 * MIB;
/// SHA-256 of `/gen/67108864/<seed>` for seeds 1, 2, 3 (checked by `xtask/tests/pkg_json.rs`).
const FULL_DIGESTS: [(u64, &str); 3] = [
    (
        1,
        "7d6a73d17ea8cd0414524fcf2b8345d7208d495f5fb792b39ff339ed9732d8a8",
    ),
    (
        2,
        "023bdeee020395c115e5805af90207893642012dc1ce1c8d65926fce08c1e999",
    ),
    (
        3,
        "40d760bb8bc22b00a3bb626f6fd0351e5354d11f4010875b5c8b592dce336820",
    ),
];
/// The video of the on-demand pack, under `xtask/assets/`: 10 s of ffmpeg's `testsrc` (a counter
/// of seconds), 640×360, 25 fps, VP9 with a key frame every second, 386 KB. Generated once with
/// `ffmpeg -f lavfi -i testsrc=size=640x360:rate=25:duration=10 -c:v libvpx-vp9 -b:v 500k -g 25
/// -deadline good -cpu-used 4 -row-mt 1 -pix_fmt yuv420p demo.webm` and committed; nothing needs
/// ffmpeg at run time.
pub const VIDEO_ASSET: &str = "demo.webm";
/// The default CDN origin the committed `pkg.json` points at.
#[cfg(test)]
pub const DEFAULT_CDN_ORIGIN: &str = "http://127.0.0.1:8788";

/// Full sizes (the default) or `--small` ones (generated files 1/16 of the size).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PackScale {
    /// essential 64 MiB, prefetch 128 MiB.
    Full,
    /// essential 4 MiB, prefetch 8 MiB: for CI.
    Small,
}

impl PackScale {
    fn divisor(self) -> u64 {
        match self {
            PackScale::Full => 1,
            PackScale::Small => SMALL_DIVISOR,
        }
    }

    /// `"full"` or `"small"`.
    pub fn name(self) -> &'static str {
        match self {
            PackScale::Full => "full",
            PackScale::Small => "small",
        }
    }
}

/// Where a file's bytes come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileSource {
    /// The CDN's generated body `/gen/<size>/<seed>`.
    Generated { seed: u64 },
    /// A file under `xtask/assets/`, served by the CDN at `/assets/<name>`.
    Asset { name: &'static str },
}

/// One file of a pack.
#[derive(Clone, Debug)]
pub struct DemoFile {
    /// The path inside the pack (and under an export directory).
    pub path: &'static str,
    pub size: u64,
    /// Lowercase hex.
    pub sha256: String,
    /// The declaration's `chunks` (each chunk's SHA-256), when the file declares them.
    pub chunks: Option<Value>,
    pub source: FileSource,
}

/// One asset pack.
#[derive(Clone, Debug)]
pub struct DemoPack {
    pub id: &'static str,
    pub version: &'static str,
    /// `essential`, `prefetch` or `onDemand`.
    pub policy: &'static str,
    pub files: Vec<DemoFile>,
}

impl DemoPack {
    /// The sum of the pack's file sizes.
    pub fn size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// Where the declaration's file URLs point.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileLocation {
    /// The local CDN at this origin (`http://127.0.0.1:PORT`): `/gen/…` and `/assets/…`.
    LocalCdn(String),
    /// A folder written by `--export`, served at this base URL: `<base>/<path>`.
    Folder(String),
    /// Relative to `pkg.json` (what `--export` writes).
    Relative,
}

/// The demo's packs at `scale`.
///
/// # Example
/// ```ignore
/// let packs = demo_packs(PackScale::Small)?;
/// assert_eq!(packs[0].policy, "essential");
/// ```
pub fn demo_packs(scale: PackScale) -> Result<Vec<DemoPack>> {
    let generated = |path: &'static str, seed: u64| {
        let size = GENERATED_FILE_SIZE / scale.divisor();
        let sha256 = match scale {
            PackScale::Full => FULL_DIGESTS
                .iter()
                .find(|(s, _)| *s == seed)
                .map(|(_, hex)| hex.to_string())
                .unwrap_or_else(|| generated_sha256(size, seed)),
            PackScale::Small => generated_sha256(size, seed),
        };
        DemoFile {
            path,
            size,
            sha256,
            chunks: None,
            source: FileSource::Generated { seed },
        }
    };
    // The essential pack declares its chunks' digests (each chunk verified by the browser as it
    // arrives); the prefetch pack's files are verified whole, in wasm: the demo shows both.
    let mut world_1 = generated("levels/world-1.bin", 1);
    let chunk = DEMO_CHUNK / scale.divisor();
    world_1.chunks = Some(serde_json::from_str(&generated_chunk_digests(
        world_1.size,
        1,
        chunk,
    ))?);
    let video = video_path();
    let video_bytes =
        std::fs::read(&video).with_context(|| format!("reading {}", video.display()))?;
    Ok(vec![
        DemoPack {
            id: "world-1",
            version: "1",
            policy: "essential",
            files: vec![world_1],
        },
        DemoPack {
            id: "world-2",
            version: "1",
            policy: "prefetch",
            files: vec![
                generated("levels/world-2a.bin", 2),
                generated("levels/world-2b.bin", 3),
            ],
        },
        DemoPack {
            id: "trailer",
            version: "1",
            policy: "onDemand",
            files: vec![DemoFile {
                path: "movies/trailer.webm",
                size: video_bytes.len() as u64,
                sha256: hex(&Sha256::digest(&video_bytes)),
                chunks: None,
                source: FileSource::Asset { name: VIDEO_ASSET },
            }],
        },
    ])
}

/// `xtask/assets/`, which the demo CDN serves at `/assets/`.
pub fn assets_dir() -> PathBuf {
    workspace::root().join("xtask").join("assets")
}

fn video_path() -> PathBuf {
    assets_dir().join(VIDEO_ASSET)
}

/// The URL `file` is fetched from.
pub fn file_url(file: &DemoFile, location: &FileLocation) -> String {
    match location {
        FileLocation::LocalCdn(origin) => match &file.source {
            FileSource::Generated { seed } => format!("{origin}/gen/{}/{seed}", file.size),
            FileSource::Asset { name } => format!("{origin}/assets/{name}"),
        },
        FileLocation::Folder(base) => format!("{}/{}", base.trim_end_matches('/'), file.path),
        FileLocation::Relative => file.path.to_string(),
    }
}

/// The `pkg.json` declaring `packs` with their files at `location`, at `scale`'s restrictions:
/// before first launch the essential and prefetch packs fit the allowance exactly, and only the
/// files' host may be contacted.
pub fn declaration(packs: &[DemoPack], scale: PackScale, location: &FileLocation) -> Value {
    let sum = |policy: &str| -> u64 {
        packs
            .iter()
            .filter(|p| p.policy == policy)
            .map(DemoPack::size)
            .sum()
    };
    let essential = sum("essential");
    let mut restrictions = json!({
        "downloadAllowance": essential + sum("prefetch"),
        "essentialDownloadAllowance": essential,
    });
    if let Some(host) = allowed_host(location) {
        restrictions["domainAllowList"] = json!([host]);
    }
    let packs: Vec<Value> = packs
        .iter()
        .map(|pack| {
            let files: Vec<Value> = pack
                .files
                .iter()
                .map(|f| {
                    let mut file = json!({
                        "path": f.path,
                        "url": file_url(f, location),
                        "size": f.size,
                        "sha256": f.sha256,
                    });
                    if let Some(chunks) = &f.chunks {
                        file["chunks"] = chunks.clone();
                    }
                    file
                })
                .collect();
            let mut value = json!({
                "id": pack.id,
                "version": pack.version,
                "downloadPolicy": pack.policy,
            });
            if pack.policy != "onDemand" {
                value["installationEventTypes"] = json!(["firstInstallation", "subsequentUpdate"]);
            }
            value["files"] = Value::Array(files);
            value
        })
        .collect();
    json!({
        "initialDownloadRestrictions": restrictions,
        "maxInstallSize": 512 * MIB / scale.divisor(),
        "essentialMaxInstallSize": essential,
        "assetPacks": packs,
    })
}

/// The host the files live on, for the domain allow-list (none for relative URLs: same origin).
fn allowed_host(location: &FileLocation) -> Option<String> {
    let base = match location {
        FileLocation::LocalCdn(origin) => origin,
        FileLocation::Folder(base) => base,
        FileLocation::Relative => return None,
    };
    url::Url::parse(base)
        .ok()?
        .host_str()
        .map(|h| h.trim_matches(['[', ']']).to_string())
}

/// Checks `--cdn URL` and returns it without a trailing slash.
///
/// # Example
/// ```ignore
/// assert_eq!(cdn_base("https://cdn.example.com/demo/")?, "https://cdn.example.com/demo");
/// assert!(cdn_base("ftp://x").is_err());
/// ```
pub fn cdn_base(text: &str) -> Result<String> {
    let url =
        url::Url::parse(text).with_context(|| format!("--cdn {text:?}: not an absolute URL"))?;
    ensure!(
        matches!(url.scheme(), "http" | "https") && url.host_str().is_some(),
        "--cdn {text:?}: expected an http(s) URL with a host"
    );
    ensure!(
        url.query().is_none() && url.fragment().is_none(),
        "--cdn {text:?}: no query or fragment, just the folder's URL"
    );
    Ok(text.trim_end_matches('/').to_string())
}

/// What [`export`] wrote.
pub struct ExportSummary {
    pub files: usize,
    pub bytes: u64,
    pub declaration: PathBuf,
}

/// Writes every pack file under `dir` at its pack path, and `dir/pkg.json` declaring them with
/// URLs relative to it. Serve `dir` from any origin with Range/ETag/CORS and pass its URL to
/// `cargo xtask demo --cdn`.
pub fn export(dir: &Path, scale: PackScale) -> Result<ExportSummary> {
    let packs = demo_packs(scale)?;
    let mut files = 0;
    let mut bytes = 0;
    for file in packs.iter().flat_map(|p| &p.files) {
        let target = dir.join(file.path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        match &file.source {
            FileSource::Generated { seed } => write_generated(&target, file.size, *seed)?,
            FileSource::Asset { name } => {
                let source = assets_dir().join(name);
                std::fs::copy(&source, &target).with_context(|| {
                    format!("copying {} to {}", source.display(), target.display())
                })?;
            }
        }
        files += 1;
        bytes += file.size;
    }
    let mut declaration = declaration(&packs, scale, &FileLocation::Relative);
    declaration["x-generated-by"] = json!(format!(
        "cargo xtask demo --export ({} packs); serve this folder and run `cargo xtask demo --cdn <its URL>{}`",
        scale.name(),
        if scale == PackScale::Small { " --small" } else { "" }
    ));
    let path = dir.join("pkg.json");
    std::fs::write(&path, serde_json::to_string_pretty(&declaration)? + "\n")
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(ExportSummary {
        files,
        bytes,
        declaration: path,
    })
}

fn write_generated(path: &Path, size: u64, seed: u64) -> Result<()> {
    let out =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = std::io::BufWriter::new(out);
    let mut buf = vec![0u8; MIB as usize];
    let mut offset = 0;
    while offset < size {
        let n = (size - offset).min(MIB) as usize;
        generated_bytes(size, seed, offset, &mut buf[..n]);
        out.write_all(&buf[..n])
            .with_context(|| format!("writing {}", path.display()))?;
        offset += n as u64;
    }
    out.flush()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_pkg_json_is_the_full_declaration_on_the_default_cdn() {
        let committed: Value = serde_json::from_str(
            &std::fs::read_to_string(workspace::root().join("pkg.json")).unwrap(),
        )
        .unwrap();
        let packs = demo_packs(PackScale::Full).unwrap();
        let built = declaration(
            &packs,
            PackScale::Full,
            &FileLocation::LocalCdn(DEFAULT_CDN_ORIGIN.into()),
        );
        assert_eq!(committed, built, "regenerate pkg.json from demo_packs");
    }

    #[test]
    fn small_packs_are_a_sixteenth_with_their_own_digests() {
        let full = demo_packs(PackScale::Full).unwrap();
        let small = demo_packs(PackScale::Small).unwrap();
        assert_eq!(small[0].size() * 16, full[0].size());
        assert_eq!(small[1].size() * 16, full[1].size());
        assert_eq!(small[2].size(), full[2].size(), "the video is not scaled");
        let f = &small[0].files[0];
        assert_eq!(f.sha256, generated_sha256(f.size, 1));
    }

    #[test]
    fn urls_follow_the_location_and_the_allow_list_its_host() {
        let packs = demo_packs(PackScale::Small).unwrap();
        let folder = FileLocation::Folder("https://cdn.example.com/demo/".into());
        let d = declaration(&packs, PackScale::Small, &folder);
        assert_eq!(
            d["assetPacks"][2]["files"][0]["url"],
            "https://cdn.example.com/demo/movies/trailer.webm"
        );
        assert_eq!(
            d["initialDownloadRestrictions"]["domainAllowList"],
            json!(["cdn.example.com"])
        );
        let relative = declaration(&packs, PackScale::Small, &FileLocation::Relative);
        assert_eq!(
            relative["assetPacks"][0]["files"][0]["url"],
            "levels/world-1.bin"
        );
        assert!(relative["initialDownloadRestrictions"]
            .get("domainAllowList")
            .is_none());
    }

    #[test]
    fn cdn_urls_must_be_http_folders() {
        assert_eq!(
            cdn_base("https://cdn.example.com/demo/").unwrap(),
            "https://cdn.example.com/demo"
        );
        for bad in ["ftp://x/y", "not a url", "http://x/?a=1", "/relative"] {
            let err = cdn_base(bad).unwrap_err().to_string();
            assert!(err.contains("--cdn"), "{bad}: {err}");
        }
    }
}
