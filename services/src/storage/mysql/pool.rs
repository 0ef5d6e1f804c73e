//! The MySQL connection pool the stores use.
//!
//! sqlx's `Pool` pings a connection when it hands it out and again when it is given back, to find
//! out whether an interrupted query left it unusable; each ping is a round trip like a statement
//! (what that cost is in docs/PERFORMANCE.md). This pool learns the same thing from how the work
//! ended instead:
//!
//! - the work finished, or the server answered it with an error (a duplicate key, a deadlock): the
//!   connection is in step with the server and goes straight back, unpinged (a transaction the
//!   work dropped is rolled back first: [`Lease::release`]);
//! - the work failed on the connection itself (I/O, protocol), or was dropped half way (a caller
//!   that gave up): the connection is closed, and a new one is opened when one is next needed.
//!
//! A connection that has rested in the pool for [`PoolConfig::ping_after_idle`] (1 s) or more is
//! pinged before use, since the server may have closed it meanwhile (`wait_timeout`, a restart);
//! one that fails the ping is replaced.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use sqlx::{ConnectOptions, Connection};
use std::sync::atomic::Ordering;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

use crate::storage::common::{PoolConfig, PoolStats, Usage};

/// Runs on every new connection before its first use.
pub type OnConnect =
    Arc<dyn for<'c> Fn(&'c mut MySqlConnection) -> BoxFuture<'c, Result<(), sqlx::Error>> + Send + Sync>;

/// A bounded pool of MySQL connections. Cloning it shares the pool.
#[derive(Clone)]
pub struct MySqlDb {
    inner: Arc<Inner>,
}

struct Inner {
    options: MySqlConnectOptions,
    on_connect: OnConnect,
    /// One permit per connection that may exist; a lease holds one.
    slots: Arc<Semaphore>,
    /// Connections not in use, the most recently returned last (reused first, so that under light
    /// load the same few stay warm).
    idle: Mutex<Vec<(MySqlConnection, Instant)>>,
    acquire_timeout: Duration,
    ping_after_idle: Duration,
    size: usize,
    /// Leases waiting for a slot, and how often and long they waited (`in_use` is unused: the
    /// slots tell).
    usage: Usage,
}

impl std::fmt::Debug for MySqlDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MySqlDb")
            .field("idle", &self.inner.idle().len())
            .field("free_slots", &self.inner.slots.available_permits())
            .finish_non_exhaustive()
    }
}

impl MySqlDb {
    /// A pool of at most `config.max_connections`, connecting with `options`; the first
    /// connection is opened now, so that an unreachable server is reported at once.
    pub async fn connect(
        options: MySqlConnectOptions,
        config: &PoolConfig,
        on_connect: OnConnect,
    ) -> Result<Self, sqlx::Error> {
        let db = Self {
            inner: Arc::new(Inner {
                options,
                on_connect,
                slots: Arc::new(Semaphore::new(config.max_connections.max(1) as usize)),
                idle: Mutex::new(Vec::new()),
                acquire_timeout: config.acquire_timeout,
                ping_after_idle: config.ping_after_idle,
                size: config.max_connections.max(1) as usize,
                usage: Usage::default(),
            }),
        };
        db.acquire().await?.release().await;
        Ok(db)
    }

    /// Runs `work` on a connection of the pool. How it ends decides what becomes of the
    /// connection (see the module documentation).
    pub async fn run<T>(
        &self,
        work: impl AsyncFnOnce(&mut MySqlConnection) -> Result<T, sqlx::Error>,
    ) -> Result<T, sqlx::Error> {
        let mut lease = self.acquire().await?;
        let result = work(&mut lease).await;
        self.inner.usage.work.fetch_add(1, Ordering::Relaxed);
        match &result {
            Ok(_) | Err(sqlx::Error::Database(_)) => lease.release().await,
            // Dropping the lease closes the connection.
            Err(_) => {}
        }
        result
    }

    /// A connection of the pool, for work that cannot go through [`MySqlDb::run`] (migrations).
    /// It goes back to the pool only through [`Lease::release`]; dropped, it is closed.
    pub async fn acquire(&self) -> Result<Lease, sqlx::Error> {
        let inner = &self.inner;
        let slot = match inner.slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(TryAcquireError::Closed) => return Err(sqlx::Error::PoolClosed),
            Err(TryAcquireError::NoPermits) => {
                let (usage, since) = (&inner.usage, Instant::now());
                usage.waits.fetch_add(1, Ordering::Relaxed);
                usage.waiting.fetch_add(1, Ordering::Relaxed);
                let slot =
                    tokio::time::timeout(inner.acquire_timeout, inner.slots.clone().acquire_owned()).await;
                usage.waiting.fetch_sub(1, Ordering::Relaxed);
                usage.waited(since);
                slot.map_err(|_| sqlx::Error::PoolTimedOut)?.map_err(|_| sqlx::Error::PoolClosed)?
            }
        };
        loop {
            let rested = inner.idle().pop();
            let Some((mut conn, since)) = rested else { break };
            if since.elapsed() < inner.ping_after_idle || conn.ping().await.is_ok() {
                return Ok(Lease { conn, inner: inner.clone(), _slot: slot });
            }
            tracing::info!("a pooled MySQL connection failed its ping after resting; replacing it");
        }
        let mut conn = inner.options.connect().await?;
        (inner.on_connect)(&mut conn).await?;
        Ok(Lease { conn, inner: inner.clone(), _slot: slot })
    }

    /// How busy the pool is.
    pub fn stats(&self) -> PoolStats {
        let inner = &self.inner;
        let in_use = inner.size.saturating_sub(inner.slots.available_permits());
        PoolStats { in_use, ..inner.usage.stats("pool", inner.size) }
    }

    /// Closes the idle connections and refuses new leases; leases out now close on return.
    pub async fn close(&self) {
        self.inner.slots.close();
        let idle = std::mem::take(&mut *self.inner.idle());
        for (conn, _) in idle {
            // The server may be gone already; there is nothing more to do about it then.
            let _ = conn.close().await;
        }
    }
}

impl Inner {
    /// The idle list; nothing can be left half-changed in it, so a panic elsewhere does not stop it.
    fn idle(&self) -> MutexGuard<'_, Vec<(MySqlConnection, Instant)>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A connection taken from a [`MySqlDb`], with its slot. Dropped without [`Lease::release`], the
/// connection is closed and its slot freed.
pub struct Lease {
    conn: MySqlConnection,
    inner: Arc<Inner>,
    _slot: OwnedSemaphorePermit,
}

impl std::ops::Deref for Lease {
    type Target = MySqlConnection;

    fn deref(&self) -> &MySqlConnection {
        &self.conn
    }
}

impl std::ops::DerefMut for Lease {
    fn deref_mut(&mut self) -> &mut MySqlConnection {
        &mut self.conn
    }
}

impl Lease {
    /// Hands the connection back for reuse: its work ended in step with the server. The slot is
    /// freed after the connection is back, so whoever takes it finds the connection.
    ///
    /// A transaction the work dropped without committing has had its `ROLLBACK` queued by sqlx,
    /// not sent: it is sent now (a round trip only then), or its locks would be held until the
    /// connection's next use. `Connection::flush` is the primitive sqlx's own pool relies on for
    /// this (as part of its ping); `a_transaction_the_work_dropped_releases_its_locks_at_once`
    /// fails if it stops doing it.
    pub async fn release(self) {
        let Lease { mut conn, inner, _slot } = self;
        if conn.flush().await.is_ok() && !inner.slots.is_closed() {
            inner.idle().push((conn, Instant::now()));
        }
    }
}
