-- trail schema, version 5.
--
-- The insert trigger's check that an id is not stored already read the id
-- with json_extract(NEW.entry, '$.id'): a second parse of every entry, in the
-- trigger's own program (SQLite's JSON cache is per statement). In a BEFORE
-- INSERT trigger NEW.id is the generated column, already computed from the
-- same entry by the same expression, so the check now reads it. What the
-- trigger refuses is unchanged.

DROP TRIGGER events_next_seq;

CREATE TRIGGER events_next_seq BEFORE INSERT ON events
BEGIN
    SELECT RAISE(ABORT, 'trail: seq must be exactly the next number')
    WHERE NEW.seq IS NOT coalesce(
        (SELECT max(seq) FROM events),
        (SELECT max(up_to_seq) FROM retention_cuts),
        0) + 1;
    SELECT RAISE(ABORT, 'trail: an event with this id is stored already; events are never replaced')
    WHERE EXISTS (SELECT 1 FROM events WHERE id = NEW.id);
END;
