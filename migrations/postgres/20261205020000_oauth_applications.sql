-- OAuth 2.1 / OpenID Connect (issue #12): applications, and grants as sessions.
--
-- An OAuth grant is a session of the user, carried by the same session actor as a first-party
-- login (rotation, replay detection, revocation and the change feed apply unchanged). It is told
-- apart by `client_id` (the application it was granted to) and `scope` (what it may do): both
-- set, or neither for a first-party session. No foreign key to the application: deleting an
-- application revokes its grants through the session engine, and the ended rows stay for the
-- audit trail until purged like any session.
ALTER TABLE sessions ADD COLUMN client_id text;
ALTER TABLE sessions ADD COLUMN scope text;
ALTER TABLE sessions ADD CONSTRAINT sessions_grant_check
    CHECK ((client_id IS NULL) = (scope IS NULL));
-- A user's grants of one application, and an application's grants (deletion, introspection).
CREATE INDEX sessions_client_id_idx ON sessions (client_id, user_id) WHERE client_id IS NOT NULL;

-- Registered applications. Only SHA-256 hashes of client secrets are stored (a secret is 256
-- random bits: a slow hash buys nothing). Rotating the secret keeps the previous hash until
-- `previous_secret_expires_at`, so a deployment can roll over without downtime. Public clients
-- (browser and native apps, PKCE only) have no secret at all.
CREATE TABLE oauth_applications (
    id                         uuid        PRIMARY KEY,
    client_id                  text        NOT NULL,
    owner_id                   uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name                       text        NOT NULL,
    description                text,
    client_type                text        NOT NULL,
    -- Exact strings, compared byte for byte (no wildcard, no normalisation).
    redirect_uris              text[]      NOT NULL DEFAULT '{}',
    allowed_origins            text[]      NOT NULL DEFAULT '{}',
    allowed_scopes             text[]      NOT NULL DEFAULT '{}',
    secret_hash                bytea,
    previous_secret_hash       bytea,
    previous_secret_expires_at timestamptz,
    created_at                 timestamptz NOT NULL,
    updated_at                 timestamptz NOT NULL,
    CONSTRAINT oauth_applications_client_id_key UNIQUE (client_id),
    CONSTRAINT oauth_applications_client_type_check
        CHECK (client_type IN ('confidential', 'public')),
    CONSTRAINT oauth_applications_secret_hash_check
        CHECK (secret_hash IS NULL OR octet_length(secret_hash) = 32),
    CONSTRAINT oauth_applications_previous_secret_check
        CHECK ((previous_secret_hash IS NULL) = (previous_secret_expires_at IS NULL)
               AND (previous_secret_hash IS NULL OR octet_length(previous_secret_hash) = 32))
);

-- The owner's list (keyset pagination on id) and the cascade from users.
CREATE INDEX oauth_applications_owner_id_id_idx ON oauth_applications (owner_id, id);
