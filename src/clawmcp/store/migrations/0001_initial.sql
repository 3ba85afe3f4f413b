-- The first schema of the state store. Times are REAL seconds since the epoch; JSON values are TEXT.

CREATE TABLE messages (
    id           INTEGER PRIMARY KEY,
    mailbox      TEXT NOT NULL,
    content      TEXT NOT NULL,
    sender       TEXT,
    thread       TEXT NOT NULL,
    kind         TEXT NOT NULL,
    reply_to     INTEGER REFERENCES messages (id),
    key          TEXT,
    state        TEXT NOT NULL DEFAULT 'queued',
    attempts     INTEGER NOT NULL DEFAULT 0,
    available_at REAL NOT NULL,
    last_error   TEXT,
    created_at   REAL NOT NULL,
    UNIQUE (mailbox, key)
);

-- Claiming takes the lowest id among a mailbox's queued messages; depth counts by state.
CREATE INDEX messages_by_state ON messages (mailbox, state, id);

CREATE TABLE runs (
    id            INTEGER PRIMARY KEY,
    claw          TEXT NOT NULL,
    thread        TEXT NOT NULL,
    trigger       TEXT NOT NULL,
    input         TEXT NOT NULL,
    message_id    INTEGER REFERENCES messages (id),
    parent_run_id INTEGER REFERENCES runs (id),
    state         TEXT NOT NULL DEFAULT 'running',
    reply         TEXT,
    error         TEXT,
    input_tokens  INTEGER,
    output_tokens INTEGER,
    started_at    REAL NOT NULL,
    ended_at      REAL
);

CREATE INDEX runs_by_claw ON runs (claw, id);

CREATE TABLE run_steps (
    run_id INTEGER NOT NULL REFERENCES runs (id),
    idx    INTEGER NOT NULL,
    kind   TEXT NOT NULL,
    data   TEXT NOT NULL,
    at     REAL NOT NULL,
    PRIMARY KEY (run_id, idx)
);

CREATE TABLE history (
    id      INTEGER PRIMARY KEY,
    claw    TEXT NOT NULL,
    thread  TEXT NOT NULL,
    role    TEXT NOT NULL,
    content TEXT NOT NULL,
    run_id  INTEGER REFERENCES runs (id),
    at      REAL NOT NULL
);

CREATE INDEX history_by_thread ON history (claw, thread, id);

CREATE TABLE notes (
    id   INTEGER PRIMARY KEY,
    claw TEXT NOT NULL,
    key  TEXT,
    text TEXT NOT NULL,
    at   REAL NOT NULL,
    UNIQUE (claw, key)
);

-- The full-text index reads its text from `notes`; the triggers keep the two in step.
CREATE VIRTUAL TABLE notes_fts USING fts5 (text, content = 'notes', content_rowid = 'id');

CREATE TRIGGER notes_after_insert AFTER INSERT ON notes BEGIN
    INSERT INTO notes_fts (rowid, text) VALUES (new.id, new.text);
END;

CREATE TRIGGER notes_after_delete AFTER DELETE ON notes BEGIN
    INSERT INTO notes_fts (notes_fts, rowid, text) VALUES ('delete', old.id, old.text);
END;

CREATE TRIGGER notes_after_update AFTER UPDATE ON notes BEGIN
    INSERT INTO notes_fts (notes_fts, rowid, text) VALUES ('delete', old.id, old.text);
    INSERT INTO notes_fts (rowid, text) VALUES (new.id, new.text);
END;

-- AUTOINCREMENT: the id of a deleted schedule is never given to a new one.
CREATE TABLE schedules (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    claw       TEXT NOT NULL,
    name       TEXT NOT NULL,
    spec       TEXT NOT NULL,
    action     TEXT NOT NULL,
    misfire    TEXT NOT NULL,
    source     TEXT NOT NULL,
    next_fire  REAL,
    created_at REAL NOT NULL,
    UNIQUE (claw, name)
);

CREATE TABLE fires (
    schedule_id INTEGER NOT NULL REFERENCES schedules (id) ON DELETE CASCADE,
    slot        REAL NOT NULL,
    outcome     TEXT NOT NULL,
    run_id      INTEGER REFERENCES runs (id),
    error       TEXT,
    fired_at    REAL NOT NULL,
    PRIMARY KEY (schedule_id, slot)
);

CREATE TABLE tool_calls (
    id         INTEGER PRIMARY KEY,
    claw       TEXT NOT NULL,
    tool       TEXT NOT NULL,
    run_id     INTEGER REFERENCES runs (id),
    args_bytes INTEGER NOT NULL,
    duration   REAL NOT NULL,
    outcome    TEXT NOT NULL,
    error      TEXT,
    at         REAL NOT NULL
);

CREATE INDEX tool_calls_by_claw ON tool_calls (claw, id);
