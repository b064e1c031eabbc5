//! Upload sessions and their received ranges.
//!
//! Ranges are kept merged: a commit replaces the rows its range overlaps or touches with one
//! row covering them all, so a session has one row per disjoint run of received bytes (one,
//! for an upload sent in order) however many segments it took. Reading a session's ranges
//! thus costs the same for its first segment and its ten-thousandth; with one row per
//! segment, as before, every request re-read them all (quadratic in the segment count).
//! Readers still merge whatever rows there are, so databases written before stay correct.

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};
use upspool_domain::model::{JobStateDetail, UploadSession};
use upspool_domain::range_set::{ByteRange, RangeSet};
use upspool_domain::store::{CommitOutcome, Completion, StoreError};
use uuid::Uuid;

use crate::codec::{
    self, details_json, exec, id, opt_ts, parse_details, session_state, to_i64, ts, SESSION_COLUMNS,
};
use crate::error::map_err;
use crate::Db;

/// A session's row, encoded (everything that can fail to encode, before the write is queued).
struct SessionRow {
    values: Vec<rusqlite::types::Value>,
    document_id: String,
}

fn session_row(s: &UploadSession) -> Result<SessionRow, StoreError> {
    use rusqlite::types::Value;
    let (state, completed_at, grace_until) = session_state(&s.state)?;
    let opt = |v: Option<i64>| v.map_or(Value::Null, Value::Integer);
    Ok(SessionRow {
        values: vec![
            Value::Text(id(s.id)),
            Value::Text(id(s.document_id)),
            Value::Integer(s.job_id),
            Value::Text(s.document_name.clone()),
            Value::Text(s.content_type.clone()),
            Value::Integer(to_i64(s.size, "session size")?),
            Value::Blob(s.token_hash.clone()),
            Value::Text(s.blob.0.clone()),
            Value::Integer(ts(s.created)?),
            Value::Integer(ts(s.expires)?),
            Value::Text(state.to_owned()),
            opt(completed_at),
            opt(grace_until),
        ],
        document_id: id(s.document_id),
    })
}

pub(crate) async fn replace_upload_session(
    db: &Db,
    session: &UploadSession,
) -> Result<Vec<UploadSession>, StoreError> {
    let row = session_row(session)?;
    db.write(move |conn| {
        // Ranges go with their sessions (ON DELETE CASCADE).
        let old = codec::all(
            conn,
            &format!(
                "DELETE FROM upload_sessions WHERE document_id = ? RETURNING {SESSION_COLUMNS}"
            ),
            [&row.document_id],
            codec::session,
        )?;
        exec(
            conn,
            "INSERT INTO upload_sessions (id, document_id, job_id, document_name, content_type,
                 size, token_hash, blob, created, expires, state, completed_at, grace_until)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rusqlite::params_from_iter(row.values),
        )?;
        Ok(old)
    })
    .await
}

/// Reads the session and its ranges in one read transaction, so they agree.
pub(crate) async fn get_upload_session(
    db: &Db,
    session: Uuid,
) -> Result<Option<(UploadSession, RangeSet)>, StoreError> {
    let session = id(session);
    db.read(move |conn| {
        let tx = conn.unchecked_transaction().map_err(map_err)?;
        let Some(found) = codec::first(
            &tx,
            &format!("SELECT {SESSION_COLUMNS} FROM upload_sessions WHERE id = ?"),
            [&session],
            codec::session,
        )?
        else {
            return Ok(None);
        };
        let ranges = codec::all(
            &tx,
            "SELECT start, end_incl FROM session_ranges WHERE session_id = ?",
            [&session],
            codec::range,
        )?;
        tx.commit().map_err(map_err)?;
        Ok(Some((found, RangeSet::from_ranges(ranges))))
    })
    .await
}

/// The session row alone: one statement, no read transaction.
pub(crate) async fn get_upload_session_only(
    db: &Db,
    session: Uuid,
) -> Result<Option<UploadSession>, StoreError> {
    let sql = format!("SELECT {SESSION_COLUMNS} FROM upload_sessions WHERE id = ?");
    db.lookup(sql, id(session), codec::session).await
}

pub(crate) async fn session_of_document(
    db: &Db,
    document: Uuid,
) -> Result<Option<UploadSession>, StoreError> {
    let sql = format!("SELECT {SESSION_COLUMNS} FROM upload_sessions WHERE document_id = ?");
    db.lookup(sql, id(document), codec::session).await
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
    let expires = ts(expires)?;
    db.write(move |conn| commit_segment_in(conn, session, range, expires, completion.as_ref()))
        .await
}

fn commit_segment_in(
    conn: &Connection,
    session: Uuid,
    range: ByteRange,
    expires: i64,
    completion: Option<&Completion>,
) -> Result<CommitOutcome, StoreError> {
    let session = id(session);
    let updated: Option<(i64, i64)> = conn
        .prepare_cached(
            "UPDATE upload_sessions SET expires = ?
              WHERE id = ? AND state = 'active'
                AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = upload_sessions.job_id
                                  AND j.state IN ('completed', 'canceled', 'aborted'))
              RETURNING job_id, size",
        )
        .map_err(map_err)?
        .query_row(params![expires, session], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .map_err(map_err)?;
    let Some((job_id, size)) = updated else {
        // Nothing was changed.
        return Ok(CommitOutcome::SessionGone);
    };
    // Completion is decided here, on the rows as this transaction sees them, so that commits
    // of one session need not be serialised by the caller: whichever commit covers the last
    // missing byte completes the session, in whatever order concurrent commits are applied.
    let received = record_range(conn, &session, range)?;
    let Some(c) = completion.filter(|_| received.covers(u64::try_from(size).unwrap_or(u64::MAX)))
    else {
        return Ok(CommitOutcome::Committed(received));
    };

    exec(
        conn,
        "UPDATE upload_sessions SET state = 'completed', completed_at = ?, grace_until = ?
          WHERE id = ?",
        params![ts(c.completed_at)?, ts(c.grace_until)?, session],
    )?;

    let d = &c.document;
    let updated = exec(
        conn,
        "UPDATE documents SET display_name = ?, content_type = ?, size = ?, uploaded = ?, blob = ?
          WHERE id = ? AND id = (SELECT document_id FROM upload_sessions WHERE id = ?)",
        params![
            d.display_name,
            d.content_type,
            to_i64(d.size, "document size")?,
            opt_ts(d.uploaded)?,
            d.blob.as_ref().map(|b| b.0.as_str()),
            id(d.id),
            session
        ],
    )?;
    if updated != 1 {
        return Err(StoreError::Internal(format!(
            "completion names document {} which is not the document of session {session}",
            d.id
        )));
    }

    let details: String = conn
        .prepare_cached("SELECT details FROM jobs WHERE id = ?")
        .map_err(map_err)?
        .query_row([job_id], |r| r.get(0))
        .map_err(map_err)?;
    let mut details = parse_details(&details)?;
    let before = details.len();
    details.retain(|d| *d != JobStateDetail::UploadPending);
    if details.len() != before {
        exec(
            conn,
            "UPDATE jobs SET details = ? WHERE id = ?",
            params![details_json(&details)?, job_id],
        )?;
    }
    Ok(CommitOutcome::Completed)
}

/// Records `range` as received, merged with every range it overlaps or touches (so the rows
/// stay disjoint and never adjacent, one per gap-separated run), and returns all of the
/// session's ranges after it: the merged row is inserted (computed from the rows it absorbs),
/// those rows are deleted (the same condition, minus the row just inserted), and the
/// session's rows are read back.
fn record_range(
    conn: &Connection,
    session: &str,
    range: ByteRange,
) -> Result<RangeSet, StoreError> {
    let (start, end) = (to_i64(range.start, "offset")?, to_i64(range.end, "offset")?);
    // Rows touching [start, end] end at start - 1 or later and begin at end + 1 or earlier
    // (`end` is below i64::MAX, being a byte offset inside a stored size). The aggregate
    // yields one row even when none touch (MIN/MAX are then NULL).
    exec(
        conn,
        "INSERT INTO session_ranges (session_id, start, end_incl)
           SELECT ?1, min(coalesce(min(start), ?2), ?2), max(coalesce(max(end_incl), ?3), ?3)
             FROM session_ranges
            WHERE session_id = ?1 AND end_incl >= ?2 - 1 AND start <= ?3 + 1",
        params![session, start, end],
    )?;
    exec(
        conn,
        "DELETE FROM session_ranges
          WHERE session_id = ?1 AND end_incl >= ?2 - 1 AND start <= ?3 + 1
            AND rowid <> last_insert_rowid()",
        params![session, start, end],
    )?;
    let ranges = codec::all(
        conn,
        "SELECT start, end_incl FROM session_ranges WHERE session_id = ?1",
        [session],
        codec::range,
    )?;
    Ok(RangeSet::from_ranges(ranges))
}

pub(crate) async fn delete_upload_session(
    db: &Db,
    session: Uuid,
) -> Result<Option<UploadSession>, StoreError> {
    let session = id(session);
    db.write(move |conn| {
        codec::first(
            conn,
            &format!("DELETE FROM upload_sessions WHERE id = ? RETURNING {SESSION_COLUMNS}"),
            [session],
            codec::session,
        )
    })
    .await
}

pub(crate) async fn sessions_to_sweep(
    db: &Db,
    now: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<UploadSession>, StoreError> {
    let now = ts(now)?;
    db.read(move |conn| {
        codec::all(
            conn,
            &format!(
                "SELECT {SESSION_COLUMNS} FROM upload_sessions
                  WHERE (state = 'active' AND expires < ?1)
                     OR (state = 'completed' AND grace_until < ?1)
                  LIMIT ?2"
            ),
            params![now, i64::from(limit)],
            codec::session,
        )
    })
    .await
}

pub(crate) async fn count_active_sessions(db: &Db, now: DateTime<Utc>) -> Result<u64, StoreError> {
    let now = ts(now)?;
    db.read(move |conn| {
        let n: i64 = conn
            .prepare_cached(
                "SELECT COUNT(*) FROM upload_sessions WHERE state = 'active' AND expires >= ?1",
            )
            .map_err(map_err)?
            .query_row([now], |r| r.get(0))
            .map_err(map_err)?;
        Ok(u64::try_from(n).unwrap_or(0))
    })
    .await
}
