//! SQLite connections on threads of their own.
//!
//! Each SQLite database gets one writer thread (SQLite has one writer at a time anyway) and a few
//! reader threads, each owning its connection. A store method sends one closure that runs a whole
//! transaction on that connection and gets the answer back: one thread hop per transaction, not
//! one per statement (why, measured, in docs/PERFORMANCE.md). sqlx runs the migrations when the
//! database is opened.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};
use tokio::sync::oneshot;

use crate::storage::common::{PoolStats, Usage};

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// Connections behind one queue: the writer, or the readers.
#[derive(Clone)]
pub struct Lane {
    jobs: Sender<Job>,
    threads: usize,
    usage: Arc<Usage>,
}

#[derive(Debug, thiserror::Error)]
pub enum SqliteError {
    #[error(transparent)]
    Sql(#[from] rusqlite::Error),
    #[error("stored value: {0}")]
    Decode(String),
    #[error("the database connection threads have stopped")]
    Stopped,
    #[error("starting a database thread: {0}")]
    Thread(#[from] std::io::Error),
}

impl Lane {
    /// `setup` runs on each connection once it is open.
    fn start(
        path: &Path,
        name: &str,
        threads: usize,
        setup: fn(&Connection) -> rusqlite::Result<()>,
    ) -> Result<Self, SqliteError> {
        let (jobs, queue) = channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..threads.max(1) {
            // Open here so that a bad path fails the open, not a later query.
            let conn = connect(path)?;
            setup(&conn)?;
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("sqlite-{name}-{i}"))
                .spawn(move || serve(conn, &queue))?;
        }
        Ok(Self { jobs, threads: threads.max(1), usage: Arc::default() })
    }

    /// How busy this lane's connections are.
    pub fn stats(&self, lane: &'static str) -> PoolStats {
        self.usage.stats(lane, self.threads)
    }

    /// Runs `work` on one of this lane's connections and answers what it returned.
    pub async fn run<T, F>(&self, work: F) -> Result<T, SqliteError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, SqliteError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let (usage, sent) = (self.usage.clone(), Instant::now());
        let ahead = usage.in_use.load(Ordering::Relaxed) + usage.waiting.fetch_add(1, Ordering::Relaxed);
        if ahead >= self.threads {
            usage.waits.fetch_add(1, Ordering::Relaxed);
        }
        let job: Job = Box::new(move |conn| {
            usage.waiting.fetch_sub(1, Ordering::Relaxed);
            usage.in_use.fetch_add(1, Ordering::Relaxed);
            usage.waited(sent);
            // The caller may have stopped waiting; then nobody needs the answer.
            let _ = reply.send(work(conn));
            usage.in_use.fetch_sub(1, Ordering::Relaxed);
        });
        if self.jobs.send(job).is_err() {
            // The job will never run: it is not waiting either.
            self.usage.waiting.fetch_sub(1, Ordering::Relaxed);
            return Err(SqliteError::Stopped);
        }
        answer.await.map_err(|_| SqliteError::Stopped)?
    }
}

fn connect(path: &Path) -> Result<Connection, SqliteError> {
    let flags =
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    // WAL is a property of the file (set when sqlx created it); the rest is per connection. With
    // WAL, NORMAL survives a crash of the process (not of the machine) and keeps commits off the
    // fsync path.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

fn serve(mut conn: Connection, queue: &Mutex<Receiver<Job>>) {
    loop {
        // Poisoning needs a panic while receiving, which does not happen; stop if it does.
        let job = match queue.lock() {
            Ok(q) => q.recv(),
            Err(_) => return,
        };
        // Every handle is gone: the database was closed.
        let Ok(job) = job else { return };
        job(&mut conn);
    }
}

/// One SQLite database: a writer lane, a reader lane and a checkpointer. Cheap to clone; the
/// threads end when the last clone is dropped.
#[derive(Clone)]
pub struct SqliteDb {
    pub path: PathBuf,
    pub write: Lane,
    pub read: Lane,
    /// Dropping the last clone disconnects the checkpointer, which then stops.
    _checkpointer: Arc<Sender<()>>,
}

/// How often the checkpointer copies the WAL back into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);
/// WAL pages after which the writer checkpoints by itself, should the checkpointer fall behind.
const WRITER_CHECKPOINT_PAGES: u32 = 20_000;

/// Checkpoints in the background: the writer no longer does it itself every 1000 pages, which
/// stalled every write behind the checkpoint's fsyncs (open-loop tail latency in
/// docs/PERFORMANCE.md). PASSIVE never waits for, or blocks, the writer or the readers.
fn checkpoint(conn: &Connection, stop: &Receiver<()>) {
    use std::sync::mpsc::RecvTimeoutError;
    while let Err(RecvTimeoutError::Timeout) = stop.recv_timeout(CHECKPOINT_EVERY) {
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(error = %e, "SQLite checkpoint failed; the next one retries");
        }
    }
}

impl std::fmt::Debug for SqliteDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteDb").field("path", &self.path).finish_non_exhaustive()
    }
}

impl SqliteDb {
    /// Starts the threads on a database file that exists and is migrated.
    pub fn start(path: &Path, readers: usize) -> Result<Self, SqliteError> {
        let write = Lane::start(path, "write", 1, |conn| {
            conn.pragma_update(None, "wal_autocheckpoint", WRITER_CHECKPOINT_PAGES)
        })?;
        let (stop, stopped) = channel();
        let conn = connect(path)?;
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || checkpoint(&conn, &stopped))?;
        Ok(Self {
            path: path.to_owned(),
            write,
            read: Lane::start(path, "read", readers, |_| Ok(()))?,
            _checkpointer: Arc::new(stop),
        })
    }
}

/// Whether `e` is a UNIQUE or PRIMARY KEY violation.
pub fn is_unique_violation(e: &SqliteError) -> bool {
    matches!(
        e,
        SqliteError::Sql(rusqlite::Error::SqliteFailure(f, _))
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
    )
}
