-- weft history in PostgreSQL: the schema of the SQLite migrations beside this directory, as
-- it stands after all of them, shared by every gateway of a fleet.
--
-- Each row carries the instance that wrote it, and ids are the writing gateway's own (each
-- numbers its connections, chains and events from where its history left off), so every key
-- leads with the instance. Times are unix milliseconds (steps: microseconds); the detectors'
-- flags are booleans. Lists read across instances in index order as in SQLite; a list of one
-- instance uses the same indexes and filters on the instance.

CREATE TABLE services (
    instance        TEXT NOT NULL,
    name            TEXT NOT NULL,
    kind            TEXT NOT NULL,
    endpoints_json  TEXT NOT NULL DEFAULT '[]',
    config_json     TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (instance, name)
);

CREATE TABLE connections (
    instance        TEXT NOT NULL,
    id              BIGINT NOT NULL,
    service         TEXT NOT NULL,
    transport       TEXT NOT NULL,
    peer            TEXT NOT NULL,
    local           TEXT NOT NULL,
    opened_at_ms    BIGINT NOT NULL,
    closed_at_ms    BIGINT,
    bytes_in        BIGINT NOT NULL DEFAULT 0,
    bytes_out       BIGINT NOT NULL DEFAULT 0,
    reads           BIGINT NOT NULL DEFAULT 0,
    writes          BIGINT NOT NULL DEFAULT 0,
    close_reason    TEXT,
    close_detail    TEXT,
    opened_seq      BIGINT,
    closed_seq      BIGINT,
    PRIMARY KEY (instance, id)
);

CREATE INDEX connections_opened ON connections (opened_at_ms DESC, id DESC);
CREATE INDEX connections_open ON connections (opened_at_ms DESC, id DESC) WHERE closed_at_ms IS NULL;
CREATE INDEX connections_closed ON connections (closed_at_ms DESC, id DESC) WHERE closed_at_ms IS NOT NULL;
CREATE INDEX connections_service_opened ON connections (service, opened_at_ms DESC, id DESC);
CREATE INDEX connections_service_closed ON connections (service, closed_at_ms DESC, id DESC)
    WHERE closed_at_ms IS NOT NULL;
CREATE INDEX connections_opened_seq ON connections (instance, opened_seq) WHERE opened_seq IS NOT NULL;
CREATE INDEX connections_closed_seq ON connections (instance, closed_seq) WHERE closed_seq IS NOT NULL;

CREATE TABLE deferreds (
    instance              TEXT NOT NULL,
    id                    BIGINT NOT NULL,
    parent_id             BIGINT,
    label                 TEXT,
    site                  TEXT NOT NULL,
    connection_id         BIGINT,
    service               TEXT,
    state                 TEXT NOT NULL,
    created_at_ms         BIGINT NOT NULL,
    fired_at_ms           BIGINT,
    current_step          TEXT,
    waiting_on            BIGINT,
    failure               TEXT,
    stalled               BOOLEAN NOT NULL DEFAULT FALSE,
    slow                  BOOLEAN NOT NULL DEFAULT FALSE,
    unhandled             BOOLEAN NOT NULL DEFAULT FALSE,
    leaked                BOOLEAN NOT NULL DEFAULT FALSE,
    deadlock              BOOLEAN NOT NULL DEFAULT FALSE,
    step_name             TEXT,
    step_detail           TEXT,
    waiting_on_connection BIGINT,
    named_steps_json      TEXT,
    kind                  TEXT,
    task_json             TEXT,
    PRIMARY KEY (instance, id)
);

CREATE INDEX deferreds_created ON deferreds (created_at_ms DESC, id DESC);
CREATE INDEX deferreds_service_created ON deferreds (service, created_at_ms DESC, id DESC);
CREATE INDEX deferreds_state_created ON deferreds (state, created_at_ms DESC, id DESC);
CREATE INDEX deferreds_pending ON deferreds (created_at_ms DESC, id DESC)
    WHERE state IN ('pending', 'running', 'paused', 'waiting');
CREATE INDEX deferreds_stalled ON deferreds (created_at_ms DESC, id DESC) WHERE stalled;
CREATE INDEX deferreds_slow ON deferreds (created_at_ms DESC, id DESC) WHERE slow;
CREATE INDEX deferreds_unhandled ON deferreds (created_at_ms DESC, id DESC) WHERE unhandled;
CREATE INDEX deferreds_leaked ON deferreds (created_at_ms DESC, id DESC) WHERE leaked;
CREATE INDEX deferreds_deadlock ON deferreds (created_at_ms DESC, id DESC) WHERE deadlock;
CREATE INDEX deferreds_connection ON deferreds (instance, connection_id, created_at_ms DESC, id DESC)
    WHERE connection_id IS NOT NULL;
CREATE INDEX deferreds_parent ON deferreds (instance, parent_id, created_at_ms, id)
    WHERE parent_id IS NOT NULL;
CREATE INDEX deferreds_fired ON deferreds (fired_at_ms) WHERE fired_at_ms IS NOT NULL;

CREATE TABLE deferred_steps (
    instance        TEXT NOT NULL,
    deferred_id     BIGINT NOT NULL,
    idx             BIGINT NOT NULL,
    kind            TEXT NOT NULL,
    site            TEXT NOT NULL,
    started_at_us   BIGINT NOT NULL,
    duration_us     BIGINT,
    outcome         TEXT NOT NULL,
    child_id        BIGINT,
    PRIMARY KEY (instance, deferred_id, idx)
);

CREATE INDEX deferred_steps_started ON deferred_steps (started_at_us);

CREATE TABLE events (
    instance        TEXT NOT NULL,
    seq             BIGINT NOT NULL,
    at_ms           BIGINT NOT NULL,
    kind            TEXT NOT NULL,
    payload_json    TEXT NOT NULL,
    PRIMARY KEY (instance, seq)
);

CREATE INDEX events_at ON events (at_ms);
CREATE INDEX events_kind ON events (instance, kind, seq DESC);

CREATE TABLE queries (
    instance   TEXT    NOT NULL,
    id         BIGSERIAL,
    service    TEXT    NOT NULL,
    at_ms      BIGINT  NOT NULL,
    client     TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    qtype      TEXT    NOT NULL,
    rcode      TEXT    NOT NULL,
    latency_us BIGINT  NOT NULL,
    source     TEXT    NOT NULL,
    failed     BOOLEAN NOT NULL,
    weight     BIGINT  NOT NULL,
    PRIMARY KEY (instance, id)
);

CREATE INDEX queries_at ON queries (at_ms);
CREATE INDEX queries_service_at ON queries (instance, service, at_ms);
