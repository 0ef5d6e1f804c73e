//! The MySQL repositories (production; MariaDB 10.11 and MySQL 8). Money is `DECIMAL(10,2)`.
//!
//! Every write runs through `retry_transient!`: a deadlock (1213), a lock wait timeout (1205)
//! or a snapshot conflict (1020) aborts only the transaction, which is then run again from the
//! start, a bounded number of times with growing back-off. A write based on a stale version is
//! not transient: it is reported as a conflict for the caller to reload and decide again.
//!
//! [`pool`] is the connection pool; `support` holds the retry rule and conversions; one file per
//! repository.

/// Runs `$body` (a transaction, on the connection `$c` of the pool `$db`) until it succeeds, fails
/// for a reason that is not transient, or has been tried `support::TRANSIENT.attempts` times.
macro_rules! retry_transient {
    ($db:expr, |$c:ident| $body:block) => {
        $crate::storage::mysql::support::TRANSIENT
            .run("MySQL transaction", $crate::storage::mysql::support::is_transient, || {
                $db.run(async |$c: &mut sqlx::mysql::MySqlConnection| $body)
            })
            .await
    };
}

pub mod pool;
pub use self::support::is_transient;
mod support;

mod carts;
mod orders;
mod payments;
mod products;
mod users;

pub use self::carts::Carts;
pub use self::orders::Orders;
pub use self::payments::Payments;
pub use self::products::Products;
pub use self::users::Users;
