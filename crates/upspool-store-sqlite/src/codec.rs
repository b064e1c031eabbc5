//! Conversions between the domain's types and SQLite's: ids as lowercase hyphenated UUID text,
//! timestamps as INTEGER nanoseconds since the Unix epoch (exact round-trip of chrono's
//! precision, and integer order is time order), sizes and offsets as checked i64, enums as
//! their wire names, the job configuration and status details as JSON text.

use chrono::{DateTime, Utc};
use rusqlite::types::FromSql;
use rusqlite::Row;
use upspool_domain::configuration::PrintJobConfiguration;
use upspool_domain::model::{
    BlobKey, Document, DownloadGrant, Job, JobState, JobStateDetail, JobStatus, Printer,
    SessionState, Share, UploadSession, UserIdentity,
};
use upspool_domain::range_set::ByteRange;
use upspool_domain::store::StoreError;
use uuid::Uuid;

use crate::error::{corrupt, map_err};

pub(crate) fn ts(t: DateTime<Utc>) -> Result<i64, StoreError> {
    t.timestamp_nanos_opt().ok_or_else(|| {
        StoreError::Internal(format!(
            "timestamp {t} is outside the storable range (1677-09-21 to 2262-04-11 UTC)"
        ))
    })
}

pub(crate) fn opt_ts(t: Option<DateTime<Utc>>) -> Result<Option<i64>, StoreError> {
    t.map(ts).transpose()
}

pub(crate) fn from_ts(n: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_nanos(n)
}

/// Sizes and offsets are u64 in the domain; SQLite integers are i64.
pub(crate) fn to_i64(n: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(n).map_err(|_| StoreError::Internal(format!("{what} {n} is too large to store")))
}

pub(crate) fn to_u64(n: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(n).map_err(|_| corrupt(format_args!("negative {what} {n}")))
}

pub(crate) fn id(u: Uuid) -> String {
    u.hyphenated().to_string()
}

fn parse_uuid(s: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(s).map_err(|_| corrupt(format_args!("'{s}' is not a UUID")))
}

pub(crate) fn details_json(details: &[JobStateDetail]) -> Result<String, StoreError> {
    serde_json::to_string(details).map_err(|e| StoreError::Internal(e.to_string()))
}

pub(crate) fn parse_details(s: &str) -> Result<Vec<JobStateDetail>, StoreError> {
    serde_json::from_str(s).map_err(|e| corrupt(format_args!("job details {s}: {e}")))
}

pub(crate) fn configuration_json(c: &PrintJobConfiguration) -> Result<String, StoreError> {
    serde_json::to_string(c).map_err(|e| StoreError::Internal(e.to_string()))
}

fn get<T: FromSql>(row: &Row, col: &str) -> Result<T, StoreError> {
    row.get(col).map_err(map_err)
}

fn get_uuid(row: &Row, col: &str) -> Result<Uuid, StoreError> {
    parse_uuid(&get::<String>(row, col)?)
}

fn get_ts(row: &Row, col: &str) -> Result<DateTime<Utc>, StoreError> {
    Ok(from_ts(get(row, col)?))
}

fn get_opt_ts(row: &Row, col: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
    Ok(get::<Option<i64>>(row, col)?.map(from_ts))
}

fn get_u64(row: &Row, col: &str) -> Result<u64, StoreError> {
    to_u64(get(row, col)?, col)
}

pub(crate) const PRINTER_COLUMNS: &str = "id, display_name, manufacturer, model, created";

pub(crate) fn printer(row: &Row) -> Result<Printer, StoreError> {
    Ok(Printer {
        id: get_uuid(row, "id")?,
        display_name: get(row, "display_name")?,
        manufacturer: get(row, "manufacturer")?,
        model: get(row, "model")?,
        created: get_ts(row, "created")?,
    })
}

pub(crate) const SHARE_COLUMNS: &str = "id, display_name, printer_id, allow_all_users, created";

pub(crate) fn share(row: &Row) -> Result<Share, StoreError> {
    Ok(Share {
        id: get_uuid(row, "id")?,
        display_name: get(row, "display_name")?,
        printer_id: get_uuid(row, "printer_id")?,
        allow_all_users: get(row, "allow_all_users")?,
        created: get_ts(row, "created")?,
    })
}

pub(crate) const JOB_COLUMNS: &str = "id, printer_id, share_id, created, created_by_id, \
     created_by_name, created_by_upn, state, details, is_acquired, configuration, display_name, \
     is_fetchable, error_code, acknowledged, completed";

pub(crate) fn job(row: &Row) -> Result<Job, StoreError> {
    let state: String = get(row, "state")?;
    let configuration: String = get(row, "configuration")?;
    Ok(Job {
        id: get(row, "id")?,
        printer_id: get_uuid(row, "printer_id")?,
        share_id: get::<Option<String>>(row, "share_id")?
            .as_deref()
            .map(parse_uuid)
            .transpose()?,
        created: get_ts(row, "created")?,
        created_by: UserIdentity {
            id: get(row, "created_by_id")?,
            display_name: get(row, "created_by_name")?,
            user_principal_name: get(row, "created_by_upn")?,
        },
        status: JobStatus {
            state: JobState::parse(&state)
                .ok_or_else(|| corrupt(format_args!("job state '{state}'")))?,
            details: parse_details(&get::<String>(row, "details")?)?,
            is_acquired_by_printer: get(row, "is_acquired")?,
        },
        configuration: serde_json::from_str(&configuration)
            .map_err(|e| corrupt(format_args!("job configuration {configuration}: {e}")))?,
        display_name: get(row, "display_name")?,
        is_fetchable: get(row, "is_fetchable")?,
        error_code: get(row, "error_code")?,
        acknowledged: get_opt_ts(row, "acknowledged")?,
        completed: get_opt_ts(row, "completed")?,
    })
}

pub(crate) const DOCUMENT_COLUMNS: &str =
    "id, job_id, display_name, content_type, size, uploaded, downloaded, blob";

pub(crate) fn document(row: &Row) -> Result<Document, StoreError> {
    Ok(Document {
        id: get_uuid(row, "id")?,
        job_id: get(row, "job_id")?,
        display_name: get(row, "display_name")?,
        content_type: get(row, "content_type")?,
        size: get_u64(row, "size")?,
        uploaded: get_opt_ts(row, "uploaded")?,
        downloaded: get_opt_ts(row, "downloaded")?,
        blob: get::<Option<String>>(row, "blob")?.map(BlobKey),
    })
}

pub(crate) const SESSION_COLUMNS: &str = "id, document_id, job_id, document_name, content_type, \
     size, token_hash, blob, created, expires, state, completed_at, grace_until";

pub(crate) fn session(row: &Row) -> Result<UploadSession, StoreError> {
    let state: String = get(row, "state")?;
    let state = match state.as_str() {
        "active" => SessionState::Active,
        "completed" => match (
            get_opt_ts(row, "completed_at")?,
            get_opt_ts(row, "grace_until")?,
        ) {
            (Some(at), Some(grace_until)) => SessionState::Completed { at, grace_until },
            _ => return Err(corrupt("completed session without completion times")),
        },
        other => return Err(corrupt(format_args!("session state '{other}'"))),
    };
    Ok(UploadSession {
        id: get_uuid(row, "id")?,
        document_id: get_uuid(row, "document_id")?,
        job_id: get(row, "job_id")?,
        document_name: get(row, "document_name")?,
        content_type: get(row, "content_type")?,
        size: get_u64(row, "size")?,
        token_hash: get(row, "token_hash")?,
        blob: BlobKey(get(row, "blob")?),
        created: get_ts(row, "created")?,
        expires: get_ts(row, "expires")?,
        state,
    })
}

/// The `state`, `completed_at` and `grace_until` columns of a session.
pub(crate) fn session_state(
    s: &SessionState,
) -> Result<(&'static str, Option<i64>, Option<i64>), StoreError> {
    Ok(match s {
        SessionState::Active => ("active", None, None),
        SessionState::Completed { at, grace_until } => {
            ("completed", Some(ts(*at)?), Some(ts(*grace_until)?))
        }
    })
}

pub(crate) fn range(row: &Row) -> Result<ByteRange, StoreError> {
    let (start, end) = (get_u64(row, "start")?, get_u64(row, "end_incl")?);
    ByteRange::new(start, end).ok_or_else(|| corrupt(format_args!("range {start}-{end}")))
}

pub(crate) const GRANT_COLUMNS: &str = "id, document_id, token_hash, expires";

pub(crate) fn grant(row: &Row) -> Result<DownloadGrant, StoreError> {
    Ok(DownloadGrant {
        id: get_uuid(row, "id")?,
        document_id: get_uuid(row, "document_id")?,
        token_hash: get(row, "token_hash")?,
        expires: get_ts(row, "expires")?,
    })
}

/// Runs a prepared (cached) query and decodes every row with `f`, stopping at the first error.
pub(crate) fn all<T>(
    conn: &rusqlite::Connection,
    sql: &str,
    params: impl rusqlite::Params,
    f: fn(&Row) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let mut stmt = conn.prepare_cached(sql).map_err(map_err)?;
    let mut rows = stmt.query(params).map_err(map_err)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(map_err)? {
        out.push(f(row)?);
    }
    Ok(out)
}

/// The first row of a query decoded with `f`, if there is one.
pub(crate) fn first<T>(
    conn: &rusqlite::Connection,
    sql: &str,
    params: impl rusqlite::Params,
    f: fn(&Row) -> Result<T, StoreError>,
) -> Result<Option<T>, StoreError> {
    let mut stmt = conn.prepare_cached(sql).map_err(map_err)?;
    let mut rows = stmt.query(params).map_err(map_err)?;
    rows.next().map_err(map_err)?.map(f).transpose()
}

/// Runs a prepared (cached) statement; returns the number of rows it changed.
pub(crate) fn exec(
    conn: &rusqlite::Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<usize, StoreError> {
    conn.prepare_cached(sql)
        .map_err(map_err)?
        .execute(params)
        .map_err(map_err)
}
