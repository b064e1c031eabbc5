//! The upload engine: the missing ranges cut into segments, sent by N concurrent streams,
//! each segment read from the file as it is sent (memory stays at a few buffers per stream,
//! whatever the file size).
//!
//! After any failed request the stream waits (backoff, `Retry-After`), asks the session what
//! is missing, and sends only what the service still lacks: a segment that did arrive
//! although its answer was lost is not sent again.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::error::{ClientError, Result};
use crate::graph::{Graph, PutOutcome, SessionStatus};
use crate::plan::{plan, still_missing, total, ByteRange};
use crate::retry::RetryPolicy;

/// Size of one read from the file into a request body.
const READ_CHUNK: usize = 256 * 1024;

/// How an upload is sent.
#[derive(Clone, Debug)]
pub struct UploadConfig {
    /// Concurrent segment requests.
    pub streams: usize,
    /// Largest segment, in bytes.
    pub segment_size: u64,
    pub retry: RetryPolicy,
}

impl Default for UploadConfig {
    /// 4 streams of 5 MiB segments.
    fn default() -> Self {
        UploadConfig {
            streams: 4,
            segment_size: 5 * 1024 * 1024,
            retry: RetryPolicy::default(),
        }
    }
}

/// Hears what an upload does; the terminal rendering lives in the binary. Calls come from
/// several streams at once.
pub trait Progress: Send + Sync {
    /// The upload starts: `total` bytes, of which the service already has `already`.
    fn started(&self, _total: u64, _already: u64) {}
    /// `n` more bytes went into a request body.
    fn sent(&self, _n: u64) {}
    /// The service confirmed `n` more bytes.
    fn acknowledged(&self, _n: u64) {}
    /// A request failed with `error`; the next attempt comes after `delay`.
    fn retrying(&self, _error: &ClientError, _delay: Duration) {}
}

/// A [`Progress`] that ignores everything.
pub struct NoProgress;
impl Progress for NoProgress {}

/// What an upload did.
#[derive(Debug, Default)]
pub struct UploadReport {
    /// Bytes put into request bodies (including those of failed attempts).
    pub bytes_sent: u64,
    pub retries: u32,
    /// The completed document, when a segment's answer carried it.
    pub document: Option<Value>,
}

/// One upload in progress: shared by its streams.
struct Upload<'a> {
    graph: &'a Graph,
    url: &'a str,
    file: PathBuf,
    size: u64,
    cfg: &'a UploadConfig,
    progress: &'a dyn Progress,
    bytes_sent: AtomicU64,
    retries: AtomicU32,
    document: Mutex<Option<Value>>,
}

/// Sends the `missing` ranges of `file` (`size` bytes) to `url` until the session reports
/// nothing missing.
pub async fn upload(
    graph: &Graph,
    url: &str,
    file: &Path,
    size: u64,
    missing: Vec<ByteRange>,
    cfg: &UploadConfig,
    progress: &dyn Progress,
) -> Result<UploadReport> {
    let up = Upload {
        graph,
        url,
        file: file.to_path_buf(),
        size,
        cfg,
        progress,
        bytes_sent: AtomicU64::new(0),
        retries: AtomicU32::new(0),
        document: Mutex::new(None),
    };
    progress.started(size, size - total(&missing));
    let mut missing = missing;
    // Each round sends what the session lacked at its start, then asks again. upspool lists
    // every gap, so one round suffices; a service that lists only some gaps (Graph's
    // upload documentation allows it) takes more rounds. A round after which the session
    // reports exactly the same gaps is an error rather than a loop.
    while !missing.is_empty() {
        futures_util::stream::iter(plan(&missing, cfg.segment_size))
            .map(|segment| up.send_segment(segment))
            .buffer_unordered(cfg.streams.max(1))
            .try_for_each(|()| async { Ok(()) })
            .await?;
        if up.document.lock().map(|d| d.is_some()).unwrap_or(false) {
            break;
        }
        let sent = std::mem::take(&mut missing);
        missing = up.status().await?.missing;
        if missing == sent {
            return Err(ClientError::Protocol {
                what: "the upload".into(),
                detail: format!(
                    "the session still lacks the same {} bytes after they were acknowledged",
                    total(&missing)
                ),
            });
        }
    }
    Ok(UploadReport {
        bytes_sent: up.bytes_sent.load(Ordering::Relaxed),
        retries: up.retries.load(Ordering::Relaxed),
        document: up.document.lock().ok().and_then(|mut d| d.take()),
    })
}

impl Upload<'_> {
    /// Sends one segment until the service has all of it.
    async fn send_segment(&self, segment: ByteRange) -> Result<()> {
        let mut pending = vec![segment];
        let mut failures = 0u32;
        while let Some(&range) = pending.first() {
            match self.put(range).await {
                Ok(outcome) => {
                    pending.remove(0);
                    self.progress.acknowledged(range.len());
                    if let PutOutcome::Completed(doc) = outcome {
                        if let Ok(mut d) = self.document.lock() {
                            *d = Some(doc);
                        }
                    }
                }
                Err(e) if e.is_retryable() => {
                    failures += 1;
                    if failures > self.cfg.retry.retries {
                        return Err(ClientError::RetriesExhausted {
                            attempts: failures,
                            last: Box::new(e),
                        });
                    }
                    let delay = self.cfg.retry.delay(failures, e.retry_after());
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    self.progress.retrying(&e, delay);
                    tokio::time::sleep(delay).await;
                    // Ask, rather than assume: the failed request may have been recorded.
                    let missing = self.status().await?.missing;
                    let before = total(&pending);
                    pending = pending
                        .iter()
                        .flat_map(|p| still_missing(p, &missing))
                        .collect();
                    self.progress.acknowledged(before - total(&pending));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// `GET {uploadUrl}`, retried like any request.
    async fn status(&self) -> Result<SessionStatus> {
        self.cfg
            .retry
            .run(
                true,
                |e, d| {
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    self.progress.retrying(e, d);
                },
                || self.graph.session_status(self.url, self.size),
            )
            .await
    }

    /// One `PUT` of `range`, its body streamed from the file.
    async fn put(&self, range: ByteRange) -> Result<PutOutcome> {
        let what = || format!("reading {}", self.file.display());
        let mut f = tokio::fs::File::open(&self.file)
            .await
            .map_err(|e| ClientError::io(what(), e))?;
        f.seek(std::io::SeekFrom::Start(range.start))
            .await
            .map_err(|e| ClientError::io(what(), e))?;
        let reader = f.take(range.len());
        let sent = &self.bytes_sent;
        let progress = self.progress;
        // The body is a stream of file chunks; counting happens as the transport takes them.
        let chunks = futures_util::stream::unfold(reader, |mut r| async move {
            let mut buf = vec![0u8; READ_CHUNK];
            match r.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok::<_, std::io::Error>(bytes::Bytes::from(buf)), r))
                }
                Err(e) => Some((Err(e), r)),
            }
        })
        .inspect_ok(|b: &bytes::Bytes| {
            sent.fetch_add(b.len() as u64, Ordering::Relaxed);
            progress.sent(b.len() as u64);
        });
        // reqwest wants a 'static body; the chunks borrow the counters, so they are handed
        // over through a channel of one, which keeps the read-ahead to a single chunk.
        let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(1);
        let body =
            reqwest::Body::wrap_stream(futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|c| (c, rx))
            }));
        let feed = async move {
            let mut chunks = std::pin::pin!(chunks);
            while let Some(chunk) = chunks.next().await {
                if tx.send(chunk).await.is_err() {
                    break; // the request ended early; nothing more to send
                }
            }
        };
        let (_, answer) = tokio::join!(
            feed,
            self.graph.put_segment(self.url, range, self.size, body)
        );
        answer
    }
}
