//! Jobs: creation with their document, listing, and status compare-and-set.

use rusqlite::types::Value;
use rusqlite::{params, params_from_iter};
use upspool_domain::model::{Document, Job, JobId, JobState, JobStatus};
use upspool_domain::store::{JobQuery, StoreError};

use crate::codec::{
    self, configuration_json, details_json, exec, id, opt_ts, to_i64, ts, JOB_COLUMNS,
};
use crate::error::map_err;
use crate::Db;

/// The job id comes from `AUTOINCREMENT`, which never hands out an id twice, even after the
/// newest jobs were deleted.
pub(crate) async fn create_job(
    db: &Db,
    mut job: Job,
    mut document: Document,
) -> Result<(Job, Document), StoreError> {
    // Everything that can fail to encode is encoded before the write is queued.
    let job_row = params_of_job(&job)?;
    let doc_row = (
        id(document.id),
        to_i64(document.size, "document size")?,
        opt_ts(document.uploaded)?,
        opt_ts(document.downloaded)?,
        document.display_name.clone(),
        document.content_type.clone(),
        document.blob.as_ref().map(|b| b.0.clone()),
    );
    let job_id = db
        .write(move |conn| {
            let job_id: JobId = conn
                .prepare_cached(
                    "INSERT INTO jobs (printer_id, share_id, created, created_by_id,
                         created_by_name, created_by_upn, state, details, is_acquired,
                         configuration, display_name, is_fetchable, error_code, acknowledged,
                         completed)
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                     RETURNING id",
                )
                .map_err(map_err)?
                .query_row(params_from_iter(job_row), |r| r.get(0))
                .map_err(map_err)?;
            let (doc, size, uploaded, downloaded, name, content_type, blob) = doc_row;
            exec(
                conn,
                "INSERT INTO documents (id, job_id, display_name, content_type, size, uploaded,
                     downloaded, blob)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                params![
                    doc,
                    job_id,
                    name,
                    content_type,
                    size,
                    uploaded,
                    downloaded,
                    blob
                ],
            )?;
            Ok(job_id)
        })
        .await?;
    job.id = job_id;
    document.job_id = job_id;
    Ok((job, document))
}

/// The values of a new job's row, in the order of `create_job`'s columns.
fn params_of_job(job: &Job) -> Result<Vec<Value>, StoreError> {
    let text = |s: &str| Value::Text(s.to_owned());
    let opt = |v: Option<i64>| v.map_or(Value::Null, Value::Integer);
    Ok(vec![
        Value::Text(id(job.printer_id)),
        job.share_id.map_or(Value::Null, |s| Value::Text(id(s))),
        Value::Integer(ts(job.created)?),
        text(&job.created_by.id),
        job.created_by
            .display_name
            .as_deref()
            .map_or(Value::Null, text),
        job.created_by
            .user_principal_name
            .as_deref()
            .map_or(Value::Null, text),
        text(job.status.state.as_str()),
        Value::Text(details_json(&job.status.details)?),
        Value::Integer(job.status.is_acquired_by_printer.into()),
        Value::Text(configuration_json(&job.configuration)?),
        job.display_name.as_deref().map_or(Value::Null, text),
        Value::Integer(job.is_fetchable.into()),
        Value::Integer(job.error_code.into()),
        opt(opt_ts(job.acknowledged)?),
        opt(opt_ts(job.completed)?),
    ])
}

pub(crate) async fn get_job(db: &Db, job: JobId) -> Result<Option<Job>, StoreError> {
    let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?");
    db.lookup(sql, job, codec::job).await
}

/// `created_by_upn` compares with `COLLATE NOCASE`, which folds ASCII letters only (as UPNs
/// are in practice).
pub(crate) async fn list_jobs(db: &Db, q: &JobQuery) -> Result<Vec<Job>, StoreError> {
    let mut sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE printer_id = ?");
    let mut values = vec![Value::Text(id(q.printer_id))];
    if let Some(upn) = &q.created_by_upn {
        sql.push_str(" AND created_by_upn = ? COLLATE NOCASE");
        values.push(Value::Text(upn.clone()));
    }
    if let Some(creator) = &q.created_by_id {
        sql.push_str(" AND created_by_id = ?");
        values.push(Value::Text(creator.clone()));
    }
    if let Some(state) = q.state {
        sql.push_str(" AND state = ?");
        values.push(Value::Text(state.as_str().to_owned()));
    }
    if let Some(fetchable) = q.is_fetchable {
        sql.push_str(" AND is_fetchable = ?");
        values.push(Value::Integer(fetchable.into()));
    }
    sql.push_str(if q.descending {
        " ORDER BY created DESC, id DESC"
    } else {
        " ORDER BY created ASC, id ASC"
    });
    // A skip beyond i64::MAX skips everything anyway.
    sql.push_str(" LIMIT ? OFFSET ?");
    values.push(Value::Integer(i64::from(q.top)));
    values.push(Value::Integer(i64::try_from(q.skip).unwrap_or(i64::MAX)));
    db.read(move |conn| codec::all(conn, &sql, params_from_iter(values), codec::job))
        .await
}

/// One `UPDATE ... WHERE state IN (from) RETURNING`, so the check and the change are atomic.
pub(crate) async fn transition_job(
    db: &Db,
    job: JobId,
    from: &[JobState],
    to: &JobStatus,
    is_fetchable: bool,
) -> Result<Option<Job>, StoreError> {
    if from.is_empty() {
        return Ok(None);
    }
    let placeholders = vec!["?"; from.len()].join(", ");
    let sql = format!(
        "UPDATE jobs SET state = ?, details = ?, is_acquired = ?, is_fetchable = ?
          WHERE id = ? AND state IN ({placeholders}) RETURNING {JOB_COLUMNS}"
    );
    let mut values = vec![
        Value::Text(to.state.as_str().to_owned()),
        Value::Text(details_json(&to.details)?),
        Value::Integer(to.is_acquired_by_printer.into()),
        Value::Integer(is_fetchable.into()),
        Value::Integer(job),
    ];
    values.extend(from.iter().map(|s| Value::Text(s.as_str().to_owned())));
    db.write(move |conn| codec::first(conn, &sql, params_from_iter(values), codec::job))
        .await
}
