//! The OpenAPI 3.1 description, generated from the handlers' `#[utoipa::path]` annotations.
//!
//! Routes are registered through `utoipa_axum::OpenApiRouter` (see `http::router`), so a route
//! cannot be served without being described. The document is served at `/docs/openapi.json`
//! and a Swagger UI whose assets are compiled into the binary at `/docs` (nothing is fetched
//! from a CDN at build or run time).

use serde::Serialize;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{IntoResponses, Modify, OpenApi, ToSchema};

/// Where the document is served.
pub const OPENAPI_PATH: &str = "/docs/openapi.json";
/// Where the docs UI is served.
pub const DOCS_PATH: &str = "/docs";

/// The error body every failure answers with.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorResponse {
    /// The error.
    pub error: ErrorDetail,
}

/// The inside of an error body.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `invalid_refresh_token`.
    #[schema(example = "validation_failed")]
    pub code: String,
    /// Human-readable explanation; never carries internal detail.
    pub message: String,
    /// Extra data for some codes: `validation_failed` → `{"fields": [{"field", "message"}]}`;
    /// `mfa_required` → `{"challenge_id", "expires_at", "methods"}`.
    #[schema(value_type = Option<Object>)]
    pub details: Option<serde_json::Value>,
    /// The request's correlation id (also in the `x-request-id` header).
    pub correlation_id: String,
}

// Responses shared by many operations, named once here and listed in a handler's
// `responses(...)` by type. Each expands to the same entries a `(status = …, description = …,
// body = ErrorResponse)` line would, so the document does not change.

/// `400 invalid_request` for a body that is not well-formed JSON of the expected shape.
#[derive(Debug, IntoResponses)]
#[response(status = 400, description = "`invalid_request`: malformed JSON")]
pub struct MalformedJson(pub ErrorResponse);

/// The refusals of a JSON body before it is parsed (`AppJson`): too large, or not JSON.
#[derive(Debug, IntoResponses)]
pub enum BodyRejected {
    /// The body is larger than the limit.
    #[response(status = 413, description = "`payload_too_large`")]
    PayloadTooLarge(ErrorResponse),
    /// The body is not `application/json`.
    #[response(status = 415, description = "`unsupported_media_type`")]
    UnsupportedMediaType(ErrorResponse),
}

/// `401` for a bearer access token that is not accepted (`CurrentSession`).
#[derive(Debug, IntoResponses)]
#[response(
    status = 401,
    description = "`invalid_token`, `session_revoked`, `session_expired` or `session_compromised`"
)]
pub struct BearerRejected(pub ErrorResponse);

/// `503 unavailable`: the store, the session engine or the hashing pool is busy or down.
#[derive(Debug, IntoResponses)]
#[response(status = 503, description = "`unavailable`")]
pub struct Unavailable(pub ErrorResponse);

/// `422 validation_failed` for a JSON body whose fields are missing, mistyped or unknown.
#[derive(Debug, IntoResponses)]
#[response(
    status = 422,
    description = "`validation_failed`: a field of the body is missing, mistyped or unknown"
)]
pub struct ValidationFailed(pub ErrorResponse);

/// The refusals of the `Page` extractor, which every list endpoint shares.
#[derive(Debug, IntoResponses)]
pub enum PageRejected {
    /// The cursor (or the query string) is not one this service gave out.
    #[response(
        status = 400,
        description = "`invalid_request`: bad cursor or query string"
    )]
    BadCursor(ErrorResponse),
    /// The limit is not an integer from 1 to 100.
    #[response(status = 422, description = "`validation_failed`: bad limit")]
    BadLimit(ErrorResponse),
}

/// `403 csrf_rejected`: a browser route without `x-sessiond-csrf: 1` and an allowed `Origin`.
#[derive(Debug, IntoResponses)]
#[response(status = 403, description = "`csrf_rejected`")]
pub struct CsrfRejected(pub ErrorResponse);

/// `404 passkeys_disabled`: no WebAuthn relying party is configured.
#[derive(Debug, IntoResponses)]
#[response(status = 404, description = "`passkeys_disabled`")]
pub struct PasskeysDisabled(pub ErrorResponse);

/// `404 oidc_provider_unknown`: no provider of that name is configured.
#[derive(Debug, IntoResponses)]
#[response(status = 404, description = "`oidc_provider_unknown`")]
pub struct OidcProviderUnknown(pub ErrorResponse);

/// `404 not_found` for an application id that is not one of the caller's (another user's
/// answers the same as one that does not exist).
#[derive(Debug, IntoResponses)]
#[response(
    status = 404,
    description = "`not_found`: no such application of the caller"
)]
pub struct ApplicationNotFound(pub ErrorResponse);

/// The document's fixed parts; paths and schemas are added by the router.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "sessiond",
        description = "Authentication and session service: every session is a supervised actor.",
        license(name = "Apache-2.0")
    ),
    components(schemas(ErrorResponse, ErrorDetail)),
    modifiers(&BearerAuth),
    tags(
        (name = "auth", description = "Registration, login and token refresh"),
        (name = "sessions", description = "The caller's sessions"),
        (name = "service", description = "Health, readiness and keys"),
        (name = "api-keys", description = "The caller's API keys (service credentials)"),
        (name = "verify", description = "Forward authentication for gateways"),
        (name = "profile", description = "The caller's display name and password"),
        (name = "oauth2", description = "OAuth 2.1 protocol endpoints: form-encoded requests and RFC 6749 error bodies `{error, error_description}`, not the API's JSON conventions"),
        (name = "applications", description = "OAuth applications the caller registered, and public application pages"),
        (name = "passkeys", description = "Passkeys (WebAuthn): registration, step-up, passwordless login, second factor"),
        (name = "oidc", description = "Log in with Google or any OpenID Connect provider: browser and native flows, linking, identities"),
        (name = "browser", description = "Browser sessions: the refresh token in an HttpOnly cookie, every request under the CSRF rule (`x-sessiond-csrf: 1` and an allowed `Origin`)"),
        (name = "media", description = "Uploaded avatars and application logos, re-encoded and served under their SHA-256 as immutable files"),
    )
)]
pub struct ApiDoc;

/// Declares the `bearer` security scheme (a JWT access token).
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut scheme = Http::new(HttpAuthScheme::Bearer);
        scheme.bearer_format = Some("JWT".to_owned());
        components.add_security_scheme("bearer", SecurityScheme::Http(scheme));
        // A service's API key (`sk_…`), accepted by `/v1/auth/verify` only.
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(utoipa::openapi::security::ApiKey::Header(
                utoipa::openapi::security::ApiKeyValue::new("x-api-key"),
            )),
        );
        // The browser routes' refresh token (`__Secure-sessiond_rt`, or `sessiond_rt` on a
        // loopback bind with `SESSIOND_SECURE_COOKIES=off`).
        components.add_security_scheme(
            "refresh_cookie",
            SecurityScheme::ApiKey(utoipa::openapi::security::ApiKey::Cookie(
                utoipa::openapi::security::ApiKeyValue::new(
                    crate::http::browser::SECURE_COOKIE_NAME,
                ),
            )),
        );
    }
}
