-- The worker's claim of a batch of plain sends as one call (claim_sends): one round trip
-- and one transaction instead of four. The function is code and lives in
-- db/functions/deliveries.sql, applied after the migrations.
SELECT 1;
