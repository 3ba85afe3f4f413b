-- Secrets the host keeps for its tool servers (the OAuth tokens of `auth: oauth`), each encrypted
-- by the host before it is stored: the store never sees them in the clear.

CREATE TABLE secrets (
    name       TEXT PRIMARY KEY,
    value      BLOB NOT NULL,
    updated_at REAL NOT NULL
);
