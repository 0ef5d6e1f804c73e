-- orders.payment_id now holds the gateway's transaction id (TXN_...), as the seed's "Transaction
-- ID from Payment Service". The old column held the payment row's number: it is kept, renamed,
-- for the rows from before (copied into payment_id as text), and never written again.
ALTER TABLE orders RENAME COLUMN payment_id TO payment_row_id;
ALTER TABLE orders ADD COLUMN payment_id TEXT;
UPDATE orders SET payment_id = CAST(payment_row_id AS TEXT) WHERE payment_row_id IS NOT NULL;
-- The cart checkout the order comes from; it keys the order's stock reservation.
ALTER TABLE orders ADD COLUMN checkout_id TEXT;
-- The outcome is stored but a step after it (void, refund, stock) is still to be done.
ALTER TABLE orders ADD COLUMN unsettled INTEGER NOT NULL DEFAULT 0;
-- The Order instance resuming this stuck checkout, and until when (saga recovery).
ALTER TABLE orders ADD COLUMN recovery_owner TEXT;
ALTER TABLE orders ADD COLUMN recovery_until TEXT;
CREATE INDEX orders_unfinished ON orders (status, updated_at);
CREATE INDEX orders_unsettled ON orders (unsettled, updated_at);

-- The outbox relay's lease: while one relay holds it, no other publishes from this outbox.
CREATE TABLE outbox_relay_lease (
    name        TEXT NOT NULL PRIMARY KEY,
    owner       TEXT NOT NULL,
    lease_until TEXT NOT NULL
);
INSERT INTO outbox_relay_lease (name, owner, lease_until) VALUES ('relay', '', '1970-01-01T00:00:00Z');
