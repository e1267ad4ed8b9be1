-- Async tasks are kept beside Deferred chains, in the same table: `kind` is 'task' for a
-- task and 'chain' for a chain (NULL in rows written before this migration: chains), and
-- `task_json` holds a task's figures (poll count, busy and idle time, what it awaited) as
-- a JSON object.

ALTER TABLE deferreds ADD COLUMN kind TEXT;
ALTER TABLE deferreds ADD COLUMN task_json TEXT;
