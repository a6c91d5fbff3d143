-- The sender ledger's lock (db/ledger.py): the paced senders among p_ids, locked in id
-- order (after the leads, as every claim takes them), with their rules and what their
-- limits look back on: the last day's hand-offs (and the provider of each).
--
-- Lock first, then read, as two statements: under READ COMMITTED each statement of a
-- function takes its own snapshot, so the read sees every hand-off the previous holder of
-- a lock committed. One statement that joined the hand-offs and locked the sender would
-- keep the hand-offs it read before it waited, and two workers could both book the last
-- slot of a cap.
CREATE OR REPLACE FUNCTION lock_paced_senders(p_ids bigint[], p_now timestamptz)
RETURNS TABLE (
    id bigint, hourly_limit integer, daily_limit integer, daily_new_limit integer,
    min_gap_seconds integer, jitter_seconds integer, warmup_start integer,
    warmup_increment integer, warmup_started_at timestamptz, next_send_at timestamptz,
    provider_caps jsonb, sends timestamptz[], first_touches timestamptz[], providers text[]
)
LANGUAGE plpgsql ROWS 20 AS $$
#variable_conflict use_column
BEGIN
    PERFORM 1 FROM senders s WHERE s.id = ANY (p_ids) AND s.paced ORDER BY s.id
    FOR NO KEY UPDATE OF s;
    RETURN QUERY
    SELECT s.id, s.hourly_limit, s.daily_limit, s.daily_new_limit, s.min_gap_seconds,
           s.jitter_seconds, s.warmup_start, s.warmup_increment, s.warmup_started_at,
           s.next_send_at, s.provider_caps,
           coalesce(x.sends, '{}'), coalesce(x.first_touches, '{}'),
           CASE WHEN s.provider_caps <> '{}' THEN coalesce(x.providers, '{}') END
    FROM senders s
    LEFT JOIN LATERAL (
        SELECT array_agg(ss.at ORDER BY ss.at, ss.provider) AS sends,
               array_agg(ss.at ORDER BY ss.at) FILTER (WHERE ss.first_touch) AS first_touches,
               array_agg(ss.provider ORDER BY ss.at, ss.provider) AS providers
        FROM sender_sends ss
        WHERE ss.sender_id = s.id AND ss.at > p_now - interval '1 day'
    ) x ON true
    WHERE s.id = ANY (p_ids) AND s.paced
    ORDER BY s.id;
END
$$;
