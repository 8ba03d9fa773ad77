//! Static file mounts: URL prefix → directory, longest prefix first, no escaping the directory.

use std::path::{Path, PathBuf};

use super::faults::percent_decode;

/// What a URL path means under the configured mounts.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// No mount covers the path.
    Unmounted,
    /// A regular file to serve.
    File(PathBuf),
    /// A directory asked for without its trailing slash: redirect to this path.
    AddSlash(String),
    /// The path is covered but names nothing.
    Missing,
    /// The path tries to leave its directory or is not decodable; the text says why.
    Refused(String),
}

/// Resolves `url_path` (still percent-encoded, no query) against `mounts`, which must be sorted
/// longest prefix first (see [`sort_mounts`]).
pub(crate) fn lookup(mounts: &[(String, PathBuf)], url_path: &str) -> Lookup {
    let Some((prefix, dir)) = mounts.iter().find(|(prefix, _)| covers(prefix, url_path)) else {
        return Lookup::Unmounted;
    };
    let rest = url_path[prefix.len().min(url_path.len())..].trim_start_matches('/');
    let Some(decoded) = percent_decode(rest) else {
        return Lookup::Refused(format!("bad percent-encoding in `{url_path}`"));
    };
    let mut path = dir.clone();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => return Lookup::Refused(format!("`..` is not allowed in `{url_path}`")),
            s if s.contains('\\') || s.contains('\0') || s.contains(':') => {
                return Lookup::Refused(format!("`{s}` is not a plain file name"))
            }
            s => path.push(s),
        }
    }
    match std::fs::metadata(&path) {
        Ok(meta) if meta.is_dir() => {
            if url_path.ends_with('/') {
                let index = path.join("index.html");
                if index.is_file() {
                    Lookup::File(index)
                } else {
                    Lookup::Missing
                }
            } else {
                Lookup::AddSlash(format!("{url_path}/"))
            }
        }
        Ok(meta) if meta.is_file() => Lookup::File(path),
        _ => Lookup::Missing,
    }
}

/// Whether `prefix` covers `url_path`: `"/pkg/"` covers `/pkg/a.js`; `"/pkg"` covers `/pkg` and
/// `/pkg/a.js` but not `/pkgs`.
fn covers(prefix: &str, url_path: &str) -> bool {
    if prefix.ends_with('/') {
        url_path.starts_with(prefix) || url_path == prefix.trim_end_matches('/')
    } else {
        url_path == prefix
            || (url_path.starts_with(prefix) && url_path[prefix.len()..].starts_with('/'))
    }
}

/// Sorts mounts so that the longest prefix is tried first.
pub(crate) fn sort_mounts(mounts: &mut [(String, PathBuf)]) {
    mounts.sort_by_key(|mount| std::cmp::Reverse(mount.0.len()));
}

/// The `Content-Type` for a file, by extension.
pub(crate) fn content_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "wasm" => "application/wasm",
        "json" | "map" => "application/json",
        "css" => "text/css; charset=utf-8",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "ico" => "image/x-icon",
        "svg" => "image/svg+xml",
        "webmanifest" => "application/manifest+json",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        assert!(covers("/pkg/", "/pkg/a.js"));
        assert!(covers("/pkg/", "/pkg"));
        assert!(!covers("/pkg/", "/pkgs/a"));
        assert!(covers("/pkg", "/pkg/a"));
        assert!(!covers("/pkg", "/pkgs"));
        assert!(covers("/", "/anything"));
    }

    #[test]
    fn refuses_traversal() {
        let mounts = vec![("/".to_owned(), PathBuf::from("/tmp"))];
        assert!(matches!(
            lookup(&mounts, "/../etc/passwd"),
            Lookup::Refused(_)
        ));
        assert!(matches!(
            lookup(&mounts, "/a/%2e%2e/%2E%2E/x"),
            Lookup::Refused(_)
        ));
        assert!(matches!(lookup(&mounts, "/a%5c..%5cb"), Lookup::Refused(_)));
    }
}
