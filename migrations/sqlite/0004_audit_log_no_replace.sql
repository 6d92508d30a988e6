-- INSERT OR REPLACE (and REPLACE INTO) of an existing id deletes the old row without firing
-- audit_log_no_delete: SQLite runs delete triggers for REPLACE only with recursive_triggers on,
-- a per-connection setting any other client can leave off. Refusing an existing id before the
-- insert closes that door in the schema itself (R-PII-4: the log is append-only).
CREATE TRIGGER audit_log_no_replace BEFORE INSERT ON audit_log
WHEN EXISTS (SELECT 1 FROM audit_log WHERE id = NEW.id)
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
