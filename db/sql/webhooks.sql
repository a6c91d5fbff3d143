-- Webhook endpoints and the webhook outbox (migration 0016, db/functions/webhooks.sql).

-- name: add
INSERT INTO webhook_endpoints (url, secret, event_types, description, created_at)
VALUES ($1, $2, $3::text[], $4, $5) RETURNING id

-- name: list
SELECT e.id, e.url, e.event_types, e.description, e.created_at, e.delivered_total,
       e.last_delivered_at,
       (SELECT count(*) FROM webhook_deliveries d
        WHERE d.endpoint_id = e.id AND d.status = 'pending') AS pending,
       (SELECT count(*) FROM webhook_deliveries d
        WHERE d.endpoint_id = e.id AND d.status = 'failed') AS failed
FROM webhook_endpoints e
WHERE e.id > $1
ORDER BY e.id LIMIT $2

-- name: remove
DELETE FROM webhook_endpoints WHERE id = $1 RETURNING id

-- name: enqueue_test
INSERT INTO webhook_deliveries (endpoint_id, event_type, payload, created_at, next_attempt_at)
SELECT id, 'webhook.test',
       jsonb_build_object('type', 'webhook.test', 'timestamp', $2::timestamptz,
                          'data', jsonb_build_object('endpoint_id', id)),
       $2::timestamptz, $2::timestamptz
FROM webhook_endpoints WHERE id = $1
RETURNING id

-- name: claim
-- Due deliveries, at most $2 per endpoint less what this deliverer has in flight there
-- ($3 endpoints, $4 counts), each leased until $5: the try counts from now on.
WITH picked AS (
    SELECT x.id
    FROM webhook_endpoints e
    CROSS JOIN LATERAL (
        SELECT d.id FROM webhook_deliveries d
        WHERE d.endpoint_id = e.id AND d.status = 'pending' AND d.next_attempt_at <= $1
        ORDER BY d.next_attempt_at
        LIMIT greatest($2 - coalesce(
            (SELECT f.n FROM unnest($3::bigint[], $4::integer[]) AS f(endpoint_id, n)
             WHERE f.endpoint_id = e.id), 0), 0)
        FOR UPDATE OF d SKIP LOCKED
    ) x
)
UPDATE webhook_deliveries d
SET attempts = d.attempts + 1, next_attempt_at = $5
FROM picked, webhook_endpoints e
WHERE d.id = picked.id AND e.id = d.endpoint_id
RETURNING d.id, d.endpoint_id, e.url, e.secret, d.event_type, d.payload::text AS body,
          d.attempts, d.created_at

-- name: delivered
-- Tries that were answered 2xx: the rows go (a row whose lease another deliverer took
-- meanwhile, its attempts moved on, is left to that one); each endpoint counts them.
WITH gone AS (
    DELETE FROM webhook_deliveries d
    USING unnest($1::bigint[], $2::integer[]) AS r(id, attempts)
    WHERE d.id = r.id AND d.attempts = r.attempts AND d.status = 'pending'
    RETURNING d.endpoint_id
)
UPDATE webhook_endpoints e SET delivered_total = e.delivered_total + g.n,
                               last_delivered_at = $3::timestamptz
FROM (SELECT endpoint_id, count(*) AS n FROM gone GROUP BY 1) g
WHERE e.id = g.endpoint_id

-- name: finish
-- Tries that ended otherwise: failed for good, or due again at their time.
UPDATE webhook_deliveries d SET
    status = r.status,
    next_attempt_at = coalesce(r.next_at, d.next_attempt_at),
    finished_at = CASE WHEN r.status = 'failed' THEN $7::timestamptz END,
    last_code = r.code,
    last_error = r.error
FROM unnest($1::bigint[], $2::integer[], $3::text[], $4::timestamptz[], $5::integer[],
            $6::text[]) AS r(id, attempts, status, next_at, code, error)
WHERE d.id = r.id AND d.attempts = r.attempts AND d.status = 'pending'

-- name: deliveries
-- An endpoint's deliveries of one status (newest first), or all.
SELECT id, endpoint_id, event_id, event_type, status, attempts, created_at, finished_at,
       next_attempt_at, last_code, last_error
FROM webhook_deliveries
WHERE endpoint_id = $1 AND ($2::text IS NULL OR status = $2) AND id < $3
ORDER BY id DESC LIMIT $4

-- name: replay
-- Failed deliveries tried again from now, with the same webhook-id and a new retry period.
UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = $2, created_at = $2,
    attempts = 0, finished_at = NULL
WHERE status = 'failed' AND id = ANY($1::bigint[])
RETURNING id

-- name: replay_endpoint
UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = $2, created_at = $2,
    attempts = 0, finished_at = NULL
WHERE status = 'failed' AND endpoint_id = $1
RETURNING id

-- name: backlog
SELECT count(*) FILTER (WHERE status = 'pending') AS pending,
       count(*) FILTER (WHERE status = 'failed') AS failed,
       coalesce(extract(epoch FROM $1::timestamptz - min(created_at)
                        FILTER (WHERE status = 'pending')), 0)::float8 AS oldest_s
FROM webhook_deliveries
