-- trail schema, version 6.
--
-- A prune deletes from its cut down, so while it runs the newest row can be
-- below the newest cut (the cut's own row goes first). The next seq is one
-- past the higher of the two: past the newest row, and never at or below a
-- cut, whose rows are being deleted. (Version 5 took the newest row when
-- there was one, and the cut only when there was none.) What the trigger
-- refuses is otherwise unchanged.

DROP TRIGGER events_next_seq;

CREATE TRIGGER events_next_seq BEFORE INSERT ON events
BEGIN
    SELECT RAISE(ABORT, 'trail: seq must be exactly the next number')
    WHERE NEW.seq IS NOT max(
        coalesce((SELECT max(seq) FROM events), 0),
        coalesce((SELECT max(up_to_seq) FROM retention_cuts), 0)) + 1;
    SELECT RAISE(ABORT, 'trail: an event with this id is stored already; events are never replaced')
    WHERE EXISTS (SELECT 1 FROM events WHERE id = NEW.id);
END;
