-- The authorization endpoint (issue #12): pending authorization requests, authorization codes,
-- the browser's single sign-on and remembered consents.
--
-- A pending request is the validated query of `GET /oauth2/authorize`, kept server-side (any
-- instance can finish it) for the few minutes a login and a consent take. `csrf` binds the
-- forms of its pages to it; it is not a credential (every form also needs the password or the
-- single sign-on cookie), so it is kept as is to be put in each page the request renders.
CREATE TABLE oauth_authorization_requests (
    id         uuid        PRIMARY KEY,
    client_id  text        NOT NULL,
    csrf       text        NOT NULL,
    params     text        NOT NULL,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX oauth_authorization_requests_expires_at_idx ON oauth_authorization_requests (expires_at);

-- Authorization codes: only the SHA-256 of the code; single use (`redeemed_at` is set by one
-- statement); `grant_session_id` = the grant issued from it, revoked when the code is replayed.
CREATE TABLE oauth_codes (
    code_hash        bytea       PRIMARY KEY CHECK (length(code_hash) = 32),
    client_id        text        NOT NULL,
    params           text        NOT NULL,
    created_at       timestamptz NOT NULL,
    expires_at       timestamptz NOT NULL,
    redeemed_at      timestamptz,
    grant_session_id uuid
);
CREATE INDEX oauth_codes_expires_at_idx ON oauth_codes (expires_at);

-- The browser's single sign-on (`__Host-sessiond_sso`): the SHA-256 of the cookie's secret and
-- the first-party session behind it, which alone decides whether it still counts.
CREATE TABLE sso_sessions (
    secret_hash bytea       PRIMARY KEY CHECK (length(secret_hash) = 32),
    session_id  uuid        NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL
);
CREATE INDEX sso_sessions_expires_at_idx ON sso_sessions (expires_at);

-- Remembered consents: per user, application and normalised (sorted) scope set.
CREATE TABLE oauth_consents (
    user_id    uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_id  text        NOT NULL,
    scope      text        NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (user_id, client_id, scope)
);
