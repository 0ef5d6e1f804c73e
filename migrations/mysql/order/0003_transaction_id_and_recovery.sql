-- The seed's column types: orders.payment_id holds the gateway's transaction id (TXN_...), as the
-- seed's "Transaction ID from Payment Service". Rows from before hold the payment row's number.
ALTER TABLE orders
    MODIFY username   VARCHAR(255) NOT NULL,
    MODIFY payment_id VARCHAR(255) NULL,
    MODIFY created_at TIMESTAMP(6) NULL DEFAULT CURRENT_TIMESTAMP(6),
    -- added: the cart checkout the order comes from; it keys the order's stock reservation.
    ADD COLUMN checkout_id    VARCHAR(36) NULL,
    -- added: the outcome is stored but a step after it (void, refund, stock) is still to be done.
    ADD COLUMN unsettled      BOOLEAN     NOT NULL DEFAULT FALSE,
    -- added: the Order instance resuming this stuck checkout, and until when (saga recovery).
    ADD COLUMN recovery_owner VARCHAR(36) NULL,
    ADD COLUMN recovery_until DATETIME(6) NULL,
    ADD KEY ix_orders_unfinished (status, updated_at),
    ADD KEY ix_orders_unsettled (unsettled, updated_at);

-- added: the outbox relay's lease: while one relay holds it, no other publishes from this outbox.
CREATE TABLE outbox_relay_lease (
    name           VARCHAR(50) NOT NULL,
    owner          VARCHAR(36) NOT NULL,
    lease_until    DATETIME(6) NOT NULL,
    PRIMARY KEY (name)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
INSERT INTO outbox_relay_lease (name, owner, lease_until) VALUES ('relay', '', '1970-01-01 00:00:00');
