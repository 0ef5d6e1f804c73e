//! The MySQL pool (`services/src/storage/mysql/pool.rs`) against the real server: which
//! connections it hands back, which it closes, and that a busy pool sends the server no pings;
//! and, counted the same way on the pool's one connection, the round trips of a store's most
//! frequent work.

use std::sync::Arc;
use std::time::Duration;

use shop_services::Service;
use shop_services::storage::PoolConfig;
use shop_services::storage::{MySqlDb, OnConnect};
use shop_services::testing::{START_MYSQL, drop_mysql, fresh_mysql_url, mysql_server_url};
use sqlx::Connection;
use sqlx::migrate::MigrateDatabase;
use sqlx::mysql::MySqlConnection;

/// A pool of one connection to the test server (no database selected: most of these tests need
/// none).
async fn pool(ping_after_idle: Duration, acquire_timeout: Duration) -> MySqlDb {
    pool_on(&mysql_server_url(), ping_after_idle, acquire_timeout).await
}

async fn pool_on(url: &str, ping_after_idle: Duration, acquire_timeout: Duration) -> MySqlDb {
    let options = url.parse().unwrap_or_else(|e| panic!("SHOP_TEST_MYSQL_URL {url:?}: {e}"));
    let config = PoolConfig { max_connections: 1, ping_after_idle, acquire_timeout, ..PoolConfig::default() };
    let nothing: OnConnect = Arc::new(|_| Box::pin(async { Ok(()) }));
    MySqlDb::connect(options, &config, nothing)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}\n{START_MYSQL}"))
}

const NEVER: Duration = Duration::from_secs(3600);

async fn connection_id(db: &MySqlDb) -> u64 {
    db.run(async |c| sqlx::query_scalar::<_, u64>("SELECT CONNECTION_ID()").fetch_one(c).await)
        .await
        .expect("SELECT CONNECTION_ID()")
}

/// What the server has counted for the pool's one connection, of each of these `Com_*` variables.
async fn session_counts<const N: usize>(db: &MySqlDb, names: [&'static str; N]) -> [u64; N] {
    let rows: Vec<(String, String)> = db
        .run(async |c| sqlx::query_as("SHOW SESSION STATUS LIKE 'Com\\_%'").fetch_all(c).await)
        .await
        .expect("SHOW SESSION STATUS");
    names.map(|name| {
        rows.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map_or(0, |(_, v)| v.parse().expect("a count"))
    })
}

/// Pings (and other administrative commands) the server has had from the pool's connection.
async fn pings_received(db: &MySqlDb) -> u64 {
    let [pings] = session_counts(db, ["Com_admin_commands"]).await;
    pings
}

/// Has the server close connection `id`, as a restart or `wait_timeout` would.
async fn kill(id: u64) {
    let mut admin = MySqlConnection::connect(&mysql_server_url()).await.expect("a second connection");
    sqlx::query("KILL ?").bind(id).execute(&mut admin).await.expect("KILL");
    admin.close().await.expect("closing the second connection");
}

#[tokio::test]
async fn finished_work_and_server_errors_hand_the_connection_back_unpinged() {
    let db = pool(NEVER, NEVER).await;
    let first = connection_id(&db).await;
    for _ in 0..20 {
        assert_eq!(connection_id(&db).await, first, "finished work lost its connection");
    }
    let refused =
        db.run(async |c| sqlx::query("SELECT * FROM no_such_schema.no_such_table").execute(c).await).await;
    assert!(matches!(refused, Err(sqlx::Error::Database(_))), "{refused:?}");
    db.run(async |c| {
        let mut tx = c.begin().await?;
        sqlx::query("SELECT 1").execute(&mut *tx).await?;
        Ok(()) // the transaction is dropped, not committed
    })
    .await
    .expect("a transaction left open");
    assert_eq!(connection_id(&db).await, first, "an error the server answered cost the connection");
    assert_eq!(pings_received(&db).await, 0, "the pool pinged a connection it had just been given back");

    // The counter does count pings.
    let mut lease = db.acquire().await.expect("a lease");
    lease.ping().await.expect("ping");
    lease.release().await;
    assert_eq!(pings_received(&db).await, 1);
}

#[tokio::test]
async fn work_dropped_half_way_closes_its_connection() {
    let db = pool(NEVER, NEVER).await;
    let first = connection_id(&db).await;
    let gave_up = tokio::time::timeout(
        Duration::from_millis(200),
        db.run(async |c| sqlx::query("SELECT SLEEP(5)").execute(c).await),
    )
    .await;
    assert!(gave_up.is_err(), "SLEEP(5) answered within 200 ms");
    assert_ne!(connection_id(&db).await, first, "a connection left in the middle of a query was reused");
}

#[tokio::test]
async fn a_connection_the_server_closed_while_it_rested_is_replaced() {
    let db = pool(Duration::from_millis(50), NEVER).await;
    let first = connection_id(&db).await;
    kill(first).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Without the ping after resting, this would be sent down the closed connection and fail.
    assert_ne!(connection_id(&db).await, first);
}

#[tokio::test]
async fn a_connection_that_fails_under_work_is_closed_not_reused() {
    let db = pool(NEVER, NEVER).await;
    let first = connection_id(&db).await;
    kill(first).await;
    // Not rested long enough to be pinged: the work itself finds the connection gone.
    let failed = db.run(async |c| sqlx::query("SELECT 1").execute(c).await).await;
    assert!(failed.is_err(), "a query on a killed connection succeeded");
    assert_ne!(connection_id(&db).await, first, "the failed connection was handed out again");
}

#[tokio::test]
async fn a_full_pool_makes_the_next_caller_wait_then_time_out() {
    let db = pool(NEVER, Duration::from_millis(100)).await;
    let lease = db.acquire().await.expect("the one connection");
    let waited = db.run(async |c| sqlx::query("SELECT 1").execute(c).await).await;
    assert!(matches!(waited, Err(sqlx::Error::PoolTimedOut)), "{waited:?}");
    lease.release().await;
    db.run(async |c| sqlx::query("SELECT 1").execute(c).await).await.expect("the connection back");
}

#[tokio::test]
async fn a_transaction_the_work_dropped_releases_its_locks_at_once() {
    let url = fresh_mysql_url(Service::Order);
    sqlx::MySql::create_database(&url).await.unwrap_or_else(|e| panic!("creating {url}: {e}\n{START_MYSQL}"));
    let db = pool_on(&url, NEVER, NEVER).await;
    db.run(async |c| sqlx::query("CREATE TABLE t (id INT PRIMARY KEY)").execute(c).await)
        .await
        .expect("table");
    db.run(async |c| {
        let mut tx = c.begin().await?;
        sqlx::query("INSERT INTO t VALUES (1)").execute(&mut *tx).await?;
        Ok(()) // dropped, not committed: a stale write gives up this way
    })
    .await
    .expect("the insert");

    let mut other = MySqlConnection::connect(&url).await.expect("a second connection");
    sqlx::query("SET SESSION innodb_lock_wait_timeout = 1").execute(&mut other).await.expect("lock wait");
    let row: Result<Option<i32>, _> =
        sqlx::query_scalar("SELECT id FROM t WHERE id = 1 FOR UPDATE").fetch_optional(&mut other).await;
    // A lock wait timeout (1205) here means the pooled connection still holds the insert's lock.
    assert!(matches!(row, Ok(None)), "{row:?}");
    other.close().await.expect("closing the second connection");
    db.close().await;
    drop_mysql(&url).await;
}

/// The commit of a reservation whose lines are still held, the usual one (an `ORDER_COMPLETED`
/// the Product service consumes), is one `UPDATE` sent on its own: no `BEGIN` and `COMMIT` round
/// trips around it. A second commit (the event redelivered) changes nothing.
#[tokio::test]
async fn committing_a_held_reservation_is_one_statement_without_a_transaction() {
    use shop_actors::model::LineQuantity;
    use shop_services::product::{ProductInput, ProductStore};

    let mut databases = shop_services::testing::MySqlDatabases::default();
    let url = databases.create(Service::Product).await;
    let db = pool_on(&url, NEVER, NEVER).await;
    let store = shop_services::storage::mysql::Products(db.clone());
    let now = shop_services::time::now();
    let input = ProductInput {
        name: "Kettle".into(),
        description: None,
        price: rust_decimal::Decimal::new(3000, 2),
        stock: 10,
    };
    let kettle = store.create(&input, now).await.expect("a product");
    let checkout = uuid::Uuid::new_v4();
    let lines = [LineQuantity { product_id: kettle.id, quantity: 3 }];
    let expires = now + chrono::Duration::minutes(15);
    store.reserve(checkout, &lines, expires, now).await.expect("reserve").expect("reserved");

    let counted = || session_counts(&db, ["Com_begin", "Com_commit", "Com_update"]);
    let before = counted().await;
    store.commit_reservation(checkout, now).await.expect("commit").expect("no shortage");
    let after = counted().await;
    assert_eq!([after[0] - before[0], after[1] - before[1], after[2] - before[2]], [0, 0, 1]);

    store.commit_reservation(checkout, now).await.expect("commit again").expect("no shortage");
    let ledger = store.stock_ledger().await.expect("ledger");
    let kettle = ledger.iter().find(|l| l.product_id == kettle.id).expect("the kettle's ledger");
    assert_eq!((kettle.stock, kettle.reserved, kettle.sold), (7, 0, 3), "{kettle:?}");
    db.close().await;
}
