//! sqlx errors in the domain's terms, so that callers can tell "retry later" and "disk full"
//! from bugs.

use std::io;

use sqlx::error::ErrorKind;
use sqlx::migrate::MigrateError;
use upspool_domain::store::StoreError;

// SQLite primary result codes (the low byte of an extended code).
const SQLITE_BUSY: i64 = 5;
const SQLITE_LOCKED: i64 = 6;
const SQLITE_IOERR: i64 = 10;
const SQLITE_FULL: i64 = 13;
const SQLITE_CANTOPEN: i64 = 14;

/// Maps a sqlx error to a [`StoreError`]: full disk -> `StorageFull`; busy, locked, I/O and
/// pool trouble -> `Unavailable` (worth retrying); unique and foreign-key violations ->
/// `Conflict`; anything else -> `Internal`.
pub(crate) fn map_err(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::Database(db) => {
            let kind = db.kind();
            if matches!(
                kind,
                ErrorKind::UniqueViolation | ErrorKind::ForeignKeyViolation
            ) {
                return StoreError::Conflict(db.to_string());
            }
            let primary = db
                .code()
                .and_then(|c| c.parse::<i64>().ok())
                .map(|c| c & 0xff);
            match primary {
                Some(SQLITE_FULL) => StoreError::StorageFull,
                Some(SQLITE_BUSY | SQLITE_LOCKED | SQLITE_IOERR | SQLITE_CANTOPEN) => {
                    StoreError::Unavailable(db.to_string())
                }
                _ => StoreError::Internal(db.to_string()),
            }
        }
        sqlx::Error::Io(io) if io.kind() == io::ErrorKind::StorageFull => StoreError::StorageFull,
        e @ (sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed) => StoreError::Unavailable(e.to_string()),
        sqlx::Error::Migrate(m) => map_migrate_err(*m),
        other => StoreError::Internal(other.to_string()),
    }
}

/// Migration failures: the database's own errors keep their meaning (a full disk at startup
/// is still a full disk); a migration history that does not match this build is a bug.
pub(crate) fn map_migrate_err(e: MigrateError) -> StoreError {
    match e {
        MigrateError::Execute(e) | MigrateError::ExecuteMigration(e, _) => map_err(e),
        other => StoreError::Internal(format!("migration failed: {other}")),
    }
}

/// For values read back that the schema allows but the domain does not (a bug or a
/// hand-edited database).
pub(crate) fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(format!("corrupt metadata: {what}"))
}
