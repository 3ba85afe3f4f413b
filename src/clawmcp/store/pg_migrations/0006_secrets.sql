-- Secrets the host keeps for its tool servers (SQLite's 0005): each encrypted by the host before
-- it is stored.

CREATE TABLE secrets (
    name       text PRIMARY KEY,
    value      bytea NOT NULL,
    updated_at double precision NOT NULL
);
