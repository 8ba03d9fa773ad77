//! Response bodies streamed in frames, and the connection wrapper that lets a body end its
//! connection on purpose (the `drop`, `short` and `stall` faults) after every byte it produced has
//! reached the socket.
//!
//! hyper aborts a connection on a body error without flushing what it buffered, so a faulty body
//! does not return an error. Instead, once hyper has taken its last frame, the body raises the
//! connection's close flag and stays pending; hyper then flushes its buffer and calls
//! [`ClosableIo::poll_flush`], which shuts the socket down (FIN after the data) and reports an
//! error so that hyper drops the connection.

use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::generated::generated_bytes;

/// Largest body frame.
pub(crate) const FRAME: u64 = 64 * 1024;

/// A flag shared by one connection and the bodies sent on it: 0 (the default) while the
/// connection stays open, then [`CLOSE_AFTER_FLUSH`] or [`ABORT`].
pub(crate) type CloseFlag = Arc<AtomicU8>;
/// Shut the connection down at the next flush, after every byte written so far.
pub(crate) const CLOSE_AFTER_FLUSH: u8 = 1;
/// Shut the connection down before writing anything more (no answer to the current request:
/// the `outage` fault).
pub(crate) const ABORT: u8 = 2;

/// When the body of a response with `fault=outage` was cut: the start of the outage window that
/// refuses every request of the same URL (see the module doc of `cdn`).
#[derive(Debug, Default)]
pub(crate) struct OutageClock {
    cut_at: Mutex<Option<tokio::time::Instant>>,
}

impl OutageClock {
    /// Records that the body was cut now.
    fn cut_now(&self) {
        *self.cut_at.lock().unwrap_or_else(|e| e.into_inner()) = Some(tokio::time::Instant::now());
    }

    /// Whether `now` falls within `ms` milliseconds after the cut (false before any cut).
    pub(crate) fn refuses(&self, ms: u64) -> bool {
        let cut_at = *self.cut_at.lock().unwrap_or_else(|e| e.into_inner());
        cut_at.is_some_and(|at| at.elapsed() < Duration::from_millis(ms))
    }
}

/// One piece of a streamed body.
pub(crate) enum Piece {
    Data(Bytes),
    /// Close the connection once everything before this has been written.
    CloseConnection,
}

/// Where body bytes come from.
#[derive(Clone, Debug)]
pub(crate) enum Source {
    Generated { len: u64, seed: u64 },
    File(PathBuf),
}

/// How a streamed body ends early, if it does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cut {
    /// Close the connection after `after` bytes.
    Close { after: u64 },
    /// Send `after` bytes, then nothing for `ms` milliseconds, then close.
    Stall { after: u64, ms: u64 },
}

/// What to stream: `length` bytes of `source` from `start`, maybe cut, maybe paced.
#[derive(Clone, Debug)]
pub(crate) struct StreamPlan {
    pub source: Source,
    pub start: u64,
    pub length: u64,
    pub cut: Option<Cut>,
    pub throttle: Option<u64>,
    /// Started when a `Cut::Close` happens (the `outage` fault).
    pub outage: Option<Arc<OutageClock>>,
}

/// The body of every response the CDN sends; counts the bytes hyper has taken from it.
pub(crate) struct ResponseBody {
    kind: Kind,
    sent: Arc<AtomicU64>,
    close: Option<CloseFlag>,
    closing: bool,
}

enum Kind {
    Full(Option<Bytes>),
    Stream(mpsc::Receiver<Piece>),
}

impl ResponseBody {
    /// A body with nothing in it (HEAD, 204, 304, redirects).
    pub(crate) fn empty() -> Self {
        Self::full(Bytes::new())
    }

    /// A small body held in memory.
    pub(crate) fn full(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        ResponseBody {
            kind: Kind::Full((!bytes.is_empty()).then_some(bytes)),
            sent: Arc::default(),
            close: None,
            closing: false,
        }
    }

    /// A body produced by a task that follows `plan`; `close` is the connection's close flag.
    pub(crate) fn stream(plan: StreamPlan, close: CloseFlag) -> Self {
        let (tx, rx) = mpsc::channel(2);
        tokio::spawn(produce(plan, tx));
        ResponseBody {
            kind: Kind::Stream(rx),
            sent: Arc::default(),
            close: Some(close),
            closing: false,
        }
    }

    /// The counter of body bytes handed to hyper, for the request log.
    pub(crate) fn sent_counter(&self) -> Arc<AtomicU64> {
        self.sent.clone()
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        if this.closing {
            // hyper flushes next and the connection wrapper closes the socket.
            return Poll::Pending;
        }
        let data = match &mut this.kind {
            Kind::Full(bytes) => bytes.take(),
            Kind::Stream(rx) => match ready!(rx.poll_recv(cx)) {
                Some(Piece::Data(bytes)) => Some(bytes),
                Some(Piece::CloseConnection) => {
                    if let Some(flag) = &this.close {
                        flag.store(CLOSE_AFTER_FLUSH, Ordering::SeqCst);
                    }
                    this.closing = true;
                    return Poll::Pending;
                }
                None => None,
            },
        };
        Poll::Ready(data.map(|bytes| {
            this.sent.fetch_add(bytes.len() as u64, Ordering::Relaxed);
            Ok(Frame::data(bytes))
        }))
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.kind, Kind::Full(None))
    }
}

/// Streams `plan` into `tx`; stops quietly when the receiver (hyper's connection) is gone.
async fn produce(plan: StreamPlan, tx: mpsc::Sender<Piece>) {
    let limit = match plan.cut {
        Some(Cut::Close { after }) | Some(Cut::Stall { after, .. }) => after.min(plan.length),
        None => plan.length,
    };
    let frame = match plan.throttle {
        Some(rate) => (rate / 10).clamp(1, FRAME),
        None => FRAME,
    };
    let mut file = match &plan.source {
        Source::File(path) => match open_at(path, plan.start).await {
            Ok(file) => Some(file),
            Err(_) => {
                let _ = tx.send(Piece::CloseConnection).await;
                return;
            }
        },
        Source::Generated { .. } => None,
    };
    let started = tokio::time::Instant::now();
    let mut sent = 0u64;
    while sent < limit {
        let n = frame.min(limit - sent) as usize;
        let mut buf = vec![0u8; n];
        match (&plan.source, file.as_mut()) {
            (Source::Generated { len, seed }, _) => {
                generated_bytes(*len, *seed, plan.start + sent, &mut buf)
            }
            (Source::File(_), Some(file)) => {
                if file.read_exact(&mut buf).await.is_err() {
                    let _ = tx.send(Piece::CloseConnection).await;
                    return;
                }
            }
            (Source::File(_), None) => unreachable!("file opened above"),
        }
        if tx.send(Piece::Data(Bytes::from(buf))).await.is_err() {
            return;
        }
        sent += n as u64;
        if let Some(rate) = plan.throttle {
            let due = started + Duration::from_secs_f64(sent as f64 / rate as f64);
            tokio::time::sleep_until(due).await;
        }
    }
    match plan.cut {
        Some(Cut::Close { .. }) => {
            if let Some(clock) = &plan.outage {
                clock.cut_now();
            }
            let _ = tx.send(Piece::CloseConnection).await;
        }
        Some(Cut::Stall { ms, .. }) => {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(ms)) => {
                    let _ = tx.send(Piece::CloseConnection).await;
                }
                _ = tx.closed() => {}
            }
        }
        None => {}
    }
}

async fn open_at(path: &PathBuf, start: u64) -> io::Result<tokio::fs::File> {
    let mut file = tokio::fs::File::open(path).await?;
    file.seek(io::SeekFrom::Start(start)).await?;
    Ok(file)
}

/// A TCP stream that shuts itself down at the first flush after its close flag is raised
/// ([`CLOSE_AFTER_FLUSH`]), or at the first write or flush once it says [`ABORT`].
pub(crate) struct ClosableIo {
    inner: TcpStream,
    close: CloseFlag,
}

impl ClosableIo {
    pub(crate) fn new(inner: TcpStream, close: CloseFlag) -> Self {
        ClosableIo { inner, close }
    }
}

impl ClosableIo {
    /// Shuts the socket down without writing and reports an error, so hyper drops the connection.
    fn abort(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(Pin::new(&mut self.inner).poll_shutdown(cx))?;
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "connection closed without an answer by a CDN fault (outage)",
        )))
    }
}

impl AsyncRead for ClosableIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for ClosableIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.close.load(Ordering::SeqCst) == ABORT {
            return self.abort(cx).map(|r| r.map(|()| 0));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.close.load(Ordering::SeqCst) == ABORT {
            return self.abort(cx).map(|r| r.map(|()| 0));
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.close.load(Ordering::SeqCst) == ABORT {
            return self.abort(cx);
        }
        ready!(Pin::new(&mut self.inner).poll_flush(cx))?;
        if self.close.load(Ordering::SeqCst) == CLOSE_AFTER_FLUSH {
            ready!(Pin::new(&mut self.inner).poll_shutdown(cx))?;
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "connection closed on purpose by a CDN fault",
            )));
        }
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
