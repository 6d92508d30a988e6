-- The weekly share to the city (issue 15 items 2 and 3; R-PREP-1, R-PREP-2): the recipient
-- addresses an admin allows, and each share with its four-eyes trail. The encrypted archive
-- and its password are kept only until the share is sent or withdrawn; then both columns are
-- emptied (NULL) in the same transaction that records it. Nothing else here is personal data:
-- the booking ids and counts stay for the due list and the completion report.

CREATE TABLE share_recipients (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    address TEXT NOT NULL UNIQUE,
    label TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    created_by_user_id BIGINT
);

-- kind: a home visit week's slips (R-PREP-1) or a facility's applicant list (R-PREP-4, keyed
-- by its facility request and first visit date).
CREATE TABLE shares (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN ('home_week', 'facility_list')),
    week_start TEXT NOT NULL,
    facility_request_id BIGINT,
    visit_date TEXT,
    -- What the share holds, as the approver reads it (the week, or the facility and its visit date).
    title TEXT NOT NULL,
    due_date TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('prepared', 'approved', 'sent', 'withdrawn')),
    recipient TEXT NOT NULL,
    booking_ids TEXT NOT NULL,
    slip_count BIGINT NOT NULL,
    applicant_count BIGINT NOT NULL,
    archive_name TEXT NOT NULL,
    archive_sha256 TEXT NOT NULL,
    archive_size BIGINT NOT NULL,
    -- base64 of the AES-256 ZIP; NULL once sent or withdrawn.
    archive TEXT,
    -- The archive's password for the separate mail or download; NULL once sent or withdrawn.
    password TEXT,
    prepared_at TEXT NOT NULL,
    prepared_by_user_id BIGINT,
    prepared_by TEXT NOT NULL,
    approved_at TEXT,
    approved_by_user_id BIGINT,
    approved_by TEXT,
    archive_downloaded_at TEXT,
    password_downloaded_at TEXT,
    archive_mailed_at TEXT,
    send_started_at TEXT,
    sent_at TEXT,
    sent_by TEXT,
    sent_via TEXT CHECK (sent_via IS NULL OR sent_via IN ('smtp', 'download')),
    withdrawn_at TEXT
);
CREATE INDEX shares_week ON shares (week_start);
CREATE INDEX shares_facility ON shares (facility_request_id);
