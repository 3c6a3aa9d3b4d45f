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

use super::applications::{Application, ClientAuthentication, ClientType, authenticate_client};
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
    /// An ID token, only when the request's `scope` parameter names `openid` (RSA signing costs
    /// ~0.6 ms, and most refreshes only want a fresh access token; OIDC Core §12.2 makes it
    /// optional). It describes the grant's original authentication (`auth_time`, `acr`, `amr`)
    /// and has no `nonce`.
    pub id_token: Option<String>,
}

/// The `refresh_token` grant: rotates the grant's refresh token through its session actor —
/// the same rules, grace window and replay detection as a first-party refresh. **Token
/// separation:** a first-party refresh token, or another client's grant, is `invalid_grant`
/// and is not rotated. `scope` may narrow the granted scopes, never widen them; when it names
/// `openid`, an ID token comes too (see [`RefreshedGrant::id_token`]).
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
    // With OpenID Connect off there is no ID-token key, and never an ID token.
    let wants_id_token = requested.contains(super::scope::OPENID) && tokens.oidc_enabled();
    let scopes = if requested.is_empty() {
        granted
    } else {
        requested
    };
    let scope = scopes.to_string();
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
    let id_token = if wants_id_token {
        let session = &refreshed.session;
        Some(
            super::id_token::issue(
                auth,
                tokens,
                &super::id_token::IdTokenRequest {
                    user: session.user_id,
                    client_id: &app.client_id,
                    nonce: None,
                    auth_time: session.auth_time,
                    aal: session.aal,
                    amr: &session.amr,
                    access_token: Some(&access_token),
                    scope: &scopes,
                },
            )
            .await?,
        )
    } else {
        None
    };
    Ok(RefreshedGrant {
        access: IssuedToken {
            access_token,
            expires_in,
            scope,
        },
        refresh_token: refreshed.refresh_token.encode(),
        id_token,
    })
}

/// What introspection answers about an active token.
#[derive(Debug, PartialEq, Eq)]
pub enum ActiveToken {
    /// An OAuth access token: its claims.
    Access(OAuthAccessClaims),
    /// A grant's current refresh token.
    Refresh(ActiveRefresh),
}

/// An active refresh token: its grant's state.
#[derive(Debug, PartialEq, Eq)]
pub struct ActiveRefresh {
    /// The client the grant belongs to.
    pub client_id: String,
    /// The granted scopes.
    pub scope: String,
    /// The user.
    pub sub: String,
    /// When the grant ends at the latest (its absolute end).
    pub exp: DateTime<Utc>,
    /// When this refresh token was issued (the last rotation, or the grant's start).
    pub iat: DateTime<Utc>,
    /// The grant's session id.
    pub sid: String,
}

/// Which kind of token `token_type_hint` names (RFC 7662 §2.1, RFC 7009 §2.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenTypeHint {
    /// `access_token`.
    AccessToken,
    /// `refresh_token`.
    RefreshToken,
}

impl TokenTypeHint {
    /// Reads a hint. An unknown value is no hint (RFC 7662 §2.1 lets the server extend its
    /// search past a wrong hint; both formats are self-describing here, so a hint only orders
    /// the two checks and never changes an answer).
    pub fn parse(raw: Option<&str>) -> Option<Self> {
        match raw {
            Some("access_token") => Some(Self::AccessToken),
            Some("refresh_token") => Some(Self::RefreshToken),
            _ => None,
        }
    }
}

/// Introspects `token` for `caller`, which must authenticate with a secret (a public client may
/// not introspect: `invalid_client`). `resource_servers` are the client ids the operator allows
/// to introspect any token (`SESSIOND_INTROSPECTION_CLIENTS`). None = `{"active": false}`.
///
/// An access token is active while valid and its grant (or client secret) alive. A refresh
/// token is active while it is its grant's **current** token (a spent parent, even inside the
/// grace window, is not) and the grant is live — asked of the grant's actor, so a revoked grant
/// is inactive at once. A first-party session's refresh token is never active for any client,
/// resource servers included (token separation).
pub async fn introspect(
    auth: &Auth<'_>,
    tokens: &OAuthTokens,
    caller: &PresentedClient,
    token: &str,
    hint: Option<TokenTypeHint>,
    resource_servers: &[String],
) -> Result<Option<ActiveToken>, OAuthError> {
    let now = auth.clock.now();
    let (caller_app, how) =
        authenticate_client(auth.store, &caller.client_id, caller.secret.as_deref(), now).await?;
    if how == ClientAuthentication::None {
        return Err(OAuthError::InvalidClient);
    }
    let may_see = |client_id: &str| {
        client_id == caller_app.client_id || resource_servers.contains(&caller_app.client_id)
    };
    let refresh_first = hint == Some(TokenTypeHint::RefreshToken);
    if refresh_first && let Some(active) = introspect_refresh(auth, token).await? {
        return Ok(may_see(refresh_client(&active)).then_some(active));
    }
    if let Ok(claims) = tokens.verify_access(token, now) {
        if !may_see(&claims.client_id) || !is_live(auth, &claims, now).await? {
            return Ok(None);
        }
        return Ok(Some(ActiveToken::Access(claims)));
    }
    if !refresh_first && let Some(active) = introspect_refresh(auth, token).await? {
        return Ok(may_see(refresh_client(&active)).then_some(active));
    }
    Ok(None)
}

fn refresh_client(active: &ActiveToken) -> &str {
    match active {
        ActiveToken::Access(c) => &c.client_id,
        ActiveToken::Refresh(r) => &r.client_id,
    }
}

/// A refresh token's state, if it is the current token of a live grant.
async fn introspect_refresh(
    auth: &Auth<'_>,
    token: &str,
) -> Result<Option<ActiveToken>, OAuthError> {
    use sessiond_actors::refresh_token::RefreshToken;
    let Ok(refresh) = RefreshToken::parse(token) else {
        return Ok(None);
    };
    let session = match auth.sessions.check(refresh.session_id).await {
        Ok(session) => session,
        Err(sessiond_actors::sessions::SessionError::Unavailable(e)) => {
            return Err(OAuthError::Server(AuthError::internal(e)));
        }
        Err(_) => return Ok(None),
    };
    let Some(grant) = &session.grant else {
        return Ok(None);
    };
    let presented = refresh.secret.hash();
    if !crate::crypto::constant_time_eq(&session.current_hash.0, &presented.0) {
        return Ok(None);
    }
    Ok(Some(ActiveToken::Refresh(ActiveRefresh {
        client_id: grant.client_id.clone(),
        scope: grant.scope.clone(),
        sub: session.user_id.to_string(),
        exp: session.expires_at,
        iat: session.rotated_at.unwrap_or(session.created_at),
        sid: session.id.to_string(),
    })))
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
