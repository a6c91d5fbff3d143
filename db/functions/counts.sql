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
