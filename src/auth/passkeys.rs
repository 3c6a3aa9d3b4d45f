//! Passkeys (WebAuthn, through webauthn-rs): registration, step-up of the current session,
//! passwordless login with a discoverable credential, and the second factor of a password
//! login. Without HTTP: handlers in `http/routes/passkeys.rs` parse, call one flow of
//! [`PasskeyFlows`] and build the view.
//!
//! **Ceremonies** (start → the browser → finish) keep webauthn-rs's state in the database
//! (`webauthn_ceremonies`, the crate's `danger-allow-state-serialisation`), so any instance can
//! finish what another started. Each is single-use (taken by one statement), lives
//! [`CEREMONY_TTL`], and is bound to its kind and to whom it was started for (the user and
//! session, or the login challenge); a ceremony id that fails any of these is
//! [`AuthError::InvalidCeremony`] and changes nothing.
//!
//! **Registration** asks for a discoverable credential (`residentKey: required`) with user
//! verification required and the user's passkeys excluded: webauthn-rs's passkey registration
//! asks for `residentKey: discouraged`, under which browsers create credentials that a
//! passwordless login (empty `allowCredentials`) cannot find, so the options are adjusted.
//!
//! **Levels** (RFC 8176): a passkey ceremony gives `aal` 2 and `amr` `hwk` (the credential is
//! bound to one device: not backup-eligible) or `swk` (it may be synced), `user`, and `mfa`
//! when the authenticator verified the user (always, since verification is required).
//!
//! **Counters**: the stored counter (a column, authoritative) must grow on authenticators that
//! count; a regression suggests a cloned authenticator and is refused
//! ([`AuthError::PasskeyCounterRegressed`]), audited and mailed to the owner. Every success
//! moves the counter by compare-and-set.

pub mod attestation;
pub mod port;

use std::time::Duration;

use chrono::{DateTime, Utc};
use sessiond_actors::ids::{SessionId, UserId};
use sessiond_actors::model::{NewSession, SessionRecord};
use sessiond_actors::sessions::Authentication;
use uuid::Uuid;
use webauthn_rs::prelude::{
    Credential, DiscoverableAuthentication, Passkey, PasskeyAuthentication, PasskeyRegistration,
    PublicKeyCredential, RegisterPublicKeyCredential, Url, Webauthn, WebauthnBuilder,
    WebauthnError,
};
use webauthn_rs_proto::{
    CreationChallengeResponse, Mediation, RequestChallengeResponse, ResidentKeyRequirement,
};

use self::port::{Ceremony, CeremonyKind, PasskeyStore, PasskeyUse, StoredPasskey};
use super::sessions::{self, IssuedSession};
use super::{Auth, AuthError, second_factor};
use crate::config::RelyingParty;
use crate::mail::Mailer;
use crate::mfa::RecoveryCode;
use crate::store::UserProfile;
use crate::store::UserStatus;
use crate::store::audit::{AuditClient, AuditEvent};
use crate::store::mfa::{ChallengeAttempt, CompleteOutcome, SecondFactor};
use crate::store::truncate_to_micros;

/// How long a ceremony can be finished after its start.
pub const CEREMONY_TTL: Duration = Duration::from_secs(300);

/// Audit kinds written here.
pub mod kind {
    /// A passkey was registered.
    pub const PASSKEY_REGISTERED: &str = "passkey_registered";
    /// A passkey was deleted.
    pub const PASSKEY_DELETED: &str = "passkey_deleted";
    /// A passkey's counter went backwards (a cloned authenticator?): refused.
    pub const PASSKEY_COUNTER_REGRESSED: &str = "passkey_counter_regressed";
    /// A passkey ceremony failed its checks (signature, origin, RP id, user verification,
    /// unknown credential).
    pub const PASSKEY_REJECTED: &str = "passkey_rejected";
    /// A session was raised to `aal` 2 with a passkey.
    pub const PASSKEY_STEP_UP: &str = "passkey_step_up";
}

/// The relying party: webauthn-rs configured for the RP id and origins. Built once at start-up.
pub struct Passkeys {
    webauthn: Webauthn,
    rp: RelyingParty,
}

impl Passkeys {
    /// Configures webauthn-rs for `rp` (the settings were checked at start-up; this fails only
    /// if webauthn-rs disagrees).
    pub fn new(rp: RelyingParty) -> Result<Self, String> {
        let first: &Url = rp.origins.first().ok_or("no WebAuthn origin")?;
        let mut builder = WebauthnBuilder::new(&rp.rp_id, first)
            .map_err(|e| format!("WebAuthn relying party {}: {e}", rp.rp_id))?
            .rp_name(&rp.rp_name)
            .timeout(CEREMONY_TTL);
        for origin in &rp.origins[1..] {
            builder = builder.append_allowed_origin(origin);
        }
        let webauthn = builder
            .build()
            .map_err(|e| format!("WebAuthn relying party {}: {e}", rp.rp_id))?;
        Ok(Self { webauthn, rp })
    }

    /// The relying party.
    pub fn relying_party(&self) -> &RelyingParty {
        &self.rp
    }
}

/// The passkey flows over the application's services. `passkeys` is None when no relying
/// party is configured: every flow then answers [`AuthError::PasskeysDisabled`].
#[derive(Clone, Copy)]
pub struct PasskeyFlows<'a> {
    /// Store, sessions, MFA keys, clock, limits.
    pub auth: Auth<'a>,
    /// The relying party, if passkeys are on.
    pub passkeys: Option<&'a Passkeys>,
    /// For the counter-regression warning.
    pub mailer: &'a Mailer,
}

/// A started ceremony: the id to finish it with and the options for
/// `navigator.credentials.create/get`.
#[derive(Debug)]
pub struct Started<O> {
    /// Pass back at the finish.
    pub ceremony_id: Uuid,
    /// webauthn-rs's options (`{"publicKey": {...}}`).
    pub options: O,
}

/// A registered passkey, with the recovery codes when it was the account's first second factor.
pub struct Registered {
    /// The new passkey.
    pub passkey: StoredPasskey,
    /// Ten recovery codes, shown once; None if the account had a second factor already.
    pub recovery_codes: Option<Vec<RecoveryCode>>,
}

/// A verified assertion.
struct Asserted {
    passkey: StoredPasskey,
    amr: Vec<String>,
}

fn bound_to_session(user: UserId, session: SessionId) -> String {
    format!("user:{user}/session:{session}")
}

fn bound_to_challenge(challenge: Uuid) -> String {
    format!("challenge:{challenge}")
}

/// RFC 8176 methods of a passkey ceremony.
fn amr_for(backup_eligible: bool, user_verified: bool) -> Vec<String> {
    let mut amr = vec![
        if backup_eligible { "swk" } else { "hwk" }.to_owned(),
        "user".to_owned(),
    ];
    if user_verified {
        amr.push("mfa".to_owned());
    }
    amr
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, AuthError> {
    serde_json::to_string(value).map_err(AuthError::internal)
}

fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, AuthError> {
    serde_json::from_str(text).map_err(AuthError::internal)
}

/// The stored passkey for webauthn-rs, with the counter column (authoritative) in it.
fn credential_of(stored: &StoredPasskey) -> Result<Credential, AuthError> {
    let passkey: Passkey = from_json(&stored.passkey_json)?;
    let mut credential = Credential::from(passkey);
    credential.counter = stored.sign_count;
    credential.backup_eligible = stored.backup_eligible;
    credential.backup_state = stored.backup_state;
    Ok(credential)
}

impl<'a> PasskeyFlows<'a> {
    fn rp(&self) -> Result<&'a Passkeys, AuthError> {
        self.passkeys.ok_or(AuthError::PasskeysDisabled)
    }

    /// [`AuthError::PasskeysDisabled`] unless a relying party is configured: lets a route
    /// answer 404 `passkeys_disabled` before its other rules, without touching the store.
    pub fn ensure_enabled(&self) -> Result<(), AuthError> {
        self.rp().map(|_| ())
    }

    fn now(&self) -> DateTime<Utc> {
        self.auth.clock.now()
    }

    async fn store_ceremony(
        &self,
        kind: CeremonyKind,
        bound_to: String,
        state: String,
        name: Option<String>,
    ) -> Result<Uuid, AuthError> {
        let now = self.now();
        let ceremony = Ceremony {
            id: Uuid::now_v7(),
            kind,
            bound_to,
            state,
            name,
            created_at: now,
            expires_at: now
                + chrono::Duration::from_std(CEREMONY_TTL).map_err(AuthError::internal)?,
        };
        self.auth.store.insert_ceremony(&ceremony).await?;
        Ok(ceremony.id)
    }

    async fn take(
        &self,
        id: Uuid,
        kind: CeremonyKind,
        bound_to: &str,
    ) -> Result<Ceremony, AuthError> {
        self.auth
            .store
            .take_ceremony(id, kind, bound_to, self.now())
            .await?
            .ok_or(AuthError::InvalidCeremony)
    }

    /// Whether `user` has a second factor (TOTP on, or a passkey).
    async fn has_second_factor(&self, user: UserId) -> Result<bool, AuthError> {
        let totp = self.auth.store.mfa_status(user).await?.enabled_at.is_some();
        Ok(totp || !self.auth.store.list_passkeys(user).await?.is_empty())
    }

    /// Starts registering a passkey named `name` for the signed-in `user` (the caller applied
    /// the reauthentication rule).
    pub async fn register_start(
        &self,
        user: UserId,
        session: SessionId,
        name: String,
    ) -> Result<Started<CreationChallengeResponse>, AuthError> {
        let rp = self.rp()?;
        let account = self
            .auth
            .store
            .get_user(user)
            .await?
            .ok_or(AuthError::AccountGone)?;
        let exclude: Vec<_> = self
            .auth
            .store
            .list_passkeys(user)
            .await?
            .into_iter()
            .map(|p| p.credential_id)
            .collect();
        let display = account
            .name
            .clone()
            .unwrap_or_else(|| account.email.clone());
        let (mut options, state) = rp
            .webauthn
            .start_passkey_registration(user.as_uuid(), &account.email, &display, Some(exclude))
            .map_err(AuthError::internal)?;
        // A discoverable credential, so passwordless login (empty allowCredentials) finds it.
        let selection = options
            .public_key
            .authenticator_selection
            .get_or_insert_with(Default::default);
        selection.resident_key = Some(ResidentKeyRequirement::Required);
        selection.require_resident_key = true;
        let state: PasskeyRegistration = state;
        let ceremony_id = self
            .store_ceremony(
                CeremonyKind::Register,
                bound_to_session(user, session),
                to_json(&state)?,
                Some(name),
            )
            .await?;
        Ok(Started {
            ceremony_id,
            options,
        })
    }

    /// Finishes a registration: verifies the authenticator's answer against the ceremony and
    /// stores the passkey (with recovery codes if it is the account's first second factor).
    pub async fn register_finish(
        &self,
        user: UserId,
        session: SessionId,
        ceremony_id: Uuid,
        credential: &RegisterPublicKeyCredential,
        client: &AuditClient,
    ) -> Result<Registered, AuthError> {
        let rp = self.rp()?;
        let ceremony = self
            .take(
                ceremony_id,
                CeremonyKind::Register,
                &bound_to_session(user, session),
            )
            .await?;
        let state: PasskeyRegistration = from_json(&ceremony.state)?;
        let now = self.now();
        let passkey = match rp.webauthn.finish_passkey_registration(credential, &state) {
            Ok(p) => p,
            Err(e) => {
                self.rejected(Some(user), client, "register", &e).await?;
                return Err(AuthError::PasskeyRejected);
            }
        };
        let first_factor = !self.has_second_factor(user).await?;
        let recovery = first_factor.then(|| self.auth.mfa.new_recovery_codes());
        let hashes: Option<Vec<[u8; 32]>> = recovery
            .as_ref()
            .map(|codes| codes.iter().map(|(_, h)| *h).collect());
        let internals = Credential::from(passkey.clone());
        let stored = StoredPasskey {
            id: Uuid::now_v7(),
            user_id: user,
            credential_id: passkey.cred_id().to_vec(),
            passkey_json: to_json(&passkey)?,
            sign_count: internals.counter,
            backup_eligible: internals.backup_eligible,
            backup_state: internals.backup_state,
            transports: credential
                .response
                .transports
                .iter()
                .flatten()
                .filter_map(|t| serde_json::to_value(t).ok())
                .filter_map(|v| v.as_str().map(str::to_owned))
                .filter(|t| t != "unknown")
                .collect(),
            aaguid: attestation::aaguid(&credential.response.attestation_object)
                .unwrap_or_default(),
            name: ceremony.name.unwrap_or_else(|| "Passkey".into()),
            created_at: truncate_to_micros(now),
            last_used_at: None,
        };
        let event = AuditEvent::new(kind::PASSKEY_REGISTERED, now)
            .user(user)
            .session(session)
            .client(client)
            .detail("passkey_id", stored.id.to_string())
            .detail("backup_eligible", stored.backup_eligible);
        if !self
            .auth
            .store
            .insert_passkey(&stored, hashes.as_deref(), &event)
            .await?
        {
            // This credential id is registered already (excludeCredentials was ignored).
            return Err(AuthError::PasskeyRejected);
        }
        Ok(Registered {
            passkey: stored,
            recovery_codes: recovery.map(|codes| codes.into_iter().map(|(c, _)| c).collect()),
        })
    }

    /// The user's passkeys.
    pub async fn list(&self, user: UserId) -> Result<Vec<StoredPasskey>, AuthError> {
        self.rp()?;
        Ok(self.auth.store.list_passkeys(user).await?)
    }

    /// Renames one of the user's passkeys.
    pub async fn rename(
        &self,
        user: UserId,
        id: Uuid,
        name: &str,
    ) -> Result<StoredPasskey, AuthError> {
        self.rp()?;
        self.auth
            .store
            .rename_passkey(user, id, name)
            .await?
            .ok_or(AuthError::PasskeyNotFound)
    }

    /// Deletes one of the user's passkeys (the caller applied the reauthentication rule).
    /// The account's last second factor goes only with `confirm`
    /// ([`AuthError::LastSecondFactor`] otherwise), and its recovery codes with it.
    pub async fn delete(
        &self,
        user: UserId,
        session: SessionId,
        id: Uuid,
        confirm: bool,
        client: &AuditClient,
    ) -> Result<(), AuthError> {
        self.rp()?;
        let passkeys = self.auth.store.list_passkeys(user).await?;
        if !passkeys.iter().any(|p| p.id == id) {
            return Err(AuthError::PasskeyNotFound);
        }
        let totp = self.auth.store.mfa_status(user).await?.enabled_at.is_some();
        let last = !totp && passkeys.len() == 1;
        if last && !confirm {
            return Err(AuthError::LastSecondFactor);
        }
        let event = AuditEvent::new(kind::PASSKEY_DELETED, self.now())
            .user(user)
            .session(session)
            .client(client)
            .detail("passkey_id", id.to_string())
            .detail("last_second_factor", last);
        if !self
            .auth
            .store
            .delete_passkey(user, id, last, &event)
            .await?
        {
            return Err(AuthError::PasskeyNotFound);
        }
        Ok(())
    }

    /// Options asking for one of `user`'s passkeys; [`AuthError::NoPasskeys`] without any.
    async fn authentication_options(
        &self,
        user: UserId,
    ) -> Result<(RequestChallengeResponse, PasskeyAuthentication), AuthError> {
        let rp = self.rp()?;
        let passkeys = self
            .auth
            .store
            .list_passkeys(user)
            .await?
            .iter()
            .map(|p| credential_of(p).map(Passkey::from))
            .collect::<Result<Vec<_>, _>>()?;
        if passkeys.is_empty() {
            return Err(AuthError::NoPasskeys);
        }
        rp.webauthn
            .start_passkey_authentication(&passkeys)
            .map_err(AuthError::internal)
    }

    /// Starts a step-up of the current session.
    pub async fn step_up_start(
        &self,
        user: UserId,
        session: SessionId,
    ) -> Result<Started<RequestChallengeResponse>, AuthError> {
        let (options, state) = self.authentication_options(user).await?;
        let ceremony_id = self
            .store_ceremony(
                CeremonyKind::StepUp,
                bound_to_session(user, session),
                to_json(&state)?,
                None,
            )
            .await?;
        Ok(Started {
            ceremony_id,
            options,
        })
    }

    /// Finishes a step-up: the session (only this one) gets `aal` 2, the passkey's `amr` and
    /// `auth_time` now, committed through its actor and published to other instances.
    pub async fn step_up_finish(
        &self,
        user: UserId,
        session: SessionId,
        ceremony_id: Uuid,
        credential: &PublicKeyCredential,
        client: &AuditClient,
    ) -> Result<SessionRecord, AuthError> {
        self.rp()?;
        let ceremony = self
            .take(
                ceremony_id,
                CeremonyKind::StepUp,
                &bound_to_session(user, session),
            )
            .await?;
        let state: PasskeyAuthentication = from_json(&ceremony.state)?;
        let asserted = self
            .assert(user, credential, client, |rp, cred| {
                rp.webauthn
                    .finish_passkey_authentication(credential, &with_credential(&state, cred)?)
            })
            .await?;
        let now = self.now();
        let record = self
            .auth
            .sessions
            .authenticate(
                session,
                Authentication {
                    auth_time: truncate_to_micros(now),
                    aal: 2,
                    amr: asserted.amr.clone(),
                },
            )
            .await?;
        let event = AuditEvent::new(kind::PASSKEY_STEP_UP, now)
            .user(user)
            .session(session)
            .client(client)
            .detail("passkey_id", asserted.passkey.id.to_string());
        self.auth.store.record_event(&event).await?;
        Ok(record)
    }

    /// Starts a passwordless login: empty `allowCredentials` (the authenticator offers its
    /// discoverable credentials for this RP); `conditional` asks for conditional mediation
    /// (autofill UI).
    pub async fn login_start(
        &self,
        conditional: bool,
    ) -> Result<Started<RequestChallengeResponse>, AuthError> {
        let rp = self.rp()?;
        let (mut options, state): (_, DiscoverableAuthentication) = rp
            .webauthn
            .start_discoverable_authentication()
            .map_err(AuthError::internal)?;
        options.mediation = conditional.then_some(Mediation::Conditional);
        let ceremony_id = self
            .store_ceremony(CeremonyKind::Login, String::new(), to_json(&state)?, None)
            .await?;
        Ok(Started {
            ceremony_id,
            options,
        })
    }

    /// Finishes a passwordless login: the credential names its user (user handle), which must
    /// be the passkey's owner; a new session at `aal` 2.
    pub async fn login_finish(
        &self,
        ceremony_id: Uuid,
        credential: &PublicKeyCredential,
        device_name: Option<String>,
        client: &AuditClient,
    ) -> Result<IssuedSession, AuthError> {
        let rp = self.rp()?;
        let ceremony = self.take(ceremony_id, CeremonyKind::Login, "").await?;
        let state: DiscoverableAuthentication = from_json(&ceremony.state)?;
        let Ok((handle, _)) = rp.webauthn.identify_discoverable_authentication(credential) else {
            self.rejected(None, client, "login", &WebauthnError::InvalidUserUniqueId)
                .await?;
            return Err(AuthError::PasskeyRejected);
        };
        let user = UserId(handle);
        let asserted = self
            .assert(user, credential, client, |rp, cred| {
                rp.webauthn
                    .finish_discoverable_authentication_v2(credential, state.clone(), cred)
            })
            .await?;
        let account = self
            .auth
            .store
            .get_user(user)
            .await?
            .filter(|u| u.status == UserStatus::Active)
            .ok_or(AuthError::PasskeyRejected)?;
        if self.auth.require_verified_email && account.email_verified_at.is_none() {
            return Err(AuthError::EmailNotVerified);
        }
        let now = self.now();
        sessions::start(
            &self.auth,
            UserProfile::from(&account),
            NewSession {
                user_id: user,
                auth_time: now,
                aal: 2,
                amr: asserted.amr,
                device_name,
                user_agent: client.user_agent.clone(),
                ip: client.ip.clone(),
                grant: None,
            },
        )
        .await
    }

    /// Starts the passkey second factor of an `mfa_required` login challenge (counts one of
    /// the challenge's attempts).
    pub async fn mfa_start(
        &self,
        challenge_id: Uuid,
    ) -> Result<Started<RequestChallengeResponse>, AuthError> {
        self.rp()?;
        let challenge = match self
            .auth
            .store
            .attempt_mfa_challenge(challenge_id, self.now(), self.auth.mfa.max_attempts)
            .await?
        {
            ChallengeAttempt::Granted(c) => c,
            ChallengeAttempt::Exhausted => return Err(AuthError::MfaAttemptsExceeded),
            ChallengeAttempt::Invalid => return Err(AuthError::MfaChallengeInvalid),
        };
        let (options, state) = self.authentication_options(challenge.user_id).await?;
        let ceremony_id = self
            .store_ceremony(
                CeremonyKind::Mfa,
                bound_to_challenge(challenge_id),
                to_json(&state)?,
                // The session's label, given at the password step.
                challenge.device_name,
            )
            .await?;
        Ok(Started {
            ceremony_id,
            options,
        })
    }

    /// Completes an `mfa_required` login challenge with a passkey: on the account's
    /// second-factor lock like a code; the challenge is consumed; a session at `aal` 2 with
    /// `amr` `pwd` plus the passkey's methods.
    pub async fn mfa_finish(
        &self,
        challenge_id: Uuid,
        ceremony_id: Uuid,
        credential: &PublicKeyCredential,
        client: &AuditClient,
    ) -> Result<IssuedSession, AuthError> {
        self.rp()?;
        let ceremony = self
            .take(
                ceremony_id,
                CeremonyKind::Mfa,
                &bound_to_challenge(challenge_id),
            )
            .await?;
        let state: PasskeyAuthentication = from_json(&ceremony.state)?;
        // The owner of the challenge: the state names only credentials of that account, and
        // the stored passkey's owner is checked again below.
        let owner = self
            .auth
            .store
            .passkey_by_credential_id(credential.get_credential_id())
            .await?
            .map(|p| p.user_id);
        let Some(user_id) = owner else {
            self.rejected(None, client, "mfa", &WebauthnError::CredentialNotFound)
                .await?;
            return Err(AuthError::PasskeyRejected);
        };
        second_factor::reserve(&self.auth, user_id).await?;
        let asserted = self
            .assert(user_id, credential, client, |rp, cred| {
                rp.webauthn
                    .finish_passkey_authentication(credential, &with_credential(&state, cred)?)
            })
            .await?;
        let now = self.now();
        match self
            .auth
            .store
            .complete_mfa_challenge(
                challenge_id,
                user_id,
                SecondFactor::Passkey(asserted.passkey.id),
                now,
            )
            .await?
        {
            CompleteOutcome::Completed => {}
            CompleteOutcome::ChallengeGone => return Err(AuthError::MfaChallengeInvalid),
            CompleteOutcome::FactorRejected => return Err(AuthError::PasskeyRejected),
        }
        let challenge_user = self
            .auth
            .store
            .get_user(user_id)
            .await?
            .filter(|u| u.status == UserStatus::Active)
            .ok_or(AuthError::MfaChallengeInvalid)?;
        second_factor::record_success(&self.auth, user_id).await?;
        let client_ip = client.ip.as_deref().and_then(|ip| ip.parse().ok());
        self.auth
            .limiter
            .login_succeeded(&challenge_user.email, client_ip)
            .await;
        let mut amr = vec!["pwd".to_owned()];
        amr.extend(asserted.amr);
        sessions::start(
            &self.auth,
            UserProfile::from(&challenge_user),
            NewSession {
                user_id,
                auth_time: now,
                aal: 2,
                amr,
                device_name: ceremony.name,
                user_agent: client.user_agent.clone(),
                ip: client.ip.clone(),
                grant: None,
            },
        )
        .await
    }

    /// Checks an assertion by `user` with `verify` (the crate's check for the ceremony), then
    /// records the new counter. The credential must be a stored passkey of `user`.
    async fn assert(
        &self,
        user: UserId,
        credential: &PublicKeyCredential,
        client: &AuditClient,
        verify: impl FnOnce(
            &Passkeys,
            &Credential,
        )
            -> Result<webauthn_rs::prelude::AuthenticationResult, WebauthnError>,
    ) -> Result<Asserted, AuthError> {
        let rp = self.rp()?;
        let stored = self
            .auth
            .store
            .passkey_by_credential_id(credential.get_credential_id())
            .await?
            .filter(|p| p.user_id == user);
        let Some(stored) = stored else {
            // Unknown, deleted, or another user's credential.
            self.rejected(
                Some(user),
                client,
                "assert",
                &WebauthnError::CredentialNotFound,
            )
            .await?;
            return Err(AuthError::PasskeyRejected);
        };
        let cred = credential_of(&stored)?;
        let result = match verify(rp, &cred) {
            Ok(r) => r,
            Err(WebauthnError::CredentialPossibleCompromise) => {
                self.counter_regressed(&stored, client).await?;
                return Err(AuthError::PasskeyCounterRegressed);
            }
            Err(e) => {
                self.rejected(Some(user), client, "assert", &e).await?;
                return Err(AuthError::PasskeyRejected);
            }
        };
        if !result.user_verified() {
            // Required by the options; an authenticator that ignored it is refused.
            self.rejected(
                Some(user),
                client,
                "assert",
                &WebauthnError::UserNotVerified,
            )
            .await?;
            return Err(AuthError::PasskeyRejected);
        }
        let mut passkey = Passkey::from(cred);
        passkey.update_credential(&result);
        let internals = Credential::from(passkey.clone());
        let usage = PasskeyUse {
            expected_sign_count: stored.sign_count,
            sign_count: internals.counter,
            passkey_json: to_json(&passkey)?,
            backup_eligible: internals.backup_eligible,
            backup_state: internals.backup_state,
            at: truncate_to_micros(self.now()),
        };
        if !self
            .auth
            .store
            .record_passkey_use(stored.id, &usage)
            .await?
        {
            // A concurrent assertion moved the counter first (or the passkey was deleted).
            return Err(AuthError::PasskeyRejected);
        }
        Ok(Asserted {
            amr: amr_for(internals.backup_eligible, result.user_verified()),
            passkey: stored,
        })
    }

    async fn rejected(
        &self,
        user: Option<UserId>,
        client: &AuditClient,
        ceremony: &'static str,
        error: &WebauthnError,
    ) -> Result<(), AuthError> {
        tracing::info!(error = %error, ceremony, "passkey rejected");
        let mut event = AuditEvent::new(kind::PASSKEY_REJECTED, self.now())
            .client(client)
            .detail("ceremony", ceremony)
            .detail("reason", format!("{error:?}"));
        if let Some(user) = user {
            event = event.user(user);
        }
        Ok(self.auth.store.record_event(&event).await?)
    }

    async fn counter_regressed(
        &self,
        stored: &StoredPasskey,
        client: &AuditClient,
    ) -> Result<(), AuthError> {
        let event = AuditEvent::new(kind::PASSKEY_COUNTER_REGRESSED, self.now())
            .user(stored.user_id)
            .client(client)
            .detail("passkey_id", stored.id.to_string())
            .detail("stored_counter", i64::from(stored.sign_count));
        self.auth.store.record_event(&event).await?;
        tracing::warn!(
            user_id = %stored.user_id,
            passkey_id = %stored.id,
            "passkey counter went backwards: possibly a cloned authenticator; refused"
        );
        if let Some(owner) = self.auth.store.get_user(stored.user_id).await? {
            self.mailer
                .send(crate::mail::templates::passkey_counter_regressed_mail(
                    &owner.email,
                    stored.user_id,
                    &stored.name,
                ));
        }
        Ok(())
    }
}

/// The ceremony state with the stored credential (current counter) as its only allowed one.
fn with_credential(
    state: &PasskeyAuthentication,
    cred: &Credential,
) -> Result<PasskeyAuthentication, WebauthnError> {
    // The state holds the credentials as they were at the start; the stored counter may have
    // moved since. Rebuild it through its serialised form with the current credential.
    let mut value =
        serde_json::to_value(state).map_err(|_| WebauthnError::ChallengePersistenceError)?;
    let current =
        serde_json::to_value(cred).map_err(|_| WebauthnError::ChallengePersistenceError)?;
    let credentials = value
        .pointer_mut("/ast/credentials")
        .and_then(|v| v.as_array_mut())
        .ok_or(WebauthnError::ChallengePersistenceError)?;
    let id = current.get("cred_id").cloned();
    let mut found = false;
    for c in credentials.iter_mut() {
        if c.get("cred_id") == id.as_ref() {
            *c = current.clone();
            found = true;
        }
    }
    if !found {
        // Not one of the credentials this ceremony asked for.
        return Err(WebauthnError::CredentialNotFound);
    }
    serde_json::from_value(value).map_err(|_| WebauthnError::ChallengePersistenceError)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amr_names_the_kind_of_key_and_verification() {
        assert_eq!(amr_for(false, true), ["hwk", "user", "mfa"]);
        assert_eq!(amr_for(true, true), ["swk", "user", "mfa"]);
        assert_eq!(amr_for(true, false), ["swk", "user"]);
    }
}
