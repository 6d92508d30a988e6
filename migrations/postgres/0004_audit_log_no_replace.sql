-- Kept in step with migrations/sqlite/0004: PostgreSQL needs no change here. It has no
-- INSERT OR REPLACE; an upsert (INSERT … ON CONFLICT DO UPDATE) fires the BEFORE UPDATE
-- trigger audit_log_no_update_delete, which refuses it, and a plain insert of an existing id
-- is a primary-key violation (tests/it/storage.rs checks both backends).
SELECT 1;
