-- trail schema, version 1.
--
-- One row of `events` is one link of the chain. `entry` holds the exact UTF-8
-- JSON bytes that were hashed; every other column of an event is generated
-- from `entry`, so no column can disagree with what was hashed.

CREATE TABLE events (
    seq        INTEGER PRIMARY KEY,
    entry      TEXT NOT NULL,
    chain_hash BLOB NOT NULL CHECK (length(chain_hash) = 32),
    signature  BLOB NOT NULL CHECK (length(signature) = 32),
    id         TEXT    GENERATED ALWAYS AS (json_extract(entry, '$.id')) STORED,
    ts         TEXT    GENERATED ALWAYS AS (json_extract(entry, '$.timestamp')) STORED,
    event      TEXT    GENERATED ALWAYS AS (json_extract(entry, '$.event')) STORED,
    level      TEXT    GENERATED ALWAYS AS (json_extract(entry, '$.level')) STORED,
    actor      TEXT    GENERATED ALWAYS AS (json_extract(entry, '$.actor')) STORED,
    resource   TEXT    GENERATED ALWAYS AS (json_extract(entry, '$.resource')) STORED,
    success    INTEGER GENERATED ALWAYS AS (json_extract(entry, '$.success')) STORED,
    source_ip  TEXT    GENERATED ALWAYS AS (json_extract(entry, '$.source_ip')) STORED
);

-- Every index also holds `seq` (the rowid), so "filter = ? ORDER BY seq"
-- walks one index in order: O(log n) plus the page, at any depth.
CREATE UNIQUE INDEX events_id ON events (id);
CREATE INDEX events_ts ON events (ts);
CREATE INDEX events_event ON events (event);
CREATE INDEX events_level ON events (level);
CREATE INDEX events_actor ON events (actor);
CREATE INDEX events_resource ON events (resource);
CREATE INDEX events_success ON events (success);

-- Retention cuts: rows at or below `up_to_seq` may be deleted once a cut is
-- recorded. The cut keeps the chain hash, key id and seal of its last row, so
-- verification resumes from it. Cuts are never updated nor deleted.
CREATE TABLE retention_cuts (
    up_to_seq  INTEGER PRIMARY KEY,
    chain_hash BLOB NOT NULL CHECK (length(chain_hash) = 32),
    signature  BLOB NOT NULL CHECK (length(signature) = 32),
    key_id     TEXT NOT NULL,
    cut_at     TEXT NOT NULL
);

CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'trail: events are append-only: UPDATE is refused');
END;

CREATE TRIGGER events_no_delete BEFORE DELETE ON events
WHEN OLD.seq > (SELECT coalesce(max(up_to_seq), 0) FROM retention_cuts)
BEGIN
    SELECT RAISE(ABORT, 'trail: events are append-only: DELETE is refused above the newest retention cut');
END;

CREATE TRIGGER events_next_seq BEFORE INSERT ON events
WHEN NEW.seq IS NOT coalesce(
        (SELECT max(seq) FROM events),
        (SELECT max(up_to_seq) FROM retention_cuts),
        0) + 1
BEGIN
    SELECT RAISE(ABORT, 'trail: seq must be exactly the next number');
END;

CREATE TRIGGER retention_cuts_no_update BEFORE UPDATE ON retention_cuts
BEGIN
    SELECT RAISE(ABORT, 'trail: retention cuts are append-only: UPDATE is refused');
END;

CREATE TRIGGER retention_cuts_no_delete BEFORE DELETE ON retention_cuts
BEGIN
    SELECT RAISE(ABORT, 'trail: retention cuts are never deleted');
END;

-- The log for people: one column per field, hashes as lowercase hex,
-- details and metadata as JSON text. `success` is 1, 0 or NULL.
CREATE VIEW audit_log AS
SELECT
    seq,
    id,
    ts AS timestamp,
    event,
    level,
    actor,
    resource,
    success,
    source_ip,
    json_extract(entry, '$.user_agent')  AS user_agent,
    json_extract(entry, '$.request_id')  AS request_id,
    json_extract(entry, '$.occurred_at') AS occurred_at,
    json_extract(entry, '$.details')     AS details,
    json_extract(entry, '$.metadata')    AS metadata,
    json_extract(entry, '$.key_id')      AS key_id,
    lower(hex(chain_hash))               AS chain_hash,
    lower(hex(signature))                AS signature
FROM events;
