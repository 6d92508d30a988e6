-- Reports for the city (R-REP-1, R-REP-3).
-- A report recorded as sent is kept as sent: its JSON and the SHA-256 of that text. A later
-- change of the figures makes a new version that names the one it revises; rows are never
-- updated.
CREATE TABLE report_versions (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind TEXT NOT NULL,
    period TEXT NOT NULL,
    version BIGINT NOT NULL,
    revision_of BIGINT,
    body TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    sent_at TEXT NOT NULL,
    sent_by_user_id BIGINT,
    sent_by_username TEXT NOT NULL,
    UNIQUE (kind, period, version)
);

-- The manager's follow-up of a call tagged opinion or complaint. May hold personal data
-- (text): the purge empties it with the call's note.
CREATE TABLE call_follow_ups (
    call_id BIGINT PRIMARY KEY REFERENCES calls(id),
    text TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    updated_by_user_id BIGINT,
    updated_by_username TEXT NOT NULL
);
-- The opinion list: calls by outcome and arrival.
CREATE INDEX calls_outcome_arrived ON calls(outcome, arrived_at);
