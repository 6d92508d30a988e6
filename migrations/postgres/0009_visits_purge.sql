-- Visits done, deletion (issue 15 items 4, 5). The city (or a manager) marks a visit ended
-- with the number of applications taken and a note; visit_done_at already exists.
-- Personal data (emptied by the purge): visit_note (free text about the household).
ALTER TABLE bookings ADD COLUMN applications_taken BIGINT;
ALTER TABLE bookings ADD COLUMN visit_note TEXT;
-- The purge looks for bookings shared and done but not yet purged.
CREATE INDEX bookings_purge_due ON bookings (purged_at, shared_at, visit_done_at);
