-- A connection's opening and closing are kept once, in its connections row: the event numbers
-- of both are stored with it, and /api/events rebuilds those two events from the row instead of
-- keeping a second copy of every connection in the event log. Under heavy churn this is one row
-- per connection instead of four.

ALTER TABLE connections ADD COLUMN opened_seq INTEGER;
ALTER TABLE connections ADD COLUMN closed_seq INTEGER;
-- The close reason in words (`close_reason` is its bounded label).
ALTER TABLE connections ADD COLUMN close_detail TEXT;

-- /api/events?after=SEQ reads connection events in sequence order from these.
CREATE INDEX connections_opened_seq ON connections (opened_seq) WHERE opened_seq IS NOT NULL;
CREATE INDEX connections_closed_seq ON connections (closed_seq) WHERE closed_seq IS NOT NULL;

-- A chain waiting on a child Deferred has not fired either: it belongs with the pending ones.
DROP INDEX deferreds_pending;
CREATE INDEX deferreds_pending ON deferreds (created_at_ms DESC, id DESC)
    WHERE state IN ('pending', 'running', 'paused', 'waiting');
