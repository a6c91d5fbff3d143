-- The audit trail of operator changes (migrations 0018, 0020): a row trigger on the tables
-- operators change writes who (app.actor), through which door (app.door: cli, api,
-- console), what and the row before and after, in the transaction of the change. The doors
-- set both on their connections (db/audit.py); the daemons set neither, so their own
-- writes to these tables (a sender's next slot, a guard pause) are not operator changes.
-- Secrets never enter it, and a suppression is named by its address's SHA-256.
CREATE OR REPLACE FUNCTION audit_change() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    door text := nullif(current_setting('app.door', true), '');
    hidden text[] := ARRAY['smtp_password', 'imap_password', 'token_sha256', 'secret',
                           'next_send_at', 'delivered_total', 'last_delivered_at', 'last_used_at'];
    before_row jsonb;
    after_row jsonb;
    target text;
BEGIN
    IF door IS NULL THEN
        RETURN NULL;
    END IF;
    IF TG_OP <> 'INSERT' THEN
        before_row := to_jsonb(OLD) - hidden;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        after_row := to_jsonb(NEW) - hidden;
    END IF;
    IF before_row IS NOT DISTINCT FROM after_row THEN
        RETURN NULL;
    END IF;
    IF TG_TABLE_NAME = 'suppressions' THEN
        before_row := CASE WHEN before_row IS NOT NULL THEN jsonb_build_object(
            'entry_sha256', encode(sha256(convert_to(before_row->>'email', 'UTF8')), 'hex'),
            'reason', before_row->'reason') END;
        after_row := CASE WHEN after_row IS NOT NULL THEN jsonb_build_object(
            'entry_sha256', encode(sha256(convert_to(after_row->>'email', 'UTF8')), 'hex'),
            'reason', after_row->'reason') END;
    END IF;
    target := TG_TABLE_NAME || ':' || coalesce(
        after_row->>'id', before_row->>'id',
        (coalesce(after_row, before_row)->>'sequence_id') || '/'
            || (coalesce(after_row, before_row)->>'sender_id'),
        coalesce(after_row, before_row)->>'entry_sha256', '');
    INSERT INTO audit_log (at, actor, door, action, target, before, after)
    VALUES (now(), coalesce(nullif(current_setting('app.actor', true), ''), door), door,
            lower(TG_OP), target, before_row, after_row);
    RETURN NULL;
END $$;
