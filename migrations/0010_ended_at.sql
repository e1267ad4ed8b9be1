-- When each chain or task ended: the step it waited on last finished (a chain that fired
-- at once and then waited on a Deferred a step returned ends long after it fired), or it
-- was freed unfired, or a new start found it left pending. NULL in rows written before
-- this migration and in pending ones; for those `fired_at_ms` is the best end known.

ALTER TABLE deferreds ADD COLUMN ended_at_ms INTEGER;
