//! Route handlers, one module per resource.

pub mod api_keys;
pub mod auth;
pub mod events;
pub mod email;
pub mod health;
pub mod me;
pub mod metrics;
pub mod profile;
pub mod mfa;
pub mod password_reset;
pub mod sessions;
pub mod verify;
