-- The rejected rows of a console import, kept for their download (in parts, so a file of
-- any size streams): any replica of the API can serve the link the import page shows, to
-- the person who ran the import. Removed after a day (ops/imports.py `keep_rejects`).
-- Unlogged: a copy of what the person uploaded, not worth a WAL record.
CREATE UNLOGGED TABLE import_rejects (
    token text NOT NULL,
    part integer NOT NULL,
    owner text NOT NULL,
    body text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (token, part)
);
CREATE INDEX import_rejects_created_at ON import_rejects (created_at);
