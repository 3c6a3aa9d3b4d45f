//! The HTTP front: routes, extractors, error mapping. Handlers talk to the session engine only
//! through the `Sessions` handle; no ractor or sqlx type appears here.

/// Correlation ids live outside `http` (telemetry uses them too); re-exported for handlers.
pub use crate::correlation;
pub mod authorize_steps;
pub mod browser;
pub mod demo;
pub mod error;
pub mod extract;
pub mod hardening;
pub mod metrics_layer;
pub mod oauth_pages;
pub mod openapi;
pub mod pagination;
pub mod routes;
pub mod state;
pub mod views;

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::SwaggerUi;

use crate::http::error::ApiError;
use crate::http::openapi::{ApiDoc, DOCS_PATH, OPENAPI_PATH};
use crate::http::routes::{auth, events, health, me, sessions};
use crate::http::state::AppState;

/// Limits applied to every request.
#[derive(Clone, Debug)]
pub struct HttpLimits {
    /// Largest request body accepted (413 beyond).
    pub max_body_bytes: usize,
    /// Longest a request may take before it is answered 503.
    pub request_timeout: Duration,
    /// Header limits, security headers, CORS, HSTS.
    pub hardening: crate::config::HardeningSettings,
    /// Peers whose forwarding headers are believed.
    pub trusted_proxies: Vec<crate::ratelimit::Cidr>,
    /// The one forwarding header those peers set.
    pub client_ip_header: crate::ratelimit::client_ip::ClientIpHeader,
}

/// Every API route, each registered together with its OpenAPI description.
pub fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(auth::register))
        .routes(routes!(
            auth::login,
            sessions::list,
            sessions::revoke_others
        ))
        .routes(routes!(sessions::logout))
        .routes(routes!(sessions::revoke_one))
        .routes(routes!(auth::refresh))
        .routes(routes!(crate::http::routes::browser::login))
        .routes(routes!(crate::http::routes::browser::complete_mfa))
        .routes(routes!(crate::http::routes::browser::refresh))
        .routes(routes!(crate::http::routes::browser::logout))
        .routes(routes!(crate::http::routes::mfa::complete_login))
        .routes(routes!(crate::http::routes::mfa::status))
        .routes(routes!(crate::http::routes::mfa::start_totp))
        .routes(routes!(crate::http::routes::mfa::confirm_totp))
        .routes(routes!(crate::http::routes::mfa::disable_totp))
        .routes(routes!(crate::http::routes::recovery_codes::regenerate))
        .routes(routes!(crate::http::routes::reauth::reauthenticate))
        .routes(routes!(crate::http::routes::email::verify))
        .routes(routes!(crate::http::routes::email::resend))
        .routes(routes!(crate::http::routes::password_reset::request))
        .routes(routes!(crate::http::routes::password_reset::confirm))
        .routes(routes!(me::me, crate::http::routes::profile::update_me))
        .routes(routes!(crate::http::routes::profile::change_password))
        .routes(routes!(
            crate::http::routes::api_keys::create,
            crate::http::routes::api_keys::list
        ))
        .routes(routes!(crate::http::routes::api_keys::revoke))
        .routes(routes!(
            crate::http::routes::applications::create,
            crate::http::routes::applications::list
        ))
        .routes(routes!(
            crate::http::routes::applications::read,
            crate::http::routes::applications::update,
            crate::http::routes::applications::delete
        ))
        .routes(routes!(crate::http::routes::applications::rotate_secret))
        .routes(routes!(crate::http::routes::applications::public))
        .routes(upload_limit(routes!(
            crate::http::routes::media::set_logo,
            crate::http::routes::media::remove_logo
        )))
        .routes(upload_limit(routes!(
            crate::http::routes::media::set_avatar,
            crate::http::routes::media::remove_avatar
        )))
        .routes(routes!(crate::http::routes::media::serve))
        .routes(routes!(crate::http::routes::oauth2::token))
        .routes(routes!(crate::http::routes::oauth2::introspect))
        .routes(routes!(crate::http::routes::oauth2::revoke))
        .routes(routes!(crate::http::routes::authorize::authorize))
        .routes(routes!(crate::http::routes::authorize::login))
        .routes(routes!(crate::http::routes::authorize::login_mfa))
        .routes(routes!(crate::http::routes::authorize::login_passkey))
        .routes(routes!(
            crate::http::routes::authorize::consent_page,
            crate::http::routes::authorize::consent_answer
        ))
        .routes(routes!(crate::http::routes::authorize::list_consents))
        .routes(routes!(crate::http::routes::authorize::withdraw_consent))
        .routes(routes!(crate::http::routes::oauth2::openid_configuration))
        .routes(routes!(
            crate::http::routes::oauth2::authorization_server_metadata
        ))
        .routes(routes!(
            crate::http::routes::oauth2::userinfo_get,
            crate::http::routes::oauth2::userinfo_post
        ))
        .routes(routes!(crate::http::routes::grants::list))
        .routes(routes!(crate::http::routes::grants::revoke))
        .routes(routes!(crate::http::routes::verify::verify))
        .routes(routes!(crate::http::routes::passkeys::register_start))
        .routes(routes!(crate::http::routes::passkeys::register_finish))
        .routes(routes!(crate::http::routes::passkeys::list))
        .routes(routes!(
            crate::http::routes::passkeys::rename,
            crate::http::routes::passkeys::delete
        ))
        .routes(routes!(crate::http::routes::passkeys::step_up_start))
        .routes(routes!(crate::http::routes::passkeys::step_up_finish))
        .routes(routes!(crate::http::routes::passkeys::login_start))
        .routes(routes!(crate::http::routes::passkeys::login_finish))
        .routes(routes!(crate::http::routes::passkeys::mfa_start))
        .routes(routes!(crate::http::routes::passkeys::mfa_finish))
        .routes(routes!(crate::http::routes::oidc::start))
        .routes(routes!(crate::http::routes::oidc::callback))
        .routes(routes!(crate::http::routes::oidc::exchange))
        .routes(routes!(
            crate::http::routes::oidc::link,
            crate::http::routes::oidc::unlink
        ))
        .routes(routes!(crate::http::routes::oidc::reauth))
        .routes(routes!(crate::http::routes::oidc::identities))
        .routes(routes!(events::list))
        .routes(routes!(health::jwks))
        .routes(routes!(health::health))
        .routes(routes!(health::ready))
}

/// Gives upload routes their own body limit, `media::MAX_UPLOAD_BYTES` (256 KiB), in place of
/// the general one (`SESSIOND_MAX_BODY_BYTES`, 64 KiB by default): the inner
/// `DefaultBodyLimit` overrides the outer one for these routes only. A per-route layer, not a
/// `Router::layer`: no other route pays for it.
fn upload_limit(
    (schemas, paths, route): utoipa_axum::router::UtoipaMethodRouter<AppState>,
) -> utoipa_axum::router::UtoipaMethodRouter<AppState> {
    (
        schemas,
        paths,
        route.layer(DefaultBodyLimit::max(crate::media::MAX_UPLOAD_BYTES)),
    )
}

/// The OpenAPI document of [`api_routes`].
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = api_routes().into_openapi();
    hardening::document(&mut doc);
    doc
}

/// Builds the application's router.
pub fn router(state: AppState, limits: HttpLimits) -> Router {
    let timeout = limits.request_timeout;
    let origins = Arc::new(crate::auth::oauth::origins::AllowedOrigins::new(Arc::new(
        state.store.clone(),
    )));
    let mut routes = api_routes();
    if state.metrics.on_main_listener() {
        // Documented only where it is served (not with `SESSIOND_METRICS_ADDR`).
        routes = routes.routes(routes!(crate::http::routes::metrics::metrics));
    }
    if state.demo.dev_codes {
        // Documented only where it is served (development mail mode on a loopback bind).
        routes = routes.routes(routes!(demo::last_code));
    }
    let demo_pages = state.demo.enabled.then(demo::pages);
    let (api, mut openapi) = routes.split_for_parts();
    hardening::document(&mut openapi);
    let guard = Arc::new(hardening::RequestGuard {
        limiter: state.limiter.clone(),
        trusted_proxies: limits.trusted_proxies.clone(),
        client_ip_header: limits.client_ip_header,
        max_header_bytes: limits.hardening.max_header_bytes,
        max_headers: limits.hardening.max_headers,
    });
    // One `layer` call with the whole stack, outermost first. Each `Router::layer` call wraps
    // every route in another boxed service, and axum clones a route's service, box by box, for
    // every request: with one `layer` per middleware that was 88 of the 169 heap allocations
    // of a `GET /v1/auth/me` under callgrind (docs/benchmarks.md, 2026-12-05). Same layers,
    // same order, same per-route placement (so `MatchedPath` is set for metrics and spans).
    let stack = ServiceBuilder::new()
        .layer(middleware::from_fn_with_state(
            state.metrics.clone(),
            metrics_layer::track,
        ))
        .layer(middleware::map_request(correlation::ensure_id))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(crate::telemetry::request_span)
                .on_response(crate::telemetry::record_response),
        )
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(middleware::from_fn(correlation::middleware))
        .layer(middleware::from_fn(move |req: Request, next: Next| {
            request_timeout(req, next, timeout)
        }))
        .layer(middleware::from_fn_with_state(
            guard,
            hardening::limit_requests,
        ))
        .layer(DefaultBodyLimit::max(limits.max_body_bytes));
    let mut api = api.merge(crate::http::routes::authorize::assets());
    if let Some(pages) = demo_pages {
        api = api.merge(pages);
    }
    let router = api
        .merge(SwaggerUi::new(DOCS_PATH).url(OPENAPI_PATH, openapi))
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(stack)
        .with_state(state);
    hardening::outer(router, &limits.hardening, origins)
}

/// Answers 503 `unavailable` when a request outlives the configured timeout.
async fn request_timeout(req: Request, next: Next, timeout: Duration) -> Response {
    match tokio::time::timeout(timeout, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::Unavailable("request timed out".into()).into_response(),
    }
}

/// A panic in a handler becomes the documented 500 body, never a dropped connection.
fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "unknown panic".to_owned());
    ApiError::Internal(format!("handler panicked: {detail}")).into_response()
}
