CREATE TABLE payments (
    id             BIGINT        NOT NULL AUTO_INCREMENT,
    order_id       BIGINT        NOT NULL,
    user_id        VARCHAR(100)  NOT NULL,
    amount         DECIMAL(10,2) NOT NULL,
    status         VARCHAR(20)   NOT NULL,         -- SUCCESS | FAILED
    transaction_id VARCHAR(50),
    failure_reason VARCHAR(255),
    created_at     DATETIME(6)   NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY uk_payments_order (order_id)          -- one payment per order, ever
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
