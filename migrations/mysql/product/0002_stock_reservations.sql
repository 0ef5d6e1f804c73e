-- The seed's column types for the timestamps.
ALTER TABLE products
    MODIFY created_at TIMESTAMP(6) NULL DEFAULT CURRENT_TIMESTAMP(6),
    MODIFY updated_at TIMESTAMP(6) NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
    -- added: every unit admins have put on sale, in all. Stock conservation (`shop audit`):
    -- units_stocked = stock (on hand) + reserved + sold.
    ADD COLUMN units_stocked BIGINT NOT NULL DEFAULT 0;
UPDATE products SET units_stocked = stock;

-- added: stock held for checkouts. A checkout's lines are reserved together (all or nothing):
-- their units leave products.stock at once. COMMITTED: sold (the order is PAID). RELEASED: back
-- in products.stock (the order is CANCELLED, was never made, or the hold expired).
CREATE TABLE stock_reservations (
    checkout_id VARCHAR(36) NOT NULL,
    product_id  BIGINT      NOT NULL,
    quantity    INT         NOT NULL,
    status      VARCHAR(20) NOT NULL,              -- RESERVED | COMMITTED | RELEASED
    expires_at  DATETIME(6) NOT NULL,              -- a RESERVED hold past this is released
    created_at  DATETIME(6) NOT NULL,
    updated_at  DATETIME(6) NOT NULL,
    PRIMARY KEY (checkout_id, product_id),
    KEY ix_stock_reservations_live (status, expires_at),
    KEY ix_stock_reservations_product (product_id, status),
    CONSTRAINT ck_stock_reservations_quantity CHECK (quantity > 0)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
