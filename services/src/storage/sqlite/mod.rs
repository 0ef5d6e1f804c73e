//! The SQLite repositories (embedded mode). Money is stored as canonical decimal text, since
//! SQLite's numeric types would round it through floating point; times as RFC 3339 text.
//!
//! Every method is one closure run on the database's own threads ([`db`]): a
//! whole transaction costs one thread hop. The writer runs the writes queued behind one commit
//! under the next (`BEGIN IMMEDIATE … COMMIT`, each write in a savepoint of its own), so a write
//! opens a savepoint, never a transaction. `IMMEDIATE` takes the write lock up front (waiting for
//! it under the busy timeout) instead of reading first and failing with SQLITE_BUSY when another
//! connection, in this process or another, wrote in between.
//!
//! [`db`] runs the connections on their threads; `codec` turns stored text into values; one
//! file per repository.

mod carts;
mod codec;
pub mod db;
mod orders;
mod payments;
mod products;
mod users;

pub use self::carts::Carts;
pub use self::orders::Orders;
pub use self::payments::Payments;
pub use self::products::Products;
pub use self::users::Users;
