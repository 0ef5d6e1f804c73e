-- The transactional outbox: each order event, written in the same transaction as the change it
-- announces; the relay publishes unsent rows oldest first and stamps sent_at.
CREATE TABLE order_outbox (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id   TEXT    NOT NULL UNIQUE,
    order_id   INTEGER NOT NULL,
    payload    TEXT    NOT NULL,      -- the event as JSON
    created_at TEXT    NOT NULL,
    sent_at    TEXT
);
CREATE INDEX order_outbox_unsent ON order_outbox (sent_at, id);
