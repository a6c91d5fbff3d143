-- The stop verbs of the public SQL interface (README, "Loading data"). Each stop is an
-- event carrying its reason. A lead's own address is one mailbox: these functions refuse a
-- pattern such as '*@victim.test', so a suppression of a whole domain is only ever written
-- on purpose (INSERT INTO suppressions). `is_one_address` is schema (a CHECK on leads uses
-- it): migration 0005.

CREATE OR REPLACE FUNCTION require_one_address(fn text, address text) RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF NOT is_one_address(address) THEN
        RAISE EXCEPTION USING
            ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('%s takes one email address, not %L', fn, address),
            HINT = 'suppress a whole domain on purpose: INSERT INTO suppressions (email, reason) '
                   'VALUES (''*@example.com'', ''domain'')';
    END IF;
END $$;

CREATE OR REPLACE FUNCTION stop_leads(address text, why text) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    n integer;
BEGIN
    WITH stopped AS (
        UPDATE leads SET status = 'stopped', updated_at = now()
        WHERE lower(email) = lower(address) AND status IN ('active', 'queued', 'paused')
        RETURNING id, current_step
    ), logged AS (
        INSERT INTO events (lead_id, step, type, data)
        SELECT id, current_step, 'stopped', jsonb_build_object('reason', why) FROM stopped
    )
    SELECT count(*) INTO n FROM stopped;
    RETURN n;
END $$;

CREATE OR REPLACE FUNCTION record_reply(address text) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    n integer;
    m integer := 0;
BEGIN
    PERFORM require_one_address('record_reply', address);
    n := stop_leads(address, 'replied');
    -- Sequences that stop the whole company on a reply stop the other leads of the domain too.
    WITH stopped AS (
        UPDATE leads l SET status = 'stopped', updated_at = now()
        FROM sequences s
        WHERE s.id = l.sequence_id AND s.stop_on_company_reply
          AND split_part(lower(l.email), '@', 2) = split_part(lower(address), '@', 2)
          AND l.status IN ('active', 'queued', 'paused')
          AND l.sequence_id IN (SELECT sequence_id FROM leads WHERE lower(email) = lower(address))
        RETURNING l.id, l.current_step
    ), logged AS (
        INSERT INTO events (lead_id, step, type, data)
        SELECT id, current_step, 'stopped',
               jsonb_build_object('reason', 'company_replied', 'address', lower(address))
        FROM stopped
    )
    SELECT count(*) INTO m FROM stopped;
    RETURN n + m;
END $$;

CREATE OR REPLACE FUNCTION record_unsubscribe(address text) RETURNS integer
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM require_one_address('record_unsubscribe', address);
    INSERT INTO suppressions (email, reason) VALUES (address, 'unsubscribed')
    ON CONFLICT (email) DO NOTHING;
    RETURN stop_leads(address, 'unsubscribed');
END $$;
