//! sessiond's tokens and forward-auth answers as others consume them, against real programs:
//!
//! - `gateway`: the shipped nginx configuration (`deploy/gateway/nginx.conf`) in real nginx,
//!   between a client and an upstream that echoes every header it receives, with a live
//!   sessiond behind `auth_request`;
//! - `verifiers`: Node's `jose` and Python's PyJWT (pinned in `tests/interop/node` and
//!   `tests/interop/python`) verifying sessiond's real tokens against its live JWKS, for EdDSA
//!   and RS256, and refusing tampered ones;
//! - `oidc`: openid-client (pinned in `tests/interop/oidc`), an OpenID-certified relying party,
//!   signing in to sessiond through the whole authorization code flow and meeting every
//!   negative path with the error the specifications name.
//!
//! `scripts/test` installs nginx, the npm packages and the Python packages when they are
//! missing; a test here fails (never skips) when one is still absent.

// The API tests' `spawn_app` and clients, shared rather than copied.
#[path = "../api/helpers.rs"]
#[allow(dead_code)]
mod helpers;
#[path = "../support/tokens.rs"]
#[allow(dead_code)]
mod tokens;

mod gateway;
mod oidc;
mod support;
mod verifiers;
