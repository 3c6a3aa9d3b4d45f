//! Process-level integration tests: the real `sessiond` binary, started as child processes on
//! 127.0.0.1 against the real local PostgreSQL (each test its own fresh database).
//!
//! - `reauth_two_instances`: a reauthentication through one process is seen by the other at
//!   once (change feed), long before the staleness bound.
//! - `passkeys_two_instances`: a passkey ceremony started on one process finishes on the
//!   other, and the step-up it makes is seen through both.
//! - `two_instances`: two processes on one database agree on every rotation and see each
//!   other's revocations within the staleness bound.
//! - `oauth_two_instances`: OAuth grants across two processes: concurrent refreshes rotate once,
//!   a replay after the grace window compromises the grant for both, a revocation through one
//!   is seen by the other's introspection through the change feed.
//! - `crash`: `kill -9` mid-traffic loses no committed rotation and compromises no session.
//! - `shutdown`: SIGTERM with refreshes in flight: `/ready` turns 503 at once, the listener
//!   closes, every in-flight request is answered in full, the process exits 0, and every
//!   acknowledged rotation is in the database.
//! - `outage`: a private PostgreSQL cluster stopped under a running process: after the first
//!   failure every store request is refused at once (503), `/ready` is 503, the circuit gauge
//!   is 1; once it is started again the breaker closes without a restart and no acknowledged
//!   rotation is lost or applied twice.
//! - `startup`: the first log line says where it listens, which store and which keys.

mod crash;
#[path = "../support/oauth_grants.rs"]
mod oauth_grants;
mod oauth_two_instances;
mod outage;
mod passkeys_two_instances;
mod reauth_two_instances;
#[path = "../support/sessiond_command.rs"]
mod sessiond_command;
mod shutdown;
mod startup;
mod support;
#[path = "../support/tokens.rs"]
mod tokens;
mod two_instances;
