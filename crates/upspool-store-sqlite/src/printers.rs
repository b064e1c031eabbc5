//! Printers and shares.

use upspool_domain::model::{BlobKey, Printer, Share};
use upspool_domain::store::StoreError;
use uuid::Uuid;

use crate::codec::{self, exec, id, ts, PRINTER_COLUMNS, SHARE_COLUMNS};
use crate::error::map_err;
use crate::Db;

pub(crate) async fn insert_printer(db: &Db, p: &Printer) -> Result<(), StoreError> {
    let row = (
        id(p.id),
        p.display_name.clone(),
        p.manufacturer.clone(),
        p.model.clone(),
        ts(p.created)?,
    );
    db.execute(
        "INSERT INTO printers (id, display_name, manufacturer, model, created)
         VALUES (?, ?, ?, ?, ?)",
        row,
    )
    .await
    .map(drop)
}

pub(crate) async fn get_printer(db: &Db, printer: Uuid) -> Result<Option<Printer>, StoreError> {
    let sql = format!("SELECT {PRINTER_COLUMNS} FROM printers WHERE id = ?");
    db.lookup(sql, id(printer), codec::printer).await
}

pub(crate) async fn list_printers(db: &Db) -> Result<Vec<Printer>, StoreError> {
    db.read(|conn| {
        codec::all(
            conn,
            &format!("SELECT {PRINTER_COLUMNS} FROM printers ORDER BY created, id"),
            [],
            codec::printer,
        )
    })
    .await
}

/// Collects the blob keys first, in the same transaction as the delete, so that no key can be
/// added between the two and then lost.
pub(crate) async fn delete_printer(
    db: &Db,
    printer: Uuid,
) -> Result<Option<Vec<BlobKey>>, StoreError> {
    let printer = id(printer);
    db.write(move |conn| {
        let keys = codec::all(
            conn,
            "SELECT d.blob FROM documents d JOIN jobs j ON j.id = d.job_id
              WHERE j.printer_id = ?1 AND d.blob IS NOT NULL
             UNION
             SELECT s.blob FROM upload_sessions s
               JOIN documents d ON d.id = s.document_id
               JOIN jobs j ON j.id = d.job_id
              WHERE j.printer_id = ?1
             ORDER BY 1",
            [&printer],
            |row| row.get::<_, String>(0).map_err(map_err),
        )?;
        if exec(conn, "DELETE FROM printers WHERE id = ?", [&printer])? == 0 {
            // Nothing changed.
            return Ok(None);
        }
        Ok(Some(keys.into_iter().map(BlobKey).collect()))
    })
    .await
}

pub(crate) async fn insert_share(db: &Db, s: &Share) -> Result<(), StoreError> {
    let row = (
        id(s.id),
        s.display_name.clone(),
        id(s.printer_id),
        s.allow_all_users,
        ts(s.created)?,
    );
    db.execute(
        "INSERT INTO shares (id, display_name, printer_id, allow_all_users, created)
         VALUES (?, ?, ?, ?, ?)",
        row,
    )
    .await
    .map(drop)
}

pub(crate) async fn get_share(db: &Db, share: Uuid) -> Result<Option<Share>, StoreError> {
    let sql = format!("SELECT {SHARE_COLUMNS} FROM shares WHERE id = ?");
    db.lookup(sql, id(share), codec::share).await
}

pub(crate) async fn list_shares(db: &Db) -> Result<Vec<Share>, StoreError> {
    db.read(|conn| {
        codec::all(
            conn,
            &format!("SELECT {SHARE_COLUMNS} FROM shares ORDER BY created, id"),
            [],
            codec::share,
        )
    })
    .await
}

pub(crate) async fn delete_share(db: &Db, share: Uuid) -> Result<bool, StoreError> {
    let deleted = db
        .execute("DELETE FROM shares WHERE id = ?", (id(share),))
        .await?;
    Ok(deleted > 0)
}
