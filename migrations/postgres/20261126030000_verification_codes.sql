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
CREATE TABLE verification_codes (
    id          uuid        PRIMARY KEY,
    user_id     uuid        REFERENCES users (id) ON DELETE CASCADE,
    purpose     text        NOT NULL,
    code_hash   bytea       NOT NULL,
    expires_at  timestamptz NOT NULL,
    attempts    integer     NOT NULL DEFAULT 0,
    consumed_at timestamptz,
    created_at  timestamptz NOT NULL,
    CONSTRAINT verification_codes_purpose_check
        CHECK (purpose IN ('email_verification', 'password_reset')),
    CONSTRAINT verification_codes_code_hash_check CHECK (octet_length(code_hash) = 32),
    CONSTRAINT verification_codes_attempts_check CHECK (attempts >= 0)
);

-- The newest code of a user for a purpose (cooldown, superseding).
CREATE INDEX verification_codes_user_purpose_idx
    ON verification_codes (user_id, purpose, created_at) WHERE user_id IS NOT NULL;
-- Purging.
CREATE INDEX verification_codes_expires_at_idx ON verification_codes (expires_at);
