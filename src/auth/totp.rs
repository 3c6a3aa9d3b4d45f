//! Turning TOTP on and off for a signed-in user: starting an enrolment (a new sealed secret),
//! confirming it with a first code (MFA on, recovery codes issued), and disabling it with the
//! password and a second factor. The login challenge is [`super::mfa_login`].

use sessiond_actors::ids::{SessionId, UserId};

use super::mfa_login::{self, Proof};
use super::{Auth, AuthError, current_password};
use crate::mfa::{RecoveryCode, TotpSecret, qr_svg};
use crate::store::audit::{AuditClient, AuditEvent};

/// Audit kind: TOTP was confirmed and turned on.
pub const MFA_ENABLED: &str = "mfa_enabled";
/// Audit kind: TOTP was turned off.
pub const MFA_DISABLED: &str = "mfa_disabled";

/// A started enrolment: what the user needs to set up an authenticator app. Holds the secret,
/// so it has no `Debug`.
pub struct Enrolment {
    /// The new secret (stored sealed; MFA stays off until confirmed).
    pub secret: TotpSecret,
    /// `otpauth://totp/…` for the secret.
    pub otpauth_uri: String,
    /// The URI as a standalone SVG QR code.
    pub qr_svg: String,
}

fn unix_seconds(t: chrono::DateTime<chrono::Utc>) -> u64 {
    u64::try_from(t.timestamp()).unwrap_or(0)
}

/// Starts (or restarts, with a new secret) a TOTP enrolment for `user`. MFA stays off until
/// [`confirm_enrolment`]. [`AuthError::MfaAlreadyEnabled`] if it is on already.
pub async fn start_enrolment(auth: &Auth<'_>, user: UserId) -> Result<Enrolment, AuthError> {
    let user = auth
        .store
        .get_user(user)
        .await?
        .ok_or(AuthError::AccountGone)?;
    let secret = TotpSecret::generate();
    let otpauth_uri = auth
        .mfa
        .otpauth_uri(&secret, &user.email, &user.id.to_string())
        .map_err(AuthError::internal)?;
    let qr_svg = qr_svg(&otpauth_uri).map_err(AuthError::internal)?;
    let sealed = auth.mfa.seal(user.id, &secret);
    if !auth
        .store
        .begin_totp_enrolment(user.id, &sealed, auth.clock.now())
        .await?
    {
        return Err(AuthError::MfaAlreadyEnabled);
    }
    Ok(Enrolment {
        secret,
        otpauth_uri,
        qr_svg,
    })
}

/// Confirms `user`'s pending enrolment with a current `code`: MFA is on from now (audited as
/// [`MFA_ENABLED`] with `session`), and the answer is the ten recovery codes, of which only the
/// hashes are kept. A wrong code leaves MFA off ([`AuthError::InvalidMfaCode`]).
pub async fn confirm_enrolment(
    auth: &Auth<'_>,
    user: UserId,
    session: SessionId,
    code: &str,
    client: &AuditClient,
) -> Result<Vec<RecoveryCode>, AuthError> {
    let enrolment = match auth.store.totp_enrolment(user).await? {
        None => return Err(AuthError::MfaNotEnrolling),
        Some(e) if e.enabled_at.is_some() => return Err(AuthError::MfaAlreadyEnabled),
        Some(e) => e,
    };
    // The detail (key rotated or row altered) is logged; the client sees `internal`.
    let secret = auth
        .mfa
        .open(user, &enrolment.sealed)
        .map_err(AuthError::internal)?;
    let now = auth.clock.now();
    let step = secret
        .matching_step(code, unix_seconds(now))
        .ok_or(AuthError::InvalidMfaCode)?;
    let codes = auth.mfa.new_recovery_codes();
    let hashes: Vec<[u8; 32]> = codes.iter().map(|(_, hash)| *hash).collect();
    let event = AuditEvent::new(MFA_ENABLED, now)
        .user(user)
        .session(session)
        .client(client)
        .detail("method", "totp");
    // The enrolment must still be the one whose code was checked (same nonce): a concurrent
    // restart or confirmation wins, and this one answers as if it had come second.
    if !auth
        .store
        .enable_totp(user, &enrolment.sealed.nonce, step, &hashes, now, &event)
        .await?
    {
        return Err(match auth.store.mfa_status(user).await?.enabled_at {
            Some(_) => AuthError::MfaAlreadyEnabled,
            None => AuthError::MfaNotEnrolling,
        });
    }
    Ok(codes.into_iter().map(|(code, _)| code).collect())
}

/// Turns `user`'s TOTP off, given their `password` and a second factor (`proof`, which is
/// consumed); the recovery codes and open login challenges go with it. Audited as
/// [`MFA_DISABLED`] with `session`.
///
/// The password is checked first (a wrong one says nothing about the code) and counts on the
/// failed-login lock like a login.
pub async fn disable(
    auth: &Auth<'_>,
    user: UserId,
    session: SessionId,
    password: &str,
    proof: &Proof,
    client: &AuditClient,
) -> Result<(), AuthError> {
    let user = auth
        .store
        .get_user(user)
        .await?
        .ok_or(AuthError::AccountGone)?;
    let enrolment = auth
        .store
        .totp_enrolment(user.id)
        .await?
        .filter(|e| e.enabled_at.is_some())
        .ok_or(AuthError::MfaNotEnabled)?;
    // Equal work whatever the input; a wrong password counts on the login lock.
    let client_ip = client.ip.as_deref().and_then(|ip| ip.parse().ok());
    current_password::verify(auth, &user, password, client_ip).await?;
    let now = auth.clock.now();
    let factor = mfa_login::check_proof(auth, user.id, Some(&enrolment), proof, now)
        .await?
        .ok_or(AuthError::InvalidMfaCode)?;
    let event = AuditEvent::new(MFA_DISABLED, now)
        .user(user.id)
        .session(session)
        .client(client)
        .detail("method", proof.method());
    if !auth
        .store
        .disable_totp(user.id, factor, now, &event)
        .await?
    {
        // The same code was consumed concurrently, or MFA was turned off meanwhile.
        return Err(AuthError::InvalidMfaCode);
    }
    Ok(())
}
