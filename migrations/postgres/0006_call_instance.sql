-- Which instance proxied a call (issue 13 item 12): on start an instance closes only its own
-- calls left open, never those live on another instance sharing the database.
ALTER TABLE calls ADD COLUMN instance TEXT;
CREATE INDEX calls_open_by_instance ON calls (instance) WHERE ended_at IS NULL;
