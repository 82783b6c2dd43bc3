-- trail schema, version 7.
--
-- A prune deletes from its cut down, so the cut's own row goes first; until
-- the next event is appended, the cut is the head of the chain. The time the
-- next event is stamped with may never go below the head's (DESIGN.md,
-- invariant 5), and that time must come from something the chain vouches
-- for: the cut now keeps its row's `entry` and the chain hash of the row
-- before it (`prev_hash`), so that SHA-256(prev_hash || entry) = chain_hash
-- can be checked, and the cut's chain hash is sealed. Cuts recorded by an
-- earlier version have both NULL.

ALTER TABLE retention_cuts ADD COLUMN entry TEXT;
ALTER TABLE retention_cuts ADD COLUMN prev_hash BLOB CHECK (prev_hash IS NULL OR length(prev_hash) = 32);
