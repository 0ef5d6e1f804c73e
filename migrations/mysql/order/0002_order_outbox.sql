-- added: the transactional outbox. Each order event is written in the same transaction as the
-- change it announces; the relay publishes unsent rows oldest first and stamps sent_at.
CREATE TABLE order_outbox (
    id         BIGINT      NOT NULL AUTO_INCREMENT,
    event_id   VARCHAR(36) NOT NULL,
    order_id   BIGINT      NOT NULL,
    payload    TEXT        NOT NULL,             -- the event as JSON
    created_at DATETIME(6) NOT NULL,
    sent_at    DATETIME(6) NULL,
    PRIMARY KEY (id),
    UNIQUE KEY uk_order_outbox_event (event_id),
    KEY ix_order_outbox_unsent (sent_at, id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
