CREATE TABLE cart (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    username   TEXT    NOT NULL UNIQUE,
    version    INTEGER NOT NULL,            -- optimistic concurrency
    created_at TEXT    NOT NULL,
    updated_at TEXT    NOT NULL
);

CREATE TABLE cart_items (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    cart_id      INTEGER NOT NULL REFERENCES cart (id) ON DELETE CASCADE,
    product_id   INTEGER NOT NULL,
    product_name TEXT    NOT NULL,
    price        TEXT    NOT NULL,          -- exact decimal, two places
    quantity     INTEGER NOT NULL CHECK (quantity > 0),
    UNIQUE (cart_id, product_id)
);

-- Completed orders whose items have been taken out of the cart (replays change nothing).
CREATE TABLE cart_applied_orders (
    username   TEXT    NOT NULL,
    order_id   INTEGER NOT NULL,
    applied_at TEXT    NOT NULL,
    PRIMARY KEY (username, order_id)
);
