-- Passkeys (WebAuthn credentials) and the state of WebAuthn ceremonies in progress.
--
-- passkeys: one row per registered credential. `passkey` is webauthn-rs's `Passkey` serialised
-- as JSON (the public key and what the crate needs to verify an assertion); `sign_count`,
-- `backup_eligible`, `backup_state` are kept beside it as columns, authoritative and readable
-- without the crate. `sign_count` is updated by compare-and-set, so two assertions with the same
-- counter cannot both pass. `credential_id` is unique across accounts: a discoverable login
-- finds the account by it.
CREATE TABLE passkeys (
    id              uuid        PRIMARY KEY,
    user_id         uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    credential_id   bytea       NOT NULL UNIQUE,
    passkey         text        NOT NULL,
    sign_count      bigint      NOT NULL,
    backup_eligible boolean     NOT NULL,
    backup_state    boolean     NOT NULL,
    transports      text        NOT NULL,
    aaguid          uuid        NOT NULL,
    name            text        NOT NULL,
    created_at      timestamptz NOT NULL,
    last_used_at    timestamptz,
    CONSTRAINT passkeys_sign_count_check CHECK (sign_count >= 0)
);

CREATE INDEX passkeys_user_id_idx ON passkeys (user_id);

-- A ceremony between its start and its finish (at most 5 minutes): webauthn-rs's
-- registration or authentication state, serialised (it holds the challenge). `kind` and
-- `bound_to` (the user and session, or the login challenge, it was started for; empty for a
-- passwordless login) must match at the finish, and the row is deleted by the finish that
-- matches it, so a ceremony is single-use and cannot be finished by anyone else. Any instance
-- can finish a ceremony another started.
CREATE TABLE webauthn_ceremonies (
    id         uuid        PRIMARY KEY,
    kind       text        NOT NULL,
    bound_to   text        NOT NULL,
    state      text        NOT NULL,
    name       text,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);

CREATE INDEX webauthn_ceremonies_expires_at_idx ON webauthn_ceremonies (expires_at);
