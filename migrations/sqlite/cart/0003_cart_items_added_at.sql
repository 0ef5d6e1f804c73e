-- The seed's cart_items.added_at (missing from 0001). SQLite cannot add a column whose default
-- is CURRENT_TIMESTAMP; the store writes it.
ALTER TABLE cart_items ADD COLUMN added_at TEXT;
