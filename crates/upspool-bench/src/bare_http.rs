//! A networked baseline with HTTP but without upspool: an axum server on the same hyper that
//! does with each `PUT` only what upspool's byte store does with a segment's bytes (space
//! allocated, the body copied into blocks in huge pages, eight uncached writes in flight on
//! the blocking pool, `fdatasync`, then `202`). No session, no ranges, no metadata commit, no
//! metrics: the ratio beside it is what upspool's own work costs, and the bare server beside
//! the direct writers is how near the target HTTP itself gets on this machine.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::routing::put;
use axum::serve::ListenerExt;
use axum::Router;
use futures_util::stream::{FuturesUnordered, StreamExt};
use memmap2::MmapMut;
use tokio::sync::oneshot;

use crate::direct::{aligned_copy, Scratch, Segments, Target, UNCACHED_IN_FLIGHT};

/// One run's server and the scratch file it writes, removed by [`Run::finish`].
pub struct Run<'a> {
    /// Where to `PUT` segments, with `Content-Range: bytes {start}-{end}/{total}`.
    pub url: String,
    scratch: &'a Scratch,
    name: String,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
}

/// What the handler needs: the file, how to write it, and blocks to gather bodies into.
struct Sink {
    plan: Segments,
    target: Target,
    /// Aligned blocks of `plan.io` bytes, each with where its aligned part starts.
    blocks: Mutex<Vec<(MmapMut, usize)>>,
}

impl<'a> Run<'a> {
    /// Creates the run's file as the byte store creates a blob (sparse, full size) and starts
    /// a server for it on a loopback port, on a runtime of its own with the default worker
    /// count, as upspool's server has.
    pub fn start(scratch: &'a Scratch, plan: Segments) -> anyhow::Result<Self> {
        let name = format!("http-segments-{}", plan.streams);
        let target = plan.open(scratch.create(&name, plan.size)?, &scratch.path(&name))?;
        // Each stream gathers one block while the others are written.
        let blocks = (0..plan.streams * (UNCACHED_IN_FLIGHT + 1))
            .map(|_| aligned_copy(&vec![0u8; plan.io]))
            .collect::<anyhow::Result<_>>()?;
        let sink = Arc::new(Sink {
            plan,
            target,
            blocks: Mutex::new(blocks),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr: SocketAddr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::spawn(move || -> anyhow::Result<()> {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                // TCP_NODELAY, as upspool's server sets it.
                let listener = tokio::net::TcpListener::from_std(listener)?.tap_io(|tcp| {
                    let _ = tcp.set_nodelay(true);
                });
                let app = Router::new()
                    .route("/segments", put(put_segment))
                    .with_state(sink);
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await?;
                anyhow::Ok(())
            })
        });
        Ok(Run {
            url: format!("http://{addr}/segments"),
            scratch,
            name,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The run's file, while the run lasts.
    #[cfg(test)]
    fn path(&self) -> std::path::PathBuf {
        self.scratch.path(&self.name)
    }

    /// Stops the server and removes the run's file.
    pub fn finish(mut self) -> anyhow::Result<()> {
        self.shut_down()?;
        std::fs::remove_file(self.scratch.path(&self.name))?;
        Ok(())
    }

    fn shut_down(&mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| anyhow::anyhow!("the bare HTTP server panicked"))?,
            None => Ok(()),
        }
    }
}

impl Drop for Run<'_> {
    fn drop(&mut self) {
        let _ = self.shut_down();
    }
}

/// `bytes {start}-{end}/{total}` as `(start, length)`.
fn content_range(headers: &HeaderMap) -> Option<(u64, usize)> {
    let v = headers.get(header::CONTENT_RANGE)?.to_str().ok()?;
    let (start, end) = v
        .strip_prefix("bytes ")?
        .split('/')
        .next()?
        .split_once('-')?;
    let (start, end): (u64, u64) = (start.parse().ok()?, end.parse().ok()?);
    Some((start, usize::try_from(end.checked_sub(start)? + 1).ok()?))
}

type Failed = (StatusCode, String);

fn failed(e: impl std::fmt::Display) -> Failed {
    (StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

/// Runs a file operation of the sink on the blocking pool, as the byte store does.
async fn blocking(
    sink: &Arc<Sink>,
    op: impl FnOnce(&Sink) -> std::io::Result<()> + Send + 'static,
) -> Result<(), Failed> {
    let s = sink.clone();
    tokio::task::spawn_blocking(move || op(&s))
        .await
        .map_err(failed)?
        .map_err(failed)
}

/// One segment: allocate, stream the body into blocks written as they fill (at most
/// [`UNCACHED_IN_FLIGHT`] at once), `fdatasync`, `202`.
async fn put_segment(
    State(sink): State<Arc<Sink>>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, Failed> {
    let (at, len) =
        content_range(&headers).ok_or((StatusCode::BAD_REQUEST, "Content-Range".to_string()))?;
    blocking(&sink, move |s| s.plan.allocate(&s.target, at, len)).await?;
    let io = sink.plan.io;
    let mut writes = FuturesUnordered::new();
    let mut chunks = body.into_data_stream();
    let (mut block, mut filled, mut pos, mut got) = (None, 0, at, 0);
    loop {
        let chunk = chunks.next().await.transpose().map_err(failed)?;
        let end = chunk.is_none();
        let mut rest: &[u8] = chunk.as_deref().unwrap_or_default();
        got += rest.len();
        while !rest.is_empty() || (end && filled > 0) {
            let (buf, start) = block.get_or_insert_with(|| sink.lend());
            let n = rest.len().min(io - filled);
            buf[*start + filled..*start + filled + n].copy_from_slice(&rest[..n]);
            (filled, rest) = (filled + n, &rest[n..]);
            if filled == io || (end && rest.is_empty()) {
                while writes.len() >= UNCACHED_IN_FLIGHT {
                    writes.next().await.expect("a write in flight")?;
                }
                let full = block.take().expect("a block being filled");
                writes.push(write(sink.clone(), full, filled, pos));
                (pos, filled) = (pos + filled as u64, 0);
            }
        }
        if end {
            break;
        }
    }
    while let Some(done) = writes.next().await {
        done?;
    }
    if got != len {
        return Err((StatusCode::BAD_REQUEST, format!("{got} of {len} bytes")));
    }
    blocking(&sink, |s| s.target.sync_data()).await?;
    Ok(StatusCode::ACCEPTED)
}

/// Writes the first `len` bytes of `block` at `pos` on the blocking pool, as the byte store
/// writes a block, and gives the block back.
async fn write(
    sink: Arc<Sink>,
    block: (MmapMut, usize),
    len: usize,
    pos: u64,
) -> Result<(), Failed> {
    let s = sink.clone();
    let (block, wrote) = tokio::task::spawn_blocking(move || {
        let (buf, start) = &block;
        let wrote = s
            .plan
            .write_piece(&s.target, &buf[*start..*start + len], pos);
        (block, wrote)
    })
    .await
    .map_err(failed)?;
    sink.blocks.lock().expect("blocks").push(block);
    wrote.map_err(failed)
}

impl Sink {
    fn lend(&self) -> (MmapMut, usize) {
        self.blocks
            .lock()
            .expect("blocks")
            .pop()
            .expect("each stream holds at most its own blocks")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::direct::{assert_each_segment_is, test_plan, test_scratch, WriteMode};

    /// Every segment lands at its offset whole over HTTP, including a last segment and block
    /// that are not whole pages (so the baseline's speed is that of the real work).
    #[tokio::test]
    async fn every_byte_arrives_at_its_offset() {
        let data: Vec<u8> = (0..(1 << 20)).map(|i| (i * 11 % 241) as u8).collect();
        let scratch = test_scratch();
        let plan = test_plan(WriteMode::Uncached);
        let run = Run::start(&scratch, plan).unwrap();
        let client = reqwest::Client::new();
        for at in (0..plan.size).step_by(plan.segment) {
            let len = (plan.size - at).min(plan.segment as u64);
            let resp = client
                .put(&run.url)
                .header(
                    "Content-Range",
                    format!("bytes {at}-{}/{}", at + len - 1, plan.size),
                )
                .body(data[..len as usize].to_vec())
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), reqwest::StatusCode::ACCEPTED);
        }
        assert_each_segment_is(&run.path(), plan, &data, "bare HTTP");
        run.finish().unwrap();
    }
}
