//! Route handlers, one module per resource.

pub mod api_keys;
pub mod auth;
pub mod health;
pub mod me;
pub mod metrics;
pub mod profile;
pub mod mfa;
pub mod sessions;
pub mod verify;
