-- Log in with external OpenID Connect providers; see the PostgreSQL twin for the design.
-- Conventions as in the initial migration (16-byte BLOB ids, fixed-width UTC TEXT timestamps).

CREATE TABLE identities (
    id        BLOB NOT NULL PRIMARY KEY CHECK (length(id) = 16),
    user_id   BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    provider  TEXT NOT NULL,
    subject   TEXT NOT NULL,
    email     TEXT,
    linked_at TEXT NOT NULL,
    UNIQUE (provider, subject)
) STRICT;

CREATE INDEX identities_user_id_idx ON identities (user_id);

CREATE TABLE oidc_flows (
    key_hash      BLOB NOT NULL PRIMARY KEY,
    kind          TEXT NOT NULL,
    provider      TEXT NOT NULL,
    browser       BLOB,
    nonce         TEXT,
    pkce_verifier TEXT,
    return_to     TEXT,
    user_id       BLOB REFERENCES users (id) ON DELETE CASCADE,
    session_id    BLOB,
    app_challenge TEXT,
    app_state     TEXT,
    created_at    TEXT NOT NULL,
    expires_at    TEXT NOT NULL
) STRICT;

CREATE INDEX oidc_flows_expires_at_idx ON oidc_flows (expires_at);
