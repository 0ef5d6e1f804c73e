-- Status is now PENDING (saved before the gateway is asked) | SUCCESS | FAILED | REFUNDED
-- (charged, then given back because the order ended CANCELLED), and the seed's gateway_response
-- (missing from 0001) holds the gateway's raw answer. SQLite cannot change a CHECK: the table is
-- rebuilt (nothing references it).
CREATE TABLE payments_new (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id         INTEGER NOT NULL UNIQUE,  -- one payment per order, ever
    user_id          TEXT    NOT NULL,
    amount           TEXT    NOT NULL,         -- exact decimal, two places
    status           TEXT    NOT NULL CHECK (status IN ('PENDING', 'SUCCESS', 'FAILED', 'REFUNDED')),
    transaction_id   TEXT,
    gateway_response TEXT,                     -- the gateway's raw answer
    failure_reason   TEXT,
    created_at       TEXT    NOT NULL,
    refunded_at      TEXT,                     -- the refund of a charge whose order ended CANCELLED
    refund_reason    TEXT,
    updated_at       TEXT                      -- when the row last changed
);
INSERT INTO payments_new (id, order_id, user_id, amount, status, transaction_id, failure_reason, created_at)
    SELECT id, order_id, user_id, amount, status, transaction_id, failure_reason, created_at FROM payments;
DROP TABLE payments;
ALTER TABLE payments_new RENAME TO payments;
