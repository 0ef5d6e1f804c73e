-- The seed's column types, and its cart_items.added_at (missing from 0001).
ALTER TABLE cart
    MODIFY username   VARCHAR(255) NOT NULL,
    MODIFY created_at TIMESTAMP(6) NULL DEFAULT CURRENT_TIMESTAMP(6);
ALTER TABLE cart_items
    ADD COLUMN added_at TIMESTAMP(6) NULL DEFAULT CURRENT_TIMESTAMP(6);
