//! Route handlers, one module per resource.

pub mod auth;
pub mod health;
pub mod me;
pub mod sessions;
