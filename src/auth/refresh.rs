//! Presenting a refresh token: rotating it, and ending the session it belongs to.
//!
//! The JSON route (`POST /v1/auth/tokens/refresh`, token in the body) and the browser routes
//! (`/v1/auth/browser/refresh` and `/logout`, token in a cookie) differ only in where the token
//! travels, so both call these flows and the rotation rules (grace retry, replay detection) are
//! exactly the same for both: they live in the session's actor, which [`refresh`] asks.

use std::sync::Arc;

use sessiond_actors::ids::SessionId;
use sessiond_actors::model::{RevokeReason, SessionRecord};
use sessiond_actors::refresh_token::RefreshToken;
use sessiond_actors::rotation::{self, Rejection, SecretMatch};
use sessiond_actors::sessions::{RefreshOutcome, Refreshed, SessionError};

use super::{Auth, AuthError};
use crate::store::{UserProfile, UserStatus};

/// A refresh the session engine accepted: what the token response is built from.
#[derive(Debug)]
pub struct Rotated {
    /// The account, as the token response shows it.
    pub user: Arc<UserProfile>,
    /// The session after the refresh.
    pub session: SessionRecord,
    /// The child refresh token (a secret: shown once, never logged).
    pub refresh_token: RefreshToken,
    /// Rotation or grace retry.
    pub outcome: RefreshOutcome,
}

/// Exchanges the presented refresh token (as the client sent it) for its child: parse, the
/// per-session refresh limit, the session's actor (rotation, grace retry or replay detection),
/// then the account, which must still be active. `observe` sees the engine's answer (a
/// malformed token counts as an invalid one) for the metrics.
///
/// Refusals are [`AuthError::Refresh`], which the HTTP layer answers like the engine's error
/// (`invalid_refresh_token`, `refresh_token_reused`, `session_revoked`, …).
pub async fn refresh(
    auth: &Auth<'_>,
    presented: &str,
    observe: impl FnOnce(&Result<Refreshed, SessionError>),
) -> Result<Rotated, AuthError> {
    let token = match RefreshToken::parse(presented) {
        Ok(token) => token,
        Err(_) => {
            let refused = Err(SessionError::Rejected(Rejection::InvalidToken));
            observe(&refused);
            return Err(AuthError::Refresh(SessionError::Rejected(
                Rejection::InvalidToken,
            )));
        }
    };
    auth.limiter
        .check_session(&token.session_id.to_string())
        .await?;
    // The id the token claims (opaque, not a secret); the secret is never recorded. The field
    // exists when the calling handler's span declares it.
    tracing::Span::current().record("session_id", tracing::field::display(token.session_id));
    // Token separation (issue #12): an OAuth grant's refresh token belongs to `/oauth2/token`
    // and is refused as invalid *before* it is spent while its session is usable. The actor
    // decides it in the refresh message itself (`Presenter::FirstParty`): a separate check
    // call cost every refresh a second actor round trip. A session that is ended or unknown is
    // left to the refresh itself, which gives the precise answer (and detects replays).
    let refreshed = auth.sessions.refresh_first_party(&token).await;
    observe(&refreshed);
    // A reuse was committed together with its `session_compromised` audit event (and logged)
    // by the store.
    let refreshed = refreshed.map_err(AuthError::Refresh)?;
    if refreshed.outcome == RefreshOutcome::GraceRetry {
        tracing::debug!(session_id = %token.session_id, "grace retry");
    }
    // The profile cache spares the database read on the hot path (see `Store::profile`).
    let user = auth
        .store
        .profile(refreshed.session.user_id)
        .await?
        .ok_or(AuthError::Refresh(SessionError::NotFound))?;
    // A session opened by a login that raced `sessiond user disable` is still refused.
    if user.status != UserStatus::Active {
        return Err(AuthError::Refresh(SessionError::Rejected(
            Rejection::AccountDisabled,
        )));
    }
    Ok(Rotated {
        user,
        session: refreshed.session,
        refresh_token: refreshed.refresh_token,
        outcome: refreshed.outcome,
    })
}

/// Ends the session the presented refresh token belongs to (logout by refresh token): revoked
/// through its actor with reason `logout` if the token is its current or previous generation
/// (compared in constant time; the previous one because a refresh may have rotated it while
/// the logout was on its way). A malformed token, a token of no live session, or one that is
/// not the session's answers `None` and changes nothing — logging out is idempotent, and a
/// session id alone (which is not a secret) ends nothing.
pub async fn end(auth: &Auth<'_>, presented: &str) -> Result<Option<SessionId>, AuthError> {
    let Ok(token) = RefreshToken::parse(presented) else {
        return Ok(None);
    };
    let session = match auth.sessions.check(token.session_id).await {
        Ok(session) => session,
        // Already ended, expired or purged: nothing to do.
        Err(SessionError::Rejected(_) | SessionError::NotFound) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    // An OAuth grant is ended by its client (`/oauth2/revoke`) or by the user
    // (`DELETE /v1/auth/grants/{id}`), never by a first-party logout (issue #12).
    if super::oauth::is_grant(&session) {
        return Ok(None);
    }
    match rotation::classify(&session, &token.secret.hash()) {
        SecretMatch::Current | SecretMatch::Previous => {}
        SecretMatch::Other => return Ok(None),
    }
    match auth.sessions.revoke(session.id, RevokeReason::Logout).await {
        Ok(()) => Ok(Some(session.id)),
        Err(SessionError::NotFound) => Ok(None),
        Err(e) => Err(e.into()),
    }
}
