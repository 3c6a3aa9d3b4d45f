//! HTTP hardening: the client IP (trusted proxies), per-route-class rate limits with
//! `RateLimit-*` headers, request header limits (431), security headers, `Cache-Control` on API
//! answers, and CORS from a configured allow-list only.
//!
//! Layer placement (see `http::router`): [`limit_requests`] runs inside the correlation-id and
//! timeout layers, so its refusals carry the usual error body; [`outer`] wraps everything, so
//! every answer — also a panic's 500 or a CORS preflight — carries the security headers.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::auth::oauth::origins::AllowedOrigins;

use crate::config::HardeningSettings;
use crate::http::error::ApiError;
use crate::ratelimit::client_ip::{ClientIpHeader, client_ip};
use crate::ratelimit::{self, Cidr, LimitClass, Limiter};

/// The client's IP as [`limit_requests`] determined it (trusted proxies applied). Handlers read
/// it through `ClientInfo`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

/// What [`limit_requests`] needs.
#[derive(Debug)]
pub struct RequestGuard {
    /// The rate limiter (shared with handlers through `AppState`).
    pub limiter: Arc<Limiter>,
    /// Peers whose forwarding headers are believed.
    pub trusted_proxies: Vec<Cidr>,
    /// The one header read from them (`SESSIOND_CLIENT_IP_HEADER`).
    pub client_ip_header: ClientIpHeader,
    /// Header limits.
    pub max_header_bytes: usize,
    /// Header field count limit.
    pub max_headers: usize,
}

/// The IP-keyed class of a request, if its route has one beyond `General`.
/// Paths are matched literally (none of the limited routes has a path parameter).
pub fn route_class(method: &Method, path: &str) -> Option<LimitClass> {
    if method != Method::POST {
        return None;
    }
    Some(match path {
        "/v1/auth/sessions"
        | "/v1/auth/browser/sessions"
        | "/v1/auth/password"
        | "/v1/auth/sessions/current/reauth" => LimitClass::Login,
        // Unauthenticated passkey ceremonies: each start stores a ceremony row.
        "/v1/auth/passkeys/login/start" | "/v1/auth/passkeys/login/finish" => LimitClass::Login,
        "/v1/auth/passkeys/mfa/start" | "/v1/auth/passkeys/mfa/finish" => LimitClass::Verify,
        "/v1/auth/register" => LimitClass::Register,
        "/v1/auth/email/verify"
        | "/v1/auth/email/resend"
        | "/v1/auth/sessions/mfa"
        | "/v1/auth/browser/mfa" => LimitClass::Verify,
        p if p.starts_with("/v1/auth/mfa/") => LimitClass::Verify,
        "/v1/auth/password/reset" | "/v1/auth/password/reset/confirm" => LimitClass::Reset,
        _ => return None,
    })
}

/// Routes outside the per-IP `General` limit: probes and docs, and the forward-auth endpoint
/// (a gateway calls it for every request it serves, all from one IP).
fn exempt_from_general(path: &str) -> bool {
    matches!(path, "/health" | "/ready" | "/metrics" | "/v1/auth/verify")
        || path == "/docs"
        || path.starts_with("/docs/")
}

/// Middleware: header limits, client IP, then the `General` and route-class limits per IP; the
/// most restrictive decision made while serving (handlers add account and session limits) is
/// reported in `RateLimit-*` headers.
pub async fn limit_requests(
    State(guard): State<Arc<RequestGuard>>,
    mut req: Request,
    next: Next,
) -> Response {
    let headers = req.headers();
    let header_bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if headers.len() > guard.max_headers || header_bytes > guard.max_header_bytes {
        return ApiError::HeadersTooLarge.into_response();
    }

    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    let ip = peer.map(|peer| {
        client_ip(
            peer,
            req.headers(),
            &guard.trusted_proxies,
            guard.client_ip_header,
        )
    });
    if let Some(ip) = ip {
        req.extensions_mut().insert(ClientIp(ip));
    }
    let path = req.uri().path().to_owned();
    let class = route_class(req.method(), &path);
    let limiter = guard.limiter.clone();

    let (response, decision) = ratelimit::collecting(async move {
        if let Some(ip) = ip {
            if !exempt_from_general(&path)
                && let Err(limited) = limiter.check_ip(LimitClass::General, ip).await
            {
                return ApiError::from(limited).into_response();
            }
            if let Some(class) = class
                && let Err(limited) = limiter.check_ip(class, ip).await
            {
                return ApiError::from(limited).into_response();
            }
        }
        next.run(req).await
    })
    .await;
    let mut response = response;
    if let Some(decision) = decision {
        write_headers(response.headers_mut(), &decision);
    }
    response
}

/// Response headers scripts of allowed origins may read.
pub const EXPOSED_HEADERS: [&str; 6] = [
    "x-request-id",
    "retry-after",
    "ratelimit-limit",
    "ratelimit-remaining",
    "ratelimit-reset",
    "ratelimit-policy",
];

/// The two CORS policies: the browser one (credentials, the CSRF header) on the paths
/// `http::browser::uses_browser_cors` names, the general one (only when origins are
/// configured) everywhere else.
#[derive(Clone)]
struct CorsPolicies {
    browser: CorsLayer,
    /// The OAuth endpoints browser applications call (token, userinfo, revocation,
    /// introspection): the origins the registered applications allow.
    oauth: CorsLayer,
    general: Option<CorsLayer>,
    /// Clients use HTTPS: send HSTS.
    secure: bool,
}

/// CORS by path, inside the security headers: the browser policy on browser paths, the general
/// one (when origins are configured) elsewhere. Preflights answered by a CORS policy get the
/// security headers too.
async fn cors_by_path(policies: &CorsPolicies, req: Request, next: Next) -> Response {
    use tower::{Layer, ServiceExt};
    let path = req.uri().path();
    let cors = if crate::http::browser::uses_browser_cors(path) {
        Some(&policies.browser)
    } else if OAUTH_CORS_PATHS.contains(&path) {
        Some(&policies.oauth)
    } else {
        policies.general.as_ref()
    };
    match cors {
        Some(cors) => match cors.layer(next).oneshot(req).await {
            Ok(response) => response,
            Err(never) => match never {},
        },
        None => next.run(req).await,
    }
}

/// The OAuth endpoints a browser application calls itself, with CORS from the applications'
/// allowed origins (`auth::oauth::origins`). `/oauth2/authorize` and the pages are navigations,
/// not fetches: no CORS there.
const OAUTH_CORS_PATHS: [&str; 4] = [
    "/oauth2/token",
    "/oauth2/userinfo",
    "/oauth2/revoke",
    "/oauth2/introspect",
];

/// CORS of [`OAUTH_CORS_PATHS`]: an origin some application allows, no credentials (the
/// client authenticates in the request, the user's token is a bearer token), the methods
/// and headers those endpoints take.
fn oauth_cors(origins: Arc<AllowedOrigins>) -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::async_predicate(move |origin, _| {
            let origins = origins.clone();
            async move {
                match origin.to_str() {
                    Ok(origin) => origins.allows(origin).await,
                    Err(_) => false,
                }
            }
        }))
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .expose_headers([header::WWW_AUTHENTICATE])
        .max_age(Duration::from_secs(600))
}

/// Wraps the finished router: CORS (the browser policy on browser paths, the applications'
/// origins on the OAuth endpoints, the general one — only when origins are configured —
/// elsewhere) and, outermost, the security headers.
pub fn outer(router: Router, settings: &HardeningSettings, origins: Arc<AllowedOrigins>) -> Router {
    let policies = Arc::new(CorsPolicies {
        browser: crate::http::browser::cors_layer(settings),
        oauth: oauth_cors(origins),
        general: cors(settings),
        secure: settings.secure,
    });
    // One `layer` for both (CORS, then the security headers on its answer): every
    // `Router::layer` is another boxed service axum clones per request (docs/benchmarks.md,
    // 2026-12-05, "instructions per request").
    router.layer(middleware::from_fn_with_state(
        policies,
        |State(policies): State<Arc<CorsPolicies>>, req: Request, next: Next| async move {
            let secure = policies.secure;
            let (docs, api) = {
                let path = req.uri().path();
                (path.starts_with("/docs"), path.starts_with("/v1/"))
            };
            let response = cors_by_path(&policies, req, next).await;
            security_headers(response, docs, api, secure)
        },
    ))
}

/// CORS from the allow-list: exact origins, no credentials (bearer tokens are sent
/// explicitly; the cookie routes have their own policy, `http::browser::cors_layer`), the API's methods and headers, and the rate-limit and
/// correlation headers exposed to scripts.
fn cors(settings: &HardeningSettings) -> Option<CorsLayer> {
    if settings.cors_origins.is_empty() {
        return None;
    }
    let origins: Vec<HeaderValue> = settings
        .cors_origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    let exposed = EXPOSED_HEADERS.map(HeaderName::from_static);
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PATCH,
                Method::PUT,
                Method::DELETE,
            ])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static("x-request-id"),
            ])
            .expose_headers(exposed)
            .max_age(Duration::from_secs(600)),
    )
}

/// The Content-Security-Policy of API answers: nothing may load, nothing may frame them.
const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'";
/// The Swagger UI page needs its own scripts and styles.
const DOCS_CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self' \
                        'unsafe-inline'; script-src 'self' 'unsafe-inline'; frame-ancestors \
                        'none'; base-uri 'none'";
/// HSTS for one year when clients use HTTPS. Deliberately without `includeSubDomains` or
/// `preload`: those bind sibling hosts and belong to the domain's owner.
const HSTS: &str = "max-age=31536000";

fn security_headers(mut response: Response, docs: bool, api: bool, secure: bool) -> Response {
    let h = response.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, name: HeaderName, value: &'static str| {
        h.entry(name).or_insert(HeaderValue::from_static(value));
    };
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(
        h,
        header::CONTENT_SECURITY_POLICY,
        if docs { DOCS_CSP } else { API_CSP },
    );
    set(h, header::REFERRER_POLICY, "no-referrer");
    set(
        h,
        HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    );
    if api {
        // Answers about a user (profile, sessions, keys) must not be kept by caches either;
        // token responses already say so themselves.
        set(h, header::CACHE_CONTROL, "no-store");
    }
    if secure {
        set(h, header::STRICT_TRANSPORT_SECURITY, HSTS);
    }
    response
}

/// Adds the answers of this module to every operation of the OpenAPI document: 431
/// `headers_too_large` everywhere, and 429 `rate_limited` wherever the per-IP limit applies.
pub fn document(openapi: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
    let error = |description: &str| {
        RefOr::T(
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorResponse")))
                        .build(),
                )
                .build(),
        )
    };
    for (path, item) in openapi.paths.paths.iter_mut() {
        let limited = !exempt_from_general(path);
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for op in operations.into_iter().flatten() {
            let responses = &mut op.responses.responses;
            responses.entry("431".into()).or_insert_with(|| {
                error("`headers_too_large`: too many request header fields or bytes")
            });
            if limited {
                responses.entry("429".into()).or_insert_with(|| {
                    error(
                        "`rate_limited`: a rate limit or a failed-login lock; wait `Retry-After` \
                         seconds (`RateLimit-*` headers describe the limit)",
                    )
                });
            }
        }
    }
}

/// Writes the `RateLimit-*` headers (draft-ietf-httpapi-ratelimit-headers-06: `RateLimit-Limit`,
/// `RateLimit-Remaining`, `RateLimit-Reset` in seconds, and `RateLimit-Policy`), and
/// `Retry-After` on a refusal.
pub fn write_headers(headers: &mut axum::http::HeaderMap, d: &ratelimit::Decision) {
    let reset = d.reset_ms.div_ceil(1000);
    headers.insert("ratelimit-limit", HeaderValue::from(d.limit));
    headers.insert("ratelimit-remaining", HeaderValue::from(d.remaining));
    headers.insert("ratelimit-reset", HeaderValue::from(reset));
    if let Ok(policy) = HeaderValue::from_str(&format!(
        "{};w={}",
        d.quota.limit,
        d.quota.period.as_secs().max(1)
    )) {
        headers.insert("ratelimit-policy", policy);
    }
    if !d.allowed {
        headers.insert(
            axum::http::header::RETRY_AFTER,
            HeaderValue::from(d.retry_after_ms.div_ceil(1000).max(1)),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_classes() {
        assert_eq!(
            route_class(&Method::POST, "/v1/auth/sessions"),
            Some(LimitClass::Login)
        );
        assert_eq!(route_class(&Method::GET, "/v1/auth/sessions"), None);
        assert_eq!(
            route_class(&Method::POST, "/v1/auth/passkeys/login/start"),
            Some(LimitClass::Login)
        );
        assert_eq!(
            route_class(&Method::POST, "/v1/auth/passkeys/mfa/finish"),
            Some(LimitClass::Verify)
        );
        assert_eq!(
            route_class(&Method::POST, "/v1/auth/sessions/current/reauth"),
            Some(LimitClass::Login)
        );
        assert_eq!(
            route_class(&Method::POST, "/v1/auth/password/reset/confirm"),
            Some(LimitClass::Reset)
        );
        assert_eq!(
            route_class(&Method::POST, "/v1/auth/mfa/totp/verify"),
            Some(LimitClass::Verify)
        );
        assert_eq!(route_class(&Method::POST, "/v1/auth/tokens/refresh"), None);
        assert_eq!(
            route_class(&Method::POST, "/v1/auth/browser/sessions"),
            Some(LimitClass::Login)
        );
        assert_eq!(
            route_class(&Method::POST, "/v1/auth/browser/mfa"),
            Some(LimitClass::Verify)
        );
        assert_eq!(route_class(&Method::POST, "/v1/auth/browser/refresh"), None);
        assert!(exempt_from_general("/health") && exempt_from_general("/docs/openapi.json"));
        assert!(!exempt_from_general("/v1/auth/sessions") && !exempt_from_general("/docsx"));
    }
}
