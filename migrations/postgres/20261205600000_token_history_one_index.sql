-- The token history on the refresh path (issue #15): every rotation inserts one row, and the
-- only read is by session and hash (`find_generation`: was this secret ever issued, and as
-- which generation). That read's index becomes the primary key, and the rest goes:
--
-- * the primary key on (session_id, generation) was a second index to update on every
--   rotation, read by nothing: one row per generation is already guaranteed by the session
--   row's version fence, which every rotation's insert is joined to;
-- * the foreign key to sessions ran a look-up of the session row (a trigger, through SPI) for
--   every inserted row, although the row is inserted by the statement that has just updated and
--   locked that session. Its ON DELETE CASCADE is replaced by the purge, which deletes a
--   session's history with the session in the same statement (src/store/postgres.rs); sessions
--   are deleted by nothing else.
--
-- Together they were about a tenth of PostgreSQL's CPU per refresh (docs/benchmarks.md,
-- "Session 11"). On an existing database this builds the new primary key once, under a lock
-- on the table for as long as the build takes.
ALTER TABLE refresh_tokens DROP CONSTRAINT refresh_tokens_session_id_fkey;
ALTER TABLE refresh_tokens DROP CONSTRAINT refresh_tokens_pkey;
DROP INDEX refresh_tokens_session_id_token_hash_idx;
ALTER TABLE refresh_tokens ADD CONSTRAINT refresh_tokens_pkey PRIMARY KEY (session_id, token_hash);
