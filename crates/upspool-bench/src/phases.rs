//! The six measurements of the benchmark, each beside the machine's own limit for the same
//! work, measured in the same run.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;

use crate::bare_http;
use crate::client::{Api, Job};
use crate::direct::{self, Scratch, Segments, WriteMode};
use crate::report::Row;
use crate::server::{own_cpu_time, Server};
use crate::stats::{mib_per_s, ms, Latencies};

const MIB: u64 = 1024 * 1024;

/// The engine's positional write size (`upspool_domain::upload::IO_BUFFER`), so the direct
/// writes follow the same pattern.
const ENGINE_IO: usize = 256 * 1024;

/// Sizes and counts of one run.
#[derive(Clone, Debug)]
pub struct Plan {
    pub upload: u64,
    pub segment: usize,
    pub rounds: usize,
    pub rss_uploads: usize,
    pub rss_size: u64,
    pub final_small: u64,
    pub final_large: u64,
    pub final_segment: usize,
    pub final_reps: usize,
    pub small_segment: usize,
    pub connections: usize,
    pub small_per_connection: usize,
    pub sessions: usize,
    pub job_clients: usize,
    pub jobs_per_client: usize,
    pub job_size: usize,
}

/// What every phase needs.
pub struct Bench {
    pub bin: PathBuf,
    pub work_dir: PathBuf,
    pub log_level: String,
    pub plan: Plan,
    /// Random bytes, at least as long as the largest single request body.
    pub data: Bytes,
    pub scratch: Scratch,
}

impl Bench {
    fn server(&self) -> anyhow::Result<Server> {
        Server::start(&self.bin, &self.work_dir, &self.log_level)
    }

    /// Runs blocking direct I/O off the runtime.
    async fn direct<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Bench) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || f(&this)).await?
    }

    fn upload_rows(&self) -> String {
        format!(
            "{} MiB in {} MiB segments",
            self.plan.upload / MIB,
            self.plan.segment / MIB as usize
        )
    }
}

/// Runs `work` on a thread of its own with a single-threaded runtime, as each stream of the
/// direct and loopback contenders runs on a thread of its own. A client on the bench's
/// shared multi-threaded runtime hands each received chunk from one worker to the other:
/// warm downloads of 1 GiB measured 1 525-1 911 MiB/s that way against 1 854-2 169 on a
/// single-threaded runtime and 2 137-2 555 with `curl` (BENCHMARKS.md, thirteenth round).
async fn on_own_thread<T, F>(work: impl FnOnce() -> F + Send + 'static) -> anyhow::Result<T>
where
    T: Send + 'static,
    F: std::future::Future<Output = anyhow::Result<T>>,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let done = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(work()));
        let _ = tx.send(done);
    });
    rx.await
        .context("a client thread ended without an answer")?
}

/// Uploads `[from, to)` of a `total`-byte session in `segment`-sized pieces over `streams`
/// connections, each taking the next piece when its previous one was answered. Each
/// connection's client runs on a thread of its own (see [`on_own_thread`]).
async fn upload_range(
    base: &str,
    url: &str,
    (from, to, total): (u64, u64, u64),
    segment: usize,
    streams: usize,
    data: &Bytes,
) -> anyhow::Result<Duration> {
    let next = Arc::new(AtomicU64::new(from));
    let started = Instant::now();
    let streams: Vec<_> = (0..streams)
        .map(|_| {
            let (next, base, url, data) = (
                next.clone(),
                base.to_string(),
                url.to_string(),
                data.clone(),
            );
            on_own_thread(move || async move {
                let api = Api::new(&base);
                loop {
                    let at = next.fetch_add(segment as u64, Ordering::Relaxed);
                    if at >= to {
                        return Ok(());
                    }
                    let len = (to - at).min(segment as u64) as usize;
                    api.put(&url, at, total, data.slice(..len)).await?;
                }
            })
        })
        .collect();
    for done in futures_util::future::join_all(streams).await {
        done?;
    }
    Ok(started.elapsed())
}

/// Where the embedded byte store keeps an upload session's bytes.
fn blob_of(server: &Server, session: &str) -> PathBuf {
    server.data_dir.join("blobs").join(format!("s-{session}"))
}

/// The session id of an upload URL (`.../uploadSessions/{id}?tempauthtoken=...`).
fn session_of(url: &str) -> anyhow::Result<&str> {
    url.split("/uploadSessions/")
        .nth(1)
        .and_then(|s| s.split('?').next())
        .context("session id in the upload URL")
}

/// The contenders of item 1, run in turn each round.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Writer {
    /// Positional writes through the page cache, then `fdatasync`, per segment (the limit as
    /// the issue describes it).
    Direct,
    /// The same, starting each piece's writeback as it is written (the byte store's pattern
    /// until it wrote uncached).
    DirectWriteback,
    /// Space allocated per segment, then `O_DIRECT` writes, as the byte store writes now.
    DirectUncached,
    /// The same writes queued on an `io_uring` by one thread (not the store's pattern).
    DirectUncachedRing,
    Upspool,
    /// Loopback TCP per stream, received in pieces that are written as `DirectUncached`
    /// writes them while the next arrive.
    Loopback,
    /// HTTP on the same hyper as upspool, each segment's body written as the byte store
    /// writes it, with nothing else (see `bare_http`).
    BareHttp,
}

const WRITERS: [Writer; 7] = [
    Writer::Direct,
    Writer::DirectWriteback,
    Writer::DirectUncached,
    Writer::DirectUncachedRing,
    Writer::Upspool,
    Writer::Loopback,
    Writer::BareHttp,
];

/// The direct contenders: the target row's limit is the fastest of them.
const DIRECT: [usize; 4] = [0, 1, 2, 3];

/// The server's per-segment histograms (`/metrics`) that split a segment's time, and what each
/// measures: the whole request as the server timed it, then its parts: streaming the body
/// (waiting for it, or for the byte store) and the acknowledgement's two steps. What the
/// parts leave of the whole is the session lookup, claiming the range and opening the blob.
const SEGMENT_PHASES: [(&str, &str); 5] = [
    (
        r#"upspool_http_request_duration_seconds{method="PUT",route="/uploadSessions/{session}"}"#,
        "the whole request (head read to answer ready)",
    ),
    (
        "upspool_upload_body_wait_seconds",
        "waiting for the body (store had room)",
    ),
    (
        "upspool_upload_store_wait_seconds",
        "waiting for the byte store's writes",
    ),
    ("upspool_upload_sync_seconds", "fdatasync of the blob"),
    (
        "upspool_upload_commit_seconds",
        "metadata commit (WAL sync included)",
    ),
];

/// The (sum, count) of each of [`SEGMENT_PHASES`] so far; (0, 0) for one an older server
/// (`--server-bin`) does not have.
async fn segment_phases(api: &Api) -> Vec<(f64, f64)> {
    let mut out = Vec::with_capacity(SEGMENT_PHASES.len());
    for (name, _) in SEGMENT_PHASES {
        out.push(api.metric(name).await.unwrap_or((0.0, 0.0)));
    }
    out
}

/// Rows of item `item` with the mean of each of [`SEGMENT_PHASES`] per segment between two
/// readings (none for a phase the server does not report).
fn phase_rows(item: u8, what: &str, before: &[(f64, f64)], after: &[(f64, f64)]) -> Vec<Row> {
    let mut rows = Vec::new();
    for (i, label) in SEGMENT_PHASES.iter().map(|(_, l)| l).enumerate() {
        let (sum, count) = (after[i].0 - before[i].0, after[i].1 - before[i].1);
        if count == 0.0 {
            continue;
        }
        rows.push(Row::new(
            item,
            format!("  per {what} in the server, mean of {count}: {label}"),
            sum / count * 1000.0,
            "ms",
        ));
    }
    rows
}

/// Items 1 and 5: upload throughput with 1 and 4 streams, then download of the first document.
pub async fn upload_and_download(b: &Arc<Bench>) -> anyhow::Result<Vec<Row>> {
    let p = &b.plan;
    let server = b.server()?;
    let api = Api::new(&server.base);
    let printer = api.printer().await?;
    let mut rows = Vec::new();
    let mut first: Option<(Job, String)> = None;
    for streams in [1, 4] {
        let (size, seg) = (p.upload, p.segment);
        // The loopback receiver writes like the byte store: uncached.
        let plan = Segments {
            size,
            segment: seg,
            streams,
            io: ENGINE_IO,
            mode: WriteMode::Uncached,
        };
        // A run's speed here depends on the disk and on whether its page cache meets memory
        // the VM's host took back (BENCHMARKS.md, finding 10), so the contenders take turns:
        // each round starts with a different one, and medians and bests are compared.
        let mut took: [Vec<Duration>; WRITERS.len()] = Default::default();
        // The server's CPU time and context switches per upspool run: steadier than wall
        // time on this machine, and what its own overhead costs.
        let (mut server_cpu, mut switches) = (Vec::new(), Vec::new());
        let phases_before = segment_phases(&api).await;
        for round in 0..p.rounds {
            let mut line = format!("  {streams} stream(s), round {}:", round + 1);
            for k in 0..WRITERS.len() {
                let i = (round + k) % WRITERS.len();
                let cpu = (server.cpu_time()?, own_cpu_time()?);
                let switched = server.context_switches()?;
                let t = match WRITERS[i] {
                    Writer::Direct
                    | Writer::DirectWriteback
                    | Writer::DirectUncached
                    | Writer::DirectUncachedRing => {
                        let mode = match WRITERS[i] {
                            Writer::Direct => WriteMode::Buffered,
                            Writer::DirectWriteback => WriteMode::Writeback,
                            Writer::DirectUncachedRing => WriteMode::UncachedRing,
                            _ => WriteMode::Uncached,
                        };
                        let plan = Segments { mode, ..plan };
                        b.direct(move |b| b.scratch.write_segments(plan, &b.data))
                            .await?
                    }
                    Writer::Upspool => {
                        let (job, url) = api.ready_upload(&printer, size).await?;
                        let t = upload_range(
                            &server.base,
                            &url,
                            (0, size, size),
                            seg,
                            streams,
                            &b.data,
                        )
                        .await?;
                        let session = session_of(&url)?.to_string();
                        // The direct runs delete their file; dropping this one's pages
                        // likewise leaves every contender the same free memory (see
                        // BENCHMARKS.md on this VM's memory).
                        direct::evict(&blob_of(&server, &session))?;
                        if first.is_none() {
                            first = Some((job, session));
                        }
                        t
                    }
                    Writer::Loopback => {
                        b.direct(move |b| {
                            direct::loopback::write_segments(&b.scratch, plan, &b.data)
                        })
                        .await?
                    }
                    Writer::BareHttp => {
                        let run = bare_http::Run::start(&b.scratch, plan)?;
                        let t = upload_range(
                            &run.url,
                            &run.url,
                            (0, size, size),
                            seg,
                            streams,
                            &b.data,
                        )
                        .await?;
                        run.finish()?;
                        t
                    }
                };
                let cpu = (server.cpu_time()? - cpu.0, own_cpu_time()? - cpu.1);
                if WRITERS[i] == Writer::Upspool {
                    server_cpu.push(cpu.0);
                    switches.push(server.context_switches()?.saturating_sub(switched));
                }
                line += &format!(
                    " {:?} {:.0} MiB/s (CPU-s server {:.2}, bench {:.2});",
                    WRITERS[i],
                    mib_per_s(size, t),
                    cpu.0.as_secs_f64(),
                    cpu.1.as_secs_f64()
                );
                took[i].push(t);
            }
            eprintln!("{line}");
        }
        let best = took
            .clone()
            .map(|v| v.into_iter().min().expect("one round"));
        let medians = took.map(median);
        let upspool = WRITERS
            .iter()
            .position(|w| *w == Writer::Upspool)
            .expect("upspool runs");
        let loopback = WRITERS
            .iter()
            .position(|w| *w == Writer::Loopback)
            .expect("loopback");
        let bare = WRITERS
            .iter()
            .position(|w| *w == Writer::BareHttp)
            .expect("bare HTTP");
        // The machine's limit: the fastest way to write the bytes directly with the same
        // durability, whichever it was in this run.
        let fastest = |t: &[Duration; WRITERS.len()]| {
            DIRECT
                .iter()
                .map(|&i| (t[i], WRITERS[i]))
                .min()
                .expect("direct contenders")
        };
        let (limit, limit_by) = fastest(&medians);
        let what = format!("upload {}, {streams} stream(s)", b.upload_rows());
        let (of, speed) = (
            match p.rounds {
                1 => String::new(),
                n => format!(", median of {n}"),
            },
            mib_per_s(size, medians[upspool]),
        );
        rows.push(
            Row::new(
                1,
                format!("{what}{of}, beside the fastest direct writer ({limit_by:?})"),
                speed,
                "MiB/s",
            )
            .ratio_to(mib_per_s(size, limit), Some(0.8)),
        );
        if p.rounds > 1 {
            rows.push(
                Row::new(
                    1,
                    format!("  best of {}, beside the best direct run", p.rounds),
                    mib_per_s(size, best[upspool]),
                    "MiB/s",
                )
                .ratio_to(mib_per_s(size, fastest(&best).0), None),
            );
        }
        for (i, label) in [
            "  beside buffered direct writes (plain)",
            "  beside buffered direct writes with early writeback",
            "  beside uncached direct writes (the byte store's pattern)",
            "  beside uncached direct writes queued on io_uring (one thread)",
        ]
        .into_iter()
        .enumerate()
        {
            rows.push(
                Row::new(1, label, speed, "MiB/s").ratio_to(mib_per_s(size, medians[i]), None),
            );
        }
        // The networked writers: upspool beside each (what it adds to them), and each beside
        // the fastest direct writer (how near the target it gets on this machine).
        for (i, beside, itself) in [
            (
                loopback,
                "  beside loopback TCP + uncached writes, overlapped (no HTTP)",
                "  that loopback writer itself, beside the fastest direct writer",
            ),
            (
                bare,
                "  beside HTTP + uncached writes, nothing else (a bare server on upspool's hyper)",
                "  that bare HTTP writer itself, beside the fastest direct writer",
            ),
        ] {
            let theirs = mib_per_s(size, medians[i]);
            rows.push(Row::new(1, beside, speed, "MiB/s").ratio_to(theirs, None));
            rows.push(Row::new(1, itself, theirs, "MiB/s").ratio_to(mib_per_s(size, limit), None));
        }
        let gib = size as f64 / (1u64 << 30) as f64;
        rows.push(Row::new(
            1,
            "  server CPU time per GiB, median",
            median(server_cpu).as_secs_f64() / gib,
            "s",
        ));
        switches.sort_unstable();
        rows.push(Row::new(
            1,
            "  server context switches per GiB, median",
            switches[switches.len() / 2] as f64 / gib,
            "",
        ));
        // Where a segment's time went in the server, over this stream count's upspool runs.
        let what = format!("{} MiB segment", p.segment / MIB as usize);
        let phases = segment_phases(&api).await;
        rows.extend(phase_rows(1, &what, &phases_before, &phases));
    }

    let (job, session) = first.expect("one upload ran");
    let blob = blob_of(&server, &session);
    let size = p.upload;
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    // Cold: the file's pages are dropped before each read, so both read it from the disk (a
    // document printed long after its upload). Warm: from the page cache. Best of three each.
    for from_disk in [true, false] {
        let (mut via, mut raw, mut tcp) = (Duration::MAX, Duration::MAX, Duration::MAX);
        for _ in 0..3 {
            if from_disk {
                direct::evict(&blob)?;
            }
            let started = Instant::now();
            let n = {
                let (base, job) = (server.base.clone(), job.clone());
                on_own_thread(move || async move { Api::new(&base).download(&job).await }).await?
            };
            anyhow::ensure!(n == size, "downloaded {n} of {size} bytes");
            via = via.min(started.elapsed());
            let path = blob.clone();
            let (n, t) = tokio::task::spawn_blocking(move || {
                if from_disk {
                    direct::evict(&path)?;
                }
                direct::read_file(&path, 1 << 20)
            })
            .await??;
            anyhow::ensure!(n == size, "read {n} of {size} bytes");
            raw = raw.min(t);
            let path = blob.clone();
            let (n, t) = tokio::task::spawn_blocking(move || {
                if from_disk {
                    direct::evict(&path)?;
                }
                direct::loopback::send_file(&path, 512 << 10)
            })
            .await??;
            anyhow::ensure!(n == size, "sent {n} of {size} bytes");
            tcp = tcp.min(t);
        }
        eprintln!(
            "  download ({}): upspool {:.0} MiB/s, read {:.0}, loopback {:.0}",
            if from_disk { "from disk" } else { "cached" },
            mib_per_s(size, via),
            mib_per_s(size, raw),
            mib_per_s(size, tcp)
        );
        if from_disk {
            cold = vec![via, raw, tcp];
        } else {
            warm = vec![via, raw, tcp];
        }
    }
    let mib = size / MIB;
    rows.push(
        Row::new(
            5,
            format!("download {mib} MiB via $value, from disk (pages dropped first)"),
            mib_per_s(size, cold[0]),
            "MiB/s",
        )
        .ratio_to(mib_per_s(size, cold[1]), Some(0.8)),
    );
    rows.push(
        Row::new(
            5,
            "  the same beside the file sent over loopback TCP, from disk",
            mib_per_s(size, cold[0]),
            "MiB/s",
        )
        .ratio_to(mib_per_s(size, cold[2]), None),
    );
    rows.push(
        Row::new(
            5,
            "  that loopback sender itself, beside the direct read from disk",
            mib_per_s(size, cold[2]),
            "MiB/s",
        )
        .ratio_to(mib_per_s(size, cold[1]), None),
    );
    rows.push(
        Row::new(
            5,
            format!("download {mib} MiB via $value, warm page cache"),
            mib_per_s(size, warm[0]),
            "MiB/s",
        )
        .ratio_to(mib_per_s(size, warm[1]), None),
    );
    rows.push(
        Row::new(
            5,
            "  the same beside the file sent over loopback TCP, warm",
            mib_per_s(size, warm[0]),
            "MiB/s",
        )
        .ratio_to(mib_per_s(size, warm[2]), None),
    );
    Ok(rows)
}

/// Item 2: the server's peak RSS while `rss_uploads` documents are uploaded at once, at a
/// quarter of the size and at the full size (each on a fresh server).
pub async fn peak_memory(b: &Arc<Bench>) -> anyhow::Result<Vec<Row>> {
    let p = &b.plan;
    let mut peaks = Vec::new();
    for size in [p.rss_size / 4, p.rss_size] {
        let server = b.server()?;
        let api = Api::new(&server.base);
        let printer = api.printer().await?;
        let mut urls = Vec::new();
        for _ in 0..p.rss_uploads {
            urls.push(api.ready_upload(&printer, size).await?.1);
        }
        let idle = server.peak_rss()?;
        let tasks: Vec<_> = urls
            .into_iter()
            .map(|url| {
                let (base, data, seg) = (server.base.clone(), b.data.clone(), p.segment);
                tokio::spawn(async move {
                    upload_range(&base, &url, (0, size, size), seg, 1, &data).await
                })
            })
            .collect();
        for t in tasks {
            t.await??;
        }
        peaks.push((size, idle, server.peak_rss()?));
    }
    let small = peaks[0].2 as f64 / MIB as f64;
    let mut rows = Vec::new();
    for (size, idle, peak) in &peaks {
        let peak_mib = *peak as f64 / MIB as f64;
        let mut row = Row::new(
            2,
            format!(
                "server peak RSS, {} concurrent uploads of {} MiB (idle peak {:.1} MiB)",
                p.rss_uploads,
                size / MIB,
                *idle as f64 / MIB as f64
            ),
            peak_mib,
            "MiB",
        );
        if *size == p.rss_size {
            row = row.target(
                format!("<= 64 MiB, <= 1.25x the {} MiB run", p.rss_size / 4 / MIB),
                peak_mib <= 64.0 && peak_mib <= small * 1.25,
            );
        }
        rows.push(row);
    }
    Ok(rows)
}

/// Item 3: the latency of the request carrying the last missing bytes, for a small and a
/// large document (the median of `final_reps` uploads each).
pub async fn final_segment(b: &Arc<Bench>) -> anyhow::Result<Vec<Row>> {
    let p = &b.plan;
    let server = b.server()?;
    let api = Api::new(&server.base);
    let printer = api.printer().await?;
    let tail = p.final_segment as u64;
    let mut medians = Vec::new();
    for size in [p.final_small, p.final_large] {
        let (mut lat, mut direct) = (Vec::new(), Vec::new());
        for _ in 0..p.final_reps {
            let (_, url) = api.ready_upload(&printer, size).await?;
            upload_range(
                &server.base,
                &url,
                (0, size - tail, size),
                p.segment,
                1,
                &b.data,
            )
            .await?;
            let started = Instant::now();
            api.put(&url, size - tail, size, b.data.slice(..tail as usize))
                .await?;
            lat.push(started.elapsed());
            let seg = p.segment;
            direct.push(
                b.direct(move |b| b.scratch.final_write(size, seg, tail as usize, &b.data))
                    .await?,
            );
        }
        medians.push((
            size,
            Latencies::new(lat).quantile(0.5),
            ms(Latencies::new(direct).quantile(0.5)),
        ));
    }
    let (lo, hi) = (
        medians.iter().map(|m| m.1).min().expect("two sizes"),
        medians.iter().map(|m| m.1).max().expect("two sizes"),
    );
    let within = hi.as_secs_f64() <= 2.0 * lo.as_secs_f64();
    Ok(medians
        .iter()
        .map(|(size, lat, direct)| {
            Row::new(
                3,
                format!(
                    "final {} KiB segment of a {} MiB document, median of {}",
                    tail / 1024,
                    size / MIB,
                    p.final_reps
                ),
                ms(*lat),
                "ms",
            )
            .limit(*direct)
            .target("< 10 ms, sizes within 2x", ms(*lat) < 10.0 && within)
        })
        .collect())
}

/// Runs `f(worker, api)` on `workers` tasks at once, each with its own connection; returns the
/// total time and every latency the workers report.
async fn concurrently<F, Fut>(
    base: &str,
    workers: usize,
    f: F,
) -> anyhow::Result<(Duration, Latencies)>
where
    F: Fn(usize, Api) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Vec<Duration>>> + Send + 'static,
{
    let futures: Vec<_> = (0..workers).map(|w| f(w, Api::new(base))).collect();
    let started = Instant::now();
    let tasks: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    Ok((started.elapsed(), Latencies::new(all)))
}

/// Item 4: many small segments over many connections, and createUploadSession.
pub async fn small_requests(b: &Arc<Bench>) -> anyhow::Result<Vec<Row>> {
    let p = b.plan.clone();
    let server = b.server()?;
    let api = Api::new(&server.base);
    let printer = api.printer().await?;
    let (seg, per) = (p.small_segment, p.small_per_connection);
    let size = (seg * per) as u64;
    let mut urls = Vec::new();
    for _ in 0..p.connections {
        urls.push(api.ready_upload(&printer, size).await?.1);
    }
    let urls = Arc::new(urls);
    let data = b.data.slice(..seg);
    let phases_before = segment_phases(&api).await;
    let (took, lat) = concurrently(&server.base, p.connections, |w, api| {
        let (urls, data) = (urls.clone(), data.clone());
        async move {
            let mut v = Vec::with_capacity(per);
            for i in 0..per {
                let t = Instant::now();
                api.put(&urls[w], (i * seg) as u64, size, data.clone())
                    .await?;
                v.push(t.elapsed());
            }
            Ok(v)
        }
    })
    .await?;
    let conns = p.connections;
    let (dtook, dlat) = b
        .direct(move |b| b.scratch.small_writes(conns, per, &b.data[..seg]))
        .await?;
    let dlat = Latencies::new(dlat);
    let n = (p.connections * per) as f64;
    let what = format!("{} KiB segments, {} connections", seg / 1024, p.connections);
    let mut rows = vec![
        Row::new(
            4,
            format!("{what}: requests/s"),
            n / took.as_secs_f64(),
            "req/s",
        )
        .ratio_to(n / dtook.as_secs_f64(), None),
        Row::new(4, format!("{what}: p50"), lat.p50_ms(), "ms").limit(dlat.p50_ms()),
        Row::new(4, format!("{what}: p99"), lat.p99_ms(), "ms").limit(dlat.p99_ms()),
    ];
    // Where a request's time went in the server (the rest of p50 is outside these phases:
    // HTTP, the session lookup, the runtime's queues).
    let phases = segment_phases(&api).await;
    rows.extend(phase_rows(
        4,
        &format!("{} KiB segment", seg / 1024),
        &phases_before,
        &phases,
    ));

    // createUploadSession on fresh jobs (made first, not timed), same concurrency.
    let per = p.sessions.div_ceil(p.connections);
    let (_, jobs) = {
        let printer = printer.clone();
        let jobs = Arc::new(std::sync::Mutex::new(Vec::new()));
        let collected = jobs.clone();
        let r = concurrently(&server.base, p.connections, move |_, api| {
            let (printer, jobs) = (printer.clone(), jobs.clone());
            async move {
                for _ in 0..per {
                    let j = api.job(&printer).await?;
                    jobs.lock().expect("jobs").push(j);
                }
                Ok(vec![])
            }
        })
        .await?;
        let jobs = std::mem::take(&mut *collected.lock().expect("jobs"));
        (r, Arc::new(jobs))
    };
    let (took, lat) = concurrently(&server.base, p.connections, |w, api| {
        let jobs = jobs.clone();
        async move {
            let mut v = Vec::with_capacity(per);
            for job in jobs.iter().skip(w * per).take(per) {
                let t = Instant::now();
                api.session(job, 1 << 20).await?;
                v.push(t.elapsed());
            }
            Ok(v)
        }
    })
    .await?;
    let (count, conns) = (lat.len(), p.connections);
    let (dtook, _) = b
        .direct(move |b| b.scratch.documents(count, conns, &[]))
        .await?;
    rows.push(
        Row::new(
            4,
            format!(
                "createUploadSession, {} connections: requests/s",
                p.connections
            ),
            count as f64 / took.as_secs_f64(),
            "req/s",
        )
        .ratio_to(count as f64 / dtook.as_secs_f64(), None),
    );
    rows.push(Row::new(
        4,
        format!("createUploadSession, {} connections: p99", p.connections),
        lat.p99_ms(),
        "ms",
    ));
    Ok(rows)
}

/// Item 6: whole jobs (create, upload, start) by concurrent clients.
pub async fn whole_jobs(b: &Arc<Bench>) -> anyhow::Result<Vec<Row>> {
    let p = b.plan.clone();
    let server = b.server()?;
    let api = Api::new(&server.base);
    let printer = api.printer().await?;
    let data = b.data.slice(..p.job_size);
    let per = p.jobs_per_client;
    let (took, lat) = concurrently(&server.base, p.job_clients, |_, api| {
        let (printer, data) = (printer.clone(), data.clone());
        async move {
            let mut v = Vec::with_capacity(per);
            for _ in 0..per {
                let t = Instant::now();
                let (job, url) = api.ready_upload(&printer, data.len() as u64).await?;
                api.put(&url, 0, data.len() as u64, data.clone()).await?;
                api.start(&job).await?;
                v.push(t.elapsed());
            }
            Ok(v)
        }
    })
    .await?;
    let (count, clients, size) = (lat.len(), p.job_clients, p.job_size);
    let (dtook, dlat) = b
        .direct(move |b| b.scratch.documents(count, clients, &b.data[..size]))
        .await?;
    let dlat = Latencies::new(dlat);
    let what = format!(
        "jobs (create, upload {} KiB, start), {} clients",
        p.job_size / 1024,
        p.job_clients
    );
    Ok(vec![
        Row::new(
            6,
            format!("{what}: jobs/s"),
            count as f64 / took.as_secs_f64(),
            "jobs/s",
        )
        .ratio_to(count as f64 / dtook.as_secs_f64(), None),
        Row::new(6, format!("{what}: p50"), lat.p50_ms(), "ms").limit(dlat.p50_ms()),
        Row::new(6, format!("{what}: p99"), lat.p99_ms(), "ms").limit(dlat.p99_ms()),
    ])
}

/// The median of some durations (the upper one of an even count).
fn median(mut v: Vec<Duration>) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}
