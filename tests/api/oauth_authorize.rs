//! The authorization endpoint (issue #12) over HTTP, on both stores: the login and consent
//! pages driven as a browser would (redirects off, the single sign-on cookie kept by hand),
//! the code exchange at `/oauth2/token`, and every refusal the contract names.

use reqwest::StatusCode;
use serde_json::{Value, json};
use sessiond::auth::oauth::port::{AuthorizeStore, Redemption};
use sessiond_actors::model::SessionStatus;
use sha2::{Digest, Sha256};

use crate::both_backends;
use crate::helpers::{Backend, TestApp, spawn_app_with};
use crate::jwt_attacks::claims_of;

const ADA: &str = "ada@example.com";
const PASSWORD: &str = "correct horse battery";
pub(crate) const REDIRECT: &str = "https://dash.example/cb";
/// RFC 7636 Appendix B.
pub(crate) const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

/// A browser: no redirects followed, the single sign-on cookie (and a provider login's binding
/// cookie) kept by hand.
pub(crate) struct Browser {
    http: reqwest::Client,
    pub(crate) cookie: Option<String>,
    binding: Option<String>,
}

impl Browser {
    pub(crate) fn new() -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookie: None,
            binding: None,
        }
    }

    /// The cookies this browser sends.
    fn cookies(&self) -> Option<String> {
        let both: Vec<&str> = [&self.cookie, &self.binding]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect();
        (!both.is_empty()).then(|| both.join("; "))
    }

    fn keep_cookie(&mut self, response: &reqwest::Response) {
        for v in response.headers().get_all("set-cookie") {
            let v = v.to_str().unwrap();
            if v.contains("sessiond_sso=") {
                assert!(
                    v.contains("HttpOnly") && v.contains("SameSite=Lax") && v.contains("Path=/")
                );
                self.cookie = Some(v.split(';').next().unwrap().to_owned());
            }
            if v.contains("sessiond_oidc=") {
                self.binding = Some(v.split(';').next().unwrap().to_owned());
            }
        }
    }

    pub(crate) async fn get(&mut self, url: &str) -> reqwest::Response {
        let mut req = self.http.get(url);
        if let Some(c) = self.cookies() {
            req = req.header("cookie", c);
        }
        let response = req.send().await.unwrap();
        self.keep_cookie(&response);
        response
    }

    pub(crate) async fn post(
        &mut self,
        url: &str,
        form: &[(&str, &str)],
        origin: Option<&str>,
    ) -> reqwest::Response {
        let body = encode(form);
        let mut req = self
            .http
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some(c) = self.cookies() {
            req = req.header("cookie", c);
        }
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        let response = req.send().await.unwrap();
        self.keep_cookie(&response);
        response
    }
}

/// A form body.
fn encode(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// The value of the hidden (or other) input `name` in a page.
pub(crate) fn field(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {html}"))
        + marker.len();
    html[start..].split('"').next().unwrap().to_owned()
}

pub(crate) fn location(response: &reqwest::Response) -> url::Url {
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let l = response.headers()["location"].to_str().unwrap();
    url::Url::parse(l).unwrap_or_else(|_| url::Url::parse(&format!("http://self{l}")).unwrap())
}

fn param(url: &url::Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

pub(crate) struct Setup {
    pub(crate) app: TestApp,
    /// Holds the ID-token key file.
    _keys: tempfile::TempDir,
    access: String,
    client_id: String,
    secret: String,
    /// The application's logo URL, once the test uploaded one: the consent page shows it.
    logo_url: Option<String>,
}

/// A fresh RSA ID-token key (PKCS#8 PEM) in `dir`: OpenID Connect on.
fn id_token_key(dir: &std::path::Path) -> String {
    use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
    let key = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let der: Pkcs8V1Der<'static> = key.as_der().unwrap();
    let pem = pem::encode(&pem::Pem::new("PRIVATE KEY", der.as_ref().to_vec()));
    let path = dir.join("id.pem");
    std::fs::write(&path, pem).unwrap();
    path.display().to_string()
}

/// Ada (signed in through the API) with a confidential application "Dash"; OpenID Connect on.
async fn setup(backend: Backend) -> Setup {
    setup_with(backend, &[]).await
}

/// [`setup`] with more environment.
pub(crate) async fn setup_with(backend: Backend, extra: &[(&str, &str)]) -> Setup {
    let keys = tempfile::tempdir().unwrap();
    let id_key = id_token_key(keys.path());
    let mut env = vec![
        ("SESSIOND_APP_CREATORS", ADA),
        ("SESSIOND_ID_TOKEN_KEY_FILE", id_key.as_str()),
    ];
    env.extend_from_slice(extra);
    let app = spawn_app_with(backend, &env).await;
    let ada = app.signed_in_user(ADA).await;
    let (client_id, secret) = application(&app, &ada.access, "confidential", &[REDIRECT]).await;
    Setup {
        app,
        _keys: keys,
        access: ada.access,
        client_id,
        secret,
        logo_url: None,
    }
}

async fn application(
    app: &TestApp,
    access: &str,
    kind: &str,
    redirects: &[&str],
) -> (String, String) {
    let response = app
        .client
        .post(app.url("/v1/applications"))
        .bearer_auth(access)
        .json(
            &json!({"name": "Dash <b>", "client_type": kind, "description": "A dashboard",
                      "redirect_uris": redirects,
                      "allowed_scopes": ["openid", "profile", "email", "offline_access"]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    (
        body["application"]["client_id"]
            .as_str()
            .unwrap()
            .to_owned(),
        body["client_secret"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

pub(crate) fn authorize_url(s: &Setup, extra: &str) -> String {
    s.app.url(&format!(
        "/oauth2/authorize?response_type=code&client_id={}&redirect_uri={}&scope=openid%20email\
         &state=st4te&nonce=n0nce&code_challenge={CHALLENGE}&code_challenge_method=S256{extra}",
        s.client_id,
        url::form_urlencoded::byte_serialize(REDIRECT.as_bytes()).collect::<String>()
    ))
}

/// Logs in on the login page `html`; the response.
async fn submit_login(
    s: &Setup,
    b: &mut Browser,
    html: &str,
    email: &str,
    password: &str,
) -> reqwest::Response {
    b.post(
        &s.app.url("/oauth2/login"),
        &[
            ("request", &field(html, "request")),
            ("csrf", &field(html, "csrf")),
            ("email", email),
            ("password", password),
        ],
        Some(&s.app.base),
    )
    .await
}

/// From the authorization request to the redirect with a code (login and consent); the code.
async fn sign_in_and_consent(s: &Setup, b: &mut Browser, extra: &str) -> String {
    let page = b.get(&authorize_url(s, extra)).await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("id=\"login-submit\"") && html.contains("Dash &lt;b&gt;"),
        "{html}"
    );
    let logged_in = submit_login(s, b, &html, ADA, PASSWORD).await;
    consent_after_login(s, b, &logged_in).await
}

/// From a login's redirect to the consent page (single sign-on cookie set) to the redirect
/// with a code; the code.
pub(crate) async fn consent_after_login(
    s: &Setup,
    b: &mut Browser,
    logged_in: &reqwest::Response,
) -> String {
    let next = location(logged_in);
    assert_eq!(next.path(), "/oauth2/consent");
    assert!(b.cookie.is_some());
    let consent = b
        .get(
            &s.app
                .url(&format!("/oauth2/consent?{}", next.query().unwrap())),
        )
        .await;
    assert_eq!(consent.status(), StatusCode::OK);
    let csp = consent.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("form-action 'self' https://dash.example"),
        "{csp}"
    );
    let html = consent.text().await.unwrap();
    assert!(html.contains("See your email address") && html.contains("id=\"consent-allow\""));
    match &s.logo_url {
        Some(url) => assert!(
            html.contains(&format!("<img class=\"logo\" src=\"{url}\"")),
            "{html}"
        ),
        None => assert!(!html.contains("class=\"logo\""), "{html}"),
    }
    let allowed = post_consent(s, b, &html, "allow").await;
    code_of(&allowed)
}

/// The code of a success redirect (checking `state` and `iss`).
pub(crate) fn code_of(response: &reqwest::Response) -> String {
    let to = location(response);
    assert_eq!(
        format!("{}://{}{}", to.scheme(), to.host_str().unwrap(), to.path()),
        REDIRECT
    );
    assert_eq!(param(&to, "state").as_deref(), Some("st4te"));
    assert!(param(&to, "iss").is_some_and(|i| !i.is_empty()));
    param(&to, "code").unwrap_or_else(|| panic!("no code in {to}"))
}

pub(crate) async fn exchange(
    s: &Setup,
    code: &str,
    redirect: &str,
    verifier: &str,
) -> reqwest::Response {
    token_request(
        &s.app,
        Some((&s.client_id, &s.secret)),
        &code_grant(code, redirect, Some(verifier)),
    )
    .await
}

/// The authorization-code grant's form for `code`, with `verifier` if any.
fn code_grant<'a>(
    code: &'a str,
    redirect: &'a str,
    verifier: Option<&'a str>,
) -> Vec<(&'a str, &'a str)> {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect),
    ];
    form.extend(verifier.map(|v| ("code_verifier", v)));
    form
}

/// `POST /oauth2/token` with the form `pairs`, as the client `basic` (HTTP Basic) if given.
async fn token_request(
    app: &TestApp,
    basic: Option<(&str, &str)>,
    pairs: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = app.client.post(app.url("/oauth2/token"));
    if let Some((id, secret)) = basic {
        request = request.basic_auth(id, Some(secret));
    }
    request
        .header("content-type", "application/x-www-form-urlencoded")
        .body(encode(pairs))
        .send()
        .await
        .unwrap()
}

/// Posts the consent page `html` with `decision` (`allow` or `deny`).
async fn post_consent(s: &Setup, b: &mut Browser, html: &str, decision: &str) -> reqwest::Response {
    b.post(
        &s.app.url("/oauth2/consent"),
        &[
            ("request", &field(html, "request")),
            ("csrf", &field(html, "csrf")),
            ("decision", decision),
        ],
        None,
    )
    .await
}

async fn oauth_error(response: reqwest::Response, status: StatusCode, error: &str) {
    assert_eq!(response.status(), status);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], error, "{body}");
}

fn session_id_of(access_token: &str) -> String {
    claims_of(access_token)["sid"].as_str().unwrap().to_owned()
}

/// Login → consent → code → tokens; the code replayed revokes the grant; single sign-on and
/// the remembered consent skip both pages next time; withdrawing the consent revokes the
/// grant and brings the consent page back.
async fn code_flow_end_to_end(backend: Backend) {
    let mut s = setup(backend).await;
    // The application's logo, uploaded by its owner, is on the consent page.
    let logo = crate::media::upload(
        &s.app,
        &format!("/v1/applications/{}/logo", s.client_id),
        &s.access,
        crate::media::png(16, 16),
        "image/png",
    )
    .await;
    assert_eq!(logo.status(), StatusCode::OK);
    let logo: Value = logo.json().await.unwrap();
    s.logo_url = Some(logo["url"].as_str().unwrap().to_owned());
    let mut b = Browser::new();
    let code = sign_in_and_consent(&s, &mut b, "").await;
    let tokens = exchange(&s, &code, REDIRECT, VERIFIER).await;
    assert_eq!(tokens.status(), StatusCode::OK);
    assert_eq!(tokens.headers()["cache-control"], "no-store");
    let body: Value = tokens.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "openid email");
    assert!(
        body["refresh_token"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
    );
    let grant = session_id_of(body["access_token"].as_str().unwrap());
    // The ID token (openid in scope): the request's nonce, the client as audience, the login.
    let id = claims_of(body["id_token"].as_str().expect("an id_token with openid"));
    assert_eq!(id["nonce"], "n0nce");
    assert_eq!(id["aud"], s.client_id.as_str());
    assert_eq!(id["acr"], "aal1");
    assert_eq!(id["email"], ADA);
    let stored = s.app.stored_session(&grant).await;
    assert_eq!(stored.grant.as_ref().unwrap().client_id, s.client_id);
    assert_eq!(stored.status, SessionStatus::Active);

    // The code again: refused, and the grant issued from it is revoked.
    oauth_error(
        exchange(&s, &code, REDIRECT, VERIFIER).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    )
    .await;
    assert_ne!(
        s.app.stored_session(&grant).await.status,
        SessionStatus::Active
    );

    // Signed in and consented: straight back with a code.
    let again = b.get(&authorize_url(&s, "")).await;
    let code = code_of(&again);
    let tokens: Value = exchange(&s, &code, REDIRECT, VERIFIER)
        .await
        .json()
        .await
        .unwrap();
    let grant = session_id_of(tokens["access_token"].as_str().unwrap());
    // prompt=consent asks again; prompt=none passes.
    let asked = b.get(&authorize_url(&s, "&prompt=consent")).await;
    assert_eq!(asked.status(), StatusCode::OK);
    assert!(asked.text().await.unwrap().contains("id=\"consent-deny\""));
    code_of(&b.get(&authorize_url(&s, "&prompt=none")).await);

    // The consent is listed, then withdrawn: the grant ends, the page comes back.
    let list: Value = s.app.get_authed_json("/v1/auth/consents", &s.access).await;
    assert_eq!(list["consents"][0]["client_id"], s.client_id.as_str());
    assert_eq!(list["consents"][0]["scope"], "email openid");
    let withdrawn = s
        .app
        .delete_authed(&format!("/v1/auth/consents/{}", s.client_id), &s.access)
        .await;
    assert_eq!(withdrawn.status(), StatusCode::NO_CONTENT);
    assert_ne!(
        s.app.stored_session(&grant).await.status,
        SessionStatus::Active
    );
    let list: Value = s.app.get_authed_json("/v1/auth/consents", &s.access).await;
    assert_eq!(list["consents"].as_array().unwrap().len(), 0);
    let none = b.get(&authorize_url(&s, "&prompt=none")).await;
    assert_eq!(
        param(&location(&none), "error").as_deref(),
        Some("consent_required")
    );
    let gone = s
        .app
        .delete_authed(&format!("/v1/auth/consents/{}", s.client_id), &s.access)
        .await;
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    s.app.stop().await;
}

/// Faults that cannot be answered at the client: the HTML error page, no redirect.
async fn unredirectable_faults_render_the_error_page(backend: Backend) {
    let s = setup(backend).await;
    let (two, _) = application(
        &s.app,
        &s.access,
        "public",
        &[REDIRECT, "https://dash.example/two"],
    )
    .await;
    let mut b = Browser::new();
    let cases = [
        "/oauth2/authorize?response_type=code&client_id=nope".to_owned(),
        format!(
            "/oauth2/authorize?response_type=code&client_id={}&redirect_uri=https%3A%2F%2Fevil.example%2Fcb",
            s.client_id
        ),
        format!(
            "/oauth2/authorize?response_type=code&client_id={}&redirect_uri=https%3A%2F%2Fdash.example%2Fcb%2F",
            s.client_id
        ),
        format!(
            "/oauth2/authorize?response_type=code&client_id={two}&code_challenge={CHALLENGE}&code_challenge_method=S256"
        ),
    ];
    for path in cases {
        let response = b.get(&s.app.url(&path)).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{path}");
        assert!(response.headers().get("location").is_none());
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        assert!(
            response.headers()["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("default-src 'none'")
        );
        assert!(
            response
                .text()
                .await
                .unwrap()
                .contains("id=\"error-message\"")
        );
    }
    s.app.stop().await;
}

/// Every other fault redirects with `error`, `state` and `iss`.
async fn other_faults_redirect_with_error_state_and_iss(backend: Backend) {
    let s = setup(backend).await;
    let mut b = Browser::new();
    let base = |q: &str| {
        s.app.url(&format!(
            "/oauth2/authorize?client_id={}&redirect_uri=https%3A%2F%2Fdash.example%2Fcb&state=st4te{q}",
            s.client_id
        ))
    };
    let pkce = format!("&code_challenge={CHALLENGE}&code_challenge_method=S256");
    let cases = [
        (
            format!("&response_type=token{pkce}"),
            "unsupported_response_type",
        ),
        (pkce.clone(), "invalid_request"),
        ("&response_type=code".to_owned(), "invalid_request"),
        (
            format!("&response_type=code&code_challenge={VERIFIER}&code_challenge_method=plain"),
            "invalid_request",
        ),
        (
            format!("&response_type=code&code_challenge={CHALLENGE}"),
            "invalid_request",
        ),
        (
            format!("&response_type=code{pkce}&scope=openid%20admin"),
            "invalid_scope",
        ),
        (
            format!("&response_type=code{pkce}&prompt=bogus"),
            "invalid_request",
        ),
        (
            format!("&response_type=code{pkce}&prompt=none%20login"),
            "invalid_request",
        ),
        (
            format!("&response_type=code{pkce}&max_age=soon"),
            "invalid_request",
        ),
        (
            format!("&response_type=code{pkce}&state=again"),
            "invalid_request",
        ),
        (
            format!("&response_type=code{pkce}&prompt=none"),
            "login_required",
        ),
        (
            format!("&response_type=code{pkce}&prompt=none&acr_values=aal2"),
            "login_required",
        ),
    ];
    for (q, error) in cases {
        let response = b.get(&base(&q)).await;
        let to = location(&response);
        assert!(to.as_str().starts_with(REDIRECT), "{to}");
        assert_eq!(param(&to, "error").as_deref(), Some(error), "{q}");
        assert!(param(&to, "error_description").is_some());
        assert!(param(&to, "iss").is_some());
        assert!(param(&to, "state").is_some(), "{q}");
    }
    s.app.stop().await;
}

/// The exchange checks the verifier, the redirect URI, the client and the code's life.
async fn the_exchange_checks_every_binding(backend: Backend) {
    let s = setup(backend).await;
    let mut b = Browser::new();
    let code = sign_in_and_consent(&s, &mut b, "").await;
    let wrong_verifier = "a".repeat(43);
    oauth_error(
        exchange(&s, &code, REDIRECT, &wrong_verifier).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    )
    .await;
    // Spent by the failed attempt: single use.
    oauth_error(
        exchange(&s, &code, REDIRECT, VERIFIER).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    )
    .await;

    let code = code_of(&b.get(&authorize_url(&s, "")).await);
    oauth_error(
        exchange(&s, &code, "https://dash.example/other", VERIFIER).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    )
    .await;

    // A code presented by another client.
    let code = code_of(&b.get(&authorize_url(&s, "")).await);
    let (other, other_secret) = application(&s.app, &s.access, "confidential", &[REDIRECT]).await;
    let stolen = token_request(
        &s.app,
        Some((&other, &other_secret)),
        &code_grant(&code, REDIRECT, Some(VERIFIER)),
    )
    .await;
    oauth_error(stolen, StatusCode::BAD_REQUEST, "invalid_grant").await;
    // Wrong secret and a missing verifier.
    let code = code_of(&b.get(&authorize_url(&s, "")).await);
    let bad_secret = token_request(
        &s.app,
        Some((&s.client_id, "wrong")),
        &code_grant(&code, REDIRECT, Some(VERIFIER)),
    )
    .await;
    oauth_error(bad_secret, StatusCode::UNAUTHORIZED, "invalid_client").await;
    let no_verifier = token_request(
        &s.app,
        Some((&s.client_id, &s.secret)),
        &code_grant(&code, REDIRECT, None),
    )
    .await;
    oauth_error(no_verifier, StatusCode::BAD_REQUEST, "invalid_grant").await;

    // Expiry, at the store: 61 seconds after issue the code is unknown.
    let code = code_of(&b.get(&authorize_url(&s, "")).await);
    let hash: [u8; 32] = Sha256::digest(code.as_bytes()).into();
    let later = chrono::Utc::now() + chrono::Duration::seconds(61);
    assert_eq!(
        s.app.store.redeem_code(&hash, later).await.unwrap(),
        Redemption::Unknown
    );
    assert!(matches!(
        s.app
            .store
            .redeem_code(&hash, chrono::Utc::now())
            .await
            .unwrap(),
        Redemption::Fresh(..)
    ));
    s.app.stop().await;
}

/// A public client exchanges with `client_id` only (method `none`), posted in the form.
async fn public_clients_exchange_without_a_secret(backend: Backend) {
    let s = setup(backend).await;
    let (public, _) = application(&s.app, &s.access, "public", &[REDIRECT]).await;
    let s = Setup {
        client_id: public,
        secret: String::new(),
        ..s
    };
    let mut b = Browser::new();
    let code = sign_in_and_consent(&s, &mut b, "").await;
    let response = token_request(
        &s.app,
        None,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", &s.client_id),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ],
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    s.app.stop().await;
}

/// Wrong password and unknown account get the same page and status; a forged form is refused.
async fn login_failures_are_one_answer_and_forged_forms_are_refused(backend: Backend) {
    let s = setup(backend).await;
    let mut b = Browser::new();
    let html = b
        .get(&authorize_url(&s, "&login_hint=ada%40example.com"))
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(field(&html, "email"), ADA);
    let strip = |h: String| {
        h.replace(&field(&h, "request"), "R")
            .replace(&field(&h, "csrf"), "C")
    };
    let wrong = submit_login(&s, &mut b, &html, ADA, "wrong password").await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let wrong = strip(wrong.text().await.unwrap()).replace(ADA, "E");
    let unknown = submit_login(&s, &mut b, &html, "nobody@example.com", "wrong password").await;
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    let unknown = strip(unknown.text().await.unwrap()).replace("nobody@example.com", "E");
    assert_eq!(wrong, unknown);
    assert!(wrong.contains("id=\"error-message\""));
    assert!(b.cookie.is_none());

    // A wrong csrf value, and a foreign Origin.
    let request = field(&html, "request");
    let forged = b
        .post(
            &s.app.url("/oauth2/login"),
            &[
                ("request", &request),
                ("csrf", "forged"),
                ("email", ADA),
                ("password", PASSWORD),
            ],
            None,
        )
        .await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let foreign = b
        .post(
            &s.app.url("/oauth2/login"),
            &[
                ("request", &request),
                ("csrf", &field(&html, "csrf")),
                ("email", ADA),
                ("password", PASSWORD),
            ],
            Some("https://evil.example"),
        )
        .await;
    assert_eq!(foreign.status(), StatusCode::FORBIDDEN);
    assert!(b.cookie.is_none());
    s.app.stop().await;
}

/// `prompt=login` and `max_age` ask a signed-in user to log in again; `acr_values=aal2` needs a
/// second factor (the mfa page with TOTP on; `access_denied` for an account without one;
/// `interaction_required` with `prompt=none`).
async fn prompt_login_max_age_and_aal2(backend: Backend) {
    let s = setup(backend).await;
    let mut b = Browser::new();
    sign_in_and_consent(&s, &mut b, "").await;
    let again = b.get(&authorize_url(&s, "&prompt=login")).await;
    assert_eq!(again.status(), StatusCode::OK);
    let html = again.text().await.unwrap();
    assert!(html.contains("sign in again"));
    code_of(&submit_login(&s, &mut b, &html, ADA, PASSWORD).await);

    // The login is at least a second old: max_age=0 refuses it without a page.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let old = b.get(&authorize_url(&s, "&prompt=none&max_age=0")).await;
    assert_eq!(
        param(&location(&old), "error").as_deref(),
        Some("login_required")
    );
    code_of(&b.get(&authorize_url(&s, "&prompt=none&max_age=3600")).await);

    // One factor only.
    let weak = b
        .get(&authorize_url(&s, "&prompt=none&acr_values=aal2"))
        .await;
    assert_eq!(
        param(&location(&weak), "error").as_deref(),
        Some("interaction_required")
    );
    let html = b
        .get(&authorize_url(&s, "&acr_values=aal2"))
        .await
        .text()
        .await
        .unwrap();
    let denied = submit_login(&s, &mut b, &html, ADA, PASSWORD).await;
    assert_eq!(
        param(&location(&denied), "error").as_deref(),
        Some("access_denied")
    );

    // With TOTP on: password, then the mfa page (a recovery code), then aal2 is met.
    let started: Value = s
        .app
        .post_authed("/v1/auth/mfa/totp", &s.access)
        .await
        .json()
        .await
        .unwrap();
    let totp = totp_rs::Totp::from_url(started["otpauth_uri"].as_str().unwrap()).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let confirmed: Value = s
        .app
        .client
        .post(s.app.url("/v1/auth/mfa/totp/confirm"))
        .bearer_auth(&s.access)
        .json(&json!({"code": totp.generate(now).to_string()}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let recovery = confirmed["recovery_codes"][0].as_str().unwrap().to_owned();
    let html = b
        .get(&authorize_url(&s, "&acr_values=aal2"))
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains("second factor"));
    let mfa = submit_login(&s, &mut b, &html, ADA, PASSWORD).await;
    assert_eq!(mfa.status(), StatusCode::OK);
    let mfa_html = mfa.text().await.unwrap();
    assert!(mfa_html.contains("id=\"mfa-code\""));
    let form = |code: &str| {
        vec![
            ("request".to_owned(), field(&mfa_html, "request")),
            ("csrf".to_owned(), field(&mfa_html, "csrf")),
            ("challenge".to_owned(), field(&mfa_html, "challenge")),
            ("code".to_owned(), code.to_owned()),
        ]
    };
    let pairs = form("not-a-code");
    let pairs: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let wrong = b.post(&s.app.url("/oauth2/login/mfa"), &pairs, None).await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let pairs = form(&recovery);
    let pairs: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let done = b.post(&s.app.url("/oauth2/login/mfa"), &pairs, None).await;
    code_of(&done);
    code_of(
        &b.get(&authorize_url(&s, "&prompt=none&acr_values=aal2"))
            .await,
    );
    s.app.stop().await;
}

/// Logging out of the session behind the cookie ends single sign-on.
async fn single_sign_on_ends_with_its_session(backend: Backend) {
    let s = setup(backend).await;
    let mut b = Browser::new();
    sign_in_and_consent(&s, &mut b, "").await;
    // Every session of Ada's but the API one is the single sign-on session: revoke the others.
    let revoked = s.app.delete_authed("/v1/auth/sessions", &s.access).await;
    assert!(revoked.status().is_success(), "{}", revoked.status());
    let none = b.get(&authorize_url(&s, "&prompt=none")).await;
    assert_eq!(
        param(&location(&none), "error").as_deref(),
        Some("login_required")
    );
    // Consent denied ends the request with access_denied.
    let html = b.get(&authorize_url(&s, "")).await.text().await.unwrap();
    let logged_in = submit_login(&s, &mut b, &html, ADA, PASSWORD).await;
    let to = location(&logged_in);
    // Consent remembered from before: straight back.
    assert!(param(&to, "code").is_some());
    let html = b
        .get(&authorize_url(&s, "&prompt=consent"))
        .await
        .text()
        .await
        .unwrap();
    let denied = post_consent(&s, &mut b, &html, "deny").await;
    assert_eq!(
        param(&location(&denied), "error").as_deref(),
        Some("access_denied")
    );
    s.app.stop().await;
}

both_backends!(
    code_flow_end_to_end,
    unredirectable_faults_render_the_error_page,
    other_faults_redirect_with_error_state_and_iss,
    the_exchange_checks_every_binding,
    public_clients_exchange_without_a_secret,
    login_failures_are_one_answer_and_forged_forms_are_refused,
    prompt_login_max_age_and_aal2,
    single_sign_on_ends_with_its_session,
);
