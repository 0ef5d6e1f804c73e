CREATE TABLE orders (
    id              BIGINT        NOT NULL AUTO_INCREMENT,
    username        VARCHAR(50)   NOT NULL,
    total_amount    DECIMAL(10,2) NOT NULL,
    status          VARCHAR(20)   NOT NULL,        -- PENDING | PAID | CANCELLED | SHIPPED | DELIVERED
    payment_id      BIGINT,
    failure_reason  VARCHAR(255),
    idempotency_key VARCHAR(100),                  -- added: Idempotency-Key of POST /api/orders
    version         BIGINT        NOT NULL,        -- added: optimistic concurrency
    created_at      DATETIME(6)   NOT NULL,
    updated_at      DATETIME(6)   NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY uk_orders_user_key (username, idempotency_key),
    KEY ix_orders_user (username, id),             -- added: a user's orders, newest first
    KEY ix_orders_status (status)                  -- added: recovery and audit
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE order_items (
    id           BIGINT        NOT NULL AUTO_INCREMENT,
    order_id     BIGINT        NOT NULL,
    product_id   BIGINT        NOT NULL,
    product_name VARCHAR(255)  NOT NULL,
    price        DECIMAL(10,2) NOT NULL,
    quantity     INT           NOT NULL,
    PRIMARY KEY (id),
    CONSTRAINT fk_order_items_order FOREIGN KEY (order_id) REFERENCES orders (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
