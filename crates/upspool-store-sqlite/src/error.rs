//! SQLite errors in the domain's terms, so that callers can tell "retry later" and "disk full"
//! from bugs.

use rusqlite::ffi;
use rusqlite::ErrorCode;
use upspool_domain::store::StoreError;

/// Maps a SQLite error to a [`StoreError`]: full disk -> `StorageFull`; busy, locked, I/O and
/// can't-open -> `Unavailable` (worth retrying); unique and foreign-key violations ->
/// `Conflict`; anything else (other constraints, type mismatches) -> `Internal`.
pub(crate) fn map_err(e: rusqlite::Error) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _) => match f.code {
            ErrorCode::ConstraintViolation
                if matches!(
                    f.extended_code,
                    ffi::SQLITE_CONSTRAINT_UNIQUE
                        | ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                        | ffi::SQLITE_CONSTRAINT_FOREIGNKEY
                ) =>
            {
                StoreError::Conflict(e.to_string())
            }
            ErrorCode::DiskFull => StoreError::StorageFull,
            ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::SystemIoFailure
            | ErrorCode::CannotOpen => StoreError::Unavailable(e.to_string()),
            _ => StoreError::Internal(e.to_string()),
        },
        rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::IntegralValueOutOfRange(..) => corrupt(&e),
        _ => StoreError::Internal(e.to_string()),
    }
}

/// For values read back that the schema allows but the domain does not (a bug or a
/// hand-edited database).
pub(crate) fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(format!("corrupt metadata: {what}"))
}
