-- Events by month (migration 0022): the months ahead are created, the months past the
-- retention dropped whole, by `maintain_event_partitions`, which the pump calls next to
-- its outbox prune (db/partitions.py). `event_partitions` lists every partition made and
-- every one dropped, so status and a lead's timeline can say what is no longer there.

-- The first instant (UTC) of the month p_months after the one holding p_at.
CREATE OR REPLACE FUNCTION event_month(p_at timestamptz, p_months integer DEFAULT 0)
RETURNS timestamptz LANGUAGE sql IMMUTABLE AS $$
    SELECT (date_trunc('month', p_at AT TIME ZONE 'UTC') + make_interval(months => p_months))
           AT TIME ZONE 'UTC'
$$;

-- Create the partitions of the month of p_now and of the p_ahead months after it (rows
-- that fell into the default partition meanwhile move into theirs), then drop partitions
-- whose every row is older than p_keep (and such rows of the default partition). Writers
-- never wait on it for long: creating a month takes no lock that blocks inserts, and no
-- lock is waited for more than two seconds (a drop that cannot get its lock is left for
-- the next call; a month that cannot be attached fails the call, which is retried). One
-- caller at a time (replicas of the pump); a second one returns at once. Returns what it did.
CREATE OR REPLACE FUNCTION maintain_event_partitions(
    p_now timestamptz, p_keep interval, p_ahead integer DEFAULT 2
)
RETURNS TABLE (action text, partition text, starts timestamptz, ends timestamptz, n bigint)
LANGUAGE plpgsql SET lock_timeout = '2s' AS $$
DECLARE
    lo timestamptz;
    hi timestamptz;
    p record;
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtext('maintain_event_partitions')) THEN
        RETURN;
    END IF;
    FOR i IN 0..p_ahead LOOP
        lo := event_month(p_now, i);
        hi := event_month(p_now, i + 1);
        CONTINUE WHEN EXISTS (
            SELECT 1 FROM event_partitions e
            WHERE e.dropped_at IS NULL AND e.starts < hi AND e.ends > lo);
        partition := 'events_' || to_char(lo AT TIME ZONE 'UTC', 'YYYY_MM');
        -- Made beside the table, filled with its month's rows from the default partition,
        -- then attached: the default partition is checked, not locked against inserts for
        -- the time the rows take to move.
        EXECUTE format('CREATE TABLE %I (LIKE events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                       partition);
        EXECUTE format('WITH moved AS (DELETE FROM events_default WHERE at >= $1 AND at < $2 '
                       'RETURNING *) INSERT INTO %I SELECT * FROM moved', partition)
            USING lo, hi;
        GET DIAGNOSTICS n = ROW_COUNT;
        EXECUTE format('ALTER TABLE events ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                       partition, lo, hi);
        INSERT INTO event_partitions (name, starts, ends, created_at)
        VALUES (partition, lo, hi, p_now);
        action := 'created'; starts := lo; ends := hi;
        RETURN NEXT;
    END LOOP;

    FOR p IN
        SELECT e.name, e.starts, e.ends FROM event_partitions e
        WHERE e.dropped_at IS NULL AND e.ends <= p_now - p_keep ORDER BY e.ends
    LOOP
        BEGIN
            -- Dropping a partition locks the whole table for an instant. Its rows are
            -- counted when they are few, or else taken from the planner's statistics (a
            -- month can hold hundreds of millions).
            SELECT c.reltuples::bigint INTO n FROM pg_class c WHERE c.oid = p.name::regclass;
            IF n < 1000000 THEN
                EXECUTE format('SELECT count(*) FROM %I', p.name) INTO n;
            END IF;
            EXECUTE format('DROP TABLE %I', p.name);
            UPDATE event_partitions e SET dropped_at = p_now, rows_dropped = n
            WHERE e.name = p.name;
            action := 'dropped'; partition := p.name; starts := p.starts; ends := p.ends;
            RETURN NEXT;
        EXCEPTION WHEN lock_not_available THEN
            action := 'drop_postponed'; partition := p.name; starts := p.starts;
            ends := p.ends; n := NULL;
            RETURN NEXT;
        END;
    END LOOP;

    DELETE FROM events_default WHERE at < p_now - p_keep;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        action := 'deleted_from_default'; partition := 'events_default';
        starts := NULL; ends := p_now - p_keep;
        RETURN NEXT;
    END IF;
END $$;
