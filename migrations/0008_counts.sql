-- Counts for status views that must not count millions of rows per call (`ops status`,
-- GET /api/v1/status, the metrics, the console).
--
-- Each statement that writes leads or events appends its net change to a table of changes
-- (statement-level triggers over transition tables: one small insert per statement, never a
-- hot counter row that every writer would queue on). `fold_counts()` (db/functions/counts.sql)
-- merges the changes into one row per key now and then; a reader sums what is there.
--
-- The events trigger below calls count_events(), which lives in that file:
-- functions: counts.sql

-- Leads per sequence and status.
CREATE TABLE lead_count_changes (
    sequence_id bigint NOT NULL,
    status      text   NOT NULL,
    n           bigint NOT NULL
);

-- What happened per hour, sequence, sender, step and event type (sends, replies, bounces,
-- unsubscribes, failures, ...): the last 24 hours of a sequence, a sender's hourly chart, a
-- sequence's funnel.
CREATE TABLE activity_changes (
    hour        timestamptz NOT NULL,
    sequence_id bigint,
    sender_id   bigint,
    step        integer,
    type        text        NOT NULL,
    n           bigint      NOT NULL
);
CREATE INDEX activity_changes_hour ON activity_changes (hour);

CREATE FUNCTION count_inserted_leads() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO lead_count_changes (sequence_id, status, n)
    SELECT sequence_id, status, count(*) FROM new_leads GROUP BY 1, 2;
    RETURN NULL;
END $$;

CREATE FUNCTION count_updated_leads() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO lead_count_changes (sequence_id, status, n)
    SELECT sequence_id, status, sum(n) FROM (
        SELECT sequence_id, status, -1 AS n FROM old_leads
        UNION ALL
        SELECT sequence_id, status, 1 FROM new_leads
    ) c
    GROUP BY 1, 2 HAVING sum(n) <> 0;
    RETURN NULL;
END $$;

CREATE FUNCTION count_deleted_leads() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO lead_count_changes (sequence_id, status, n)
    SELECT sequence_id, status, -count(*) FROM old_leads GROUP BY 1, 2;
    RETURN NULL;
END $$;

-- The triggers and the first counts in one transaction, with writers held off (CREATE
-- TRIGGER locks the table against writes): no change is counted twice or missed.
LOCK TABLE leads, events IN SHARE ROW EXCLUSIVE MODE;

CREATE TRIGGER leads_counted_insert AFTER INSERT ON leads
    REFERENCING NEW TABLE AS new_leads FOR EACH STATEMENT EXECUTE FUNCTION count_inserted_leads();
CREATE TRIGGER leads_counted_update AFTER UPDATE ON leads
    REFERENCING OLD TABLE AS old_leads NEW TABLE AS new_leads
    FOR EACH STATEMENT EXECUTE FUNCTION count_updated_leads();
CREATE TRIGGER leads_counted_delete AFTER DELETE ON leads
    REFERENCING OLD TABLE AS old_leads FOR EACH STATEMENT EXECUTE FUNCTION count_deleted_leads();
CREATE TRIGGER events_counted AFTER INSERT ON events
    REFERENCING NEW TABLE AS new_events FOR EACH STATEMENT EXECUTE FUNCTION count_events();

INSERT INTO lead_count_changes (sequence_id, status, n)
SELECT sequence_id, status, count(*) FROM leads GROUP BY 1, 2;

-- The activity of the last 48 hours (the charts' span); older events are not counted.
INSERT INTO activity_changes (hour, sequence_id, sender_id, step, type, n)
SELECT date_trunc('hour', e.at), l.sequence_id, l.sender_id, e.step, e.type, count(*)
FROM events e LEFT JOIN leads l ON l.id = e.lead_id
WHERE e.at >= date_trunc('hour', now()) - interval '48 hours'
GROUP BY 1, 2, 3, 4, 5;

-- Listing leads by status (the API, the console) walks this index in id order, so a status
-- few leads have is found at once among millions.
CREATE INDEX leads_status ON leads (status, id);

-- A sender's live leads by status and due time: its queued ones (in flight), and its
-- waiting ones in due order, which the scheduler's pacing forecast books (db/sql/leads.sql
-- `pacing_state`). It replaces the index of queued leads by sender.
CREATE INDEX leads_sender_live ON leads (sender_id, status, next_run_at)
    WHERE status IN ('active', 'queued');
DROP INDEX leads_queued_sender;
