//! TOTP MFA over HTTP: enrolment, confirmation, the login challenge, recovery codes, replay and
//! attempt limits, expiry, and turning it off.
//!
//! Codes are computed here from the secret the server handed out, with an independent TOTP
//! implementation (totp-rs, parsed from the otpauth URI). The server accepts one step either
//! side of its own, so a test that needs two successive codes uses the current step and the
//! next one, and never starts within the last seconds of a step.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use sessiond_actors::ids::UserId;

use crate::both_backends;
use crate::helpers::{
    Backend, TestApp, Tokens, assert_error, assert_validation_failed, spawn_app, spawn_app_with,
};

pub(crate) const PASSWORD: &str = "correct horse battery";
const STEP: u64 = 30;

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The current TOTP step, first waiting for the next one if fewer than 4 seconds remain (so a
/// test's "current" and "next" codes stay inside the server's ±1 window for the whole test
/// step that uses them).
pub(crate) async fn safe_step() -> u64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let into_step = now.as_secs_f64() % STEP as f64;
    if into_step > (STEP - 4) as f64 {
        tokio::time::sleep(Duration::from_secs_f64(STEP as f64 - into_step + 0.2)).await;
    }
    unix_now() / STEP
}

/// An authenticator app: built from the otpauth URI the server returned.
pub(crate) struct Authenticator(totp_rs::Totp);

impl Authenticator {
    pub(crate) fn code(&self, step: u64) -> String {
        self.0.generate(step * STEP).to_string()
    }

    /// A six-digit code that is not valid for any step the server might accept around `step`.
    fn wrong_code(&self, step: u64) -> String {
        let valid: Vec<String> = (step.saturating_sub(2)..=step + 2)
            .map(|s| self.code(s))
            .collect();
        (0..1000u32)
            .map(|n| format!("{:06}", (n * 7919 + 123_456) % 1_000_000))
            .find(|c| !valid.contains(c))
            .unwrap()
    }
}

/// Decodes an access token's claims (the signature is checked by the server's own endpoints
/// in other tests; here only the claims matter).
fn claims(access_token: &str) -> Value {
    let payload = access_token
        .split('.')
        .nth(1)
        .expect("a JWT has three parts");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

async fn status(app: &TestApp, access: &str) -> Value {
    let response = app.get_authed("/v1/auth/mfa", access).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

/// Registers and logs in (before MFA); returns the tokens and the user id.
pub(crate) async fn user(app: &TestApp, email: &str) -> (Tokens, String) {
    assert_eq!(
        app.register(email, PASSWORD).await.status(),
        StatusCode::CREATED
    );
    let response = app.login(email, PASSWORD).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    let user_id = body["user"]["id"].as_str().unwrap().to_owned();
    (Tokens::from_body(body), user_id)
}

/// Starts an enrolment and checks its answer.
async fn start(app: &TestApp, access: &str, email: &str) -> (Authenticator, String) {
    let response = app.post_authed("/v1/auth/mfa/totp", access).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    let secret = body["secret"].as_str().unwrap().to_owned();
    let uri = body["otpauth_uri"].as_str().unwrap();
    assert!(uri.starts_with("otpauth://totp/sessiond:"), "{uri}");
    assert!(uri.contains(&email.replace('@', "%40")), "{uri}");
    let svg = body["qr_svg"].as_str().unwrap();
    assert!(svg.contains("<svg") && svg.trim_end().ends_with("</svg>"));
    let totp = totp_rs::Totp::from_url(uri).expect("the otpauth URI parses");
    assert_eq!(totp.secret().to_base32(), secret, "URI and secret agree");
    assert_eq!((totp.digits(), totp.step()), (6, STEP));
    (Authenticator(totp), secret)
}

/// Enrols and confirms at `step`; returns the authenticator and the recovery codes.
pub(crate) async fn enrol(
    app: &TestApp,
    access: &str,
    email: &str,
    step: u64,
) -> (Authenticator, Vec<String>) {
    let (auth, _) = start(app, access, email).await;
    let response = app
        .post_authed_json(
            "/v1/auth/mfa/totp/confirm",
            access,
            json!({"code": auth.code(step)}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    let codes: Vec<String> = body["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    (auth, codes)
}

/// Logs in with the password of an MFA user: must answer 401 `mfa_required`; returns the
/// challenge id.
pub(crate) async fn challenge(app: &TestApp, email: &str) -> String {
    let before = chrono::Utc::now();
    let body = assert_error(
        app.login(email, PASSWORD).await,
        StatusCode::UNAUTHORIZED,
        "mfa_required",
    )
    .await;
    let details = &body["error"]["details"];
    let expires_at = chrono::DateTime::parse_from_rfc3339(details["expires_at"].as_str().unwrap())
        .unwrap()
        .with_timezone(&chrono::Utc);
    assert!(expires_at > before, "{details}");
    assert!(
        expires_at <= chrono::Utc::now() + chrono::Duration::minutes(5),
        "{details}"
    );
    assert!(
        details["methods"]
            .as_array()
            .unwrap()
            .contains(&json!("totp")),
        "{details}"
    );
    let id = details["challenge_id"].as_str().unwrap().to_owned();
    uuid::Uuid::parse_str(&id).expect("challenge id is a UUID");
    id
}

pub(crate) async fn complete(app: &TestApp, challenge_id: &str, factor: Value) -> Response {
    let mut body = json!({"challenge_id": challenge_id});
    body.as_object_mut()
        .unwrap()
        .extend(factor.as_object().unwrap().clone());
    app.post_json("/v1/auth/sessions/mfa", &body).await
}

/// Asserts a 201 token response from a second-factor login and returns its tokens.
pub(crate) async fn assert_mfa_tokens(response: Response) -> Tokens {
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    let tokens = Tokens::from_body(body);
    let claims = claims(&tokens.access);
    assert_eq!(claims["aal"], 2, "{claims}");
    assert_eq!(claims["amr"], json!(["pwd", "otp"]), "{claims}");
    tokens
}

/// How many of `kinds` are `kind`.
fn count_of(kinds: &[String], kind: &str) -> usize {
    kinds.iter().filter(|k| *k == kind).count()
}

async fn event_kinds(app: &TestApp, user_id: &str) -> Vec<String> {
    let user: UserId = user_id.parse().unwrap();
    app.store
        .list_user_events(user, None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

async fn enrol_confirm_then_login_needs_a_second_factor(backend: Backend) {
    let app = spawn_app(backend).await;
    let email = "mfa@example.com";
    let (tokens, user_id) = user(&app, email).await;
    assert_eq!(status(&app, &tokens.access).await["totp_enabled"], false);

    let step = safe_step().await;
    let (auth, secret) = start(&app, &tokens.access, email).await;
    // Not on yet: login still answers tokens directly.
    assert_eq!(
        app.login(email, PASSWORD).await.status(),
        StatusCode::CREATED
    );
    // The secret is stored encrypted, never in the clear.
    let stored = app
        .store
        .totp_enrolment(user_id.parse().unwrap())
        .await
        .unwrap()
        .expect("enrolment stored");
    let raw = totp_rs::Secret::try_from_base32(&secret).unwrap();
    let raw = raw.as_bytes();
    assert!(
        !stored
            .sealed
            .ciphertext
            .windows(raw.len())
            .any(|w| w == raw)
    );
    assert!(
        !String::from_utf8_lossy(&stored.sealed.ciphertext).contains(&secret),
        "base32 secret stored in the clear"
    );
    assert!(stored.enabled_at.is_none());

    let response = app
        .post_authed_json(
            "/v1/auth/mfa/totp/confirm",
            &tokens.access,
            json!({"code": auth.code(step)}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    let codes = body["recovery_codes"].as_array().unwrap();
    assert_eq!(codes.len(), 10);
    let mut distinct: Vec<_> = codes.iter().map(|c| c.as_str().unwrap()).collect();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 10);
    for code in &distinct {
        assert_eq!(code.len(), 19, "{code}");
        assert_eq!(code.matches('-').count(), 3, "{code}");
    }
    let s = status(&app, &tokens.access).await;
    assert_eq!(s["totp_enabled"], true, "{s}");
    assert_eq!(s["recovery_codes_remaining"], 10, "{s}");
    assert!(s["enabled_at"].is_string(), "{s}");

    // Login now stops at the challenge; both methods are offered.
    let id = challenge(&app, email).await;
    let body = assert_error(
        app.login(email, PASSWORD).await,
        StatusCode::UNAUTHORIZED,
        "mfa_required",
    )
    .await;
    assert_eq!(
        body["error"]["details"]["methods"],
        json!(["totp", "recovery_code"])
    );
    // A wrong password still says only invalid_credentials.
    app.assert_login_refused(email, "wrong password!").await;

    // A wrong code; then the code used for confirmation (same step): replay, refused.
    assert_error(
        complete(&app, &id, json!({"code": auth.wrong_code(step)})).await,
        StatusCode::UNAUTHORIZED,
        "invalid_mfa_code",
    )
    .await;
    assert_error(
        complete(&app, &id, json!({"code": auth.code(step)})).await,
        StatusCode::UNAUTHORIZED,
        "invalid_mfa_code",
    )
    .await;
    // The next step's code works (within the ±1 window), once.
    let mfa =
        assert_mfa_tokens(complete(&app, &id, json!({"code": auth.code(step + 1)})).await).await;
    let me = app.get_authed("/v1/auth/me", &mfa.access).await;
    assert_eq!(me.status(), StatusCode::OK);
    // The session keeps aal/amr across a refresh.
    let refreshed = app.refresh(&mfa.refresh).await;
    assert_eq!(refreshed.status(), StatusCode::OK);
    let body: Value = refreshed.json().await.unwrap();
    let c = claims(body["access_token"].as_str().unwrap());
    assert_eq!(
        (c["aal"].clone(), c["amr"].clone()),
        (json!(2), json!(["pwd", "otp"]))
    );
    let stored = app.stored_session(&mfa.session_id).await;
    assert_eq!(stored.aal, 2);

    // The challenge is single use.
    assert_error(
        complete(&app, &id, json!({"code": auth.code(step + 1)})).await,
        StatusCode::UNAUTHORIZED,
        "mfa_challenge_invalid",
    )
    .await;
    // The same code on a fresh challenge: already used.
    let again = challenge(&app, email).await;
    assert_error(
        complete(&app, &again, json!({"code": auth.code(step + 1)})).await,
        StatusCode::UNAUTHORIZED,
        "invalid_mfa_code",
    )
    .await;

    let kinds = event_kinds(&app, &user_id).await;
    assert!(kinds.contains(&"mfa_enabled".to_owned()), "{kinds:?}");
    assert_eq!(count_of(&kinds, "mfa_challenge_failed"), 3, "{kinds:?}");
    app.stop().await;
}

async fn recovery_codes_work_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let email = "recover@example.com";
    let (tokens, _) = user(&app, email).await;
    let step = safe_step().await;
    let (_auth, codes) = enrol(&app, &tokens.access, email, step).await;

    let id = challenge(&app, email).await;
    // Case, dashes and spaces do not matter.
    let typed = codes[0].to_lowercase().replace('-', " ");
    assert_mfa_tokens(complete(&app, &id, json!({"recovery_code": typed})).await).await;
    assert_eq!(
        status(&app, &tokens.access).await["recovery_codes_remaining"],
        9
    );

    let id = challenge(&app, email).await;
    assert_error(
        complete(&app, &id, json!({"recovery_code": codes[0]})).await,
        StatusCode::UNAUTHORIZED,
        "invalid_mfa_code",
    )
    .await;
    assert_error(
        complete(&app, &id, json!({"recovery_code": "0000-0000-0000-0000"})).await,
        StatusCode::UNAUTHORIZED,
        "invalid_mfa_code",
    )
    .await;
    assert_mfa_tokens(complete(&app, &id, json!({"recovery_code": codes[1]})).await).await;

    // A recovery code also authorises turning MFA off (a lost phone); used ones do not.
    let disable = |factor: Value| {
        let mut body = json!({"password": PASSWORD});
        body.as_object_mut()
            .unwrap()
            .extend(factor.as_object().unwrap().clone());
        app.post_authed_json("/v1/auth/mfa/totp/disable", &tokens.access, body)
    };
    assert_error(
        disable(json!({"recovery_code": codes[1]})).await,
        StatusCode::UNAUTHORIZED,
        "invalid_mfa_code",
    )
    .await;
    assert_eq!(
        disable(json!({"recovery_code": codes[2]})).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(status(&app, &tokens.access).await["totp_enabled"], false);
    app.stop().await;
}

async fn confirm_with_a_wrong_code_leaves_mfa_off(backend: Backend) {
    let app = spawn_app(backend).await;
    let email = "wrong@example.com";
    let (tokens, _) = user(&app, email).await;
    let confirm = |code: String| {
        app.post_authed_json(
            "/v1/auth/mfa/totp/confirm",
            &tokens.access,
            json!({"code": code}),
        )
    };
    // Nothing to confirm yet.
    assert_error(
        confirm("123456".into()).await,
        StatusCode::CONFLICT,
        "mfa_not_enrolling",
    )
    .await;

    let step = safe_step().await;
    let (first, _) = start(&app, &tokens.access, email).await;
    for bad in [first.wrong_code(step), "12345".into(), "abcdef".into()] {
        assert_error(
            confirm(bad).await,
            StatusCode::UNAUTHORIZED,
            "invalid_mfa_code",
        )
        .await;
    }
    assert_eq!(status(&app, &tokens.access).await["totp_enabled"], false);
    let login = app.login(email, PASSWORD).await;
    assert_eq!(login.status(), StatusCode::CREATED, "MFA must still be off");
    let body: Value = login.json().await.unwrap();
    let c = claims(body["access_token"].as_str().unwrap());
    assert_eq!(
        (c["aal"].clone(), c["amr"].clone()),
        (json!(1), json!(["pwd"]))
    );

    // Restarting replaces the secret: the first one's codes no longer confirm.
    let (second, _) = start(&app, &tokens.access, email).await;
    assert_ne!(first.code(step), second.code(step));
    assert_error(
        confirm(first.code(step)).await,
        StatusCode::UNAUTHORIZED,
        "invalid_mfa_code",
    )
    .await;
    assert_eq!(confirm(second.code(step)).await.status(), StatusCode::OK);
    // Once on: no new enrolment, no second confirmation.
    assert_error(
        app.post_authed("/v1/auth/mfa/totp", &tokens.access).await,
        StatusCode::CONFLICT,
        "mfa_already_enabled",
    )
    .await;
    assert_error(
        confirm(second.code(step + 1)).await,
        StatusCode::CONFLICT,
        "mfa_already_enabled",
    )
    .await;
    app.stop().await;
}

async fn challenges_expire(backend: Backend) {
    let app = spawn_app_with(backend, &[("SESSIOND_MFA_CHALLENGE_TTL", "1s")]).await;
    let email = "expire@example.com";
    let (tokens, _) = user(&app, email).await;
    let step = safe_step().await;
    let (auth, codes) = enrol(&app, &tokens.access, email, step).await;
    let id = challenge(&app, email).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_error(
        complete(&app, &id, json!({"code": auth.code(step + 1)})).await,
        StatusCode::UNAUTHORIZED,
        "mfa_challenge_invalid",
    )
    .await;
    assert_error(
        complete(&app, &id, json!({"recovery_code": codes[0]})).await,
        StatusCode::UNAUTHORIZED,
        "mfa_challenge_invalid",
    )
    .await;
    // Neither factor was consumed by the refused attempts.
    assert_eq!(
        status(&app, &tokens.access).await["recovery_codes_remaining"],
        10
    );
    app.stop().await;
}

async fn attempts_are_limited(backend: Backend) {
    let app = spawn_app(backend).await;
    let email = "guess@example.com";
    let (tokens, user_id) = user(&app, email).await;
    let step = safe_step().await;
    let (auth, _) = enrol(&app, &tokens.access, email, step).await;
    let id = challenge(&app, email).await;
    for _ in 0..5 {
        assert_error(
            complete(&app, &id, json!({"code": auth.wrong_code(step)})).await,
            StatusCode::UNAUTHORIZED,
            "invalid_mfa_code",
        )
        .await;
    }
    // Even the right code is refused now, and the challenge stays dead.
    for _ in 0..2 {
        assert_error(
            complete(&app, &id, json!({"code": auth.code(step + 1)})).await,
            StatusCode::UNAUTHORIZED,
            "mfa_attempts_exceeded",
        )
        .await;
    }
    // A new login gets a new challenge, and the code (not consumed above) works.
    let id = challenge(&app, email).await;
    assert_mfa_tokens(complete(&app, &id, json!({"code": auth.code(step + 1)})).await).await;
    let kinds = event_kinds(&app, &user_id).await;
    assert_eq!(count_of(&kinds, "mfa_challenge_failed"), 5, "{kinds:?}");
    app.stop().await;
}

async fn parallel_use_of_one_code_succeeds_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let email = "race@example.com";
    let (tokens, _) = user(&app, email).await;
    let step = safe_step().await;
    let (auth, _) = enrol(&app, &tokens.access, email, step).await;
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(challenge(&app, email).await);
    }
    let code = auth.code(step + 1);
    let answers = futures_join(&app, &ids, &code).await;
    let created = answers
        .iter()
        .filter(|s| **s == StatusCode::CREATED)
        .count();
    assert_eq!(created, 1, "{answers:?}");
    assert!(
        answers
            .iter()
            .all(|s| *s == StatusCode::CREATED || *s == StatusCode::UNAUTHORIZED),
        "{answers:?}"
    );
    app.stop().await;
}

/// Completes every challenge with `code` at once.
async fn futures_join(app: &TestApp, ids: &[String], code: &str) -> Vec<StatusCode> {
    let mut tasks = Vec::new();
    for id in ids {
        let client = app.client.clone();
        let url = app.url("/v1/auth/sessions/mfa");
        let body = json!({"challenge_id": id, "code": code});
        tasks.push(tokio::spawn(async move {
            client.post(url).json(&body).send().await.unwrap().status()
        }));
    }
    let mut out = Vec::new();
    for task in tasks {
        out.push(task.await.unwrap());
    }
    out
}

async fn disabling_needs_password_and_code(backend: Backend) {
    let app = spawn_app(backend).await;
    let email = "disable@example.com";
    let (tokens, user_id) = user(&app, email).await;
    let disable =
        |body: Value| app.post_authed_json("/v1/auth/mfa/totp/disable", &tokens.access, body);
    let step = safe_step().await;
    assert_error(
        disable(json!({"password": PASSWORD, "code": "123456"})).await,
        StatusCode::CONFLICT,
        "mfa_not_enabled",
    )
    .await;
    let (auth, _) = enrol(&app, &tokens.access, email, step).await;
    let next = auth.code(step + 1);

    assert_error(
        disable(json!({"password": "not the password", "code": next})).await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    assert_error(
        disable(json!({"password": PASSWORD, "code": auth.wrong_code(step)})).await,
        StatusCode::UNAUTHORIZED,
        "invalid_mfa_code",
    )
    .await;
    // The confirmation's code (same step) is spent.
    assert_error(
        disable(json!({"password": PASSWORD, "code": auth.code(step)})).await,
        StatusCode::UNAUTHORIZED,
        "invalid_mfa_code",
    )
    .await;
    assert_validation_failed(disable(json!({"password": PASSWORD})).await).await;
    assert_validation_failed(
        disable(json!({"password": PASSWORD, "code": next, "recovery_code": "x"})).await,
    )
    .await;
    // Still on after all of that.
    challenge(&app, email).await;

    assert_eq!(
        disable(json!({"password": PASSWORD, "code": next}))
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(status(&app, &tokens.access).await["totp_enabled"], false);
    let login = app.login(email, PASSWORD).await;
    assert_eq!(
        login.status(),
        StatusCode::CREATED,
        "no second factor any more"
    );
    let body: Value = login.json().await.unwrap();
    assert_eq!(claims(body["access_token"].as_str().unwrap())["aal"], 1);
    assert_error(
        disable(json!({"password": PASSWORD, "code": next})).await,
        StatusCode::CONFLICT,
        "mfa_not_enabled",
    )
    .await;
    let kinds = event_kinds(&app, &user_id).await;
    assert!(kinds.contains(&"mfa_disabled".to_owned()), "{kinds:?}");
    app.stop().await;
}

async fn bad_requests_get_documented_errors(backend: Backend) {
    let app = spawn_app(backend).await;
    let email = "bad@example.com";
    let (tokens, _) = user(&app, email).await;
    assert_error(
        app.client
            .post(app.url("/v1/auth/mfa/totp"))
            .send()
            .await
            .unwrap(),
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
    assert_error(
        complete(&app, "not-a-uuid", json!({"code": "123456"})).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
    assert_error(
        complete(
            &app,
            &uuid::Uuid::now_v7().to_string(),
            json!({"code": "123456"}),
        )
        .await,
        StatusCode::UNAUTHORIZED,
        "mfa_challenge_invalid",
    )
    .await;
    let step = safe_step().await;
    let (_auth, _) = enrol(&app, &tokens.access, email, step).await;
    let id = challenge(&app, email).await;
    for factor in [
        json!({}),
        json!({"code": "123456", "recovery_code": "abcd"}),
    ] {
        assert_validation_failed(complete(&app, &id, factor).await).await;
    }
    let body = assert_validation_failed(complete(&app, &id, json!({"code": 123456})).await).await;
    assert_eq!(
        body["error"]["details"]["fields"][0]["field"], "code",
        "{body}"
    );
    assert_error(
        complete(&app, &id, json!({"code": "12345x"})).await,
        StatusCode::UNAUTHORIZED,
        "invalid_mfa_code",
    )
    .await;
    assert_validation_failed(
        app.post_json(
            "/v1/auth/sessions/mfa",
            &json!({"challenge_id": id, "code": "123456", "extra": 1}),
        )
        .await,
    )
    .await;
    app.stop().await;
}

both_backends!(
    enrol_confirm_then_login_needs_a_second_factor,
    recovery_codes_work_once,
    confirm_with_a_wrong_code_leaves_mfa_off,
    challenges_expire,
    attempts_are_limited,
    parallel_use_of_one_code_succeeds_once,
    disabling_needs_password_and_code,
    bad_requests_get_documented_errors,
);
