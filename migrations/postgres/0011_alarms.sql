-- Dead-line alarms (issue 16 item 3): a trunk that stopped answering OPTIONS, a carrier
-- registration that failed, no operator phone registered while the line is open, or calls
-- that stopped arriving when they usually come. One row per raise; cleared_at is set when the
-- condition ends. No personal data: the detail names addresses of the trunk and counts only.
-- instance: the [sip] instance_id that raised it (several instances share one PostgreSQL), or
-- '*' for a center-wide alarm (silence) shared by all. mailed_at: when the raise was mailed
-- (NULL: not mailed, so no "cleared" mail either).

CREATE TABLE alarms (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    instance TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('trunk_down', 'registration_failed', 'no_phone', 'silence')),
    raised_at TEXT NOT NULL,
    cleared_at TEXT,
    detail TEXT NOT NULL DEFAULT '',
    mailed_at TEXT
);

-- At most one open alarm of a kind per instance (and one shared): the one raise of a shared
-- alarm wins the insert, the others take its row.
CREATE UNIQUE INDEX alarms_open ON alarms(instance, kind) WHERE cleared_at IS NULL;
