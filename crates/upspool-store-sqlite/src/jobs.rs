//! Jobs: creation with their document, listing, and status compare-and-set.

use sqlx::{QueryBuilder, Sqlite, SqliteConnection};
use upspool_domain::model::{Document, Job, JobId, JobState, JobStatus};
use upspool_domain::store::{JobQuery, StoreError};

use crate::codec::{self, configuration_json, details_json, id, opt_ts, to_i64, ts, JOB_COLUMNS};
use crate::error::map_err;
use crate::Db;

/// The job id comes from `AUTOINCREMENT`, which never hands out an id twice, even after the
/// newest jobs were deleted.
pub(crate) async fn create_job(
    db: &Db,
    job: Job,
    document: Document,
) -> Result<(Job, Document), StoreError> {
    db.group
        .write(move |conn| Box::pin(insert_job(conn, job, document)))
        .await
}

async fn insert_job(
    conn: &mut SqliteConnection,
    mut job: Job,
    mut document: Document,
) -> Result<(Job, Document), StoreError> {
    job.id = sqlx::query_scalar(
        "INSERT INTO jobs (printer_id, share_id, created, created_by_id, created_by_name,
             created_by_upn, state, details, is_acquired, configuration, display_name,
             is_fetchable, error_code, acknowledged, completed)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         RETURNING id",
    )
    .bind(id(job.printer_id))
    .bind(job.share_id.map(id))
    .bind(ts(job.created)?)
    .bind(&job.created_by.id)
    .bind(&job.created_by.display_name)
    .bind(&job.created_by.user_principal_name)
    .bind(job.status.state.as_str())
    .bind(details_json(&job.status.details)?)
    .bind(job.status.is_acquired_by_printer)
    .bind(configuration_json(&job.configuration)?)
    .bind(&job.display_name)
    .bind(job.is_fetchable)
    .bind(job.error_code)
    .bind(opt_ts(job.acknowledged)?)
    .bind(opt_ts(job.completed)?)
    .fetch_one(&mut *conn)
    .await
    .map_err(map_err)?;
    document.job_id = job.id;
    sqlx::query(
        "INSERT INTO documents (id, job_id, display_name, content_type, size, uploaded,
             downloaded, blob)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(id(document.id))
    .bind(document.job_id)
    .bind(&document.display_name)
    .bind(&document.content_type)
    .bind(to_i64(document.size, "document size")?)
    .bind(opt_ts(document.uploaded)?)
    .bind(opt_ts(document.downloaded)?)
    .bind(document.blob.as_ref().map(|b| b.0.as_str()))
    .execute(&mut *conn)
    .await
    .map_err(map_err)?;
    Ok((job, document))
}

pub(crate) async fn get_job(db: &Db, job: JobId) -> Result<Option<Job>, StoreError> {
    sqlx::query(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?"))
        .bind(job)
        .fetch_optional(&db.read)
        .await
        .map_err(map_err)?
        .as_ref()
        .map(codec::job)
        .transpose()
}

/// `created_by_upn` compares with `COLLATE NOCASE`, which folds ASCII letters only (as UPNs
/// are in practice).
pub(crate) async fn list_jobs(db: &Db, q: &JobQuery) -> Result<Vec<Job>, StoreError> {
    let mut sql = QueryBuilder::<Sqlite>::new(format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE printer_id = "
    ));
    sql.push_bind(id(q.printer_id));
    if let Some(upn) = &q.created_by_upn {
        sql.push(" AND created_by_upn = ")
            .push_bind(upn.clone())
            .push(" COLLATE NOCASE");
    }
    if let Some(creator) = &q.created_by_id {
        sql.push(" AND created_by_id = ").push_bind(creator.clone());
    }
    if let Some(state) = q.state {
        sql.push(" AND state = ").push_bind(state.as_str());
    }
    if let Some(fetchable) = q.is_fetchable {
        sql.push(" AND is_fetchable = ").push_bind(fetchable);
    }
    sql.push(if q.descending {
        " ORDER BY created DESC, id DESC"
    } else {
        " ORDER BY created ASC, id ASC"
    });
    // A skip beyond i64::MAX skips everything anyway.
    let skip = i64::try_from(q.skip).unwrap_or(i64::MAX);
    sql.push(" LIMIT ")
        .push_bind(i64::from(q.top))
        .push(" OFFSET ")
        .push_bind(skip);
    let rows = sql.build().fetch_all(&db.read).await.map_err(map_err)?;
    codec::all(&rows, codec::job)
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
    let mut sql = QueryBuilder::<Sqlite>::new("UPDATE jobs SET state = ");
    sql.push_bind(to.state.as_str())
        .push(", details = ")
        .push_bind(details_json(&to.details)?)
        .push(", is_acquired = ")
        .push_bind(to.is_acquired_by_printer)
        .push(", is_fetchable = ")
        .push_bind(is_fetchable)
        .push(" WHERE id = ")
        .push_bind(job)
        .push(" AND state IN (");
    let mut states = sql.separated(", ");
    for state in from {
        states.push_bind(state.as_str());
    }
    sql.push(format!(") RETURNING {JOB_COLUMNS}"));
    db.group
        .write(move |conn| {
            Box::pin(async move {
                let rows = sql.build().fetch_all(&mut *conn).await.map_err(map_err)?;
                rows.first().map(codec::job).transpose()
            })
        })
        .await
}
