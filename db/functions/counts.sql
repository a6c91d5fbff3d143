-- Compaction of the maintained counts (migration 0008): the change rows of each key merged
-- into one. Readers sum whatever rows there are, so folding changes no answer; it keeps
-- what they sum small. One folder at a time (the others return at once); a change written
-- while it runs is not visible to its DELETE and stays for the next fold.
CREATE OR REPLACE FUNCTION fold_counts(p_now timestamptz, p_keep interval DEFAULT '90 days')
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF NOT pg_try_advisory_xact_lock(7301880034511460608) THEN
        RETURN;
    END IF;
    WITH gone AS (DELETE FROM lead_count_changes RETURNING sequence_id, status, n)
    INSERT INTO lead_count_changes (sequence_id, status, n)
    SELECT sequence_id, status, sum(n) FROM gone GROUP BY 1, 2 HAVING sum(n) <> 0;

    -- Changes arrive for the current hour (an event's time is when it was written): the
    -- last few hours are folded, older ones were folded when they were recent.
    WITH gone AS (
        DELETE FROM activity_changes WHERE hour >= date_trunc('hour', p_now) - interval '3 hours'
        RETURNING hour, sequence_id, sender_id, step, type, n
    )
    INSERT INTO activity_changes (hour, sequence_id, sender_id, step, type, n)
    SELECT hour, sequence_id, sender_id, step, type, sum(n) FROM gone
    GROUP BY 1, 2, 3, 4, 5 HAVING sum(n) <> 0;

    DELETE FROM activity_changes WHERE hour < p_now - p_keep;
END $$;

-- What an event is counted as in activity_changes: a stop or a failure with an outcome's
-- reason (replied, unsubscribed, bounced) as that outcome, everything else as its type. The
-- same rule as core/events.py `key` (tests/integration/test_event_types.py compares them).
CREATE OR REPLACE FUNCTION event_key(p_type text, p_data jsonb) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p_type IN ('stopped', 'failed')
                     AND p_data->>'reason' IN ('replied', 'unsubscribed', 'bounced')
                THEN p_data->>'reason' ELSE p_type END
$$;

CREATE OR REPLACE FUNCTION count_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO activity_changes (hour, sequence_id, sender_id, step, type, n)
    SELECT date_trunc('hour', e.at), l.sequence_id, l.sender_id, e.step,
           event_key(e.type, e.data), count(*)
    FROM new_events e LEFT JOIN leads l ON l.id = e.lead_id
    GROUP BY 1, 2, 3, 4, 5;
    RETURN NULL;
END $$;
