//! `ApiError`: the one place where failures become HTTP answers.
//!
//! Every error body has the documented shape
//! `{"error": {"code", "message", "details"?, "correlation_id"}}`. Internal failures answer a
//! generic message; their detail is logged here, once, inside the request's span.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use sessiond_actors::rotation::Rejection;
use sessiond_actors::sessions::SessionError;
use sessiond_actors::store::StoreError;

use crate::auth::AuthError;
use crate::correlation;
use crate::crypto::password::HashError;
use crate::domain::FieldError;

/// Every failure the API reports. Each variant has exactly one code and status.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 `invalid_request`: malformed JSON, a bad id or query parameter.
    #[error("{0}")]
    InvalidRequest(String),
    /// 422 `validation_failed`: field rules; the details name the fields.
    #[error("validation failed")]
    ValidationFailed(Vec<FieldError>),
    /// 415 `unsupported_media_type`.
    #[error("expected a JSON body (Content-Type: application/json)")]
    UnsupportedMediaType,
    /// 413 `payload_too_large`.
    #[error("request body too large")]
    PayloadTooLarge,
    /// 415 `unsupported_media_type` for an upload: not a PNG, JPEG or WebP image by its
    /// content, or one that does not decode (truncated, corrupt).
    #[error("expected a PNG, JPEG or WebP image (recognised by its content)")]
    UnsupportedImage,
    /// 413 `image_too_large`: the image's dimensions (or decoded size) exceed the maximum;
    /// `details: {max_width, max_height}`.
    #[error("the image is too large; at most {max_width}x{max_height} pixels")]
    ImageTooLarge {
        /// Widest image accepted.
        max_width: u32,
        /// Tallest image accepted.
        max_height: u32,
    },
    /// 401 `invalid_credentials`: unknown email or wrong password (deliberately the same).
    #[error("invalid email or password")]
    InvalidCredentials,
    /// 401 `invalid_token`: missing, malformed, expired or unverifiable access token.
    #[error("invalid or expired access token")]
    InvalidToken,
    /// 401 `invalid_refresh_token`.
    #[error("invalid refresh token")]
    InvalidRefreshToken,
    /// 401 `refresh_token_reused`: replay detected; the session is now compromised.
    #[error("refresh token reused; the session has been ended")]
    RefreshTokenReused,
    /// 401 `session_revoked`.
    #[error("session revoked")]
    SessionRevoked,
    /// 401 `session_expired`.
    #[error("session expired")]
    SessionExpired,
    /// 401 `session_compromised`.
    #[error("session compromised")]
    SessionCompromised,
    /// 401 `account_disabled`: the account was disabled by an operator (`sessiond user
    /// disable`); its sessions are revoked and its API keys refused until it is enabled.
    #[error("the account is disabled")]
    AccountDisabled,
    /// 401 `invalid_api_key`: malformed, unknown, revoked or expired API key (`x-api-key`).
    #[error("invalid, revoked or expired API key")]
    InvalidApiKey,
    /// 403 `principal_not_allowed`: valid credentials of a kind the endpoint does not accept
    /// (e.g. an API key at `/v1/auth/verify?allow=user`).
    #[error("this kind of principal is not allowed here")]
    PrincipalNotAllowed,
    /// 403 `forbidden`: the account may not do this at all (e.g. register applications when
    /// `SESSIOND_APP_CREATORS` does not list it); the message says why.
    #[error("{0}")]
    Forbidden(&'static str),
    /// 401 `invalid_client`: an OAuth client's authentication failed.
    #[error("client authentication failed")]
    InvalidClient,
    /// 403 `csrf_rejected`: a browser (cookie) route without the `x-sessiond-csrf: 1` header
    /// or without an allowed `Origin`.
    #[error("cross-site request refused: send x-sessiond-csrf: 1 from an allowed origin")]
    CsrfRejected,
    /// 404 `not_found`.
    #[error("not found")]
    NotFound,
    /// 405 `method_not_allowed`.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 409 `email_taken`.
    #[error("an account with this email already exists")]
    EmailTaken,
    /// 400 `invalid_code`: a mailed code that is wrong, unknown, already used or superseded.
    #[error("invalid code")]
    InvalidCode,
    /// 400 `code_expired`: the mailed code's lifetime has passed; ask for a new one.
    #[error("the code has expired; ask for a new one")]
    CodeExpired,
    /// 400 `too_many_attempts`: the mailed code's attempts are used up; ask for a new one.
    #[error("too many attempts for this code; ask for a new one")]
    TooManyAttempts,
    /// 403 `email_not_verified`: right password, but login requires a verified email
    /// (`SESSIOND_REQUIRE_VERIFIED_EMAIL`).
    #[error("the email address is not verified yet")]
    EmailNotVerified,
    /// 401 `mfa_required`: the password was right but the account has MFA on; no session
    /// yet. `details: {challenge_id, expires_at, methods}` say how to finish
    /// (`POST /v1/auth/sessions/mfa`).
    #[error("a second factor is required to finish logging in")]
    MfaRequired {
        /// The challenge to answer.
        challenge_id: String,
        /// When it stops being usable (RFC 3339).
        expires_at: String,
        /// `totp`, and `recovery_code` while unused recovery codes remain.
        methods: Vec<&'static str>,
    },
    /// 401 `invalid_mfa_code`: a wrong, malformed or already used TOTP or recovery code.
    #[error("invalid or already used code")]
    InvalidMfaCode,
    /// 401 `mfa_challenge_invalid`: unknown, expired or already completed challenge; log in
    /// again.
    #[error("unknown, expired or already used MFA challenge; log in again")]
    MfaChallengeInvalid,
    /// 401 `mfa_attempts_exceeded`: the challenge's attempts are used up; log in again.
    #[error("too many wrong codes for this challenge; log in again")]
    MfaAttemptsExceeded,
    /// 409 `mfa_already_enabled`: TOTP is already on (disable it first to re-enrol).
    #[error("TOTP is already enabled")]
    MfaAlreadyEnabled,
    /// 409 `mfa_not_enrolling`: confirm without a started enrolment.
    #[error("no TOTP enrolment in progress; start one first")]
    MfaNotEnrolling,
    /// 409 `mfa_not_enabled`: nothing to disable.
    #[error("TOTP is not enabled")]
    MfaNotEnabled,
    /// 401 `insufficient_user_authentication` (RFC 9470): the session's authentication is too
    /// old (`max_age`) or too weak (`acr_values`) for this action. `WWW-Authenticate` says
    /// which; `details.methods` lists what the user can prove again with at
    /// `POST /v1/auth/sessions/current/reauth`.
    #[error("this action needs a more recent or stronger authentication")]
    InsufficientUserAuthentication {
        /// The greatest age, in seconds, of an authentication that suffices.
        max_age: Option<u64>,
        /// The assurance level needed (e.g. `aal2`).
        acr_values: Option<&'static str>,
        /// `password`, and `totp` / `recovery_code` for a user with TOTP on.
        methods: Vec<&'static str>,
    },
    /// 404 `passkeys_disabled`: no WebAuthn relying party is configured.
    #[error("passkeys are not enabled on this server")]
    PasskeysDisabled,
    /// 400 `invalid_ceremony`: unknown, used, expired or foreign WebAuthn ceremony id.
    #[error("unknown, used, expired or foreign ceremony; start again")]
    InvalidCeremony,
    /// 401 `passkey_rejected`: the passkey's answer was not accepted (signature, origin, RP id,
    /// user verification, unknown, deleted or another account's credential).
    #[error("the passkey was not accepted")]
    PasskeyRejected,
    /// 401 `passkey_counter_regressed`: the authenticator's counter went backwards (possibly
    /// a cloned authenticator); refused, audited and mailed to the owner.
    #[error("the passkey's signature counter went backwards; refused")]
    PasskeyCounterRegressed,
    /// 409 `no_passkeys`: the account has no passkey to ask for.
    #[error("the account has no passkey")]
    NoPasskeys,
    /// 409 `last_second_factor`: removing the account's last second factor needs
    /// `confirm=true`.
    #[error("this is the account's last second factor; confirm to remove it")]
    LastSecondFactor,
    /// A login with an external OpenID Connect provider failed; one code per reason (see `oidc_code`): `oidc_provider_unknown` 404, `oidc_provider_unavailable`
    /// 503, `return_url_not_allowed` 400, `oidc_state_invalid` 400, `access_denied` 401,
    /// `oidc_provider_error` 502, `oidc_issuer_mismatch` 400, `oidc_token_exchange_failed`
    /// 502, `oidc_id_token_invalid` 401, `account_exists_link_required` 409,
    /// `provider_email_missing` 400, `oidc_login_failed` 401, `identity_in_use` 409,
    /// `last_login_method` 409, `identity_not_linked` 404, `invalid_grant` 400.
    #[error("{0}")]
    Oidc(crate::auth::oidc_login::OidcFailure),
    /// 431 `headers_too_large`: too many request header fields, or too many bytes of them.
    #[error("request headers too large")]
    HeadersTooLarge,
    /// 429 `rate_limited`, with the seconds to wait.
    #[error("too many requests")]
    RateLimited {
        /// Seconds until a retry may succeed (`Retry-After`).
        retry_after_secs: u64,
    },
    /// 503 `unavailable`: the store (or the hashing pool) cannot take the request now.
    #[error("service temporarily unavailable")]
    Unavailable(String),
    /// 500 `internal`. The detail is logged, never sent.
    #[error("internal error")]
    Internal(String),
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorObject<'a>,
}

#[derive(Serialize)]
struct ErrorObject<'a> {
    code: &'static str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<Value>,
    correlation_id: &'a str,
}

impl ApiError {
    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "invalid_request",
            Self::ValidationFailed(_) => "validation_failed",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedImage => "unsupported_media_type",
            Self::ImageTooLarge { .. } => "image_too_large",
            Self::InvalidCredentials => "invalid_credentials",
            Self::InvalidToken => "invalid_token",
            Self::InvalidRefreshToken => "invalid_refresh_token",
            Self::RefreshTokenReused => "refresh_token_reused",
            Self::SessionRevoked => "session_revoked",
            Self::SessionExpired => "session_expired",
            Self::SessionCompromised => "session_compromised",
            Self::AccountDisabled => "account_disabled",
            Self::InvalidApiKey => "invalid_api_key",
            Self::PrincipalNotAllowed => "principal_not_allowed",
            Self::Forbidden(_) => "forbidden",
            Self::InvalidClient => "invalid_client",
            Self::CsrfRejected => "csrf_rejected",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::EmailTaken => "email_taken",
            Self::InvalidCode => "invalid_code",
            Self::CodeExpired => "code_expired",
            Self::TooManyAttempts => "too_many_attempts",
            Self::EmailNotVerified => "email_not_verified",
            Self::MfaRequired { .. } => "mfa_required",
            Self::InvalidMfaCode => "invalid_mfa_code",
            Self::MfaChallengeInvalid => "mfa_challenge_invalid",
            Self::MfaAttemptsExceeded => "mfa_attempts_exceeded",
            Self::MfaAlreadyEnabled => "mfa_already_enabled",
            Self::MfaNotEnrolling => "mfa_not_enrolling",
            Self::MfaNotEnabled => "mfa_not_enabled",
            Self::InsufficientUserAuthentication { .. } => "insufficient_user_authentication",
            Self::PasskeysDisabled => "passkeys_disabled",
            Self::InvalidCeremony => "invalid_ceremony",
            Self::PasskeyRejected => "passkey_rejected",
            Self::PasskeyCounterRegressed => "passkey_counter_regressed",
            Self::NoPasskeys => "no_passkeys",
            Self::LastSecondFactor => "last_second_factor",
            Self::Oidc(f) => oidc_code(*f),
            Self::HeadersTooLarge => "headers_too_large",
            Self::RateLimited { .. } => "rate_limited",
            Self::Unavailable(_) => "unavailable",
            Self::Internal(_) => "internal",
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            Self::ValidationFailed(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PayloadTooLarge | Self::ImageTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedImage => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::InvalidCredentials
            | Self::InvalidToken
            | Self::InvalidRefreshToken
            | Self::RefreshTokenReused
            | Self::SessionRevoked
            | Self::SessionExpired
            | Self::SessionCompromised
            | Self::AccountDisabled
            | Self::InvalidApiKey
            | Self::InvalidClient => StatusCode::UNAUTHORIZED,
            Self::PrincipalNotAllowed | Self::Forbidden(_) | Self::CsrfRejected => {
                StatusCode::FORBIDDEN
            }
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::EmailTaken => StatusCode::CONFLICT,
            Self::InvalidCode | Self::CodeExpired | Self::TooManyAttempts => {
                StatusCode::BAD_REQUEST
            }
            Self::EmailNotVerified => StatusCode::FORBIDDEN,
            Self::MfaRequired { .. }
            | Self::InvalidMfaCode
            | Self::MfaChallengeInvalid
            | Self::MfaAttemptsExceeded
            | Self::InsufficientUserAuthentication { .. } => StatusCode::UNAUTHORIZED,
            Self::MfaAlreadyEnabled | Self::MfaNotEnrolling | Self::MfaNotEnabled => {
                StatusCode::CONFLICT
            }
            Self::PasskeysDisabled => StatusCode::NOT_FOUND,
            Self::InvalidCeremony => StatusCode::BAD_REQUEST,
            Self::PasskeyRejected | Self::PasskeyCounterRegressed => StatusCode::UNAUTHORIZED,
            Self::NoPasskeys | Self::LastSecondFactor => StatusCode::CONFLICT,
            Self::Oidc(f) => oidc_status(*f),
            Self::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A single-field validation failure.
    pub fn field(field: &'static str, message: impl Into<String>) -> Self {
        Self::ValidationFailed(vec![FieldError {
            field,
            message: message.into(),
        }])
    }

    /// Wraps an unexpected failure; the detail is logged, the client sees `internal`.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        Self::Internal(detail.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let correlation_id = correlation::current();
        match &self {
            Self::Internal(detail) => {
                tracing::error!(code = self.code(), detail = %detail, "request failed")
            }
            Self::Unavailable(detail) => {
                tracing::warn!(code = self.code(), detail = %detail, "request refused")
            }
            _ => tracing::debug!(code = self.code(), "request refused"),
        }
        let details = match &self {
            Self::ValidationFailed(fields) => Some(serde_json::json!({
                "fields": fields
                    .iter()
                    .map(|f| serde_json::json!({"field": f.field, "message": f.message}))
                    .collect::<Vec<_>>()
            })),
            Self::ImageTooLarge {
                max_width,
                max_height,
            } => Some(serde_json::json!({"max_width": max_width, "max_height": max_height})),
            Self::MfaRequired {
                challenge_id,
                expires_at,
                methods,
            } => Some(serde_json::json!({
                "challenge_id": challenge_id,
                "expires_at": expires_at,
                "methods": methods,
            })),
            Self::InsufficientUserAuthentication {
                max_age,
                acr_values,
                methods,
            } => {
                let mut details = serde_json::json!({ "methods": methods });
                if let Some(max_age) = max_age {
                    details["max_age"] = (*max_age).into();
                }
                if let Some(acr) = acr_values {
                    details["acr_values"] = (*acr).into();
                }
                Some(details)
            }
            _ => None,
        };
        let body = ErrorBody {
            error: ErrorObject {
                code: self.code(),
                message: self.to_string(),
                details,
                correlation_id: &correlation_id,
            },
        };
        let mut response = (status, Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        match &self {
            Self::RateLimited { retry_after_secs } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            Self::InvalidToken
            | Self::SessionRevoked
            | Self::SessionExpired
            | Self::SessionCompromised
            | Self::AccountDisabled => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer error=\"invalid_token\""),
                );
            }
            Self::InsufficientUserAuthentication {
                max_age,
                acr_values,
                ..
            } => {
                let mut challenge = "Bearer error=\"insufficient_user_authentication\"".to_owned();
                if let Some(max_age) = max_age {
                    challenge.push_str(&format!(", max_age={max_age}"));
                }
                if let Some(acr) = acr_values {
                    challenge.push_str(&format!(", acr_values=\"{acr}\""));
                }
                if let Ok(value) = HeaderValue::from_str(&challenge) {
                    headers.insert(header::WWW_AUTHENTICATE, value);
                }
            }
            // The rest of the body was never read, so the connection cannot carry another
            // request: say so, or a client may reuse it and see it close under its next one.
            Self::PayloadTooLarge => {
                headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        response
    }
}

impl From<Rejection> for ApiError {
    fn from(r: Rejection) -> Self {
        match r {
            Rejection::InvalidToken => Self::InvalidRefreshToken,
            Rejection::Compromised => Self::SessionCompromised,
            Rejection::Revoked => Self::SessionRevoked,
            Rejection::Expired => Self::SessionExpired,
            Rejection::AccountDisabled => Self::AccountDisabled,
        }
    }
}

impl From<SessionError> for ApiError {
    /// Maps session-engine failures for the refresh endpoint. Access-token checks map
    /// `InvalidToken`/`NotFound` to `invalid_token` themselves.
    fn from(e: SessionError) -> Self {
        match e {
            SessionError::Rejected(r) => r.into(),
            SessionError::Reused(_) => Self::RefreshTokenReused,
            SessionError::NotFound => Self::InvalidRefreshToken,
            SessionError::Unavailable(e) => Self::Unavailable(e.to_string()),
            SessionError::Timeout => Self::Unavailable("session actor timed out".into()),
            SessionError::Internal(detail) => Self::Internal(detail),
        }
    }
}

impl From<HashError> for ApiError {
    /// A full hashing queue is back-pressure (503, retry later); anything else is a bug.
    fn from(e: HashError) -> Self {
        match e {
            HashError::Busy => Self::Unavailable("password hashing queue is full".into()),
            other => Self::internal(other),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) => Self::Unavailable(e.to_string()),
            StoreError::Other(_) => Self::Internal(e.to_string()),
        }
    }
}

/// A rate-limit refusal is a 429 with whole seconds to wait (at least one).
impl From<crate::ratelimit::Limited> for ApiError {
    fn from(l: crate::ratelimit::Limited) -> Self {
        ApiError::RateLimited {
            retry_after_secs: l.retry_after_ms.div_ceil(1000).max(1),
        }
    }
}

impl From<AuthError> for ApiError {
    /// A flow's failure as the API reports it.
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::InvalidCredentials => Self::InvalidCredentials,
            AuthError::EmailNotVerified => Self::EmailNotVerified,
            // The bearer token's account was deleted meanwhile: the token's answer.
            AuthError::AccountGone => Self::InvalidToken,
            AuthError::Limited(l) => l.into(),
            AuthError::InvalidMfaCode => Self::InvalidMfaCode,
            AuthError::MfaAlreadyEnabled => Self::MfaAlreadyEnabled,
            AuthError::MfaNotEnrolling => Self::MfaNotEnrolling,
            AuthError::MfaNotEnabled => Self::MfaNotEnabled,
            AuthError::MfaChallengeInvalid => Self::MfaChallengeInvalid,
            AuthError::MfaAttemptsExceeded => Self::MfaAttemptsExceeded,
            AuthError::PasskeysDisabled => Self::PasskeysDisabled,
            AuthError::InvalidCeremony => Self::InvalidCeremony,
            AuthError::PasskeyRejected => Self::PasskeyRejected,
            AuthError::PasskeyCounterRegressed => Self::PasskeyCounterRegressed,
            AuthError::PasskeyNotFound => Self::NotFound,
            AuthError::NoPasskeys => Self::NoPasskeys,
            AuthError::LastSecondFactor => Self::LastSecondFactor,
            AuthError::Oidc(f) => Self::Oidc(f),
            AuthError::Code(e) => e.into(),
            AuthError::Store(e) => e.into(),
            AuthError::Hash(e) => e.into(),
            // Creating or revoking a session: only back-pressure is the client's business.
            AuthError::Session(SessionError::Unavailable(e)) => Self::Unavailable(e.to_string()),
            AuthError::Session(SessionError::Timeout) => {
                Self::Unavailable("session actor timed out".into())
            }
            // Reauthenticating a session that ended meanwhile: the bearer token's answer.
            AuthError::Session(
                SessionError::Rejected(Rejection::InvalidToken) | SessionError::NotFound,
            ) => Self::InvalidToken,
            AuthError::Session(SessionError::Rejected(r)) => r.into(),
            AuthError::Session(other) => Self::internal(other),
            // The refresh routes' own answers (`invalid_refresh_token`, `refresh_token_reused`,
            // `session_*`, `account_disabled`).
            AuthError::Refresh(e) => e.into(),
            AuthError::InsufficientUserAuthentication {
                max_age,
                acr_values,
                methods,
            } => Self::InsufficientUserAuthentication {
                max_age,
                acr_values,
                methods,
            },
            AuthError::Invalid(fields) => Self::ValidationFailed(fields),
            AuthError::NotFound => Self::NotFound,
            AuthError::Forbidden(why) => Self::Forbidden(why),
            AuthError::InvalidClient => Self::InvalidClient,
            AuthError::Internal(detail) => Self::Internal(detail),
        }
    }
}

/// The code of a provider-login failure.
fn oidc_code(f: crate::auth::oidc_login::OidcFailure) -> &'static str {
    use crate::auth::oidc_login::OidcFailure as F;
    match f {
        F::ProviderUnknown => "oidc_provider_unknown",
        F::ProviderUnavailable => "oidc_provider_unavailable",
        F::ReturnUrlNotAllowed => "return_url_not_allowed",
        F::StateInvalid => "oidc_state_invalid",
        F::AccessDenied => "access_denied",
        F::ProviderError => "oidc_provider_error",
        F::IssuerMismatch => "oidc_issuer_mismatch",
        F::TokenExchangeFailed => "oidc_token_exchange_failed",
        F::IdTokenInvalid => "oidc_id_token_invalid",
        F::AccountExistsLinkRequired => "account_exists_link_required",
        F::ProviderEmailMissing => "provider_email_missing",
        F::LoginFailed => "oidc_login_failed",
        F::IdentityInUse => "identity_in_use",
        F::LastLoginMethod => "last_login_method",
        F::IdentityNotLinked => "identity_not_linked",
        F::InvalidExchange => "invalid_grant",
        F::ReauthenticationFailed => "oidc_reauthentication_failed",
    }
}

/// The status of a provider-login failure.
fn oidc_status(f: crate::auth::oidc_login::OidcFailure) -> StatusCode {
    use crate::auth::oidc_login::OidcFailure as F;
    match f {
        F::ProviderUnknown | F::IdentityNotLinked => StatusCode::NOT_FOUND,
        F::ProviderUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        F::ReturnUrlNotAllowed
        | F::StateInvalid
        | F::IssuerMismatch
        | F::ProviderEmailMissing
        | F::InvalidExchange => StatusCode::BAD_REQUEST,
        F::AccessDenied | F::IdTokenInvalid | F::LoginFailed | F::ReauthenticationFailed => {
            StatusCode::UNAUTHORIZED
        }
        F::ProviderError | F::TokenExchangeFailed => StatusCode::BAD_GATEWAY,
        F::AccountExistsLinkRequired | F::IdentityInUse | F::LastLoginMethod => {
            StatusCode::CONFLICT
        }
    }
}

impl From<crate::auth::login::MfaChallengeIssued> for ApiError {
    /// A right password on an account with a second factor: 401 `mfa_required` with the
    /// challenge to finish (the JSON and the browser login routes answer it alike).
    fn from(challenge: crate::auth::login::MfaChallengeIssued) -> Self {
        Self::MfaRequired {
            challenge_id: challenge.challenge_id.to_string(),
            expires_at: challenge
                .expires_at
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            methods: challenge.methods,
        }
    }
}

impl From<crate::media::MediaError> for ApiError {
    /// An upload or an image lookup that did not succeed.
    fn from(e: crate::media::MediaError) -> Self {
        use crate::media::MediaError;
        match e {
            MediaError::Unsupported => Self::UnsupportedImage,
            MediaError::UploadTooLarge => Self::PayloadTooLarge,
            MediaError::TooLarge => Self::ImageTooLarge {
                max_width: crate::media::MAX_WIDTH,
                max_height: crate::media::MAX_HEIGHT,
            },
            MediaError::Busy => Self::Unavailable("image decoding slots are full".into()),
            MediaError::NotFound => Self::NotFound,
            MediaError::Store(e) => e.into(),
            MediaError::Internal(detail) => Self::Internal(detail),
        }
    }
}

impl From<crate::codes::CodeError> for ApiError {
    /// A mailed code that was not accepted: each reason has its documented error.
    fn from(e: crate::codes::CodeError) -> Self {
        use crate::codes::CodeError;
        match e {
            CodeError::Invalid => Self::InvalidCode,
            CodeError::Expired => Self::CodeExpired,
            CodeError::TooManyAttempts => Self::TooManyAttempts,
            CodeError::Store(e) => e.into(),
        }
    }
}

/// An RFC 6749 §5.2 body, `{"error", "error_description"}`, with `Cache-Control: no-store`
/// and, when given, the `WWW-Authenticate` challenge (dropped if it is not a header value).
fn protocol_error(
    status: StatusCode,
    code: &str,
    description: &str,
    challenge: Option<&str>,
) -> Response {
    let mut response = (
        status,
        Json(serde_json::json!({"error": code, "error_description": description})),
    )
        .into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(value) = challenge.and_then(|c| HeaderValue::from_str(c).ok()) {
        headers.insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

/// The OAuth protocol endpoints (`/oauth2/*`) answer RFC 6749 §5.2 bodies,
/// `{"error", "error_description"}`, not the API's error shape: 400, or 401 for
/// `invalid_client` (with a `Basic` challenge). Internal failures are logged and answered
/// `server_error` (500) or `temporarily_unavailable` (503).
impl IntoResponse for crate::auth::oauth::token::OAuthError {
    fn into_response(self) -> Response {
        use crate::auth::oauth::token::OAuthError as E;
        let (status, code, description) = match &self {
            E::InvalidRequest(d) => (StatusCode::BAD_REQUEST, "invalid_request", d.clone()),
            E::InvalidClient => (StatusCode::UNAUTHORIZED, "invalid_client", self.to_string()),
            E::UnauthorizedClient(d) => (
                StatusCode::BAD_REQUEST,
                "unauthorized_client",
                (*d).to_owned(),
            ),
            E::InvalidGrant(d) => (StatusCode::BAD_REQUEST, "invalid_grant", (*d).to_owned()),
            E::UnsupportedGrantType => (
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                self.to_string(),
            ),
            E::InvalidScope(d) => (StatusCode::BAD_REQUEST, "invalid_scope", d.clone()),
            E::Server(e) => {
                let unavailable = matches!(
                    e,
                    AuthError::Store(StoreError::Unavailable(_))
                        | AuthError::Session(SessionError::Unavailable(_) | SessionError::Timeout)
                );
                tracing::error!(detail = %e, "oauth request failed");
                if unavailable {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "temporarily_unavailable",
                        "try again later".to_owned(),
                    )
                } else {
                    (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "server_error",
                        "internal error".to_owned(),
                    )
                }
            }
        };
        let mut response = protocol_error(status, code, &description, None);
        let headers = response.headers_mut();
        headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"sessiond\""),
            );
        }
        response
    }
}

/// RFC 6750 §3: a refused bearer token at a protocol endpoint (`/oauth2/userinfo`). The error
/// is in `WWW-Authenticate` (what OpenID Connect clients read) and, for scripts, in an RFC 6749
/// shaped body too.
impl IntoResponse for crate::auth::oauth::userinfo::BearerError {
    fn into_response(self) -> Response {
        use crate::auth::oauth::userinfo::BearerError as E;
        let description = self.to_string();
        let (status, code, scope) = match self {
            E::InvalidToken(_) => (StatusCode::UNAUTHORIZED, "invalid_token", ""),
            E::InsufficientScope => (
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                ", scope=\"openid\"",
            ),
            E::Server(e) => {
                return crate::auth::oauth::token::OAuthError::Server(e).into_response();
            }
        };
        let challenge = format!(
            "Bearer realm=\"sessiond\", error=\"{code}\"{scope}, error_description=\"{description}\""
        );
        protocol_error(status, code, &description, Some(&challenge))
    }
}

/// RFC 6750 §3.1: a request to a bearer-protected protocol endpoint without credentials, or
/// with malformed ones: 401 `WWW-Authenticate: Bearer realm="sessiond"` without an error code
/// when nothing was presented; `invalid_request` (400) when it was malformed.
#[derive(Debug)]
pub enum BearerMissing {
    /// No token at all.
    Absent,
    /// Two ways at once, or a malformed `Authorization` header.
    Malformed(&'static str),
}

impl IntoResponse for BearerMissing {
    fn into_response(self) -> Response {
        let (status, challenge, code, description) = match self {
            Self::Absent => (
                StatusCode::UNAUTHORIZED,
                "Bearer realm=\"sessiond\"".to_owned(),
                "invalid_token",
                "a bearer access token is required",
            ),
            Self::Malformed(d) => (
                StatusCode::BAD_REQUEST,
                format!(
                    "Bearer realm=\"sessiond\", error=\"invalid_request\", error_description=\"{d}\""
                ),
                "invalid_request",
                d,
            ),
        };
        protocol_error(status, code, description, Some(&challenge))
    }
}
