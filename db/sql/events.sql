-- name: insert_events
INSERT INTO events (lead_id, step, type, at, data)
SELECT lead_id, step, type, $5, data::jsonb
FROM unnest($1::bigint[], $2::int[], $3::text[], $4::text[]) AS e(lead_id, step, type, data)

-- name: insert_event
INSERT INTO events (lead_id, step, type, at, data) VALUES ($1, $2, $3, $4, $5::jsonb)
