-- The authorization endpoint (issue #12): see the PostgreSQL twin for the design. Conventions
-- as in the initial migration (16-byte BLOB ids, 32-byte BLOB hashes, fixed-width UTC TEXT
-- timestamps, STRICT).
CREATE TABLE oauth_authorization_requests (
    id         BLOB NOT NULL PRIMARY KEY CHECK (length(id) = 16),
    client_id  TEXT NOT NULL,
    csrf       TEXT NOT NULL,
    params     TEXT NOT NULL,
    created_at TEXT NOT NULL CHECK (created_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]Z'),
    expires_at TEXT NOT NULL CHECK (expires_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]Z')
) STRICT;
CREATE INDEX oauth_authorization_requests_expires_at_idx ON oauth_authorization_requests (expires_at);

CREATE TABLE oauth_codes (
    code_hash        BLOB NOT NULL PRIMARY KEY CHECK (length(code_hash) = 32),
    client_id        TEXT NOT NULL,
    params           TEXT NOT NULL,
    created_at       TEXT NOT NULL CHECK (created_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]Z'),
    expires_at       TEXT NOT NULL CHECK (expires_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]Z'),
    redeemed_at      TEXT CHECK (redeemed_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]Z'),
    grant_session_id BLOB CHECK (grant_session_id IS NULL OR length(grant_session_id) = 16)
) STRICT;
CREATE INDEX oauth_codes_expires_at_idx ON oauth_codes (expires_at);

CREATE TABLE sso_sessions (
    secret_hash BLOB NOT NULL PRIMARY KEY CHECK (length(secret_hash) = 32),
    session_id  BLOB NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    created_at  TEXT NOT NULL CHECK (created_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]Z'),
    expires_at  TEXT NOT NULL CHECK (expires_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]Z')
) STRICT;
CREATE INDEX sso_sessions_expires_at_idx ON sso_sessions (expires_at);

CREATE TABLE oauth_consents (
    user_id    BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_id  TEXT NOT NULL,
    scope      TEXT NOT NULL,
    created_at TEXT NOT NULL CHECK (created_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]Z'),
    PRIMARY KEY (user_id, client_id, scope)
) STRICT;
