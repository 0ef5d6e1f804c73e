//! SQLite connections on threads of their own.
//!
//! Each SQLite database gets one writer thread (SQLite has one writer at a time anyway) and a few
//! reader threads, each owning its connection. A store method sends one closure that runs a whole
//! transaction on that connection and gets the answer back: one thread hop per transaction, not
//! one per statement (why, measured, in docs/PERFORMANCE.md). The writer commits the work queued
//! behind a commit together, in the next one (group commit; [`Lane::run`]). sqlx runs the
//! migrations when the database is opened.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};
use tokio::sync::oneshot;

use crate::storage::common::{PoolStats, Usage};

/// What is left of a piece of work once it has run: answering its caller, told whether the
/// commit that holds the work went through (`Err` carries why it did not).
type Answer = Box<dyn FnOnce(Result<(), &str>) + Send>;

/// A piece of work for a lane's connection. `alone` work is committed on its own, never in a
/// group (the commit ceiling's probe, which measures single commits).
struct Job {
    work: Box<dyn FnOnce(&mut Connection) -> Answer + Send>,
    alone: bool,
}

/// Connections behind one queue: the writer, or the readers.
#[derive(Clone)]
pub struct Lane {
    jobs: Sender<Job>,
    threads: usize,
    usage: Arc<Usage>,
    commits: Commits,
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
    #[error("the commit that held this write failed: {0}")]
    Commit(String),
}

/// How a lane's thread takes its work: one piece at a time, or (the writer) as many as are
/// queued, up to a number, under one commit.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Commits {
    EachAlone,
    /// At most this many pieces of work under one commit: it bounds how long the first of them
    /// waits for the others to run before its answer.
    Grouped(usize),
}

/// The most writes one commit holds unless configured (`SHOP_DB_GROUP_COMMIT`).
pub const GROUP_COMMIT: usize = 64;

impl Lane {
    /// `setup` runs on each connection once it is open.
    fn start(
        path: &Path,
        name: &str,
        threads: usize,
        commits: Commits,
        setup: fn(&Connection) -> rusqlite::Result<()>,
    ) -> Result<Self, SqliteError> {
        let (jobs, queue) = channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        let usage = Arc::new(Usage::default());
        for i in 0..threads.max(1) {
            // Open here so that a bad path fails the open, not a later query.
            let conn = connect(path)?;
            setup(&conn)?;
            let (queue, usage) = (queue.clone(), usage.clone());
            std::thread::Builder::new().name(format!("sqlite-{name}-{i}")).spawn(move || match commits {
                Commits::EachAlone => serve(conn, &queue),
                Commits::Grouped(most) => serve_grouped(conn, &queue, &usage, most.max(1)),
            })?;
        }
        Ok(Self { jobs, threads: threads.max(1), usage, commits })
    }

    /// How busy this lane's connections are.
    pub fn stats(&self, lane: &'static str) -> PoolStats {
        let stats = self.usage.stats(lane, self.threads);
        match self.commits {
            Commits::EachAlone => stats,
            Commits::Grouped(_) => {
                PoolStats { commits: Some(self.usage.commits.load(Ordering::Relaxed)), ..stats }
            }
        }
    }

    /// Runs `work` on one of this lane's connections and answers what it returned. On the
    /// writer, the answer comes once the commit that holds the work is done: the work may share
    /// that commit with other callers' (group commit), each inside a savepoint of its own, so
    /// work that fails rolls back alone. Write work therefore opens a savepoint
    /// (`Connection::savepoint`), never a transaction of its own.
    pub async fn run<T, F>(&self, work: F) -> Result<T, SqliteError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, SqliteError> + Send + 'static,
    {
        self.send(work, false).await
    }

    /// [`Lane::run`], committed on its own rather than in a group: for measuring what one
    /// commit costs.
    pub async fn run_alone<T, F>(&self, work: F) -> Result<T, SqliteError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, SqliteError> + Send + 'static,
    {
        self.send(work, true).await
    }

    async fn send<T, F>(&self, work: F, alone: bool) -> Result<T, SqliteError>
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
        let work = Box::new(move |conn: &mut Connection| -> Answer {
            usage.waiting.fetch_sub(1, Ordering::Relaxed);
            usage.in_use.fetch_add(1, Ordering::Relaxed);
            usage.waited(sent);
            let result = work(conn);
            usage.in_use.fetch_sub(1, Ordering::Relaxed);
            usage.work.fetch_add(1, Ordering::Relaxed);
            Box::new(move |committed: Result<(), &str>| {
                // Work that failed says why; work that ran is lost if its commit failed.
                let result = result
                    .and_then(|v| committed.map(|()| v).map_err(|why| SqliteError::Commit(why.to_owned())));
                // The caller may have stopped waiting; then nobody needs the answer.
                let _ = reply.send(result);
            })
        });
        if self.jobs.send(Job { work, alone }).is_err() {
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
        // Each piece of work is its own transaction (or none: a read).
        (job.work)(&mut conn)(Ok(()));
    }
}

/// The writer's loop: the work queued while the last commit ran goes into the next one. Each
/// piece runs inside `BEGIN IMMEDIATE … COMMIT` (its own savepoint nested in it), and every
/// caller of the group is answered after the `COMMIT`, with its error if the commit failed. With
/// nothing else queued a piece of work is a group of one, so a quiet system waits for nobody.
fn serve_grouped(mut conn: Connection, queue: &Mutex<Receiver<Job>>, usage: &Usage, most: usize) {
    // The writer is the lane's only thread: it keeps the queue.
    let Ok(queue) = queue.lock() else { return };
    let mut group: Vec<Answer> = Vec::with_capacity(most);
    let mut next = None;
    loop {
        let job = match next.take() {
            Some(job) => job,
            None => match queue.recv() {
                Ok(job) => job,
                // Every handle is gone: the database was closed.
                Err(_) => return,
            },
        };
        if job.alone {
            // Counted before its caller hears (as a group's commit is): whoever is answered
            // sees the count that holds its commit.
            let answer = (job.work)(&mut conn);
            usage.commits.fetch_add(1, Ordering::Relaxed);
            answer(Ok(()));
            continue;
        }
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            // The work then commits by itself (its savepoint is then its transaction).
            tracing::warn!(error = %e, "SQLite: a group commit could not begin; this write goes alone");
            let answer = (job.work)(&mut conn);
            usage.commits.fetch_add(1, Ordering::Relaxed);
            answer(Ok(()));
            continue;
        }
        let mut job = Some(job);
        while let Some(j) = job.take() {
            group.push((j.work)(&mut conn));
            if conn.is_autocommit() {
                // SQLite ended the transaction itself (it rolls back on a full disk, say): the
                // group's work is gone.
                for answer in group.drain(..) {
                    answer(Err("SQLite rolled the transaction back"));
                }
                break;
            }
            if group.len() < most {
                match queue.try_recv() {
                    Ok(j) if j.alone => next = Some(j),
                    Ok(j) => job = Some(j),
                    Err(_) => {}
                }
            }
        }
        if group.is_empty() {
            continue;
        }
        match conn.execute_batch("COMMIT") {
            Ok(()) => {
                usage.commits.fetch_add(1, Ordering::Relaxed);
                for answer in group.drain(..) {
                    answer(Ok(()));
                }
            }
            Err(e) => {
                let why = e.to_string();
                tracing::warn!(error = %why, writes = group.len(), "SQLite: a group commit failed");
                if !conn.is_autocommit() {
                    let _ = conn.execute_batch("ROLLBACK");
                }
                for answer in group.drain(..) {
                    answer(Err(&why));
                }
            }
        }
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
    /// Starts the threads on a database file that exists and is migrated: `readers` read
    /// connections, and a writer that puts up to `group` writes under one commit (1: each its
    /// own).
    pub fn start(path: &Path, readers: usize, group: usize) -> Result<Self, SqliteError> {
        let write = Lane::start(path, "write", 1, Commits::Grouped(group), |conn| {
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
            read: Lane::start(path, "read", readers, Commits::EachAlone, |_| Ok(()))?,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A database with one table, and a piece of work that holds the writer until told to go,
    /// so that what is sent meanwhile queues behind it.
    async fn held_writer() -> (tempfile::TempDir, SqliteDb, std::sync::mpsc::SyncSender<()>) {
        held_writer_grouping(GROUP_COMMIT).await
    }

    async fn held_writer_grouping(
        group: usize,
    ) -> (tempfile::TempDir, SqliteDb, std::sync::mpsc::SyncSender<()>) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("group.db");
        connect(&path)
            .expect("create")
            .execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY)")
            .expect("table");
        let db = SqliteDb::start(&path, 2, group).expect("start");
        let (go, wait) = std::sync::mpsc::sync_channel::<()>(1);
        let holder = db.write.clone();
        tokio::spawn(async move { holder.run(move |_| Ok(wait.recv().ok())).await });
        while db.write.stats("writer").in_use == 0 {
            tokio::task::yield_now().await;
        }
        (dir, db, go)
    }

    fn insert(db: &SqliteDb, id: i64) -> tokio::task::JoinHandle<Result<usize, SqliteError>> {
        let write = db.write.clone();
        tokio::spawn(
            async move { write.run(move |c| Ok(c.execute("INSERT INTO t VALUES (?1)", [id])?)).await },
        )
    }

    async fn queued(db: &SqliteDb, n: usize) {
        while db.write.stats("writer").waiting < n {
            tokio::task::yield_now().await;
        }
    }

    async fn rows(db: &SqliteDb) -> Vec<i64> {
        db.read
            .run(|c| {
                let mut s = c.prepare("SELECT id FROM t ORDER BY id")?;
                let ids = s.query_map([], |r| r.get(0))?.collect::<Result<Vec<i64>, _>>()?;
                Ok(ids)
            })
            .await
            .expect("read")
    }

    #[tokio::test]
    async fn work_queued_behind_a_commit_shares_the_next_and_each_caller_then_sees_its_row() {
        let (_dir, db, go) = held_writer().await;
        let writes: Vec<_> = (1..=100).map(|id| insert(&db, id)).collect();
        queued(&db, 100).await;
        go.send(()).expect("release the writer");
        for (id, w) in (1..=100).zip(writes) {
            assert_eq!(w.await.expect("joined").expect("written"), 1);
            // Answered only after the commit that holds it: a reader sees the row.
            assert!(rows(&db).await.contains(&id), "row {id} answered before it was committed");
        }
        let stats = db.write.stats("writer");
        assert_eq!(stats.work, 101, "the holder and the hundred inserts");
        // The holder's group takes 63 of the queued inserts (64 at most), the next group the
        // other 37.
        assert_eq!(stats.commits, Some(2), "{stats:?}");
        assert_eq!(rows(&db).await, (1..=100).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn work_that_fails_in_a_group_rolls_back_alone() {
        let (_dir, db, go) = held_writer().await;
        let first = insert(&db, 1);
        let write = db.write.clone();
        let failing = tokio::spawn(async move {
            write
                .run(|c| {
                    let sp = c.savepoint()?;
                    sp.execute("INSERT INTO t VALUES (2)", [])?;
                    // A duplicate key: the whole piece of work fails, its first row with it.
                    sp.execute("INSERT INTO t VALUES (2)", [])?;
                    sp.commit()?;
                    Ok(())
                })
                .await
        });
        queued(&db, 2).await;
        let last = insert(&db, 3);
        queued(&db, 3).await;
        go.send(()).expect("release the writer");
        assert!(first.await.expect("joined").is_ok());
        assert!(failing.await.expect("joined").is_err(), "the duplicate is refused");
        assert!(last.await.expect("joined").is_ok());
        assert_eq!(rows(&db).await, vec![1, 3], "the failed work left nothing; the others stand");
        assert_eq!(db.write.stats("writer").commits, Some(1), "one group, one commit");
    }

    #[tokio::test]
    async fn work_sent_alone_is_never_grouped() {
        let (_dir, db, go) = held_writer().await;
        let alone: Vec<_> = (1..=10)
            .map(|id| {
                let write = db.write.clone();
                tokio::spawn(async move {
                    write.run_alone(move |c| Ok(c.execute("INSERT INTO t VALUES (?1)", [id])?)).await
                })
            })
            .collect();
        queued(&db, 10).await;
        go.send(()).expect("release the writer");
        for w in alone {
            assert!(w.await.expect("joined").is_ok());
        }
        assert_eq!(db.write.stats("writer").commits, Some(11), "the holder's group, then one commit each");
        assert_eq!(rows(&db).await.len(), 10);
    }

    #[tokio::test]
    async fn a_group_of_one_commits_every_write_by_itself() {
        let (_dir, db, go) = held_writer_grouping(1).await;
        let writes: Vec<_> = (1..=10).map(|id| insert(&db, id)).collect();
        queued(&db, 10).await;
        go.send(()).expect("release the writer");
        for w in writes {
            assert!(w.await.expect("joined").is_ok());
        }
        assert_eq!(db.write.stats("writer").commits, Some(11), "the holder, then each insert");
    }
}
