//! Share access lists: the users and groups allowed to print to a share.

use chrono::Utc;
use upspool_domain::access::ShareAccess;
use upspool_domain::model::ShareMember;
use upspool_domain::store::StoreError;
use uuid::Uuid;

use crate::codec::{id, ts};
use crate::error::map_err;
use crate::Db;

fn parts(member: &ShareMember) -> (&'static str, &str) {
    match member {
        ShareMember::User(u) => ("user", u),
        ShareMember::Group(g) => ("group", g),
    }
}

pub(crate) async fn share_access(db: &Db, share: Uuid) -> Result<ShareAccess, StoreError> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT kind, member_id FROM share_members WHERE share_id = ? ORDER BY added, member_id",
    )
    .bind(id(share))
    .fetch_all(&db.read)
    .await
    .map_err(map_err)?;
    let mut access = ShareAccess::default();
    for (kind, member) in rows {
        match kind.as_str() {
            "user" => access.users.push(member),
            _ => access.groups.push(member),
        }
    }
    Ok(access)
}

/// `INSERT ... SELECT` from the share, so a missing share inserts nothing; `OR IGNORE` makes
/// a repeated add a no-op.
pub(crate) async fn add_member(
    db: &Db,
    share: Uuid,
    member: &ShareMember,
) -> Result<bool, StoreError> {
    let (kind, member_id) = parts(member);
    let mut tx = db.begin_write().await?;
    let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM shares WHERE id = ?")
        .bind(id(share))
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_err)?;
    if exists.is_none() {
        return Ok(false);
    }
    sqlx::query(
        "INSERT OR IGNORE INTO share_members (share_id, kind, member_id, added)
         VALUES (?, ?, ?, ?)",
    )
    .bind(id(share))
    .bind(kind)
    .bind(member_id)
    .bind(ts(Utc::now())?)
    .execute(&mut *tx)
    .await
    .map_err(map_err)?;
    tx.commit().await.map_err(map_err)?;
    Ok(true)
}

pub(crate) async fn remove_member(
    db: &Db,
    share: Uuid,
    member: &ShareMember,
) -> Result<bool, StoreError> {
    let (kind, member_id) = parts(member);
    let deleted =
        sqlx::query("DELETE FROM share_members WHERE share_id = ? AND kind = ? AND member_id = ?")
            .bind(id(share))
            .bind(kind)
            .bind(member_id)
            .execute(&db.write)
            .await
            .map_err(map_err)?
            .rows_affected();
    Ok(deleted > 0)
}
