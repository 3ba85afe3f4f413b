-- The state store on PostgreSQL: the tables of SQLite's 0001 and 0002 with the same meaning.
-- Times are double precision seconds since the epoch from the host's clock; JSON values are text,
-- so that they come back exactly as written.

CREATE TABLE messages (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    mailbox      text NOT NULL,
    content      text NOT NULL,
    sender       text,
    thread       text NOT NULL,
    kind         text NOT NULL,
    reply_to     bigint REFERENCES messages (id),
    key          text,
    state        text NOT NULL DEFAULT 'queued',
    attempts     integer NOT NULL DEFAULT 0,
    available_at double precision NOT NULL,
    last_error   text,
    created_at   double precision NOT NULL,
    UNIQUE (mailbox, key)
);

-- Claiming takes the lowest id among a mailbox's open messages; dead letters are listed per mailbox.
CREATE INDEX messages_open ON messages (mailbox, id) WHERE state IN ('queued', 'running');
CREATE INDEX messages_dead ON messages (mailbox, id) WHERE state = 'dead';

CREATE TABLE runs (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    claw          text NOT NULL,
    thread        text NOT NULL,
    trigger       text NOT NULL,
    input         text NOT NULL,
    message_id    bigint REFERENCES messages (id),
    parent_run_id bigint REFERENCES runs (id),
    state         text NOT NULL DEFAULT 'running',
    reply         text,
    error         text,
    input_tokens  integer,
    output_tokens integer,
    started_at    double precision NOT NULL,
    ended_at      double precision,
    -- The next step's number: taken under the run's row lock, so concurrent steps never collide.
    step_count    integer NOT NULL DEFAULT 0
);

CREATE INDEX runs_by_claw ON runs (claw, id);
CREATE INDEX runs_by_message ON runs (message_id, id);
CREATE INDEX runs_running ON runs (claw) WHERE state = 'running';

CREATE TABLE run_steps (
    run_id bigint NOT NULL REFERENCES runs (id),
    idx    integer NOT NULL,
    kind   text NOT NULL,
    data   text NOT NULL,
    at     double precision NOT NULL,
    PRIMARY KEY (run_id, idx)
);

CREATE TABLE history (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    claw    text NOT NULL,
    thread  text NOT NULL,
    role    text NOT NULL,
    content text NOT NULL,
    run_id  bigint REFERENCES runs (id),
    at      double precision NOT NULL
);

CREATE INDEX history_by_thread ON history (claw, thread, id);

-- `words` is written by the store from the note's text, split as SQLite's FTS5 splits it.
CREATE TABLE notes (
    id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    claw  text NOT NULL,
    key   text,
    text  text NOT NULL,
    words tsvector NOT NULL,
    at    double precision NOT NULL,
    UNIQUE (claw, key)
);

CREATE INDEX notes_words ON notes USING gin (words);
CREATE INDEX notes_by_claw ON notes (claw, at);

CREATE TABLE schedules (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    claw       text NOT NULL,
    name       text NOT NULL,
    spec       text NOT NULL,
    action     text NOT NULL,
    misfire    text NOT NULL,
    source     text NOT NULL,
    next_fire  double precision,
    created_at double precision NOT NULL,
    UNIQUE (claw, name)
);

CREATE TABLE fires (
    schedule_id bigint NOT NULL REFERENCES schedules (id) ON DELETE CASCADE,
    slot        double precision NOT NULL,
    outcome     text NOT NULL,
    run_id      bigint REFERENCES runs (id),
    error       text,
    fired_at    double precision NOT NULL,
    PRIMARY KEY (schedule_id, slot)
);

CREATE TABLE tool_calls (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    claw       text NOT NULL,
    tool       text NOT NULL,
    run_id     bigint REFERENCES runs (id),
    args_bytes integer NOT NULL,
    duration   double precision NOT NULL,
    outcome    text NOT NULL,
    error      text,
    at         double precision NOT NULL
);

CREATE INDEX tool_calls_by_claw ON tool_calls (claw, id);

-- The activity log. Appends take a transaction lock first, so ids commit in order and a reader
-- following `id > last` never skips one.
CREATE TABLE events (
    id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at   double precision NOT NULL,
    kind text NOT NULL,
    claw text,
    data text NOT NULL
);

CREATE INDEX events_by_claw ON events (claw, id);
