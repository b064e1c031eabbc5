//! The storage contracts, in the domain's terms. Backends live in their own crates
//! (`upspool-store-sqlite`, `upspool-blob-fs`, ...); the domain and the HTTP layer see only
//! these traits.
//!
//! Each method's doc says what the caller guarantees and what the implementation must do, so
//! that a new backend can be written without reading the upload engine.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::stream::BoxStream;
use thiserror::Error;
use uuid::Uuid;

use crate::access::ShareAccess;
use crate::model::{
    BlobKey, Document, DownloadGrant, Job, JobId, JobState, JobStatus, Printer, Share, ShareMember,
    UploadSession,
};
use crate::range_set::{ByteRange, RangeSet};

#[derive(Clone, Debug, Error)]
pub enum StoreError {
    /// The database cannot be reached or is locked for too long; worth retrying later.
    #[error("metadata store unavailable: {0}")]
    Unavailable(String),
    /// The database's disk is full.
    #[error("metadata store is out of space")]
    StorageFull,
    /// A uniqueness or consistency rule refused the change.
    #[error("metadata conflict: {0}")]
    Conflict(String),
    #[error("metadata store error: {0}")]
    Internal(String),
}

#[derive(Debug, Error)]
pub enum BlobError {
    #[error("no such blob")]
    NotFound,
    /// ENOSPC, EDQUOT, or a configured quota.
    #[error("byte store is full")]
    StorageFull,
    #[error("byte store unavailable: {0}")]
    Unavailable(String),
    #[error("byte store I/O error: {0}")]
    Io(String),
}

/// Which jobs to list, in which order, which page.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobQuery {
    /// Jobs of this printer (a share lists its printer's jobs).
    pub printer_id: Uuid,
    /// `createdBy/userPrincipalName eq '...'` (exact, case-insensitive match).
    pub created_by_upn: Option<String>,
    /// Only jobs whose `createdBy.id` is exactly this (a delegated caller's own jobs).
    pub created_by_id: Option<String>,
    /// `status/state eq '...'`.
    pub state: Option<JobState>,
    /// `isFetchable eq true|false`.
    pub is_fetchable: Option<bool>,
    /// Order by `createdDateTime` then `id`; descending when true.
    pub descending: bool,
    pub skip: u64,
    /// Page size; the store returns at most this many jobs.
    pub top: u32,
}

/// What completing an upload writes, in the same transaction as its last range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Completion {
    /// The document with `display_name`, `content_type`, `size`, `uploaded` and `blob` set.
    pub document: Document,
    pub completed_at: DateTime<Utc>,
    pub grace_until: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommitOutcome {
    /// The range is recorded and the expiry moved; the session is not complete. Carries the
    /// received ranges as this commit saw them, so that the answer to this request reflects
    /// its own commit even when a later one (possibly in the same grouped transaction)
    /// completes the session: exactly one request answers `201`.
    Committed(RangeSet),
    /// The range is recorded, and the session, document and job were completed.
    Completed,
    /// The session is no longer active (deleted, replaced, completed by someone else, or its
    /// job canceled): nothing was recorded.
    SessionGone,
}

/// Where jobs, documents, sessions and received ranges are recorded.
///
/// Every write must be durable when the method returns: the upload engine acknowledges
/// bytes to clients right after `commit_segment`.
#[async_trait]
pub trait MetadataStore: Send + Sync + 'static {
    /// Answers when the store is usable (for `/readyz`).
    async fn ping(&self) -> Result<(), StoreError>;

    async fn insert_printer(&self, printer: &Printer) -> Result<(), StoreError>;
    async fn get_printer(&self, id: Uuid) -> Result<Option<Printer>, StoreError>;
    /// All printers, ordered by creation time then id.
    async fn list_printers(&self) -> Result<Vec<Printer>, StoreError>;
    /// Deletes the printer with its shares, jobs, documents, sessions and grants. Returns
    /// `None` when there was no such printer, else the blob keys that nothing references any
    /// more (documents' and sessions' bytes), for the caller to delete from the byte store.
    async fn delete_printer(&self, id: Uuid) -> Result<Option<Vec<BlobKey>>, StoreError>;

    /// The caller guarantees that `share.printer_id` exists.
    async fn insert_share(&self, share: &Share) -> Result<(), StoreError>;
    async fn get_share(&self, id: Uuid) -> Result<Option<Share>, StoreError>;
    /// All shares, ordered by creation time then id.
    async fn list_shares(&self) -> Result<Vec<Share>, StoreError>;
    /// Returns false when there was no such share. Jobs stay with their printer; the share's
    /// access list goes with it.
    async fn delete_share(&self, id: Uuid) -> Result<bool, StoreError>;
    /// The users and groups a share allows (allowedUsers / allowedGroups), each list in the
    /// order they were added. Empty lists for a share that does not exist.
    async fn share_access(&self, share: Uuid) -> Result<ShareAccess, StoreError>;
    /// Adds a user or group to a share's access list; adding one already there changes nothing.
    /// Returns false (and records nothing) when there is no such share.
    async fn add_share_member(&self, share: Uuid, member: &ShareMember)
        -> Result<bool, StoreError>;
    /// Removes a user or group from a share's access list. Returns false when the share does
    /// not exist or does not list that member.
    async fn remove_share_member(
        &self,
        share: Uuid,
        member: &ShareMember,
    ) -> Result<bool, StoreError>;

    /// Stores a new job and its one document atomically. The store assigns the job id from a
    /// counter that never repeats (ignoring `job.id` and `document.job_id`) and returns both
    /// as stored.
    async fn create_job(&self, job: Job, document: Document)
        -> Result<(Job, Document), StoreError>;
    async fn get_job(&self, id: JobId) -> Result<Option<Job>, StoreError>;
    /// One page of jobs matching `query`.
    async fn list_jobs(&self, query: &JobQuery) -> Result<Vec<Job>, StoreError>;
    /// Compare-and-set of a job's status: applies `to` (and `is_fetchable`) only if the
    /// job's current state is one of `from`. Returns the updated job, or `None` when the job
    /// does not exist or is in another state.
    async fn transition_job(
        &self,
        id: JobId,
        from: &[JobState],
        to: &JobStatus,
        is_fetchable: bool,
    ) -> Result<Option<Job>, StoreError>;

    async fn documents_of_job(&self, job: JobId) -> Result<Vec<Document>, StoreError>;
    async fn get_document(&self, id: Uuid) -> Result<Option<Document>, StoreError>;
    /// A job and the document `document` if it exists (whichever job it belongs to), for
    /// requests that name both. `None` when the job does not exist. A store that can read
    /// both in one round trip overrides this.
    async fn get_job_document(
        &self,
        job: JobId,
        document: Uuid,
    ) -> Result<Option<(Job, Option<Document>)>, StoreError> {
        let Some(job) = self.get_job(job).await? else {
            return Ok(None);
        };
        Ok(Some((job, self.get_document(document).await?)))
    }
    /// Sets `downloaded` to `at` unless it is already set.
    async fn mark_document_downloaded(&self, id: Uuid, at: DateTime<Utc>)
        -> Result<(), StoreError>;
    /// Forgets where a document's bytes are (after the sweeper deleted them).
    async fn clear_document_blob(&self, id: Uuid) -> Result<(), StoreError>;
    /// Documents of canceled or aborted jobs whose bytes are still kept, at most `limit`.
    async fn blobs_of_ended_jobs(&self, limit: u32) -> Result<Vec<(Uuid, BlobKey)>, StoreError>;

    /// Stores `session` as its document's only session, deleting any older ones (with their
    /// ranges) in the same transaction. Returns the deleted sessions so that the caller can
    /// delete their bytes. The caller guarantees the document exists and is not uploaded.
    async fn replace_upload_session(
        &self,
        session: &UploadSession,
    ) -> Result<Vec<UploadSession>, StoreError>;
    /// A session with every range committed for it so far.
    async fn get_upload_session(
        &self,
        id: Uuid,
    ) -> Result<Option<(UploadSession, RangeSet)>, StoreError>;
    /// A session without its ranges, for callers that do not need them (each segment checks
    /// its session first). The default reads the ranges too and drops them; stores should do
    /// one read.
    async fn get_upload_session_only(&self, id: Uuid) -> Result<Option<UploadSession>, StoreError> {
        Ok(self.get_upload_session(id).await?.map(|(s, _)| s))
    }
    /// The document's session, in any state, if it has one.
    async fn session_of_document(
        &self,
        document: Uuid,
    ) -> Result<Option<UploadSession>, StoreError>;
    /// Records `range` as received and sets the session's expiry to `expires`, atomically,
    /// only if the session exists and is active; otherwise records nothing and answers
    /// `SessionGone`. With `completion`, if the session's recorded ranges now cover its whole
    /// size (decided inside the same transaction, so concurrent commits of one session may
    /// run in any order), the same transaction also marks the session completed
    /// (`completed_at`, `grace_until`), writes the completed document (its display name,
    /// content type, size, uploaded time and blob key) and removes `uploadPending` from the
    /// job's details, answering `Completed`.
    ///
    /// The caller guarantees the bytes of `range` are already durable in the byte store.
    async fn commit_segment(
        &self,
        session: Uuid,
        range: ByteRange,
        expires: DateTime<Utc>,
        completion: Option<&Completion>,
    ) -> Result<CommitOutcome, StoreError>;
    /// Deletes a session and its ranges, in any state. Returns it if it existed.
    async fn delete_upload_session(&self, id: Uuid) -> Result<Option<UploadSession>, StoreError>;
    /// Active sessions whose expiry is before `now` and completed sessions whose grace ended
    /// before `now`, at most `limit`.
    async fn sessions_to_sweep(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<UploadSession>, StoreError>;

    /// How many sessions are active and unexpired at `now` (for metrics).
    async fn count_active_sessions(&self, now: DateTime<Utc>) -> Result<u64, StoreError>;

    async fn insert_download_grant(&self, grant: &DownloadGrant) -> Result<(), StoreError>;
    async fn get_download_grant(&self, id: Uuid) -> Result<Option<DownloadGrant>, StoreError>;
    /// Deletes grants that expired before `now`; returns how many.
    async fn delete_expired_download_grants(&self, now: DateTime<Utc>) -> Result<u64, StoreError>;
}

/// Where document bytes live. A blob is written positionally while its upload session is
/// active and read after completion; it is never moved or copied.
#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Creates an empty blob that will hold `size` bytes. Durable when it returns. The caller
    /// guarantees `key` is new.
    async fn create(&self, key: &BlobKey, size: u64) -> Result<(), BlobError>;
    /// Opens a blob for positional writes and reads while it is being uploaded.
    async fn open(&self, key: &BlobKey) -> Result<Arc<dyn BlobHandle>, BlobError>;
    /// Streams `len` bytes starting at `offset` (for downloads). The caller guarantees the range
    /// lies within the blob's size.
    async fn read_stream(
        &self,
        key: &BlobKey,
        offset: u64,
        len: u64,
    ) -> Result<BoxStream<'static, Result<Bytes, BlobError>>, BlobError>;
    /// Deletes a blob. Deleting a missing blob is not an error.
    async fn delete(&self, key: &BlobKey) -> Result<(), BlobError>;
}

/// Memory a store lends the upload engine for one block (see
/// [`BlobHandle::block_buffer`]); dropping it gives it back.
pub type BlockBuffer = Box<dyn BlockMemory>;

/// What [`BlockBuffer`] holds: writable bytes that can travel to another thread.
pub trait BlockMemory: AsRef<[u8]> + AsMut<[u8]> + Send + Sync + 'static {}

/// An open blob. Writes to disjoint ranges may run concurrently; the caller (the upload
/// engine) guarantees that no two writes to the same byte run at once.
#[async_trait]
pub trait BlobHandle: Send + Sync {
    /// Writes `data` at `offset`. Not durable until `sync`.
    async fn write_at(&self, offset: u64, data: Bytes) -> Result<(), BlobError>;
    /// Writes `parts` one after another from `offset`: a body received in several chunks,
    /// without gathering them into one buffer first. Not durable until `sync`. Stores that can
    /// write vectored (`pwritev`) should; the default writes the parts one by one.
    async fn write_parts_at(&self, offset: u64, parts: Vec<Bytes>) -> Result<(), BlobError> {
        let mut at = offset;
        for p in parts {
            let n = p.len() as u64;
            self.write_at(at, p).await?;
            at += n;
        }
        Ok(())
    }
    /// Makes room for `len` bytes at `offset` before they are written, where the store can:
    /// a full disk is then found before any of a segment's bytes are written, and the writes
    /// that follow need not each allocate (on the embedded store that lets concurrent direct
    /// writes to one file run at once). The default does nothing; writes allocate as they go.
    async fn allocate(&self, offset: u64, len: u64) -> Result<(), BlobError> {
        let _ = (offset, len);
        Ok(())
    }
    /// The memory alignment this store writes fastest from, if any. `Some(n)` asks the engine
    /// to gather each block into one buffer whose address is congruent to the block's blob
    /// offset modulo `n`, so that the store can write whole `n`-byte pages straight from it
    /// (the embedded store writes them without the page cache): one copy of the body in
    /// memory, traded for the kernel's copy into the page cache. `None` (the default): blocks
    /// are written from the chunks they arrived in, uncopied.
    fn write_alignment(&self) -> Option<usize> {
        None
    }
    /// Memory for one gathered block, lent by the store when it writes fastest from memory of
    /// its own (the embedded store lends memory backed by huge pages: a direct write from it
    /// reaches a virtio disk as one piece instead of one per 4 KiB page, BENCHMARKS.md finding
    /// 22). At least [`IO_BUFFER`](crate::upload::IO_BUFFER) bytes, aligned to
    /// [`write_alignment`](Self::write_alignment); it goes back to the store when the last
    /// `Bytes` made from it is dropped. `None` (the default, and when the store has none to
    /// spare): the engine allocates the block itself.
    fn block_buffer(&self) -> Option<BlockBuffer> {
        None
    }
    /// Reads exactly `len` bytes at `offset` (bytes never written read as zeros).
    async fn read_at(&self, offset: u64, len: usize) -> Result<Bytes, BlobError>;
    /// Makes every write made so far through any handle of this blob durable.
    async fn sync(&self) -> Result<(), BlobError>;
}
