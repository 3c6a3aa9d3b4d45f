-- Security audit trail: one row per security event (registration, logins and failed logins,
-- revocations, logouts, compromised sessions; later password resets, MFA, API keys, ...).
--
-- Open by design: `kind` is free text (a lowercase token, checked below) and event-specific
-- facts go in `details`, so a new kind of event needs no migration. Rows are written in the same
-- transaction as the change they record (see src/store/audit.rs).
--
-- `user_id` is NULL when the event concerns no known account (a failed login for an unknown
-- email: the email itself is never stored). `session_id` has no foreign key on purpose: the
-- trail outlives purged sessions. Deleting an account deletes its trail.

CREATE TABLE audit_events (
    id         uuid        PRIMARY KEY,
    user_id    uuid        REFERENCES users (id) ON DELETE CASCADE,
    session_id uuid,
    kind       text        NOT NULL,
    at         timestamptz NOT NULL,
    ip         text,
    user_agent text,
    details    jsonb       NOT NULL DEFAULT '{}',
    CONSTRAINT audit_events_kind_check CHECK (kind ~ '^[a-z][a-z0-9_.]{0,63}$'),
    CONSTRAINT audit_events_details_check CHECK (jsonb_typeof(details) = 'object')
);

-- A user's own events, newest first (ids are UUIDv7: id order is time order).
CREATE INDEX audit_events_user_id_id_idx ON audit_events (user_id, id) WHERE user_id IS NOT NULL;
-- Time-range queries and a later retention job.
CREATE INDEX audit_events_at_idx ON audit_events (at);
