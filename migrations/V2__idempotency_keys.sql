-- Idempotency-Key: a retried HTTP request with the same key gets the original
-- answer and writes nothing. The key row is written in the same transaction
-- as the events it answers for, so a crash cannot separate them.
CREATE TABLE idempotency_keys (
    key          TEXT PRIMARY KEY,
    -- SHA-256 of the request's canonical content: the same key with another
    -- request is refused instead of answered with the wrong events.
    request_hash BLOB NOT NULL CHECK (length(request_hash) = 32),
    -- The seqs answered, as a JSON array, in request order.
    seqs         TEXT NOT NULL,
    created_at   TEXT NOT NULL
);
