//! Upload sessions and their received ranges.
//!
//! Ranges are kept merged: a commit replaces the rows its range overlaps or touches with one
//! row covering them all, so a session has one row per disjoint run of received bytes (one,
//! for an upload sent in order) however many segments it took. Reading a session's ranges
//! thus costs the same for its first segment and its ten-thousandth; with one row per
//! segment, as before, every request re-read them all (quadratic in the segment count).
//! Readers still merge whatever rows there are, so databases written before stay correct.

use chrono::{DateTime, Utc};
use sqlx::SqliteConnection;
use upspool_domain::model::{JobStateDetail, UploadSession};
use upspool_domain::range_set::{ByteRange, RangeSet};
use upspool_domain::store::{CommitOutcome, Completion, StoreError};
use uuid::Uuid;

use crate::codec::{
    self, details_json, id, opt_ts, parse_details, session_state, to_i64, ts, SESSION_COLUMNS,
};
use crate::error::map_err;
use crate::Db;

async fn insert_session(conn: &mut SqliteConnection, s: &UploadSession) -> Result<(), StoreError> {
    let (state, completed_at, grace_until) = session_state(&s.state)?;
    sqlx::query(
        "INSERT INTO upload_sessions (id, document_id, job_id, document_name, content_type, size,
             token_hash, blob, created, expires, state, completed_at, grace_until)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(id(s.id))
    .bind(id(s.document_id))
    .bind(s.job_id)
    .bind(&s.document_name)
    .bind(&s.content_type)
    .bind(to_i64(s.size, "session size")?)
    .bind(&s.token_hash)
    .bind(&s.blob.0)
    .bind(ts(s.created)?)
    .bind(ts(s.expires)?)
    .bind(state)
    .bind(completed_at)
    .bind(grace_until)
    .execute(conn)
    .await
    .map_err(map_err)?;
    Ok(())
}

pub(crate) async fn replace_upload_session(
    db: &Db,
    session: &UploadSession,
) -> Result<Vec<UploadSession>, StoreError> {
    let session = session.clone();
    db.group
        .write(move |conn| {
            Box::pin(async move {
                // Ranges go with their sessions (ON DELETE CASCADE).
                let old = sqlx::query(&format!(
                    "DELETE FROM upload_sessions WHERE document_id = ? RETURNING {SESSION_COLUMNS}"
                ))
                .bind(id(session.document_id))
                .fetch_all(&mut *conn)
                .await
                .map_err(map_err)?;
                let old = codec::all(&old, codec::session)?;
                insert_session(conn, &session).await?;
                Ok(old)
            })
        })
        .await
}

/// Reads the session and its ranges in one read transaction, so they agree.
pub(crate) async fn get_upload_session(
    db: &Db,
    session: Uuid,
) -> Result<Option<(UploadSession, RangeSet)>, StoreError> {
    let session = id(session);
    let mut tx = db.read.begin().await.map_err(map_err)?;
    let Some(row) = sqlx::query(&format!(
        "SELECT {SESSION_COLUMNS} FROM upload_sessions WHERE id = ?"
    ))
    .bind(&session)
    .fetch_optional(&mut *tx)
    .await
    .map_err(map_err)?
    else {
        return Ok(None);
    };
    let ranges = sqlx::query("SELECT start, end_incl FROM session_ranges WHERE session_id = ?")
        .bind(&session)
        .fetch_all(&mut *tx)
        .await
        .map_err(map_err)?;
    tx.commit().await.map_err(map_err)?;
    let ranges = codec::all(&ranges, codec::range)?;
    Ok(Some((codec::session(&row)?, RangeSet::from_ranges(ranges))))
}

/// The session row alone: one statement, no read transaction.
pub(crate) async fn get_upload_session_only(
    db: &Db,
    session: Uuid,
) -> Result<Option<UploadSession>, StoreError> {
    sqlx::query(&format!(
        "SELECT {SESSION_COLUMNS} FROM upload_sessions WHERE id = ?"
    ))
    .bind(id(session))
    .fetch_optional(&db.read)
    .await
    .map_err(map_err)?
    .map(|row| codec::session(&row))
    .transpose()
}

pub(crate) async fn session_of_document(
    db: &Db,
    document: Uuid,
) -> Result<Option<UploadSession>, StoreError> {
    sqlx::query(&format!(
        "SELECT {SESSION_COLUMNS} FROM upload_sessions WHERE document_id = ?"
    ))
    .bind(id(document))
    .fetch_optional(&db.read)
    .await
    .map_err(map_err)?
    .as_ref()
    .map(codec::session)
    .transpose()
}

/// A session counts as gone when it is missing, completed, or its job has ended (a commit
/// racing a cancel must not complete the document of a canceled job). Runs in a grouped
/// transaction: answered only once it is committed.
pub(crate) async fn commit_segment(
    db: &Db,
    session: Uuid,
    range: ByteRange,
    expires: DateTime<Utc>,
    completion: Option<&Completion>,
) -> Result<CommitOutcome, StoreError> {
    let completion = completion.cloned();
    db.group
        .write(move |conn| {
            Box::pin(async move {
                commit_segment_in(conn, session, range, expires, completion.as_ref()).await
            })
        })
        .await
}

async fn commit_segment_in(
    conn: &mut SqliteConnection,
    session: Uuid,
    range: ByteRange,
    expires: DateTime<Utc>,
    completion: Option<&Completion>,
) -> Result<CommitOutcome, StoreError> {
    let session = id(session);
    let updated: Option<(i64, i64)> = sqlx::query_as(
        "UPDATE upload_sessions SET expires = ?
          WHERE id = ? AND state = 'active'
            AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = upload_sessions.job_id
                              AND j.state IN ('completed', 'canceled', 'aborted'))
          RETURNING job_id, size",
    )
    .bind(ts(expires)?)
    .bind(&session)
    .fetch_all(&mut *conn)
    .await
    .map_err(map_err)?
    .into_iter()
    .next();
    let Some((job_id, size)) = updated else {
        // Nothing was changed.
        return Ok(CommitOutcome::SessionGone);
    };
    // Completion is decided here, on the rows as this transaction sees them, so that commits
    // of one session need not be serialised by the caller: whichever commit covers the last
    // missing byte completes the session, in whatever order concurrent commits are applied.
    let received = record_range(conn, &session, range).await?;
    let Some(c) = completion.filter(|_| received.covers(u64::try_from(size).unwrap_or(u64::MAX)))
    else {
        return Ok(CommitOutcome::Committed(received));
    };

    sqlx::query(
        "UPDATE upload_sessions SET state = 'completed', completed_at = ?, grace_until = ?
          WHERE id = ?",
    )
    .bind(ts(c.completed_at)?)
    .bind(ts(c.grace_until)?)
    .bind(&session)
    .execute(&mut *conn)
    .await
    .map_err(map_err)?;

    let d = &c.document;
    let updated = sqlx::query(
        "UPDATE documents SET display_name = ?, content_type = ?, size = ?, uploaded = ?, blob = ?
          WHERE id = ? AND id = (SELECT document_id FROM upload_sessions WHERE id = ?)",
    )
    .bind(&d.display_name)
    .bind(&d.content_type)
    .bind(to_i64(d.size, "document size")?)
    .bind(opt_ts(d.uploaded)?)
    .bind(d.blob.as_ref().map(|b| b.0.as_str()))
    .bind(id(d.id))
    .bind(&session)
    .execute(&mut *conn)
    .await
    .map_err(map_err)?
    .rows_affected();
    if updated != 1 {
        return Err(StoreError::Internal(format!(
            "completion names document {} which is not the document of session {session}",
            d.id
        )));
    }

    let details: String = sqlx::query_scalar("SELECT details FROM jobs WHERE id = ?")
        .bind(job_id)
        .fetch_one(&mut *conn)
        .await
        .map_err(map_err)?;
    let mut details = parse_details(&details)?;
    let before = details.len();
    details.retain(|d| *d != JobStateDetail::UploadPending);
    if details.len() != before {
        sqlx::query("UPDATE jobs SET details = ? WHERE id = ?")
            .bind(details_json(&details)?)
            .bind(job_id)
            .execute(&mut *conn)
            .await
            .map_err(map_err)?;
    }
    Ok(CommitOutcome::Completed)
}

/// Records `range` as received, merged with every range it overlaps or touches (so the rows
/// stay disjoint and never adjacent, one per gap-separated run), and returns all of the
/// session's ranges after it. One round trip to SQLite's thread for three statements: the
/// merged row is inserted (computed from the rows it absorbs), those rows are deleted (the
/// same condition, minus the row just inserted), and the session's rows are read back.
async fn record_range(
    conn: &mut SqliteConnection,
    session: &str,
    range: ByteRange,
) -> Result<RangeSet, StoreError> {
    let (start, end) = (to_i64(range.start, "offset")?, to_i64(range.end, "offset")?);
    // Rows touching [start, end] end at start - 1 or later and begin at end + 1 or earlier
    // (`end` is below i64::MAX, being a byte offset inside a stored size). The aggregate
    // yields one row even when none touch (MIN/MAX are then NULL).
    let rows = sqlx::query(
        "INSERT INTO session_ranges (session_id, start, end_incl)
           SELECT ?1, min(coalesce(min(start), ?2), ?2), max(coalesce(max(end_incl), ?3), ?3)
             FROM session_ranges
            WHERE session_id = ?1 AND end_incl >= ?2 - 1 AND start <= ?3 + 1;
         DELETE FROM session_ranges
          WHERE session_id = ?1 AND end_incl >= ?2 - 1 AND start <= ?3 + 1
            AND rowid <> last_insert_rowid();
         SELECT start, end_incl FROM session_ranges WHERE session_id = ?1;",
    )
    .bind(session)
    .bind(start)
    .bind(end)
    .fetch_all(&mut *conn)
    .await
    .map_err(map_err)?;
    Ok(RangeSet::from_ranges(codec::all(&rows, codec::range)?))
}

pub(crate) async fn delete_upload_session(
    db: &Db,
    session: Uuid,
) -> Result<Option<UploadSession>, StoreError> {
    let rows = sqlx::query(&format!(
        "DELETE FROM upload_sessions WHERE id = ? RETURNING {SESSION_COLUMNS}"
    ))
    .bind(id(session))
    .fetch_all(&db.write)
    .await
    .map_err(map_err)?;
    rows.first().map(codec::session).transpose()
}

pub(crate) async fn sessions_to_sweep(
    db: &Db,
    now: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<UploadSession>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {SESSION_COLUMNS} FROM upload_sessions
          WHERE (state = 'active' AND expires < ?1) OR (state = 'completed' AND grace_until < ?1)
          LIMIT ?2"
    ))
    .bind(ts(now)?)
    .bind(i64::from(limit))
    .fetch_all(&db.read)
    .await
    .map_err(map_err)?;
    codec::all(&rows, codec::session)
}

pub(crate) async fn count_active_sessions(db: &Db, now: DateTime<Utc>) -> Result<u64, StoreError> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM upload_sessions WHERE state = 'active' AND expires >= ?1",
    )
    .bind(ts(now)?)
    .fetch_one(&db.read)
    .await
    .map_err(map_err)?;
    Ok(u64::try_from(n).unwrap_or(0))
}
