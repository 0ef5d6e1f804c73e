CREATE TABLE payments (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id       INTEGER NOT NULL UNIQUE,  -- one payment per order, ever
    user_id        TEXT    NOT NULL,
    amount         TEXT    NOT NULL,         -- exact decimal, two places
    status         TEXT    NOT NULL CHECK (status IN ('SUCCESS', 'FAILED')),
    transaction_id TEXT,
    failure_reason TEXT,
    created_at     TEXT    NOT NULL
);
