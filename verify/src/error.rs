//! Why a request was refused, and why a verifier could not be built.

use std::fmt;

/// Why a bearer token failed local verification. Clients all get the same 401
/// `invalid_token`; the reason is for the service's logs and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenProblem {
    /// Not a JWT, too long, or claims missing or mistyped (`sub`/`sid` not UUIDs).
    Malformed,
    /// `alg` is not the algorithm of the JWKS key the `kid` names.
    Algorithm,
    /// `typ` is not `at+jwt` (or `application/at+jwt`).
    Type,
    /// No `kid`, or one the JWKS does not list (even after a refetch).
    UnknownKey,
    /// The signature does not verify.
    Signature,
    /// Wrong `iss`.
    Issuer,
    /// Wrong `aud`.
    Audience,
    /// Past `exp` (plus the leeway).
    Expired,
    /// `iat` or `nbf` in the future (beyond the leeway).
    NotYetValid,
}

impl TokenProblem {
    /// A short label (logs, metric label values).
    pub fn reason(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::Algorithm => "algorithm",
            Self::Type => "type",
            Self::UnknownKey => "unknown_key",
            Self::Signature => "signature",
            Self::Issuer => "issuer",
            Self::Audience => "audience",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
        }
    }
}

impl fmt::Display for TokenProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

/// Why a request was refused. With the `axum` feature it is an `IntoResponse` that answers like
/// sessiond itself: the status, `{"error":{"code","message"}}` and, for 401/403 on a bearer
/// token, the RFC 6750 / RFC 9470 `WWW-Authenticate` challenge.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// 401 `invalid_token`: neither `Authorization: Bearer` nor `x-api-key` was sent.
    #[error("missing credentials: send a bearer access token or an API key")]
    Missing,
    /// 401 `invalid_token`: the access token failed local verification.
    #[error("invalid access token ({0})")]
    InvalidToken(TokenProblem),
    /// 400 `invalid_request`: a bearer token and an API key at once, or a malformed
    /// `Authorization` header.
    #[error("{0}")]
    InvalidRequest(&'static str),
    /// sessiond refused the credentials in online mode (`session_revoked`, `invalid_api_key`,
    /// `account_disabled`, `rate_limited`, …): its status, code and message are passed on.
    #[error("{message}")]
    Refused {
        /// sessiond's HTTP status (401, 403 or 429).
        status: u16,
        /// sessiond's error code.
        code: String,
        /// sessiond's message.
        message: String,
        /// sessiond's `Retry-After` (seconds), for `rate_limited`.
        retry_after: Option<u64>,
    },
    /// 401 `insufficient_user_authentication` (RFC 9470): the session's assurance level is
    /// below `required`; the user must prove a second factor (log in with it, or reauthenticate
    /// at sessiond's `POST /v1/auth/sessions/current/reauth`).
    #[error("this action needs a more recent or stronger authentication")]
    InsufficientAal {
        /// The level needed (2).
        required: u8,
    },
    /// 403 `insufficient_scope` (RFC 6750 §3.1): the principal lacks `scope`.
    #[error("this action needs the scope {scope:?}")]
    InsufficientScope {
        /// The scope needed.
        scope: String,
    },
    /// 403 `principal_not_allowed`: valid credentials of a kind the route excludes (an API key
    /// on a route that needs a user's second factor).
    #[error("these credentials are not allowed here")]
    PrincipalNotAllowed,
    /// 503 `unavailable`: sessiond (its JWKS or its verify endpoint) could not be reached or
    /// answered an error of its own.
    #[error("the authentication service is unavailable")]
    Unavailable,
}

impl AuthError {
    /// The HTTP status this refusal answers with.
    pub fn status(&self) -> u16 {
        match self {
            Self::Missing | Self::InvalidToken(_) | Self::InsufficientAal { .. } => 401,
            Self::InvalidRequest(_) => 400,
            Self::Refused { status, .. } => *status,
            Self::InsufficientScope { .. } | Self::PrincipalNotAllowed => 403,
            Self::Unavailable => 503,
        }
    }

    /// The error code of the body (`invalid_token`, `insufficient_scope`, …).
    pub fn code(&self) -> &str {
        match self {
            Self::Missing | Self::InvalidToken(_) => "invalid_token",
            Self::InvalidRequest(_) => "invalid_request",
            Self::Refused { code, .. } => code,
            Self::InsufficientAal { .. } => "insufficient_user_authentication",
            Self::InsufficientScope { .. } => "insufficient_scope",
            Self::PrincipalNotAllowed => "principal_not_allowed",
            Self::Unavailable => "unavailable",
        }
    }

    /// The `WWW-Authenticate` challenge, if the refusal carries one. Exactly sessiond's: every
    /// 401 about a bearer token says `Bearer error="invalid_token"`; a too-weak session says
    /// `Bearer error="insufficient_user_authentication", acr_values="aal2"` (RFC 9470).
    pub fn challenge(&self) -> Option<String> {
        match self {
            Self::Missing | Self::InvalidToken(_) => Some(r#"Bearer error="invalid_token""#.into()),
            Self::Refused { code, .. }
                if matches!(
                    code.as_str(),
                    "invalid_token"
                        | "session_revoked"
                        | "session_expired"
                        | "session_compromised"
                        | "account_disabled"
                ) =>
            {
                Some(r#"Bearer error="invalid_token""#.into())
            }
            Self::InsufficientAal { required } => Some(format!(
                r#"Bearer error="insufficient_user_authentication", acr_values="aal{required}""#
            )),
            Self::InsufficientScope { scope } => Some(format!(
                r#"Bearer error="insufficient_scope", scope="{scope}""#
            )),
            _ => None,
        }
    }

    /// The body: `{"error":{"code","message"}}`, plus `details.acr_values` for
    /// `insufficient_user_authentication` and `details.scope` for `insufficient_scope`.
    pub fn body(&self) -> serde_json::Value {
        let mut error = serde_json::json!({ "code": self.code(), "message": self.to_string() });
        match self {
            Self::InsufficientAal { required } => {
                error["details"] = serde_json::json!({ "acr_values": format!("aal{required}") });
            }
            Self::InsufficientScope { scope } => {
                error["details"] = serde_json::json!({ "scope": scope });
            }
            _ => {}
        }
        serde_json::json!({ "error": error })
    }
}

/// Why a [`Verifier`](crate::Verifier) could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The sessiond URL does not parse.
    #[error("invalid sessiond URL: {0}")]
    Url(String),
    /// The JWKS could not be fetched or parsed at start-up.
    #[error("cannot fetch sessiond's JWKS from {url}: {reason}")]
    Jwks {
        /// Where it was fetched from.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// sessiond publishes no verification key: it signs with HS256, whose secret only it
    /// holds. Local verification is impossible; build with
    /// [`VerifierBuilder::online_only`](crate::VerifierBuilder::online_only) instead.
    #[error(
        "sessiond's JWKS is empty (it signs with HS256): local verification is impossible; \
         use VerifierBuilder::online_only()"
    )]
    OnlineOnly,
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_carry_sessionds_codes_and_challenges() {
        let aal = AuthError::InsufficientAal { required: 2 };
        assert_eq!(
            (aal.status(), aal.code()),
            (401, "insufficient_user_authentication")
        );
        assert_eq!(
            aal.challenge().as_deref(),
            Some(r#"Bearer error="insufficient_user_authentication", acr_values="aal2""#)
        );
        assert_eq!(aal.body()["error"]["details"]["acr_values"], "aal2");

        let expired = AuthError::InvalidToken(TokenProblem::Expired);
        assert_eq!((expired.status(), expired.code()), (401, "invalid_token"));
        assert_eq!(
            expired.challenge().as_deref(),
            Some(r#"Bearer error="invalid_token""#)
        );
        // The reason is for logs; the client's message names it, never a secret.
        assert_eq!(
            expired.body()["error"]["message"],
            "invalid access token (expired)"
        );

        let revoked = AuthError::Refused {
            status: 401,
            code: "session_revoked".into(),
            message: "the session was revoked".into(),
            retry_after: None,
        };
        assert_eq!(
            revoked.challenge().as_deref(),
            Some(r#"Bearer error="invalid_token""#)
        );
        let bad_key = AuthError::Refused {
            status: 401,
            code: "invalid_api_key".into(),
            message: "invalid API key".into(),
            retry_after: None,
        };
        assert_eq!(bad_key.challenge(), None, "API keys are not bearer tokens");

        let scope = AuthError::InsufficientScope {
            scope: "invoices:read".into(),
        };
        assert_eq!((scope.status(), scope.code()), (403, "insufficient_scope"));
        assert_eq!(
            scope.challenge().as_deref(),
            Some(r#"Bearer error="insufficient_scope", scope="invoices:read""#)
        );
    }
}
