-- OAuth 2.1 / OpenID Connect (issue #12): applications, and grants as sessions.
-- See the PostgreSQL twin for the design; conventions as in the initial migration (16-byte BLOB
-- ids, 32-byte BLOB hashes, fixed-width UTC TEXT timestamps, STRICT). Lists are JSON arrays.
ALTER TABLE sessions ADD COLUMN client_id TEXT;
ALTER TABLE sessions ADD COLUMN scope TEXT CHECK ((client_id IS NULL) = (scope IS NULL));
CREATE INDEX sessions_client_id_idx ON sessions (client_id, user_id) WHERE client_id IS NOT NULL;

CREATE TABLE oauth_applications (
    id                         BLOB NOT NULL PRIMARY KEY CHECK (length(id) = 16),
    client_id                  TEXT NOT NULL UNIQUE,
    owner_id                   BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name                       TEXT NOT NULL,
    description                TEXT,
    client_type                TEXT NOT NULL CHECK (client_type IN ('confidential', 'public')),
    redirect_uris              TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(redirect_uris)),
    allowed_origins            TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(allowed_origins)),
    allowed_scopes             TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(allowed_scopes)),
    secret_hash                BLOB CHECK (secret_hash IS NULL OR length(secret_hash) = 32),
    previous_secret_hash       BLOB CHECK (previous_secret_hash IS NULL OR length(previous_secret_hash) = 32),
    previous_secret_expires_at TEXT CHECK (previous_secret_expires_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]Z'),
    created_at                 TEXT NOT NULL CHECK (created_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]Z'),
    updated_at                 TEXT NOT NULL CHECK (updated_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]Z'),
    CHECK ((previous_secret_hash IS NULL) = (previous_secret_expires_at IS NULL))
) STRICT;

CREATE INDEX oauth_applications_owner_id_id_idx ON oauth_applications (owner_id, id);
