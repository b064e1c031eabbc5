//! The client commands (`print`, `printers`, `shares`, `jobs`, `job`, `cancel`): argument
//! handling and output. The Graph calls and the upload engine are in `upspool-client`.
//!
//! Exit codes: 0 success, 1 runtime failure (the service refused, could not be reached, or
//! retries ran out), 2 usage, configuration or unsupported input (nothing was sent), 3 a job
//! followed with `--wait` ended without completing (or the wait timed out), 130 interrupted
//! by Ctrl-C (the upload can be resumed).

mod output;
mod progress;
pub mod settings;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Map, Value};
use upspool_client::print::{print, wait_for_job, PrintRequest};
use upspool_client::retry::RetryPolicy;
use upspool_client::state::StateStore;
use upspool_client::upload::UploadConfig;
use upspool_client::{ClientError, Graph, Scope};

use crate::cli::{ColorMode, ConnectArgs, Duplex, JobArgs, JobsArgs, Orientation, PrintArgs};

/// How a client command failed, and with which exit code.
pub struct Failure {
    pub code: u8,
    pub message: String,
    /// The command already printed its `--json` report (which says what happened).
    pub reported: bool,
}

const RUNTIME: u8 = 1;
const USAGE: u8 = 2;
const NOT_COMPLETED: u8 = 3;
/// 128 + SIGINT, as shells report it.
const INTERRUPTED: u8 = 130;

fn usage(message: impl Into<String>) -> Failure {
    Failure {
        code: USAGE,
        message: message.into(),
        reported: false,
    }
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        let code = match e {
            ClientError::UnsupportedContent(_) | ClientError::Config(_) => USAGE,
            _ => RUNTIME,
        };
        Failure {
            code,
            message: e.to_string(),
            reported: false,
        }
    }
}

type Outcome = Result<(), Failure>;

fn graph(connect: &ConnectArgs) -> Result<Graph, Failure> {
    let s = settings::resolve(connect, &crate::config::process_env).map_err(|e| usage(e.0))?;
    Ok(Graph::new(&s)?)
}

/// Runs a client command on a fresh runtime; the result is its exit code.
pub fn run(command: crate::cli::Command) -> std::process::ExitCode {
    use crate::cli::Command;
    let (json, result) = match command {
        Command::Print(a) => (a.connect.json, block(print_cmd(*a))),
        Command::Printers(a) => (a.connect.json, block(list_cmd(a.connect, true))),
        Command::Shares(a) => (a.connect.json, block(list_cmd(a.connect, false))),
        Command::Jobs(a) => (a.connect.json, block(jobs_cmd(*a))),
        Command::Job(a) => (a.connect.json, block(job_cmd(*a, false))),
        Command::Cancel(a) => (a.connect.json, block(job_cmd(*a, true))),
        _ => unreachable!("not a client command"),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(f) => {
            if json && !f.reported {
                output::json(&json!({"error": {"message": f.message, "exitCode": f.code}}));
            }
            eprintln!("upspool: error: {}", f.message);
            std::process::ExitCode::from(f.code)
        }
    }
}

fn block(f: impl std::future::Future<Output = Outcome>) -> Outcome {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure {
            code: RUNTIME,
            message: format!("cannot start the runtime: {e}"),
            reported: false,
        })?;
    let result = runtime.block_on(f);
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

/// The resume state directory: `UPSPOOL_CACHE_DIR`, else `$XDG_CACHE_HOME/upspool`, else
/// `~/.cache/upspool`. `None` (no home at all) disables resuming.
fn cache_dir() -> Option<PathBuf> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    env("UPSPOOL_CACHE_DIR").map(PathBuf::from).or_else(|| {
        env("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .map(|d| d.join("upspool"))
    })
}

/// `printJobConfiguration` from the flags; only what was given.
fn configuration(a: &PrintArgs) -> Result<Value, Failure> {
    let mut c = Map::new();
    if let Some(n) = a.copies {
        c.insert("copies".into(), json!(n));
    }
    if let Some(d) = a.duplex {
        let v = match d {
            Duplex::OneSided => "oneSided",
            Duplex::LongEdge => "flipOnLongEdge",
            Duplex::ShortEdge => "flipOnShortEdge",
        };
        c.insert("duplexMode".into(), json!(v));
    }
    if let Some(m) = a.color {
        let v = match m {
            ColorMode::Color => "color",
            ColorMode::Bw => "blackAndWhite",
            ColorMode::Grayscale => "grayscale",
            ColorMode::Auto => "auto",
        };
        c.insert("colorMode".into(), json!(v));
    }
    if let Some(o) = a.orientation {
        let v = match o {
            Orientation::Portrait => "portrait",
            Orientation::Landscape => "landscape",
            Orientation::ReversePortrait => "reversePortrait",
            Orientation::ReverseLandscape => "reverseLandscape",
        };
        c.insert("orientation".into(), json!(v));
    }
    if let Some(p) = &a.pages {
        c.insert("pageRanges".into(), page_ranges(p).map_err(usage)?);
    }
    if let Some(m) = &a.media {
        c.insert("mediaSize".into(), json!(m));
    }
    if let Some(d) = a.dpi {
        c.insert("dpi".into(), json!(d));
    }
    Ok(Value::Object(c))
}

/// `1-3,5` -> `[{"start":1,"end":3},{"start":5,"end":5}]`.
fn page_ranges(s: &str) -> Result<Value, String> {
    let bad = || format!("invalid --pages {s:?}: expected page ranges like 1-3,5");
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let start: u32 = a.trim().parse().map_err(|_| bad())?;
        let end: u32 = b.trim().parse().map_err(|_| bad())?;
        if start == 0 || end < start {
            return Err(bad());
        }
        out.push(json!({"start": start, "end": end}));
    }
    Ok(Value::Array(out))
}

async fn scope_of(
    graph: &Graph,
    share: Option<&str>,
    printer: Option<&str>,
) -> Result<Scope, Failure> {
    match (share, printer) {
        (Some(s), _) => Ok(Scope::Share(graph.resolve_share(s).await?)),
        (None, Some(p)) => Ok(Scope::Printer(p.to_string())),
        (None, None) => Err(usage("give --share ID|NAME or --printer ID")),
    }
}

async fn print_cmd(a: PrintArgs) -> Outcome {
    // Everything that can be refused locally is refused before the first request.
    let configuration = configuration(&a)?;
    let segment_size = match &a.segment_size {
        Some(s) => crate::config::parse_size(s)
            .map_err(|e| usage(format!("invalid value {s:?} for --segment-size: {e}")))?,
        None => UploadConfig::default().segment_size,
    };
    let wait_timeout = match &a.wait_timeout {
        Some(s) => Some(
            crate::config::parse_duration(s)
                .map_err(|e| usage(format!("invalid value {s:?} for --wait-timeout: {e}")))?,
        ),
        None => None,
    };
    let readable = std::fs::File::open(&a.file).and_then(|f| f.metadata());
    match readable {
        Ok(m) if m.is_file() => {}
        Ok(_) => return Err(usage(format!("{} is not a file", a.file.display()))),
        Err(e) => return Err(usage(format!("cannot read {}: {e}", a.file.display()))),
    }
    let content_type = match &a.content_type {
        Some(t) => t.clone(),
        None => upspool_client::sniff::detect_file(&a.file)?.to_string(),
    };
    let graph = graph(&a.connect)?;
    let scope = scope_of(&graph, a.share.as_deref(), a.printer.as_deref()).await?;
    let document_name = a
        .file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "document".into());
    let retry = RetryPolicy {
        retries: a.retries,
        ..RetryPolicy::default()
    };
    let req = PrintRequest {
        file: a.file.clone(),
        scope: scope.clone(),
        configuration,
        content_type: content_type.clone(),
        document_name,
        upload: UploadConfig {
            streams: a.streams.into(),
            segment_size,
            retry: retry.clone(),
        },
        state: cache_dir().map(StateStore::new),
        resume: !a.no_resume,
    };
    let progress = progress::for_stderr(a.quiet);
    // Ctrl-C leaves the resume state in place: the same command continues the upload.
    let outcome = tokio::select! {
        r = print(&graph, &req, progress.as_ref()) => r?,
        _ = tokio::signal::ctrl_c() => {
            return Err(Failure {
                code: INTERRUPTED,
                message: "interrupted; run the same command again to resume the upload".into(),
                reported: false,
            })
        }
    };
    drop(progress);
    let mut report = json!({
        "jobId": outcome.job_id,
        "documentId": outcome.document_id,
        "scope": scope.path(),
        "file": a.file.display().to_string(),
        "size": outcome.size,
        "contentType": content_type,
        "sha256": outcome.file_sha256,
        "bytesSent": outcome.bytes_sent,
        "bytesAlreadyUploaded": outcome.bytes_already_uploaded,
        "retries": outcome.retries,
        "resumed": outcome.resumed,
        "state": outcome.status["state"],
    });
    if !a.connect.json {
        println!("{}", outcome.job_id);
    }
    let mut result = Ok(());
    if a.wait {
        let follow = wait_for_job(
            &graph,
            &scope,
            &outcome.job_id,
            Duration::from_millis(500),
            &retry,
        );
        let final_job = match wait_timeout {
            Some(t) => tokio::time::timeout(t, follow).await.ok(),
            None => Some(follow.await),
        };
        let state = match final_job {
            Some(job) => job?["status"]["state"].as_str().unwrap_or("").to_string(),
            None => "timedOut".to_string(),
        };
        report["state"] = json!(state);
        if state != "completed" {
            result = Err(Failure {
                code: NOT_COMPLETED,
                message: format!("job {} ended {state}, not completed", outcome.job_id),
                reported: a.connect.json,
            });
        } else if !a.quiet {
            eprintln!("upspool: job {} completed", outcome.job_id);
        }
    }
    if a.connect.json {
        output::json(&report);
    }
    result
}

async fn list_cmd(connect: ConnectArgs, printers: bool) -> Outcome {
    let graph = graph(&connect)?;
    let items = if printers {
        graph.printers().await?
    } else {
        graph.shares().await?
    };
    if connect.json {
        output::json(&Value::Array(items));
    } else if printers {
        output::printers(&items);
    } else {
        output::shares(&items);
    }
    Ok(())
}

async fn jobs_cmd(a: JobsArgs) -> Outcome {
    let graph = graph(&a.connect)?;
    let scopes = match (&a.target.share, &a.target.printer) {
        (None, None) => graph
            .shares()
            .await?
            .iter()
            .filter_map(|s| s["id"].as_str().map(|id| Scope::Share(id.into())))
            .collect(),
        (s, p) => vec![scope_of(&graph, s.as_deref(), p.as_deref()).await?],
    };
    let mut jobs: Vec<Value> = Vec::new();
    for scope in &scopes {
        for job in graph.jobs(scope).await? {
            // Shares of one printer list the same jobs.
            if !jobs.iter().any(|j| j["id"] == job["id"]) {
                jobs.push(job);
            }
        }
    }
    // Newest first across scopes too (the timestamps have one fixed format).
    jobs.sort_by(|a, b| {
        let t = |v: &Value| v["createdDateTime"].as_str().unwrap_or("").to_string();
        t(b).cmp(&t(a))
    });
    if a.connect.json {
        output::json(&Value::Array(jobs));
    } else {
        output::jobs(&jobs);
    }
    Ok(())
}

async fn job_cmd(a: JobArgs, cancel: bool) -> Outcome {
    let graph = graph(&a.connect)?;
    let (scope, job) = match (&a.target.share, &a.target.printer) {
        (None, None) => graph.find_job(&a.id).await?,
        (s, p) => {
            let scope = scope_of(&graph, s.as_deref(), p.as_deref()).await?;
            let job = graph.job(&scope, &a.id).await?;
            (scope, job)
        }
    };
    let job = if cancel {
        graph.cancel_job(&scope, &a.id).await?;
        graph.job(&scope, &a.id).await?
    } else {
        job
    };
    if a.connect.json {
        output::json(&job);
    } else {
        output::job(&job, &scope);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_ranges_parse_and_refuse() {
        assert_eq!(
            page_ranges("1-3, 5").unwrap(),
            json!([{"start":1,"end":3},{"start":5,"end":5}])
        );
        for bad in ["", "0-2", "3-1", "a", "1-"] {
            assert!(page_ranges(bad).is_err(), "{bad}");
        }
    }
}
