-- The query log: answers a DNS service sent, each with who asked, what, the answer's code,
-- how long it took and where it came from. Failures are always written; routine answers up
-- to a per-second budget, then one in N, whose row says how many answers it stands for
-- (`weight`). Rows go with retention like events.

CREATE TABLE queries (
    id         INTEGER PRIMARY KEY,
    service    TEXT    NOT NULL,
    at_ms      INTEGER NOT NULL,
    client     TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    qtype      TEXT    NOT NULL,
    rcode      TEXT    NOT NULL,
    latency_us INTEGER NOT NULL,
    source     TEXT    NOT NULL,
    failed     INTEGER NOT NULL,
    weight     INTEGER NOT NULL
);

CREATE INDEX queries_at ON queries (at_ms);
CREATE INDEX queries_service_at ON queries (service, at_ms);
