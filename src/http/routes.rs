//! Route handlers, one module per resource.

pub mod api_keys;
pub mod applications;
pub mod auth;
pub mod authorize;
pub mod browser;
pub mod email;
pub mod events;
pub mod grants;
pub mod health;
pub mod me;
pub mod media;
pub mod metrics;
pub mod mfa;
pub mod oauth2;
pub mod oidc;
pub mod passkeys;
pub mod password_reset;
pub mod profile;
pub mod reauth;
pub mod recovery_codes;
pub mod sessions;
pub mod verify;
