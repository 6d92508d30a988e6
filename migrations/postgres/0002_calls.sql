-- The call log (R-LINE-3): one row per inbound call, written when it arrives and completed
-- when it ends. Personal data: caller_e164, caller_raw (emptied by the purge).
CREATE TABLE calls (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    call_key TEXT NOT NULL UNIQUE,
    sip_call_id TEXT NOT NULL,
    caller_kind TEXT NOT NULL CHECK (caller_kind IN ('number', 'unparsed', 'withheld', 'unknown')),
    caller_e164 TEXT,
    caller_raw TEXT,
    caller_withheld TEXT,
    line_number TEXT,
    source TEXT,
    arrived_at TEXT NOT NULL,
    rang_at TEXT,
    answered_at TEXT,
    answered_by_user_id BIGINT,
    answered_by_username TEXT,
    answered_extension TEXT,
    ended_at TEXT,
    end_cause TEXT,
    end_detail TEXT,
    hangup_by TEXT,
    ring_ms BIGINT,
    talk_ms BIGINT,
    outcome TEXT,
    outcome_note TEXT,
    outcome_by_user_id BIGINT,
    outcome_at TEXT
);
CREATE INDEX calls_arrived ON calls(arrived_at);
CREATE INDEX calls_caller ON calls(caller_e164);
