-- The sender ledger: every hand-off to SMTP per paced sender, which its limits count against,
-- and the deployment-wide rate (GLOBAL_RATE_PER_SECOND). Hand-offs are booked under row locks
-- on the senders (and on global_pace), so the limits hold across any number of workers.

-- name: lock_senders
-- The paced senders among $1, locked, with what their limits count (db/functions/ledger.sql).
SELECT * FROM lock_paced_senders($1::bigint[], $2::timestamptz)

-- name: record_sends
-- Book hand-offs ($1 sender, $2 slot, $3 first touch, $6 recipient provider) and each
-- sender's gap after its last ($4, $5).
WITH booked AS (
    INSERT INTO sender_sends (sender_id, at, first_touch, provider)
    SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::boolean[], $6::text[])
)
UPDATE senders s SET next_send_at = g.gap_until
FROM unnest($4::bigint[], $5::timestamptz[]) AS g(sender_id, gap_until)
WHERE s.id = g.sender_id AND s.id = ANY($4::bigint[])

-- name: lock_global
-- The deployment's next free hand-off slot, locked (no row yet: NULL).
SELECT next_at FROM global_pace FOR NO KEY UPDATE

-- name: set_global
INSERT INTO global_pace AS g (id, next_at) VALUES (true, $1)
ON CONFLICT (id) DO UPDATE SET next_at = excluded.next_at

-- name: prune
-- Hand-offs older than a day: no limit looks back that far.
DELETE FROM sender_sends WHERE at < $1::timestamptz - interval '1 day'

-- name: release
-- A booked hand-off that did not happen (the account's circuit held the message): it no
-- longer counts against the sender's limits.
DELETE FROM sender_sends
WHERE ctid = (SELECT ctid FROM sender_sends WHERE sender_id = $1 AND at = $2 LIMIT 1)
