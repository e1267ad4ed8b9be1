-- The reactor (`[gateway] reactors = N`: 0 to N-1) that owned each connection and ran each
-- chain or task. NULL in rows written before this migration: the reactor is not known.

ALTER TABLE connections ADD COLUMN reactor BIGINT;
ALTER TABLE deferreds ADD COLUMN reactor BIGINT;
