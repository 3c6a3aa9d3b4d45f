-- Initial schema: accounts, sessions and the refresh-token history (hashes only).
--
-- Conventions (see src/store/sqlite.rs):
-- * ids are UUIDv7 stored as 16-byte BLOBs; BLOBs compare with memcmp, so ids sort by creation
--   time exactly as PostgreSQL's uuid does, and keyset pagination behaves identically.
-- * timestamps are TEXT in ONE fixed-width UTC format, `YYYY-MM-DDTHH:MM:SS.ffffffZ` (always six
--   fraction digits), so text comparison is chronological comparison (`expires_at > ?` works).
--   The GLOB checks reject any other spelling, e.g. sqlx's default variable-width RFC 3339.
-- * hashes are 32-byte BLOBs; amr is a JSON array of strings.
-- Tables are STRICT so a mistyped bind fails loudly instead of being stored as-is. Reason and
-- class columns are validated by the application only: SQLite cannot alter a CHECK without
-- rebuilding the table, so only the status sets are constrained here.

CREATE TABLE users (
    id                BLOB NOT NULL PRIMARY KEY CHECK (length(id) = 16),
    -- Normalised by the caller; uniqueness is exact.
    email             TEXT NOT NULL UNIQUE,
    email_verified_at TEXT CHECK (email_verified_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]Z'),
    name              TEXT,
    status            TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    -- NULL for accounts without a password (passkey-only or external login).
    password_hash     TEXT,
    created_at        TEXT NOT NULL CHECK (created_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]Z'),
    updated_at        TEXT NOT NULL CHECK (updated_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]Z')
) STRICT;

CREATE TABLE sessions (
    id               BLOB    NOT NULL PRIMARY KEY CHECK (length(id) = 16),
    user_id          BLOB    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    status           TEXT    NOT NULL CHECK (status IN ('active', 'revoked', 'compromised')),
    generation       INTEGER NOT NULL CHECK (generation >= 0),
    current_hash     BLOB    NOT NULL CHECK (length(current_hash) = 32),
    previous_hash    BLOB    CHECK (previous_hash IS NULL OR length(previous_hash) = 32),
    rotated_at       TEXT    CHECK (rotated_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]Z'),
    created_at       TEXT    NOT NULL CHECK (created_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]Z'),
    last_seen_at     TEXT    NOT NULL CHECK (last_seen_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]Z'),
    expires_at       TEXT    NOT NULL CHECK (expires_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]Z'),
    auth_time        TEXT    NOT NULL CHECK (auth_time GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]Z'),
    aal              INTEGER NOT NULL CHECK (aal >= 0),
    amr              TEXT    NOT NULL DEFAULT '[]' CHECK (json_valid(amr)),
    device_name      TEXT,
    user_agent       TEXT,
    ip               TEXT,
    revoked_at       TEXT    CHECK (revoked_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]Z'),
    revoked_reason   TEXT,
    compromised_at   TEXT    CHECK (compromised_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]Z'),
    compromise_class TEXT,
    -- When the session was revoked or compromised (first of the two); drives purging.
    ended_at         TEXT    CHECK (ended_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]Z'),
    version          INTEGER NOT NULL,
    CHECK ((revoked_at IS NULL) = (revoked_reason IS NULL)),
    CHECK ((compromised_at IS NULL) = (compromise_class IS NULL))
) STRICT;

-- Listing a user's sessions newest first, and the cascade from users.
CREATE INDEX sessions_user_id_id_idx ON sessions (user_id, id);
-- Purging.
CREATE INDEX sessions_ended_at_idx ON sessions (ended_at) WHERE ended_at IS NOT NULL;
CREATE INDEX sessions_expires_at_idx ON sessions (expires_at);

-- Every generation a session ever issued, so a replayed ancestor can be told from a token the
-- session never issued. Hashes only: secrets are never stored.
CREATE TABLE refresh_tokens (
    session_id BLOB    NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    generation INTEGER NOT NULL CHECK (generation >= 0),
    token_hash BLOB    NOT NULL CHECK (length(token_hash) = 32),
    issued_at  TEXT    NOT NULL CHECK (issued_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]Z'),
    PRIMARY KEY (session_id, generation)
) STRICT;

CREATE INDEX refresh_tokens_session_id_token_hash_idx ON refresh_tokens (session_id, token_hash);
