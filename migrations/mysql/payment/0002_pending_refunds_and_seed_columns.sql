-- The seed's column types, and its payments.gateway_response (missing from 0001). Status is now
-- PENDING (saved before the gateway is asked) | SUCCESS | FAILED | REFUNDED (added: charged, then
-- given back because the order ended CANCELLED).
ALTER TABLE payments
    MODIFY user_id        VARCHAR(255) NOT NULL,
    MODIFY transaction_id VARCHAR(255) NULL,
    ADD COLUMN gateway_response TEXT NULL AFTER transaction_id,
    MODIFY created_at     TIMESTAMP(6) NULL DEFAULT CURRENT_TIMESTAMP(6),
    -- added: the refund of a charge whose order ended CANCELLED.
    ADD COLUMN refunded_at   DATETIME(6)  NULL,
    ADD COLUMN refund_reason VARCHAR(255) NULL,
    -- added: when the row last changed (PENDING, then its outcome).
    ADD COLUMN updated_at    DATETIME(6)  NULL;
