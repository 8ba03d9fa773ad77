//! Host tests of the local CDN: every header behaviour and every fault, over real sockets.
//!
//! ureq is used where a normal client sees everything; a raw `TcpStream` where a client would hide
//! what matters (exact bytes before a close, `HEAD`, unnormalised paths).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use xtask::cdn::{generated_bytes, generated_sha256, Server, ServerConfig};

const TIMEOUT: Duration = Duration::from_secs(10);

fn server() -> Server {
    Server::start(ServerConfig::default()).expect("server starts")
}

/// An agent that returns every status as a response and does not follow redirects.
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(TIMEOUT))
        .build()
        .into()
}

/// Like [`agent`] but following redirects.
fn following_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(TIMEOUT))
        .build()
        .into()
}

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as UTF-8 text (panics on other bytes).
    fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("a UTF-8 body")
    }

    /// The `ETag` header, which must be there.
    fn etag(&self) -> String {
        self.header("etag").expect("an ETag header").to_owned()
    }

    /// Each `(name, value)` header is present with exactly that value.
    #[track_caller]
    fn assert_headers(&self, expected: &[(&str, &str)]) {
        for (name, value) in expected {
            assert_eq!(self.header(name), Some(*value), "header {name}");
        }
    }

    /// A 200 with the whole generated body `(len, seed)` and no `Content-Range`.
    #[track_caller]
    fn assert_whole(&self, len: u64, seed: u64) {
        assert_eq!(self.status, 200);
        assert_eq!(self.header("content-range"), None);
        assert_eq!(self.body, expected(len, seed));
    }

    /// A 206 with bytes `start..=end` of `whole`, announced by `Content-Range` and
    /// `Content-Length`.
    #[track_caller]
    fn assert_part(&self, whole: &[u8], start: usize, end: usize) {
        assert_eq!(self.status, 206, "bytes {start}-{end}");
        let content_range = format!("bytes {start}-{end}/{}", whole.len());
        let content_length = (end - start + 1).to_string();
        self.assert_headers(&[
            ("content-range", &content_range),
            ("content-length", &content_length),
        ]);
        assert_eq!(self.body, whole[start..=end], "bytes {start}-{end}");
    }

    /// An error answer: `status`, a text body that says `says`, and the CORS headers.
    #[track_caller]
    fn assert_error(&self, status: u16, says: &str) {
        assert_eq!(self.status, status);
        assert!(
            self.text().contains(says),
            "{:?} lacks {says:?}",
            self.text()
        );
        assert_cors(self);
    }
}

/// Requests to a running [`Server`] named by path (and query) on its origin.
trait ByPath {
    /// The origin followed by `path`.
    fn url(&self, path: &str) -> String;
    /// GET `path` with `headers` through ureq, redirects not followed.
    fn get(&self, path: &str, headers: &[(&str, &str)]) -> Answer;
    /// GET `target` verbatim over a raw socket (see [`raw`]).
    fn raw_get(&self, target: &str) -> Raw;
}

impl ByPath for Server {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin())
    }

    fn get(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        get(&self.url(path), headers)
    }

    fn raw_get(&self, target: &str) -> Raw {
        raw(self.addr(), &get_request(target, ""))
    }
}

fn get(url: &str, headers: &[(&str, &str)]) -> Answer {
    let mut request = agent().get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut response = request.call().expect("request completes");
    let headers = response
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    Answer {
        status: response.status().as_u16(),
        headers,
        body: response.body_mut().read_to_vec().expect("body reads"),
    }
}

/// What a raw HTTP/1.1 exchange produced: everything until the server closed the connection.
struct Raw {
    answer: Answer,
    /// Time from sending the request to the end of the stream.
    elapsed: Duration,
}

/// The text of a `GET target` that asks the server to close after answering; `extra_headers` are
/// whole header lines, each ending in `\r\n`.
fn get_request(target: &str, extra_headers: &str) -> String {
    format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra_headers}Connection: close\r\n\r\n")
}

/// Connects to `addr` (reads time out after [`TIMEOUT`]) and sends `request` verbatim.
fn send(addr: SocketAddr, request: &str) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).expect("connects");
    tcp.set_read_timeout(Some(TIMEOUT)).unwrap();
    tcp.write_all(request.as_bytes()).unwrap();
    tcp
}

/// Every byte until the server closes (or resets) the connection.
fn read_to_close(tcp: &mut TcpStream) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match tcp.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("raw read failed after {} bytes: {e}", bytes.len()),
        }
    }
    bytes
}

/// Where the body starts in raw response bytes: just past the blank line ending the head.
fn body_start(bytes: &[u8]) -> usize {
    bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete response head")
        + 4
}

/// Sends `request` verbatim and reads until the server closes the connection (or the timeout).
fn raw(addr: SocketAddr, request: &str) -> Raw {
    let started = Instant::now();
    let bytes = read_to_close(&mut send(addr, request));
    let elapsed = started.elapsed();
    let split = body_start(&bytes);
    let head = String::from_utf8(bytes[..split - 4].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .map(|line| {
            let (n, v) = line.split_once(':').unwrap();
            (n.trim().to_owned(), v.trim().to_owned())
        })
        .collect();
    Raw {
        answer: Answer {
            status,
            headers,
            body: bytes[split..].to_vec(),
        },
        elapsed,
    }
}

fn expected(len: u64, seed: u64) -> Vec<u8> {
    let mut body = vec![0u8; len as usize];
    generated_bytes(len, seed, 0, &mut body);
    body
}

fn sha_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[track_caller]
fn assert_cors(answer: &Answer) {
    answer.assert_headers(&[
        ("access-control-allow-origin", "*"),
        (
            "access-control-expose-headers",
            "ETag, Content-Range, Content-Length, Last-Modified, Accept-Ranges, Retry-After, \
             WWW-Authenticate",
        ),
        ("cross-origin-resource-policy", "cross-origin"),
        ("timing-allow-origin", "*"),
    ]);
}

// ---------------------------------------------------------------- generated bodies and headers

#[test]
fn generated_body_has_all_headers_and_the_expected_bytes() {
    let a = server().get("/gen/1000/5", &[]);
    assert_eq!(a.status, 200);
    a.assert_headers(&[
        ("content-length", "1000"),
        ("accept-ranges", "bytes"),
        ("etag", "\"g-1000-5-v0\""),
        ("last-modified", "Wed, 01 Jan 2025 00:00:00 GMT"),
        ("content-type", "application/octet-stream"),
        ("cache-control", "no-store"),
    ]);
    assert_cors(&a);
    assert_eq!(a.body, expected(1000, 5));
    assert_ne!(a.body, expected(1000, 6), "seeds give different bodies");
}

#[test]
fn sha256_endpoint_and_function_match_the_served_bytes() {
    let server = server();
    let len = 300_000; // several frames, not a multiple of 64
    let body = server.get(&format!("/gen/{len}/11"), &[]).body;
    assert_eq!(body.len(), len as usize);
    let digest = sha_hex(&body);
    assert_eq!(generated_sha256(len, 11), digest);
    let text = server.get(&format!("/gen/{len}/11.sha256"), &[]);
    assert_eq!(text.status, 200);
    assert!(text
        .header("content-type")
        .unwrap()
        .starts_with("text/plain"));
    assert_eq!(text.text(), digest);
    // Asked again, the digest (now remembered) keeps the CORS headers.
    assert_cors(&server.get(&format!("/gen/{len}/11.sha256"), &[]));
}

#[test]
fn generated_bytes_at_any_offset_equal_the_served_slice() {
    let len = 70_000u64;
    let served = server().get(&format!("/gen/{len}/3"), &[]).body;
    for (offset, n) in [
        (0u64, 1usize),
        (1, 100),
        (63, 65),
        (65_535, 2),
        (69_990, 10),
    ] {
        let mut part = vec![0u8; n];
        generated_bytes(len, 3, offset, &mut part);
        assert_eq!(
            part,
            served[offset as usize..offset as usize + n],
            "{offset}+{n}"
        );
    }
    // A shorter body of the same seed is a prefix of a longer one.
    assert_eq!(expected(100, 3), served[..100]);
}

#[test]
fn head_sends_headers_without_a_body() {
    let server = server();
    let r = raw(
        server.addr(),
        "HEAD /gen/5000/1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.answer.status, 200);
    r.answer
        .assert_headers(&[("content-length", "5000"), ("etag", "\"g-5000-1-v0\"")]);
    assert!(r.answer.body.is_empty());
}

#[test]
fn bad_gen_paths_and_fault_values_are_errors_with_cors() {
    let server = server();
    for (path, status, says) in [
        ("/gen/abc/1", 404, "/gen/<len>/<seed>"),
        ("/gen/10/1?fault=explode", 400, "explode"),
        ("/gen/10/1?fault=drop:x", 400, "fault=drop"),
        ("/nothing-mounted-here", 404, "not found"),
    ] {
        server.get(path, &[]).assert_error(status, says);
    }
}

// ---------------------------------------------------------------- ranges

#[test]
fn single_ranges_answer_206_with_content_range() {
    let server = server();
    let whole = expected(1000, 2);
    for (range, start, end) in [
        ("bytes=10-19", 10usize, 19usize),
        ("bytes=990-", 990, 999),
        ("bytes=-5", 995, 999),
        ("bytes=900-5000", 900, 999),
    ] {
        let a = server.get("/gen/1000/2", &[("Range", range)]);
        a.assert_part(&whole, start, end);
        a.assert_headers(&[("etag", "\"g-1000-2-v0\"")]);
        assert_cors(&a);
    }
}

#[test]
fn unsatisfiable_range_answers_416() {
    let a = server().get("/gen/1000/2", &[("Range", "bytes=1000-")]);
    assert_eq!(a.status, 416);
    a.assert_headers(&[("content-range", "bytes */1000")]);
    assert!(a.body.is_empty());
    assert_cors(&a);
}

#[test]
fn multi_range_is_ignored_with_200() {
    server()
        .get("/gen/100/2", &[("Range", "bytes=0-1,5-6")])
        .assert_whole(100, 2);
}

#[test]
fn if_range_matching_etag_or_date_keeps_the_range() {
    let server = server();
    let whole = expected(100, 4);
    let etag = server.get("/gen/100/4", &[("Range", "bytes=0-0")]).etag();
    server
        .get("/gen/100/4", &[("Range", "bytes=50-"), ("If-Range", &etag)])
        .assert_part(&whole, 50, 99);
    let by_date = ("If-Range", "Wed, 01 Jan 2025 00:00:00 GMT");
    server
        .get("/gen/100/4", &[("Range", "bytes=50-"), by_date])
        .assert_part(&whole, 50, 99);
}

#[test]
fn if_range_mismatch_sends_the_whole_body() {
    let server = server();
    for if_range in [
        "\"g-100-4-v9\"",
        "W/\"g-100-4-v0\"",
        "Thu, 02 Jan 2025 00:00:00 GMT",
    ] {
        let a = server.get(
            "/gen/100/4",
            &[("Range", "bytes=50-"), ("If-Range", if_range)],
        );
        assert_eq!(a.status, 200, "If-Range {if_range}");
        a.assert_whole(100, 4);
    }
}

// ---------------------------------------------------------------- CORS preflight

#[test]
fn preflight_echoes_requested_headers() {
    let server = server();
    let r = raw(
        server.addr(),
        "OPTIONS /gen/10/1 HTTP/1.1\r\nHost: x\r\nOrigin: http://127.0.0.1:1\r\n\
         Access-Control-Request-Method: GET\r\nAccess-Control-Request-Headers: range, if-range\r\n\
         Connection: close\r\n\r\n",
    );
    assert_eq!(r.answer.status, 204);
    r.answer.assert_headers(&[
        ("access-control-allow-methods", "GET, HEAD, OPTIONS"),
        ("access-control-allow-headers", "range, if-range"),
        ("access-control-max-age", "600"),
    ]);
    assert_eq!(
        r.answer.header("access-control-allow-private-network"),
        None
    );
    assert_cors(&r.answer);
}

#[test]
fn preflight_defaults_and_private_network() {
    let server = server();
    let r = raw(
        server.addr(),
        "OPTIONS /anything HTTP/1.1\r\nHost: x\r\nOrigin: http://example.test\r\n\
         Access-Control-Request-Private-Network: true\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.answer.status, 204);
    r.answer.assert_headers(&[
        (
            "access-control-allow-headers",
            "Range, If-Range, Authorization, Content-Type, X-Requested-With",
        ),
        ("access-control-allow-private-network", "true"),
    ]);
    assert_eq!(server.requests()[0].method, "OPTIONS");
    let control = raw(
        server.addr(),
        "OPTIONS /_control/reset HTTP/1.1\r\nHost: x\r\nOrigin: http://example.test\r\n\
         Access-Control-Request-Method: POST\r\nConnection: close\r\n\r\n",
    );
    control
        .answer
        .assert_headers(&[("access-control-allow-methods", "GET, HEAD, OPTIONS, POST")]);
    assert_eq!(
        server.requests().len(),
        1,
        "control requests are not logged"
    );
}

// ---------------------------------------------------------------- static files

struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "cdn-test-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn static_mounts_serve_files_with_types_and_longest_prefix() {
    let www = TempDir::new("www");
    let pkg = TempDir::new("pkg");
    let secret = TempDir::new("secret");
    std::fs::write(secret.0.join("secret.txt"), "top secret").unwrap();
    let types = [
        ("index.html", "text/html; charset=utf-8"),
        ("a.js", "text/javascript; charset=utf-8"),
        ("a.mjs", "text/javascript; charset=utf-8"),
        ("a.wasm", "application/wasm"),
        ("a.json", "application/json"),
        ("a.css", "text/css; charset=utf-8"),
        ("a.png", "image/png"),
        ("a.svg", "image/svg+xml"),
        ("app.webmanifest", "application/manifest+json"),
        ("a.mp4", "video/mp4"),
        ("a.webm", "video/webm"),
        ("a.txt", "text/plain; charset=utf-8"),
        ("a.bin", "application/octet-stream"),
    ];
    for (name, _) in types {
        std::fs::write(www.0.join(name), format!("www {name}")).unwrap();
    }
    std::fs::write(pkg.0.join("a.js"), "pkg a.js").unwrap();
    std::fs::create_dir(www.0.join("sub")).unwrap();
    std::fs::write(www.0.join("sub/index.html"), "sub index").unwrap();
    let server = Server::start(ServerConfig {
        mounts: vec![("/".into(), www.0.clone()), ("/pkg/".into(), pkg.0.clone())],
        extra_headers: vec![("Cache-Control".into(), "no-store".into())],
        ..ServerConfig::default()
    })
    .unwrap();
    for (name, content_type) in types {
        let a = server.get(&format!("/{name}"), &[]);
        assert_eq!(a.status, 200, "{name}");
        a.assert_headers(&[
            ("content-type", content_type),
            ("cache-control", "no-store"),
        ]);
        assert_eq!(a.body, format!("www {name}").as_bytes());
        assert!(a.etag().starts_with("\"f-"));
        assert!(a.header("last-modified").is_some());
        assert_cors(&a);
    }
    assert_eq!(server.get("/pkg/a.js", &[]).body, b"pkg a.js");
    assert_eq!(server.get("/", &[]).body, b"www index.html");
    assert_eq!(server.get("/sub/", &[]).body, b"sub index");
    let no_slash = server.get("/sub", &[]);
    assert_eq!(no_slash.status, 301);
    no_slash.assert_headers(&[("location", "/sub/")]);
    let missing = server.get("/nope.js", &[]);
    missing.assert_error(404, "not found");
    missing.assert_headers(&[("cache-control", "no-store")]);

    // Range and If-Range on a file.
    let etag = server.get("/a.txt", &[]).etag();
    server
        .get("/a.txt", &[("Range", "bytes=4-"), ("If-Range", &etag)])
        .assert_part(b"www a.txt", 4, 8);

    // Traversal, plain and percent-encoded, is refused and never reaches the file.
    let secret_name = secret.0.file_name().unwrap().to_str().unwrap().to_owned();
    for target in [
        format!("/../{secret_name}/secret.txt"),
        format!("/%2e%2e/{secret_name}/secret.txt"),
        format!("/pkg/..%2F..%2F{secret_name}/secret.txt"),
    ] {
        let r = server.raw_get(&target);
        assert!(
            r.answer.status == 400 || r.answer.status == 404,
            "{target}: {}",
            r.answer.status
        );
        assert!(!String::from_utf8_lossy(&r.answer.body).contains("top secret"));
    }
}

#[test]
fn static_files_take_faults_but_not_long() {
    let www = TempDir::new("faults");
    std::fs::write(www.0.join("data.bin"), expected(10_000, 1)).unwrap();
    let server = Server::start(ServerConfig {
        mounts: vec![("/".into(), www.0.clone())],
        ..ServerConfig::default()
    })
    .unwrap();
    let r = server.raw_get("/data.bin?fault=drop:1234");
    r.answer.assert_headers(&[("content-length", "10000")]);
    assert_eq!(r.answer.body, expected(10_000, 1)[..1234]);
    server
        .get("/data.bin?fault=long:5", &[])
        .assert_error(400, "fault=long");
}

// ---------------------------------------------------------------- faults

#[test]
fn drop_closes_after_exactly_n_body_bytes() {
    let server = server();
    // Large enough that the cut falls in the middle of a later frame.
    let r = server.raw_get("/gen/500000/8?fault=drop:200001");
    assert_eq!(r.answer.status, 200);
    r.answer.assert_headers(&[("content-length", "500000")]);
    assert_eq!(r.answer.body.len(), 200_001);
    assert_eq!(r.answer.body, expected(500_000, 8)[..200_001]);
    let log = server.requests();
    assert_eq!(log[0].body_bytes_sent, 200_001);
    // A normal client sees an error.
    let mut response = agent()
        .get(&server.url("/gen/500000/8?fault=drop:1000"))
        .call()
        .unwrap();
    assert!(response.body_mut().read_to_vec().is_err());
}

#[test]
fn drop_delivers_every_byte_before_the_cut_to_a_slow_reader() {
    let server = server();
    let mut tcp = send(
        server.addr(),
        &get_request("/gen/8000000/4?fault=drop:3000001", ""),
    );
    // Let the socket buffers fill up so the server holds unsent data when it reaches the cut.
    std::thread::sleep(Duration::from_millis(300));
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tcp.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                bytes.extend_from_slice(&buf[..n]);
                if bytes.len() < 200_000 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            Err(e) => panic!("read failed after {} bytes: {e}", bytes.len()),
        }
    }
    assert_eq!(bytes.len() - body_start(&bytes), 3_000_001);
    let mut tail = vec![0u8; 1000];
    generated_bytes(8_000_000, 4, 3_000_001 - 1000, &mut tail);
    assert_eq!(bytes[bytes.len() - 1000..], tail[..]);
}

#[test]
fn drop_applies_to_ranged_responses_too() {
    let server = server();
    let r = raw(
        server.addr(),
        &get_request("/gen/1000/8?fault=drop:10", "Range: bytes=100-\r\n"),
    );
    assert_eq!(r.answer.status, 206);
    r.answer.assert_headers(&[("content-length", "900")]);
    assert_eq!(r.answer.body, expected(1000, 8)[100..110]);
    // drop:0 sends the head only.
    let r = server.raw_get("/gen/1000/8?fault=drop:0");
    r.answer.assert_headers(&[("content-length", "1000")]);
    assert!(r.answer.body.is_empty());
}

#[test]
fn no_range_answers_200_with_the_whole_body() {
    server()
        .get("/gen/1000/1?fault=no-range", &[("Range", "bytes=500-")])
        .assert_whole(1000, 1);
}

#[test]
fn etag_change_bumps_the_version_each_request_and_breaks_if_range() {
    let server = server();
    let path = "/gen/1000/1?fault=etag-change";
    let first = server.get(path, &[]);
    assert_eq!(first.etag(), "\"g-1000-1-v0\"");
    let second = server.get(
        path,
        &[("Range", "bytes=500-"), ("If-Range", "\"g-1000-1-v0\"")],
    );
    assert_eq!(
        second.status, 200,
        "If-Range with the old ETag no longer matches"
    );
    assert_eq!(second.etag(), "\"g-1000-1-v1\"");
    assert_eq!(second.body, first.body, "bytes unchanged");
    assert_eq!(server.get(path, &[]).etag(), "\"g-1000-1-v2\"");
    // Another URL has its own counter.
    let other = server.get(&format!("{path}&x=1"), &[]);
    assert_eq!(other.etag(), "\"g-1000-1-v0\"");
}

#[test]
fn bad_content_range_shifts_the_advertised_start() {
    let a = server().get(
        "/gen/100000/1?fault=bad-content-range",
        &[("Range", "bytes=100-199")],
    );
    assert_eq!(a.status, 206);
    a.assert_headers(&[("content-range", "bytes 65636-65735/100000")]);
    assert_eq!(
        a.body,
        expected(100_000, 1)[100..200],
        "bytes of the real range"
    );
}

#[test]
fn short_ends_the_body_early_under_the_full_length() {
    let r = server().raw_get("/gen/100000/2?fault=short:777");
    assert_eq!(r.answer.status, 200);
    r.answer.assert_headers(&[("content-length", "100000")]);
    assert_eq!(r.answer.body, expected(100_000, 2)[..100_000 - 777]);
}

#[test]
fn long_serves_extra_bytes_with_a_matching_length() {
    let server = server();
    let a = server.get("/gen/1000/2?fault=long:24", &[]);
    assert_eq!(a.status, 200);
    a.assert_headers(&[("content-length", "1024"), ("etag", "\"g-1000-2-v0\"")]);
    assert_eq!(a.body, expected(1024, 2));
    assert_eq!(a.body[..1000], expected(1000, 2)[..]);
    let tail = server.get("/gen/1000/2?fault=long:24", &[("Range", "bytes=990-")]);
    tail.assert_headers(&[("content-range", "bytes 990-1023/1024")]);
}

#[test]
fn long_and_no_validator_stop_after_times() {
    let server = server();
    let path = "/gen/1000/3?fault=long:24,no-validator&times=1";
    let first = server.get(path, &[]);
    first.assert_headers(&[("content-length", "1024")]);
    assert_eq!(
        (first.header("etag"), first.header("last-modified")),
        (None, None)
    );
    let second = server.get(path, &[("Range", "bytes=1010-")]);
    assert_eq!(second.status, 416, "the real file is 1000 bytes");
    second.assert_headers(&[
        ("content-range", "bytes */1000"),
        ("etag", "\"g-1000-3-v0\""),
    ]);
}

#[test]
fn status_503_with_retry_after() {
    let a = server().get("/gen/1000/1?fault=status:503&retry-after=7", &[]);
    a.assert_error(503, "503");
    a.assert_headers(&[("retry-after", "7")]);
}

#[test]
fn auth_answers_401_with_a_challenge_until_the_bearer_token_is_sent() {
    let server = server();
    let path = "/gen/1000/4?auth=t0k&fault=drop:10&times=1";
    let none = server.get(path, &[]);
    assert_eq!(none.status, 401);
    none.assert_headers(&[("www-authenticate", "Bearer realm=\"cdn\"")]);
    assert_cors(&none);
    let wrong = server.get(path, &[("Authorization", "Bearer nope")]);
    assert_eq!(wrong.status, 401);
    // Past times=1: no drop, the range is honoured.
    server
        .get(
            path,
            &[("Authorization", "Bearer t0k"), ("Range", "bytes=990-")],
        )
        .assert_part(&expected(1000, 4), 990, 999);
    assert_eq!(server.get("/gen/1000/4?auth=", &[]).status, 400);
}

#[test]
fn status_404_410_and_401() {
    let server = server();
    for code in [404u16, 410, 401] {
        let a = server.get(&format!("/gen/1000/1?fault=status:{code}"), &[]);
        assert_eq!(a.status, code);
        assert_eq!(a.header("retry-after"), None);
        assert_cors(&a);
    }
}

#[test]
fn stall_sends_n_bytes_then_nothing_then_closes() {
    let server = server();
    let mut tcp = send(
        server.addr(),
        &get_request("/gen/100000/3?fault=stall:3000&stall-ms=1500", ""),
    );
    let started = Instant::now();
    tcp.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut bytes = Vec::new();
    let mut buf = [0u8; 8192];
    // Everything before the stall arrives, then the socket goes quiet.
    let quiet = loop {
        match tcp.read(&mut buf) {
            Ok(0) => panic!("closed before the stall ended"),
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                break started.elapsed()
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert!(
        quiet < Duration::from_millis(1300),
        "went quiet at {quiet:?}"
    );
    let head_end = body_start(&bytes);
    assert_eq!(bytes.len() - head_end, 3000);
    assert_eq!(bytes[head_end..], expected(100_000, 3)[..3000]);
    // Then the connection is closed, with nothing more sent.
    tcp.set_read_timeout(Some(TIMEOUT)).unwrap();
    let n = tcp.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "no byte after the stall");
    let closed = started.elapsed();
    assert!(
        closed >= Duration::from_millis(1450) && closed < Duration::from_secs(6),
        "closed after {closed:?}"
    );
}

#[test]
fn throttle_is_slower_than_unthrottled() {
    let server = server();
    let fast = server.raw_get("/gen/20000/1");
    let slow = server.raw_get("/gen/20000/1?throttle=40000");
    assert_eq!(slow.answer.body, expected(20_000, 1));
    assert_eq!(fast.answer.body, slow.answer.body);
    // 20000 bytes at 40000 B/s is 0.5 s.
    assert!(
        slow.elapsed >= Duration::from_millis(400) && slow.elapsed < Duration::from_secs(5),
        "throttled took {:?}",
        slow.elapsed
    );
    assert!(
        fast.elapsed * 2 < slow.elapsed,
        "fast {:?} vs slow {:?}",
        fast.elapsed,
        slow.elapsed
    );
}

/// GET `url` following redirects, expecting `status` and returning the body.
fn follow(url: &str, status: u16) -> Vec<u8> {
    let mut followed = following_agent().get(url).call().unwrap();
    assert_eq!(followed.status(), status);
    followed.body_mut().read_to_vec().unwrap()
}

#[test]
fn redirect_same_origin() {
    let server = server();
    let a = server.get("/gen/10/1?fault=redirect:/gen/20/2", &[]);
    assert_eq!(a.status, 302);
    a.assert_headers(&[("location", &server.url("/gen/20/2"))]);
    assert_cors(&a);
    let followed = follow(
        &server.url("/gen/10/1?fault=redirect:/gen/20/2%3Ffault%3Dno-range"),
        200,
    );
    assert_eq!(followed, expected(20, 2));
    let paths: Vec<String> = server
        .requests()
        .into_iter()
        .map(|r| r.path_and_query)
        .collect();
    assert_eq!(paths.last().unwrap(), "/gen/20/2?fault=no-range");
}

#[test]
fn redirect_to_another_origin() {
    let server = server();
    let other = self::server();
    let target = other.url("/gen/30/3");
    let path = format!("/gen/10/1?fault=redirect-origin:{target}");
    let a = server.get(&path, &[]);
    assert_eq!(a.status, 302);
    a.assert_headers(&[("location", &target)]);
    assert_eq!(follow(&server.url(&path), 200), expected(30, 3));
    assert_eq!(other.requests().len(), 1);
}

/// Sends a GET for `target` and reads everything until the server closes the connection.
fn raw_bytes(addr: SocketAddr, target: &str) -> Vec<u8> {
    read_to_close(&mut send(addr, &get_request(target, "")))
}

#[test]
fn outage_cuts_then_answers_nothing_for_the_window_then_serves_again() {
    let server = server();
    let target = "/gen/300000/4?fault=outage:100000&outage-ms=600&times=1";
    let first = server.raw_get(target);
    assert_eq!(first.answer.status, 200);
    assert_eq!(first.answer.body, expected(300_000, 4)[..100_000]);
    // Inside the window: the connection closes and not one byte comes back.
    let started = Instant::now();
    assert!(raw_bytes(server.addr(), target).is_empty());
    let ranged = get_request(target, "Range: bytes=100000-\r\n");
    let mut nothing = Vec::new();
    let _ = send(server.addr(), &ranged).read_to_end(&mut nothing);
    assert!(
        nothing.is_empty(),
        "a range inside the window is refused too"
    );
    assert!(
        started.elapsed() < Duration::from_millis(600),
        "test too slow to be inside the window"
    );
    // Another URL is not affected.
    assert_eq!(server.raw_get("/gen/1000/4").answer.status, 200);
    // After the window: served again, the resume as a 206 with the rest.
    std::thread::sleep(Duration::from_millis(700));
    let rest = raw(server.addr(), &ranged);
    assert_eq!(rest.answer.status, 206);
    assert_eq!(rest.answer.body, expected(300_000, 4)[100_000..]);
    let (statuses, sent): (Vec<u16>, Vec<u64>) = server
        .requests()
        .iter()
        .filter(|r| r.path_and_query == target)
        .map(|r| (r.status, r.body_bytes_sent))
        .unzip();
    assert_eq!(
        statuses,
        [200, 0, 0, 206],
        "refused requests are logged with status 0"
    );
    assert_eq!(sent, [100_000, 0, 0, 200_000]);
}

#[test]
fn outage_window_starts_at_the_cut_not_at_the_request() {
    let server = server();
    // 40 KB at 100 KB/s: the cut comes ~0.4 s after the request; the window lasts 500 ms
    // from the cut, so a request 700 ms after the first one is still refused.
    let target = "/gen/100000/6?fault=outage:40000&outage-ms=500&times=1&throttle=100000";
    let started = Instant::now();
    let first = server.raw_get(target);
    assert_eq!(first.answer.body.len(), 40_000);
    assert!(
        first.elapsed >= Duration::from_millis(300),
        "{:?}",
        first.elapsed
    );
    std::thread::sleep(Duration::from_millis(700).saturating_sub(started.elapsed()));
    assert!(raw_bytes(server.addr(), target).is_empty());
}

#[test]
fn times_limits_the_fault_and_reset_restores_it() {
    let server = server();
    let target = "/gen/1000/5?fault=drop:10&times=2";
    for _ in 0..2 {
        assert_eq!(server.raw_get(target).answer.body.len(), 10);
    }
    assert_eq!(
        server.raw_get(target).answer.body,
        expected(1000, 5),
        "third request is served normally"
    );
    // The counter is per exact URL.
    let other = server.raw_get("/gen/1000/5?fault=drop:10&times=2&x");
    assert_eq!(other.answer.body.len(), 10);
    // POST /_control/reset clears counters (and the log).
    let reset = agent()
        .post(&server.url("/_control/reset"))
        .send_empty()
        .unwrap();
    assert_eq!(reset.status(), 204);
    assert!(server.requests().is_empty());
    assert_eq!(server.raw_get(target).answer.body.len(), 10);
}

#[test]
fn times_with_status_then_success() {
    let server = server();
    let path = "/gen/100/5?fault=status:503&retry-after=1&times=1";
    assert_eq!(server.get(path, &[]).status, 503);
    server.get(path, &[]).assert_whole(100, 5);
}

// ---------------------------------------------------------------- request log and control

#[test]
fn request_log_records_what_the_server_saw() {
    let server = server();
    server.get("/gen/1000/1", &[]);
    server.get(
        "/gen/1000/1",
        &[("Range", "bytes=10-"), ("If-Range", "\"g-1000-1-v0\"")],
    );
    let log = server.requests();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].method, "GET");
    assert_eq!(log[0].path_and_query, "/gen/1000/1");
    assert_eq!(log[0].range, None);
    assert_eq!(log[0].status, 200);
    assert_eq!(log[0].body_bytes_sent, 1000);
    assert_eq!(log[1].range.as_deref(), Some("bytes=10-"));
    assert_eq!(log[1].if_range.as_deref(), Some("\"g-1000-1-v0\""));
    assert_eq!(log[1].status, 206);
    assert_eq!(log[1].body_bytes_sent, 990);

    let json = server.get("/_control/log", &[]);
    json.assert_headers(&[("content-type", "application/json")]);
    assert_cors(&json);
    let value: serde_json::Value = serde_json::from_slice(&json.body).unwrap();
    assert_eq!(
        value.as_array().unwrap().len(),
        2,
        "control requests are not logged"
    );
    assert_eq!(value[1]["range"], "bytes=10-");
    assert_eq!(value[1]["status"], 206);
    assert_eq!(value[0]["body_bytes_sent"], 1000);
    assert_eq!(value[0]["if_range"], serde_json::Value::Null);

    server.clear_requests();
    assert!(server.requests().is_empty());
}

#[test]
fn stopping_the_server_frees_the_port() {
    let server = server();
    let addr = server.addr();
    assert_eq!(server.origin(), format!("http://127.0.0.1:{}", addr.port()));
    drop(server);
    let again = Server::start(ServerConfig {
        port: addr.port(),
        ..ServerConfig::default()
    })
    .expect("the port is free again");
    assert_eq!(again.addr(), addr);
    assert_eq!(again.get("/gen/5/5", &[]).body, expected(5, 5));
}

#[test]
fn starts_from_inside_an_async_runtime() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let origin = runtime.block_on(async {
        let server = Server::start(ServerConfig::default()).unwrap();
        let origin = server.origin();
        drop(server);
        origin
    });
    assert!(origin.starts_with("http://127.0.0.1:"));
}

/// The message of the error `Server::start` gives for `config`.
fn start_error(config: ServerConfig) -> String {
    Server::start(config).err().expect("refused").to_string()
}

#[test]
fn bad_config_is_refused() {
    let err = start_error(ServerConfig {
        mounts: vec![("pkg/".into(), std::env::temp_dir())],
        ..ServerConfig::default()
    });
    assert!(err.contains("pkg/"), "{err}");
    let err = start_error(ServerConfig {
        extra_headers: vec![("bad header".into(), "x".into())],
        ..ServerConfig::default()
    });
    assert!(err.contains("bad header"), "{err}");
}

#[test]
fn echo_answers_the_decoded_body_as_json_and_refuses_a_missing_one() {
    let server = server();
    let answer = server.get("/echo?probe=1&body=%7B%22assetPacks%22%3A%5B%5D%7D", &[]);
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, br#"{"assetPacks":[]}"#);
    answer.assert_headers(&[
        ("content-type", "application/json"),
        ("cache-control", "no-store"),
    ]);
    assert_cors(&answer);
    for bad in ["/echo", "/echo?body=%zz", "/echo?other=1"] {
        let answer = server.get(bad, &[]);
        assert_eq!(answer.status, 400, "{bad}");
        assert!(answer.text().contains("body="), "{bad}");
    }
}
