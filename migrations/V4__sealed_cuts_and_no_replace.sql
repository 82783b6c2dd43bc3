-- trail schema, version 4.
--
-- 1. `INSERT OR REPLACE` with the id of a stored event deleted that event
--    through the unique `events_id` index without firing `events_no_delete`
--    (SQLite fires delete triggers for REPLACE only with recursive_triggers
--    on). The insert trigger now refuses an id that is stored already, next
--    to its seq check.
-- 2. A retention cut may be inserted only above the newest cut, copying the
--    chain hash of the row it cuts at. Its seal (checked by both verifiers)
--    binds its `up_to_seq` as well: HMAC(key, "trail-cut" 0x00 seq chain_hash),
--    so a cut cannot be forged from a row's own seal.

DROP TRIGGER events_next_seq;

CREATE TRIGGER events_next_seq BEFORE INSERT ON events
BEGIN
    SELECT RAISE(ABORT, 'trail: seq must be exactly the next number')
    WHERE NEW.seq IS NOT coalesce(
        (SELECT max(seq) FROM events),
        (SELECT max(up_to_seq) FROM retention_cuts),
        0) + 1;
    SELECT RAISE(ABORT, 'trail: an event with this id is stored already; events are never replaced')
    WHERE EXISTS (SELECT 1 FROM events WHERE id = json_extract(NEW.entry, '$.id'));
END;

CREATE TRIGGER retention_cuts_insert BEFORE INSERT ON retention_cuts
BEGIN
    SELECT RAISE(ABORT, 'trail: a retention cut must be above the newest cut')
    WHERE NEW.up_to_seq <= coalesce((SELECT max(up_to_seq) FROM retention_cuts), 0);
    SELECT RAISE(ABORT, 'trail: a retention cut must copy the chain hash of the row it cuts at')
    WHERE NEW.chain_hash IS NOT (SELECT chain_hash FROM events WHERE seq = NEW.up_to_seq);
END;
