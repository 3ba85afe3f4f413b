-- Claws that run unattended (SQLite's 0004): tool calls and questions waiting for a person (a run
-- waits on them in state 'waiting'), the day's tokens, and pinned tool definitions.

CREATE TABLE approvals (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    claw       text NOT NULL,
    run_id     bigint NOT NULL REFERENCES runs (id),
    message_id bigint REFERENCES messages (id),
    kind       text NOT NULL,
    tool       text NOT NULL,
    call_id    text NOT NULL,
    arguments  text NOT NULL,
    state      text NOT NULL DEFAULT 'pending',
    note       text,
    content    text NOT NULL DEFAULT 'null',
    created_at double precision NOT NULL,
    expires_at double precision NOT NULL,
    decided_at double precision
);

CREATE INDEX approvals_by_run ON approvals (run_id);
CREATE INDEX approvals_pending ON approvals (claw, id) WHERE state = 'pending';

-- A Claw's tokens of the day: the runs that ended since midnight.
CREATE INDEX runs_by_end ON runs (claw, ended_at);

-- Tool definitions as a person trusted them (the first listing of a server, or an accept).
CREATE TABLE pins (
    server     text NOT NULL,
    tool       text NOT NULL,
    definition text NOT NULL,
    hash       text NOT NULL,
    pinned_at  double precision NOT NULL,
    PRIMARY KEY (server, tool)
);

-- A claim skips a thread with a message running (parked for a person): found by this index.
CREATE INDEX messages_running ON messages (mailbox, thread) WHERE state = 'running';
