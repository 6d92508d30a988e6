-- Phone registrations kept in the database (issue 18 item 9, issue 16 item 1): a restarted
-- server rings the phones registered before the restart, and every instance sharing the
-- database rings the phones registered on the others. One row per binding, owned by the
-- instance whose registrar holds it (`instance` = its instance_id); rewritten on every
-- REGISTER outcome, deleted on expiry or unregister. Times as the store keeps them (text).
CREATE TABLE registrations (
    instance TEXT NOT NULL,
    aor TEXT NOT NULL,
    contact TEXT NOT NULL,
    transport TEXT NOT NULL CHECK (transport IN ('udp', 'tcp')),
    source TEXT NOT NULL,
    outbound BIGINT NOT NULL,
    expires_at TEXT NOT NULL,
    user_agent TEXT,
    call_id TEXT NOT NULL,
    cseq BIGINT NOT NULL,
    PRIMARY KEY (instance, aor, contact)
);
CREATE INDEX registrations_expiry ON registrations (expires_at);
