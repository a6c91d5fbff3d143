-- functions: partitions.sql
-- Events by month (native range partitioning on `at`), so whole months can be let go
-- (EVENT_RETENTION_DAYS) instead of deleting rows one by one from a table that grows by
-- three or more rows per email. The primary key becomes (id, at): a partitioned table's
-- unique keys hold the partition key; ids still come from the same sequence.
--
-- An existing table's rows stay where they are: the table becomes the partition
-- `events_before` of every instant up to the first month the new partitions cover, and is
-- dropped whole once its last month passes the retention. Making it a partition needs a
-- unique index on (id, at), the type check validated and a check on `at` that proves the
-- range; built here they hold the table locked for as long as they take (measured in the
-- README: seconds per ten million rows). `migrate` builds them first without blocking
-- writers when the table is large (db/partitions.py `prepare_events`), and this file then
-- only uses them.

CREATE TABLE event_partitions (
    name         text        PRIMARY KEY,
    starts       timestamptz NOT NULL,
    ends         timestamptz NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    dropped_at   timestamptz,
    rows_dropped bigint                    -- the planner's count at the drop
);

DO $$
DECLARE
    kept boolean;
    bound timestamptz;
    type_check text;
BEGIN
    LOCK TABLE events IN ACCESS EXCLUSIVE MODE;
    kept := EXISTS (SELECT 1 FROM events);
    SELECT regexp_replace(pg_get_constraintdef(oid), ' NOT VALID$', '') INTO STRICT type_check
    FROM pg_constraint WHERE conrelid = 'events'::regclass AND conname = 'events_type_registered';

    DROP TRIGGER events_counted ON events;
    DROP TRIGGER events_to_webhooks ON events;
    ALTER TABLE events RENAME TO events_before;
    ALTER TABLE events_before RENAME CONSTRAINT events_pkey TO events_before_id_pkey;
    ALTER TABLE events_before RENAME CONSTRAINT events_lead_id_fkey TO events_before_lead_id_fkey;
    ALTER INDEX events_lead RENAME TO events_before_lead_id_id_idx;

    CREATE TABLE events (
        id      bigint      NOT NULL DEFAULT nextval('events_id_seq'),
        lead_id bigint      REFERENCES leads (id) ON DELETE CASCADE,
        step    integer,
        type    text        NOT NULL,
        at      timestamptz NOT NULL DEFAULT now(),
        data    jsonb       NOT NULL DEFAULT '{}',
        PRIMARY KEY (id, at)
    ) PARTITION BY RANGE (at);
    EXECUTE 'ALTER TABLE events ADD CONSTRAINT events_type_registered ' || type_check;
    CREATE INDEX events_lead ON events (lead_id, id);
    ALTER TABLE events_before ALTER COLUMN id DROP DEFAULT;
    ALTER SEQUENCE events_id_seq OWNED BY events.id;
    CREATE TABLE events_default PARTITION OF events DEFAULT;

    IF kept THEN
        SELECT (regexp_match(pg_get_expr(c.conbin, c.conrelid), '''([^'']+)'''))[1]::timestamptz
        INTO bound FROM pg_constraint c
        WHERE c.conrelid = 'events_before'::regclass AND c.conname = 'events_before_bound'
          AND c.convalidated;
        IF bound IS NULL THEN
            bound := event_month(now(), 1);
            ALTER TABLE events_before DROP CONSTRAINT IF EXISTS events_before_bound;
            EXECUTE format('ALTER TABLE events_before ADD CONSTRAINT events_before_bound '
                           'CHECK (at < %L)', bound);
        END IF;
        IF NOT EXISTS (SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                       WHERE c.relname = 'events_before_pkey' AND i.indisvalid) THEN
            DROP INDEX IF EXISTS events_before_pkey;
            CREATE UNIQUE INDEX events_before_pkey ON events_before (id, at);
        END IF;
        ALTER TABLE events_before VALIDATE CONSTRAINT events_type_registered;
        ALTER TABLE events_before DROP CONSTRAINT events_before_id_pkey;
        ALTER TABLE events_before ADD CONSTRAINT events_before_pkey
            PRIMARY KEY USING INDEX events_before_pkey;
        EXECUTE format('ALTER TABLE events ATTACH PARTITION events_before '
                       'FOR VALUES FROM (MINVALUE) TO (%L)', bound);
        ALTER TABLE events_before DROP CONSTRAINT events_before_bound;
        INSERT INTO event_partitions (name, starts, ends) VALUES ('events_before', '-infinity', bound);
    ELSE
        DROP TABLE events_before;
    END IF;

    CREATE TRIGGER events_counted AFTER INSERT ON events
        REFERENCING NEW TABLE AS new_events FOR EACH STATEMENT EXECUTE FUNCTION count_events();
    CREATE TRIGGER events_to_webhooks AFTER INSERT ON events
        REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION webhook_enqueue();
    -- This month and the next two (what `events_before` does not cover); nothing is old.
    PERFORM maintain_event_partitions(now(), interval '1000 years');
END $$;
