//! Fault injection: many uploads at once against the real server, which is SIGKILLed at random
//! moments (mid-segment, and with a completing segment in flight) and restarted on the same
//! data directory, again and again. The client resumes every upload from `GET {uploadUrl}`.
//!
//! Checked after every restart: every range ever acknowledged (202 or 201) is still reported
//! as received; a session is either completed together with its document and job, or not at
//! all; every session accepts the rest of its bytes (none is stuck). At the end every document
//! downloads with the SHA-256 of what was sent.
//!
//! SIGKILL does not lose the kernel's page cache, so this proves the protocol and the order of
//! writes, syncs and commits, not survival of a power cut.
//!
//! `UPSPOOL_CRASH_CYCLES` (default 20) sets the number of kill and restart cycles,
//! `UPSPOOL_CRASH_SEED` the seed (default: random), `UPSPOOL_CRASH_UPLOADS` how many uploads
//! run at once (default 5). A failure prints the seed to reproduce it.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::api::{random_bytes, sha256, Api, JobRef};
use common::Server;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use reqwest::StatusCode;
use serde_json::Value;

const MIB: u64 = 1024 * 1024;

/// Segment requests the kills cut off mid-flight (sent, never answered).
static CUT_OFF: AtomicU64 = AtomicU64::new(0);

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, not {v:?}"))
    })
}

/// A closed byte range.
type Range = (u64, u64);

fn overlaps(a: Range, b: Range) -> bool {
    a.0 <= b.1 && b.0 <= a.1
}

fn parse_ranges(status: &Value) -> Vec<Range> {
    status["nextExpectedRanges"]
        .as_array()
        .unwrap_or_else(|| panic!("nextExpectedRanges in {status}"))
        .iter()
        .map(|r| {
            let (a, b) = r.as_str().unwrap().split_once('-').unwrap();
            (a.parse().unwrap(), b.parse().unwrap())
        })
        .collect()
}

/// One upload as the client sees it.
struct Upload {
    name: String,
    job: JobRef,
    /// Path and query of the uploadUrl; the host changes with every restart.
    url_path: String,
    data: Arc<Vec<u8>>,
    /// Every range answered 202 or 201, ever.
    acked: Arc<Mutex<Vec<Range>>>,
    /// The segments it is cut into (shuffled once).
    segments: Vec<Range>,
    completed: bool,
    verified: bool,
}

impl Upload {
    fn total(&self) -> u64 {
        self.data.len() as u64
    }
}

struct Run {
    rng: StdRng,
    uploads: Vec<Upload>,
    next_id: u64,
    printer: Option<String>,
}

impl Run {
    async fn new_upload(&mut self, api: &Api, size: u64) -> Upload {
        let printer = match &self.printer {
            Some(p) => p.clone(),
            None => {
                let p = api.printer("Crash printer").await;
                self.printer = Some(p.clone());
                p
            }
        };
        let job = api.job(&format!("printers/{printer}")).await;
        let session = api.session(&job, size).await;
        let url = session["uploadUrl"].as_str().unwrap();
        let url_path = url[url.find("/uploadSessions/").unwrap()..].to_string();
        self.next_id += 1;
        let data = random_bytes(size as usize, self.rng.gen());
        // Segments of uneven sizes between 1 byte and 6 MiB, sent in random order.
        let mut segments = Vec::new();
        let mut start = 0;
        while start < size {
            let len = match self.rng.gen_range(0..10) {
                0 => self.rng.gen_range(1..=4096),
                _ => self.rng.gen_range(64 * 1024..=6 * MIB),
            }
            .min(size - start);
            segments.push((start, start + len - 1));
            start += len;
        }
        segments.shuffle(&mut self.rng);
        Upload {
            name: format!("upload {} ({size} bytes)", self.next_id),
            job,
            url_path,
            data: Arc::new(data),
            acked: Arc::default(),
            segments,
            completed: false,
            verified: false,
        }
    }

    /// A size up to 64 MiB: a few large, most small, now and then a tiny one.
    fn random_size(&mut self, large: bool) -> u64 {
        if large {
            self.rng.gen_range(32 * MIB..=64 * MIB)
        } else if self.rng.gen_bool(0.2) {
            self.rng.gen_range(1..=1024)
        } else {
            self.rng.gen_range(4096..=12 * MIB)
        }
    }
}

/// After a (re)start: what the server reports must include every acknowledged range, and a
/// completed session must mean a completed document and job (never half of it).
async fn check_upload(api: &Api, base: &str, u: &mut Upload) -> Vec<Range> {
    let url = format!("{base}{}", u.url_path);
    let resp = api.http.get(&url).send().await.expect("GET uploadUrl");
    assert_eq!(
        resp.status(),
        StatusCode::OK,
        "{}: GET on the session answered {} ({})",
        u.name,
        resp.status(),
        resp.text().await.unwrap_or_default()
    );
    let status: Value = resp.json().await.unwrap();
    let missing = parse_ranges(&status);
    for &a in u.acked.lock().unwrap().iter() {
        if let Some(m) = missing.iter().find(|&&m| overlaps(a, m)) {
            panic!(
                "{}: acknowledged range {}-{} is reported missing ({}-{})",
                u.name, a.0, a.1, m.0, m.1
            );
        }
    }
    let job = Api::expect(api.get(&u.job.job_path()).await, StatusCode::OK).await;
    let details = job["status"]["details"].as_array().unwrap();
    let pending = details.iter().any(|d| d == "uploadPending");
    let doc = Api::expect(api.get(&u.job.document_path()).await, StatusCode::OK).await;
    if missing.is_empty() {
        assert!(!pending, "{}: session complete but job {job}", u.name);
        assert_eq!(
            doc["size"],
            u.total(),
            "{}: completed document {doc}",
            u.name
        );
        u.completed = true;
    } else {
        assert!(
            pending,
            "{}: session incomplete but job has no uploadPending: {job}",
            u.name
        );
        assert!(!u.completed, "{}: completed, then incomplete again", u.name);
    }
    missing
}

/// Sends the segments that touch `missing` over `connections` connections. Records every
/// acknowledgement. Stops at the first transport error (the server was killed).
async fn send_segments(
    http: reqwest::Client,
    url: String,
    data: Arc<Vec<u8>>,
    acked: Arc<Mutex<Vec<Range>>>,
    queue: Arc<Mutex<Vec<Range>>>,
    name: String,
) -> Result<Option<Value>, String> {
    let total = data.len() as u64;
    let mut completion = None;
    loop {
        let Some((start, end)) = queue.lock().unwrap().pop() else {
            return Ok(completion);
        };
        let body = data[start as usize..=end as usize].to_vec();
        let resp = http
            .put(&url)
            .header("Content-Range", format!("bytes {start}-{end}/{total}"))
            .header("Content-Type", "application/octet-stream")
            .body(body)
            .send()
            .await;
        let resp = match resp {
            Ok(r) => r,
            Err(_) => {
                // Killed mid-request: resent after the restart.
                CUT_OFF.fetch_add(1, Ordering::Relaxed);
                return Ok(completion);
            }
        };
        let status = resp.status();
        let text = match resp.text().await {
            Ok(t) => t,
            Err(_) => {
                CUT_OFF.fetch_add(1, Ordering::Relaxed);
                return Ok(completion);
            }
        };
        match status {
            StatusCode::ACCEPTED => acked.lock().unwrap().push((start, end)),
            StatusCode::CREATED => {
                acked.lock().unwrap().push((start, end));
                completion = Some(serde_json::from_str(&text).unwrap());
            }
            s => {
                return Err(format!(
                    "{name}: PUT bytes {start}-{end}/{total} answered {s}: {text}"
                ))
            }
        }
    }
}

#[test]
fn acknowledged_bytes_survive_random_kills() {
    let cycles = env_u64("UPSPOOL_CRASH_CYCLES").unwrap_or(20);
    let seed = env_u64("UPSPOOL_CRASH_SEED").unwrap_or_else(|| rand::thread_rng().gen());
    let parallel = env_u64("UPSPOOL_CRASH_UPLOADS").unwrap_or(5).max(1) as usize;
    eprintln!("crash test: UPSPOOL_CRASH_SEED={seed} UPSPOOL_CRASH_CYCLES={cycles} UPSPOOL_CRASH_UPLOADS={parallel}");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let result = rt.block_on(async move { tokio::spawn(crash_run(cycles, seed, parallel)).await });
    if let Err(e) = result {
        let msg = e
            .into_panic()
            .downcast::<String>()
            .map(|s| *s)
            .unwrap_or_else(|p| {
                p.downcast::<&str>()
                    .map(|s| s.to_string())
                    .unwrap_or_default()
            });
        panic!("crash test failed (reproduce with UPSPOOL_CRASH_SEED={seed} UPSPOOL_CRASH_CYCLES={cycles} UPSPOOL_CRASH_UPLOADS={parallel}): {msg}");
    }
}

async fn crash_run(cycles: u64, seed: u64, parallel: usize) {
    let mut server = Server::start(&["--insecure-dev-auth"], &[]);
    let mut run = Run {
        rng: StdRng::seed_from_u64(seed),
        uploads: Vec::new(),
        next_id: 0,
        printer: None,
    };
    let started = Instant::now();
    let (mut kills_mid_completion, mut completions) = (0u64, 0u64);

    for cycle in 0..=cycles {
        let last = cycle == cycles;
        let base = server.base_url().to_string();
        let api = Api::new(&base);

        // Resume: check every upload against what was acknowledged, then plan what to send.
        let mut plans: Vec<(usize, Vec<Range>)> = Vec::new();
        for (i, u) in run
            .uploads
            .iter_mut()
            .enumerate()
            .filter(|(_, u)| !u.verified)
        {
            let missing = check_upload(&api, &base, u).await;
            let todo: Vec<Range> = u
                .segments
                .iter()
                .copied()
                .filter(|&s| missing.iter().any(|&m| overlaps(s, m)))
                .collect();
            if !u.completed {
                plans.push((i, todo));
            }
        }
        // Completed uploads are verified byte for byte and replaced by new ones.
        for u in run
            .uploads
            .iter_mut()
            .filter(|u| u.completed && !u.verified)
        {
            let (_, bytes) = api.download(&u.job).await;
            assert_eq!(
                sha256(&bytes),
                sha256(&u.data),
                "{}: downloaded bytes differ",
                u.name
            );
            u.verified = true;
            completions += 1;
        }
        if last {
            break;
        }
        let live = run.uploads.iter().filter(|u| !u.verified).count();
        for i in live..parallel {
            // The first upload is large, and later one in four in the first slot.
            let large = i == 0 && (run.next_id == 0 || run.rng.gen_bool(0.25));
            let size = run.random_size(large);
            let u = run.new_upload(&api, size).await;
            plans.push((run.uploads.len(), u.segments.clone()));
            run.uploads.push(u);
        }

        // One upload in four cycles holds back its last segment and sends it right before
        // the kill, so that the kill lands around its completion.
        // The upload closest to done is the one held back.
        let closest = plans
            .iter()
            .filter(|(_, todo)| !todo.is_empty())
            .min_by_key(|(_, todo)| todo.len())
            .map(|(i, _)| *i);
        let hold_back = run.rng.gen_bool(0.25);
        let mut held = None;
        let mut tasks = Vec::new();
        for (i, mut todo) in plans {
            let u = &run.uploads[i];
            todo.shuffle(&mut run.rng);
            if hold_back && Some(i) == closest {
                held = todo.pop().map(|seg| (i, seg));
            }
            let queue = Arc::new(Mutex::new(todo));
            let connections = run.rng.gen_range(1..=3);
            for _ in 0..connections {
                tasks.push(tokio::spawn(send_segments(
                    api.http.clone(),
                    format!("{base}{}", u.url_path),
                    u.data.clone(),
                    u.acked.clone(),
                    queue.clone(),
                    u.name.clone(),
                )));
            }
        }

        // Let traffic run for a random while, then kill.
        let run_for = Duration::from_millis(run.rng.gen_range(50..=700));
        tokio::time::sleep(run_for).await;
        let mut final_put = None;
        if let Some((i, seg)) = held {
            let u = &run.uploads[i];
            let queue = Arc::new(Mutex::new(vec![seg]));
            final_put = Some(tokio::spawn(send_segments(
                api.http.clone(),
                format!("{base}{}", u.url_path),
                u.data.clone(),
                u.acked.clone(),
                queue,
                u.name.clone(),
            )));
            kills_mid_completion += 1;
            tokio::time::sleep(Duration::from_millis(run.rng.gen_range(0..=30))).await;
        }
        tokio::task::block_in_place(|| server.kill());
        for t in tasks.into_iter().chain(final_put) {
            if let Err(e) = t.await.unwrap() {
                panic!("cycle {cycle}: {e}");
            }
        }
        tokio::task::block_in_place(|| server.restart());
    }

    // Finally, without kills: every upload must finish from where it is.
    let base = server.base_url().to_string();
    let api = Api::new(&base);
    for u in run.uploads.iter_mut().filter(|u| !u.verified) {
        let missing = check_upload(&api, &base, u).await;
        let todo: Vec<Range> = u
            .segments
            .iter()
            .copied()
            .filter(|&s| missing.iter().any(|&m| overlaps(s, m)))
            .collect();
        let queue = Arc::new(Mutex::new(todo));
        let done = send_segments(
            api.http.clone(),
            format!("{base}{}", u.url_path),
            u.data.clone(),
            u.acked.clone(),
            queue,
            u.name.clone(),
        )
        .await
        .unwrap_or_else(|e| panic!("final round: {e}"));
        assert!(
            u.completed || done.is_some(),
            "{}: the last missing bytes did not complete the session",
            u.name
        );
        assert!(check_upload(&api, &base, u).await.is_empty());
        let (_, bytes) = api.download(&u.job).await;
        assert_eq!(sha256(&bytes), sha256(&u.data), "{}: bytes differ", u.name);
        u.verified = true;
        completions += 1;
    }
    let bytes: u64 = run.uploads.iter().map(Upload::total).sum();
    eprintln!(
        "crash test: {cycles} kills ({kills_mid_completion} around a completing segment), {} segment requests cut off, {} uploads, {completions} verified, {:.1} MiB, {:.1?}",
        CUT_OFF.load(Ordering::Relaxed),
        run.uploads.len(),
        bytes as f64 / MIB as f64,
        started.elapsed()
    );
}
