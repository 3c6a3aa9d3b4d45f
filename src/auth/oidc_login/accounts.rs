//! Who a provider login is: the account rules.
//!
//! 1. A provider subject already linked logs in its account.
//! 2. Otherwise the provider must give an email (`provider_email_missing`).
//! 3. No account has that email: a new account without a password is created and linked; its
//!    email counts as verified only when the provider is trusted for it (`trust_email`) and
//!    asserted `email_verified`.
//! 4. An account has that email: it is linked automatically **only** when the provider is
//!    trusted for emails, asserted `email_verified`, and the account's own email is verified
//!    too. Anything less would let whoever controls an account at some provider — with an
//!    address they never proved, or one the sessiond account never proved — take over the
//!    sessiond account. Otherwise `account_exists_link_required` (or, under
//!    `SESSIOND_REGISTER_CONFLICT=conceal`, the generic `oidc_login_failed`): the owner logs in
//!    and links explicitly.
//!
//! The provider login is the first factor: an account with a second factor is still asked for
//! it, unless the provider asserted an `acr`/`amr` the operator trusts as phishing-resistant.

use sessiond_actors::ids::UserId;
use sessiond_actors::model::NewSession;
use uuid::Uuid;

use super::port::{Identity, OidcStore};
use super::providers::VerifiedLogin;
use super::{OidcFailure, OidcFlows, kind};
use crate::auth::login::{self, LoginOutcome};
use crate::auth::passkeys::port::PasskeyStore;
use crate::auth::sessions;
use crate::auth::{Auth, AuthError};
use crate::config::OidcProviderSettings;
use crate::domain::Email;
use crate::store::audit::{AuditClient, AuditEvent};
use crate::store::{CreateUserError, NewUser, User, UserProfile, UserStatus};

/// The `amr` of a session opened by a provider login (RFC 8176 has no value for a federated
/// login; `fed` is what several providers use).
pub const AMR_FEDERATED: &str = "fed";

/// The account this provider login is, by the rules above.
pub async fn resolve(
    flows: &OidcFlows<'_>,
    settings: &OidcProviderSettings,
    login: &VerifiedLogin,
    client: &AuditClient,
) -> Result<User, AuthError> {
    let auth = &flows.auth;
    let store = auth.store;
    if let Some(identity) = store.find_identity(&settings.name, &login.subject).await? {
        let user = store
            .get_user(identity.user_id)
            .await?
            .ok_or(OidcFailure::LoginFailed)?;
        return active(user);
    }
    let email = login
        .email
        .as_deref()
        .and_then(|e| Email::parse(e).ok())
        .ok_or(OidcFailure::ProviderEmailMissing)?;
    let trusted_email = settings.trust_email && login.email_verified;
    if let Some(user) = store.find_user_by_email(email.as_str()).await? {
        if trusted_email && user.email_verified_at.is_some() {
            link(auth, settings, user.id, login, "verified_email", client).await?;
            return active(user);
        }
        return Err(if flows.conceal {
            OidcFailure::LoginFailed
        } else {
            OidcFailure::AccountExistsLinkRequired
        }
        .into());
    }
    let name = login
        .name
        .as_deref()
        .and_then(|n| crate::domain::DisplayName::parse(n).ok())
        .map(|n| n.as_str().to_owned());
    let created = store
        .create_user_from(
            &NewUser {
                email: email.as_str().to_owned(),
                name,
                password_hash: None,
            },
            client,
        )
        .await;
    let mut user = match created {
        Ok(user) => user,
        // Registered meanwhile (a concurrent first login or a registration): the rules above
        // apply to it on the next attempt; refuse this one the way they would.
        Err(CreateUserError::EmailTaken) => {
            return Err(if flows.conceal {
                OidcFailure::LoginFailed
            } else {
                OidcFailure::AccountExistsLinkRequired
            }
            .into());
        }
        Err(CreateUserError::Store(e)) => return Err(e.into()),
    };
    if trusted_email {
        let now = auth.clock.now();
        store.mark_email_verified(user.id, now).await?;
        user.email_verified_at = Some(now);
    }
    link(auth, settings, user.id, login, "new_account", client).await?;
    Ok(user)
}

/// Links the provider account to the signed-in `user` (the explicit link). Linking it again
/// to the same user is a no-op; linking one that belongs to another account is refused.
pub async fn link_explicitly(
    flows: &OidcFlows<'_>,
    settings: &OidcProviderSettings,
    user: UserId,
    login: &VerifiedLogin,
    client: &AuditClient,
) -> Result<(), AuthError> {
    match flows
        .auth
        .store
        .find_identity(&settings.name, &login.subject)
        .await?
    {
        Some(identity) if identity.user_id == user => Ok(()),
        Some(_) => Err(OidcFailure::IdentityInUse.into()),
        None => link(&flows.auth, settings, user, login, "explicit", client).await,
    }
}

/// Stores the link and audits it.
async fn link(
    auth: &Auth<'_>,
    settings: &OidcProviderSettings,
    user: UserId,
    login: &VerifiedLogin,
    how: &'static str,
    client: &AuditClient,
) -> Result<(), AuthError> {
    let now = auth.clock.now();
    let inserted = auth
        .store
        .insert_identity(&Identity {
            id: Uuid::now_v7(),
            user_id: user,
            provider: settings.name.clone(),
            subject: login.subject.clone(),
            email: login.email.clone(),
            linked_at: now,
        })
        .await?;
    if !inserted {
        // Linked by a concurrent callback: to this user is fine, to another is not.
        let owner = auth
            .store
            .find_identity(&settings.name, &login.subject)
            .await?;
        return match owner {
            Some(i) if i.user_id == user => Ok(()),
            _ => Err(OidcFailure::IdentityInUse.into()),
        };
    }
    let event = AuditEvent::new(kind::IDENTITY_LINKED, now)
        .user(user)
        .client(client)
        .detail("provider", settings.name.as_str())
        .detail("how", how);
    auth.store.record_event(&event).await?;
    Ok(())
}

/// Refuses disabled accounts (one generic answer).
fn active(user: User) -> Result<User, AuthError> {
    if user.status == UserStatus::Active {
        Ok(user)
    } else {
        Err(OidcFailure::LoginFailed.into())
    }
}

/// The end of a provider login for `user`: a session (`aal` 1, `amr` `["fed"]`; `aal` 2 with
/// `mfa` when the provider asserted a trusted second factor), or a second-factor challenge
/// when the account has one — the same [`LoginOutcome`] a password login gives.
pub async fn finish_login(
    auth: &Auth<'_>,
    user: &User,
    trusted_second_factor: bool,
    client: &AuditClient,
) -> Result<LoginOutcome, AuthError> {
    if user.status != UserStatus::Active {
        return Err(OidcFailure::LoginFailed.into());
    }
    if auth.require_verified_email && user.email_verified_at.is_none() {
        return Err(AuthError::EmailNotVerified);
    }
    let status = auth.store.mfa_status(user.id).await?;
    let has_passkey = !PasskeyStore::list_passkeys(auth.store, user.id)
        .await?
        .is_empty();
    let second_factor = status.enabled_at.is_some() || has_passkey;
    if second_factor && !trusted_second_factor {
        let challenge =
            login::open_challenge(auth, user, &status, has_passkey, None, client).await?;
        return Ok(LoginOutcome::MfaRequired(challenge));
    }
    let mut amr = vec![AMR_FEDERATED.to_owned()];
    if trusted_second_factor {
        amr.push("mfa".to_owned());
    }
    let issued = sessions::start(
        auth,
        UserProfile::from(user),
        NewSession {
            user_id: user.id,
            auth_time: auth.clock.now(),
            aal: if trusted_second_factor { 2 } else { 1 },
            amr,
            device_name: None,
            user_agent: client.user_agent.clone(),
            ip: client.ip.clone(),
            grant: None,
        },
    )
    .await?;
    Ok(LoginOutcome::Session(Box::new(issued)))
}
