//! Connections: opening one with the durability settings, and the pool that reads run on.
//!
//! Why not an async driver: a statement on SQLite takes microseconds, and handing each one to
//! a connection thread and back (as sqlx does) cost more than the statement itself: about
//! 35-40 us of CPU and two context switches per statement on the benchmark machine, where a
//! job runs twenty. Here a whole read or write (every statement of it) is one closure, run on
//! a thread that holds the connection: one hand-off there and one back per call.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::Semaphore;
use upspool_domain::store::StoreError;

use crate::error::map_err;

/// How long a statement waits for another process's lock before answering `Unavailable`.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Prepared statements kept per connection: every statement upspool runs, with room to spare.
const STATEMENT_CACHE: usize = 64;

/// Opens (creating it if missing) the database at `path`: WAL with `synchronous = FULL` (a
/// commit has reached the disk when it returns), foreign keys enforced, and a busy timeout
/// for locks held by other processes.
pub(crate) fn open(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).map_err(map_err)?;
    // First, so that switching to WAL waits for another process's lock too.
    conn.busy_timeout(BUSY_TIMEOUT).map_err(map_err)?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(map_err)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Internal(format!(
            "{} cannot use write-ahead logging (journal mode {mode})",
            path.display()
        )));
    }
    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")
        .map_err(map_err)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// Read connections, opened as needed up to a bound and kept for reuse. WAL lets them all run
/// alongside the writer.
pub(crate) struct Readers {
    path: PathBuf,
    idle: Arc<Mutex<Vec<Connection>>>,
    /// One permit per connection that may exist; closed by [`Readers::close`].
    permits: Arc<Semaphore>,
}

impl Readers {
    pub(crate) fn new(path: &Path, connections: usize) -> Readers {
        Readers {
            path: path.to_owned(),
            idle: Arc::default(),
            permits: Arc::new(Semaphore::new(connections)),
        }
    }

    /// Runs `read` on a read connection in Tokio's blocking pool. Reads that must agree with
    /// each other open a transaction inside `read`.
    pub(crate) async fn run<T, F>(&self, read: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Unavailable("the metadata store is closed".into()))?;
        let (idle, path) = (self.idle.clone(), self.path.clone());
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let taken = idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
            let conn = match taken {
                Some(conn) => conn,
                None => open(&path)?,
            };
            let result = read(&conn);
            // A read that failed inside a transaction it opened has rolled it back (the
            // transaction guard's drop), so the connection is clean either way.
            idle.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(conn);
            result
        })
        .await
        .map_err(|e| StoreError::Internal(format!("a metadata read failed: {e}")))?
    }

    /// Refuses further reads and closes the idle connections.
    pub(crate) fn close(&self) {
        self.permits.close();
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}
