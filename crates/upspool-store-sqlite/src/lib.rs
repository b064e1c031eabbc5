//! The embedded metadata store: [`MetadataStore`] on one SQLite file.
//!
//! Durability: WAL with `synchronous = FULL`, so a commit has reached the disk when it
//! returns (the upload engine acknowledges bytes right after `commit_segment`).
//!
//! Concurrency: every write goes through a pool of exactly one connection, so writers of this
//! process queue fairly in the pool instead of spinning on SQLite's busy handler, and every
//! read-modify-write runs in a `BEGIN IMMEDIATE` transaction (it takes the write lock up
//! front, so it can never fail half-way on a lock upgrade, even against another process).
//! The writes on the hot paths (segment commits, job creation and transitions, new upload
//! sessions) go through [`group`], which commits concurrent ones together with one WAL sync.
//! Reads use a separate pool of several connections and, thanks to WAL, never wait for
//! writers.

mod codec;
mod documents;
mod error;
mod group;
mod jobs;
mod printers;
mod sessions;
mod share_access;

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};
use upspool_domain::access::ShareAccess;
use upspool_domain::model::{
    BlobKey, Document, DownloadGrant, Job, JobId, JobState, JobStatus, Printer, Share, ShareMember,
    UploadSession,
};
use upspool_domain::range_set::{ByteRange, RangeSet};
use upspool_domain::store::{CommitOutcome, Completion, JobQuery, MetadataStore, StoreError};
use uuid::Uuid;

use crate::error::{map_err, map_migrate_err};
use crate::group::GroupCommit;

/// How long a statement waits for another process's lock before answering `Unavailable`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Concurrent readers; WAL lets them all run alongside the writer.
const READ_CONNECTIONS: u32 = 8;

/// The two pools over one database file.
pub(crate) struct Db {
    read: SqlitePool,
    /// One connection: in-process writers queue here.
    write: SqlitePool,
    /// Shares commits between concurrent writes on `write`.
    group: GroupCommit,
}

impl Db {
    /// A transaction that holds the write lock from its first statement, for
    /// read-modify-write sequences.
    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        self.write
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(map_err)
    }
}

/// upspool's metadata in a SQLite database file.
pub struct SqliteStore {
    db: Db,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens (creating it if missing) the database at `path` and brings its schema up to date.
    pub async fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        // No ping before each use (sqlx's default): a SQLite connection is a file and a
        // thread in this process, it cannot drop like a network one, and the ping is one
        // more round trip to that thread on every query and transaction.
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await
            .map_err(map_err)?;
        sqlx::migrate!("./migrations")
            .run(&write)
            .await
            .map_err(map_migrate_err)?;
        let read = SqlitePoolOptions::new()
            .max_connections(READ_CONNECTIONS)
            .test_before_acquire(false)
            .connect_with(options)
            .await
            .map_err(map_err)?;
        tracing::debug!(path = %path.display(), "metadata store opened");
        let group = GroupCommit::start(write.clone());
        Ok(SqliteStore {
            db: Db { read, write, group },
            path: path.to_owned(),
        })
    }

    /// How many write transactions the grouped writer has committed so far (each may hold
    /// several writes), for diagnostics: compared with the number of writes, it shows how
    /// much group commit is sharing.
    pub fn grouped_commits(&self) -> u64 {
        self.db.group.commits()
    }

    /// The database file, for logs and diagnostics.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Closes every connection, checkpointing the WAL into the main file. Optional: dropping
    /// the store loses nothing committed, but closing first makes shutdown deterministic.
    pub async fn close(&self) {
        self.db.read.close().await;
        self.db.write.close().await;
    }
}

#[async_trait]
impl MetadataStore for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.db.read)
            .await
            .map(drop)
            .map_err(map_err)
    }

    async fn insert_printer(&self, printer: &Printer) -> Result<(), StoreError> {
        printers::insert_printer(&self.db, printer).await
    }
    async fn get_printer(&self, id: Uuid) -> Result<Option<Printer>, StoreError> {
        printers::get_printer(&self.db, id).await
    }
    async fn list_printers(&self) -> Result<Vec<Printer>, StoreError> {
        printers::list_printers(&self.db).await
    }
    async fn delete_printer(&self, id: Uuid) -> Result<Option<Vec<BlobKey>>, StoreError> {
        printers::delete_printer(&self.db, id).await
    }

    async fn insert_share(&self, share: &Share) -> Result<(), StoreError> {
        printers::insert_share(&self.db, share).await
    }
    async fn get_share(&self, id: Uuid) -> Result<Option<Share>, StoreError> {
        printers::get_share(&self.db, id).await
    }
    async fn list_shares(&self) -> Result<Vec<Share>, StoreError> {
        printers::list_shares(&self.db).await
    }
    async fn delete_share(&self, id: Uuid) -> Result<bool, StoreError> {
        printers::delete_share(&self.db, id).await
    }
    async fn share_access(&self, share: Uuid) -> Result<ShareAccess, StoreError> {
        share_access::share_access(&self.db, share).await
    }
    async fn add_share_member(
        &self,
        share: Uuid,
        member: &ShareMember,
    ) -> Result<bool, StoreError> {
        share_access::add_member(&self.db, share, member).await
    }
    async fn remove_share_member(
        &self,
        share: Uuid,
        member: &ShareMember,
    ) -> Result<bool, StoreError> {
        share_access::remove_member(&self.db, share, member).await
    }

    async fn create_job(
        &self,
        job: Job,
        document: Document,
    ) -> Result<(Job, Document), StoreError> {
        jobs::create_job(&self.db, job, document).await
    }
    async fn get_job(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        jobs::get_job(&self.db, id).await
    }
    async fn list_jobs(&self, query: &JobQuery) -> Result<Vec<Job>, StoreError> {
        jobs::list_jobs(&self.db, query).await
    }
    async fn transition_job(
        &self,
        id: JobId,
        from: &[JobState],
        to: &JobStatus,
        is_fetchable: bool,
    ) -> Result<Option<Job>, StoreError> {
        jobs::transition_job(&self.db, id, from, to, is_fetchable).await
    }

    async fn documents_of_job(&self, job: JobId) -> Result<Vec<Document>, StoreError> {
        documents::documents_of_job(&self.db, job).await
    }
    async fn get_document(&self, id: Uuid) -> Result<Option<Document>, StoreError> {
        documents::get_document(&self.db, id).await
    }
    async fn mark_document_downloaded(
        &self,
        id: Uuid,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        documents::mark_document_downloaded(&self.db, id, at).await
    }
    async fn clear_document_blob(&self, id: Uuid) -> Result<(), StoreError> {
        documents::clear_document_blob(&self.db, id).await
    }
    async fn blobs_of_ended_jobs(&self, limit: u32) -> Result<Vec<(Uuid, BlobKey)>, StoreError> {
        documents::blobs_of_ended_jobs(&self.db, limit).await
    }

    async fn replace_upload_session(
        &self,
        session: &UploadSession,
    ) -> Result<Vec<UploadSession>, StoreError> {
        sessions::replace_upload_session(&self.db, session).await
    }
    async fn get_upload_session(
        &self,
        id: Uuid,
    ) -> Result<Option<(UploadSession, RangeSet)>, StoreError> {
        sessions::get_upload_session(&self.db, id).await
    }
    async fn get_upload_session_only(&self, id: Uuid) -> Result<Option<UploadSession>, StoreError> {
        sessions::get_upload_session_only(&self.db, id).await
    }
    async fn session_of_document(
        &self,
        document: Uuid,
    ) -> Result<Option<UploadSession>, StoreError> {
        sessions::session_of_document(&self.db, document).await
    }
    async fn commit_segment(
        &self,
        session: Uuid,
        range: ByteRange,
        expires: DateTime<Utc>,
        completion: Option<&Completion>,
    ) -> Result<CommitOutcome, StoreError> {
        sessions::commit_segment(&self.db, session, range, expires, completion).await
    }
    async fn delete_upload_session(&self, id: Uuid) -> Result<Option<UploadSession>, StoreError> {
        sessions::delete_upload_session(&self.db, id).await
    }
    async fn sessions_to_sweep(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<UploadSession>, StoreError> {
        sessions::sessions_to_sweep(&self.db, now, limit).await
    }

    async fn count_active_sessions(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        sessions::count_active_sessions(&self.db, now).await
    }

    async fn insert_download_grant(&self, grant: &DownloadGrant) -> Result<(), StoreError> {
        documents::insert_download_grant(&self.db, grant).await
    }
    async fn get_download_grant(&self, id: Uuid) -> Result<Option<DownloadGrant>, StoreError> {
        documents::get_download_grant(&self.db, id).await
    }
    async fn delete_expired_download_grants(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        documents::delete_expired_download_grants(&self.db, now).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The durability and concurrency settings are per connection: check both pools.
    #[tokio::test]
    async fn every_connection_has_the_durability_settings() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("m.db")).await.unwrap();
        for pool in [&store.db.read, &store.db.write] {
            let pragma = |name: &'static str| async move {
                sqlx::query_scalar::<_, String>(&format!(
                    "SELECT CAST({name} AS TEXT) FROM pragma_{name}"
                ))
                .fetch_one(pool)
                .await
                .unwrap()
            };
            assert_eq!(pragma("journal_mode").await, "wal");
            assert_eq!(pragma("synchronous").await, "2", "FULL");
            assert_eq!(pragma("foreign_keys").await, "1");
        }
        let busy: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
            .fetch_one(&store.db.write)
            .await
            .unwrap();
        assert_eq!(busy, 5000);
    }
}
