-- Senders' own mail accounts (docs/architecture.md §6): an SMTP account to send through and an IMAP inbox
-- to read, each a URL without its password (`smtp+starttls://user@host:587`, a user name
-- with an @ written %40); the passwords are stored encrypted with CREDENTIALS_KEY
-- (runtime/credentials.py), never in clear. A sender without an SMTP account sends through
-- the global relay (SMTP_*).
ALTER TABLE senders
    ADD COLUMN smtp_url text
        CONSTRAINT "smtp_url is smtp://, smtp+starttls:// or smtps://user@host:port, no password"
        CHECK (smtp_url ~ '^(smtp|smtp\+starttls|smtps)://([^/:@]+@)?[^/:@]+(:[0-9]{1,5})?$'),
    ADD COLUMN smtp_password bytea,
    ADD COLUMN imap_url text
        CONSTRAINT "imap_url is imap://, imap+starttls:// or imaps://user@host:port, no password"
        CHECK (imap_url ~ '^(imap|imap\+starttls|imaps)://([^/:@]+@)?[^/:@]+(:[0-9]{1,5})?$'),
    ADD COLUMN imap_password bytea,
    -- When an account or its password last changed: workers read accounts again after it.
    ADD COLUMN accounts_changed_at timestamptz;

-- The SMTP circuit of each account ('relay' for SMTP_*, else the account's URL) as the
-- workers last saw it (core/circuit.py), for `ops status`.
CREATE TABLE smtp_circuits (
    account    text        PRIMARY KEY,
    state      text        NOT NULL CHECK (state IN ('closed', 'open', 'half_open')),
    reason     text        NOT NULL DEFAULT '',
    retry_at   timestamptz,
    changed_at timestamptz NOT NULL
);
