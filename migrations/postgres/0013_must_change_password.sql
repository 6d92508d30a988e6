-- Issue 18 item 7: an account an administrator created or whose password an administrator
-- reset must choose its own password at the next login; until then every API but the
-- password change answers 403 password_change_required. 0/1: Any has no portable boolean.
ALTER TABLE users ADD COLUMN must_change_password BIGINT NOT NULL DEFAULT 0;
