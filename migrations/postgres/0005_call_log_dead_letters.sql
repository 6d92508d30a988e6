-- Call events the database refused for good (issue 13): kept with the error so that nothing
-- is lost silently and the writer can go on with the next event. `event` holds the caller's
-- number: personal data, emptied by the purge with the calls.
CREATE TABLE call_log_dead_letters (
    id BIGSERIAL PRIMARY KEY,
    at TEXT NOT NULL,
    call_key TEXT NOT NULL,
    event TEXT NOT NULL,
    error TEXT NOT NULL
);
