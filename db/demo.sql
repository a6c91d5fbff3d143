-- Demo data for `docker compose up`: two senders, a three-step sequence, a handful of leads.
-- Waits are short so the whole sequence arrives in Mailpit within a few minutes.
INSERT INTO senders (email, name, hourly_limit, daily_limit, min_gap_seconds, jitter_seconds)
VALUES ('ana@acme.test', 'Ana from Acme', 100, 500, 2, 1),
       ('ben@acme.test', 'Ben from Acme', 100, 500, 2, 1);

INSERT INTO sequences (name, timezone, send_days, send_from, send_until)
VALUES ('Demo onboarding', 'UTC', NULL, NULL, NULL);

INSERT INTO sequence_senders (sequence_id, sender_id) VALUES (1, 1), (1, 2);

INSERT INTO sequence_steps (sequence_id, position, wait_seconds, subject, body_text, body_html)
VALUES (1, 1, 0, 'Welcome to Acme, {{ first_name }}',
        E'Hello {{ first_name }},\n\nGood to have {{ company }} on board.\nYour plan: {{ plan | default("free") }}.\n\n{{ sender_name }}',
        '<p>Hello <b>{{ first_name }}</b>,</p><p>Good to have {{ company }} on board.</p>'),
       (1, 2, 30, NULL, E'Hi {{ first_name }}, just checking in: did you get started?\n\n{{ sender_name }}', NULL),
       (1, 3, 60, NULL, E'Last note from me, {{ first_name }}. Reply any time.\n\n{{ sender_name }}', NULL);

INSERT INTO leads (sequence_id, email, first_name, last_name, company, timezone, attributes)
VALUES (1, 'bob@example.test', 'Bob', 'Lee', 'Initech', 'America/New_York', '{"plan": "pro"}'),
       (1, 'carol@example.test', 'Carol', 'Diaz', 'Globex', 'Europe/Berlin', '{}'),
       (1, 'dave@example.test', 'Dave', 'Kim', 'Umbrella', NULL, '{"plan": "team"}'),
       (1, 'erin@example.test', 'Erin', 'Moss', 'Hooli', 'Mars/Olympus', '{}'),
       (1, 'nope@example.test', 'Nope', 'Never', 'Nowhere', NULL, '{}');

INSERT INTO suppressions (email, reason) VALUES ('nope@example.test', 'manual');
