-- A phone's RFC 5626 identity with its stored binding (issue 18 item 5): after a restart, or
-- on another instance, a registration of the same +sip.instance (and reg-id) from a new flow
-- still replaces the stored binding instead of ringing beside it.
ALTER TABLE registrations ADD COLUMN sip_instance TEXT;
ALTER TABLE registrations ADD COLUMN reg_id TEXT;
