-- Outcomes of answered calls (R-LINE-3, R-REP-3) and the missed-call callback list.
ALTER TABLE calls ADD COLUMN outcome_topics TEXT;

-- One open row per number: every abandoned, busy, unanswered or unstaffed call from a number
-- that was not withheld, until someone calls back or closes it. Personal data: caller_e164.
CREATE TABLE callbacks (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    caller_e164 TEXT NOT NULL,
    first_missed_at TEXT NOT NULL,
    last_missed_at TEXT NOT NULL,
    missed_count BIGINT NOT NULL,
    last_cause TEXT NOT NULL,
    last_call_key TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('open', 'called_back', 'closed', 'answered_later')),
    closed_at TEXT,
    closed_by_user_id BIGINT,
    note TEXT
);
CREATE UNIQUE INDEX callbacks_open_number ON callbacks(caller_e164) WHERE status = 'open';

-- How long the operator's wrap-up took (call end → first outcome save), for AHT.
ALTER TABLE calls ADD COLUMN wrapup_ms BIGINT;
-- The screen pop's history lookup: a number's calls, newest first.
CREATE INDEX calls_caller_id ON calls(caller_e164, id);
