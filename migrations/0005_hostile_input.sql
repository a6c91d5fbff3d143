-- What can be refused at the door is refused there, with a constraint name that says why.

-- Windows: '24:00' is a valid PostgreSQL time but no time of day. As `send_until` it means
-- the end of the day, which is what NULL already means; as `send_from` it is refused.
UPDATE sequences SET send_until = NULL WHERE send_until = '24:00';
UPDATE sequences SET send_from = NULL WHERE send_from = '24:00';
CREATE FUNCTION sequences_normalize() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.send_until = '24:00' THEN
        NEW.send_until := NULL;  -- end of day
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER sequences_normalize BEFORE INSERT OR UPDATE ON sequences
    FOR EACH ROW EXECUTE FUNCTION sequences_normalize();
ALTER TABLE sequences
    ADD CONSTRAINT "send_from must be a time of day before 24:00" CHECK (send_from < '24:00');

-- A lead is one mailbox. A pattern such as '*@victim.test' would turn the lead's own
-- unsubscribe into a suppression of a whole domain; existing rows are left to the planner,
-- which fails them with `invalid_email`. (The planner checks the full address syntax.)
CREATE FUNCTION is_one_address(address text) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT address IS NOT NULL AND address !~ '[[:space:]*]' AND address ~ '^[^@]+@[^@]+$'
$$;
ALTER TABLE leads
    ADD CONSTRAINT "lead email must be one address: no spaces, no *, one @" CHECK (
        is_one_address(email)) NOT VALID,
    ADD CONSTRAINT "lead times must be finite" CHECK (
        isfinite(enrolled_at) AND (next_run_at IS NULL OR isfinite(next_run_at))) NOT VALID;

-- One lead per address and sequence, whatever the case. Existing duplicates: the oldest
-- stays, the others are stopped (reason `duplicate`) and keep `duplicate_of`, which takes
-- them out of the unique index.
ALTER TABLE leads ADD COLUMN duplicate_of bigint REFERENCES leads (id) ON DELETE SET NULL;
-- Deleting a lead looks up the duplicates pointing at it: through this index, not a scan.
CREATE INDEX leads_duplicate_of ON leads (duplicate_of) WHERE duplicate_of IS NOT NULL;
WITH ranked AS (
    SELECT id, first_value(id) OVER w AS keep, row_number() OVER w AS n
    FROM leads
    WINDOW w AS (PARTITION BY sequence_id, lower(email) ORDER BY enrolled_at, id)
), marked AS (
    UPDATE leads l
    SET duplicate_of = r.keep,
        status = CASE WHEN l.status IN ('active', 'queued', 'paused') THEN 'stopped'
                      ELSE l.status END,
        updated_at = now()
    FROM ranked r
    WHERE r.id = l.id AND r.n > 1
    RETURNING l.id, l.current_step, r.keep
)
INSERT INTO events (lead_id, step, type, data)
SELECT id, current_step, 'stopped', jsonb_build_object('reason', 'duplicate', 'duplicate_of', keep)
FROM marked;
CREATE UNIQUE INDEX "one lead per address and sequence" ON leads (sequence_id, lower(email))
    WHERE duplicate_of IS NULL;
