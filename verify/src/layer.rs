//! The tower layer and the axum extractors (feature `axum`, on by default).

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Json;
use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tower::{Layer, Service};

use crate::error::AuthError;
use crate::principal::{Principal, UserPrincipal};
use crate::verifier::{Check, Verifier};

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, Json(self.body())).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(value) = self.challenge().and_then(|c| HeaderValue::try_from(c).ok()) {
            headers.insert(header::WWW_AUTHENTICATE, value);
        }
        if let Self::Refused {
            retry_after: Some(secs),
            ..
        } = self
        {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// A tower layer that authenticates every request it wraps and puts the [`Principal`] in the
/// request's extensions (where the extractors find it); a refused request never reaches the
/// handler and answers like sessiond would (see [`AuthError`]).
///
/// Options pile up: [`AuthLayer::online`] for revocation-sensitive routes,
/// [`AuthLayer::require_aal2`], [`AuthLayer::require_scope`]. Apply it with
/// `Router::route_layer` (unmatched paths then still answer 404) or on one method router.
///
/// ```
/// use axum::{Router, routing::{get, post}};
/// use sessiond_verify::{AuthLayer, Principal, Verifier};
///
/// async fn me(principal: Principal) -> String { principal.user_id().to_string() }
/// async fn transfer() -> &'static str { "done" }
///
/// fn router(verifier: Verifier) -> Router {
///     Router::new()
///         .route("/me", get(me))
///         .route_layer(AuthLayer::new(verifier.clone()))
///         // Refused within the online cache TTL once the session is revoked.
///         .route("/transfer", post(transfer).layer(AuthLayer::new(verifier).online().require_aal2()))
/// }
/// ```
#[derive(Clone, Debug)]
pub struct AuthLayer {
    verifier: Verifier,
    policy: Arc<Policy>,
}

#[derive(Clone, Debug, Default)]
struct Policy {
    online: bool,
    min_aal: Option<u8>,
    scopes: Vec<String>,
}

impl AuthLayer {
    /// Local checks ([`Check::Local`]), no further requirement.
    pub fn new(verifier: Verifier) -> Self {
        Self {
            verifier,
            policy: Arc::default(),
        }
    }

    /// Checks bearer tokens online ([`Check::Online`]): a revoked session is refused within
    /// the verifier's online cache TTL instead of at the token's expiry.
    pub fn online(mut self) -> Self {
        Arc::make_mut(&mut self.policy).online = true;
        self
    }

    /// Admits only users whose session has `aal` 2 (see [`RequireAal2`]).
    pub fn require_aal2(mut self) -> Self {
        Arc::make_mut(&mut self.policy).min_aal = Some(2);
        self
    }

    /// Admits only principals carrying `scope` (see [`RequireScope`]); may be repeated.
    pub fn require_scope(mut self, scope: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.policy).scopes.push(scope.into());
        self
    }
}

impl Policy {
    fn check(&self, principal: &Principal) -> Result<(), AuthError> {
        if let Some(required) = self.min_aal {
            require_aal(principal, required)?;
        }
        for scope in &self.scopes {
            require_scope(principal, scope)?;
        }
        Ok(())
    }
}

fn require_aal(principal: &Principal, required: u8) -> Result<&UserPrincipal, AuthError> {
    match principal {
        Principal::User(user) if user.aal >= required => Ok(user),
        Principal::User(_) => Err(AuthError::InsufficientAal { required }),
        Principal::Service(_) => Err(AuthError::PrincipalNotAllowed),
    }
}

fn require_scope(principal: &Principal, scope: &str) -> Result<(), AuthError> {
    if principal.has_scope(scope) {
        Ok(())
    } else {
        Err(AuthError::InsufficientScope {
            scope: scope.to_owned(),
        })
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Authenticated<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authenticated {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`AuthLayer`] wraps around a route.
#[derive(Clone, Debug)]
pub struct Authenticated<S> {
    inner: S,
    layer: AuthLayer,
}

impl<S> Service<Request> for Authenticated<S>
where
    S: Service<Request, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        // The clone that was polled ready is the one that serves (tower's usual dance).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        Box::pin(async move {
            let check = if layer.policy.online {
                Check::Online
            } else {
                Check::Local
            };
            let principal = layer
                .verifier
                .authenticate(request.headers(), check)
                .await
                .and_then(|p| layer.policy.check(&p).map(|()| p));
            match principal {
                Ok(principal) => {
                    request.extensions_mut().insert(principal);
                    inner.call(request).await
                }
                Err(refusal) => Ok(refusal.into_response()),
            }
        })
    }
}

/// The principal the [`AuthLayer`] put in the request. Without the layer it refuses with 401
/// (and logs the mistake): a route is never open by accident.
impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Principal>().cloned().ok_or_else(|| {
            tracing::error!(path = %parts.uri.path(), "Principal extracted without AuthLayer");
            AuthError::Missing
        })
    }
}

/// A user whose session has `aal` 2 (a second factor proven). A weaker session gets 401
/// `insufficient_user_authentication` with `WWW-Authenticate: Bearer
/// error="insufficient_user_authentication", acr_values="aal2"` (RFC 9470), exactly as sessiond
/// answers; an API key gets 403 `principal_not_allowed`.
///
/// ```
/// use sessiond_verify::RequireAal2;
///
/// async fn delete_account(RequireAal2(user): RequireAal2) -> String {
///     format!("deleting {}", user.user_id)
/// }
/// ```
#[derive(Clone, Debug)]
pub struct RequireAal2(pub UserPrincipal);

impl<S: Send + Sync> FromRequestParts<S> for RequireAal2 {
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let principal = Principal::from_request_parts(parts, state).await?;
        require_aal(&principal, 2).cloned().map(Self)
    }
}

/// A scope name, as a type, for [`RequireScope`]. Declare one with [`scope!`](crate::scope).
pub trait Scope {
    /// The scope, as sessiond lists it in an API key's scopes.
    const NAME: &'static str;
}

/// Declares a [`Scope`] type.
///
/// ```
/// sessiond_verify::scope!(
///     /// Read invoices.
///     pub InvoicesRead = "invoices:read"
/// );
/// use sessiond_verify::Scope;
/// assert_eq!(InvoicesRead::NAME, "invoices:read");
/// ```
#[macro_export]
macro_rules! scope {
    ($(#[$meta:meta])* $vis:vis $name:ident = $scope:literal) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug)]
        $vis struct $name;
        impl $crate::Scope for $name {
            const NAME: &'static str = $scope;
        }
    };
}

/// A principal carrying the scope `S`; otherwise 403 `insufficient_scope` with
/// `WWW-Authenticate: Bearer error="insufficient_scope", scope="…"` (RFC 6750 §3.1). sessiond's
/// access tokens carry no scopes, so only API keys with the scope pass.
///
/// ```
/// use sessiond_verify::{RequireScope, scope};
///
/// scope!(
///     /// Read invoices.
///     pub InvoicesRead = "invoices:read"
/// );
///
/// async fn invoices(RequireScope(caller, ..): RequireScope<InvoicesRead>) -> String {
///     format!("invoices of {}", caller.user_id())
/// }
/// ```
#[derive(Clone, Debug)]
pub struct RequireScope<S: Scope>(pub Principal, pub PhantomData<S>);

impl<St: Send + Sync, S: Scope> FromRequestParts<St> for RequireScope<S> {
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &St) -> Result<Self, Self::Rejection> {
        let principal = Principal::from_request_parts(parts, state).await?;
        require_scope(&principal, S::NAME)?;
        Ok(Self(principal, PhantomData))
    }
}
