-- Steps a chain's own code names ("connect upstream", "response head"): the one it is at (or
-- ended at), what that step is about, the connection it waits on, and every named step so far
-- as a JSON array (bounded by the hub; see weft_telemetry::MAX_NAMED_STEPS).
-- NULL in rows written before this migration and in chains whose code names no step.

ALTER TABLE deferreds ADD COLUMN step_name TEXT;
ALTER TABLE deferreds ADD COLUMN step_detail TEXT;
ALTER TABLE deferreds ADD COLUMN waiting_on_connection INTEGER;
ALTER TABLE deferreds ADD COLUMN named_steps_json TEXT;
