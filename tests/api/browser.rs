//! Browser sessions over HTTP: the refresh token only in the `HttpOnly` cookie (attributes
//! checked to the letter), refresh by cookie under the unchanged rotation rules, logout, the
//! CSRF rule, the browser CORS policy, and `SESSIOND_REQUIRE_AAL2_FOR`.
//!
//! Cookies are handled by hand (no cookie jar), so a test can present an old one again.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use sessiond_actors::model::SessionStatus;

use crate::both_backends;
use crate::helpers::{Backend, TestApp, assert_error, spawn_app_with};

const PASSWORD: &str = "correct horse battery";
/// The default issuer's origin (`SESSIOND_ISSUER` is `http://localhost:8080` in tests).
const OWN_ORIGIN: &str = "http://localhost:8080";
const SECURE: (&str, &str) = ("SESSIOND_SECURE_COOKIES", "on");
const SECURE_NAME: &str = "__Secure-sessiond_rt";
const DEV_NAME: &str = "sessiond_rt";
const CSRF: &str = "x-sessiond-csrf";

/// A browser request: `x-sessiond-csrf: 1` and `Origin` unless told otherwise, the cookie if
/// given, a JSON body if given.
struct BrowserRequest<'a> {
    path: &'a str,
    origin: Option<&'a str>,
    csrf: bool,
    cookie: Option<String>,
    body: Option<Value>,
}

impl<'a> BrowserRequest<'a> {
    fn new(path: &'a str) -> Self {
        Self {
            path,
            origin: Some(OWN_ORIGIN),
            csrf: true,
            cookie: None,
            body: None,
        }
    }

    fn body(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }

    fn cookie(mut self, name: &str, value: &str) -> Self {
        self.cookie = Some(format!("{name}={value}"));
        self
    }

    fn origin(mut self, origin: Option<&'a str>) -> Self {
        self.origin = origin;
        self
    }

    fn without_csrf(mut self) -> Self {
        self.csrf = false;
        self
    }

    async fn send(self, app: &TestApp) -> Response {
        let mut request = app.client.post(app.url(self.path));
        if let Some(origin) = self.origin {
            request = request.header("origin", origin);
        }
        if self.csrf {
            request = request.header(CSRF, "1");
        }
        if let Some(cookie) = self.cookie {
            request = request.header("cookie", cookie);
        }
        if let Some(body) = self.body {
            request = request.json(&body);
        }
        request.send().await.unwrap()
    }
}

/// `POST /v1/auth/browser/logout` with the `name` cookie: 204, and the cookie cleared.
async fn logout_with_cookie(app: &TestApp, name: &str, value: &str, secure: bool) {
    let response = BrowserRequest::new("/v1/auth/browser/logout")
        .cookie(name, value)
        .send(app)
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_cleared(&response, name, secure);
}

/// The one `Set-Cookie` of `response`, split into name, value and the attributes as sent.
fn set_cookie(response: &Response) -> (String, String, String) {
    let all: Vec<&str> = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(all.len(), 1, "exactly one Set-Cookie: {all:?}");
    let (pair, attributes) = all[0].split_once("; ").expect("attributes follow");
    let (name, value) = pair.split_once('=').unwrap();
    (name.to_owned(), value.to_owned(), attributes.to_owned())
}

/// Asserts the cookie's attributes exactly, with `Max-Age` within `max_age` (whole seconds,
/// counted down from a lifetime that started at most a minute ago); returns the value.
fn assert_session_cookie(response: &Response, name: &str, secure: bool, max_age: u64) -> String {
    let (got_name, value, attributes) = set_cookie(response);
    assert_eq!(got_name, name);
    assert!(value.starts_with("rt1_"), "the refresh token: {value}");
    let (age, rest) = attributes
        .strip_prefix("Max-Age=")
        .and_then(|a| a.split_once("; "))
        .unwrap_or_else(|| panic!("Max-Age first: {attributes}"));
    let age: u64 = age.parse().unwrap();
    assert!(
        age <= max_age && age + 60 >= max_age,
        "Max-Age {age} is the session's remaining life ({max_age})"
    );
    let expected = if secure {
        "Path=/v1/auth/browser; HttpOnly; Secure; SameSite=Strict"
    } else {
        "Path=/v1/auth/browser; HttpOnly; SameSite=Strict"
    };
    assert_eq!(rest, expected);
    value
}

fn assert_cleared(response: &Response, name: &str, secure: bool) {
    let (got_name, value, attributes) = set_cookie(response);
    assert_eq!(got_name, name);
    assert_eq!(value, "");
    let expected = if secure {
        "Max-Age=0; Path=/v1/auth/browser; HttpOnly; Secure; SameSite=Strict"
    } else {
        "Max-Age=0; Path=/v1/auth/browser; HttpOnly; SameSite=Strict"
    };
    assert_eq!(attributes, expected);
}

/// Checks a `BrowserTokenResponse`: the documented fields and no refresh token anywhere in
/// it; returns the body.
async fn browser_body(response: Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(response.headers().get("cache-control").unwrap(), "no-store");
    let text = response.text().await.unwrap();
    assert!(
        !text.contains("rt1_"),
        "no refresh token in the body: {text}"
    );
    let body: Value = serde_json::from_str(&text).unwrap();
    let fields: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        fields,
        [
            "access_token",
            "expires_in",
            "session",
            "token_type",
            "user"
        ]
    );
    assert_eq!(body["token_type"], "Bearer");
    body
}

async fn register(app: &TestApp, email: &str) {
    assert_eq!(
        app.register(email, PASSWORD).await.status(),
        StatusCode::CREATED
    );
}

async fn browser_login(app: &TestApp, email: &str) -> Response {
    BrowserRequest::new("/v1/auth/browser/sessions")
        .body(json!({"email": email, "password": PASSWORD, "device_name": "Firefox"}))
        .send(app)
        .await
}

const FOURTEEN_DAYS: u64 = 14 * 24 * 3600;

/// A browser login with secure cookies: the refresh cookie's value and the session id.
async fn secure_login(app: &TestApp, email: &str) -> (String, String) {
    let login = browser_login(app, email).await;
    let cookie = assert_session_cookie(&login, SECURE_NAME, true, FOURTEEN_DAYS);
    let session_id = browser_body(login, StatusCode::CREATED).await["session"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    (cookie, session_id)
}

/// `POST /v1/auth/browser/refresh` presenting `cookie` as the secure refresh cookie.
async fn refresh_with(app: &TestApp, cookie: &str) -> Response {
    BrowserRequest::new("/v1/auth/browser/refresh")
        .cookie(SECURE_NAME, cookie)
        .send(app)
        .await
}

async fn login_sets_only_the_cookie(backend: Backend) {
    let app = spawn_app_with(backend, &[SECURE]).await;
    register(&app, "ada@example.com").await;
    let response = browser_login(&app, "ada@example.com").await;
    let token = assert_session_cookie(&response, SECURE_NAME, true, FOURTEEN_DAYS);
    let body = browser_body(response, StatusCode::CREATED).await;
    assert_eq!(body["user"]["email"], "ada@example.com");
    assert_eq!(body["session"]["device_name"], "Firefox");
    assert_eq!(body["session"]["current"], true);
    // The access token works; the cookie's token is the session's.
    let access = body["access_token"].as_str().unwrap();
    assert_eq!(
        app.get_authed("/v1/auth/me", access).await.status(),
        StatusCode::OK
    );
    let session_id = body["session"]["id"].as_str().unwrap();
    let stored = app.stored_session(session_id).await;
    assert_eq!((stored.aal, stored.amr), (1, vec!["pwd".to_owned()]));
    assert_eq!(
        app.refresh(&token).await.status(),
        StatusCode::OK,
        "the cookie holds a refresh token of the session"
    );
    // A wrong password is the login route's answer.
    let wrong = BrowserRequest::new("/v1/auth/browser/sessions")
        .body(json!({"email": "ada@example.com", "password": "not it at all"}))
        .send(&app)
        .await;
    assert!(wrong.headers().get("set-cookie").is_none());
    assert_error(wrong, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
}

async fn refresh_rotates_the_cookie_and_a_retry_in_the_grace_window_gets_the_same(
    backend: Backend,
) {
    let app = spawn_app_with(backend, &[SECURE, ("SESSIOND_GRACE_WINDOW", "60s")]).await;
    register(&app, "ada@example.com").await;
    let (first, session_id) = secure_login(&app, "ada@example.com").await;

    let refreshed = refresh_with(&app, &first).await;
    let second = assert_session_cookie(&refreshed, SECURE_NAME, true, FOURTEEN_DAYS);
    assert_ne!(second, first, "rotated");
    let body = browser_body(refreshed, StatusCode::OK).await;
    assert_eq!(body["session"]["id"], session_id.as_str());
    assert_eq!(
        app.get_authed("/v1/auth/me", body["access_token"].as_str().unwrap())
            .await
            .status(),
        StatusCode::OK
    );

    // The old cookie again, inside the grace window: the same child (a lost answer retried).
    let retried = refresh_with(&app, &first).await;
    assert_eq!(
        assert_session_cookie(&retried, SECURE_NAME, true, FOURTEEN_DAYS),
        second
    );
    browser_body(retried, StatusCode::OK).await;
    // The newest cookie goes on.
    let third = refresh_with(&app, &second).await;
    assert_ne!(
        assert_session_cookie(&third, SECURE_NAME, true, FOURTEEN_DAYS),
        second
    );
    // The first one is now two generations old: a replay, whatever the window.
    let replay = refresh_with(&app, &first).await;
    assert!(replay.headers().get("set-cookie").is_none());
    assert_error(replay, StatusCode::UNAUTHORIZED, "refresh_token_reused").await;
    assert_eq!(
        app.stored_session(&session_id).await.status,
        SessionStatus::Compromised
    );
}

async fn an_old_cookie_after_the_grace_window_compromises_the_session(backend: Backend) {
    // No grace window: presenting the previous generation at all is a replay.
    let app = spawn_app_with(backend, &[SECURE, ("SESSIOND_GRACE_WINDOW", "0s")]).await;
    register(&app, "ada@example.com").await;
    let (first, session_id) = secure_login(&app, "ada@example.com").await;
    let refreshed = refresh_with(&app, &first).await;
    let second = assert_session_cookie(&refreshed, SECURE_NAME, true, FOURTEEN_DAYS);

    let replay = refresh_with(&app, &first).await;
    assert_error(replay, StatusCode::UNAUTHORIZED, "refresh_token_reused").await;
    assert_eq!(
        app.stored_session(&session_id).await.status,
        SessionStatus::Compromised
    );
    // The newest cookie dies with the session, on the browser route and the JSON one alike.
    let after = refresh_with(&app, &second).await;
    assert_error(after, StatusCode::UNAUTHORIZED, "session_compromised").await;
    app.assert_refresh_refused(&second, "session_compromised")
        .await;
}

async fn refresh_without_a_live_cookie_is_refused(backend: Backend) {
    let app = spawn_app_with(backend, &[SECURE]).await;
    let none = BrowserRequest::new("/v1/auth/browser/refresh")
        .send(&app)
        .await;
    assert_error(none, StatusCode::UNAUTHORIZED, "invalid_refresh_token").await;
    let garbage = BrowserRequest::new("/v1/auth/browser/refresh")
        .cookie(SECURE_NAME, "rt1_garbage")
        .send(&app)
        .await;
    assert_error(garbage, StatusCode::UNAUTHORIZED, "invalid_refresh_token").await;
    // The insecure name is not read when cookies are `Secure`.
    register(&app, "ada@example.com").await;
    let login = browser_login(&app, "ada@example.com").await;
    let token = assert_session_cookie(&login, SECURE_NAME, true, FOURTEEN_DAYS);
    let other_name = BrowserRequest::new("/v1/auth/browser/refresh")
        .cookie(DEV_NAME, &token)
        .send(&app)
        .await;
    assert_error(
        other_name,
        StatusCode::UNAUTHORIZED,
        "invalid_refresh_token",
    )
    .await;
}

async fn logout_revokes_the_session_and_clears_the_cookie(backend: Backend) {
    let app = spawn_app_with(backend, &[SECURE]).await;
    register(&app, "ada@example.com").await;
    let login = browser_login(&app, "ada@example.com").await;
    let token = assert_session_cookie(&login, SECURE_NAME, true, FOURTEEN_DAYS);
    let body = browser_body(login, StatusCode::CREATED).await;
    let access = body["access_token"].as_str().unwrap().to_owned();
    let session_id = body["session"]["id"].as_str().unwrap().to_owned();

    // Another session's id with a made-up secret ends nothing.
    let forged = format!("{}{}", &token[..token.len() - 5], "AAAAA");
    logout_with_cookie(&app, SECURE_NAME, &forged, true).await;
    assert_eq!(
        app.stored_session(&session_id).await.status,
        SessionStatus::Active
    );

    logout_with_cookie(&app, SECURE_NAME, &token, true).await;
    assert_eq!(
        app.stored_session(&session_id).await.status,
        SessionStatus::Revoked
    );
    assert_error(
        app.get_authed("/v1/auth/me", &access).await,
        StatusCode::UNAUTHORIZED,
        "session_revoked",
    )
    .await;
    let refresh = refresh_with(&app, &token).await;
    assert_error(refresh, StatusCode::UNAUTHORIZED, "session_revoked").await;

    // Idempotent: the same cookie again, or none at all, is 204 and cleared.
    for cookie in [Some(token.as_str()), None] {
        let mut request = BrowserRequest::new("/v1/auth/browser/logout");
        if let Some(c) = cookie {
            request = request.cookie(SECURE_NAME, c);
        }
        let response = request.send(&app).await;
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        assert_cleared(&response, SECURE_NAME, true);
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The current TOTP step, first waiting for the next one if fewer than 4 seconds remain, so
/// the codes of this step and the next stay acceptable while the test uses them.
async fn safe_step() -> u64 {
    let into_step = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        % 30.0;
    if into_step > 26.0 {
        tokio::time::sleep(Duration::from_secs_f64(30.0 - into_step + 0.2)).await;
    }
    unix_now() / 30
}

/// Turns TOTP on for the holder of `access` (with the code of `step`); returns the
/// authenticator and the recovery codes.
async fn enable_totp(app: &TestApp, access: &str, step: u64) -> (totp_rs::Totp, Vec<String>) {
    let started = app.post_authed("/v1/auth/mfa/totp", access).await;
    assert_eq!(started.status(), StatusCode::OK);
    let started: Value = started.json().await.unwrap();
    let totp = totp_rs::Totp::from_url(started["otpauth_uri"].as_str().unwrap()).unwrap();
    let confirmed = app
        .post_authed_json(
            "/v1/auth/mfa/totp/confirm",
            access,
            json!({"code": totp.generate(step * 30).to_string()}),
        )
        .await;
    assert_eq!(confirmed.status(), StatusCode::OK);
    let body: Value = confirmed.json().await.unwrap();
    let codes = body["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    (totp, codes)
}

/// Logs in through JSON (aal 1 for an account without a second factor); the access token.
async fn json_login(app: &TestApp, email: &str) -> String {
    let response = app.login(email, PASSWORD).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

/// The `mfa_required` answer's challenge id.
async fn challenge_id(response: Response) -> String {
    let body = assert_error(response, StatusCode::UNAUTHORIZED, "mfa_required").await;
    body["error"]["details"]["challenge_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn the_second_factor_gives_an_aal2_cookie_session(backend: Backend) {
    let app = spawn_app_with(backend, &[SECURE]).await;
    register(&app, "ada@example.com").await;
    let access = json_login(&app, "ada@example.com").await;
    let step = safe_step().await;
    let (totp, recovery) = enable_totp(&app, &access, step).await;

    // TOTP: the password answers `mfa_required` like the JSON route, the code finishes.
    let challenge = challenge_id(browser_login(&app, "ada@example.com").await).await;
    let valid: Vec<String> = (step - 2..=step + 2)
        .map(|s| totp.generate(s * 30).to_string())
        .collect();
    let wrong_code = (0..1000u32)
        .map(|n| format!("{:06}", (n * 7919 + 123_456) % 1_000_000))
        .find(|c| !valid.contains(c))
        .unwrap();
    let wrong = BrowserRequest::new("/v1/auth/browser/mfa")
        .body(json!({"challenge_id": challenge, "code": wrong_code}))
        .send(&app)
        .await;
    assert!(wrong.headers().get("set-cookie").is_none());
    assert_error(wrong, StatusCode::UNAUTHORIZED, "invalid_mfa_code").await;
    let done = BrowserRequest::new("/v1/auth/browser/mfa")
        .body(
            json!({"challenge_id": challenge, "code": totp.generate((step + 1) * 30).to_string()}),
        )
        .send(&app)
        .await;
    let token = assert_session_cookie(&done, SECURE_NAME, true, FOURTEEN_DAYS);
    let body = browser_body(done, StatusCode::CREATED).await;
    let stored = app
        .stored_session(body["session"]["id"].as_str().unwrap())
        .await;
    assert_eq!(stored.aal, 2);
    assert_eq!(stored.amr, ["pwd", "otp"]);
    // Refreshes keep the level.
    let refreshed = refresh_with(&app, &token).await;
    let body = browser_body(refreshed, StatusCode::OK).await;
    assert_eq!(
        app.stored_session(body["session"]["id"].as_str().unwrap())
            .await
            .aal,
        2
    );

    // A recovery code in the same field works too.
    let challenge = challenge_id(browser_login(&app, "ada@example.com").await).await;
    let done = BrowserRequest::new("/v1/auth/browser/mfa")
        .body(json!({"challenge_id": challenge, "code": recovery[0]}))
        .send(&app)
        .await;
    assert_session_cookie(&done, SECURE_NAME, true, FOURTEEN_DAYS);
    let body = browser_body(done, StatusCode::CREATED).await;
    assert_eq!(
        app.stored_session(body["session"]["id"].as_str().unwrap())
            .await
            .aal,
        2
    );
}

async fn without_secure_cookies_on_loopback_the_cookie_is_sessiond_rt(backend: Backend) {
    // Only an explicit `SESSIOND_SECURE_COOKIES=false` on a loopback bind drops `Secure`.
    let default = spawn_app_with(backend, &[]).await;
    register(&default, "ada@example.com").await;
    let login = browser_login(&default, "ada@example.com").await;
    assert_session_cookie(&login, SECURE_NAME, true, FOURTEEN_DAYS);
    let app = spawn_app_with(backend, &[("SESSIOND_SECURE_COOKIES", "false")]).await;
    register(&app, "ada@example.com").await;
    let login = browser_login(&app, "ada@example.com").await;
    let first = assert_session_cookie(&login, DEV_NAME, false, FOURTEEN_DAYS);
    let refreshed = BrowserRequest::new("/v1/auth/browser/refresh")
        .cookie(DEV_NAME, &first)
        .send(&app)
        .await;
    let second = assert_session_cookie(&refreshed, DEV_NAME, false, FOURTEEN_DAYS);
    browser_body(refreshed, StatusCode::OK).await;
    logout_with_cookie(&app, DEV_NAME, &second, false).await;
}

const BROWSER_ROUTES: [&str; 4] = [
    "/v1/auth/browser/sessions",
    "/v1/auth/browser/mfa",
    "/v1/auth/browser/refresh",
    "/v1/auth/browser/logout",
];

async fn every_browser_route_needs_the_csrf_header_and_an_allowed_origin(backend: Backend) {
    let app = spawn_app_with(
        backend,
        &[SECURE, ("SESSIOND_CORS_ORIGINS", "https://app.example")],
    )
    .await;
    register(&app, "ada@example.com").await;
    let login = browser_login(&app, "ada@example.com").await;
    let token = assert_session_cookie(&login, SECURE_NAME, true, FOURTEEN_DAYS);
    let session_id = browser_body(login, StatusCode::CREATED).await["session"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let login_body = json!({"email": "ada@example.com", "password": PASSWORD});
    for path in BROWSER_ROUTES {
        let refusals = [
            ("no csrf header", BrowserRequest::new(path).without_csrf()),
            (
                "foreign origin",
                BrowserRequest::new(path).origin(Some("https://evil.example")),
            ),
            ("no origin", BrowserRequest::new(path).origin(None)),
            (
                "look-alike origin",
                BrowserRequest::new(path).origin(Some("https://app.example.evil.example")),
            ),
        ];
        for (why, request) in refusals {
            let response = request
                .cookie(SECURE_NAME, &token)
                .body(login_body.clone())
                .send(&app)
                .await;
            assert!(
                response.headers().get("set-cookie").is_none(),
                "{path} {why}"
            );
            assert_error(response, StatusCode::FORBIDDEN, "csrf_rejected").await;
        }
        // A wrong header value, and a refusal before the body is even read.
        let response = app
            .client
            .post(app.url(path))
            .header("origin", OWN_ORIGIN)
            .header(CSRF, "true")
            .body("not json")
            .send()
            .await
            .unwrap();
        assert_error(response, StatusCode::FORBIDDEN, "csrf_rejected").await;
    }
    // Nothing was done: no refused logout ended the session.
    assert_eq!(
        app.stored_session(&session_id).await.status,
        SessionStatus::Active
    );
    // Both allowed origins pass: the configured one and the issuer's own.
    let response = BrowserRequest::new("/v1/auth/browser/refresh")
        .origin(Some("https://app.example"))
        .cookie(SECURE_NAME, &token)
        .send(&app)
        .await;
    let token = assert_session_cookie(&response, SECURE_NAME, true, FOURTEEN_DAYS);
    assert_eq!(
        response
            .headers()
            .get("access-control-allow-origin")
            .unwrap(),
        "https://app.example"
    );
    assert_eq!(
        response
            .headers()
            .get("access-control-allow-credentials")
            .unwrap(),
        "true"
    );
    let response = BrowserRequest::new("/v1/auth/browser/refresh")
        .origin(Some(OWN_ORIGIN))
        .cookie(SECURE_NAME, &token)
        .send(&app)
        .await;
    let mut token = assert_session_cookie(&response, SECURE_NAME, true, FOURTEEN_DAYS);
    // On a loopback bind, the bound address's own origins are sessiond's too (its own pages,
    // whatever port it got).
    let port = app.base.rsplit(':').next().unwrap().to_owned();
    for origin in [app.base.clone(), format!("http://localhost:{port}")] {
        let response = BrowserRequest::new("/v1/auth/browser/refresh")
            .origin(Some(&origin))
            .cookie(SECURE_NAME, &token)
            .send(&app)
            .await;
        token = assert_session_cookie(&response, SECURE_NAME, true, FOURTEEN_DAYS);
    }
    // Another port on the same host is another origin.
    let response = BrowserRequest::new("/v1/auth/browser/refresh")
        .origin(Some("http://localhost:1"))
        .cookie(SECURE_NAME, &token)
        .send(&app)
        .await;
    assert_error(response, StatusCode::FORBIDDEN, "csrf_rejected").await;
}

async fn preflight(app: &TestApp, path: &str, origin: &str) -> Response {
    app.client
        .request(Method::OPTIONS, app.url(path))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type,x-sessiond-csrf",
        )
        .send()
        .await
        .unwrap()
}

fn header<'r>(response: &'r Response, name: &str) -> Option<&'r str> {
    response.headers().get(name).map(|v| v.to_str().unwrap())
}

async fn cors_allows_credentials_and_the_csrf_header_on_browser_routes_only(backend: Backend) {
    let app = spawn_app_with(
        backend,
        &[SECURE, ("SESSIOND_CORS_ORIGINS", "https://app.example")],
    )
    .await;
    for path in BROWSER_ROUTES {
        let response = preflight(&app, path, "https://app.example").await;
        assert!(response.status().is_success(), "{path}");
        assert_eq!(
            header(&response, "access-control-allow-origin"),
            Some("https://app.example")
        );
        assert_eq!(
            header(&response, "access-control-allow-credentials"),
            Some("true"),
            "{path}"
        );
        let allowed = header(&response, "access-control-allow-headers").unwrap();
        assert!(allowed.contains("x-sessiond-csrf"), "{path}: {allowed}");
        // A foreign origin is told nothing.
        let foreign = preflight(&app, path, "https://evil.example").await;
        assert_eq!(header(&foreign, "access-control-allow-origin"), None);
        assert_eq!(header(&foreign, "access-control-allow-credentials"), None);
    }
    // Other routes keep the general policy: the origin is allowed, credentials and the CSRF
    // header are not.
    for path in [
        "/v1/auth/sessions",
        "/v1/auth/tokens/refresh",
        "/v1/auth/me",
    ] {
        let response = preflight(&app, path, "https://app.example").await;
        assert_eq!(
            header(&response, "access-control-allow-origin"),
            Some("https://app.example"),
            "{path}"
        );
        assert_eq!(
            header(&response, "access-control-allow-credentials"),
            None,
            "{path}"
        );
        let allowed = header(&response, "access-control-allow-headers").unwrap_or_default();
        assert!(!allowed.contains("x-sessiond-csrf"), "{path}: {allowed}");
    }
}

/// Sends `method path` with the bearer token and `body`.
/// Asserts the level answer: 401 `insufficient_user_authentication`, `acr_values="aal2"` in
/// the challenge and the body, no `max_age` (the session is fresh).
/// `POST /v1/auth/api-keys` (an `api_keys` class action) with `access`.
async fn new_api_key(app: &TestApp, access: &str) -> Response {
    app.send_authed(
        Method::POST,
        "/v1/auth/api-keys",
        access,
        Some(json!({"name": "ci"})),
    )
    .await
}

async fn assert_needs_aal2(response: Response, what: &str) {
    assert_eq!(
        header(&response, "www-authenticate"),
        Some("Bearer error=\"insufficient_user_authentication\", acr_values=\"aal2\""),
        "{what}"
    );
    let body = assert_error(
        response,
        StatusCode::UNAUTHORIZED,
        "insufficient_user_authentication",
    )
    .await;
    assert_eq!(body["error"]["details"]["acr_values"], "aal2", "{what}");
    assert!(body["error"]["details"].get("max_age").is_none(), "{what}");
    assert!(body["error"]["details"]["methods"].is_array(), "{what}");
}

async fn listed_action_classes_need_aal2(backend: Backend) {
    let app = spawn_app_with(
        backend,
        &[(
            "SESSIOND_REQUIRE_AAL2_FOR",
            "api_keys,password,mfa,sessions",
        )],
    )
    .await;
    register(&app, "ada@example.com").await;
    let weak = json_login(&app, "ada@example.com").await;
    let password_change =
        json!({"current_password": PASSWORD, "new_password": "another long passphrase"});

    // aal 1, no second factor yet.
    assert_needs_aal2(new_api_key(&app, &weak).await, "api_keys").await;
    assert_needs_aal2(
        app.send_authed(
            Method::POST,
            "/v1/auth/password",
            &weak,
            Some(password_change.clone()),
        )
        .await,
        "password",
    )
    .await;
    assert_needs_aal2(
        app.send_authed(Method::DELETE, "/v1/auth/sessions", &weak, Some(json!({})))
            .await,
        "sessions",
    )
    .await;
    // The first second factor may be enrolled at aal 1 (it is how aal 2 is reached) …
    let step = safe_step().await;
    let (totp, _) = enable_totp(&app, &weak, step).await;
    // … but with one, changing factors on the aal 1 session needs aal 2.
    assert_needs_aal2(
        app.post_authed("/v1/auth/mfa/recovery-codes", &weak).await,
        "mfa: recovery codes",
    )
    .await;
    assert_needs_aal2(
        app.send_authed(
            Method::POST,
            "/v1/auth/mfa/totp/disable",
            &weak,
            Some(json!({"password": PASSWORD, "code": totp.generate(step * 30).to_string()})),
        )
        .await,
        "mfa: disable",
    )
    .await;
    assert_needs_aal2(
        app.post_authed("/v1/auth/mfa/totp", &weak).await,
        "mfa: re-enrol",
    )
    .await;

    // A TOTP login is aal 2: every listed action passes.
    let challenge = challenge_id(app.login("ada@example.com", PASSWORD).await).await;
    let done = app
        .post_json(
            "/v1/auth/sessions/mfa",
            &json!({"challenge_id": challenge, "code": totp.generate((step + 1) * 30).to_string()}),
        )
        .await;
    assert_eq!(done.status(), StatusCode::CREATED);
    let strong: Value = done.json().await.unwrap();
    let strong = strong["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        new_api_key(&app, &strong).await.status(),
        StatusCode::CREATED
    );
    assert_eq!(
        app.post_authed("/v1/auth/mfa/recovery-codes", &strong)
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        app.send_authed(
            Method::DELETE,
            "/v1/auth/sessions",
            &strong,
            Some(json!({}))
        )
        .await
        .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.send_authed(
            Method::POST,
            "/v1/auth/password",
            &strong,
            Some(password_change)
        )
        .await
        .status(),
        StatusCode::NO_CONTENT
    );
}

async fn unlisted_action_classes_are_unaffected(backend: Backend) {
    let app = spawn_app_with(backend, &[("SESSIOND_REQUIRE_AAL2_FOR", "api_keys")]).await;
    register(&app, "ada@example.com").await;
    let weak = json_login(&app, "ada@example.com").await;
    assert_needs_aal2(new_api_key(&app, &weak).await, "api_keys").await;
    assert_eq!(
        app.send_authed(Method::DELETE, "/v1/auth/sessions", &weak, Some(json!({})))
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    let step = safe_step().await;
    let (_, _) = enable_totp(&app, &weak, step).await;
    assert_eq!(
        app.post_authed("/v1/auth/mfa/recovery-codes", &weak)
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        app.send_authed(
            Method::POST,
            "/v1/auth/password",
            &weak,
            Some(json!({"current_password": PASSWORD, "new_password": "another long passphrase"}))
        )
        .await
        .status(),
        StatusCode::NO_CONTENT
    );
}

/// The metric line `name{outcome="…"} value` as the exposition shows it.
async fn metric(app: &TestApp, name: &str, outcome: &str) -> String {
    let text = app.get_text("/metrics").await;
    let prefix = format!("{name}{{outcome=\"{outcome}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("{prefix} missing"))
        .to_owned()
}

async fn browser_logins_and_refreshes_are_counted_like_json_ones(backend: Backend) {
    let app = spawn_app_with(backend, &[SECURE]).await;
    register(&app, "ada@example.com").await;
    let login = browser_login(&app, "ada@example.com").await;
    let token = assert_session_cookie(&login, SECURE_NAME, true, FOURTEEN_DAYS);
    assert_eq!(metric(&app, "sessiond_logins_total", "success").await, "1");
    let refreshed = refresh_with(&app, &token).await;
    assert_eq!(refreshed.status(), StatusCode::OK);
    assert_eq!(metric(&app, "sessiond_refresh_total", "rotated").await, "1");
    let none = BrowserRequest::new("/v1/auth/browser/refresh")
        .send(&app)
        .await;
    assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(metric(&app, "sessiond_refresh_total", "invalid").await, "1");
}

both_backends!(
    browser_logins_and_refreshes_are_counted_like_json_ones,
    login_sets_only_the_cookie,
    refresh_rotates_the_cookie_and_a_retry_in_the_grace_window_gets_the_same,
    an_old_cookie_after_the_grace_window_compromises_the_session,
    refresh_without_a_live_cookie_is_refused,
    logout_revokes_the_session_and_clears_the_cookie,
    the_second_factor_gives_an_aal2_cookie_session,
    without_secure_cookies_on_loopback_the_cookie_is_sessiond_rt,
    every_browser_route_needs_the_csrf_header_and_an_allowed_origin,
    cors_allows_credentials_and_the_csrf_header_on_browser_routes_only,
    listed_action_classes_need_aal2,
    unlisted_action_classes_are_unaffected,
);
