-- weft history: services, connections, Deferred chains with their steps, and the event log.
--
-- Times are unix milliseconds (steps: microseconds). Booleans are 0/1 integers.
-- Rows are upserted by their producer-assigned ids; retention deletes only finished rows
-- (closed connections, fired Deferreds, events), never open or pending ones.

CREATE TABLE services (
    name            TEXT PRIMARY KEY NOT NULL,
    kind            TEXT NOT NULL,
    endpoints_json  TEXT NOT NULL DEFAULT '[]',
    config_json     TEXT NOT NULL DEFAULT '{}'
);

CREATE TABLE connections (
    id              INTEGER PRIMARY KEY NOT NULL,
    service         TEXT NOT NULL,
    transport       TEXT NOT NULL,
    peer            TEXT NOT NULL,
    local           TEXT NOT NULL,
    opened_at_ms    INTEGER NOT NULL,
    closed_at_ms    INTEGER,
    bytes_in        INTEGER NOT NULL DEFAULT 0,
    bytes_out       INTEGER NOT NULL DEFAULT 0,
    reads           INTEGER NOT NULL DEFAULT 0,
    writes          INTEGER NOT NULL DEFAULT 0,
    close_reason    TEXT
);

-- /api/connections?state=open|closed&service=NAME, newest first (closed ones by close time), read
-- in index order with no sort. Retention walks connections_closed from the oldest end.
CREATE INDEX connections_opened ON connections (opened_at_ms DESC, id DESC);
CREATE INDEX connections_open ON connections (opened_at_ms DESC, id DESC) WHERE closed_at_ms IS NULL;
CREATE INDEX connections_closed ON connections (closed_at_ms DESC, id DESC) WHERE closed_at_ms IS NOT NULL;
CREATE INDEX connections_service_opened ON connections (service, opened_at_ms DESC, id DESC);
CREATE INDEX connections_service_closed ON connections (service, closed_at_ms DESC, id DESC)
    WHERE closed_at_ms IS NOT NULL;

CREATE TABLE deferreds (
    id              INTEGER PRIMARY KEY NOT NULL,
    parent_id       INTEGER,
    label           TEXT,
    site            TEXT NOT NULL,
    connection_id   INTEGER,
    service         TEXT,
    state           TEXT NOT NULL,
    created_at_ms   INTEGER NOT NULL,
    fired_at_ms     INTEGER,
    current_step    TEXT,
    waiting_on      INTEGER,
    failure         TEXT,
    stalled         INTEGER NOT NULL DEFAULT 0,
    slow            INTEGER NOT NULL DEFAULT 0,
    unhandled       INTEGER NOT NULL DEFAULT 0,
    leaked          INTEGER NOT NULL DEFAULT 0
);

-- /api/deferreds?state=...&service=NAME, newest first, read in index order with no sort. Pending
-- and flagged Deferreds are few next to finished ones, so their partial indexes stay small.
CREATE INDEX deferreds_created ON deferreds (created_at_ms DESC, id DESC);
CREATE INDEX deferreds_service_created ON deferreds (service, created_at_ms DESC, id DESC);
CREATE INDEX deferreds_state_created ON deferreds (state, created_at_ms DESC, id DESC);
CREATE INDEX deferreds_pending ON deferreds (created_at_ms DESC, id DESC)
    WHERE state IN ('pending', 'running', 'paused');
CREATE INDEX deferreds_stalled ON deferreds (created_at_ms DESC, id DESC) WHERE stalled <> 0;
CREATE INDEX deferreds_slow ON deferreds (created_at_ms DESC, id DESC) WHERE slow <> 0;
CREATE INDEX deferreds_unhandled ON deferreds (created_at_ms DESC, id DESC) WHERE unhandled <> 0;
CREATE INDEX deferreds_leaked ON deferreds (created_at_ms DESC, id DESC) WHERE leaked <> 0;
-- A connection's chains (newest first), a chain's children (oldest first).
CREATE INDEX deferreds_connection ON deferreds (connection_id, created_at_ms DESC, id DESC)
    WHERE connection_id IS NOT NULL;
CREATE INDEX deferreds_parent ON deferreds (parent_id, created_at_ms, id) WHERE parent_id IS NOT NULL;
-- Retention walks fired rows by age.
CREATE INDEX deferreds_fired ON deferreds (fired_at_ms) WHERE fired_at_ms IS NOT NULL;

-- No foreign key to deferreds: a step may arrive in the same batch as (or before) its Deferred,
-- and either may have been dropped under load. Retention removes steps with their Deferred.
CREATE TABLE deferred_steps (
    deferred_id     INTEGER NOT NULL,
    idx             INTEGER NOT NULL,
    kind            TEXT NOT NULL,
    site            TEXT NOT NULL,
    started_at_us   INTEGER NOT NULL,
    duration_us     INTEGER,
    outcome         TEXT NOT NULL,
    child_id        INTEGER,
    PRIMARY KEY (deferred_id, idx)
);

-- Retention finds steps whose Deferred is gone.
CREATE INDEX deferred_steps_started ON deferred_steps (started_at_us);

CREATE TABLE events (
    seq             INTEGER PRIMARY KEY NOT NULL,
    at_ms           INTEGER NOT NULL,
    kind            TEXT NOT NULL,
    payload_json    TEXT NOT NULL
);

CREATE INDEX events_at ON events (at_ms);
