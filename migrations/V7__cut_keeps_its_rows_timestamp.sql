-- trail schema, version 7.
--
-- A retention cut keeps the timestamp of the row it cuts at (`ts`). A prune
-- deletes from its cut down, so the cut's own row goes first; until the
-- prune ends the chain goes on after the cut, and new events are stamped
-- no earlier than this (timestamps never decrease along the chain, even
-- with the clock behind). Cuts recorded before have none (NULL).

ALTER TABLE retention_cuts ADD COLUMN ts TEXT;

DROP TRIGGER retention_cuts_insert;

CREATE TRIGGER retention_cuts_insert BEFORE INSERT ON retention_cuts
BEGIN
    SELECT RAISE(ABORT, 'trail: a retention cut must be above the newest cut')
    WHERE NEW.up_to_seq <= coalesce((SELECT max(up_to_seq) FROM retention_cuts), 0);
    SELECT RAISE(ABORT, 'trail: a retention cut must copy the chain hash of the row it cuts at')
    WHERE NEW.chain_hash IS NOT (SELECT chain_hash FROM events WHERE seq = NEW.up_to_seq);
    SELECT RAISE(ABORT, 'trail: a retention cut must copy the timestamp of the row it cuts at')
    WHERE NEW.ts IS NOT NULL AND NEW.ts IS NOT (SELECT ts FROM events WHERE seq = NEW.up_to_seq);
END;
