//! Documents and their download grants.

use chrono::{DateTime, Utc};
use upspool_domain::model::{BlobKey, Document, DownloadGrant, Job, JobId};
use upspool_domain::store::StoreError;
use uuid::Uuid;

use crate::codec::{self, id, ts, DOCUMENT_COLUMNS, GRANT_COLUMNS, JOB_COLUMNS};
use crate::error::{corrupt, map_err};
use crate::Db;

pub(crate) async fn documents_of_job(db: &Db, job: JobId) -> Result<Vec<Document>, StoreError> {
    db.read(move |conn| {
        codec::all(
            conn,
            &format!("SELECT {DOCUMENT_COLUMNS} FROM documents WHERE job_id = ? ORDER BY rowid"),
            [job],
            codec::document,
        )
    })
    .await
}

pub(crate) async fn get_document(db: &Db, document: Uuid) -> Result<Option<Document>, StoreError> {
    let sql = format!("SELECT {DOCUMENT_COLUMNS} FROM documents WHERE id = ?");
    db.lookup(sql, id(document), codec::document).await
}

/// A job and a document read on one trip to a reader connection (requests that name both
/// would otherwise wait for two).
pub(crate) async fn get_job_document(
    db: &Db,
    job: JobId,
    document: Uuid,
) -> Result<Option<(Job, Option<Document>)>, StoreError> {
    db.read(move |conn| {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?");
        let Some(job) = codec::first(conn, &sql, [job], codec::job)? else {
            return Ok(None);
        };
        let sql = format!("SELECT {DOCUMENT_COLUMNS} FROM documents WHERE id = ?");
        let document = codec::first(conn, &sql, [id(document)], codec::document)?;
        Ok(Some((job, document)))
    })
    .await
}

/// Keeps the first download time.
pub(crate) async fn mark_document_downloaded(
    db: &Db,
    document: Uuid,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    db.execute(
        "UPDATE documents SET downloaded = ? WHERE id = ? AND downloaded IS NULL",
        (ts(at)?, id(document)),
    )
    .await
    .map(drop)
}

pub(crate) async fn clear_document_blob(db: &Db, document: Uuid) -> Result<(), StoreError> {
    db.execute(
        "UPDATE documents SET blob = NULL WHERE id = ?",
        (id(document),),
    )
    .await
    .map(drop)
}

pub(crate) async fn blobs_of_ended_jobs(
    db: &Db,
    limit: u32,
) -> Result<Vec<(Uuid, BlobKey)>, StoreError> {
    db.read(move |conn| {
        codec::all(
            conn,
            "SELECT d.id, d.blob FROM documents d JOIN jobs j ON j.id = d.job_id
              WHERE d.blob IS NOT NULL AND j.state IN ('canceled', 'aborted')
              ORDER BY d.job_id
              LIMIT ?",
            [i64::from(limit)],
            |row| {
                let doc: String = row.get(0).map_err(map_err)?;
                let blob: String = row.get(1).map_err(map_err)?;
                let doc = Uuid::parse_str(&doc)
                    .map_err(|_| corrupt(format_args!("document id '{doc}'")))?;
                Ok((doc, BlobKey(blob)))
            },
        )
    })
    .await
}

pub(crate) async fn insert_download_grant(db: &Db, g: &DownloadGrant) -> Result<(), StoreError> {
    let row = (
        id(g.id),
        id(g.document_id),
        g.token_hash.clone(),
        ts(g.expires)?,
    );
    db.execute(
        "INSERT INTO download_grants (id, document_id, token_hash, expires)
         VALUES (?, ?, ?, ?)",
        row,
    )
    .await
    .map(drop)
}

pub(crate) async fn get_download_grant(
    db: &Db,
    grant: Uuid,
) -> Result<Option<DownloadGrant>, StoreError> {
    let sql = format!("SELECT {GRANT_COLUMNS} FROM download_grants WHERE id = ?");
    db.lookup(sql, id(grant), codec::grant).await
}

pub(crate) async fn delete_expired_download_grants(
    db: &Db,
    now: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let deleted = db
        .execute("DELETE FROM download_grants WHERE expires < ?", (ts(now)?,))
        .await?;
    Ok(deleted as u64)
}
