-- Several hosts on one store: who is alive, which host owns which Claw, and what they agreed on.

-- One row per running host (a process start: a restarted host is a new row). A host renews its
-- row every heartbeat; one whose `expires_at` (the database's clock) has passed is dead.
CREATE TABLE hosts (
    id         uuid PRIMARY KEY,
    name       text NOT NULL UNIQUE,
    listen     text NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    renewed_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);

-- Epochs come from a sequence, so that they never repeat, not even after a crash of the database.
CREATE SEQUENCE lease_epoch;

-- The owner of each Claw: a live host, or none (NULL, or a host row that is gone or expired).
CREATE TABLE claw_leases (
    claw        text PRIMARY KEY,
    host        uuid,
    epoch       bigint NOT NULL DEFAULT 0,
    acquired_at timestamptz
);

-- The Claw definitions the hosts run (canonical JSON by Claw), set by the first host to join.
CREATE TABLE cluster (
    id         integer PRIMARY KEY CHECK (id = 1),
    claws      jsonb NOT NULL,
    applied_by text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
