-- Erasure on request (docs/architecture.md §13) and the audit trail it writes to.
--
-- An erased person's address is kept only as its SHA-256 (a suppression 'sha256:<hex>'), so
-- a lead with the address, imported again, is stopped before any send.
CREATE OR REPLACE FUNCTION is_suppressed(address text) RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT EXISTS (
        SELECT 1 FROM suppressions
        WHERE email IN (lower(address), '*@' || split_part(lower(address), '@', 2),
                        'sha256:' || encode(sha256(convert_to(lower(address), 'UTF8')), 'hex'))
    )
$$;

-- Who changed what, when, through which door, from what to what; written in the
-- transaction of the change.
CREATE TABLE audit_log (
    id      bigserial   PRIMARY KEY,
    at      timestamptz NOT NULL,
    actor   text        NOT NULL,
    door    text        NOT NULL CHECK (door IN ('cli', 'api', 'console', 'daemon')),
    action  text        NOT NULL,
    target  text        NOT NULL,
    before  jsonb,
    after   jsonb
);
CREATE INDEX audit_log_at ON audit_log (at DESC, id DESC);
