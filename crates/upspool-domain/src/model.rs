//! The resources upspool keeps: printers, shares, jobs, documents, upload sessions and
//! download grants. Plain data; the rules that change them live in `service` and `upload`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::configuration::PrintJobConfiguration;
use crate::wire_enum;

/// Job ids are decimal strings on the wire (`"1825"`), drawn from one global counter.
pub type JobId = i64;

/// Where a blob's bytes live in the byte store. Opaque to everyone but the store; one per
/// upload session, so a replaced session's partial bytes never mix with the new one's.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BlobKey(pub String);

impl BlobKey {
    /// The key for the bytes of one upload session.
    pub fn for_session(session: Uuid) -> Self {
        BlobKey(format!("s-{session}"))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Printer {
    pub id: Uuid,
    pub display_name: String,
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    pub created: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Share {
    pub id: Uuid,
    pub display_name: String,
    pub printer_id: Uuid,
    pub allow_all_users: bool,
    pub created: DateTime<Utc>,
}

/// One entry of a share's access list: a user (`allowedUsers`) or a group (`allowedGroups`),
/// by object id (or, for users, user principal name).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShareMember {
    User(String),
    Group(String),
}

/// Graph's `userIdentity`: who created a job. `ipAddress` is always null in upspool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserIdentity {
    pub id: String,
    pub display_name: Option<String>,
    pub user_principal_name: Option<String>,
}

wire_enum! {
    /// `printJobProcessingState`.
    pub enum JobState {
        Unknown = "unknown",
        Pending = "pending",
        Processing = "processing",
        Paused = "paused",
        Stopped = "stopped",
        Completed = "completed",
        Canceled = "canceled",
        Aborted = "aborted",
        UnknownFutureValue = "unknownFutureValue",
    }
}

impl JobState {
    /// Completed, canceled and aborted jobs never change again.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            JobState::Completed | JobState::Canceled | JobState::Aborted
        )
    }

    /// Canceled and aborted jobs: their documents' bytes are discarded (the sweeper deletes
    /// them), so from the moment the job ends they are no longer downloaded.
    pub fn discards_content(&self) -> bool {
        matches!(self, JobState::Canceled | JobState::Aborted)
    }

    /// The human-readable text Graph pairs with each state.
    pub fn description(&self) -> &'static str {
        match self {
            JobState::Unknown | JobState::UnknownFutureValue => "The print job's state is unknown.",
            JobState::Pending => "The print job is waiting for the printer.",
            JobState::Processing => "The print job is currently being processed.",
            JobState::Paused => "The job is not a candidate for processing yet.",
            JobState::Stopped => "The printer has a problem that must be fixed before the job can continue.",
            JobState::Completed => {
                "The print job has completed successfully and no further processing will take place."
            }
            JobState::Canceled => "The print job was canceled by the user.",
            JobState::Aborted => "The print job was aborted.",
        }
    }
}

wire_enum! {
    /// `printJobStateDetail`.
    pub enum JobStateDetail {
        UploadPending = "uploadPending",
        Transforming = "transforming",
        CompletedSuccessfully = "completedSuccessfully",
        CompletedWithWarnings = "completedWithWarnings",
        CompletedWithErrors = "completedWithErrors",
        ReleaseWait = "releaseWait",
        Interpreting = "interpreting",
        UnknownFutureValue = "unknownFutureValue",
    }
}

/// `printJobStatus` without the derived description.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobStatus {
    pub state: JobState,
    pub details: Vec<JobStateDetail>,
    pub is_acquired_by_printer: bool,
}

impl JobStatus {
    /// The status of a job that was just created: waiting for its document.
    pub fn upload_pending() -> Self {
        JobStatus {
            state: JobState::Paused,
            details: vec![JobStateDetail::UploadPending],
            is_acquired_by_printer: false,
        }
    }

    pub fn description(&self) -> &'static str {
        self.state.description()
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Job {
    pub id: JobId,
    pub printer_id: Uuid,
    /// The share the job was created through, if any.
    pub share_id: Option<Uuid>,
    pub created: DateTime<Utc>,
    pub created_by: UserIdentity,
    pub status: JobStatus,
    pub configuration: PrintJobConfiguration,
    /// A beta-only property; accepted on both versions, emitted on beta.
    pub display_name: Option<String>,
    pub is_fetchable: bool,
    pub error_code: i32,
    pub acknowledged: Option<DateTime<Utc>>,
    pub completed: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Document {
    pub id: Uuid,
    pub job_id: JobId,
    /// Empty until the upload completes; then the session's `documentName`.
    pub display_name: String,
    pub content_type: String,
    pub size: u64,
    pub uploaded: Option<DateTime<Utc>>,
    pub downloaded: Option<DateTime<Utc>>,
    /// Where the bytes are, once the upload has completed. Set in the same step that completes
    /// the session: completion moves no bytes.
    pub blob: Option<BlobKey>,
}

impl Document {
    /// The empty document that every new job carries.
    pub fn empty(job_id: JobId) -> Self {
        Document {
            id: Uuid::new_v4(),
            job_id,
            display_name: String::new(),
            content_type: String::new(),
            size: 0,
            uploaded: None,
            downloaded: None,
            blob: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionState {
    /// Accepting segments until `expires`.
    Active,
    /// Every byte arrived at `at`; replays of stored bytes are answered until `grace_until`.
    Completed {
        at: DateTime<Utc>,
        grace_until: DateTime<Utc>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadSession {
    pub id: Uuid,
    pub document_id: Uuid,
    pub job_id: JobId,
    pub document_name: String,
    pub content_type: String,
    pub size: u64,
    /// SHA-256 of the `tempauthtoken`; the token itself is never stored.
    pub token_hash: Vec<u8>,
    pub blob: BlobKey,
    pub created: DateTime<Utc>,
    /// Slides forward with each accepted segment, never past `created + hard cap`.
    pub expires: DateTime<Utc>,
    pub state: SessionState,
}

impl UploadSession {
    /// Whether requests to this session are still answered at `now` (active and not
    /// expired, or completed and within the replay grace).
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        match &self.state {
            SessionState::Active => now < self.expires,
            SessionState::Completed { grace_until, .. } => now < *grace_until,
        }
    }
}

/// A pre-authenticated download URL's server side: one document, one token hash, one expiry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DownloadGrant {
    pub id: Uuid,
    pub document_id: Uuid,
    pub token_hash: Vec<u8>,
    pub expires: DateTime<Utc>,
}
