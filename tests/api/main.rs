//! HTTP integration tests: every test starts its own sessiond on a random loopback port with its
//! own database (a fresh PostgreSQL database or a fresh SQLite file) and talks to it over HTTP.

mod accounts;
mod api_keys;
mod audit;
mod auth_locks;
mod bad_input;
mod browser;
mod code_issuance;
mod demo;
mod email;
mod hardening;
mod helpers;
mod input_fuzzing;
mod jwt_attacks;
mod lifecycle;
mod mail_sink;
mod media;
mod metrics;
mod mfa;
mod oauth_applications;
mod oauth_authorize;
mod oauth_grant_refresh;
#[path = "../support/oauth_grants.rs"]
mod oauth_grants;
mod oauth_separation;
mod oauth_token;
mod oidc;
mod oidc_login;
mod oidc_provider;
mod openapi;
mod passkeys;
mod password_reset;
mod profile;
mod ratelimit;
mod reauth;
mod refresh;
mod refresh_attacks;
mod seed;
#[path = "../support/tokens.rs"]
mod tokens;
mod verify_crate;
