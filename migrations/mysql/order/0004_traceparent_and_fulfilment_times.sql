-- added (issue 13): the W3C trace context of the change an outbox event announces; the relay
-- sends it as the Kafka record's `traceparent` header, so that the consumer's work joins the
-- checkout's trace. NULL for events written outside a trace (recovery) and before this column.
-- 55 characters (`00-<32 hex>-<16 hex>-<2 hex>`); room for later versions' longer ones.
ALTER TABLE order_outbox ADD COLUMN traceparent VARCHAR(128) NULL;

-- added (issue 13): when an admin shipped and delivered the order, for its history
-- (`GET /api/orders/{id}/history`); `updated_at` alone loses the first when the second comes.
ALTER TABLE orders
    ADD COLUMN shipped_at   DATETIME(6) NULL,
    ADD COLUMN delivered_at DATETIME(6) NULL;
