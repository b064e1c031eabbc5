//! Printing a file: create the job, create the upload session, upload, start the job;
//! resuming an interrupted run from its state file instead when there is one.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::error::{ClientError, Result};
use crate::graph::{CreatedJob, Graph, Scope};
use crate::plan::{total, ByteRange};
use crate::state::{self, ResumeState, StateStore};
use crate::upload::{upload, Progress, UploadConfig};

/// What to print, where, and how.
#[derive(Clone, Debug)]
pub struct PrintRequest {
    pub file: PathBuf,
    pub scope: Scope,
    /// A `printJobConfiguration` object.
    pub configuration: Value,
    pub content_type: String,
    /// `documentName` and the job's `displayName`.
    pub document_name: String,
    pub upload: UploadConfig,
    /// Where resume state lives; `None` disables resuming altogether.
    pub state: Option<StateStore>,
    /// Continue an interrupted upload of the same file to the same target (else start fresh).
    pub resume: bool,
}

/// What happened.
#[derive(Clone, Debug)]
pub struct PrintOutcome {
    pub job_id: String,
    pub document_id: String,
    pub size: u64,
    pub file_sha256: String,
    /// Bytes put into request bodies by this run.
    pub bytes_sent: u64,
    /// Bytes the service already had when this run began uploading.
    pub bytes_already_uploaded: u64,
    pub retries: u32,
    /// True when this run continued an earlier one's session.
    pub resumed: bool,
    /// The job's status after `start`.
    pub status: Value,
}

/// Hashes the file (streamed), for the resume key and the report.
pub async fn file_sha256(path: &Path) -> Result<String> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        use sha2::Digest;
        use std::io::Read;
        let what = || format!("reading {}", path.display());
        let mut f = std::fs::File::open(&path).map_err(|e| ClientError::io(what(), e))?;
        let mut h = sha2::Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = f.read(&mut buf).map_err(|e| ClientError::io(what(), e))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        Ok(hex::encode(h.finalize()))
    })
    .await
    .map_err(|e| ClientError::io("hashing the file", std::io::Error::other(e)))?
}

/// The resume key: same file content, server, target, options and type = same upload.
fn resume_key(graph: &Graph, req: &PrintRequest, sha: &str) -> String {
    state::key(&[
        sha,
        graph.server(),
        &req.scope.path(),
        &req.configuration.to_string(),
        &req.content_type,
        &req.document_name,
    ])
}

/// Where an upload continues from.
struct Session {
    job: CreatedJob,
    url: String,
    missing: Vec<ByteRange>,
    resumed: bool,
}

/// Prints `req.file`. Progress events go to `progress`; retries are announced there too.
pub async fn print(
    graph: &Graph,
    req: &PrintRequest,
    progress: &dyn Progress,
) -> Result<PrintOutcome> {
    let size = tokio::fs::metadata(&req.file)
        .await
        .map_err(|e| ClientError::io(format!("reading {}", req.file.display()), e))?
        .len();
    if size == 0 {
        return Err(ClientError::UnsupportedContent(format!(
            "{} is empty: there is nothing to print",
            req.file.display()
        )));
    }
    let sha = file_sha256(&req.file).await?;
    let key = resume_key(graph, req, &sha);
    let retry = &req.upload.retry;
    let on_retry = |e: &ClientError, d: Duration| progress.retrying(e, d);

    let mut session = match (&req.state, req.resume) {
        (Some(store), true) => resume(graph, req, store, &key, size).await?,
        (Some(store), false) => {
            if let Some(old) = store.load(&key) {
                abandon(graph, &old).await;
                store.remove(&key);
            }
            None
        }
        (None, _) => None,
    };
    // At most one fresh start after a resumed session vanishes mid-way.
    for attempt in 0..2 {
        let s = match session.take() {
            Some(s) => s,
            None => fresh(graph, req, &key, &sha, size, progress).await?,
        };
        let already = size - total(&s.missing);
        match upload(
            graph,
            &s.url,
            &req.file,
            size,
            s.missing.clone(),
            &req.upload,
            progress,
        )
        .await
        {
            Ok(report) => {
                let status = retry
                    .run(true, on_retry, || graph.start_job(&req.scope, &s.job.job))
                    .await?;
                if let Some(store) = &req.state {
                    store.remove(&key);
                }
                return Ok(PrintOutcome {
                    job_id: s.job.job,
                    document_id: s.job.document,
                    size,
                    file_sha256: sha,
                    bytes_sent: report.bytes_sent,
                    bytes_already_uploaded: already,
                    retries: report.retries,
                    resumed: s.resumed,
                    status,
                });
            }
            Err(ClientError::SessionGone) if s.resumed && attempt == 0 => {
                if let Some(store) = &req.state {
                    store.remove(&key);
                }
                continue;
            }
            Err(e) => return Err(e),
        }
    }
    Err(ClientError::SessionGone)
}

/// The session of an earlier run, if it is still alive. A vanished or expired one is
/// forgotten (and its job canceled), so the caller starts over cleanly.
async fn resume(
    graph: &Graph,
    req: &PrintRequest,
    store: &StateStore,
    key: &str,
    size: u64,
) -> Result<Option<Session>> {
    let Some(old) = store.load(key) else {
        return Ok(None);
    };
    let retry = &req.upload.retry;
    let status = retry
        .run(
            true,
            |_, _| {},
            || graph.session_status(&old.upload_url, size),
        )
        .await;
    match status {
        Ok(s) if s.expiration.is_none_or(|t| t > chrono::Utc::now()) => Ok(Some(Session {
            job: CreatedJob {
                job: old.job_id,
                document: old.document_id,
            },
            url: old.upload_url,
            missing: s.missing,
            resumed: true,
        })),
        Ok(_) | Err(ClientError::SessionGone) => {
            store.remove(key);
            // The session is gone, but the upload may have completed before: then the job
            // only needs starting. A job still waiting for its upload is abandoned.
            let job = CreatedJob {
                job: old.job_id.clone(),
                document: old.document_id.clone(),
            };
            match scope_of(&old) {
                Some(scope) => match graph.job(&scope, &old.job_id).await {
                    Ok(v) if upload_pending(&v) => {
                        let _ = graph.cancel_job(&scope, &old.job_id).await;
                        Ok(None)
                    }
                    Ok(v) if !is_final(&v) => Ok(Some(Session {
                        job,
                        url: old.upload_url,
                        missing: Vec::new(),
                        resumed: true,
                    })),
                    _ => Ok(None),
                },
                None => Ok(None),
            }
        }
        Err(e) => Err(e),
    }
}

/// `shares/{id}` or `printers/{id}` of a state file.
fn scope_of(old: &ResumeState) -> Option<Scope> {
    match old.scope.split_once('/') {
        Some(("shares", id)) => Some(Scope::Share(id.into())),
        Some(("printers", id)) => Some(Scope::Printer(id.into())),
        _ => None,
    }
}

/// Whether a job still waits for its document's upload.
fn upload_pending(job: &Value) -> bool {
    job["status"]["details"]
        .as_array()
        .is_some_and(|d| d.iter().any(|x| x == "uploadPending"))
}

/// Whether a job has ended (completed, canceled, aborted).
fn is_final(job: &Value) -> bool {
    matches!(
        job["status"]["state"].as_str(),
        Some("completed" | "canceled" | "aborted")
    )
}

/// Best effort: cancel the job of a session that will not be continued (`--no-resume`) if it
/// still waits for its upload, so that it does not wait for ever. Failure changes nothing
/// for the new run.
async fn abandon(graph: &Graph, old: &ResumeState) {
    let Some(scope) = scope_of(old) else { return };
    if let Ok(v) = graph.job(&scope, &old.job_id).await {
        if upload_pending(&v) {
            let _ = graph.cancel_job(&scope, &old.job_id).await;
        }
    }
}

/// A new job and upload session, recorded in the state file before any byte is sent.
async fn fresh(
    graph: &Graph,
    req: &PrintRequest,
    key: &str,
    sha: &str,
    size: u64,
    progress: &dyn Progress,
) -> Result<Session> {
    let retry = &req.upload.retry;
    let on_retry = |e: &ClientError, d: Duration| progress.retrying(e, d);
    // Creating is not idempotent: retried only when the service certainly did nothing.
    let job = retry
        .run(false, on_retry, || {
            graph.create_job(&req.scope, &req.configuration, &req.document_name)
        })
        .await?;
    let (url, status) = retry
        .run(false, on_retry, || {
            graph.create_upload_session(
                &req.scope,
                &job,
                &req.document_name,
                &req.content_type,
                size,
            )
        })
        .await?;
    if let Some(store) = &req.state {
        let mut st = ResumeState {
            version: state::VERSION,
            server: graph.server().to_string(),
            scope: req.scope.path(),
            job_id: job.job.clone(),
            document_id: job.document.clone(),
            upload_url: url.clone(),
            expiration: None,
            size,
            content_type: req.content_type.clone(),
            file_sha256: sha.to_string(),
        };
        st.expiration = status.expiration.map(|t| t.to_rfc3339());
        store.save(key, &st)?;
    }
    Ok(Session {
        job,
        url,
        missing: status.missing,
        resumed: false,
    })
}

/// Follows a job until it reaches a final state (completed, canceled, aborted) and returns
/// it, polling every `interval` (transient errors are retried with `retry`).
pub async fn wait_for_job(
    graph: &Graph,
    scope: &Scope,
    job: &str,
    interval: Duration,
    retry: &crate::retry::RetryPolicy,
) -> Result<Value> {
    loop {
        let v = retry.run(true, |_, _| {}, || graph.job(scope, job)).await?;
        if is_final(&v) {
            return Ok(v);
        }
        tokio::time::sleep(interval).await;
    }
}
