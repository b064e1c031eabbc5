//! Printers and shares.

use upspool_domain::model::{BlobKey, Printer, Share};
use upspool_domain::store::StoreError;
use uuid::Uuid;

use crate::codec::{self, id, ts, PRINTER_COLUMNS, SHARE_COLUMNS};
use crate::error::map_err;
use crate::Db;

pub(crate) async fn insert_printer(db: &Db, p: &Printer) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO printers (id, display_name, manufacturer, model, created)
         VALUES (?, ?, ?, ?, ?)",
    )
    .bind(id(p.id))
    .bind(&p.display_name)
    .bind(&p.manufacturer)
    .bind(&p.model)
    .bind(ts(p.created)?)
    .execute(&db.write)
    .await
    .map_err(map_err)?;
    Ok(())
}

pub(crate) async fn get_printer(db: &Db, printer: Uuid) -> Result<Option<Printer>, StoreError> {
    sqlx::query(&format!(
        "SELECT {PRINTER_COLUMNS} FROM printers WHERE id = ?"
    ))
    .bind(id(printer))
    .fetch_optional(&db.read)
    .await
    .map_err(map_err)?
    .as_ref()
    .map(codec::printer)
    .transpose()
}

pub(crate) async fn list_printers(db: &Db) -> Result<Vec<Printer>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {PRINTER_COLUMNS} FROM printers ORDER BY created, id"
    ))
    .fetch_all(&db.read)
    .await
    .map_err(map_err)?;
    codec::all(&rows, codec::printer)
}

/// Collects the blob keys first, in the same transaction as the delete, so that no key can be
/// added between the two and then lost.
pub(crate) async fn delete_printer(
    db: &Db,
    printer: Uuid,
) -> Result<Option<Vec<BlobKey>>, StoreError> {
    let printer = id(printer);
    let mut tx = db.begin_write().await?;
    let keys: Vec<String> = sqlx::query_scalar(
        "SELECT d.blob FROM documents d JOIN jobs j ON j.id = d.job_id
          WHERE j.printer_id = ?1 AND d.blob IS NOT NULL
         UNION
         SELECT s.blob FROM upload_sessions s
           JOIN documents d ON d.id = s.document_id
           JOIN jobs j ON j.id = d.job_id
          WHERE j.printer_id = ?1
         ORDER BY 1",
    )
    .bind(&printer)
    .fetch_all(&mut *tx)
    .await
    .map_err(map_err)?;
    let deleted = sqlx::query("DELETE FROM printers WHERE id = ?")
        .bind(&printer)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?
        .rows_affected();
    if deleted == 0 {
        // Nothing changed; dropping the transaction rolls it back.
        return Ok(None);
    }
    tx.commit().await.map_err(map_err)?;
    Ok(Some(keys.into_iter().map(BlobKey).collect()))
}

pub(crate) async fn insert_share(db: &Db, s: &Share) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO shares (id, display_name, printer_id, allow_all_users, created)
         VALUES (?, ?, ?, ?, ?)",
    )
    .bind(id(s.id))
    .bind(&s.display_name)
    .bind(id(s.printer_id))
    .bind(s.allow_all_users)
    .bind(ts(s.created)?)
    .execute(&db.write)
    .await
    .map_err(map_err)?;
    Ok(())
}

pub(crate) async fn get_share(db: &Db, share: Uuid) -> Result<Option<Share>, StoreError> {
    sqlx::query(&format!("SELECT {SHARE_COLUMNS} FROM shares WHERE id = ?"))
        .bind(id(share))
        .fetch_optional(&db.read)
        .await
        .map_err(map_err)?
        .as_ref()
        .map(codec::share)
        .transpose()
}

pub(crate) async fn list_shares(db: &Db) -> Result<Vec<Share>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {SHARE_COLUMNS} FROM shares ORDER BY created, id"
    ))
    .fetch_all(&db.read)
    .await
    .map_err(map_err)?;
    codec::all(&rows, codec::share)
}

pub(crate) async fn delete_share(db: &Db, share: Uuid) -> Result<bool, StoreError> {
    let deleted = sqlx::query("DELETE FROM shares WHERE id = ?")
        .bind(id(share))
        .execute(&db.write)
        .await
        .map_err(map_err)?
        .rows_affected();
    Ok(deleted > 0)
}
