//! The schema: numbered migrations in `migrations/`, applied in order, each at most once.
//!
//! The schema version is SQLite's `user_version`. Databases made by builds that ran their
//! migrations through sqlx record them in `_sqlx_migrations` instead; their version is read
//! from there once, so they open as they are.

use rusqlite::{Connection, OptionalExtension};
use upspool_domain::store::StoreError;

use crate::error::map_err;

/// Every migration, in order; a migration's number is its position (from 1).
const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_initial.sql"),
    include_str!("../migrations/0002_share_access.sql"),
];

/// Brings the schema up to date in one transaction: either every missing migration is applied
/// or none. A database from a newer build (a version this one does not know) is refused.
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(map_err)?;
    let mut version: i64 = tx
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(map_err)?;
    if version == 0 {
        version = sqlx_version(&tx)?;
    }
    let latest = MIGRATIONS.len() as i64;
    if version > latest {
        return Err(StoreError::Internal(format!(
            "the metadata database has schema version {version}, newer than this build's \
             {latest}: run the upspool version that wrote it"
        )));
    }
    for (n, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.execute_batch(sql).map_err(|e| {
            let e = map_err(e);
            tracing::error!(migration = n + 1, error = %e, "migration failed");
            e
        })?;
    }
    // `PRAGMA` takes no parameters; `latest` is a number of ours.
    tx.execute_batch(&format!("PRAGMA user_version = {latest}"))
        .map_err(map_err)?;
    tx.commit().map_err(map_err)?;
    if version < latest {
        tracing::info!(from = version, to = latest, "metadata schema migrated");
    }
    Ok(())
}

/// The newest migration recorded by sqlx's migrator, 0 if there is no such table.
fn sqlx_version(conn: &Connection) -> Result<i64, StoreError> {
    let table: Option<String> = conn
        .query_row(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
            [],
            |r| r.get(0),
        )
        .optional()
        .map_err(map_err)?;
    if table.is_none() {
        return Ok(0);
    }
    conn.query_row(
        "SELECT coalesce(max(version), 0) FROM _sqlx_migrations WHERE success",
        [],
        |r| r.get(0),
    )
    .map_err(map_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tables(conn: &Connection) -> Vec<String> {
        let mut stmt = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .unwrap();
        let names = stmt.query_map([], |r| r.get(0)).unwrap();
        names.map(Result::unwrap).collect()
    }

    fn version(conn: &Connection) -> i64 {
        conn.query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap()
    }

    /// A new database gets every table; migrating again changes nothing.
    #[test]
    fn a_new_database_gets_the_whole_schema_once() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        let first = tables(&conn);
        assert!(first.contains(&"share_members".to_string()), "{first:?}");
        assert!(first.contains(&"session_ranges".to_string()), "{first:?}");
        assert_eq!(version(&conn), MIGRATIONS.len() as i64);
        migrate(&mut conn).unwrap();
        assert_eq!(tables(&conn), first);
    }

    /// A database whose first migration sqlx applied gets only the second, and keeps its rows.
    #[test]
    fn a_database_migrated_by_sqlx_continues_where_it_stopped() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.execute_batch(
            "CREATE TABLE _sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL,
                 installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, success BOOLEAN NOT NULL,
                 checksum BLOB NOT NULL, execution_time BIGINT NOT NULL);
             INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
                 VALUES (1, 'initial', TRUE, x'00', 1);
             INSERT INTO printers (id, display_name, created) VALUES ('p', 'kept', 1);",
        )
        .unwrap();
        assert!(!tables(&conn).contains(&"share_members".to_string()));
        migrate(&mut conn).unwrap();
        assert!(tables(&conn).contains(&"share_members".to_string()));
        assert_eq!(version(&conn), 2);
        let kept: String = conn
            .query_row(
                "SELECT display_name FROM printers WHERE id = 'p'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(kept, "kept");
    }

    /// A database from a newer build is refused, not half-used.
    #[test]
    fn a_newer_schema_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("PRAGMA user_version = 99").unwrap();
        assert!(matches!(migrate(&mut conn), Err(StoreError::Internal(_))));
    }
}
