-- Queries of the lead import (ops/imports.py).

-- name: sequence
SELECT id, name FROM sequences WHERE id = $1 OR name = $2 ORDER BY id LIMIT 1

-- name: sender
SELECT id, email, name FROM senders WHERE lower(email) = lower($1)

-- name: steps
SELECT position, subject, body_text, body_html
FROM sequence_steps WHERE sequence_id = $1 ORDER BY position

-- name: insert_skip
-- A batch of checked rows; one the sequence has already (any case) is skipped, whether it
-- was there before or came earlier in the file. Inserting a lead enrols it.
INSERT INTO leads (sequence_id, sender_id, email, first_name, last_name, company, timezone,
                   attributes)
SELECT $1, $2, x.email, x.first_name, x.last_name, x.company, x.timezone, x.attributes::jsonb
FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[])
     AS x(email, first_name, last_name, company, timezone, attributes)
ON CONFLICT (sequence_id, lower(email)) WHERE duplicate_of IS NULL AND one_off_key IS NULL DO NOTHING
RETURNING true AS inserted

-- name: insert_update
-- The same, but a row the sequence has already updates that lead's data (its progress
-- through the sequence is left as it is).
INSERT INTO leads AS l (sequence_id, sender_id, email, first_name, last_name, company,
                        timezone, attributes)
SELECT $1, $2, x.email, x.first_name, x.last_name, x.company, x.timezone, x.attributes::jsonb
FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[])
     AS x(email, first_name, last_name, company, timezone, attributes)
ON CONFLICT (sequence_id, lower(email)) WHERE duplicate_of IS NULL AND one_off_key IS NULL DO UPDATE
SET first_name = excluded.first_name, last_name = excluded.last_name,
    company = excluded.company, timezone = excluded.timezone,
    attributes = excluded.attributes, sender_id = coalesce(excluded.sender_id, l.sender_id),
    updated_at = now()
RETURNING (xmax = 0) AS inserted

-- name: forget_rejects
-- Rejected rows older than a day: their page is long gone.
DELETE FROM import_rejects WHERE created_at < now() - interval '1 day'

-- name: keep_rejects
INSERT INTO import_rejects (token, part, owner, body) VALUES ($1, $2, $3, $4)

-- name: rejects
SELECT body FROM import_rejects WHERE token = $1 AND owner = $2 AND part >= $3
ORDER BY part LIMIT 8
