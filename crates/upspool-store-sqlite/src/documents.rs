//! Documents and their download grants.

use chrono::{DateTime, Utc};
use upspool_domain::model::{BlobKey, Document, DownloadGrant, JobId};
use upspool_domain::store::StoreError;
use uuid::Uuid;

use crate::codec::{self, id, ts, DOCUMENT_COLUMNS, GRANT_COLUMNS};
use crate::error::{corrupt, map_err};
use crate::Db;

pub(crate) async fn documents_of_job(db: &Db, job: JobId) -> Result<Vec<Document>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {DOCUMENT_COLUMNS} FROM documents WHERE job_id = ? ORDER BY rowid"
    ))
    .bind(job)
    .fetch_all(&db.read)
    .await
    .map_err(map_err)?;
    codec::all(&rows, codec::document)
}

pub(crate) async fn get_document(db: &Db, document: Uuid) -> Result<Option<Document>, StoreError> {
    sqlx::query(&format!(
        "SELECT {DOCUMENT_COLUMNS} FROM documents WHERE id = ?"
    ))
    .bind(id(document))
    .fetch_optional(&db.read)
    .await
    .map_err(map_err)?
    .as_ref()
    .map(codec::document)
    .transpose()
}

/// Keeps the first download time.
pub(crate) async fn mark_document_downloaded(
    db: &Db,
    document: Uuid,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE documents SET downloaded = ? WHERE id = ? AND downloaded IS NULL")
        .bind(ts(at)?)
        .bind(id(document))
        .execute(&db.write)
        .await
        .map_err(map_err)?;
    Ok(())
}

pub(crate) async fn clear_document_blob(db: &Db, document: Uuid) -> Result<(), StoreError> {
    sqlx::query("UPDATE documents SET blob = NULL WHERE id = ?")
        .bind(id(document))
        .execute(&db.write)
        .await
        .map_err(map_err)?;
    Ok(())
}

pub(crate) async fn blobs_of_ended_jobs(
    db: &Db,
    limit: u32,
) -> Result<Vec<(Uuid, BlobKey)>, StoreError> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT d.id, d.blob FROM documents d JOIN jobs j ON j.id = d.job_id
          WHERE d.blob IS NOT NULL AND j.state IN ('canceled', 'aborted')
          ORDER BY d.job_id
          LIMIT ?",
    )
    .bind(i64::from(limit))
    .fetch_all(&db.read)
    .await
    .map_err(map_err)?;
    rows.into_iter()
        .map(|(doc, blob)| {
            let doc =
                Uuid::parse_str(&doc).map_err(|_| corrupt(format_args!("document id '{doc}'")))?;
            Ok((doc, BlobKey(blob)))
        })
        .collect()
}

pub(crate) async fn insert_download_grant(db: &Db, g: &DownloadGrant) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO download_grants (id, document_id, token_hash, expires) VALUES (?, ?, ?, ?)",
    )
    .bind(id(g.id))
    .bind(id(g.document_id))
    .bind(&g.token_hash)
    .bind(ts(g.expires)?)
    .execute(&db.write)
    .await
    .map_err(map_err)?;
    Ok(())
}

pub(crate) async fn get_download_grant(
    db: &Db,
    grant: Uuid,
) -> Result<Option<DownloadGrant>, StoreError> {
    sqlx::query(&format!(
        "SELECT {GRANT_COLUMNS} FROM download_grants WHERE id = ?"
    ))
    .bind(id(grant))
    .fetch_optional(&db.read)
    .await
    .map_err(map_err)?
    .as_ref()
    .map(codec::grant)
    .transpose()
}

pub(crate) async fn delete_expired_download_grants(
    db: &Db,
    now: DateTime<Utc>,
) -> Result<u64, StoreError> {
    Ok(sqlx::query("DELETE FROM download_grants WHERE expires < ?")
        .bind(ts(now)?)
        .execute(&db.write)
        .await
        .map_err(map_err)?
        .rows_affected())
}
