-- One-time codes sent by mail: email verification and password reset.
--
-- Only an HMAC of each code is stored (keyed by a secret derived from SESSIOND_REFRESH_KEY,
-- which is never in the database), so a dump of this table does not give the 6-digit codes
-- away to an offline search. `attempts` counts every check of the code; a row is usable while
-- consumed_at IS NULL, attempts < the limit and expires_at > now. A newer code for the same
-- user and purpose supersedes older ones (they get consumed_at).
--
-- user_id is NULL for decoys: rows created for an unknown email so that asking for a reset
-- answers, and later behaves, the same whether or not the account exists.
-- Conventions as in the initial migration: 16-byte BLOB ids, fixed-width TEXT timestamps.
CREATE TABLE verification_codes (
    id          BLOB    NOT NULL PRIMARY KEY CHECK (length(id) = 16),
    user_id     BLOB    REFERENCES users (id) ON DELETE CASCADE,
    purpose     TEXT    NOT NULL CHECK (purpose IN ('email_verification', 'password_reset')),
    code_hash   BLOB    NOT NULL CHECK (length(code_hash) = 32),
    expires_at  TEXT    NOT NULL CHECK (expires_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]Z'),
    attempts    INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    consumed_at TEXT    CHECK (consumed_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]Z'),
    created_at  TEXT    NOT NULL CHECK (created_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]Z')
) STRICT;

-- The newest code of a user for a purpose (cooldown, superseding).
CREATE INDEX verification_codes_user_purpose_idx
    ON verification_codes (user_id, purpose, created_at) WHERE user_id IS NOT NULL;
-- Purging.
CREATE INDEX verification_codes_expires_at_idx ON verification_codes (expires_at);
