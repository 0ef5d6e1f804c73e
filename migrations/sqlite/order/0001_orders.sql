CREATE TABLE orders (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    username        TEXT    NOT NULL,
    total_amount    TEXT    NOT NULL,       -- exact decimal, two places
    status          TEXT    NOT NULL CHECK (status IN ('PENDING', 'PAID', 'CANCELLED', 'SHIPPED', 'DELIVERED')),
    payment_id      INTEGER,
    failure_reason  TEXT,
    idempotency_key TEXT,
    version         INTEGER NOT NULL,       -- optimistic concurrency
    created_at      TEXT    NOT NULL,
    updated_at      TEXT    NOT NULL,
    UNIQUE (username, idempotency_key)
);
CREATE INDEX orders_by_user ON orders (username, id);
CREATE INDEX orders_by_status ON orders (status);

CREATE TABLE order_items (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id     INTEGER NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    product_id   INTEGER NOT NULL,
    product_name TEXT    NOT NULL,
    price        TEXT    NOT NULL,          -- exact decimal, two places
    quantity     INTEGER NOT NULL CHECK (quantity > 0)
);
CREATE INDEX order_items_by_order ON order_items (order_id);
