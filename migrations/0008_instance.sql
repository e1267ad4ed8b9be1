-- The gateway that wrote each row (`[gateway] instance`, by default its host name): a file
-- has one writer at a time, but a file moved or a host renamed keeps the rows of both names.
-- '' in rows written before this migration.

ALTER TABLE services ADD COLUMN instance TEXT NOT NULL DEFAULT '';
ALTER TABLE connections ADD COLUMN instance TEXT NOT NULL DEFAULT '';
ALTER TABLE deferreds ADD COLUMN instance TEXT NOT NULL DEFAULT '';
ALTER TABLE deferred_steps ADD COLUMN instance TEXT NOT NULL DEFAULT '';
ALTER TABLE events ADD COLUMN instance TEXT NOT NULL DEFAULT '';
ALTER TABLE queries ADD COLUMN instance TEXT NOT NULL DEFAULT '';
