-- Each daemon process's heartbeat row (runtime/health.py), listed by `ops status`.

-- name: report
-- This replica's progress; rows of replicas gone quiet for a day are dropped on the way.
WITH gone AS (
    DELETE FROM daemon_replicas WHERE seen_at < $6::timestamptz - interval '1 day'
)
INSERT INTO daemon_replicas (service, host, pid, version, started_at, last_progress, seen_at)
VALUES ($1, $2, $3, $4, $5, $7, $6)
ON CONFLICT (service, host, pid) DO UPDATE
SET version = excluded.version, started_at = excluded.started_at,
    last_progress = excluded.last_progress, seen_at = excluded.seen_at

-- name: leave
DELETE FROM daemon_replicas WHERE service = $1 AND host = $2 AND pid = $3
