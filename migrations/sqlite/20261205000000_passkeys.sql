-- Passkeys and WebAuthn ceremonies; see the PostgreSQL twin for the design. Conventions as in
-- the initial migration (16-byte BLOB ids, fixed-width UTC TEXT timestamps, STRICT).

CREATE TABLE passkeys (
    id              BLOB    NOT NULL PRIMARY KEY CHECK (length(id) = 16),
    user_id         BLOB    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    credential_id   BLOB    NOT NULL UNIQUE,
    passkey         TEXT    NOT NULL,
    sign_count      INTEGER NOT NULL CHECK (sign_count >= 0),
    backup_eligible INTEGER NOT NULL CHECK (backup_eligible IN (0, 1)),
    backup_state    INTEGER NOT NULL CHECK (backup_state IN (0, 1)),
    transports      TEXT    NOT NULL,
    aaguid          BLOB    NOT NULL CHECK (length(aaguid) = 16),
    name            TEXT    NOT NULL,
    created_at      TEXT    NOT NULL CHECK (created_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]Z'),
    last_used_at    TEXT    CHECK (last_used_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]Z')
) STRICT;

CREATE INDEX passkeys_user_id_idx ON passkeys (user_id);

CREATE TABLE webauthn_ceremonies (
    id         BLOB NOT NULL PRIMARY KEY CHECK (length(id) = 16),
    kind       TEXT NOT NULL,
    bound_to   TEXT NOT NULL,
    state      TEXT NOT NULL,
    name       TEXT,
    created_at TEXT NOT NULL CHECK (created_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]Z'),
    expires_at TEXT NOT NULL CHECK (expires_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]Z')
) STRICT;

CREATE INDEX webauthn_ceremonies_expires_at_idx ON webauthn_ceremonies (expires_at);
