-- TOTP multi-factor authentication (RFC 6238), recovery codes and login challenges.
--
-- mfa_totp: one row per user who started or finished TOTP enrolment. The shared secret is never
-- stored in the clear: `secret_ciphertext` is AES-256-GCM under a key derived from
-- SESSIOND_REFRESH_KEY (never in the database), with a random 96-bit `nonce` per encryption and
-- the user id as associated data, so a row copied onto another user does not decrypt.
-- `enabled_at` NULL = enrolment started, not yet confirmed with a code (MFA is off).
-- `last_used_step` is the last accepted TOTP time step: a code is accepted only for a later step,
-- so each code works once (RFC 6238 §5.2).
CREATE TABLE mfa_totp (
    user_id           uuid        PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    secret_ciphertext bytea       NOT NULL,
    nonce             bytea       NOT NULL,
    enabled_at        timestamptz,
    last_used_step    bigint,
    created_at        timestamptz NOT NULL,
    CONSTRAINT mfa_totp_nonce_check CHECK (octet_length(nonce) = 12),
    CONSTRAINT mfa_totp_last_used_step_check CHECK (last_used_step IS NULL OR last_used_step >= 0)
);

-- Single-use recovery codes, replaced as a set when MFA is (re-)enabled. Only an HMAC-SHA256 of
-- each 80-bit random code is stored (see src/mfa.rs for why a keyed fast hash suffices).
CREATE TABLE mfa_recovery_codes (
    id         uuid        PRIMARY KEY,
    user_id    uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash  bytea       NOT NULL,
    created_at timestamptz NOT NULL,
    used_at    timestamptz,
    CONSTRAINT mfa_recovery_codes_code_hash_check CHECK (octet_length(code_hash) = 32)
);

CREATE INDEX mfa_recovery_codes_user_id_idx ON mfa_recovery_codes (user_id);

-- A password was right and a second factor is owed: short-lived, single-use, attempts counted.
-- Carries what the session will be created with.
CREATE TABLE mfa_challenges (
    id          uuid        PRIMARY KEY,
    user_id     uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    attempts    integer     NOT NULL DEFAULT 0,
    consumed_at timestamptz,
    device_name text,
    user_agent  text,
    ip          text,
    CONSTRAINT mfa_challenges_attempts_check CHECK (attempts >= 0)
);

-- Expired challenges of a user are deleted whenever the user gets a new one.
CREATE INDEX mfa_challenges_user_id_idx ON mfa_challenges (user_id);
