-- Console sessions (ops/sessions.py).

-- name: start
INSERT INTO console_sessions (id, email, created_at, seen_at, expires_at)
VALUES ($1, $2, $3, $3, $4)

-- name: live
-- The session's person, if it is live at $2.
SELECT email, seen_at FROM console_sessions
WHERE id = $1 AND ended_at IS NULL AND expires_at > $2

-- name: seen
UPDATE console_sessions SET seen_at = $2 WHERE id = $1

-- name: end
UPDATE console_sessions SET ended_at = $2, ended_why = $3
WHERE id = $1 AND ended_at IS NULL
RETURNING email

-- name: end_by_key
-- A session ended from the list (its key is the first 16 hex characters of its id).
UPDATE console_sessions SET ended_at = $2, ended_why = $3
WHERE substr(encode(id, 'hex'), 1, 16) = $1 AND ended_at IS NULL
RETURNING email

-- name: listing
SELECT substr(encode(id, 'hex'), 1, 16) AS key, email, created_at, seen_at, expires_at
FROM console_sessions
WHERE ended_at IS NULL AND expires_at > $1
ORDER BY seen_at DESC LIMIT 500

-- name: prune
DELETE FROM console_sessions WHERE expires_at < $1::timestamptz - interval '30 days'
