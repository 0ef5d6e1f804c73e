-- The seed's column types: 0001 had narrower names and DATETIME(6). TIMESTAMP keeps microseconds
-- (fractional precision 6) and the seed's default.
ALTER TABLE users
    MODIFY username   VARCHAR(255) NOT NULL,
    MODIFY email      VARCHAR(255) NOT NULL,
    MODIFY created_at TIMESTAMP(6) NULL DEFAULT CURRENT_TIMESTAMP(6);
