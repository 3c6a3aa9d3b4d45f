-- Log in with external OpenID Connect providers (issue #14).
--
-- `identities`: an account's links to provider subjects. `(provider, subject)` is unique: one
-- provider account opens exactly one sessiond account. `email` is the address the provider
-- asserted when the link was made (shown to the user; never used to log in).
CREATE TABLE identities (
    id        uuid        PRIMARY KEY,
    user_id   uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    provider  text        NOT NULL,
    subject   text        NOT NULL,
    email     text,
    linked_at timestamptz NOT NULL,
    CONSTRAINT identities_provider_subject_key UNIQUE (provider, subject)
);

CREATE INDEX identities_user_id_idx ON identities (user_id);

-- `oidc_flows`: a login at a provider in progress, so that any instance can take the callback.
-- Keyed by the SHA-256 of the `state` (the value itself travels only in URLs and the browser);
-- taken by one `DELETE ... RETURNING` that checks kind and expiry, so a state is single-use.
-- `browser` is the SHA-256 of the binding cookie's value. The same table holds a native app's
-- one-time result code (kind `native_code`, keyed by the code's hash) between the callback and
-- the app's exchange.
CREATE TABLE oidc_flows (
    key_hash      bytea       PRIMARY KEY,
    kind          text        NOT NULL,
    provider      text        NOT NULL,
    browser       bytea,
    nonce         text,
    pkce_verifier text,
    return_to     text,
    user_id       uuid        REFERENCES users (id) ON DELETE CASCADE,
    session_id    uuid,
    app_challenge text,
    app_state     text,
    created_at    timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL
);

CREATE INDEX oidc_flows_expires_at_idx ON oidc_flows (expires_at);
