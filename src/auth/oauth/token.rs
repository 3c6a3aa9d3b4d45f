//! The token endpoint's `client_credentials` grant, token introspection (RFC 7662) and
//! revocation (RFC 7009), without
//! HTTP. Failures are [`OAuthError`]s, which the HTTP layer answers in RFC 6749's shape.
//!
//! **Client credentials.** A confidential client gets an access token for itself (`sub` =
//! its `client_id`), with scopes ⊆ its allowed scopes, no refresh token, living the access
//! lifetime. The token carries a fingerprint of the secret that obtained it (`csh`), so
//! introspection reports it inactive at once when the application is deleted or that secret
//! stops working (a rotation past its overlap).
//!
//! **Introspection.** The caller authenticates as a client; it may introspect only tokens issued
//! to it, unless the operator lists it in `SESSIOND_INTROSPECTION_CLIENTS` (a resource server).
//! A token it may not see, or any token that is not valid, is `{"active": false}` — one answer.
//! `active` of a user grant's token comes from the live session state (its actor), so a revoked
//! grant is inactive at once on every instance.

use chrono::{DateTime, Utc};
use sessiond_actors::ids::SessionId;

use super::applications::{Application, ClientType, authenticate_client};
use super::client_auth::PresentedClient;
use super::scope::Scopes;
use crate::auth::{Auth, AuthError};
use crate::crypto::oauth_tokens::{AccessGrant, OAuthAccessClaims, OAuthTokens};

/// An RFC 6749 §5.2 error (or an internal failure).
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    /// `invalid_request`.
    #[error("{0}")]
    InvalidRequest(String),
    /// `invalid_client`: 401.
    #[error("client authentication failed")]
    InvalidClient,
    /// `unauthorized_client`: the client may not use this grant type.
    #[error("{0}")]
    UnauthorizedClient(&'static str),
    /// `invalid_grant`: a refresh token that is not a live grant of this client.
    #[error("{0}")]
    InvalidGrant(&'static str),
    /// `unsupported_grant_type`.
    #[error("unsupported grant_type")]
    UnsupportedGrantType,
    /// `invalid_scope`.
    #[error("{0}")]
    InvalidScope(String),
    /// Not the client's fault: the store, the engine, a bug.
    #[error(transparent)]
    Server(AuthError),
}

impl From<AuthError> for OAuthError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::InvalidClient => Self::InvalidClient,
            other => Self::Server(other),
        }
    }
}

/// An issued access token.
#[derive(Debug)]
pub struct IssuedToken {
    /// The JWT.
    pub access_token: String,
    /// Seconds it lives.
    pub expires_in: u64,
    /// Granted scopes, space-separated.
    pub scope: String,
}

/// The `client_credentials` grant: `client` (authenticated here, confidential only) gets a
/// token for itself with the requested scopes (all its allowed scopes when none are asked).
pub async fn client_credentials(
    auth: &Auth<'_>,
    tokens: &OAuthTokens,
    client: &PresentedClient,
    scope: Option<&str>,
) -> Result<IssuedToken, OAuthError> {
    let now = auth.clock.now();
    let (app, how) =
        authenticate_client(auth.store, &client.client_id, client.secret.as_deref(), now).await?;
    if app.client_type != ClientType::Confidential {
        return Err(OAuthError::UnauthorizedClient(
            "client_credentials is for confidential clients only",
        ));
    }
    let requested = Scopes::parse(scope).map_err(|e| OAuthError::InvalidScope(e.to_string()))?;
    requested
        .check_allowed(&app.allowed_scopes)
        .map_err(|e| OAuthError::InvalidScope(e.to_string()))?;
    let granted = if requested.is_empty() {
        app.allowed_scopes.join(" ")
    } else {
        requested.to_string()
    };
    let fingerprint = how.secret(&app).map(|h| h.fingerprint());
    let (access_token, expires_in) = tokens
        .issue_access(
            &AccessGrant {
                subject: &app.client_id,
                client_id: &app.client_id,
                scope: &granted,
                session: None,
                secret_fingerprint: fingerprint.as_deref(),
                not_after: None,
            },
            now,
        )
        .map_err(|e| OAuthError::Server(AuthError::internal(e)))?;
    Ok(IssuedToken {
        access_token,
        expires_in,
        scope: granted,
    })
}

/// A refreshed grant: a new access token and the next refresh token.
#[derive(Debug)]
pub struct RefreshedGrant {
    /// The access token.
    pub access: IssuedToken,
    /// The next refresh token (the presented one is spent, except for a grace retry).
    pub refresh_token: String,
}

/// The `refresh_token` grant: rotates the grant's refresh token through its session actor —
/// the same rules, grace window and replay detection as a first-party refresh. **Token
/// separation:** a first-party refresh token, or another client's grant, is `invalid_grant`
/// and is not rotated. `scope` may narrow the granted scopes, never widen them.
pub async fn refresh_grant(
    auth: &Auth<'_>,
    tokens: &OAuthTokens,
    client: &PresentedClient,
    refresh_token: &str,
    scope: Option<&str>,
) -> Result<RefreshedGrant, OAuthError> {
    use sessiond_actors::refresh_token::RefreshToken;
    const NOT_OURS: &str = "the refresh token is not a live grant of this client";
    let now = auth.clock.now();
    let (app, _) =
        authenticate_client(auth.store, &client.client_id, client.secret.as_deref(), now).await?;
    let token =
        RefreshToken::parse(refresh_token).map_err(|_| OAuthError::InvalidGrant(NOT_OURS))?;
    // A grant stays a grant of one client for its whole life, so checking before the refresh
    // is race-free; an ended session is refused here without touching it.
    let session = auth
        .sessions
        .check(token.session_id)
        .await
        .map_err(|_| OAuthError::InvalidGrant(NOT_OURS))?;
    let granted = match &session.grant {
        Some(g) if g.client_id == app.client_id => {
            Scopes::parse(Some(&g.scope)).map_err(|e| OAuthError::Server(AuthError::internal(e)))?
        }
        _ => return Err(OAuthError::InvalidGrant(NOT_OURS)),
    };
    let requested = Scopes::parse(scope).map_err(|e| OAuthError::InvalidScope(e.to_string()))?;
    if !requested.is_subset_of(&granted) {
        return Err(OAuthError::InvalidScope(
            "a refresh may narrow the granted scopes, never widen them".into(),
        ));
    }
    let scope = if requested.is_empty() {
        granted
    } else {
        requested
    }
    .to_string();
    let refreshed = auth.sessions.refresh(&token).await.map_err(|e| match e {
        sessiond_actors::sessions::SessionError::Unavailable(_)
        | sessiond_actors::sessions::SessionError::Timeout
        | sessiond_actors::sessions::SessionError::Internal(_) => OAuthError::Server(e.into()),
        _ => OAuthError::InvalidGrant("the refresh token is invalid, spent or revoked"),
    })?;
    let (sid, sub) = (
        refreshed.session.id.to_string(),
        refreshed.session.user_id.to_string(),
    );
    let (access_token, expires_in) = tokens
        .issue_access(
            &AccessGrant {
                subject: &sub,
                client_id: &app.client_id,
                scope: &scope,
                session: Some(&sid),
                secret_fingerprint: None,
                not_after: Some(refreshed.session.expires_at),
            },
            now,
        )
        .map_err(|e| OAuthError::Server(AuthError::internal(e)))?;
    Ok(RefreshedGrant {
        access: IssuedToken {
            access_token,
            expires_in,
            scope,
        },
        refresh_token: refreshed.refresh_token.encode(),
    })
}

/// What introspection answers about an active token.
#[derive(Debug, PartialEq, Eq)]
pub struct ActiveToken {
    /// The token's claims.
    pub claims: OAuthAccessClaims,
}

/// Introspects `token` for `caller` (authenticated here). `resource_servers` are the client
/// ids the operator allows to introspect any token (`SESSIOND_INTROSPECTION_CLIENTS`). None =
/// `{"active": false}`.
pub async fn introspect(
    auth: &Auth<'_>,
    tokens: &OAuthTokens,
    caller: &PresentedClient,
    token: &str,
    resource_servers: &[String],
) -> Result<Option<ActiveToken>, OAuthError> {
    let now = auth.clock.now();
    let (caller_app, _) =
        authenticate_client(auth.store, &caller.client_id, caller.secret.as_deref(), now).await?;
    let Ok(claims) = tokens.verify_access(token, now) else {
        return Ok(None);
    };
    let may_see = claims.client_id == caller_app.client_id
        || resource_servers.contains(&caller_app.client_id);
    if !may_see || !is_live(auth, &claims, now).await? {
        return Ok(None);
    }
    Ok(Some(ActiveToken { claims }))
}

/// Whether the token's grant (or, for client credentials, its client and secret) is alive now.
async fn is_live(
    auth: &Auth<'_>,
    claims: &OAuthAccessClaims,
    now: DateTime<Utc>,
) -> Result<bool, OAuthError> {
    use super::port::ApplicationStore;
    match (&claims.sid, &claims.csh) {
        (Some(_), _) => grant_is_live(auth, claims).await,
        (None, Some(fingerprint)) => {
            let app: Option<Application> = auth
                .store
                .find_application(&claims.client_id)
                .await
                .map_err(|e| OAuthError::Server(e.into()))?;
            Ok(app.is_some_and(|app| {
                app.live_secrets(now).any(|h| {
                    crate::crypto::constant_time_eq(
                        h.fingerprint().as_bytes(),
                        fingerprint.as_bytes(),
                    )
                })
            }))
        }
        (None, None) => Ok(false),
    }
}

/// Whether the grant an access token names (`sid`) is alive now and still the token's client's.
/// The session's actor answers from the committed state, so a revoked grant is dead at once on
/// every instance; ended, unknown or expired = not live; no `sid` = not a grant's token.
pub(super) async fn grant_is_live(
    auth: &Auth<'_>,
    claims: &OAuthAccessClaims,
) -> Result<bool, OAuthError> {
    let Some(id) = claims
        .sid
        .as_deref()
        .and_then(|s| s.parse::<SessionId>().ok())
    else {
        return Ok(false);
    };
    Ok(match auth.sessions.check(id).await {
        Ok(session) => session
            .grant
            .as_ref()
            .is_some_and(|g| g.client_id == claims.client_id),
        Err(sessiond_actors::sessions::SessionError::Unavailable(e)) => {
            return Err(OAuthError::Server(AuthError::internal(e)));
        }
        Err(_) => false,
    })
}

/// Token revocation (RFC 7009): `caller` (authenticated here) revokes a token issued to it.
/// A grant's refresh token (proven by its hash in the grant's token history) or access token
/// revokes the whole grant through its actor (reason `logout`), at once on every instance. A
/// client-credentials access token cannot be revoked alone (rotate the secret instead). Any
/// token that is invalid, unknown, already ended or another client's is ignored: the answer is
/// the same success (RFC 7009 §2.2), so tokens cannot be probed.
pub async fn revoke(
    auth: &Auth<'_>,
    tokens: &OAuthTokens,
    caller: &PresentedClient,
    token: &str,
) -> Result<(), OAuthError> {
    use sessiond_actors::model::RevokeReason;
    use sessiond_actors::refresh_token::RefreshToken;
    use sessiond_actors::store::SessionStore;
    let now = auth.clock.now();
    let (app, _) =
        authenticate_client(auth.store, &caller.client_id, caller.secret.as_deref(), now).await?;
    let session = if let Ok(refresh) = RefreshToken::parse(token) {
        let issued = auth
            .store
            .find_generation(refresh.session_id, &refresh.secret.hash())
            .await
            .map_err(|e| OAuthError::Server(e.into()))?;
        issued.map(|_| refresh.session_id)
    } else if let Ok(claims) = tokens.verify_access(token, now) {
        claims
            .sid
            .filter(|_| claims.client_id == app.client_id)
            .and_then(|sid| sid.parse::<SessionId>().ok())
    } else {
        None
    };
    let Some(id) = session else {
        return Ok(());
    };
    let record = auth
        .store
        .load_session(id)
        .await
        .map_err(|e| OAuthError::Server(e.into()))?;
    let ours = record.is_some_and(|s| {
        s.grant
            .as_ref()
            .is_some_and(|g| g.client_id == app.client_id)
    });
    if !ours {
        return Ok(());
    }
    match auth.sessions.revoke(id, RevokeReason::Logout).await {
        Ok(()) | Err(sessiond_actors::sessions::SessionError::NotFound) => Ok(()),
        Err(sessiond_actors::sessions::SessionError::Rejected(_)) => Ok(()),
        Err(e) => Err(OAuthError::Server(e.into())),
    }
}
