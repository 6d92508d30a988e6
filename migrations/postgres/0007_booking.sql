-- The booking core (issue 14): visit calendar, bookings with their applicants and history,
-- facility requests, reception numbers. Personal data (emptied by the purge): bookings
-- contact_phone, address, caller_name, details; booking_applicants name, name_kana,
-- birth_date, details; facility_requests contact/phone/address/details/applicant_list.

-- One row per visit day (R-CAL-1): home and facility days never mix.
CREATE TABLE visit_days (
    visit_date TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('home', 'facility')),
    pm_extra_open BIGINT NOT NULL DEFAULT 0 CHECK (pm_extra_open IN (0, 1)),
    updated_at TEXT NOT NULL
);

-- The calendar is a draft until the manager fixes it; after that only audited edits change it.
CREATE TABLE calendar_state (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    fixed_at TEXT,
    fixed_by TEXT
);
INSERT INTO calendar_state (id) VALUES (1);

-- Every booking write updates its half-day's row first: on PostgreSQL a row lock, on SQLite
-- the database write lock taken at once. The cross-row rules are then checked with no race.
CREATE TABLE half_day_locks (
    visit_date TEXT NOT NULL,
    half_day TEXT NOT NULL,
    version BIGINT NOT NULL,
    PRIMARY KEY (visit_date, half_day)
);

-- Gapless counters, incremented inside the writing transaction (a rollback gives it back).
CREATE TABLE sequences (
    name TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO sequences (name, value) VALUES ('reception_number', 0);

CREATE TABLE facility_requests (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    status TEXT NOT NULL CHECK (status IN ('requested', 'scheduled', 'closed')),
    created_at TEXT NOT NULL,
    created_by_user_id BIGINT,
    call_id BIGINT,
    facility_name TEXT NOT NULL,
    facility_type TEXT NOT NULL,
    town TEXT,
    applicants_estimate BIGINT NOT NULL,
    address TEXT,
    phone TEXT,
    contact_person TEXT,
    details TEXT,
    checklist TEXT,
    applicant_list TEXT,
    pre_meeting_date TEXT,
    pre_meeting_half_day TEXT,
    updated_at TEXT NOT NULL
);

CREATE TABLE bookings (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    reception_number BIGINT UNIQUE,
    kind TEXT NOT NULL CHECK (kind IN ('home', 'facility', 'pre_meeting')),
    status TEXT NOT NULL CHECK (status IN ('booked', 'cancelled')),
    visit_date TEXT NOT NULL,
    half_day TEXT NOT NULL CHECK (half_day IN ('am', 'pm')),
    position BIGINT NOT NULL,
    whole_half_day BIGINT NOT NULL DEFAULT 0 CHECK (whole_half_day IN (0, 1)),
    booked_at TEXT NOT NULL,
    booked_by_user_id BIGINT,
    updated_at TEXT NOT NULL,
    call_id BIGINT,
    facility_request_id BIGINT REFERENCES facility_requests(id),
    applicant_count BIGINT NOT NULL,
    town TEXT,
    town_known BIGINT NOT NULL DEFAULT 0 CHECK (town_known IN (0, 1)),
    lat DOUBLE PRECISION,
    lng DOUBLE PRECISION,
    manual_travel_minutes BIGINT,
    forms TEXT NOT NULL DEFAULT '[]',
    guidance TEXT NOT NULL DEFAULT '[]',
    caller_e164 TEXT,
    contact_phone TEXT,
    address TEXT,
    caller_name TEXT,
    caller_relation TEXT,
    details TEXT,
    shared_at TEXT,
    visit_done_at TEXT,
    purged_at TEXT
);
-- No double booking (R-BOOK-6): one live booking per slot, enforced by the database.
CREATE UNIQUE INDEX bookings_live_slot ON bookings (visit_date, half_day, position) WHERE status = 'booked';
CREATE INDEX bookings_caller ON bookings (caller_e164);
CREATE INDEX bookings_visit ON bookings (visit_date, half_day);

CREATE TABLE booking_applicants (
    booking_id BIGINT NOT NULL REFERENCES bookings(id),
    idx BIGINT NOT NULL,
    application_kind TEXT NOT NULL,
    name TEXT,
    name_kana TEXT,
    birth_date TEXT,
    details TEXT,
    PRIMARY KEY (booking_id, idx)
);

-- Reschedules and cancels keep their history (R-BOOK-6).
CREATE TABLE booking_history (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    booking_id BIGINT NOT NULL REFERENCES bookings(id),
    at TEXT NOT NULL,
    by_user_id BIGINT,
    change TEXT NOT NULL,
    from_slot TEXT,
    to_slot TEXT,
    reason TEXT
);

-- The manager's corrections of the travel model for a pair of towns (either order).
CREATE TABLE travel_overrides (
    town_a TEXT NOT NULL,
    town_b TEXT NOT NULL,
    minutes BIGINT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (town_a, town_b)
);
