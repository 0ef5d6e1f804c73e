-- The checkout holding the cart, if any: stored with the cart so that the version fence keeps two
-- processes from handing one cart to two checkouts.
ALTER TABLE cart ADD COLUMN checkout_id TEXT;
ALTER TABLE cart ADD COLUMN checkout_expires_at TEXT;
