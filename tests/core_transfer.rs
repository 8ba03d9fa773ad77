#![cfg(not(target_arch = "wasm32"))]
//! The transfer state machine driven through every fault the local CDN can inject, on simulated
//! time, against an in-memory server (deterministic body + fault script) and an in-memory store
//! (chunks + checkpoint, honouring `Discard`), plus property tests over random fault sequences,
//! pauses and kills.

use std::collections::{BTreeMap, VecDeque};

use background_assets::core::error::{hex, Error};
use background_assets::core::integrity::{ChunkDigests, Sha256Stream};
use background_assets::core::transfer::{
    Action, Checkpoint, Event, ResponseHeaders, Transfer, TransferConfig, TransferSpec,
    TransferState, Validator,
};
use background_assets::core::Millis;
use proptest::prelude::*;
use sha2::{Digest, Sha256};

// --- the fake server --------------------------------------------------------------------------

/// A deterministic body, like the CDN's `/gen/<len>/<seed>`.
fn source(len: usize, seed: u64) -> Vec<u8> {
    (0..len as u64)
        .map(|i| ((i.wrapping_mul(2_654_435_761) >> 7) ^ seed) as u8)
        .collect()
}

fn sha(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// One request's fault, named after the CDN's `fault=` values.
#[derive(Clone, Debug, PartialEq)]
enum Fault {
    /// `drop:N`: close the connection after N body bytes.
    Drop(u64),
    /// `no-range`: 200 with the whole body even for a range.
    NoRange,
    /// `etag-change`: a new ETag from this request on (same bytes); If-Range no longer matches.
    EtagChange,
    /// A new ETag, but the server ignores If-Range and still answers 206.
    EtagChangeIgnoringIfRange,
    /// `bad-content-range`: a 206 whose Content-Range is shifted by 65536.
    BadContentRange,
    /// `short:N`: full Content-Length, body ends N bytes early (clean end).
    Short(u64),
    /// `long:N`: N more bytes, announced in Content-Length / Content-Range.
    Long(u64),
    /// N more bytes, no Content-Length (a chunked response).
    LongUnannounced(u64),
    /// `status:CODE` with an optional `Retry-After`.
    Status(u16, Option<&'static str>),
    /// `stall:N`: N body bytes, then silence.
    Stall(u64),
    /// `redirect:`: the response comes from another URL.
    Redirect(&'static str),
    /// 416 `bytes */len` for any range request.
    Unsatisfiable,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Tag {
    Strong,
    Weak,
    Missing,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Ending {
    End,
    Drop,
    Stall,
}

struct Reply {
    head: Option<(u16, ResponseHeaders)>,
    body: Vec<u8>,
    pos: usize,
    ending: Ending,
}

impl Reply {
    fn empty(status: u16, headers: ResponseHeaders) -> Reply {
        Reply {
            head: Some((status, headers)),
            body: Vec::new(),
            pos: 0,
            ending: Ending::End,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
struct Request {
    range_start: Option<u64>,
    if_range: Option<String>,
}

struct Server {
    body: Vec<u8>,
    version: u32,
    tag: Tag,
    last_modified: Option<String>,
    faults: VecDeque<Option<Fault>>,
    requests: Vec<Request>,
}

impl Server {
    fn new(body: Vec<u8>) -> Server {
        Server {
            body,
            version: 0,
            tag: Tag::Strong,
            last_modified: Some("Wed, 01 Jan 2025 00:00:00 GMT".into()),
            faults: VecDeque::new(),
            requests: Vec::new(),
        }
    }

    fn etag(&self) -> Option<String> {
        match self.tag {
            Tag::Strong => Some(format!("\"v{}\"", self.version)),
            Tag::Weak => Some(format!("W/\"v{}\"", self.version)),
            Tag::Missing => None,
        }
    }

    fn respond(&mut self, range_start: Option<u64>, if_range: Option<String>) -> Reply {
        self.requests.push(Request {
            range_start,
            if_range: if_range.clone(),
        });
        let fault = self.faults.pop_front().flatten();
        if matches!(
            fault,
            Some(Fault::EtagChange | Fault::EtagChangeIgnoringIfRange)
        ) {
            self.version += 1;
        }
        let len = self.body.len() as u64;
        let mut headers = ResponseHeaders {
            etag: self.etag(),
            last_modified: self.last_modified.clone(),
            ..Default::default()
        };
        match fault {
            Some(Fault::Status(code, retry_after)) => {
                headers.retry_after = retry_after.map(str::to_string);
                headers.date = Some("Wed, 01 Jan 2025 00:00:00 GMT".into());
                return Reply::empty(code, headers);
            }
            Some(Fault::Unsatisfiable) if range_start.is_some() => {
                headers.content_range = Some(format!("bytes */{len}"));
                return Reply::empty(416, headers);
            }
            Some(Fault::Redirect(url)) => headers.final_url = Some(url.to_string()),
            _ => {}
        }
        let validator_matches = match &if_range {
            None => true,
            Some(v) => {
                (self.tag == Tag::Strong && Some(v) == self.etag().as_ref())
                    || Some(v) == self.last_modified.as_ref()
            }
        };
        let honour = range_start.is_some()
            && fault != Some(Fault::NoRange)
            && (validator_matches || fault == Some(Fault::EtagChangeIgnoringIfRange));
        let start = if honour { range_start.unwrap() } else { 0 };
        if honour && start >= len {
            headers.content_range = Some(format!("bytes */{len}"));
            return Reply::empty(416, headers);
        }
        let mut body = self.body[start as usize..].to_vec();
        let mut total = len;
        match fault {
            Some(Fault::Long(n)) => {
                body.extend((0..n).map(|i| i as u8));
                total += n;
            }
            Some(Fault::LongUnannounced(n)) => body.extend((0..n).map(|i| i as u8)),
            _ => {}
        }
        headers.content_length = match fault {
            Some(Fault::LongUnannounced(_)) => None,
            _ => Some(body.len().to_string()),
        };
        let status = if honour {
            let shift = if fault == Some(Fault::BadContentRange) {
                65_536
            } else {
                0
            };
            headers.content_range = Some(format!(
                "bytes {}-{}/{total}",
                start + shift,
                total - 1 + shift
            ));
            206
        } else {
            200
        };
        let mut ending = Ending::End;
        match fault {
            Some(Fault::Drop(n)) if (n as usize) < body.len() => {
                body.truncate(n as usize);
                ending = Ending::Drop;
            }
            Some(Fault::Short(n)) => body.truncate(body.len().saturating_sub(n as usize)),
            Some(Fault::Stall(n)) => {
                body.truncate(n as usize);
                ending = Ending::Stall;
            }
            _ => {}
        }
        Reply {
            head: Some((status, headers)),
            body,
            pos: 0,
            ending,
        }
    }
}

// --- the fake store ---------------------------------------------------------------------------

enum StoreOp {
    Write {
        offset: u64,
        data: Vec<u8>,
        checkpoint: Checkpoint,
    },
    Discard(Checkpoint),
    Save(Checkpoint),
}

#[derive(Default)]
struct Store {
    chunks: BTreeMap<u64, Vec<u8>>,
    checkpoint: Checkpoint,
    /// Refuse writes that would store more than this many bytes.
    quota: Option<u64>,
    /// Refuse every write with this error (e.g. a stale epoch).
    refuse: Option<Error>,
}

impl Store {
    fn stored(&self) -> u64 {
        self.chunks.values().map(|c| c.len() as u64).sum()
    }

    /// Applies one operation atomically; `Some((offset, len))` for a committed write.
    fn apply(&mut self, op: StoreOp) -> Result<Option<(u64, u64)>, Error> {
        match op {
            StoreOp::Write {
                offset,
                data,
                checkpoint,
            } => {
                if let Some(e) = self.refuse.clone() {
                    return Err(e);
                }
                if self
                    .quota
                    .is_some_and(|q| self.stored() + data.len() as u64 > q)
                {
                    return Err(Error::QuotaExceeded {
                        identifier: "asset".into(),
                    });
                }
                // The contract: writes are contiguous and carry the checkpoint that is true after them.
                assert_eq!(offset, self.checkpoint.bytes, "write not contiguous");
                assert_eq!(checkpoint.bytes, offset + data.len() as u64);
                if checkpoint.chunks_verified {
                    // Verified chunk by chunk: no whole-file hash state is kept.
                    assert_eq!(checkpoint.hash.length(), 0);
                } else {
                    assert_eq!(checkpoint.hash.length(), checkpoint.bytes);
                }
                let len = data.len() as u64;
                self.chunks.insert(offset, data);
                self.checkpoint = checkpoint;
                Ok(Some((offset, len)))
            }
            StoreOp::Discard(checkpoint) => {
                assert_eq!(checkpoint.bytes, 0);
                self.chunks.clear();
                self.checkpoint = checkpoint;
                Ok(None)
            }
            StoreOp::Save(checkpoint) => {
                assert_eq!(checkpoint.bytes, self.checkpoint.bytes, "save moved bytes");
                self.checkpoint = checkpoint;
                Ok(None)
            }
        }
    }

    /// The stored file, checking the chunks are contiguous and agree with the checkpoint.
    fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (offset, chunk) in &self.chunks {
            assert_eq!(*offset, out.len() as u64, "hole in the stored chunks");
            out.extend_from_slice(chunk);
        }
        assert_eq!(out.len() as u64, self.checkpoint.bytes);
        out
    }
}

// --- the simulated driver ---------------------------------------------------------------------

/// What the transfer asked for, without the chunk bytes.
#[derive(Clone, Debug, PartialEq)]
enum Logged {
    Fetch(Request),
    Abort,
    Write {
        offset: u64,
        len: u64,
    },
    Discard {
        wasted: u64,
    },
    Save,
    RetryAt(Millis),
    Finish {
        size: u64,
    },
    Fail(Error),
    /// A chunk write refused by its declared digest (not stored).
    Mismatch {
        offset: u64,
    },
}

struct Sim {
    spec: TransferSpec,
    t: Transfer,
    server: Server,
    store: Store,
    now: Millis,
    piece: usize,
    piece_ms: u64,
    reply: Option<Reply>,
    inflight: VecDeque<StoreOp>,
    /// Commit storage operations one step later instead of at once (so a kill can catch them).
    defer_commits: bool,
    outcome: Option<Result<(u64, [u8; 32]), Error>>,
    log: Vec<Logged>,
    /// Body bytes handed to the transfer.
    delivered: u64,
    steps: u32,
    /// A chunk failed its digest: no later write of this context is stored (as the web driver).
    refused_chunk: bool,
}

const STALL_CLOSE_MS: Millis = 600_000;

impl Sim {
    fn new(len: usize, configure: impl FnOnce(&mut TransferSpec)) -> Sim {
        let body = source(len, 7);
        let mut spec = TransferSpec::new("asset", "https://cdn.example/asset.bin");
        spec.expected_size = Some(len as u64);
        spec.sha256 = Some(sha(&body));
        spec.config = TransferConfig {
            chunk_size: 1000,
            max_attempts: 4,
            backoff_base_ms: 1_000,
            backoff_max_ms: 8_000,
            retry_after_max_ms: 60_000,
            stall_min_bytes_per_sec: 100,
            stall_window_ms: 10_000,
            // Pauses abort at once here: these cases test the `Range` resume after a pause
            // (the held response is tested in src/core/transfer).
            pause_hold_ms: 0,
            range_window_chunks: 0,
        };
        configure(&mut spec);
        Sim {
            t: Transfer::new(spec.clone(), 0),
            spec,
            server: Server::new(body),
            store: Store::default(),
            now: 0,
            piece: 300,
            piece_ms: 10,
            reply: None,
            inflight: VecDeque::new(),
            defer_commits: false,
            outcome: None,
            log: Vec::new(),
            delivered: 0,
            steps: 0,
            refused_chunk: false,
        }
    }

    fn faults(mut self, faults: impl IntoIterator<Item = Option<Fault>>) -> Sim {
        self.server.faults = faults.into_iter().collect();
        self
    }

    fn handle(&mut self, event: Event<'_>) {
        self.t.handle(event, self.now);
        self.drain();
    }

    fn drain(&mut self) {
        while let Some(action) = self.t.poll_action() {
            match action {
                Action::Fetch {
                    range_start,
                    if_range,
                    url,
                    ..
                } => {
                    assert_eq!(url, self.spec.url);
                    let request = Request {
                        range_start,
                        if_range,
                    };
                    self.log.push(Logged::Fetch(request.clone()));
                    assert!(self.reply.is_none(), "two fetches open");
                    self.reply = Some(self.server.respond(request.range_start, request.if_range));
                }
                Action::Abort => {
                    self.log.push(Logged::Abort);
                    self.reply = None;
                }
                Action::Write {
                    offset,
                    data,
                    checkpoint,
                } => {
                    if self.refused_chunk {
                        continue;
                    }
                    // The transfer's own list: a one-chunk file's declared digest counts too.
                    if let Some(digests) = self.t.spec().chunk_digests.clone() {
                        // The driver's side of the contract: every write is a whole chunk (or
                        // the file's last) with a declared digest, checked before it is stored.
                        let expected = self
                            .t
                            .expected_chunk_digest(offset)
                            .expect("a write with chunk digests starts a chunk");
                        let whole = data.len() == digests.chunk_size as usize;
                        let last = Some(offset + data.len() as u64) == self.spec.expected_size;
                        assert!(whole || last, "a partial chunk was written at {offset}");
                        let actual = sha(&data);
                        if actual != expected {
                            self.log.push(Logged::Mismatch { offset });
                            self.refused_chunk = true;
                            self.t
                                .handle(Event::ChunkMismatch { offset, actual }, self.now);
                            continue;
                        }
                    }
                    self.log.push(Logged::Write {
                        offset,
                        len: data.len() as u64,
                    });
                    self.inflight.push_back(StoreOp::Write {
                        offset,
                        data,
                        checkpoint,
                    });
                }
                Action::Discard { checkpoint } => {
                    self.log.push(Logged::Discard {
                        wasted: checkpoint.wasted_bytes,
                    });
                    self.inflight.push_back(StoreOp::Discard(checkpoint));
                }
                Action::SaveCheckpoint(checkpoint) => {
                    self.log.push(Logged::Save);
                    self.inflight.push_back(StoreOp::Save(checkpoint));
                }
                Action::RetryAt(at) => {
                    assert_eq!(self.t.poll_timeout(), Some(at));
                    self.log.push(Logged::RetryAt(at));
                }
                Action::Finish { size, sha256 } => {
                    assert!(self.outcome.is_none());
                    assert!(
                        self.inflight.is_empty(),
                        "finished before every write was stored"
                    );
                    self.log.push(Logged::Finish { size });
                    self.outcome = Some(Ok((size, sha256)));
                }
                Action::Fail(e) => {
                    assert!(self.outcome.is_none());
                    self.log.push(Logged::Fail(e.clone()));
                    self.outcome = Some(Err(e));
                }
            }
            if !self.defer_commits {
                self.commit();
            }
        }
    }

    fn commit(&mut self) {
        while let Some(op) = self.inflight.pop_front() {
            match self.store.apply(op) {
                Ok(Some((offset, len))) => self.t.handle(Event::Written { offset, len }, self.now),
                Ok(None) => {}
                Err(e) => {
                    self.inflight.clear();
                    self.t.handle(Event::WriteFailed(e), self.now);
                }
            }
        }
    }

    /// One driver step; `false` when finished, failed, or idle (paused).
    fn step(&mut self) -> bool {
        self.drain();
        if self.defer_commits {
            self.commit();
            self.drain();
        }
        if self.outcome.is_some() {
            return false;
        }
        self.steps += 1;
        assert!(self.steps < 200_000, "the transfer does not end");
        let Some(reply) = self.reply.as_mut() else {
            return match self.t.poll_timeout() {
                Some(at) => {
                    self.now = self.now.max(at);
                    self.handle(Event::Timeout);
                    true
                }
                None => false,
            };
        };
        if let Some((status, headers)) = reply.head.take() {
            self.now += 5;
            self.handle(Event::ResponseHead { status, headers });
        } else if reply.pos < reply.body.len() {
            let end = (reply.pos + self.piece).min(reply.body.len());
            let piece = reply.body[reply.pos..end].to_vec();
            reply.pos = end;
            self.now += self.piece_ms;
            self.delivered += piece.len() as u64;
            self.handle(Event::Body(&piece));
        } else {
            match reply.ending {
                Ending::End => {
                    self.reply = None;
                    self.handle(Event::End);
                }
                Ending::Drop => {
                    self.reply = None;
                    self.handle(Event::NetworkError("connection reset".into()));
                }
                Ending::Stall => match self.t.poll_timeout() {
                    Some(at) if at < self.now + STALL_CLOSE_MS => {
                        self.now = self.now.max(at);
                        self.handle(Event::Timeout);
                    }
                    _ => {
                        self.reply = None;
                        self.now += STALL_CLOSE_MS;
                        self.handle(Event::NetworkError("closed after stall".into()));
                    }
                },
            }
        }
        true
    }

    fn run(&mut self) -> &Option<Result<(u64, [u8; 32]), Error>> {
        while self.step() {}
        &self.outcome
    }

    fn run_until(&mut self, mut stop: impl FnMut(&Sim) -> bool) {
        while !stop(self) && self.step() {}
    }

    /// The context dies: open fetch and uncommitted state are gone; storage operations in flight
    /// either committed (`commit_inflight`) or not. A new context resumes from the stored
    /// checkpoint. Returns how many received bytes the new context must fetch again.
    fn kill_and_resume(&mut self, commit_inflight: bool) -> u64 {
        let before = self.t.progress();
        if commit_inflight {
            while let Some(op) = self.inflight.pop_front() {
                let _ = self.store.apply(op);
            }
        } else {
            self.inflight.clear();
        }
        self.reply = None;
        self.now += 1_000;
        self.outcome = None;
        self.refused_chunk = false;
        let checkpoint = self.store.checkpoint.clone();
        let refetch = if checkpoint.restarts == before.restarts {
            before.bytes_received - checkpoint.bytes
        } else {
            0
        };
        self.t = Transfer::resume(self.spec.clone(), checkpoint, self.now);
        self.drain();
        refetch
    }

    fn fetches(&self) -> Vec<Request> {
        self.log
            .iter()
            .filter_map(|l| match l {
                Logged::Fetch(r) => Some(r.clone()),
                _ => None,
            })
            .collect()
    }

    /// The `(offset, len)` of every write the transfer asked for, in order.
    fn writes(&self) -> Vec<(u64, u64)> {
        self.log
            .iter()
            .filter_map(|l| match l {
                Logged::Write { offset, len } => Some((*offset, *len)),
                _ => None,
            })
            .collect()
    }

    fn retry_delays(&self) -> Vec<Millis> {
        // Delay = RetryAt minus the time it was scheduled; recomputed from the log's order.
        self.log
            .iter()
            .filter_map(|l| match l {
                Logged::RetryAt(at) => Some(*at),
                _ => None,
            })
            .collect()
    }

    fn assert_finished_exact(&mut self) {
        let outcome = self.run().clone();
        let body = self.server.body.clone();
        assert_eq!(
            outcome,
            Some(Ok((body.len() as u64, sha(&body)))),
            "{:#?}",
            self.log
        );
        assert_eq!(self.store.bytes(), body);
        assert_eq!(self.t.state(), TransferState::Finished);
        assert_eq!(self.t.progress().bytes_written, body.len() as u64);
    }
}

fn strong(tag: &str) -> Option<String> {
    Some(format!("\"{tag}\""))
}

// --- scenarios --------------------------------------------------------------------------------

#[test]
fn clean_download_has_no_range_and_coalesces_pieces_into_chunks() {
    let mut sim = Sim::new(4_500, |_| {});
    sim.assert_finished_exact();
    assert_eq!(
        sim.fetches(),
        vec![Request {
            range_start: None,
            if_range: None
        }]
    );
    let writes = sim.writes();
    assert_eq!(
        writes,
        vec![
            (0, 1000),
            (1000, 1000),
            (2000, 1000),
            (3000, 1000),
            (4000, 500)
        ]
    );
    assert_eq!(sim.t.progress().wasted_bytes, 0);
    assert_eq!(sim.delivered, 4_500);
}

/// A file that fits in one chunk, with its size and SHA-256 declared, is verified as that one
/// chunk: the driver is asked to check the chunk's digest before storing it, nothing is hashed
/// in the transfer, and the finished file has the declared digest. A larger file, or one with no
/// declared digest or size, is hashed as it arrives.
#[test]
fn a_one_chunk_file_with_a_declared_digest_is_verified_as_its_one_chunk() {
    let body = source(900, 7);
    let mut sim = Sim::new(900, |s| s.config.chunk_size = 1_000);
    assert_eq!(
        sim.t.spec().chunk_digests,
        Some(ChunkDigests {
            chunk_size: 1_000,
            sha256: vec![sha(&body)]
        })
    );
    assert_eq!(sim.t.expected_chunk_digest(0), Some(sha(&body)));
    sim.assert_finished_exact();
    for (size, declared_sha) in [(1_001, true), (900, false)] {
        let mut spec = TransferSpec::new("f", "https://cdn.example/f");
        spec.config.chunk_size = 1_000;
        spec.expected_size = Some(size);
        spec.sha256 = declared_sha.then(|| sha(&body));
        let t = Transfer::new(spec, 0);
        assert_eq!(t.spec().chunk_digests, None, "{size} {declared_sha}");
        assert_eq!(t.expected_chunk_digest(0), None);
    }
}

/// A spec that may be requested before its stored state is read is one whose fresh run starts
/// with exactly that plain request (the driver hands the early response to this first `Fetch`);
/// a file larger than a chunk, one with an unknown size or with bounded windows may not be.
#[test]
fn only_a_one_chunk_file_may_be_requested_before_its_state_is_read() {
    let spec = |size: Option<u64>, chunk: u32, windows: u32, digests: Option<u32>| {
        let mut spec = TransferSpec::new("f", "https://cdn.example/f.bin");
        spec.expected_size = size;
        spec.config.chunk_size = chunk;
        spec.config.range_window_chunks = windows;
        if let (Some(size), Some(digest_chunk)) = (size, digests) {
            let body = source(size as usize, 3);
            spec.sha256 = Some(sha(&body));
            spec.chunk_digests = Some(ChunkDigests::of(&body, digest_chunk));
        }
        spec
    };
    let cases = [
        (spec(Some(1_000), 1_000, 0, None), true),
        (spec(Some(0), 1_000, 0, None), true),
        (spec(Some(1_001), 1_000, 0, None), false),
        (spec(None, 1_000, 0, None), false),
        (spec(Some(1_000), 1_000, 1, None), false),
        // Declared chunk digests: their chunk size is the one that counts.
        (spec(Some(1_000), 100_000, 0, Some(500)), false),
        (spec(Some(1_000), 10, 0, Some(1_000)), true),
    ];
    for (spec, expected) in cases {
        assert_eq!(spec.may_fetch_before_state(), expected, "{spec:?}");
        if expected {
            let mut t = Transfer::new(spec.clone(), 0);
            assert_eq!(
                t.poll_action(),
                Some(Action::Fetch {
                    url: spec.url.clone(),
                    range_start: None,
                    range_end: None,
                    if_range: None,
                }),
                "{spec:?}"
            );
        }
    }
}

#[test]
fn dropped_connection_resumes_with_range_and_strong_etag() {
    let mut sim = Sim::new(5_000, |_| {}).faults([Some(Fault::Drop(2_345))]);
    sim.assert_finished_exact();
    assert_eq!(
        sim.fetches(),
        vec![
            Request {
                range_start: None,
                if_range: None
            },
            Request {
                range_start: Some(2_345),
                if_range: strong("v0")
            },
        ]
    );
    // The partial chunk was stored when the connection dropped: nothing is fetched twice.
    assert!(sim.log.contains(&Logged::Write {
        offset: 2_000,
        len: 345
    }));
    assert_eq!(sim.delivered, 5_000);
    assert_eq!(sim.t.progress().wasted_bytes, 0);
    assert_eq!(sim.t.progress().attempts, 2);
    // First retry waits backoff_base_ms.
    assert!(sim.log.iter().any(|l| matches!(l, Logged::RetryAt(_))));
}

#[test]
fn ok_200_in_answer_to_a_range_restarts_from_zero_and_counts_waste() {
    let mut sim = Sim::new(5_000, |_| {}).faults([Some(Fault::Drop(2_500)), Some(Fault::NoRange)]);
    sim.assert_finished_exact();
    assert_eq!(
        sim.fetches().len(),
        2,
        "the 200 body is used, no third request"
    );
    assert!(sim.log.contains(&Logged::Discard { wasted: 2_500 }));
    assert_eq!(sim.t.progress().wasted_bytes, 2_500);
    assert_eq!(sim.t.progress().restarts, 1);
    assert_eq!(sim.delivered, 7_500);
}

#[test]
fn changed_etag_restarts_from_zero() {
    // The server honours If-Range: the old tag no longer matches, so it answers 200.
    let mut sim =
        Sim::new(5_000, |_| {}).faults([Some(Fault::Drop(3_100)), Some(Fault::EtagChange)]);
    sim.assert_finished_exact();
    assert_eq!(sim.fetches()[1].if_range, strong("v0"));
    assert_eq!(sim.t.progress().wasted_bytes, 3_100);
    assert_eq!(
        sim.t.checkpoint().validator,
        Some(Validator::ETag("\"v1\"".into()))
    );

    // A server that ignores If-Range answers 206 with the new tag: abort, discard, refetch.
    let mut sim = Sim::new(5_000, |_| {}).faults([
        Some(Fault::Drop(3_100)),
        Some(Fault::EtagChangeIgnoringIfRange),
    ]);
    sim.assert_finished_exact();
    let fetches = sim.fetches();
    assert_eq!(fetches.len(), 3);
    assert_eq!(fetches[2].range_start, None);
    assert!(sim.log.contains(&Logged::Abort));
    assert_eq!(sim.t.progress().wasted_bytes, 3_100);
    assert_eq!(sim.delivered, 3_100 + 5_000);
}

#[test]
fn weak_or_missing_validator_means_restart_from_zero() {
    for tag in [Tag::Weak, Tag::Missing] {
        let mut sim = Sim::new(3_000, |_| {}).faults([Some(Fault::Drop(1_500))]);
        sim.server.tag = tag;
        sim.server.last_modified = None;
        sim.assert_finished_exact();
        let fetches = sim.fetches();
        assert_eq!(fetches.len(), 2);
        assert_eq!(
            fetches[1].range_start, None,
            "{tag:?}: no Range without a validator"
        );
        assert_eq!(sim.t.progress().wasted_bytes, 1_500);
    }
}

#[test]
fn last_modified_serves_as_validator_when_there_is_no_strong_etag() {
    let mut sim = Sim::new(3_000, |_| {}).faults([Some(Fault::Drop(1_500))]);
    sim.server.tag = Tag::Weak;
    sim.assert_finished_exact();
    assert_eq!(
        sim.fetches()[1],
        Request {
            range_start: Some(1_500),
            if_range: Some("Wed, 01 Jan 2025 00:00:00 GMT".into())
        }
    );
    assert_eq!(sim.t.progress().wasted_bytes, 0);
}

#[test]
fn wrong_content_range_restarts_from_zero() {
    let mut sim =
        Sim::new(5_000, |_| {}).faults([Some(Fault::Drop(1_200)), Some(Fault::BadContentRange)]);
    sim.assert_finished_exact();
    let fetches = sim.fetches();
    assert_eq!(fetches.len(), 3);
    assert_eq!(fetches[1].range_start, Some(1_200));
    assert_eq!(fetches[2].range_start, None);
    assert!(sim.log.contains(&Logged::Discard { wasted: 1_200 }));
}

#[test]
fn body_shorter_than_content_length_is_resumed() {
    let mut sim = Sim::new(5_000, |_| {}).faults([Some(Fault::Short(700))]);
    sim.assert_finished_exact();
    assert_eq!(sim.fetches()[1].range_start, Some(4_300));
    assert_eq!(sim.t.progress().wasted_bytes, 0);
    assert_eq!(sim.delivered, 5_000);
}

#[test]
fn body_longer_than_declared_fails_with_size_mismatch_and_discards() {
    // Announced in Content-Length: refused at the head.
    let mut sim = Sim::new(5_000, |_| {}).faults([Some(Fault::Long(10))]);
    sim.run();
    assert!(matches!(
        sim.outcome,
        Some(Err(Error::SizeMismatch {
            expected: 5_000,
            actual: 5_010,
            ..
        }))
    ));
    assert_eq!(sim.delivered, 0);
    assert!(sim.store.chunks.is_empty());

    // Not announced: refused when the body passes the declared size; nothing kept.
    let mut sim = Sim::new(5_000, |_| {}).faults([Some(Fault::LongUnannounced(10))]);
    sim.run();
    assert!(
        matches!(&sim.outcome, Some(Err(Error::SizeMismatch { expected: 5_000, actual, .. })) if *actual > 5_000),
        "{:?}",
        sim.outcome
    );
    assert!(sim.store.chunks.is_empty());
    assert_eq!(sim.fetches().len(), 1, "no retry");

    // No declared size, no Content-Length: the declared digest still refuses the file.
    let mut sim =
        Sim::new(5_000, |s| s.expected_size = None).faults([Some(Fault::LongUnannounced(10))]);
    sim.run();
    assert!(matches!(
        sim.outcome,
        Some(Err(Error::IntegrityMismatch { .. }))
    ));
    assert!(sim.store.chunks.is_empty());
}

#[test]
fn retry_after_is_honoured_and_clamped() {
    let mut sim = Sim::new(2_000, |_| {}).faults([Some(Fault::Status(503, Some("7")))]);
    sim.assert_finished_exact();
    // The head came at t=5; Retry-After: 7 s.
    assert_eq!(sim.retry_delays(), vec![5 + 7_000]);

    let mut sim = Sim::new(2_000, |_| {}).faults([Some(Fault::Status(503, Some("3600")))]);
    sim.assert_finished_exact();
    assert_eq!(
        sim.retry_delays(),
        vec![5 + 60_000],
        "clamped to retry_after_max_ms"
    );

    // An HTTP-date, read against the response's Date header (00:00:00 -> 00:00:30).
    let mut sim = Sim::new(2_000, |_| {}).faults([Some(Fault::Status(
        429,
        Some("Wed, 01 Jan 2025 00:00:30 GMT"),
    ))]);
    sim.assert_finished_exact();
    assert_eq!(sim.retry_delays(), vec![5 + 30_000]);
}

#[test]
fn repeated_503_backs_off_exponentially_until_the_retry_cap() {
    let mut sim = Sim::new(2_000, |_| {}).faults(vec![Some(Fault::Status(503, None)); 10]);
    sim.run();
    match &sim.outcome {
        Some(Err(Error::RetriesExhausted { attempts, last, .. })) => {
            assert_eq!(*attempts, 4);
            assert_eq!(last, "HTTP 503");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(sim.fetches().len(), 4);
    // Delays 1 s, 2 s, 4 s, each scheduled 5 ms after the fetch (the head's arrival).
    let at = sim.retry_delays();
    assert_eq!(at.len(), 3);
    assert_eq!(at[0], 5 + 1_000);
    assert_eq!(at[1], at[0] + 5 + 2_000);
    assert_eq!(at[2], at[1] + 5 + 4_000);

    // A 503 that clears before the cap is survived.
    let mut sim = Sim::new(2_000, |_| {}).faults(vec![Some(Fault::Status(500, None)); 3]);
    sim.assert_finished_exact();
}

#[test]
fn failures_carry_over_a_kill_but_not_a_new_try_after_giving_up() {
    // Two 503s, a kill, then two more: the cap (4) still counts across the two contexts.
    let mut sim = Sim::new(2_000, |_| {}).faults(vec![Some(Fault::Status(503, None)); 10]);
    sim.run_until(|s| s.fetches().len() == 2 && s.t.state() == TransferState::RetryWait);
    assert_eq!(sim.store.checkpoint.failures, 2);
    sim.kill_and_resume(true);
    sim.run();
    assert!(matches!(
        sim.outcome,
        Some(Err(Error::RetriesExhausted { attempts: 4, .. }))
    ));
    assert_eq!(sim.fetches().len(), 4);
    assert_eq!(sim.store.checkpoint.failures, 4);

    // Scheduling it again later resumes from the stored checkpoint with fresh retries.
    sim.server.faults.clear();
    sim.kill_and_resume(true);
    sim.assert_finished_exact();
    assert_eq!(sim.fetches().len(), 5);
}

#[test]
fn not_found_and_gone_fail_at_once_without_retry() {
    for status in [404, 410, 400, 304] {
        let mut sim = Sim::new(2_000, |_| {}).faults([Some(Fault::Status(status, None))]);
        sim.run();
        assert!(
            matches!(&sim.outcome, Some(Err(Error::HttpStatus { status: s, identifier })) if *s == status && identifier == "asset"),
            "{status}: {:?}",
            sim.outcome
        );
        assert_eq!(sim.fetches().len(), 1);
        assert_eq!(sim.t.state(), TransferState::Failed);
    }
}

#[test]
fn authentication_statuses_fail_typed() {
    for status in [401, 403, 407] {
        let mut sim = Sim::new(2_000, |_| {}).faults([Some(Fault::Status(status, None))]);
        sim.run();
        assert!(
            matches!(&sim.outcome, Some(Err(Error::AuthenticationRequired { status: s, .. })) if *s == status),
            "{status}: {:?}",
            sim.outcome
        );
        assert_eq!(sim.fetches().len(), 1);
    }
}

#[test]
fn a_stall_aborts_and_resumes_and_a_persistent_stall_fails_as_stalled() {
    let mut sim = Sim::new(5_000, |_| {}).faults([Some(Fault::Stall(2_222))]);
    sim.assert_finished_exact();
    assert!(sim.log.contains(&Logged::Abort));
    assert_eq!(sim.fetches()[1].range_start, Some(2_222));
    assert_eq!(sim.delivered, 5_000);

    // Stalls at the same place, every time: no progress, so the cap ends it as a stall.
    let mut sim = Sim::new(5_000, |_| {}).faults([
        Some(Fault::Stall(2_000)),
        Some(Fault::Stall(0)),
        Some(Fault::Stall(0)),
        Some(Fault::Stall(0)),
    ]);
    sim.run();
    assert!(
        matches!(
            sim.outcome,
            Some(Err(Error::Stalled {
                min_bytes_per_sec: 100,
                window_ms: 10_000,
                ..
            }))
        ),
        "{:?}",
        sim.outcome
    );
    assert_eq!(sim.fetches().len(), 4);
    // The bytes before the stall are kept for a later attempt.
    assert_eq!(sim.store.checkpoint.bytes, 2_000);
}

#[test]
fn waiting_for_a_head_that_never_comes_is_a_stall() {
    let mut t = Transfer::new(TransferSpec::new("a", "https://cdn.example/a"), 0);
    while t.poll_action().is_some() {}
    let window = TransferConfig::default().stall_window_ms;
    assert_eq!(t.poll_timeout(), Some(window));
    t.handle(Event::Timeout, window - 1);
    assert_eq!(t.poll_action(), None, "not due yet");
    t.handle(Event::Timeout, window);
    assert_eq!(t.poll_action(), Some(Action::Abort));
    assert!(matches!(t.poll_action(), Some(Action::SaveCheckpoint(_))));
    assert!(matches!(t.poll_action(), Some(Action::RetryAt(_))));
    assert_eq!(t.state(), TransferState::RetryWait);
}

#[test]
fn the_speed_window_restarts_when_the_head_arrives() {
    let mut t = Transfer::new(TransferSpec::new("a", "https://cdn.example/a"), 0);
    while t.poll_action().is_some() {}
    let window = TransferConfig::default().stall_window_ms;
    t.handle(
        Event::ResponseHead {
            status: 200,
            headers: ResponseHeaders::default(),
        },
        window - 100,
    );
    assert_eq!(t.poll_timeout(), Some(2 * window - 100));
    t.handle(Event::Body(&[0; 10]), window + 50);
    t.handle(Event::Timeout, window + 60);
    assert_eq!(
        t.poll_action(),
        None,
        "a slow head does not make the body look stalled"
    );
    assert_eq!(t.state(), TransferState::Receiving);
}

#[test]
fn redirect_records_the_final_url_for_the_allow_list_check() {
    let mut sim =
        Sim::new(2_000, |_| {}).faults([Some(Fault::Redirect("https://mirror.example/asset.bin"))]);
    sim.run_until(|s| s.t.state() == TransferState::Receiving);
    assert_eq!(
        sim.t.final_url(),
        Some("https://mirror.example/asset.bin"),
        "visible as soon as the head arrives"
    );
    assert_eq!(
        sim.t.progress().final_url.as_deref(),
        Some("https://mirror.example/asset.bin")
    );
    sim.assert_finished_exact();
    assert_eq!(
        sim.store.checkpoint.final_url.as_deref(),
        Some("https://mirror.example/asset.bin")
    );
}

#[test]
fn a_redirect_outside_the_allow_list_is_refused_by_the_driver() {
    let mut sim = Sim::new(5_000, |_| {}).faults([
        Some(Fault::Drop(1_500)),
        Some(Fault::Redirect("https://evil.example/x")),
    ]);
    sim.run_until(|s| s.t.final_url().is_some());
    // The driver's allow-list check fails on the final URL.
    let refused = Error::SessionDownloadDisallowedByDomain {
        host: "evil.example".into(),
    };
    sim.handle(Event::Refused(refused.clone()));
    assert_eq!(sim.outcome, Some(Err(refused)));
    assert_eq!(
        &sim.log[sim.log.len() - 2..],
        &[
            Logged::Abort,
            Logged::Fail(sim.outcome.clone().unwrap().unwrap_err())
        ]
    );
    assert_eq!(
        sim.store.checkpoint.bytes, 1_500,
        "bytes from the allowed host stay"
    );
}

#[test]
fn pause_stores_what_arrived_and_resume_fetches_nothing_twice() {
    let mut sim = Sim::new(5_000, |_| {});
    sim.run_until(|s| s.delivered >= 2_700);
    sim.handle(Event::Pause);
    assert_eq!(sim.t.state(), TransferState::Paused);
    assert_eq!(
        sim.store.checkpoint.bytes, 2_700,
        "the partial chunk was stored"
    );
    assert!(!sim.step(), "nothing happens while paused");
    assert_eq!(sim.t.poll_timeout(), None);
    sim.now += 3_600_000;
    sim.handle(Event::Resume);
    sim.assert_finished_exact();
    assert_eq!(
        sim.fetches()[1],
        Request {
            range_start: Some(2_700),
            if_range: strong("v0")
        }
    );
    assert_eq!(sim.delivered, 5_000);
    assert_eq!(sim.t.progress().wasted_bytes, 0);

    // Pausing during a retry wait cancels the wait; resume fetches at once.
    let mut sim = Sim::new(2_000, |_| {}).faults([Some(Fault::Status(503, Some("30")))]);
    sim.run_until(|s| s.t.state() == TransferState::RetryWait);
    sim.handle(Event::Pause);
    assert_eq!(sim.t.poll_timeout(), None);
    sim.handle(Event::Resume);
    assert_eq!(sim.fetches().len(), 2);
    sim.assert_finished_exact();
}

#[test]
fn cancel_aborts_discards_and_fails_cancelled() {
    let mut sim = Sim::new(5_000, |_| {});
    sim.run_until(|s| s.delivered >= 2_100);
    assert!(!sim.store.chunks.is_empty());
    sim.handle(Event::Cancel);
    assert_eq!(
        &sim.log[sim.log.len() - 3..],
        &[
            Logged::Abort,
            Logged::Discard { wasted: 0 },
            Logged::Fail(Error::Cancelled {
                identifier: "asset".into()
            })
        ]
    );
    assert!(sim.store.chunks.is_empty());
    assert_eq!(sim.t.state(), TransferState::Failed);
    // Later events change nothing.
    sim.handle(Event::Resume);
    sim.handle(Event::End);
    assert!(sim.t.poll_action().is_none());
}

#[test]
fn killed_context_resumes_from_the_stored_checkpoint_in_a_new_one() {
    let mut sim = Sim::new(10_000, |_| {});
    sim.run_until(|s| s.delivered >= 4_800);
    let refetch = sim.kill_and_resume(true);
    assert_eq!(
        refetch, 800,
        "only the uncommitted part of a chunk is fetched again"
    );
    assert_eq!(
        sim.fetches().last().unwrap(),
        &Request {
            range_start: Some(4_000),
            if_range: strong("v0")
        }
    );
    sim.assert_finished_exact();
    assert_eq!(sim.delivered, 10_000 + 800);
    assert!(sim.t.progress().attempts >= 2);
}

#[test]
fn kill_between_write_and_written_is_safe_either_way() {
    for commit in [true, false] {
        let mut sim = Sim::new(10_000, |_| {});
        sim.defer_commits = true;
        // Stop right after a chunk was cut and before its commit.
        sim.run_until(|s| !s.inflight.is_empty() && s.delivered > 3_000);
        assert_eq!(sim.delivered, 4_200);
        let refetch = sim.kill_and_resume(commit);
        assert_eq!(refetch, if commit { 200 } else { 1_200 });
        sim.assert_finished_exact();
    }
}

#[test]
fn resume_of_a_complete_checkpoint_verifies_without_fetching() {
    let mut sim = Sim::new(3_000, |_| {});
    sim.defer_commits = true;
    sim.run_until(|s| s.t.state() == TransferState::Finishing);
    sim.kill_and_resume(true);
    assert_eq!(sim.fetches().len(), 1);
    sim.assert_finished_exact();

    // Without a declared size, the server's 416 `bytes */3000` says the same.
    let mut sim = Sim::new(3_000, |s| s.expected_size = None);
    sim.defer_commits = true;
    sim.run_until(|s| s.t.state() == TransferState::Finishing);
    let mut checkpoint = sim.store.checkpoint.clone();
    checkpoint.total = None;
    sim.store.checkpoint = checkpoint;
    sim.kill_and_resume(true);
    sim.assert_finished_exact();
    assert_eq!(sim.fetches().last().unwrap().range_start, Some(3_000));
}

#[test]
fn unsatisfiable_range_restarts_from_zero() {
    let mut sim =
        Sim::new(3_000, |_| {}).faults([Some(Fault::Drop(1_000)), Some(Fault::Unsatisfiable)]);
    sim.assert_finished_exact();
    let fetches = sim.fetches();
    assert_eq!(fetches.len(), 3);
    assert_eq!(fetches[2].range_start, None);
    assert_eq!(sim.t.progress().wasted_bytes, 1_000);
}

#[test]
fn corrupt_or_mismatching_checkpoints_restart_from_zero() {
    let mut sim = Sim::new(3_000, |_| {});
    sim.run_until(|s| s.store.checkpoint.bytes >= 2_000);
    // The hash state no longer covers the stored bytes.
    sim.store.checkpoint.hash = Sha256Stream::new().save();
    sim.kill_and_resume(true);
    assert!(sim.log.contains(&Logged::Discard { wasted: 2_000 }));
    assert_eq!(sim.fetches().last().unwrap().range_start, None);
    sim.assert_finished_exact();

    // The declaration changed size since the checkpoint was written.
    let mut sim = Sim::new(3_000, |_| {});
    sim.run_until(|s| s.store.checkpoint.bytes >= 1_000);
    sim.store.checkpoint.total = Some(9_999);
    sim.kill_and_resume(true);
    assert_eq!(sim.fetches().last().unwrap().range_start, None);
    sim.assert_finished_exact();
}

#[test]
fn digest_mismatch_is_never_reported_finished() {
    let mut sim = Sim::new(3_000, |s| s.sha256 = Some([0xab; 32]));
    sim.run();
    assert!(matches!(
        &sim.outcome,
        Some(Err(Error::IntegrityMismatch { expected, .. })) if expected == &"ab".repeat(32)
    ));
    assert!(!sim.log.iter().any(|l| matches!(l, Logged::Finish { .. })));
    assert!(sim.store.chunks.is_empty(), "the bad file is discarded");
    // A one-chunk file (verified as its chunk): the same error, naming the file's digests,
    // and nothing stored.
    let mut sim = Sim::new(900, |s| s.sha256 = Some([0xab; 32]));
    sim.run();
    let actual = hex(&sha(&source(900, 7)));
    assert!(
        matches!(
            &sim.outcome,
            Some(Err(Error::IntegrityMismatch { expected, actual: got, .. }))
                if expected == &"ab".repeat(32) && got == &actual
        ),
        "{:?}",
        sim.outcome
    );
    assert!(sim.store.chunks.is_empty());
}

// --- chunk digests ----------------------------------------------------------------------------

/// A sim whose spec declares the body's chunk digests (chunks of 1,000 bytes).
fn with_digests(len: usize) -> Sim {
    Sim::new(len, |s| {
        s.chunk_digests = Some(ChunkDigests::of(&source(len, 7), 1_000));
    })
}

#[test]
fn chunk_digests_verify_whole_chunks_and_finish_with_the_declared_digest() {
    let mut sim = with_digests(3_500);
    sim.assert_finished_exact();
    let writes = sim.writes();
    assert_eq!(
        writes,
        [(0, 1_000), (1_000, 1_000), (2_000, 1_000), (3_000, 500)]
    );
    assert!(sim.store.checkpoint.chunks_verified);
    // The chunk size is the list's, whatever the config said.
    let mut sim = Sim::new(2_500, |s| {
        s.config.chunk_size = 64;
        s.chunk_digests = Some(ChunkDigests::of(&source(2_500, 7), 1_000));
    });
    sim.assert_finished_exact();
    assert_eq!(sim.t.spec().config.chunk_size, 1_000);
}

#[test]
fn a_corrupt_chunk_fails_typed_and_keeps_the_verified_chunks_before_it() {
    let len = 4_000;
    let mut served = source(len, 7);
    served[2_345] ^= 0xff; // the server's chunk 2 is not the declared one
    let declared = ChunkDigests::of(&source(len, 7), 1_000);
    let mut sim = Sim::new(len, |s| s.chunk_digests = Some(declared.clone()));
    sim.server.body = served.clone();
    sim.run();
    match &sim.outcome {
        Some(Err(Error::ChunkIntegrityMismatch {
            offset,
            expected,
            actual,
            ..
        })) => {
            assert_eq!(*offset, 2_000);
            assert_eq!(
                *expected,
                background_assets::core::error::hex(&declared.sha256[2])
            );
            assert_eq!(
                *actual,
                background_assets::core::error::hex(&sha(&served[2_000..3_000]))
            );
        }
        other => panic!("expected ChunkIntegrityMismatch, got {other:?}"),
    }
    assert!(sim.log.contains(&Logged::Mismatch { offset: 2_000 }));
    // The two verified chunks stay; nothing of the bad one or after it was stored.
    assert_eq!(sim.store.bytes(), source(len, 7)[..2_000]);
    // A next context continues after them (and meets the same bad chunk again).
    sim.kill_and_resume(true);
    assert_eq!(sim.fetches().last().unwrap().range_start, Some(2_000));
    sim.run();
    assert!(matches!(
        &sim.outcome,
        Some(Err(Error::ChunkIntegrityMismatch { offset: 2_000, .. }))
    ));
    // Once the server has the declared file, it finishes.
    sim.server.body = source(len, 7);
    sim.kill_and_resume(true);
    sim.assert_finished_exact();
}

#[test]
fn with_chunk_digests_a_pause_keeps_a_partial_chunk_in_memory_and_fetches_nothing_twice() {
    let mut sim = with_digests(3_000);
    sim.run_until(|s| s.delivered >= 1_500);
    let received = sim.t.progress().bytes_received;
    assert!(received % 1_000 != 0, "paused mid-chunk ({received})");
    sim.handle(Event::Pause);
    sim.commit();
    assert_eq!(sim.t.state(), TransferState::Paused);
    assert_eq!(
        sim.store.checkpoint.bytes, 1_000,
        "only whole chunks are stored"
    );
    sim.now += 60_000;
    sim.handle(Event::Resume);
    assert_eq!(sim.fetches().last().unwrap().range_start, Some(received));
    sim.assert_finished_exact();
    assert_eq!(sim.delivered, 3_000, "not one byte fetched twice");
}

#[test]
fn with_chunk_digests_a_broken_response_resumes_from_the_received_byte() {
    let mut sim = with_digests(3_000).faults([Some(Fault::Drop(1_700))]);
    sim.assert_finished_exact();
    assert_eq!(sim.fetches()[1].range_start, Some(1_700));
    assert_eq!(sim.delivered, 3_000);
}

#[test]
fn checkpoints_continue_only_under_the_same_kind_of_verification() {
    // Written with chunk digests, resumed without them: no hash state covers the stored bytes.
    let mut sim = with_digests(3_000);
    sim.run_until(|s| s.store.checkpoint.bytes >= 2_000);
    sim.spec.chunk_digests = None;
    sim.kill_and_resume(true);
    assert!(sim.log.contains(&Logged::Discard { wasted: 2_000 }));
    sim.assert_finished_exact();

    // Written without them, resumed with them: the stored bytes were never checked chunk by chunk.
    let mut sim = Sim::new(3_000, |_| {});
    sim.run_until(|s| s.store.checkpoint.bytes >= 2_000);
    sim.spec.chunk_digests = Some(ChunkDigests::of(&source(3_000, 7), 1_000));
    sim.kill_and_resume(true);
    assert!(sim.log.contains(&Logged::Discard { wasted: 2_000 }));
    assert_eq!(sim.fetches().last().unwrap().range_start, None);
    sim.assert_finished_exact();

    // With them both times: continued after the stored chunks.
    let mut sim = with_digests(3_000);
    sim.run_until(|s| s.store.checkpoint.bytes >= 2_000);
    sim.kill_and_resume(true);
    assert_eq!(sim.fetches().last().unwrap().range_start, Some(2_000));
    sim.assert_finished_exact();
    assert!(!sim.log.iter().any(|l| matches!(l, Logged::Discard { .. })));
}

#[test]
fn chunk_digests_that_do_not_fit_the_declaration_are_refused_typed() {
    let body = source(3_000, 7);
    type Configure<'a> = Box<dyn Fn(&mut TransferSpec) + 'a>;
    let cases: [(&str, Configure); 3] = [
        (
            "2 chunk digests given, 3 expected",
            Box::new(|s| s.chunk_digests = Some(ChunkDigests::of(&body[..2_000], 1_000))),
        ),
        (
            "declare the size and the SHA-256",
            Box::new(|s| {
                s.chunk_digests = Some(ChunkDigests::of(&body, 1_000));
                s.sha256 = None;
            }),
        ),
        (
            "declare the size and the SHA-256",
            Box::new(|s| {
                s.chunk_digests = Some(ChunkDigests::of(&body, 1_000));
                s.expected_size = None;
            }),
        ),
    ];
    for (want, configure) in cases {
        let mut sim = Sim::new(3_000, configure);
        sim.run();
        match &sim.outcome {
            Some(Err(Error::DownloadInvalid { reason })) => {
                assert!(
                    reason.contains(want) && reason.contains("`asset`"),
                    "{reason}"
                )
            }
            other => panic!("expected DownloadInvalid, got {other:?}"),
        }
        assert!(sim.fetches().is_empty());
    }
}

#[test]
fn quota_and_stale_epoch_fail_with_their_error_without_retry() {
    let mut sim = Sim::new(5_000, |_| {});
    sim.store.quota = Some(2_500);
    sim.run();
    assert_eq!(
        sim.outcome,
        Some(Err(Error::QuotaExceeded {
            identifier: "asset".into()
        }))
    );
    assert_eq!(sim.fetches().len(), 1);
    assert!(sim.log.contains(&Logged::Abort));
    assert_eq!(sim.store.checkpoint.bytes, 2_000, "what was stored stays");

    let stale = Error::StaleEpoch {
        identifier: "asset".into(),
        held: 3,
        current: 4,
    };
    let mut sim = Sim::new(5_000, |_| {});
    sim.store.refuse = Some(stale.clone());
    sim.run();
    assert_eq!(sim.outcome, Some(Err(stale)));
    assert_eq!(sim.fetches().len(), 1);
}

#[test]
fn a_server_that_never_gets_further_is_given_up_on() {
    // No validator, so every retry restarts from zero, and the connection always drops at the
    // same byte: after the first attempt no attempt gets further.
    let mut sim = Sim::new(5_000, |_| {}).faults((0..20).map(|_| Some(Fault::Drop(1_500))));
    sim.server.tag = Tag::Missing;
    sim.server.last_modified = None;
    sim.run();
    assert!(
        matches!(&sim.outcome, Some(Err(Error::RetriesExhausted { last, .. })) if last.contains("network")),
        "{:?}",
        sim.outcome
    );
    assert_eq!(
        sim.fetches().len(),
        4,
        "max_attempts consecutive attempts without progress"
    );
    assert_eq!(sim.t.progress().wasted_bytes, 3 * 1_500);
}

#[test]
fn slow_but_steady_progress_is_not_a_stall() {
    // 300 bytes every 2.5 s = 120 B/s, above the 100 B/s floor.
    let mut sim = Sim::new(3_000, |_| {});
    sim.piece_ms = 2_500;
    sim.assert_finished_exact();
    assert_eq!(sim.fetches().len(), 1);
    // 300 bytes every 5 s = 60 B/s: stalls (and still finishes, by progress).
    let mut sim = Sim::new(3_000, |_| {});
    sim.piece_ms = 5_000;
    sim.assert_finished_exact();
    assert!(sim.fetches().len() > 1);
    assert_eq!(sim.delivered, 3_000, "stall retries refetch nothing");
}

#[test]
fn out_of_order_write_confirmation_is_a_storage_error() {
    let mut spec = TransferSpec::new("a", "https://cdn.example/a");
    spec.config.chunk_size = 10;
    let mut t = Transfer::new(spec, 0);
    while t.poll_action().is_some() {}
    let headers = ResponseHeaders {
        etag: strong("x"),
        ..Default::default()
    };
    t.handle(
        Event::ResponseHead {
            status: 200,
            headers,
        },
        0,
    );
    t.handle(Event::Body(&[1; 25]), 1);
    t.handle(
        Event::Written {
            offset: 10,
            len: 10,
        },
        2,
    );
    let actions: Vec<_> = std::iter::from_fn(|| t.poll_action()).collect();
    assert!(matches!(
        actions.last(),
        Some(Action::Fail(Error::Storage { message })) if message.contains("10+10")
    ));
}

#[test]
fn checkpoint_round_trips_through_json() {
    let mut sim = Sim::new(3_000, |_| {}).faults([Some(Fault::Drop(1_700))]);
    sim.run_until(|s| s.t.state() == TransferState::RetryWait);
    let checkpoint = sim.store.checkpoint.clone();
    assert_eq!(checkpoint.bytes, 1_700);
    assert_eq!(checkpoint.failures, 1);
    let json = serde_json::to_string(&checkpoint).unwrap();
    assert!(
        json.contains("\"validator\":{\"etag\":\"\\\"v0\\\"\"}"),
        "{json}"
    );
    let back: Checkpoint = serde_json::from_str(&json).unwrap();
    assert_eq!(back, checkpoint);
    sim.store.checkpoint = back;
    sim.kill_and_resume(true);
    sim.assert_finished_exact();
}

#[test]
fn empty_file_finishes() {
    let mut sim = Sim::new(0, |_| {});
    sim.assert_finished_exact();
}

// --- properties -------------------------------------------------------------------------------

fn fault() -> impl Strategy<Value = Option<Fault>> {
    prop_oneof![
        4 => Just(None),
        3 => (0u64..4_000).prop_map(|n| Some(Fault::Drop(n))),
        1 => Just(Some(Fault::NoRange)),
        1 => Just(Some(Fault::EtagChange)),
        1 => Just(Some(Fault::EtagChangeIgnoringIfRange)),
        1 => Just(Some(Fault::BadContentRange)),
        1 => (1u64..800).prop_map(|n| Some(Fault::Short(n))),
        1 => (1u64..50).prop_map(|n| Some(Fault::Long(n))),
        1 => (1u64..50).prop_map(|n| Some(Fault::LongUnannounced(n))),
        2 => prop_oneof![Just(500u16), Just(503), Just(429), Just(408)]
            .prop_flat_map(|s| prop_oneof![Just(None), Just(Some("2"))]
                .prop_map(move |ra| Some(Fault::Status(s, ra)))),
        1 => prop_oneof![Just(404u16), Just(410), Just(401)]
            .prop_map(|s| Some(Fault::Status(s, None))),
        2 => (0u64..4_000).prop_map(|n| Some(Fault::Stall(n))),
        1 => Just(Some(Fault::Unsatisfiable)),
    ]
}

#[derive(Clone, Debug)]
enum Intervention {
    Pause,
    Kill { commit_inflight: bool },
}

fn intervention() -> impl Strategy<Value = (u64, Intervention)> {
    (
        0u64..6_000,
        prop_oneof![
            Just(Intervention::Pause),
            any::<bool>().prop_map(|commit_inflight| Intervention::Kill { commit_inflight }),
        ],
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 384, failure_persistence: None, ..ProptestConfig::default() })]

    /// For any faults, pauses and kills: finished means exactly the source bytes and digest;
    /// failed means a typed reason that one of the injected faults explains. A kill refetches
    /// less than one chunk (plus what the driver had not committed); a pause refetches nothing.
    #[test]
    fn any_faults_pauses_and_kills_end_exact_or_typed(
        len in 0usize..5_000,
        chunk in 64u32..1_500,
        piece_fraction in 1u32..=4,
        declare_size in any::<bool>(),
        digests in any::<bool>(),
        faults in prop::collection::vec(fault(), 0..10),
        mut interventions in prop::collection::vec(intervention(), 0..4),
    ) {
        let piece = (chunk / piece_fraction).max(1) as usize;
        let mut sim = Sim::new(len, |s| {
            s.config.chunk_size = chunk;
            if digests {
                // Chunk digests need the size declared.
                s.chunk_digests = Some(ChunkDigests::of(&source(len, 7), chunk));
            } else if !declare_size {
                s.expected_size = None;
            }
        }).faults(faults.clone());
        sim.piece = piece;
        sim.defer_commits = true;
        interventions.sort_by_key(|(at, _)| *at);
        let mut interventions: VecDeque<_> = interventions.into();
        let mut killed = false;
        loop {
            if let Some((at, what)) = interventions.front().cloned() {
                if sim.delivered >= at && sim.outcome.is_none() {
                    interventions.pop_front();
                    match what {
                        Intervention::Pause => {
                            sim.handle(Event::Pause);
                            sim.commit();
                            sim.drain();
                            if sim.t.state() == TransferState::Paused {
                                let received = sim.t.progress().bytes_received;
                                // With chunk digests (declared, or a one-chunk file's own
                                // declared digest) a partial chunk stays in memory.
                                let by_chunks = sim.t.spec().chunk_digests.is_some();
                                let stored = if by_chunks && received != len as u64 {
                                    received - received % u64::from(chunk)
                                } else {
                                    received
                                };
                                prop_assert_eq!(sim.store.checkpoint.bytes, stored,
                                    "a pause stores every received byte (whole chunks with digests)");
                                let fetches_before = sim.fetches().len();
                                sim.now += 60_000;
                                sim.handle(Event::Resume);
                                let fetches = sim.fetches();
                                prop_assert_eq!(fetches.len(), fetches_before + 1);
                                let expected_start = (received > 0).then_some(received);
                                prop_assert_eq!(fetches.last().unwrap().range_start, expected_start,
                                    "resume after pause refetches nothing");
                            }
                        }
                        Intervention::Kill { commit_inflight } => {
                            let dropped: u64 = if commit_inflight { 0 } else {
                                sim.inflight.iter().map(|op| match op {
                                    StoreOp::Write { data, .. } => data.len() as u64,
                                    _ => 0,
                                }).sum()
                            };
                            let refetch = sim.kill_and_resume(commit_inflight);
                            prop_assert!(refetch < u64::from(chunk) + dropped,
                                "kill refetches {} bytes (chunk {}, uncommitted writes {})",
                                refetch, chunk, dropped);
                            killed = true;
                        }
                    }
                    continue;
                }
            }
            if !sim.step() {
                break;
            }
        }
        let body = sim.server.body.clone();
        match sim.outcome.clone() {
            Some(Ok((size, digest))) => {
                prop_assert_eq!(size, body.len() as u64);
                prop_assert_eq!(digest, sha(&body));
                prop_assert!(sim.store.bytes() == body, "stored bytes differ from the source");
                if !killed {
                    prop_assert_eq!(sim.delivered, body.len() as u64 + sim.t.progress().wasted_bytes,
                        "every byte fetched twice is counted as wasted");
                }
            }
            Some(Err(e)) => {
                let injected = |f: &dyn Fn(&Fault) -> bool| faults.iter().flatten().any(f);
                let explained = match &e {
                    Error::RetriesExhausted { .. } | Error::Stalled { .. } => true,
                    Error::HttpStatus { status, .. } =>
                        injected(&|f| matches!(f, Fault::Status(s, _) if s == status)),
                    Error::AuthenticationRequired { status: 401, .. } =>
                        injected(&|f| matches!(f, Fault::Status(401, _))),
                    Error::SizeMismatch { .. } | Error::IntegrityMismatch { .. } =>
                        injected(&|f| matches!(f, Fault::Long(_) | Fault::LongUnannounced(_))),
                    _ => false,
                };
                prop_assert!(explained, "unexplained failure {:?} for faults {:?}", e, faults);
                if matches!(e, Error::SizeMismatch { .. } | Error::IntegrityMismatch { .. }) {
                    prop_assert!(sim.store.chunks.is_empty(), "a wrong file is discarded");
                }
            }
            None => prop_assert!(false, "the transfer neither finished nor failed: {:?}", sim.t.state()),
        }
    }

    /// The resumable SHA-256 equals `sha2::Sha256` for any data and any split points, including
    /// a save → JSON → restore at every split.
    #[test]
    fn sha256_stream_matches_sha2_across_saves(
        data in prop::collection::vec(any::<u8>(), 0..2_000),
        mut splits in prop::collection::vec(0usize..2_000, 0..6),
    ) {
        splits.retain(|s| *s <= data.len());
        splits.sort_unstable();
        let mut stream = Sha256Stream::new();
        let mut at = 0;
        for split in splits.into_iter().chain(std::iter::once(data.len())) {
            stream.update(&data[at..split]);
            at = split;
            let json = serde_json::to_string(&stream.save()).unwrap();
            stream = Sha256Stream::restore(&serde_json::from_str(&json).unwrap()).unwrap();
            prop_assert_eq!(stream.bytes_hashed(), at as u64);
        }
        prop_assert_eq!(stream.finalize(), sha(&data));
    }
}
