-- One-off emails (ops/emails.py).

-- name: one_off_sequence
SELECT id FROM sequences WHERE kind = 'one_off'

-- name: make_one_off_sequence
-- Made once: a caller that loses the race gets nothing (it waited for the winner's commit;
-- its next statement sees the row).
INSERT INTO sequences (name, kind) VALUES ('One-off emails', 'one_off')
ON CONFLICT (kind) WHERE kind = 'one_off' DO NOTHING
RETURNING id

-- name: sender
SELECT id FROM senders WHERE lower(email) = lower($1)

-- name: schedule
-- A one-off lead of sender $1 (by address), due at $4, in one statement: nothing when the
-- key was used before, or when the sender or the one-off sequence does not exist.
INSERT INTO leads (sequence_id, sender_id, email, attributes, next_run_at, one_off_key,
                   reply_references)
SELECT q.id, s.id, $2, $3, $4, $5, $6
FROM senders s, sequences q
WHERE lower(s.email) = lower($1) AND q.kind = 'one_off'
ON CONFLICT (one_off_key) WHERE one_off_key IS NOT NULL DO NOTHING
RETURNING id, status, next_run_at

-- name: by_key
SELECT id, status, next_run_at FROM leads WHERE one_off_key = $1
