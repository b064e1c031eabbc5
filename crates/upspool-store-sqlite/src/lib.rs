//! The embedded metadata store: [`MetadataStore`] on one SQLite file.
//!
//! Durability: WAL with `synchronous = FULL`, so a commit has reached the disk when it
//! returns (the upload engine acknowledges bytes right after `commit_segment`).
//!
//! Concurrency: every write goes to one writer thread that owns the write connection
//! ([`group`]), which runs concurrent writes in one `BEGIN IMMEDIATE` transaction and commits
//! them together with one WAL sync. Reads run on a bounded set of other connections
//! ([`conn::Readers`]) and, thanks to WAL, never wait for writers. Each call runs all its
//! statements on the connection's thread in one go (rusqlite, not an async driver: see
//! [`conn`] for why).

mod codec;
mod conn;
mod documents;
mod error;
mod group;
mod jobs;
mod migrate;
mod printers;
mod sessions;
mod share_access;

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::Connection;
use upspool_domain::access::ShareAccess;
use upspool_domain::model::{
    BlobKey, Document, DownloadGrant, Job, JobId, JobState, JobStatus, Printer, Share, ShareMember,
    UploadSession,
};
use upspool_domain::range_set::{ByteRange, RangeSet};
use upspool_domain::store::{CommitOutcome, Completion, JobQuery, MetadataStore, StoreError};
use uuid::Uuid;

use crate::conn::Readers;
use crate::error::map_err;
use crate::group::GroupCommit;

/// Concurrent readers; WAL lets them all run alongside the writer.
const READ_CONNECTIONS: usize = 8;

/// The writer and the readers of one database file.
pub(crate) struct Db {
    readers: Readers,
    group: GroupCommit,
}

impl Db {
    /// Runs `read` on a read connection. Several statements that must agree open a
    /// transaction inside it.
    async fn read<T, F>(&self, read: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.readers.run(read).await
    }

    /// The first row of a query with one parameter (a lookup by key), decoded with `decode`.
    async fn lookup<T, K>(
        &self,
        sql: String,
        key: K,
        decode: fn(&rusqlite::Row) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError>
    where
        T: Send + 'static,
        K: rusqlite::ToSql + Send + 'static,
    {
        self.read(move |conn| codec::first(conn, &sql, [key], decode))
            .await
    }

    /// One write statement (grouped like every write); returns the rows it changed.
    async fn execute<P>(&self, sql: &'static str, params: P) -> Result<usize, StoreError>
    where
        P: rusqlite::Params + Send + 'static,
    {
        self.write(move |conn| codec::exec(conn, sql, params)).await
    }

    /// Runs `write` in a write transaction (possibly shared with concurrent writes) and
    /// answers once it is committed; an `Err` from `write` leaves nothing of it behind.
    async fn write<T, F>(&self, write: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.group.write(write).await
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
        let owned = path.to_owned();
        let write = tokio::task::spawn_blocking(move || {
            let mut conn = conn::open(&owned)?;
            migrate::migrate(&mut conn)?;
            Ok::<_, StoreError>(conn)
        })
        .await
        .map_err(|e| StoreError::Internal(format!("opening the metadata store: {e}")))??;
        let group = GroupCommit::start(write)?;
        tracing::debug!(path = %path.display(), "metadata store opened");
        Ok(SqliteStore {
            db: Db {
                readers: Readers::new(path, READ_CONNECTIONS),
                group,
            },
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

    /// Closes every connection, checkpointing the WAL into the main file; later calls answer
    /// `Unavailable`. Optional: dropping the store loses nothing committed, but closing first
    /// makes shutdown deterministic.
    pub async fn close(&self) {
        self.db.readers.close();
        self.db.group.stop().await;
    }
}

#[async_trait]
impl MetadataStore for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        self.db
            .read(|conn| conn.query_row("SELECT 1", [], |_| Ok(())).map_err(map_err))
            .await
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
    async fn get_job_document(
        &self,
        job: JobId,
        document: Uuid,
    ) -> Result<Option<(Job, Option<Document>)>, StoreError> {
        documents::get_job_document(&self.db, job, document).await
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

    fn pragmas(conn: &Connection) -> Result<(String, i64, i64, i64), StoreError> {
        let get = |sql: &str| conn.query_row(sql, [], |r| r.get::<_, rusqlite::types::Value>(0));
        let text = |v| match v {
            rusqlite::types::Value::Text(t) => t,
            other => format!("{other:?}"),
        };
        let int = |v| match v {
            rusqlite::types::Value::Integer(n) => n,
            _ => -1,
        };
        Ok((
            text(get("PRAGMA journal_mode").map_err(map_err)?),
            int(get("PRAGMA synchronous").map_err(map_err)?),
            int(get("PRAGMA foreign_keys").map_err(map_err)?),
            int(get("PRAGMA busy_timeout").map_err(map_err)?),
        ))
    }

    /// The durability and concurrency settings are per connection: check the writer's and a
    /// reader's.
    #[tokio::test]
    async fn every_connection_has_the_durability_settings() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("m.db")).await.unwrap();
        let want = ("wal".to_string(), 2, 1, 5000);
        assert_eq!(store.db.write(pragmas).await.unwrap(), want, "writer");
        assert_eq!(store.db.read(pragmas).await.unwrap(), want, "reader");
    }
}
