-- The activity log: what `clawmcp logs` and the dashboard show. Only the newest events are kept.

CREATE TABLE events (
    id   INTEGER PRIMARY KEY,
    at   REAL NOT NULL,
    kind TEXT NOT NULL,
    claw TEXT,
    data TEXT NOT NULL
);

CREATE INDEX events_by_claw ON events (claw, id);
