//! The commit ceiling: how many single-row durable commits per second a database takes, opened
//! exactly as a service opens it (same pools, same SQLite journal and sync settings). Checkout
//! figures are quoted as a fraction of what this allows (docs/PERFORMANCE.md).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::Service;
use crate::error::{ServiceError, ServiceResult};
use crate::storage::{Database, PoolConfig};

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CommitCeiling {
    pub backend: &'static str,
    pub concurrency: usize,
    pub commits: u64,
    pub seconds: f64,
    pub commits_per_second: f64,
}

// The scratch table the probe writes to: created before and dropped after the run.
const CREATE: &str = "CREATE TABLE IF NOT EXISTS shop_commit_probe (id BIGINT NOT NULL PRIMARY KEY, payload VARCHAR(64) NOT NULL)";
const DROP: &str = "DROP TABLE IF EXISTS shop_commit_probe";
const INSERT: &str = "INSERT INTO shop_commit_probe (id, payload) VALUES (?, ?)";
const COUNT: &str = "SELECT COUNT(*) FROM shop_commit_probe";

/// Commits one-row INSERTs, each its own transaction, from `concurrency` tasks for `duration`
/// into a scratch table of the database at `url` (opened as the Order service's database).
pub async fn measure(
    url: &str,
    concurrency: usize,
    duration: Duration,
    pool: &PoolConfig,
) -> ServiceResult<CommitCeiling> {
    if concurrency == 0 {
        return Err(ServiceError::Invalid("the commit probe needs a concurrency of at least 1".into()));
    }
    let db = Database::open(Service::Order, url, pool).await?;
    match &db {
        Database::Sqlite(s) => {
            s.write.run(|c| Ok(c.execute_batch(&format!("{DROP}; {CREATE};"))?)).await?;
        }
        Database::MySql(m) => {
            m.run(async |c| {
                sqlx::query(DROP).execute(&mut *c).await?;
                sqlx::query(CREATE).execute(&mut *c).await
            })
            .await?;
        }
    }
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let writers = (0..concurrency).map(|_| {
        let (db, next) = (db.clone(), next.clone());
        async move {
            while Instant::now() < deadline {
                let id = i64::try_from(next.fetch_add(1, Ordering::Relaxed)).unwrap_or(i64::MAX);
                const PAYLOAD: &str = "a single-row durable commit";
                match &db {
                    Database::Sqlite(s) => {
                        // Alone: each insert is its own commit, not one of a group.
                        s.write
                            .run_alone(move |c| {
                                Ok(c.prepare_cached(INSERT)?.execute(rusqlite::params![id, PAYLOAD])?)
                            })
                            .await?;
                    }
                    Database::MySql(m) => {
                        m.run(async |c| sqlx::query(INSERT).bind(id).bind(PAYLOAD).execute(c).await).await?;
                    }
                }
            }
            Ok::<(), ServiceError>(())
        }
    });
    let results = futures::future::join_all(writers).await;
    let seconds = started.elapsed().as_secs_f64();
    let commits = match &db {
        Database::Sqlite(s) => s.read.run(|c| Ok(c.query_row(COUNT, [], |r| r.get::<_, i64>(0))?)).await?,
        Database::MySql(m) => m.run(async |c| sqlx::query_scalar::<_, i64>(COUNT).fetch_one(c).await).await?,
    };
    match &db {
        Database::Sqlite(s) => {
            s.write.run(|c| Ok(c.execute(DROP, [])?)).await?;
        }
        Database::MySql(m) => {
            m.run(async |c| sqlx::query(DROP).execute(c).await).await?;
        }
    }
    db.close().await;
    for r in results {
        r?;
    }
    let commits = u64::try_from(commits).unwrap_or(0);
    Ok(CommitCeiling {
        backend: db.backend(),
        concurrency,
        commits,
        seconds,
        commits_per_second: commits as f64 / seconds,
    })
}
