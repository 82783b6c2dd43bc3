-- API tokens. Only a SHA-256 hash of each secret is stored; the secret is
-- shown once, when the token is created. Revoked tokens stay, marked, so a
-- name is never reused and the history of who could do what remains.
CREATE TABLE api_tokens (
    name        TEXT PRIMARY KEY,
    secret_hash BLOB NOT NULL UNIQUE CHECK (length(secret_hash) = 32),
    -- Comma-separated: ingest, read, admin.
    scopes      TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    revoked_at  TEXT
);
