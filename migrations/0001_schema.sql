-- Core schema: senders, sequences, steps, leads, outbox, deliveries, events, suppressions.
-- Column names of the public SQL interface (README, "Loading data") are a contract.

CREATE TABLE senders (
    id               bigserial PRIMARY KEY,
    email            text        NOT NULL UNIQUE,
    name             text,
    hourly_limit     integer     CHECK (hourly_limit > 0),      -- NULL = unlimited
    daily_limit      integer     CHECK (daily_limit > 0),       -- NULL = unlimited
    daily_new_limit  integer     CHECK (daily_new_limit > 0),   -- first touches a day; NULL = unlimited
    min_gap_seconds  integer     NOT NULL DEFAULT 0 CHECK (min_gap_seconds >= 0),
    jitter_seconds   integer     NOT NULL DEFAULT 0 CHECK (jitter_seconds >= 0),
    -- earliest moment the next send may be handed to SMTP (min gap + jitter of the last one)
    next_send_at     timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE sequences (
    id                    bigserial PRIMARY KEY,
    name                  text        NOT NULL,
    timezone              text        NOT NULL DEFAULT 'UTC',
    send_days             smallint[]  CHECK (send_days IS NULL OR (cardinality(send_days) > 0
                                             AND send_days <@ '{1,2,3,4,5,6,7}'::smallint[])),
    send_from             time,
    send_until            time,
    status                text        NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'paused')),
    stop_on_company_reply boolean     NOT NULL DEFAULT false,
    created_at            timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE sequence_senders (
    sequence_id bigint NOT NULL REFERENCES sequences (id) ON DELETE CASCADE,
    sender_id   bigint NOT NULL REFERENCES senders (id) ON DELETE CASCADE,
    PRIMARY KEY (sequence_id, sender_id)
);

CREATE TABLE sequence_steps (
    id           bigserial PRIMARY KEY,
    sequence_id  bigint  NOT NULL REFERENCES sequences (id) ON DELETE CASCADE,
    position     integer NOT NULL CHECK (position >= 1),
    wait_seconds integer NOT NULL DEFAULT 0 CHECK (wait_seconds >= 0),
    subject      text,   -- NULL: reply in the lead's thread
    body_text    text    NOT NULL,
    body_html    text,
    UNIQUE (sequence_id, position)
);

CREATE TABLE leads (
    id           bigserial PRIMARY KEY,
    sequence_id  bigint      NOT NULL REFERENCES sequences (id),
    sender_id    bigint      REFERENCES senders (id),
    email        text        NOT NULL,
    first_name   text,
    last_name    text,
    company      text,
    timezone     text,                                  -- NULL = the sequence's timezone
    attributes   jsonb       NOT NULL DEFAULT '{}',
    status       text        NOT NULL DEFAULT 'active'
                 CHECK (status IN ('active', 'queued', 'paused', 'completed', 'stopped', 'failed')),
    current_step integer     NOT NULL DEFAULT 1,        -- position of the next step (last one once terminal)
    attempt      integer     NOT NULL DEFAULT 0,        -- outbox rows written for current_step
    next_run_at  timestamptz,                           -- set on insert from the first step's wait
    enrolled_at  timestamptz NOT NULL DEFAULT now(),
    queued_at    timestamptz,
    last_sent_at timestamptz,
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- The scheduler's scan touches due leads only: its cost follows what is due, not table size.
CREATE INDEX leads_due ON leads (next_run_at) WHERE status = 'active';
CREATE INDEX leads_queued ON leads (queued_at) WHERE status = 'queued';
CREATE INDEX leads_email ON leads (lower(email));
CREATE INDEX leads_sequence ON leads (sequence_id);

CREATE TABLE outbox (
    id           bigserial PRIMARY KEY,
    lead_id      bigint      NOT NULL REFERENCES leads (id) ON DELETE CASCADE,
    step         integer     NOT NULL,
    attempt      integer     NOT NULL,
    payload      jsonb       NOT NULL,
    available_at timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (lead_id, step, attempt)
);

-- The pump's scan touches unpublished rows only; retention walks published rows by age.
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
CREATE INDEX outbox_published ON outbox (published_at) WHERE published_at IS NOT NULL;

CREATE TABLE deliveries (
    id           bigserial PRIMARY KEY,
    lead_id      bigint      NOT NULL REFERENCES leads (id) ON DELETE CASCADE,
    step         integer     NOT NULL,
    sender_id    bigint      REFERENCES senders (id),
    message_id   text        NOT NULL,
    subject      text,
    status       text        NOT NULL
                 CHECK (status IN ('sending', 'sent', 'deferred', 'failed', 'unknown')),
    attempts     integer     NOT NULL DEFAULT 0,
    outbox_id    bigint,
    claim_token  uuid,
    claimed_at   timestamptz,
    lease_until  timestamptz,
    sent_at      timestamptz,
    smtp_code    integer,
    error        text,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (lead_id, step)
);

CREATE INDEX deliveries_sending ON deliveries (lease_until) WHERE status = 'sending';

-- Every hand-off to SMTP, per sender: the ledger pacing counts against (rolling hour and day).
CREATE TABLE sender_sends (
    sender_id  bigint      NOT NULL REFERENCES senders (id) ON DELETE CASCADE,
    at         timestamptz NOT NULL,
    first_touch boolean    NOT NULL DEFAULT false
);
CREATE INDEX sender_sends_by_sender ON sender_sends (sender_id, at);

CREATE TABLE events (
    id      bigserial PRIMARY KEY,
    lead_id bigint      REFERENCES leads (id) ON DELETE CASCADE,
    step    integer,
    type    text        NOT NULL,
    at      timestamptz NOT NULL DEFAULT now(),
    data    jsonb       NOT NULL DEFAULT '{}'
);
CREATE INDEX events_lead ON events (lead_id, id);

CREATE TABLE suppressions (
    email      text        PRIMARY KEY,   -- lower-case address, or '*@domain' for a whole domain
    reason     text        NOT NULL DEFAULT 'manual',
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Suppression entries are matched lower-case; store them that way whatever the INSERT said.
CREATE FUNCTION suppressions_normalize() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.email := lower(btrim(NEW.email));
    RETURN NEW;
END $$;
CREATE TRIGGER suppressions_normalize BEFORE INSERT OR UPDATE ON suppressions
    FOR EACH ROW EXECUTE FUNCTION suppressions_normalize();

CREATE FUNCTION is_suppressed(address text) RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT EXISTS (
        SELECT 1 FROM suppressions
        WHERE email IN (lower(address), '*@' || split_part(lower(address), '@', 2))
    )
$$;

-- Inserting a lead enrols it: it starts at the first step, due after that step's wait.
CREATE FUNCTION leads_enrol() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    first_position integer;
    first_wait     integer;
BEGIN
    SELECT position, wait_seconds INTO first_position, first_wait
    FROM sequence_steps WHERE sequence_id = NEW.sequence_id
    ORDER BY position LIMIT 1;
    NEW.current_step := coalesce(first_position, 1);
    IF NEW.next_run_at IS NULL THEN
        NEW.next_run_at := NEW.enrolled_at + make_interval(secs => coalesce(first_wait, 0));
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER leads_enrol BEFORE INSERT ON leads
    FOR EACH ROW EXECUTE FUNCTION leads_enrol();

-- NOTIFY is a hint that wakes the daemons early; their poll is what guarantees progress.
CREATE FUNCTION notify_leads_due() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('email_scheduler_leads', '');
    RETURN NULL;
END $$;
CREATE TRIGGER leads_notify_insert AFTER INSERT ON leads
    FOR EACH STATEMENT EXECUTE FUNCTION notify_leads_due();
CREATE TRIGGER leads_notify_update AFTER UPDATE OF status, next_run_at ON leads
    FOR EACH STATEMENT EXECUTE FUNCTION notify_leads_due();

CREATE FUNCTION notify_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('email_scheduler_outbox', '');
    RETURN NULL;
END $$;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION notify_outbox();

-- The operator verbs stop_leads, record_reply and record_unsubscribe: db/functions/stops.sql
-- (function files are applied after the migrations; docs/architecture.md).
