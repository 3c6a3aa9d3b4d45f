//! Log in with an external OpenID Connect provider, against a real certified provider
//! (`oidc-provider`, see `oidc_provider.rs`): the browser flow over HTTP (start → provider →
//! callback → return URL with the session cookie), the account rules on both stores, the
//! explicit link and unlink, MFA after the provider login, the protocol checks (state, nonce,
//! audience, key rotation, RFC 9207, provider errors), a provider down at start-up, and the
//! native exchange.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use sessiond::auth::oidc_login::port::OidcStore;
use sha2::{Digest, Sha256};

use crate::both_backends;
use crate::helpers::{Backend, TestApp, assert_error, spawn_app_with};
use crate::jwt_attacks::claims_of;
use crate::oauth_authorize;
use crate::oidc_provider::{CLIENT_ID, CLIENT_SECRET, TestProvider, free_port};

const PASSWORD: &str = "correct horse battery";
const NATIVE_REDIRECT: &str = "com.example.app:/oauth";

/// sessiond with two providers at `issuer`: `test` (trusted for emails) and `plain` (not).
async fn app_for(backend: Backend, issuer: &str, extra: &[(&str, &str)]) -> TestApp {
    let mut env = provider_env(issuer);
    env.extend_from_slice(extra);
    spawn_app_with(backend, &env).await
}

/// A fresh test provider, and sessiond using it ([`app_for`]).
async fn provider_and_app(backend: Backend, extra: &[(&str, &str)]) -> (TestProvider, TestApp) {
    let provider = TestProvider::start().await;
    let app = app_for(backend, &provider.issuer, extra).await;
    (provider, app)
}

/// The environment of [`app_for`]'s two providers.
fn provider_env(issuer: &str) -> Vec<(&'static str, &str)> {
    vec![
        ("SESSIOND_OIDC_TEST_ISSUER", issuer),
        ("SESSIOND_OIDC_TEST_CLIENT_ID", CLIENT_ID),
        ("SESSIOND_OIDC_TEST_CLIENT_SECRET", CLIENT_SECRET),
        ("SESSIOND_OIDC_TEST_TRUST_EMAIL", "true"),
        ("SESSIOND_OIDC_PLAIN_ISSUER", issuer),
        ("SESSIOND_OIDC_PLAIN_CLIENT_ID", CLIENT_ID),
        ("SESSIOND_OIDC_PLAIN_CLIENT_SECRET", CLIENT_SECRET),
        ("SESSIOND_OIDC_NATIVE_REDIRECT_URIS", NATIVE_REDIRECT),
    ]
}

/// A browser: no automatic redirects, and sessiond's binding cookie kept between requests.
struct Browser {
    http: reqwest::Client,
    binding: Option<String>,
}

impl Browser {
    fn new() -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            binding: None,
        }
    }

    fn keep_binding(&mut self, response: &Response) {
        for set in response.headers().get_all("set-cookie") {
            let set = set.to_str().unwrap();
            if set.contains("sessiond_oidc=") {
                assert!(set.contains("SameSite=Lax"), "{set}");
                assert!(set.contains("HttpOnly"), "{set}");
                self.binding = Some(set.split(';').next().unwrap().to_owned());
            }
        }
    }

    async fn get(&self, url: &str) -> Response {
        let mut request = self.http.get(url);
        if let Some(cookie) = &self.binding {
            request = request.header("cookie", cookie);
        }
        request.send().await.unwrap()
    }

    /// `GET …/start?query`: the provider's authorization URL.
    async fn start(&mut self, app: &TestApp, provider: &str, query: &str) -> String {
        let response = self
            .get(&app.url(&format!("/v1/auth/oidc/{provider}/start?{query}")))
            .await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "start");
        self.keep_binding(&response);
        location(&response)
    }
}

fn location(response: &Response) -> String {
    response.headers()["location"].to_str().unwrap().to_owned()
}

fn hint(email: &str) -> String {
    format!("login_hint={}", email.replace('+', "%2B"))
}

/// A whole browser login: start, the provider, the callback's answer.
async fn login(app: &TestApp, provider: &TestProvider, name: &str, email: &str) -> Response {
    let mut browser = Browser::new();
    let authorize = browser.start(app, name, &hint(email)).await;
    let callback = provider.authorize(&authorize).await;
    assert!(callback.starts_with(&app.base), "{callback}");
    browser.get(&callback).await
}

/// The error code a failed callback put in the return URL's fragment.
fn fragment_error(response: &Response) -> String {
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let location = location(response);
    location
        .split_once("#error=")
        .unwrap_or_else(|| panic!("no error in {location}"))
        .1
        .to_owned()
}

/// The access token of the session whose refresh cookie a callback set (through the browser
/// refresh route, as a page would).
/// A login through the `test` provider as `email`, completed: the session's access token.
async fn test_login(app: &TestApp, provider: &TestProvider, email: &str) -> String {
    let response = login(app, provider, "test", email).await;
    access_from_callback(app, &response).await
}

async fn access_from_callback(app: &TestApp, response: &Response) -> String {
    assert_eq!(
        response.status(),
        StatusCode::SEE_OTHER,
        "{}",
        location(response)
    );
    let cookie = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .find(|c| c.contains("sessiond_rt="))
        .unwrap_or_else(|| panic!("no session cookie; location {}", location(response)))
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let refreshed = app
        .client
        .post(app.url("/v1/auth/browser/refresh"))
        .header("cookie", cookie)
        .header("x-sessiond-csrf", "1")
        .header("origin", &app.base)
        .send()
        .await
        .unwrap();
    assert_eq!(refreshed.status(), StatusCode::OK);
    let body: Value = refreshed.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

async fn me(app: &TestApp, access: &str) -> Value {
    let response = app.get_authed("/v1/auth/me", access).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    body["user"].clone()
}

async fn identities(app: &TestApp, access: &str) -> Vec<Value> {
    let response = app.get_authed("/v1/auth/oidc/identities", access).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    body["identities"].as_array().unwrap().clone()
}

/// Registers a password account and marks its email verified.
async fn verified_account(app: &TestApp, email: &str) {
    // 201, or 202 under SESSIOND_REGISTER_CONFLICT=conceal.
    let status = app.register(email, PASSWORD).await.status();
    assert!(status.is_success(), "{status}");
    let user = app.store.find_user_by_email(email).await.unwrap().unwrap();
    app.store
        .mark_email_verified(user.id, chrono::Utc::now())
        .await
        .unwrap();
}

async fn first_login_creates_an_account_and_the_next_finds_it(backend: Backend) {
    let (provider, app) = provider_and_app(backend, &[]).await;
    let response = login(&app, &provider, "test", "ada@example.com").await;
    assert_eq!(location(&response), "/");
    let access = access_from_callback(&app, &response).await;
    let profile = me(&app, &access).await;
    assert_eq!(profile["email"], "ada@example.com");
    assert!(
        !profile["email_verified_at"].is_null(),
        "trusted provider: {profile}"
    );
    let user = app
        .store
        .find_user_by_email("ada@example.com")
        .await
        .unwrap()
        .unwrap();
    assert!(user.password_hash.is_none(), "no password");
    let links = identities(&app, &access).await;
    assert_eq!(links.len(), 1);
    assert_eq!(links[0]["provider"], "test");

    let access = test_login(&app, &provider, "ada@example.com").await;
    assert_eq!(me(&app, &access).await["id"], profile["id"]);
    app.stop().await;
}

async fn an_untrusted_provider_creates_an_unverified_account(backend: Backend) {
    let (provider, app) = provider_and_app(backend, &[]).await;
    let response = login(&app, &provider, "plain", "bea@example.com").await;
    let access = access_from_callback(&app, &response).await;
    assert!(me(&app, &access).await["email_verified_at"].is_null());
    app.stop().await;
}

async fn a_trusted_verified_email_links_the_existing_account(backend: Backend) {
    let (provider, app) = provider_and_app(backend, &[]).await;
    verified_account(&app, "cy@example.com").await;
    let access = test_login(&app, &provider, "cy@example.com").await;
    let profile = me(&app, &access).await;
    assert_eq!(profile["email"], "cy@example.com");
    assert_eq!(identities(&app, &access).await.len(), 1);
    // The password still works: the account was linked, not replaced.
    assert_eq!(
        app.login("cy@example.com", PASSWORD).await.status(),
        StatusCode::CREATED
    );
    app.stop().await;
}

async fn an_untrusted_or_unverified_email_is_not_linked(backend: Backend) {
    let (provider, app) = provider_and_app(backend, &[]).await;
    verified_account(&app, "dee@example.com").await;
    // Provider not trusted for emails.
    let response = login(&app, &provider, "plain", "dee@example.com").await;
    assert_eq!(fragment_error(&response), "account_exists_link_required");
    // Trusted provider, but it does not assert email_verified.
    let response = login(&app, &provider, "test", "unverified+dee@example.com").await;
    assert_eq!(fragment_error(&response), "account_exists_link_required");
    // The sessiond account's own email is not verified.
    assert_eq!(
        app.register("eve@example.com", PASSWORD).await.status(),
        StatusCode::CREATED
    );
    let response = login(&app, &provider, "test", "eve@example.com").await;
    assert_eq!(fragment_error(&response), "account_exists_link_required");
    // No email at all.
    let response = login(&app, &provider, "test", "noemail+fay@example.com").await;
    assert_eq!(fragment_error(&response), "provider_email_missing");
    app.stop().await;
}

/// The authorization endpoint's login page, its "Continue with Test" button, the provider's
/// login: `request` (`?request=<id>`) and the start URL of the button.
async fn provider_button(
    s: &oauth_authorize::Setup,
    b: &mut oauth_authorize::Browser,
    provider: &TestProvider,
    email: &str,
) -> Response {
    let page = b.get(&oauth_authorize::authorize_url(s, "")).await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    let start = format!(
        "/v1/auth/oidc/test/start?request={}",
        oauth_authorize::field(&html, "request")
    );
    assert!(
        html.contains(&start) && html.contains("Continue with Test"),
        "{html}"
    );
    let to_provider = b.get(&s.app.url(&format!("{start}&{}", hint(email)))).await;
    assert_eq!(to_provider.status(), StatusCode::SEE_OTHER);
    let callback = provider.authorize(&location(&to_provider)).await;
    assert!(callback.starts_with(&s.app.base), "{callback}");
    b.get(&callback).await
}

/// The login page's provider button finishes the pending authorization as the password form
/// does: single sign-on (no browser-session cookie), the consent page, the client's redirect
/// with a code, and the code's grant is for the account linked to the provider identity.
async fn the_login_page_provider_button_completes_the_authorization(backend: Backend) {
    let provider = TestProvider::start().await;
    let s = oauth_authorize::setup_with(backend, &provider_env(&provider.issuer)).await;
    let email = "pia@example.com";
    let mut b = oauth_authorize::Browser::new();
    let signed_in = provider_button(&s, &mut b, &provider, email).await;
    assert!(
        !signed_in
            .headers()
            .get_all("set-cookie")
            .iter()
            .any(|c| c.to_str().unwrap().contains("sessiond_rt=")),
        "single sign-on, not a browser session"
    );
    let code = oauth_authorize::consent_after_login(&s, &mut b, &signed_in).await;
    let tokens = oauth_authorize::exchange(
        &s,
        &code,
        oauth_authorize::REDIRECT,
        oauth_authorize::VERIFIER,
    )
    .await;
    assert_eq!(tokens.status(), StatusCode::OK);
    let body: Value = tokens.json().await.unwrap();
    let access = body["access_token"].as_str().unwrap();
    let user = s
        .app
        .store
        .find_user_by_email(email)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claims_of(access)["sub"], user.id.to_string());
    let links = s.app.store.list_identities(user.id).await.unwrap();
    assert_eq!(links.len(), 1);
    assert_eq!(links[0].provider, "test");
    s.app.stop().await;
}

/// An account with a second factor gets the login page's mfa step after the provider login;
/// its code signs in and goes on to the consent page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_provider_button_still_asks_for_the_second_factor() {
    let provider = TestProvider::start().await;
    let s = oauth_authorize::setup_with(Backend::Postgres, &provider_env(&provider.issuer)).await;
    let email = "lou@example.com";
    let tokens = s.app.signed_in_user(email).await;
    let step = crate::mfa::safe_step().await;
    let (authenticator, _) = crate::mfa::enrol(&s.app, &tokens.access, email, step).await;
    let user = s
        .app
        .store
        .find_user_by_email(email)
        .await
        .unwrap()
        .unwrap();
    s.app
        .store
        .mark_email_verified(user.id, chrono::Utc::now())
        .await
        .unwrap();
    let mut b = oauth_authorize::Browser::new();
    let mfa_page = provider_button(&s, &mut b, &provider, email).await;
    assert_eq!(mfa_page.status(), StatusCode::OK);
    assert!(
        b.cookie.is_none(),
        "no single sign-on before the second factor"
    );
    let html = mfa_page.text().await.unwrap();
    let code = authenticator.code(step + 1);
    let finished = b
        .post(
            &s.app.url("/oauth2/login/mfa"),
            &[
                ("request", &oauth_authorize::field(&html, "request")),
                ("csrf", &oauth_authorize::field(&html, "csrf")),
                ("challenge", &oauth_authorize::field(&html, "challenge")),
                ("code", &code),
            ],
            Some(&s.app.base),
        )
        .await;
    oauth_authorize::consent_after_login(&s, &mut b, &finished).await;
    s.app.stop().await;
}

both_backends!(
    the_login_page_provider_button_completes_the_authorization,
    first_login_creates_an_account_and_the_next_finds_it,
    an_untrusted_provider_creates_an_unverified_account,
    a_trusted_verified_email_links_the_existing_account,
    an_untrusted_or_unverified_email_is_not_linked,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conceal_mode_answers_the_generic_failure() {
    let (provider, app) = provider_and_app(
        Backend::Postgres,
        &[("SESSIOND_REGISTER_CONFLICT", "conceal")],
    )
    .await;
    verified_account(&app, "gus@example.com").await;
    let response = login(&app, &provider, "plain", "gus@example.com").await;
    assert_eq!(fragment_error(&response), "oidc_login_failed");
    app.stop().await;
}

/// Starts an explicit link from a signed-in session and completes it at the provider.
async fn link(app: &TestApp, provider: &TestProvider, access: &str, email: &str) -> Response {
    from_session(app, provider, "/v1/auth/oidc/plain/link", access, email).await
}

/// A provider login started from a signed-in session (`route`: link or reauth) and completed
/// at the provider as `email`: the callback's answer.
async fn from_session(
    app: &TestApp,
    provider: &TestProvider,
    route: &str,
    access: &str,
    email: &str,
) -> Response {
    let mut browser = Browser::new();
    let response = browser
        .http
        .post(app.url(route))
        .bearer_auth(access)
        .json(&json!({"return_to": "/settings"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    browser.keep_binding(&response);
    let body: Value = response.json().await.unwrap();
    let url = body["authorization_url"].as_str().unwrap();
    assert!(
        url.contains("prompt=login") && url.contains("max_age=0"),
        "a fresh login: {url}"
    );
    let url = format!("{url}&{}", hint(email));
    let callback = provider.authorize(&url).await;
    browser.get(&callback).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_link_then_unlink_rules() {
    let (provider, app) = provider_and_app(Backend::Postgres, &[]).await;
    // A password account whose email the untrusted provider may not link by itself.
    let tokens = app.signed_in_user("hal@example.com").await;
    let refused = login(&app, &provider, "plain", "hal@example.com").await;
    assert_eq!(fragment_error(&refused), "account_exists_link_required");

    let linked = link(&app, &provider, &tokens.access, "hal@example.com").await;
    assert_eq!(location(&linked), "/settings#linked=plain");
    assert_eq!(identities(&app, &tokens.access).await.len(), 1);
    // Now the provider logs the account in.
    let response = login(&app, &provider, "plain", "hal@example.com").await;
    let access = access_from_callback(&app, &response).await;
    assert_eq!(me(&app, &access).await["email"], "hal@example.com");

    // The same provider account cannot be linked to a second account.
    let other = app.signed_in_user("ida@example.com").await;
    let taken = link(&app, &provider, &other.access, "hal@example.com").await;
    assert_eq!(fragment_error(&taken), "identity_in_use");

    // Unlinking with a password left works.
    let response = app
        .delete_authed("/v1/auth/oidc/plain/link", &tokens.access)
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(identities(&app, &tokens.access).await.is_empty());
    let response = app
        .delete_authed("/v1/auth/oidc/plain/link", &tokens.access)
        .await;
    assert_error(response, StatusCode::NOT_FOUND, "identity_not_linked").await;

    // An account made by the provider has no other way in: its last link stays.
    let access = test_login(&app, &provider, "jo@example.com").await;
    let response = app.delete_authed("/v1/auth/oidc/test/link", &access).await;
    assert_error(response, StatusCode::CONFLICT, "last_login_method").await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linking_needs_a_recent_authentication() {
    let (_provider, app) =
        provider_and_app(Backend::Postgres, &[("SESSIOND_REAUTH_MAX_AGE", "1s")]).await;
    let tokens = app.signed_in_user("kai@example.com").await;
    assert_error(
        refused_once_old(&app, &tokens.access).await,
        StatusCode::UNAUTHORIZED,
        "insufficient_user_authentication",
    )
    .await;
    app.stop().await;
}

/// A sensitive action (starting a link) with `access`: its response.
async fn sensitive_action(app: &TestApp, access: &str) -> Response {
    app.post_authed_json("/v1/auth/oidc/plain/link", access, json!({}))
        .await
}

/// [`sensitive_action`], polled (30 s at most) until the session's one-second reauthentication
/// window has passed: the refusal.
async fn refused_once_old(app: &TestApp, access: &str) -> Response {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let response = sensitive_action(app, access).await;
        if response.status() != StatusCode::OK {
            return response;
        }
        assert!(std::time::Instant::now() < deadline, "never got old");
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

/// A passwordless account (created by a provider login) proves itself again at its provider
/// (`max_age=0`): refused before (its methods name `oidc`), allowed after, and the session's
/// `auth_time` renewed through its actor; another account's provider login is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passwordless_account_reauthenticates_at_its_provider() {
    let (provider, app) =
        provider_and_app(Backend::Postgres, &[("SESSIOND_REAUTH_MAX_AGE", "1s")]).await;
    let email = "noa@example.com";
    let response = login(&app, &provider, "test", email).await;
    let access = access_from_callback(&app, &response).await;
    let sid = claims_of(&access)["sid"].as_str().unwrap().to_owned();
    let body = assert_error(
        refused_once_old(&app, &access).await,
        StatusCode::UNAUTHORIZED,
        "insufficient_user_authentication",
    )
    .await;
    assert_eq!(
        body["error"]["details"]["methods"],
        json!(["oidc"]),
        "{body}"
    );

    let reauth = |email: &'static str| {
        from_session(&app, &provider, "/v1/auth/oidc/test/reauth", &access, email)
    };
    // Someone else's provider account does not reauthenticate this session.
    let before = app.stored_session(&sid).await.auth_time;
    assert_eq!(
        fragment_error(&reauth("eve@example.com").await),
        "oidc_reauthentication_failed"
    );
    assert_eq!(app.stored_session(&sid).await.auth_time, before);
    // The account's own: renewed; the action is allowed again (retried should the one-second
    // window pass between the two requests on a slow machine).
    let mut allowed = false;
    for _ in 0..5 {
        let done = reauth(email).await;
        assert_eq!(location(&done), "/settings#reauthenticated=test");
        let session = app.stored_session(&sid).await;
        assert!(session.auth_time > before);
        assert!(session.amr.contains(&"fed".to_owned()), "{:?}", session.amr);
        if sensitive_action(&app, &access).await.status() == StatusCode::OK {
            allowed = true;
            break;
        }
    }
    assert!(
        allowed,
        "the sensitive action after the provider reauthentication"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mfa_is_still_required_after_the_provider_login() {
    let (provider, app) = provider_and_app(Backend::Postgres, &[]).await;
    let email = "lee@example.com";
    let tokens = app.signed_in_user(email).await;
    let step = crate::mfa::safe_step().await;
    let (authenticator, _) = crate::mfa::enrol(&app, &tokens.access, email, step).await;
    let user = app.store.find_user_by_email(email).await.unwrap().unwrap();
    app.store
        .mark_email_verified(user.id, chrono::Utc::now())
        .await
        .unwrap();

    let response = login(&app, &provider, "test", email).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let location = location(&response);
    let challenge = location
        .split_once("#mfa_required=")
        .unwrap_or_else(|| panic!("no challenge in {location}"))
        .1
        .to_owned();
    assert!(
        response.headers().get("set-cookie").is_none(),
        "no session before the second factor"
    );
    let finished = app
        .client
        .post(app.url("/v1/auth/browser/mfa"))
        .header("x-sessiond-csrf", "1")
        .header("origin", &app.base)
        .json(&json!({"challenge_id": challenge, "code": authenticator.code(step + 1)}))
        .send()
        .await
        .unwrap();
    assert_eq!(finished.status(), StatusCode::CREATED);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_or_replayed_state_is_refused() {
    let (provider, app) = provider_and_app(Backend::Postgres, &[]).await;
    let mut browser = Browser::new();
    let authorize = browser.start(&app, "test", &hint("max@example.com")).await;
    let callback = provider.authorize(&authorize).await;

    // Another state than the one started.
    let state = callback
        .split('&')
        .chain(callback.split('?'))
        .find_map(|p| p.strip_prefix("state="))
        .unwrap()
        .to_owned();
    let forged = callback.replace(&state, "forged-state");
    let response = browser.get(&forged).await;
    assert_eq!(fragment_error(&response), "oidc_state_invalid");

    // Another browser (no binding cookie) cannot use the right state; and the attempt used it.
    let stranger = Browser::new();
    let response = stranger.get(&callback).await;
    assert_eq!(fragment_error(&response), "oidc_state_invalid");
    let response = browser.get(&callback).await;
    assert_eq!(fragment_error(&response), "oidc_state_invalid");

    // A fresh flow succeeds once; replaying its callback is refused.
    let authorize = browser.start(&app, "test", &hint("max@example.com")).await;
    let callback = provider.authorize(&authorize).await;
    let first = browser.get(&callback).await;
    access_from_callback(&app, &first).await;
    let replay = browser.get(&callback).await;
    assert_eq!(fragment_error(&replay), "oidc_state_invalid");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_nonce_or_audience_is_refused_and_audited() {
    let (provider, app) = provider_and_app(Backend::Postgres, &[]).await;
    for hook in ["wrong-nonce", "other-audience"] {
        provider.hook(hook).await;
        let response = login(&app, &provider, "test", "ned@example.com").await;
        assert_eq!(fragment_error(&response), "oidc_id_token_invalid", "{hook}");
    }
    assert!(
        app.store
            .find_user_by_email("ned@example.com")
            .await
            .unwrap()
            .is_none(),
        "no account from a refused ID token"
    );
    let pool = sqlx::PgPool::connect(app.database_url()).await.unwrap();
    let (failures,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM audit_events WHERE kind = 'oidc_login_failed' \
         AND details->>'reason' = 'id_token_invalid'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    pool.close().await;
    assert_eq!(failures, 2);
    // The hooks were for one token each: the next login works.
    test_login(&app, &provider, "ned@example.com").await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_key_rotation_is_followed() {
    let (provider, app) = provider_and_app(Backend::Postgres, &[]).await;
    test_login(&app, &provider, "ona@example.com").await;
    provider.hook("rotate").await;
    test_login(&app, &provider, "ona@example.com").await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_denied_at_the_provider_ends_on_the_return_url() {
    let (provider, app) = provider_and_app(Backend::Postgres, &[]).await;
    let mut browser = Browser::new();
    let authorize = browser
        .start(
            &app,
            "test",
            &format!("{}&return_to=/welcome", hint("deny+pat@example.com")),
        )
        .await;
    let callback = provider.authorize(&authorize).await;
    let response = browser.get(&callback).await;
    assert_eq!(location(&response), "/welcome#error=access_denied");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn return_urls_and_providers_are_checked_at_the_start() {
    let (_provider, app) = provider_and_app(Backend::Postgres, &[]).await;
    let browser = Browser::new();
    let response = browser
        .get(&app.url("/v1/auth/oidc/test/start?return_to=https%3A%2F%2Fevil.example%2F"))
        .await;
    assert_error(response, StatusCode::BAD_REQUEST, "return_url_not_allowed").await;
    let response = browser.get(&app.url("/v1/auth/oidc/nobody/start")).await;
    assert_error(response, StatusCode::NOT_FOUND, "oidc_provider_unknown").await;
    let response = browser
        .get(&app.url(&format!(
            "/v1/auth/oidc/test/start?redirect_uri=com.evil.app%3A%2Fcb&code_challenge={}&code_challenge_method=S256",
            "x".repeat(43)
        )))
        .await;
    assert_error(response, StatusCode::BAD_REQUEST, "return_url_not_allowed").await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_down_at_start_up_is_retried() {
    let port = free_port();
    let issuer = format!("http://127.0.0.1:{port}");
    let app = app_for(Backend::Postgres, &issuer, &[]).await;
    let browser = Browser::new();
    let response = browser.get(&app.url("/v1/auth/oidc/test/start")).await;
    assert_error(
        response,
        StatusCode::SERVICE_UNAVAILABLE,
        "oidc_provider_unavailable",
    )
    .await;
    // sessiond kept serving; once the provider is up, the next login discovers it.
    let provider = TestProvider::start_on(port).await;
    test_login(&app, &provider, "quinn@example.com").await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_native_app_exchanges_its_code_with_its_verifier() {
    let (provider, app) = provider_and_app(Backend::Postgres, &[]).await;
    let verifier = URL_SAFE_NO_PAD.encode([7u8; 32]);
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let mut browser = Browser::new();
    let authorize = browser
        .start(
            &app,
            "test",
            &format!(
                "{}&redirect_uri=com.example.app%3A%2Foauth&code_challenge={challenge}\
                 &code_challenge_method=S256&state=app-state",
                hint("rex@example.com")
            ),
        )
        .await;
    let callback = provider.authorize(&authorize).await;
    let response = browser.get(&callback).await;
    let redirect = location(&response);
    assert!(
        redirect.starts_with("com.example.app:/oauth?code="),
        "{redirect}"
    );
    assert!(redirect.ends_with("&state=app-state"), "{redirect}");
    let code = redirect
        .split_once("code=")
        .unwrap()
        .1
        .split('&')
        .next()
        .unwrap()
        .to_owned();

    let wrong = app
        .post_json(
            "/v1/auth/oidc/test/exchange",
            &json!({"code": code, "code_verifier": URL_SAFE_NO_PAD.encode([8u8; 32])}),
        )
        .await;
    assert_error(wrong, StatusCode::BAD_REQUEST, "invalid_grant").await;
    // The wrong verifier used the code up: a code is single-use whatever the outcome.
    let again = app
        .post_json(
            "/v1/auth/oidc/test/exchange",
            &json!({"code": code, "code_verifier": verifier}),
        )
        .await;
    assert_error(again, StatusCode::BAD_REQUEST, "invalid_grant").await;

    // A fresh login, exchanged with the right verifier.
    let authorize = browser
        .start(
            &app,
            "test",
            &format!(
                "{}&redirect_uri=com.example.app%3A%2Foauth&code_challenge={challenge}\
                 &code_challenge_method=S256",
                hint("rex@example.com")
            ),
        )
        .await;
    let callback = provider.authorize(&authorize).await;
    let redirect = location(&browser.get(&callback).await);
    let code = redirect.split_once("code=").unwrap().1.to_owned();
    let response = app
        .post_json(
            "/v1/auth/oidc/test/exchange",
            &json!({"code": code, "code_verifier": verifier}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    assert!(body["refresh_token"].as_str().unwrap().starts_with("rt1_"));
    assert_eq!(body["user"]["email"], "rex@example.com");
    app.stop().await;
}
