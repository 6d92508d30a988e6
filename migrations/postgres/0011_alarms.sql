-- Dead-line alarms (issue 16 item 3): a trunk that stopped answering OPTIONS, a carrier
-- registration that failed, no operator phone registered while the line is open, or calls
-- that stopped arriving when they usually come. One row per raise; cleared_at is set when the
-- condition ends. No personal data: the detail names addresses of the trunk and counts only.

CREATE TABLE alarms (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('trunk_down', 'registration_failed', 'no_phone', 'silence')),
    raised_at TEXT NOT NULL,
    cleared_at TEXT,
    detail TEXT NOT NULL DEFAULT ''
);

CREATE INDEX alarms_open ON alarms(kind) WHERE cleared_at IS NULL;
