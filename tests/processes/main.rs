//! Process-level integration tests: the real `sessiond` binary, started as child processes on
//! 127.0.0.1 against the real local PostgreSQL (each test its own fresh database).
//!
//! - `two_instances`: two processes on one database agree on every rotation and see each
//!   other's revocations within the staleness bound.
//! - `crash`: `kill -9` mid-traffic loses no committed rotation and compromises no session.

mod crash;
mod support;
mod two_instances;
