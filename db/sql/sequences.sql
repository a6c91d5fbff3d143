-- Queries over sequences and their steps, run by the operator use cases.

-- name: list
SELECT s.id, s.name, s.timezone, s.send_days, s.send_from, s.send_until, s.status,
       s.stop_on_company_reply, s.created_at,
       coalesce((SELECT array_agg(ss.sender_id ORDER BY ss.sender_id) FROM sequence_senders ss
                 WHERE ss.sequence_id = s.id), '{}') AS sender_ids
FROM sequences s WHERE s.id > $1 ORDER BY s.id LIMIT $2

-- name: get
SELECT s.id, s.name, s.timezone, s.send_days, s.send_from, s.send_until, s.status,
       s.stop_on_company_reply, s.created_at,
       coalesce((SELECT array_agg(ss.sender_id ORDER BY ss.sender_id) FROM sequence_senders ss
                 WHERE ss.sequence_id = s.id), '{}') AS sender_ids
FROM sequences s WHERE s.id = $1

-- name: create
INSERT INTO sequences (name, timezone, send_days, send_from, send_until, stop_on_company_reply)
VALUES ($1, $2, $3, $4, $5, $6)
RETURNING id

-- name: update
-- Each field changes only when its flag says so.
UPDATE sequences SET
    name = CASE WHEN $2::boolean THEN $3::text ELSE name END,
    timezone = CASE WHEN $4::boolean THEN $5::text ELSE timezone END,
    send_days = CASE WHEN $6::boolean THEN $7::smallint[] ELSE send_days END,
    send_from = CASE WHEN $8::boolean THEN $9::time ELSE send_from END,
    send_until = CASE WHEN $10::boolean THEN $11::time ELSE send_until END,
    stop_on_company_reply = CASE WHEN $12::boolean THEN $13::boolean ELSE stop_on_company_reply END
WHERE id = $1

-- name: set_senders
WITH gone AS (
    DELETE FROM sequence_senders WHERE sequence_id = $1 AND NOT sender_id = ANY($2::bigint[])
)
INSERT INTO sequence_senders (sequence_id, sender_id)
SELECT $1, unnest($2::bigint[]) ON CONFLICT DO NOTHING

-- name: steps
SELECT id, position, wait_seconds, subject, body_text, body_html
FROM sequence_steps WHERE sequence_id = $1 ORDER BY position

-- name: upsert_step
INSERT INTO sequence_steps (sequence_id, position, wait_seconds, subject, body_text, body_html)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (sequence_id, position) DO UPDATE
SET wait_seconds = excluded.wait_seconds, subject = excluded.subject,
    body_text = excluded.body_text, body_html = excluded.body_html
RETURNING id
