CREATE TABLE products (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT    NOT NULL,
    description TEXT,
    price       TEXT    NOT NULL,           -- exact decimal, two places
    stock       INTEGER NOT NULL CHECK (stock >= 0),
    created_at  TEXT    NOT NULL,
    updated_at  TEXT    NOT NULL
);
