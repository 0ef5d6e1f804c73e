-- Every unit admins have put on sale, in all. Stock conservation (`shop audit`):
-- units_stocked = stock (on hand) + reserved + sold.
ALTER TABLE products ADD COLUMN units_stocked INTEGER NOT NULL DEFAULT 0;
UPDATE products SET units_stocked = stock;

-- Stock held for checkouts. A checkout's lines are reserved together (all or nothing): their
-- units leave products.stock at once. COMMITTED: sold (the order is PAID). RELEASED: back in
-- products.stock (the order is CANCELLED, was never made, or the hold expired).
CREATE TABLE stock_reservations (
    checkout_id TEXT    NOT NULL,
    product_id  INTEGER NOT NULL,
    quantity    INTEGER NOT NULL CHECK (quantity > 0),
    status      TEXT    NOT NULL CHECK (status IN ('RESERVED', 'COMMITTED', 'RELEASED')),
    expires_at  TEXT    NOT NULL,         -- a RESERVED hold past this is released
    created_at  TEXT    NOT NULL,
    updated_at  TEXT    NOT NULL,
    PRIMARY KEY (checkout_id, product_id)
);
CREATE INDEX stock_reservations_live ON stock_reservations (status, expires_at);
CREATE INDEX stock_reservations_product ON stock_reservations (product_id, status);
