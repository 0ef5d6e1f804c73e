CREATE TABLE cart (
    id         BIGINT      NOT NULL AUTO_INCREMENT,
    username   VARCHAR(50) NOT NULL,
    version    BIGINT      NOT NULL,               -- added: optimistic concurrency
    created_at DATETIME(6) NOT NULL,
    updated_at DATETIME(6) NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY uk_cart_username (username)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE cart_items (
    id           BIGINT        NOT NULL AUTO_INCREMENT,
    cart_id      BIGINT        NOT NULL,
    product_id   BIGINT        NOT NULL,
    product_name VARCHAR(255)  NOT NULL,
    price        DECIMAL(10,2) NOT NULL,
    quantity     INT           NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY uk_cart_items_cart_product (cart_id, product_id),
    CONSTRAINT fk_cart_items_cart FOREIGN KEY (cart_id) REFERENCES cart (id) ON DELETE CASCADE,
    CONSTRAINT ck_cart_items_quantity CHECK (quantity > 0)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- added: completed orders whose items have been taken out of the cart (replays change nothing)
CREATE TABLE cart_applied_orders (
    username   VARCHAR(50) NOT NULL,
    order_id   BIGINT      NOT NULL,
    applied_at DATETIME(6) NOT NULL,
    PRIMARY KEY (username, order_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
