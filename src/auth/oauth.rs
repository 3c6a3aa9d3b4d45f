//! sessiond as an OAuth 2.1 authorization server and OpenID Connect provider (issue #12),
//! without HTTP.
//!
//! **The model.** An OAuth grant is a session of the user, carried by the same session actor as
//! a first-party login: refresh-token rotation, the grace window, replay detection, revocation
//! and the change feed between instances apply to it unchanged. What marks it is
//! [`sessiond_actors::model::Grant`] on the session record — the application's `client_id` and
//! the granted `scope` — and what keeps it apart from the first-party API is the token
//! separation rule (a grant's tokens never act on `/v1`, a first-party refresh token never acts
//! on `/oauth2/token`).
//!
//! - [`applications`] — registered applications: validation of their fields, creation (a
//!   sensitive action: the reauthentication rule and `SESSIOND_APP_CREATORS`), update,
//!   deletion (which revokes every grant of the application through the session engine),
//!   secret rotation with an overlap window, and client authentication.
//! - [`grants`] — a user's view of their grants: list them, revoke one.
//! - [`pkce`] — PKCE `S256` (RFC 7636), required of every client; [`scope`] — the `scope`
//!   parameter and the OpenID Connect scopes; [`client_auth`] — reading
//!   `client_secret_basic` / `client_secret_post` / `none` credentials. Building blocks of the authorization and token
//!   endpoints (not served yet).
//! - [`id_token`] — ID tokens (RS256, the dedicated key): [`id_token::issue`] is what the
//!   authorization-code exchange (and a refresh asking for `openid`) calls; its
//!   [`id_token::profile_claims`] are the user's claims by scope, shared with userinfo.
//! - [`token`] — the token endpoint's `client_credentials` grant and introspection (RFC 7662).
//! - [`port`] — the storage port [`port::ApplicationStore`], which `crate::store` implements on
//!   both databases.

pub mod applications;
pub mod authorize;
pub mod client_auth;
pub mod codes;
pub mod consent;
pub mod discovery;
pub mod grants;
pub mod id_token;
pub mod origins;
pub mod pkce;
pub mod port;
pub mod scope;
pub mod sso;
pub mod token;
pub mod userinfo;

use sessiond_actors::model::SessionRecord;

/// Whether `session` is an OAuth grant. **Token separation:** the first-party API's bearer
/// authentication and `/v1/auth/tokens/refresh` refuse a grant's tokens (they answer
/// `invalid_token` / `invalid_refresh_token`), so an application holding a user's grant can
/// never act as the user's own client (change the password, mint API keys, list sessions).
pub fn is_grant(session: &SessionRecord) -> bool {
    session.grant.is_some()
}
