-- added: the checkout holding the cart, if any; stored with the cart so that the version fence
-- keeps two instances from handing one cart to two checkouts.
ALTER TABLE cart
    ADD COLUMN checkout_id         VARCHAR(36) NULL,
    ADD COLUMN checkout_expires_at DATETIME(6) NULL;
