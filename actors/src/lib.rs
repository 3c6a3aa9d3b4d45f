//! Session actors for sessiond.
//!
//! Every live user session is one [`ractor`] actor. The actor serialises refresh-token rotation,
//! replay detection and revocation for its session, and writes every change through the
//! [`store::SessionStore`] port before it answers. This crate knows nothing of HTTP or SQL:
//! the HTTP front talks to the [`sessions::Sessions`] handle, and `src/store` implements the port.
#![warn(missing_docs)]

pub mod clock;
pub mod config;
pub mod error;
pub mod ids;
pub mod memory_store;
pub mod model;
pub mod observe;
pub mod protocol;
pub mod published;
pub mod refresh_token;
pub mod registry;
pub mod rotation;
pub mod session_actor;
pub mod sessions;
pub mod stats;
pub mod store;
pub mod supervisor;
