-- Queries over the outbox, run by the pump (and the worker, which reads its jobs here).

-- name: claim_unpublished
SELECT id, lead_id, step, attempt
FROM outbox
WHERE published_at IS NULL AND available_at <= $2
ORDER BY id
LIMIT $1
FOR UPDATE SKIP LOCKED

-- name: mark_published
UPDATE outbox SET published_at = $2 WHERE id = ANY($1::bigint[])

-- name: prune_published
DELETE FROM outbox
WHERE id IN (SELECT id FROM outbox WHERE published_at < $1 ORDER BY published_at LIMIT $2)

-- name: backlog
-- Unpublished rows, counted up to $2, and the age of the oldest.
SELECT (SELECT count(*) FROM (SELECT 1 FROM outbox WHERE published_at IS NULL LIMIT $2) x)
           AS unpublished,
       extract(epoch FROM $1::timestamptz - (
           SELECT created_at FROM outbox WHERE published_at IS NULL ORDER BY id LIMIT 1))
           AS oldest_s

-- name: jobs
-- The worker's jobs by outbox id: what the scheduler committed, whatever the broker says.
SELECT id, lead_id, step, attempt, payload::text AS payload
FROM outbox WHERE id = ANY($1::bigint[])
