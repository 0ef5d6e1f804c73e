-- added (issue 13): the W3C trace context of the change an outbox event announces; the relay
-- sends it as the Kafka record's `traceparent` header, so that the consumer's work joins the
-- checkout's trace. NULL for events written outside a trace (recovery) and before this column.
ALTER TABLE order_outbox ADD COLUMN traceparent TEXT;

-- added (issue 13): when an admin shipped and delivered the order, for its history
-- (`GET /api/orders/{id}/history`); `updated_at` alone loses the first when the second comes.
ALTER TABLE orders ADD COLUMN shipped_at TEXT;
ALTER TABLE orders ADD COLUMN delivered_at TEXT;
