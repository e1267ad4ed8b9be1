-- A chain the deadlock detector found waiting, through DeferredLocks, DeferredSemaphores or
-- DeferredQueues, on chains that wait on it. 0 in rows written before this migration.

ALTER TABLE deferreds ADD COLUMN deadlock INTEGER NOT NULL DEFAULT 0;
CREATE INDEX deferreds_deadlock ON deferreds (created_at_ms DESC, id DESC) WHERE deadlock <> 0;
