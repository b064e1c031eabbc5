//! Group commit: concurrent write transactions share one `COMMIT`, and so one WAL `fsync`.
//!
//! With `synchronous = FULL` every commit syncs the WAL, and on the one write connection those
//! syncs queue behind each other: N concurrent segments cost N syncs one after another. Here
//! callers hand their work to the writer thread, which owns the write connection, and wait for
//! its answer. The thread takes every piece of work that queued up while the previous batch
//! was committing, runs them one after another in a single `BEGIN IMMEDIATE` transaction (each
//! inside its own savepoint, so one that fails is rolled back alone and the others still
//! commit), commits once, and only then answers each caller.
//!
//! The durability promise is unchanged: a caller is answered only after the `COMMIT` holding
//! its own changes returned, and if that `COMMIT` fails every caller in the batch gets the
//! error and nothing of theirs is recorded. Work runs in arrival order on one connection, so
//! each piece sees every earlier one's changes, as separate transactions would.
//!
//! Every write of the store goes through here, so in-process writers queue in the channel
//! instead of spinning on SQLite's busy handler; `BEGIN IMMEDIATE` takes the write lock up
//! front, so a transaction can never fail half-way on a lock upgrade, even against another
//! process.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};

use rusqlite::Connection;
use tokio::sync::oneshot;
use upspool_domain::store::StoreError;

use crate::error::map_err;

/// At most this many pieces of work share one transaction, so one batch cannot hold the write
/// lock (and keep later callers waiting) for long.
const MAX_BATCH: usize = 64;

/// What the writer thread runs and answers: one queued piece of work, its result type erased.
trait Work: Send {
    /// Runs the work on the batch's connection. `Ok` carries the answer to send once the batch
    /// committed; `Err` is answered at once (its savepoint is rolled back first).
    fn run(self: Box<Self>, conn: &Connection) -> Ran;
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
    F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
{
    fn run(self: Box<Self>, conn: &Connection) -> Ran {
        let Queued { work, reply } = *self;
        // A panic is a bug in one write; it must not take the writer (and every later write)
        // down with it. Its savepoint is rolled back like any failed write's.
        let result = catch_unwind(AssertUnwindSafe(|| work(conn))).unwrap_or_else(|_| {
            Err(StoreError::Internal(
                "a metadata write panicked; nothing of it was recorded".into(),
            ))
        });
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
    }

    fn fail(self: Box<Self>, error: StoreError) {
        let _ = self.reply.send(Err(error));
    }
}

enum Message {
    Work(Box<dyn Work>),
    /// Finish, close the connection (checkpointing the WAL), then answer.
    Stop(oneshot::Sender<()>),
}

/// The callers' end of the writer thread. Dropping it (with the store) ends the thread, which
/// closes the connection.
pub(crate) struct GroupCommit {
    queue: mpsc::Sender<Message>,
    /// Batches committed so far (for tests and diagnostics).
    commits: Arc<AtomicU64>,
}

impl GroupCommit {
    /// Starts the writer thread on `conn`, the one write connection.
    pub(crate) fn start(conn: Connection) -> Result<GroupCommit, StoreError> {
        let (queue, rx) = mpsc::channel();
        let commits = Arc::new(AtomicU64::new(0));
        let counted = commits.clone();
        std::thread::Builder::new()
            .name("upspool-sqlite-writer".into())
            .spawn(move || writer(conn, rx, &counted))
            .map_err(|e| StoreError::Internal(format!("starting the metadata writer: {e}")))?;
        Ok(GroupCommit { queue, commits })
    }

    /// How many transactions the writer has committed.
    pub(crate) fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Runs `work` in a write transaction (shared with whatever else is queued) and returns its
    /// result once that transaction is committed. An `Err` from `work` rolls back only its
    /// own changes.
    pub(crate) async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Message::Work(Box::new(Queued { work, reply })))
            .map_err(|_| StoreError::Unavailable("the metadata store is closed".into()))?;
        // Unanswered means the writer stopped before running it (the store is closing).
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the metadata store is closed".into()))?
    }

    /// Stops the writer after the work queued before this call, and waits until its
    /// connection is closed. Later writes answer `Unavailable`.
    pub(crate) async fn stop(&self) {
        let (done, stopped) = oneshot::channel();
        if self.queue.send(Message::Stop(done)).is_ok() {
            let _ = stopped.await;
        }
    }
}

fn writer(conn: Connection, rx: mpsc::Receiver<Message>, commits: &AtomicU64) {
    let mut stop = None;
    while let Ok(first) = rx.recv() {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Message::Work(work) => batch.push(work),
                Message::Stop(done) => stop = Some(done),
            }
            if stop.is_none() && batch.len() < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            run_batch(&conn, batch, commits);
        }
        if stop.is_some() {
            break;
        }
    }
    // Writes queued behind the stop are refused, not dropped unanswered; later stops are
    // answered with the first, once the connection is closed.
    let mut stops: Vec<_> = stop.into_iter().collect();
    while let Ok(message) = rx.try_recv() {
        match message {
            Message::Work(work) => work.fail(StoreError::Unavailable(
                "the metadata store is closed".into(),
            )),
            Message::Stop(done) => stops.push(done),
        }
    }
    drop(rx);
    if let Err((_, e)) = conn.close() {
        tracing::warn!(error = %e, "closing the metadata write connection failed");
    }
    for done in stops {
        let _ = done.send(());
    }
}

/// One transaction for the whole batch; each caller is answered after its `COMMIT`, which
/// `commits` counts.
fn run_batch(conn: &Connection, mut batch: Vec<Box<dyn Work>>, commits: &AtomicU64) {
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        let e = map_err(e);
        for work in batch {
            work.fail(e.clone());
        }
        return;
    }
    if batch.len() == 1 {
        let work = batch.pop().expect("a batch of one");
        return run_alone(conn, work, commits);
    }
    let mut done = Vec::with_capacity(batch.len());
    let mut works = batch.into_iter();
    for work in works.by_ref() {
        match run_one(conn, work) {
            Ok(Some(answer)) => done.push(answer),
            Ok(None) => {}
            Err(e) => {
                // The transaction is in an unknown state: give up on the whole batch.
                rollback(conn);
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
    let failed = commit(conn, commits);
    for answer in done {
        answer(failed.clone());
    }
}

/// A batch of one needs no savepoint: if the work fails, rolling back the whole transaction
/// leaves nothing of it either.
fn run_alone(conn: &Connection, work: Box<dyn Work>, commits: &AtomicU64) {
    let ran = work.run(conn);
    if !ran.ok {
        rollback(conn);
        (ran.answer)(None);
        return;
    }
    (ran.answer)(commit(conn, commits));
}

/// Commits; on failure rolls back what is left of the transaction and returns the error.
fn commit(conn: &Connection, commits: &AtomicU64) -> Option<StoreError> {
    match conn.execute_batch("COMMIT") {
        Ok(()) => {
            commits.fetch_add(1, Ordering::Relaxed);
            None
        }
        Err(e) => {
            // A failed COMMIT (busy, I/O) may leave the transaction open.
            rollback(conn);
            Some(map_err(e))
        }
    }
}

fn rollback(conn: &Connection) {
    if conn.is_autocommit() {
        return; // SQLite already rolled it back.
    }
    if let Err(e) = conn.execute_batch("ROLLBACK") {
        tracing::warn!(error = %e, "rolling back a failed write failed");
    }
}

/// Runs one piece of work inside a savepoint. Returns its answer if it succeeded (to be sent
/// after the commit), `None` if it failed (already answered: nothing of it is recorded), and
/// `Err` if a savepoint statement failed, which spoils the batch (the work is answered with
/// that error).
fn run_one(conn: &Connection, work: Box<dyn Work>) -> Result<Option<Answer>, StoreError> {
    if let Err(e) = conn.execute_batch("SAVEPOINT work") {
        let e = map_err(e);
        work.fail(e.clone());
        return Err(e);
    }
    let ran = work.run(conn);
    if ran.ok {
        if let Err(e) = conn.execute_batch("RELEASE work") {
            let e = map_err(e);
            (ran.answer)(Some(e.clone()));
            return Err(e);
        }
        Ok(Some(ran.answer))
    } else {
        let rolled_back = conn
            .execute_batch("ROLLBACK TO work; RELEASE work")
            .map_err(map_err);
        (ran.answer)(None);
        rolled_back.map(|()| None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer_on(dir: &tempfile::TempDir) -> (GroupCommit, Connection) {
        let path = dir.path().join("g.db");
        let conn = crate::conn::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE t (x INTEGER NOT NULL PRIMARY KEY) STRICT")
            .unwrap();
        (
            GroupCommit::start(conn).unwrap(),
            crate::conn::open(&path).unwrap(),
        )
    }

    fn insert(x: i64) -> impl FnOnce(&Connection) -> Result<i64, StoreError> {
        move |conn| {
            crate::codec::exec(conn, "INSERT INTO t (x) VALUES (?)", [x])?;
            Ok(x)
        }
    }

    fn rows(conn: &Connection) -> Vec<i64> {
        crate::codec::all(conn, "SELECT x FROM t ORDER BY x", [], |r| {
            r.get(0).map_err(map_err)
        })
        .unwrap()
    }

    /// Writes queued together share one commit; one that fails is rolled back alone and the
    /// others are still recorded, each caller getting its own result.
    #[tokio::test]
    async fn queued_writes_share_one_commit_and_fail_alone() {
        let dir = tempfile::tempdir().unwrap();
        let (group, raw) = writer_on(&dir);
        // Hold the writer up so that the three below queue behind it: join! polls in order,
        // so all of them are queued before the release is sent.
        let (release, held) = std::sync::mpsc::channel::<()>();
        let (blocked, a, b, c, ()) = tokio::join!(
            group.write(move |_| {
                held.recv().unwrap();
                Ok(0)
            }),
            group.write(insert(1)),
            group.write(insert(1)),
            group.write(insert(2)),
            async { release.send(()).unwrap() }
        );
        assert_eq!(blocked.unwrap(), 0);
        assert_eq!(a.unwrap(), 1);
        assert!(matches!(b, Err(StoreError::Conflict(_))), "{b:?}");
        assert_eq!(c.unwrap(), 2);
        assert_eq!(rows(&raw), vec![1, 2]);
        let batched = group.commits();
        assert!(batched <= 2, "{batched} commits for four writes");

        // A lone write is a batch of its own.
        assert_eq!(group.write(insert(3)).await.unwrap(), 3);
        assert_eq!(group.commits(), batched + 1);
    }

    /// A lone write that fails after changing rows (no savepoint around it) leaves none of
    /// its changes behind, and the next write still commits.
    #[tokio::test]
    async fn a_lone_failed_write_is_rolled_back() {
        let dir = tempfile::tempdir().unwrap();
        let (group, raw) = writer_on(&dir);
        let half = group
            .write(|conn| {
                insert(20)(conn)?;
                insert(20)(conn)
            })
            .await;
        assert!(matches!(half, Err(StoreError::Conflict(_))), "{half:?}");
        assert_eq!(group.commits(), 0);
        assert_eq!(group.write(insert(21)).await.unwrap(), 21);
        assert_eq!(rows(&raw), vec![21]);
    }

    /// A write that fails after changing rows leaves none of its changes behind, while the
    /// one batched with it commits.
    #[tokio::test]
    async fn a_failed_write_is_rolled_back_to_its_savepoint() {
        let dir = tempfile::tempdir().unwrap();
        let (group, raw) = writer_on(&dir);
        // As above: both queue behind a held write, so the failing one shares a batch.
        let (release, held) = std::sync::mpsc::channel::<()>();
        let (_, half, other, ()) = tokio::join!(
            group.write(move |_| {
                held.recv().unwrap();
                Ok(0)
            }),
            group.write(|conn| {
                insert(10)(conn)?;
                insert(10)(conn)
            }),
            group.write(insert(11)),
            async { release.send(()).unwrap() }
        );
        assert!(matches!(half, Err(StoreError::Conflict(_))), "{half:?}");
        assert_eq!(other.unwrap(), 11);
        assert_eq!(rows(&raw), vec![11]);
    }

    /// A write that panics is answered with an error and rolled back; the writer lives on.
    #[tokio::test]
    async fn a_panicking_write_does_not_stop_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let (group, raw) = writer_on(&dir);
        let panicked = group
            .write(|conn| -> Result<(), StoreError> {
                insert(30)(conn)?;
                panic!("a bug in one write");
            })
            .await;
        assert!(
            matches!(panicked, Err(StoreError::Internal(_))),
            "{panicked:?}"
        );
        assert_eq!(group.write(insert(31)).await.unwrap(), 31);
        assert_eq!(rows(&raw), vec![31]);
    }

    /// Writes queued behind a stop are answered `Unavailable`, like writes after it.
    #[tokio::test]
    async fn writes_queued_behind_a_stop_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (group, raw) = writer_on(&dir);
        // The held write keeps the writer busy until the stop and the next write are queued.
        let (release, held) = std::sync::mpsc::channel::<()>();
        let (first, (), behind, ()) = tokio::join!(
            group.write(move |conn| {
                held.recv().unwrap();
                insert(50)(conn)
            }),
            group.stop(),
            group.write(insert(51)),
            async { release.send(()).unwrap() }
        );
        assert_eq!(first.unwrap(), 50);
        assert!(
            matches!(behind, Err(StoreError::Unavailable(_))),
            "{behind:?}"
        );
        assert_eq!(rows(&raw), vec![50]);
    }

    /// After stop, the connection is closed and writes are refused, not lost silently.
    #[tokio::test]
    async fn writes_after_stop_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (group, raw) = writer_on(&dir);
        assert_eq!(group.write(insert(40)).await.unwrap(), 40);
        group.stop().await;
        let refused = group.write(insert(41)).await;
        assert!(
            matches!(refused, Err(StoreError::Unavailable(_))),
            "{refused:?}"
        );
        assert_eq!(rows(&raw), vec![40]);
    }
}
