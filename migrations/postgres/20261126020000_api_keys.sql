-- API keys: long-lived credentials of services, each owned by the user who created it.
--
-- The key handed out is `sk_<public_id>_<secret>`. `public_id` finds the row (unique index);
-- only the SHA-256 of the 256-bit random secret is stored, so the table is useless to whoever
-- reads it. Revoked keys stay (revoked_at set) so the owner's list and audit can still name them.
-- last_used_at is written in batches by the usage coalescer, never once per request.

CREATE TABLE api_keys (
    id           uuid        PRIMARY KEY,
    public_id    text        NOT NULL,
    user_id      uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         text        NOT NULL,
    secret_hash  bytea       NOT NULL,
    scopes       text[]      NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz,
    revoked_at   timestamptz,
    last_used_at timestamptz,
    CONSTRAINT api_keys_public_id_key UNIQUE (public_id),
    CONSTRAINT api_keys_secret_hash_check CHECK (octet_length(secret_hash) = 32)
);

-- The owner's list, newest first (keyset pagination on id), and the cascade from users.
CREATE INDEX api_keys_user_id_id_idx ON api_keys (user_id, id);
