-- Claws that run unattended (DESIGN §9): tool calls and questions waiting for a person (a run waits
-- on them in state 'waiting'), the day's tokens, and pinned tool definitions.

CREATE TABLE approvals (
    id         INTEGER PRIMARY KEY,
    claw       TEXT NOT NULL,
    run_id     INTEGER NOT NULL REFERENCES runs (id),
    message_id INTEGER REFERENCES messages (id),
    kind       TEXT NOT NULL,
    tool       TEXT NOT NULL,
    call_id    TEXT NOT NULL,
    arguments  TEXT NOT NULL,
    state      TEXT NOT NULL DEFAULT 'pending',
    note       TEXT,
    content    TEXT NOT NULL DEFAULT 'null',
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    decided_at REAL
);

CREATE INDEX approvals_by_run ON approvals (run_id);
CREATE INDEX approvals_pending ON approvals (claw, id) WHERE state = 'pending';

-- A Claw's tokens of the day: the runs that ended since midnight.
CREATE INDEX runs_by_end ON runs (claw, ended_at);

-- Tool definitions as a person trusted them (the first listing of a server, or an accept).
CREATE TABLE pins (
    server     TEXT NOT NULL,
    tool       TEXT NOT NULL,
    definition TEXT NOT NULL,
    hash       TEXT NOT NULL,
    pinned_at  REAL NOT NULL,
    PRIMARY KEY (server, tool)
);

-- A claim skips a thread with a message running (parked for a person): found by this index.
CREATE INDEX messages_running ON messages (mailbox, thread) WHERE state = 'running';
