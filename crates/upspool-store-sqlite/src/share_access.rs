//! Share access lists: the users and groups allowed to print to a share.

use chrono::Utc;
use rusqlite::{params, OptionalExtension};
use upspool_domain::access::ShareAccess;
use upspool_domain::model::ShareMember;
use upspool_domain::store::StoreError;
use uuid::Uuid;

use crate::codec::{self, exec, id, ts};
use crate::error::map_err;
use crate::Db;

fn parts(member: &ShareMember) -> (&'static str, String) {
    match member {
        ShareMember::User(u) => ("user", u.clone()),
        ShareMember::Group(g) => ("group", g.clone()),
    }
}

pub(crate) async fn share_access(db: &Db, share: Uuid) -> Result<ShareAccess, StoreError> {
    let share = id(share);
    let rows = db
        .read(move |conn| {
            codec::all(
                conn,
                "SELECT kind, member_id FROM share_members WHERE share_id = ?
                  ORDER BY added, member_id",
                [share],
                |row| {
                    let kind: String = row.get(0).map_err(map_err)?;
                    let member: String = row.get(1).map_err(map_err)?;
                    Ok((kind, member))
                },
            )
        })
        .await?;
    let mut access = ShareAccess::default();
    for (kind, member) in rows {
        match kind.as_str() {
            "user" => access.users.push(member),
            _ => access.groups.push(member),
        }
    }
    Ok(access)
}

/// A missing share inserts nothing (`false`); `OR IGNORE` makes a repeated add a no-op.
pub(crate) async fn add_member(
    db: &Db,
    share: Uuid,
    member: &ShareMember,
) -> Result<bool, StoreError> {
    let (kind, member_id) = parts(member);
    let (share, added) = (id(share), ts(Utc::now())?);
    db.write(move |conn| {
        let exists = conn
            .prepare_cached("SELECT 1 FROM shares WHERE id = ?")
            .map_err(map_err)?
            .query_row([&share], |_| Ok(()))
            .optional()
            .map_err(map_err)?;
        if exists.is_none() {
            return Ok(false);
        }
        exec(
            conn,
            "INSERT OR IGNORE INTO share_members (share_id, kind, member_id, added)
             VALUES (?, ?, ?, ?)",
            params![share, kind, member_id, added],
        )?;
        Ok(true)
    })
    .await
}

pub(crate) async fn remove_member(
    db: &Db,
    share: Uuid,
    member: &ShareMember,
) -> Result<bool, StoreError> {
    let (kind, member_id) = parts(member);
    let deleted = db
        .execute(
            "DELETE FROM share_members WHERE share_id = ? AND kind = ? AND member_id = ?",
            (id(share), kind, member_id),
        )
        .await?;
    Ok(deleted > 0)
}
