-- What `ops status` (and GET /api/v1/status, the metrics, the console) shows. Every query
-- here reads maintained counts (migration 0008) or stops after a bounded number of rows:
-- none counts the leads table.

-- name: lead_counts
SELECT sequence_id, status, sum(n)::bigint AS n
FROM lead_count_changes GROUP BY 1, 2 HAVING sum(n) <> 0

-- name: sequences
SELECT id, name, status, kind FROM sequences ORDER BY id

-- name: activity
-- Event counts by sequence, sender and type since $1 (the hour buckets starting at or after
-- it), and the part of them since $2.
SELECT sequence_id, sender_id, type, sum(n)::bigint AS n,
       coalesce(sum(n) FILTER (WHERE hour >= $2::timestamptz), 0)::bigint AS recent
FROM activity_changes WHERE hour >= $1::timestamptz
GROUP BY 1, 2, 3

-- name: hourly
-- Event counts of the given types per hour bucket since $1.
SELECT hour, type, sum(n)::bigint AS n
FROM activity_changes WHERE hour >= $1::timestamptz AND type = ANY($2::text[])
GROUP BY 1, 2 ORDER BY 1, 2

-- name: senders
-- Every sender with its rules; a paced one with its hand-offs of the last day (what its
-- limits count).
SELECT s.id, s.email, s.name, s.hourly_limit, s.daily_limit, s.daily_new_limit,
       s.min_gap_seconds, s.jitter_seconds, s.next_send_at, s.paced,
       s.warmup_start, s.warmup_increment, s.warmup_started_at,
       s.status, s.paused_reason, s.paused_at, s.guard_probe_at,
       coalesce((SELECT jsonb_object_agg(b.provider, b.until) FROM provider_backoffs b
                 WHERE b.sender_id = s.id AND b.until > $1::timestamptz), '{}') AS backoffs,
       s.provider_caps,
       CASE WHEN s.provider_caps <> '{}' THEN coalesce(
           (SELECT jsonb_object_agg(y.provider, y.n) FROM (
                SELECT provider, count(*) AS n FROM sender_sends
                WHERE sender_id = s.id AND at > $1::timestamptz - interval '1 day'
                  AND provider IS NOT NULL GROUP BY 1) y), '{}') END AS provider_day,
       coalesce(x.sends, '{}') AS sends, coalesce(x.first_touches, '{}') AS first_touches,
       coalesce(s.smtp_url, 'relay') AS account, coalesce(c.state, 'closed') AS circuit,
       coalesce(c.reason, '') AS circuit_reason, c.retry_at AS circuit_retry_at
FROM senders s
LEFT JOIN smtp_circuits c ON c.account = coalesce(s.smtp_url, 'relay')
LEFT JOIN LATERAL (
    SELECT array_agg(at ORDER BY at) AS sends,
           array_agg(at ORDER BY at) FILTER (WHERE first_touch) AS first_touches
    FROM sender_sends WHERE sender_id = s.id AND at > $1::timestamptz - interval '1 day'
) x ON s.paced
ORDER BY s.id

-- name: replicas
SELECT service, host, pid, version, started_at, last_progress, seen_at
FROM daemon_replicas WHERE seen_at >= $1::timestamptz ORDER BY service, host, pid

-- name: fold
SELECT fold_counts($1::timestamptz)

-- name: forecast
-- Leads of active sequences due before $2, per hour from $1 (a lead already due counts in
-- the first hour) and sender, from the first $3 in due order (the console's forecast).
SELECT date_trunc('hour', greatest(l.next_run_at, $1::timestamptz)) AS hour, l.sender_id,
       count(*) AS n
FROM (
    SELECT l.next_run_at, l.sender_id FROM leads l JOIN sequences s ON s.id = l.sequence_id
    WHERE l.status = 'active' AND l.next_run_at < $2::timestamptz AND s.status = 'active'
      AND NOT coalesce(l.sender_id = ANY ((SELECT paused_senders())::bigint[]), false)
    ORDER BY l.next_run_at LIMIT $3
) l
GROUP BY 1, 2 ORDER BY 1

-- name: paced_rules
-- Paced senders' rules and their hand-offs of the last day (the forecast's caps).
SELECT s.id, s.hourly_limit, s.daily_limit, s.daily_new_limit, s.min_gap_seconds,
       s.jitter_seconds, s.warmup_start, s.warmup_increment, s.warmup_started_at,
       (SELECT count(*) FROM sender_sends x
        WHERE x.sender_id = s.id AND x.at > $1::timestamptz - interval '1 day') AS sent_day
FROM senders s WHERE s.paced

-- name: funnel
-- A sequence's events by step and type, since it began.
SELECT step, type, sum(n)::bigint AS n
FROM activity_changes WHERE sequence_id = $1 GROUP BY 1, 2
