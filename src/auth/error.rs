//! Why a flow did not succeed. `src/http/error.rs` maps each variant to a status and code.

use sessiond_actors::sessions::SessionError;
use sessiond_actors::store::StoreError;

use crate::codes::CodeError;
use crate::crypto::password::HashError;
use crate::ratelimit::Limited;

/// A flow's failure.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Unknown account, wrong password or disabled account (deliberately one answer).
    #[error("invalid email or password")]
    InvalidCredentials,
    /// The password was right but the address must be verified first.
    #[error("email address not verified")]
    EmailNotVerified,
    /// A rate limit or lock refused the attempt.
    #[error("too many attempts")]
    Limited(Limited),
    /// The signed-in account no longer exists (deleted while the request ran).
    #[error("account not found")]
    AccountGone,
    /// A wrong, malformed or already used second factor.
    #[error("invalid second-factor code")]
    InvalidMfaCode,
    /// TOTP is on already (starting or confirming an enrolment).
    #[error("MFA already enabled")]
    MfaAlreadyEnabled,
    /// No TOTP enrolment is pending (confirming one).
    #[error("no MFA enrolment pending")]
    MfaNotEnrolling,
    /// TOTP is off (disabling it).
    #[error("MFA not enabled")]
    MfaNotEnabled,
    /// The challenge is unknown, expired or used (or the account changed since).
    #[error("MFA challenge invalid")]
    MfaChallengeInvalid,
    /// The challenge's attempts are used up.
    #[error("MFA challenge attempts exceeded")]
    MfaAttemptsExceeded,
    /// The session's authentication is too old (`max_age`, seconds) or too weak
    /// (`acr_values`) for the action; `methods` are what the user can prove again with.
    #[error("a more recent or stronger authentication is needed")]
    InsufficientUserAuthentication {
        /// The greatest age of an authentication that suffices, in seconds.
        max_age: Option<u64>,
        /// The assurance level needed (e.g. `aal2`).
        acr_values: Option<&'static str>,
        /// `password`, `totp`, `recovery_code`.
        methods: Vec<&'static str>,
    },
    /// Field rules of a flow's input (e.g. an application's redirect URIs); each names the
    /// field.
    #[error("validation failed")]
    Invalid(Vec<crate::domain::FieldError>),
    /// The thing does not exist, or belongs to someone else (deliberately one answer).
    #[error("not found")]
    NotFound,
    /// The user may not do this at all (not a question of authentication); the text says why.
    #[error("{0}")]
    Forbidden(&'static str),
    /// An OAuth client failed to authenticate (unknown client, wrong or missing secret, a
    /// secret from a public client): RFC 6749 `invalid_client`, one answer for every reason.
    #[error("client authentication failed")]
    InvalidClient,
    /// No WebAuthn relying party is configured.
    #[error("passkeys are not enabled")]
    PasskeysDisabled,
    /// A WebAuthn ceremony id that is unknown, used, expired, of another kind or started for
    /// someone else.
    #[error("invalid or expired ceremony")]
    InvalidCeremony,
    /// A passkey ceremony failed (signature, origin, RP id, user verification, unknown,
    /// deleted or another user's credential).
    #[error("passkey not accepted")]
    PasskeyRejected,
    /// The authenticator's signature counter went backwards: possibly a cloned authenticator.
    #[error("passkey counter regressed")]
    PasskeyCounterRegressed,
    /// No such passkey of the caller's.
    #[error("passkey not found")]
    PasskeyNotFound,
    /// The account has no passkey to ask for.
    #[error("no passkey registered")]
    NoPasskeys,
    /// Removing the account's last second factor needs an explicit confirmation.
    #[error("this is the account's last second factor")]
    LastSecondFactor,
    /// A login with an external OpenID Connect provider (or a link, unlink or native
    /// exchange) failed; the variant says why.
    #[error(transparent)]
    Oidc(crate::auth::oidc_login::OidcFailure),
    /// A mailed code (email verification, password reset) was not accepted.
    #[error(transparent)]
    Code(CodeError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Password hashing failed or is saturated.
    #[error(transparent)]
    Hash(#[from] HashError),
    /// The session engine failed.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// A presented refresh token was refused (malformed, unknown, replayed, or its session
    /// ended): the rotation rules' answer, reported as the refresh routes report it.
    #[error("refresh refused: {0}")]
    Refresh(SessionError),
    /// A bug or corrupt data; the detail is logged, never sent.
    #[error("{0}")]
    Internal(String),
}

impl From<Limited> for AuthError {
    fn from(l: Limited) -> Self {
        Self::Limited(l)
    }
}

impl From<CodeError> for AuthError {
    /// A store failure while checking a code stays a store failure.
    fn from(e: CodeError) -> Self {
        match e {
            CodeError::Store(e) => Self::Store(e),
            other => Self::Code(other),
        }
    }
}

impl AuthError {
    /// An internal failure with its detail (logged by the HTTP layer, never sent).
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        Self::Internal(detail.to_string())
    }
}
