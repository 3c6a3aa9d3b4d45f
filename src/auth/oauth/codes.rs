//! Authorization codes (OAuth 2.1 §4.1.2–4.1.3) and the token endpoint's
//! `authorization_code` grant, without HTTP.
//!
//! A code is 256 random bits, base64url; only its SHA-256 is stored, with what it binds: the
//! client, the redirect URI, the PKCE challenge, the nonce, the user, the scopes and the login's
//! `auth_time`, `aal` and `amr`. It lives 60 seconds (`SESSIOND_OAUTH_CODE_TTL`) and is spent by one statement
//! ([`super::port::AuthorizeStore::redeem_code`]). A spent code presented again is
//! `invalid_grant` **and** revokes the grant issued from it (reason `code_replayed`): whoever
//! replays it may have stolen it (RFC 6749 §4.1.2). The exchange creates the grant through
//! the session engine, so it gets the refresh rotation and replay detection of every session.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sessiond_actors::ids::UserId;
use sessiond_actors::model::{Grant, NewSession, RevokeReason, SessionRecord};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::applications::authenticate_client;
use super::authorize::Pending;
use super::client_auth::PresentedClient;
use super::id_token::IdTokenRequest;
use super::pkce::CodeChallenge;
use super::port::{AuthorizeStore, Redemption, StoredCode};
use super::scope::{OPENID, Scopes};
use super::token::{IssuedToken, OAuthError};
use crate::auth::{Auth, AuthError};
use crate::crypto::oauth_tokens::{AccessGrant, OAuthTokens};
use crate::crypto::random_bytes;
use crate::store::UserStatus;

/// What a code binds, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeParams {
    /// Must be presented again, equal, at the exchange.
    pub redirect_uri: String,
    /// PKCE `S256` challenge.
    pub code_challenge: String,
    /// For the ID token.
    pub nonce: Option<String>,
    /// The user.
    pub user: Uuid,
    /// Granted scopes, space-separated.
    pub scope: String,
    /// The login's time, level and methods (the grant's session inherits them).
    pub auth_time: DateTime<Utc>,
    /// Assurance level.
    pub aal: u8,
    /// Methods (RFC 8176).
    pub amr: Vec<String>,
}

fn hash(code: &str) -> [u8; 32] {
    Sha256::digest(code.as_bytes()).into()
}

/// Issues a code for `pending`, signed in as `session`, living `ttl`.
pub async fn issue(
    auth: &Auth<'_>,
    pending: &Pending,
    session: &SessionRecord,
    ttl: std::time::Duration,
) -> Result<String, AuthError> {
    let code = URL_SAFE_NO_PAD.encode(random_bytes::<32>());
    let now = auth.clock.now();
    let params = CodeParams {
        redirect_uri: pending.params.redirect_uri.clone(),
        code_challenge: pending.params.code_challenge.clone(),
        nonce: pending.params.nonce.clone(),
        user: session.user_id.as_uuid(),
        scope: pending.params.scope.clone(),
        auth_time: session.auth_time,
        aal: session.aal,
        amr: session.amr.clone(),
    };
    auth.store
        .insert_code(&StoredCode {
            hash: hash(&code),
            client_id: pending.client.client_id.clone(),
            params: serde_json::to_string(&params).map_err(AuthError::internal)?,
            created_at: now,
            expires_at: now + chrono::Duration::from_std(ttl).map_err(AuthError::internal)?,
        })
        .await?;
    Ok(code)
}

/// What the exchange answers.
#[derive(Debug)]
pub struct CodeTokens {
    /// The access token.
    pub access: IssuedToken,
    /// The grant's first refresh token.
    pub refresh_token: String,
    /// With `openid` in scope.
    pub id_token: Option<String>,
}

/// The presented fields of an `authorization_code` token request.
#[derive(Clone, Copy, Debug)]
pub struct CodeExchange<'a> {
    /// `code`.
    pub code: Option<&'a str>,
    /// `redirect_uri`.
    pub redirect_uri: Option<&'a str>,
    /// `code_verifier`.
    pub code_verifier: Option<&'a str>,
}

const BAD_CODE: &str = "the code is invalid, expired or spent";

/// The `authorization_code` grant: authenticates `client`, spends the code, checks its
/// bindings and creates the grant.
pub async fn exchange(
    auth: &Auth<'_>,
    tokens: &OAuthTokens,
    client: &PresentedClient,
    req: CodeExchange<'_>,
) -> Result<CodeTokens, OAuthError> {
    let now = auth.clock.now();
    let (app, _) =
        authenticate_client(auth.store, &client.client_id, client.secret.as_deref(), now).await?;
    let code = req
        .code
        .ok_or_else(|| OAuthError::InvalidRequest("code is required".into()))?;
    // A missing verifier fails the PKCE check like a wrong one (RFC 7636 §4.6: invalid_grant),
    // after the code is spent: a code is good for one attempt.
    let verifier = req.code_verifier.unwrap_or_default();
    let hash = hash(code);
    let server = |e: sessiond_actors::store::StoreError| OAuthError::Server(e.into());
    let (client_id, params) = match auth.store.redeem_code(&hash, now).await.map_err(server)? {
        Redemption::Fresh(client_id, params) => (client_id, params),
        Redemption::Replayed(grant) => {
            if let Some(id) = grant {
                tracing::warn!(session_id = %id, "authorization code replayed; grant revoked");
                match auth.sessions.revoke(id, RevokeReason::CodeReplayed).await {
                    Ok(())
                    | Err(
                        sessiond_actors::sessions::SessionError::NotFound
                        | sessiond_actors::sessions::SessionError::Rejected(_),
                    ) => {}
                    Err(e) => return Err(OAuthError::Server(e.into())),
                }
            }
            return Err(OAuthError::InvalidGrant(BAD_CODE));
        }
        Redemption::Unknown => return Err(OAuthError::InvalidGrant(BAD_CODE)),
    };
    if client_id != app.client_id {
        return Err(OAuthError::InvalidGrant(BAD_CODE));
    }
    let params: CodeParams =
        serde_json::from_str(&params).map_err(|e| OAuthError::Server(AuthError::internal(e)))?;
    if req.redirect_uri != Some(params.redirect_uri.as_str()) {
        return Err(OAuthError::InvalidGrant(
            "redirect_uri differs from the authorization request's",
        ));
    }
    let challenge = CodeChallenge::from_stored(params.code_challenge.clone());
    if !challenge.verify(verifier).unwrap_or(false) {
        return Err(OAuthError::InvalidGrant(
            "code_verifier does not match the challenge",
        ));
    }
    let user = UserId(params.user);
    let active = auth
        .store
        .get_user(user)
        .await
        .map_err(server)?
        .is_some_and(|u| u.status == UserStatus::Active);
    if !active {
        return Err(OAuthError::InvalidGrant("the user can no longer sign in"));
    }
    let (session, refresh) = auth
        .sessions
        .create(NewSession {
            user_id: user,
            auth_time: params.auth_time,
            aal: params.aal,
            amr: params.amr.clone(),
            device_name: Some(app.name.clone()),
            user_agent: None,
            ip: None,
            grant: Some(Grant {
                client_id: app.client_id.clone(),
                scope: params.scope.clone(),
            }),
        })
        .await
        .map_err(|e| OAuthError::Server(e.into()))?;
    auth.store
        .attach_code_grant(&hash, session.id)
        .await
        .map_err(server)?;
    let (sid, sub) = (session.id.to_string(), user.to_string());
    let (access_token, expires_in) = tokens
        .issue_access(
            &AccessGrant {
                subject: &sub,
                client_id: &app.client_id,
                scope: &params.scope,
                session: Some(&sid),
                secret_fingerprint: None,
                not_after: Some(session.expires_at),
            },
            now,
        )
        .map_err(|e| OAuthError::Server(AuthError::internal(e)))?;
    let scope = Scopes::parse(Some(&params.scope))
        .map_err(|e| OAuthError::Server(AuthError::internal(e)))?;
    // With OpenID Connect off (no ID-token key) `openid` is a scope like any other.
    let id_token = if scope.contains(OPENID) && tokens.oidc_enabled() {
        id_token(
            auth,
            tokens,
            &app.client_id,
            &params,
            &session,
            &access_token,
            &scope,
        )
        .await?
    } else {
        None
    };
    Ok(CodeTokens {
        access: IssuedToken {
            access_token,
            expires_in,
            scope: params.scope,
        },
        refresh_token: refresh.encode(),
        id_token,
    })
}

/// The ID token of the exchange (`openid` in scope): the login's `auth_time`, `aal` and
/// `amr`, the request's nonce, and `at_hash` of the access token issued with it.
async fn id_token(
    auth: &Auth<'_>,
    tokens: &OAuthTokens,
    client_id: &str,
    params: &CodeParams,
    session: &SessionRecord,
    access_token: &str,
    scope: &Scopes,
) -> Result<Option<String>, OAuthError> {
    super::id_token::issue(
        auth,
        tokens,
        &IdTokenRequest {
            user: session.user_id,
            client_id,
            nonce: params.nonce.as_deref(),
            auth_time: params.auth_time,
            aal: params.aal,
            amr: &params.amr,
            access_token: Some(access_token),
            scope,
        },
    )
    .await
    .map(Some)
}
