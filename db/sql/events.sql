-- name: insert_events
INSERT INTO events (lead_id, step, type, at, data)
SELECT lead_id, step, type, $5, data::jsonb
FROM unnest($1::bigint[], $2::int[], $3::text[], $4::text[]) AS e(lead_id, step, type, data)

-- name: insert_event
-- A lead id that does not exist (e.g. from a garbled message) is recorded as NULL.
INSERT INTO events (lead_id, step, type, at, data)
SELECT (SELECT id FROM leads WHERE id = $1), $2, $3, $5, $4::text::jsonb
