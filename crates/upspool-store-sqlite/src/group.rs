//! Group commit: concurrent write transactions share one `COMMIT`, and so one WAL `fsync`.
//!
//! With `synchronous = FULL` every commit syncs the WAL, and on the one write connection those
//! syncs queue behind each other: N concurrent segments cost N syncs one after another. Here
//! callers hand their work to one writer task and wait for its answer. The task takes every
//! piece of work that queued up while the previous batch was committing, runs them one after
//! another in a single `BEGIN IMMEDIATE` transaction (each inside its own savepoint, so one
//! that fails is rolled back alone and the others still commit), commits once, and only then
//! answers each caller.
//!
//! The durability promise is unchanged: a caller is answered only after the `COMMIT` holding
//! its own changes returned, and if that `COMMIT` fails every caller in the batch gets the
//! error and nothing of theirs is recorded. Work runs in arrival order on one connection, so
//! each piece sees every earlier one's changes, as separate transactions would.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use sqlx::{Connection, Sqlite, SqliteConnection, SqlitePool, Transaction};
use tokio::sync::{mpsc, oneshot};
use upspool_domain::store::StoreError;

use crate::error::map_err;

/// At most this many pieces of work share one transaction, so one batch cannot hold the write
/// lock (and keep later callers waiting) for long.
const MAX_BATCH: usize = 64;

/// A future borrowing the connection it runs on.
pub(crate) type ConnFuture<'c, T> = Pin<Box<dyn Future<Output = T> + Send + 'c>>;

/// What the writer task runs and answers: one queued piece of work, its result type erased.
trait Work: Send {
    /// Runs the work on the batch's connection. `Ok` carries the answer to send once the batch
    /// committed; `Err` is answered at once (its savepoint is rolled back first).
    fn run<'c>(self: Box<Self>, conn: &'c mut SqliteConnection) -> ConnFuture<'c, Ran>;
    /// Answers with `error` without running (the batch could not start).
    fn fail(self: Box<Self>, error: StoreError);
}

/// A piece of work that ran: whether it succeeded, and how to answer its caller given the
/// outcome of the shared `COMMIT` (`None` when it succeeded).
struct Ran {
    ok: bool,
    answer: Answer,
}

/// Sends a caller its result, given the error of the shared `COMMIT` if it failed.
type Answer = Box<dyn FnOnce(Option<StoreError>) + Send>;

struct Queued<T, F> {
    work: F,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> Work for Queued<T, F>
where
    T: Send + 'static,
    F: for<'c> FnOnce(&'c mut SqliteConnection) -> ConnFuture<'c, Result<T, StoreError>>
        + Send
        + 'static,
{
    fn run<'c>(self: Box<Self>, conn: &'c mut SqliteConnection) -> ConnFuture<'c, Ran> {
        let Queued { work, reply } = *self;
        Box::pin(async move {
            let result = work(conn).await;
            let ok = result.is_ok();
            Ran {
                ok,
                answer: Box::new(move |commit_error| {
                    // The caller may have gone; its work is recorded (or not) all the same.
                    let _ = reply.send(match commit_error {
                        Some(e) => Err(e),
                        None => result,
                    });
                }),
            }
        })
    }

    fn fail(self: Box<Self>, error: StoreError) {
        let _ = self.reply.send(Err(error));
    }
}

/// The callers' end of the writer task. Dropping it (with the store) ends the task.
pub(crate) struct GroupCommit {
    queue: mpsc::UnboundedSender<Box<dyn Work>>,
    /// Batches committed so far (for tests and diagnostics).
    commits: Arc<AtomicU64>,
}

impl GroupCommit {
    /// Starts the writer task on `pool` (the one write connection). Needs a Tokio runtime.
    pub(crate) fn start(pool: SqlitePool) -> GroupCommit {
        let (queue, rx) = mpsc::unbounded_channel();
        let commits = Arc::new(AtomicU64::new(0));
        tokio::spawn(writer(pool, rx, commits.clone()));
        GroupCommit { queue, commits }
    }

    /// How many transactions the writer task has committed.
    pub(crate) fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Runs `work` in a write transaction (shared with whatever else is queued) and returns its
    /// result once that transaction is committed. An `Err` from `work` rolls back only its
    /// own changes.
    pub(crate) async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> ConnFuture<'c, Result<T, StoreError>>
            + Send
            + 'static,
    {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Box::new(Queued { work, reply }))
            .map_err(|_| StoreError::Unavailable("the metadata writer has stopped".into()))?;
        answer.await.map_err(|_| {
            StoreError::Internal("the metadata writer dropped a write unanswered".into())
        })?
    }
}

async fn writer(
    pool: SqlitePool,
    mut rx: mpsc::UnboundedReceiver<Box<dyn Work>>,
    commits: Arc<AtomicU64>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        run_batch(&pool, std::mem::take(&mut batch), &commits).await;
    }
}

/// One transaction for the whole batch; each caller is answered after its `COMMIT`, which
/// `commits` counts.
async fn run_batch(pool: &SqlitePool, mut batch: Vec<Box<dyn Work>>, commits: &AtomicU64) {
    let mut tx = match pool.begin_with("BEGIN IMMEDIATE").await {
        Ok(tx) => tx,
        Err(e) => {
            let e = map_err(e);
            for work in batch {
                work.fail(e.clone());
            }
            return;
        }
    };
    if batch.len() == 1 {
        let work = batch.pop().expect("a batch of one");
        return run_alone(tx, work, commits).await;
    }
    let mut done = Vec::with_capacity(batch.len());
    let mut works = batch.into_iter();
    for work in works.by_ref() {
        match run_one(&mut tx, work).await {
            Ok(Some(answer)) => done.push(answer),
            Ok(None) => {}
            Err(e) => {
                // The transaction is in an unknown state: give up on the whole batch. Dropping
                // `tx` rolls it back.
                for answer in done {
                    answer(Some(e.clone()));
                }
                for work in works {
                    work.fail(e.clone());
                }
                return;
            }
        }
    }
    let failed = tx.commit().await.map_err(map_err).err();
    if failed.is_none() {
        commits.fetch_add(1, Ordering::Relaxed);
    }
    for answer in done {
        answer(failed.clone());
    }
}

/// A batch of one needs no savepoint (two statements, each a round trip to SQLite's thread):
/// if the work fails, rolling back the whole transaction leaves nothing of it either.
async fn run_alone(mut tx: Transaction<'static, Sqlite>, work: Box<dyn Work>, commits: &AtomicU64) {
    let ran = work.run(&mut tx).await;
    if !ran.ok {
        if let Err(e) = tx.rollback().await {
            tracing::warn!(error = %e, "rolling back a failed write failed");
        }
        (ran.answer)(None);
        return;
    }
    let failed = tx.commit().await.map_err(map_err).err();
    if failed.is_none() {
        commits.fetch_add(1, Ordering::Relaxed);
    }
    (ran.answer)(failed);
}

/// Runs one piece of work inside a savepoint. Returns its answer if it succeeded (to be sent
/// after the commit), `None` if it failed (already answered: nothing of it is recorded), and
/// `Err` if a savepoint statement failed, which spoils the batch (the work is answered with
/// that error).
async fn run_one(
    tx: &mut Transaction<'static, Sqlite>,
    work: Box<dyn Work>,
) -> Result<Option<Answer>, StoreError> {
    let mut savepoint = match (**tx).begin().await {
        Ok(sp) => sp,
        Err(e) => {
            let e = map_err(e);
            work.fail(e.clone());
            return Err(e);
        }
    };
    let ran = work.run(&mut savepoint).await;
    if ran.ok {
        if let Err(e) = savepoint.commit().await {
            let e = map_err(e);
            (ran.answer)(Some(e.clone()));
            return Err(e);
        }
        Ok(Some(ran.answer))
    } else {
        let rolled_back = savepoint.rollback().await.map_err(map_err);
        (ran.answer)(None);
        rolled_back.map(|()| None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

    async fn pool(dir: &tempfile::TempDir) -> SqlitePool {
        let options = SqliteConnectOptions::new()
            .filename(dir.path().join("g.db"))
            .create_if_missing(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .unwrap();
        sqlx::query("CREATE TABLE t (x INTEGER NOT NULL PRIMARY KEY) STRICT")
            .execute(&pool)
            .await
            .unwrap();
        pool
    }

    fn insert(
        x: i64,
    ) -> impl for<'c> FnOnce(&'c mut SqliteConnection) -> ConnFuture<'c, Result<i64, StoreError>>
    {
        move |conn| {
            Box::pin(async move {
                sqlx::query("INSERT INTO t (x) VALUES (?)")
                    .bind(x)
                    .execute(&mut *conn)
                    .await
                    .map_err(map_err)?;
                Ok(x)
            })
        }
    }

    /// Writes queued together share one commit; one that fails is rolled back alone and the
    /// others are still recorded, each caller getting its own result.
    #[tokio::test]
    async fn queued_writes_share_one_commit_and_fail_alone() {
        let dir = tempfile::tempdir().unwrap();
        let pool = pool(&dir).await;
        let group = GroupCommit::start(pool.clone());
        // On this single-threaded runtime, all three are queued before the writer task runs.
        let (a, b, c) = tokio::join!(
            group.write(insert(1)),
            group.write(insert(1)),
            group.write(insert(2))
        );
        assert_eq!(a.unwrap(), 1);
        assert!(matches!(b, Err(StoreError::Conflict(_))), "{b:?}");
        assert_eq!(c.unwrap(), 2);
        assert_eq!(group.commits(), 1, "one transaction for the three writes");
        let rows: Vec<i64> = sqlx::query_scalar("SELECT x FROM t ORDER BY x")
            .fetch_all(&pool)
            .await
            .unwrap();
        assert_eq!(rows, vec![1, 2]);

        // A lone write is a batch of its own.
        assert_eq!(group.write(insert(3)).await.unwrap(), 3);
        assert_eq!(group.commits(), 2);
    }

    /// A lone write that fails after changing rows (no savepoint around it) leaves none of
    /// its changes behind, and the next write still commits.
    #[tokio::test]
    async fn a_lone_failed_write_is_rolled_back() {
        let dir = tempfile::tempdir().unwrap();
        let pool = pool(&dir).await;
        let group = GroupCommit::start(pool.clone());
        let half = group
            .write(|conn| {
                Box::pin(async move {
                    insert(20)(&mut *conn).await?;
                    insert(20)(&mut *conn).await
                })
            })
            .await;
        assert!(matches!(half, Err(StoreError::Conflict(_))), "{half:?}");
        assert_eq!(group.commits(), 0);
        assert_eq!(group.write(insert(21)).await.unwrap(), 21);
        let rows: Vec<i64> = sqlx::query_scalar("SELECT x FROM t ORDER BY x")
            .fetch_all(&pool)
            .await
            .unwrap();
        assert_eq!(rows, vec![21]);
    }

    /// A write that fails after changing rows leaves none of its changes behind.
    #[tokio::test]
    async fn a_failed_write_is_rolled_back_to_its_savepoint() {
        let dir = tempfile::tempdir().unwrap();
        let pool = pool(&dir).await;
        let group = GroupCommit::start(pool.clone());
        let half = group.write(|conn| {
            Box::pin(async move {
                insert(10)(&mut *conn).await?;
                insert(10)(&mut *conn).await
            })
        });
        let (half, other) = tokio::join!(half, group.write(insert(11)));
        assert!(matches!(half, Err(StoreError::Conflict(_))), "{half:?}");
        assert_eq!(other.unwrap(), 11);
        let rows: Vec<i64> = sqlx::query_scalar("SELECT x FROM t ORDER BY x")
            .fetch_all(&pool)
            .await
            .unwrap();
        assert_eq!(rows, vec![11]);
    }
}
