//! Background clean-up: expired sessions and their bytes, sessions past their replay grace,
//! expired download grants, and the bytes of canceled or aborted jobs.

use chrono::{DateTime, Utc};

use crate::error::Result;
use crate::model::SessionState;
use crate::service::PrintService;

/// How many items one sweep handles per kind, so a sweep stays short.
const BATCH: u32 = 256;

/// What one sweep removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub expired_sessions: u64,
    pub ended_graces: u64,
    pub expired_grants: u64,
    pub ended_job_blobs: u64,
}

impl PrintService {
    /// Runs one sweep as of `now`.
    pub async fn sweep(&self, now: DateTime<Utc>) -> Result<SweepReport> {
        let mut report = SweepReport::default();
        for session in self.meta.sessions_to_sweep(now, BATCH).await? {
            match session.state {
                SessionState::Active => report.expired_sessions += 1,
                SessionState::Completed { .. } => report.ended_graces += 1,
            }
            self.discard_session(&session).await?;
        }
        report.expired_grants = self.meta.delete_expired_download_grants(now).await?;
        for (doc, key) in self.meta.blobs_of_ended_jobs(BATCH).await? {
            self.blobs.delete(&key).await?;
            self.meta.clear_document_blob(doc).await?;
            report.ended_job_blobs += 1;
        }
        if report != SweepReport::default() {
            tracing::info!(?report, "sweep");
        }
        Ok(report)
    }
}
