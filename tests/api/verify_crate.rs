//! The `sessiond-verify` crate against a live sessiond: its example service
//! (`verify/examples/protected_service.rs`, included here for its `router`) runs on a random
//! port and reaches sessiond through a small counting proxy, which lets a test count JWKS
//! fetches and verify calls on the server side and point the service at a restarted sessiond
//! without restarting the service.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response as AxumResponse};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use sessiond_verify::{BuildError, Mode, Verifier, VerifierBuilder};

use crate::both_backends;
use crate::helpers::{Backend, TestApp, assert_error_shape, spawn_app, spawn_app_with, write_keys};
use crate::mfa;

#[allow(dead_code, unreachable_pub)]
#[path = "../../verify/examples/protected_service.rs"]
mod protected_service;

/// sessiond's default `SESSIOND_ISSUER` and `SESSIOND_AUDIENCE`.
const ISSUER: &str = "http://localhost:8080";
const AUDIENCE: &str = "sessiond";

/// A reverse proxy in front of sessiond that counts what the verifier asks.
struct Proxy {
    base: String,
    upstream: Arc<RwLock<String>>,
    jwks_fetches: Arc<AtomicUsize>,
    verify_calls: Arc<AtomicUsize>,
}

#[derive(Clone)]
struct ProxyState {
    upstream: Arc<RwLock<String>>,
    jwks_fetches: Arc<AtomicUsize>,
    verify_calls: Arc<AtomicUsize>,
    client: reqwest::Client,
}

async fn forward(
    State(state): State<ProxyState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> AxumResponse {
    match uri.path() {
        "/.well-known/jwks.json" => state.jwks_fetches.fetch_add(1, Ordering::SeqCst),
        "/v1/auth/verify" => state.verify_calls.fetch_add(1, Ordering::SeqCst),
        _ => 0,
    };
    let upstream = state.upstream.read().unwrap().clone();
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut request = state.client.request(method, format!("{upstream}{path}"));
    for (name, value) in &headers {
        if name != "host" && name != "content-length" {
            request = request.header(name, value);
        }
    }
    let answer = request.body(body).send().await.unwrap();
    let mut response = (answer.status(), answer.headers().clone()).into_response();
    response.headers_mut().remove("content-length");
    response.headers_mut().remove("transfer-encoding");
    let bytes = answer.bytes().await.unwrap();
    *response.body_mut() = axum::body::Body::from(bytes);
    response
}

/// Serves `router` on 127.0.0.1:0; returns its base URL.
async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    base
}

async fn proxy(upstream: &str) -> Proxy {
    let state = ProxyState {
        upstream: Arc::new(RwLock::new(upstream.to_owned())),
        jwks_fetches: Arc::default(),
        verify_calls: Arc::default(),
        client: reqwest::Client::new(),
    };
    let router = axum::Router::new()
        .fallback(forward)
        .with_state(state.clone());
    Proxy {
        base: serve(router).await,
        upstream: state.upstream,
        jwks_fetches: state.jwks_fetches,
        verify_calls: state.verify_calls,
    }
}

impl Proxy {
    fn jwks_fetches(&self) -> usize {
        self.jwks_fetches.load(Ordering::SeqCst)
    }

    fn verify_calls(&self) -> usize {
        self.verify_calls.load(Ordering::SeqCst)
    }

    fn settings(&self) -> VerifierBuilder {
        Verifier::builder(&self.base, ISSUER, AUDIENCE)
    }
}

/// The example service, built with `settings`, and a client for it.
struct Service {
    base: String,
    client: reqwest::Client,
}

impl Service {
    async fn start(settings: VerifierBuilder) -> Self {
        let verifier = settings.build().await.expect("the verifier builds");
        Self::with(verifier).await
    }

    async fn with(verifier: Verifier) -> Self {
        Self {
            base: serve(protected_service::router(verifier)).await,
            client: reqwest::Client::new(),
        }
    }

    async fn get(&self, path: &str, access: &str) -> Response {
        self.client
            .get(format!("{}{path}", self.base))
            .bearer_auth(access)
            .send()
            .await
            .unwrap()
    }

    async fn get_with_key(&self, path: &str, key: &str) -> Response {
        self.client
            .get(format!("{}{path}", self.base))
            .header("x-api-key", key)
            .send()
            .await
            .unwrap()
    }

    async fn transfer(&self, access: &str) -> Response {
        self.client
            .post(format!("{}/transfer", self.base))
            .bearer_auth(access)
            .send()
            .await
            .unwrap()
    }
}

/// Asserts a refusal: status, code, sessiond's body shape, and the `WWW-Authenticate` value.
async fn assert_refused(
    response: Response,
    status: StatusCode,
    code: &str,
    challenge: Option<&str>,
) -> Value {
    assert_eq!(response.status(), status, "status for {code}");
    assert_eq!(
        response
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap()),
        challenge,
        "{code}"
    );
    let body: Value = response.json().await.unwrap();
    assert_error_shape(&body, code);
    body
}

const INVALID_TOKEN: Option<&str> = Some(r#"Bearer error="invalid_token""#);

/// A refused bearer token: 401 with `code` and the `invalid_token` challenge.
async fn assert_bearer_refused(response: Response, code: &str) {
    assert_refused(response, StatusCode::UNAUTHORIZED, code, INVALID_TOKEN).await;
}

/// The one refusal of a bad bearer token: 401 `invalid_token` with its challenge.
async fn assert_invalid_token(response: Response) {
    assert_bearer_refused(response, "invalid_token").await;
}

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .try_into()
        .unwrap()
}

async fn revoke(app: &TestApp, access: &str) {
    let response = app
        .post_authed("/v1/auth/sessions/current/revoke", access)
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
}

async fn valid_tokens_pass_and_bad_ones_get_sessionds_answers(backend: Backend) {
    let app = spawn_app(backend).await;
    let proxy = proxy(&app.base).await;
    let service = Service::start(proxy.settings()).await;
    let ada = app.signed_in_user("ada@example.com").await;

    let public = service.client.get(&service.base).send().await.unwrap();
    assert_eq!(public.status(), StatusCode::OK);

    let response = service.get("/me", &ada.access).await;
    assert_eq!(response.status(), StatusCode::OK);
    let me: Value = response.json().await.unwrap();
    let c = claims(&ada.access);
    assert_eq!(me["kind"], "user");
    assert_eq!(me["user_id"], c["sub"]);
    assert_eq!(me["session_id"], ada.session_id.as_str());
    assert_eq!(me["aal"], 1);
    assert_eq!(me["amr"], json!(["pwd"]));
    assert_eq!(
        proxy.verify_calls(),
        0,
        "a local check asks sessiond nothing"
    );

    // Nothing, a tampered signature, a tampered claim, not a bearer: 401 invalid_token.
    let none = service
        .client
        .get(format!("{}/me", service.base))
        .send()
        .await
        .unwrap();
    assert_invalid_token(none).await;
    let (head, sig) = ada.access.rsplit_once('.').unwrap();
    let flipped = if sig.starts_with('A') { "B" } else { "A" };
    let tampered_sig = format!("{head}.{flipped}{}", &sig[1..]);
    let mut forged = claims(&ada.access);
    forged["aal"] = 2.into();
    let parts: Vec<&str> = ada.access.split('.').collect();
    let tampered_claims = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(forged.to_string()),
        parts[2]
    );
    for token in [tampered_sig.as_str(), tampered_claims.as_str(), "not-a-jwt"] {
        let response = service.get("/me", token).await;
        assert_invalid_token(response).await;
    }
    // Algorithm confusion: HS256 keyed with the published public key, and `none`, both naming
    // the real kid: the JWKS fixes the algorithm, so both are refused.
    let jwks: Value = app.get_json("/.well-known/jwks.json").await;
    let jwk = &jwks["keys"][0];
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.typ = Some("at+jwt".into());
    header.kid = jwk["kid"].as_str().map(str::to_owned);
    let public = URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap();
    let confused = jsonwebtoken::encode(
        &header,
        &claims(&ada.access),
        &jsonwebtoken::EncodingKey::from_secret(&public),
    )
    .unwrap();
    let none_header = json!({"alg": "none", "typ": "at+jwt", "kid": jwk["kid"]});
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(none_header.to_string()),
        parts[1]
    );
    for token in [confused.as_str(), unsigned.as_str()] {
        let response = service.get("/me", token).await;
        assert_invalid_token(response).await;
    }
    let basic = service
        .client
        .get(format!("{}/me", service.base))
        .basic_auth("ada", Some("pw"))
        .send()
        .await
        .unwrap();
    assert_invalid_token(basic).await;

    // Both kinds of credentials at once: 400, as at sessiond.
    let both = service
        .client
        .get(format!("{}/me", service.base))
        .bearer_auth(&ada.access)
        .header("x-api-key", "sk_whatever")
        .send()
        .await
        .unwrap();
    assert_refused(both, StatusCode::BAD_REQUEST, "invalid_request", None).await;

    // sessiond's own JWKS says how long to cache it; the verifier reads it.
    let jwks = app.get("/.well-known/jwks.json").await;
    assert_eq!(jwks.headers()["cache-control"], "public, max-age=300");
    assert_eq!(proxy.jwks_fetches(), 1);
}

/// Every claim and header rule, one at a time, on tokens signed with sessiond's own key: the
/// unchanged copy passes (so each refusal is that rule's), each changed one gets 401.
async fn each_claim_and_header_rule_is_enforced(backend: Backend) {
    let app = spawn_app(backend).await;
    let proxy = proxy(&app.base).await;
    let service = Service::start(proxy.settings().leeway(Duration::from_secs(5))).await;
    let ada = app.signed_in_user("ada@example.com").await;
    let pem = std::fs::read(app.dir().join("signing.pem")).unwrap();
    let key = jsonwebtoken::EncodingKey::from_ed_pem(&pem).unwrap();
    let kid = claims_header_kid(&ada.access);
    let sign = |typ: &str, claims: &Value| {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.typ = Some(typ.to_owned());
        header.kid = Some(kid.clone());
        jsonwebtoken::encode(&header, claims, &key).unwrap()
    };
    let good = claims(&ada.access);
    let now = unix_now();

    for typ in ["at+jwt", "application/at+jwt", "AT+JWT"] {
        let response = service.get("/me", &sign(typ, &good)).await;
        assert_eq!(response.status(), StatusCode::OK, "typ {typ}");
    }
    let changed = |field: &str, value: Value| {
        let mut c = good.clone();
        if value.is_null() {
            c.as_object_mut().unwrap().remove(field);
        } else {
            c[field] = value;
        }
        c
    };
    let refused = [
        ("typ JWT", sign("JWT", &good)),
        (
            "iss",
            sign("at+jwt", &changed("iss", "https://evil.example".into())),
        ),
        ("aud", sign("at+jwt", &changed("aud", "other".into()))),
        (
            "exp past",
            sign("at+jwt", &changed("exp", (now - 60).into())),
        ),
        (
            "iat future",
            sign("at+jwt", &changed("iat", (now + 60).into())),
        ),
        (
            "nbf future",
            sign("at+jwt", &changed("nbf", (now + 60).into())),
        ),
        ("no sid", sign("at+jwt", &changed("sid", Value::Null))),
        (
            "sub not a uuid",
            sign("at+jwt", &changed("sub", "ada".into())),
        ),
        ("no exp", sign("at+jwt", &changed("exp", Value::Null))),
    ];
    for (what, token) in refused {
        let response = service.get("/me", &token).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{what}");
        assert_invalid_token(response).await;
    }
    // Within the leeway, time claims still pass.
    let skewed = sign("at+jwt", &changed("iat", (now + 2).into()));
    assert_eq!(service.get("/me", &skewed).await.status(), StatusCode::OK);
}

async fn expired_tokens_are_refused(backend: Backend) {
    let app = spawn_app_with(
        backend,
        &[
            ("SESSIOND_ACCESS_TTL", "2s"),
            ("SESSIOND_GRACE_WINDOW", "0s"),
            ("SESSIOND_STALENESS", "1s"),
        ],
    )
    .await;
    let proxy = proxy(&app.base).await;
    let service = Service::start(proxy.settings().leeway(Duration::ZERO)).await;
    let ada = app.signed_in_user("ada@example.com").await;
    assert_eq!(
        service.get("/me", &ada.access).await.status(),
        StatusCode::OK
    );

    // Wait (on the wall clock, which `exp` is about) until the token is past its expiry.
    let exp = claims(&ada.access)["exp"].as_i64().unwrap();
    while unix_now() <= exp {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let response = service.get("/me", &ada.access).await;
    assert_invalid_token(response).await;
}

async fn tokens_for_another_audience_or_issuer_are_refused(backend: Backend) {
    let app = spawn_app_with(backend, &[("SESSIOND_AUDIENCE", "billing")]).await;
    let proxy = proxy(&app.base).await;
    let ada = app.signed_in_user("ada@example.com").await;

    // A service expecting sessiond's default audience refuses billing's token...
    let other = Service::start(proxy.settings()).await;
    let response = other.get("/me", &ada.access).await;
    assert_invalid_token(response).await;
    // ...and so does one expecting another issuer; the billing service accepts it.
    let wrong_issuer = Service::start(Verifier::builder(
        &proxy.base,
        "https://elsewhere.example",
        "billing",
    ))
    .await;
    let response = wrong_issuer.get("/me", &ada.access).await;
    assert_invalid_token(response).await;
    let billing = Service::start(Verifier::builder(&proxy.base, ISSUER, "billing")).await;
    assert_eq!(
        billing.get("/me", &ada.access).await.status(),
        StatusCode::OK
    );
}

async fn revoked_sessions_pass_local_checks_until_expiry_but_not_online_ones(backend: Backend) {
    let app = spawn_app(backend).await;
    let proxy = proxy(&app.base).await;
    let service = Service::start(proxy.settings().online_cache_ttl(Duration::ZERO)).await;
    let ada = app.signed_in_user("ada@example.com").await;
    assert_eq!(service.transfer(&ada.access).await.status(), StatusCode::OK);
    assert_eq!(proxy.verify_calls(), 1);

    revoke(&app, &ada.access).await;
    // Local mode: accepted until the token expires (documented).
    assert_eq!(
        service.get("/me", &ada.access).await.status(),
        StatusCode::OK
    );
    // Online mode: refused at once with sessiond's own code.
    let response = service.transfer(&ada.access).await;
    assert_bearer_refused(response, "session_revoked").await;

    // With a positive cache, the answer is reused until its TTL: "revoked means refused within
    // the TTL", not at once (an hour here, so the test cannot race it).
    let cached = Service::start(proxy.settings().online_cache_ttl(Duration::from_secs(3600))).await;
    let bob = app.signed_in_user("bob@example.com").await;
    let before = proxy.verify_calls();
    assert_eq!(cached.transfer(&bob.access).await.status(), StatusCode::OK);
    revoke(&app, &bob.access).await;
    assert_eq!(cached.transfer(&bob.access).await.status(), StatusCode::OK);
    assert_eq!(
        proxy.verify_calls(),
        before + 1,
        "the second answer came from the cache"
    );
}

async fn signing_key_rotation_is_picked_up_without_restarting_the_service(backend: Backend) {
    let keys = tempfile::tempdir().unwrap();
    let app = spawn_app(backend).await;
    let old_key = keys.path().join("old.pem");
    std::fs::copy(app.dir().join("signing.pem"), &old_key).unwrap();
    let proxy = proxy(&app.base).await;
    let service = Service::start(proxy.settings()).await;
    let ada = app.signed_in_user("ada@example.com").await;
    assert_eq!(
        service.get("/me", &ada.access).await.status(),
        StatusCode::OK
    );

    // Restart sessiond with a new signing key first and the old one still listed.
    app.stop().await;
    let (new_key, _) = write_keys(keys.path());
    let key_files = format!("{new_key},{}", old_key.display());
    let restarted = spawn_app_with(
        backend,
        &[("SESSIOND_SIGNING_KEY_FILE", key_files.as_str())],
    )
    .await;
    *proxy.upstream.write().unwrap() = restarted.base.clone();
    let bob = restarted.signed_in_user("bob@example.com").await;
    assert_ne!(
        claims_header_kid(&bob.access),
        claims_header_kid(&ada.access)
    );

    // The old key's token still passes from the cache; the new key's makes the service refetch
    // the JWKS once, then passes.
    assert_eq!(
        service.get("/me", &ada.access).await.status(),
        StatusCode::OK
    );
    assert_eq!(proxy.jwks_fetches(), 1);
    assert_eq!(
        service.get("/me", &bob.access).await.status(),
        StatusCode::OK
    );
    assert_eq!(proxy.jwks_fetches(), 2);
    assert_eq!(
        service.get("/me", &bob.access).await.status(),
        StatusCode::OK
    );
    assert_eq!(proxy.jwks_fetches(), 2);
    restarted.stop().await;
}

fn claims_header_kid(token: &str) -> String {
    let header = token.split('.').next().unwrap();
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

async fn the_aal2_route_needs_a_second_factor(backend: Backend) {
    let app = spawn_app(backend).await;
    let proxy = proxy(&app.base).await;
    let service = Service::start(proxy.settings()).await;
    let email = "ada@example.com";
    let (tokens, _) = mfa::user(&app, email).await;

    // Password only: aal 1 → 401 insufficient_user_authentication, challenge as sessiond's.
    let response = service.get("/security", &tokens.access).await;
    let body = assert_refused(
        response,
        StatusCode::UNAUTHORIZED,
        "insufficient_user_authentication",
        Some(r#"Bearer error="insufficient_user_authentication", acr_values="aal2""#),
    )
    .await;
    assert_eq!(body["error"]["details"]["acr_values"], "aal2", "{body}");

    // Step up: enrol TOTP, log in with the password and a code → aal 2.
    let step = mfa::safe_step().await;
    let (auth, _) = mfa::enrol(&app, &tokens.access, email, step).await;
    let challenge = mfa::challenge(&app, email).await;
    let response = mfa::complete(&app, &challenge, json!({"code": auth.code(step + 1)})).await;
    let strong = mfa::assert_mfa_tokens(response).await;
    let response = service.get("/security", &strong.access).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["aal"], 2);
    assert_eq!(body["amr"], json!(["pwd", "otp"]));
}

const SCOPES: (&str, &str) = ("SESSIOND_API_KEY_SCOPES", "invoices:read,invoices:write");

async fn api_key(app: &TestApp, access: &str, scopes: Value) -> (String, String) {
    let response = app
        .post_authed_json(
            "/v1/auth/api-keys",
            access,
            json!({"name": "billing", "scopes": scopes}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    (
        body["key"].as_str().unwrap().to_owned(),
        body["api_key"]["id"].as_str().unwrap().to_owned(),
    )
}

async fn the_scope_route_admits_api_keys_with_the_scope(backend: Backend) {
    let app = spawn_app_with(backend, &[SCOPES]).await;
    let proxy = proxy(&app.base).await;
    let service = Service::start(proxy.settings()).await;
    let ada = app.signed_in_user("ada@example.com").await;
    let (reader, reader_id) = api_key(&app, &ada.access, json!(["invoices:read"])).await;
    let (writer, _) = api_key(&app, &ada.access, json!(["invoices:write"])).await;

    let response = service.get_with_key("/invoices", &reader).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["for"]["kind"], "service");
    assert_eq!(body["for"]["key_id"], reader_id.as_str());
    assert_eq!(body["for"]["owner_id"], claims(&ada.access)["sub"]);
    assert_eq!(body["for"]["scopes"], json!(["invoices:read"]));
    // The answer is cached briefly: a second call asks sessiond nothing.
    let calls = proxy.verify_calls();
    assert_eq!(
        service.get_with_key("/invoices", &reader).await.status(),
        StatusCode::OK
    );
    assert_eq!(proxy.verify_calls(), calls);

    // Without the scope, and as a user (tokens carry no scopes): 403 insufficient_scope.
    let scope_challenge = Some(r#"Bearer error="insufficient_scope", scope="invoices:read""#);
    for response in [
        service.get_with_key("/invoices", &writer).await,
        service.get("/invoices", &ada.access).await,
    ] {
        assert_refused(
            response,
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            scope_challenge,
        )
        .await;
    }
    // A key is no second factor; a bad key gets sessiond's answer.
    let response = service.get_with_key("/security", &reader).await;
    assert_refused(
        response,
        StatusCode::FORBIDDEN,
        "principal_not_allowed",
        None,
    )
    .await;
    let response = service
        .get_with_key("/invoices", "sk_000000000000000000000000_nope")
        .await;
    assert_refused(response, StatusCode::UNAUTHORIZED, "invalid_api_key", None).await;
}

/// A token with a made-up `kid` (and a junk signature).
fn junk_token(kid: &str) -> String {
    let header = json!({"alg": "EdDSA", "typ": "at+jwt", "kid": kid});
    let payload = json!({"sub": "x", "exp": unix_now() + 60});
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(payload.to_string()),
        URL_SAFE_NO_PAD.encode([7u8; 64])
    )
}

async fn an_unknown_kid_flood_fetches_the_jwks_at_most_once_per_interval(backend: Backend) {
    let app = spawn_app(backend).await;
    let proxy = proxy(&app.base).await;
    let service = Service::start(
        proxy
            .settings()
            .min_refetch_interval(Duration::from_secs(3600)),
    )
    .await;
    assert_eq!(proxy.jwks_fetches(), 1, "the build fetches once");
    for i in 0..20 {
        let response = service.get("/me", &junk_token(&format!("junk-{i}"))).await;
        assert_invalid_token(response).await;
    }
    assert_eq!(
        proxy.jwks_fetches(),
        2,
        "one refetch in the interval, however many kids"
    );

    // Without the interval every unknown kid would refetch: the limit is what held it.
    let unlimited = Service::start(proxy.settings().min_refetch_interval(Duration::ZERO)).await;
    let before = proxy.jwks_fetches();
    for i in 0..5 {
        let response = unlimited
            .get("/me", &junk_token(&format!("junk-{i}")))
            .await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(proxy.jwks_fetches(), before + 5);
}

async fn an_hs256_sessiond_offers_only_the_online_mode(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("hs256.key");
    std::fs::write(&secret, "an-hs256-secret-of-at-least-32-bytes-long").unwrap();
    let secret = secret.display().to_string();
    let app = spawn_app_with(
        backend,
        &[
            ("SESSIOND_SIGNING_ALG", "HS256"),
            ("SESSIOND_SIGNING_KEY_FILE", secret.as_str()),
        ],
    )
    .await;
    let proxy = proxy(&app.base).await;
    let settings = proxy.settings().online_cache_ttl(Duration::ZERO);
    assert!(matches!(
        settings.clone().build().await,
        Err(BuildError::OnlineOnly)
    ));
    let verifier = settings.online_only().unwrap();
    assert_eq!(verifier.mode(), Mode::OnlineOnly);
    let service = Service::with(verifier).await;

    let ada = app.signed_in_user("ada@example.com").await;
    let response = service.get("/me", &ada.access).await;
    assert_eq!(response.status(), StatusCode::OK);
    let me: Value = response.json().await.unwrap();
    assert_eq!(me["session_id"], ada.session_id.as_str());
    assert_eq!(me["amr"], json!(["pwd"]));
    assert_eq!(
        proxy.verify_calls(),
        1,
        "the \"local\" route asked sessiond"
    );
    revoke(&app, &ada.access).await;
    let response = service.get("/me", &ada.access).await;
    assert_bearer_refused(response, "session_revoked").await;
    let response = service.get("/me", "not-a-jwt").await;
    assert_invalid_token(response).await;
}

both_backends!(
    valid_tokens_pass_and_bad_ones_get_sessionds_answers,
    each_claim_and_header_rule_is_enforced,
    expired_tokens_are_refused,
    tokens_for_another_audience_or_issuer_are_refused,
    revoked_sessions_pass_local_checks_until_expiry_but_not_online_ones,
    signing_key_rotation_is_picked_up_without_restarting_the_service,
    the_aal2_route_needs_a_second_factor,
    the_scope_route_admits_api_keys_with_the_scope,
    an_unknown_kid_flood_fetches_the_jwks_at_most_once_per_interval,
    an_hs256_sessiond_offers_only_the_online_mode,
);
