//! Bad request bodies, headers, paths and queries on every endpoint: malformed JSON, wrong
//! types, unknown fields, huge numbers, invalid UTF-8, SQL-like and control-character strings
//! in every text field, Unicode emails — each answered with a 4xx and the error body, never a
//! 5xx, and nothing of what was refused reaches the database. Then a bounded, seeded mutation
//! fuzzer throws a few hundred broken variants of valid bodies at each endpoint.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{Backend, TestApp, Tokens, spawn_app_with};

const PASSWORD: &str = "correct horse battery";

/// Strings that have broken other services' SQL, logs, terminals or parsers.
const NASTY: &[&str] = &[
    "' OR '1'='1",
    "'; DROP TABLE users; --",
    "\"); DELETE FROM sessions; --",
    "1; SELECT pg_sleep(10)--",
    "%' UNION SELECT * FROM refresh_tokens --",
    "\\",
    "\\\\'",
    "$1",
    "?",
    "\u{0}",
    "a\u{0}b",
    "\u{7}\u{8}\u{1b}[31mred",
    "line\nbreak",
    "tab\there",
    "\r\n\r\nHTTP/1.1 200 OK",
    "\u{202e}gnp.exe",
    "\u{200b}",
    "\u{feff}",
    "\u{fffd}",
    "\u{10ffff}",
    "𝕬𝖉𝖆 💥 ",
    "{{7*7}}",
    "${jndi:ldap://127.0.0.1/a}",
    "<script>alert(1)</script>",
    "../../etc/passwd",
    "null",
    "",
    " ",
];

/// Sends raw bytes as a JSON body.
async fn post_raw(
    app: &TestApp,
    path: &str,
    body: Vec<u8>,
    content_type: &str,
) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

/// A 4xx with the documented error body (code, message, matching correlation id), or — when
/// `allow_success` — a 2xx. Never a 5xx. Returns the status.
async fn check(response: reqwest::Response, case: &str, allow_success: bool) -> StatusCode {
    let status = response.status();
    assert!(
        !status.is_server_error(),
        "case {case:?}: {status} (never a 5xx)"
    );
    if status.is_success() {
        assert!(allow_success, "case {case:?} was accepted: {status}");
        return status;
    }
    assert!(status.is_client_error(), "case {case:?}: {status}");
    let correlation = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("case {case:?}: no x-request-id"))
        .to_owned();
    let text = response.text().await.unwrap();
    let body: Value = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("case {case:?}: error body is not JSON: {text:?}"));
    let code = body["error"]["code"].as_str().unwrap_or("");
    assert!(!code.is_empty(), "case {case:?}: {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "case {case:?}: {body}"
    );
    assert_eq!(
        body["error"]["correlation_id"], correlation,
        "case {case:?}"
    );
    status
}

/// Whether an account with exactly this (normalised) email is stored. A NUL cannot be stored in
/// PostgreSQL text at all, so such an email is absent by construction.
async fn user_exists(app: &TestApp, email: &str) -> bool {
    if email.contains('\0') {
        return false;
    }
    app.store.find_user_by_email(email).await.unwrap().is_some()
}

/// Number of active sessions of the signed-in user, through the API.
async fn session_count(app: &TestApp, access: &str) -> usize {
    let body: Value = app
        .get_authed_json("/v1/auth/sessions?limit=100", access)
        .await;
    body["sessions"].as_array().unwrap().len()
}

async fn malformed_and_hostile_bodies_get_4xx_and_change_nothing(backend: Backend) {
    let app = spawn_app_with(backend, &[("SESSIOND_RATE_LIMITS", "off")]).await;
    let owner: Tokens = app.signed_in_user("owner@example.com").await;
    let owner_before = app.stored_session(&owner.session_id).await;
    let sessions_before = session_count(&app, &owner.access).await;
    let mut tried = 0usize;

    // 1. Malformed JSON, the same on every JSON endpoint.
    let malformed: Vec<(&str, Vec<u8>)> = vec![
        ("empty", b"".to_vec()),
        ("truncated", b"{\"email\": \"a@b.c\"".to_vec()),
        (
            "trailing garbage",
            b"{\"email\":\"a@b.c\",\"password\":\"long enough\"} x".to_vec(),
        ),
        ("two documents", b"{}{}".to_vec()),
        ("single quotes", b"{'email':'a@b.c'}".to_vec()),
        ("comment", b"{/* hi */}".to_vec()),
        ("trailing comma", b"{\"email\":\"a@b.c\",}".to_vec()),
        ("NaN", b"{\"email\":NaN}".to_vec()),
        ("bare word", b"email".to_vec()),
        (
            "BOM",
            b"\xef\xbb\xbf{\"email\":\"a@b.c\",\"password\":\"long enough\"}".to_vec(),
        ),
        (
            "invalid UTF-8 in a string",
            b"{\"email\":\"\xff\xfe@b.c\",\"password\":\"long enough\"}".to_vec(),
        ),
        (
            "overlong UTF-8",
            b"{\"email\":\"\xc0\xafa@b.c\",\"password\":\"long enough\"}".to_vec(),
        ),
        (
            "lone surrogate escape",
            b"{\"email\":\"\\ud800@b.c\",\"password\":\"long enough\"}".to_vec(),
        ),
        ("bad escape", b"{\"email\":\"\\x41@b.c\"}".to_vec()),
        (
            "raw control character",
            b"{\"email\":\"a\x01@b.c\",\"password\":\"long enough\"}".to_vec(),
        ),
        (
            "deep nesting",
            [b"[".repeat(5000), b"]".repeat(5000)].concat(),
        ),
        (
            "deep object nesting",
            [b"{\"a\":".repeat(3000), b"1".to_vec(), b"}".repeat(3000)].concat(),
        ),
        (
            "huge number",
            format!("{{\"email\":1{}}}", "0".repeat(5000)).into_bytes(),
        ),
        ("huge exponent", b"{\"email\":1e999999999}".to_vec()),
        ("negative zero", b"{\"email\":-0.0}".to_vec()),
        ("null", b"null".to_vec()),
        ("array", b"[]".to_vec()),
        ("string", b"\"hello\"".to_vec()),
        ("number", b"42".to_vec()),
        ("NUL bytes", vec![0u8; 64]),
        ("random binary", (0..=255u8).collect()),
    ];
    for path in [
        "/v1/auth/register",
        "/v1/auth/sessions",
        "/v1/auth/tokens/refresh",
    ] {
        for (name, body) in &malformed {
            let status = check(
                post_raw(&app, path, body.clone(), "application/json").await,
                &format!("{path}: {name}"),
                false,
            )
            .await;
            assert!(
                matches!(status.as_u16(), 400 | 422),
                "{path}: {name}: {status}"
            );
            tried += 1;
        }
        // Media types.
        for content_type in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data",
            "application/jsonx",
            "",
        ] {
            let status = check(
                post_raw(&app, path, b"{}".to_vec(), content_type).await,
                &format!("{path}: content-type {content_type:?}"),
                false,
            )
            .await;
            assert_eq!(
                status,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "{path} {content_type:?}"
            );
            tried += 1;
        }
        // Over the body limit.
        let status = check(
            post_raw(&app, path, vec![b' '; 100 * 1024], "application/json").await,
            &format!("{path}: 100 KB of spaces"),
            false,
        )
        .await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        tried += 1;
    }

    // 2. Wrong types and unknown fields, field by field.
    let valid: [(&str, Value); 3] = [
        (
            "/v1/auth/register",
            json!({"email": "typed@example.com", "password": PASSWORD, "name": "Ada"}),
        ),
        (
            "/v1/auth/sessions",
            json!({"email": "owner@example.com", "password": PASSWORD, "device_name": "laptop"}),
        ),
        ("/v1/auth/tokens/refresh", json!({"refresh_token": "rt1_x"})),
    ];
    let wrong_values = [
        json!(null),
        json!(true),
        json!(0),
        json!(-1),
        json!(1.5),
        json!(u64::MAX),
        json!(i64::MIN),
        json!(1e308),
        json!([]),
        json!(["a@b.c"]),
        json!({}),
        json!({"$ne": null}),
    ];
    for (path, body) in &valid {
        for field in body.as_object().unwrap().keys() {
            for value in &wrong_values {
                let mut b = body.clone();
                b[field] = value.clone();
                // `null` for an optional field is allowed ("absent").
                let optional = matches!(field.as_str(), "name" | "device_name");
                let status = check(
                    app.post_json(path, &b).await,
                    &format!("{path}: {field} = {value}"),
                    optional && value.is_null(),
                )
                .await;
                if !(optional && value.is_null()) {
                    assert_eq!(
                        status,
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "{path} {field}={value}"
                    );
                }
                tried += 1;
            }
            // Missing required field (an optional one may be left out: that is a valid body).
            if !matches!(field.as_str(), "name" | "device_name") {
                let mut b = body.clone();
                b.as_object_mut().unwrap().remove(field);
                let status = check(
                    app.post_json(path, &b).await,
                    &format!("{path}: no {field}"),
                    false,
                )
                .await;
                assert_eq!(
                    status,
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "{path}: no {field}"
                );
                tried += 1;
            }
        }
        // Unknown fields are refused (422), whatever their name or value.
        for unknown in [
            "admin",
            "Email",
            "email ",
            "__proto__",
            "constructor",
            "user_id",
            "status",
            "",
        ] {
            let mut b = body.clone();
            b[unknown] = json!(true);
            let status = check(
                app.post_json(path, &b).await,
                &format!("{path}: unknown {unknown:?}"),
                false,
            )
            .await;
            assert_eq!(
                status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{path}: unknown {unknown:?}"
            );
            tried += 1;
        }
        // Duplicate members.
        let text = body.to_string();
        let first = body.as_object().unwrap().keys().next().unwrap();
        let dup = format!("{},\"{first}\":\"x\"}}", &text[..text.len() - 1]);
        let status = check(
            post_raw(&app, path, dup.into_bytes(), "application/json").await,
            &format!("{path}: duplicate {first}"),
            false,
        )
        .await;
        assert!(status.is_client_error());
        tried += 1;
    }
    // Only the one valid variant (`"name": null`) registered anyone.
    assert!(user_exists(&app, "typed@example.com").await);
    assert!(!user_exists(&app, "owner2@example.com").await);

    // 3. SQL-like, control-character and other hostile strings in every text field.
    let mut created = Vec::new();
    for (i, nasty) in NASTY.iter().enumerate() {
        // As the email: refused (not an email) or, when it forms a valid address, stored as is.
        let email = format!("{nasty}{i}@example.com");
        let status = check(
            app.register(&email, PASSWORD).await,
            &format!("register email {email:?}"),
            true,
        )
        .await;
        if status == StatusCode::CREATED {
            // Stored normalised (trimmed, NFC, lowercase).
            let stored = sessiond::domain::Email::parse(&email).unwrap();
            created.push(stored.as_str().to_owned());
        } else {
            assert!(
                !user_exists(&app, &email).await,
                "{email:?} was refused yet stored"
            );
        }
        // As the password (long enough): accepted and hashed, or refused — never 5xx.
        let password = format!("{nasty}-padding-{i}");
        let email = format!("pw{i}@example.com");
        let status = check(
            app.register(&email, &password).await,
            &format!("register password {password:?}"),
            true,
        )
        .await;
        if status == StatusCode::CREATED {
            // The exact password logs in: nothing was mangled on the way.
            let response = app.login(&email, &password).await;
            assert_eq!(
                response.status(),
                StatusCode::CREATED,
                "login with {password:?}"
            );
        }
        // As the display name: stored exactly (as NFC) or refused when it has control
        // characters or is blank.
        let email = format!("name{i}@example.com");
        let status = check(
            app.post_json(
                "/v1/auth/register",
                &json!({"email": email, "password": PASSWORD, "name": nasty}),
            )
            .await,
            &format!("register name {nasty:?}"),
            true,
        )
        .await;
        if status == StatusCode::CREATED {
            let user = app.store.find_user_by_email(&email).await.unwrap().unwrap();
            assert_eq!(user.name.as_deref(), Some(nasty.trim()), "name round trip");
            assert!(
                !nasty.trim().chars().any(char::is_control),
                "{nasty:?} has control characters yet was accepted"
            );
        } else {
            assert!(!user_exists(&app, &email).await);
        }
        // As the device name at login, the email and password of a login, and the refresh
        // token.
        let status = check(
            app.post_json(
                "/v1/auth/sessions",
                &json!({"email": "owner@example.com", "password": PASSWORD, "device_name": nasty}),
            )
            .await,
            &format!("login device_name {nasty:?}"),
            true,
        )
        .await;
        if status == StatusCode::CREATED {
            assert!(!nasty.trim().chars().any(char::is_control), "{nasty:?}");
            assert!(!nasty.trim().is_empty(), "blank device name accepted");
        }
        for (email, password) in [(*nasty, PASSWORD), ("owner@example.com", *nasty)] {
            let status = check(
                app.login(email, password).await,
                &format!("login {email:?} / {password:?}"),
                false,
            )
            .await;
            assert_eq!(status, StatusCode::UNAUTHORIZED);
        }
        let status = check(
            app.post_json("/v1/auth/tokens/refresh", &json!({"refresh_token": nasty}))
                .await,
            &format!("refresh {nasty:?}"),
            false,
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        // In the path and the query.
        let encoded: String = url::form_urlencoded::byte_serialize(nasty.as_bytes()).collect();
        let path_encoded = encoded.replace('+', "%20");
        for path in [
            format!("/v1/auth/sessions/{path_encoded}"),
            format!("/v1/auth/sessions?cursor={encoded}"),
            format!("/v1/auth/sessions?limit={encoded}"),
        ] {
            let method_is_delete = path.starts_with("/v1/auth/sessions/");
            let request = if method_is_delete {
                app.client.delete(app.url(&path))
            } else {
                app.client.get(app.url(&path))
            };
            let response = request.bearer_auth(&owner.access).send().await.unwrap();
            // `?cursor=` with an empty value, or a blank limit, may be read as absent.
            check(response, &path.to_string(), !method_is_delete).await;
            tried += 1;
        }
        // As an x-request-id: replaced when not well-formed, never echoed raw.
        if let Ok(value) = reqwest::header::HeaderValue::from_bytes(nasty.as_bytes()) {
            let response = app
                .client
                .get(app.url("/v1/nope"))
                .header("x-request-id", value)
                .send()
                .await
                .unwrap();
            let echoed = response.headers()["x-request-id"]
                .to_str()
                .unwrap()
                .to_owned();
            if echoed == *nasty {
                assert!(
                    nasty
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b)),
                    "x-request-id {nasty:?} echoed raw"
                );
            }
            check(response, &format!("x-request-id {nasty:?}"), false).await;
            tried += 1;
        }
        tried += 7;
    }
    // The stored users are exactly the accepted ones (SQL-like text was data, not SQL).
    for email in &created {
        assert!(user_exists(&app, email).await, "{email:?}");
    }

    // 4. Emails with Unicode: normalised (trim, NFC, lowercase) so equivalent spellings are one
    // account, and any well-formed one registers and logs in.
    for (first, equivalent) in [
        ("Ünïcödé@Example.COM", "ünïcödé@example.com"),
        ("e\u{301}clair@example.com", "\u{e9}clair@example.com"),
        ("ÅSA@EXAMPLE.COM", "åsa@example.com"),
        ("用户@例子.广告", "  用户@例子.广告  "),
        ("δοκιμή@παράδειγμα.δοκιμή", "ΔΟΚΙΜΉ@ΠΑΡΆΔΕΙΓΜΑ.ΔΟΚΙΜΉ"),
        ("пример@пример.рф", "ПРИМЕР@ПРИМЕР.РФ"),
    ] {
        let status = check(
            app.register(first, PASSWORD).await,
            &format!("register {first:?}"),
            true,
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{first:?}");
        let status = check(
            app.register(equivalent, PASSWORD).await,
            &format!("register {equivalent:?} again"),
            false,
        )
        .await;
        assert_eq!(
            status,
            StatusCode::CONFLICT,
            "{equivalent:?} is the same account as {first:?}"
        );
        let response = app.login(equivalent, PASSWORD).await;
        assert_eq!(
            response.status(),
            StatusCode::CREATED,
            "login as {equivalent:?}"
        );
        tried += 3;
    }
    for bad in [
        "@example.com",
        "ada@",
        "ada",
        "a@b@c",
        "ada @example.com",
        "ada@exa mple.com",
        "\u{0}@example.com",
        "ada@example.com\u{0}",
    ] {
        let status = check(
            app.register(bad, PASSWORD).await,
            &format!("register {bad:?}"),
            false,
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad:?}");
        assert!(!user_exists(&app, bad).await);
        tried += 1;
    }

    // Headers that are not what they should be.
    for auth in [
        "Bearer",
        "Bearer ",
        "Basic b3duZXI6cHc=",
        "bearer\tx",
        "Token x",
        &format!("Bearer {} extra", owner.access),
    ] {
        let response = app
            .get_with_header("/v1/auth/me", "authorization", auth)
            .await;
        assert_eq!(
            check(response, &format!("authorization {auth:?}"), false).await,
            StatusCode::UNAUTHORIZED
        );
        tried += 1;
    }

    // The owner's session was not touched by any of it (logins above added sessions, which
    // are counted, but none was revoked or rotated).
    let owner_after = app.stored_session(&owner.session_id).await;
    assert_eq!(owner_after.generation, owner_before.generation);
    assert_eq!(owner_after.status, owner_before.status);
    assert!(session_count(&app, &owner.access).await >= sessions_before);
    eprintln!("input_fuzzing: {tried} hostile requests, all 4xx (or accepted as valid data)");
    app.stop().await;
}

/// A small deterministic PRNG (xorshift64*), so a failing case can be replayed from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Breaks `body` in one to three random ways.
fn mutate(rng: &mut Rng, body: &[u8]) -> Vec<u8> {
    const INSERTS: &[&[u8]] = &[
        b"\"",
        b"\\",
        b"{",
        b"}",
        b"[",
        b"]",
        b":",
        b",",
        b"null",
        b"1e999",
        b"-",
        b"\x00",
        b"\xff",
        b"\xc3",
        b"\xe2\x80\xae",
        b"' OR 1=1 --",
        b"\\u0000",
        b"\\ud800",
        b"true",
        b"\"extra\":1,",
        b"99999999999999999999999999",
    ];
    let mut out = body.to_vec();
    for _ in 0..=rng.below(3) {
        if out.is_empty() {
            out.push(b'{');
        }
        let at = rng.below(out.len() + 1);
        match rng.below(6) {
            0 => {
                // Flip a byte.
                if at < out.len() {
                    out[at] ^= 1 << rng.below(8);
                }
            }
            1 => {
                let insert = INSERTS[rng.below(INSERTS.len())];
                out.splice(at..at, insert.iter().copied());
            }
            2 => {
                let end = (at + 1 + rng.below(8)).min(out.len());
                if at < end {
                    out.drain(at..end);
                }
            }
            3 => {
                // Duplicate a slice.
                let end = (at + 1 + rng.below(16)).min(out.len());
                if at < end {
                    let slice = out[at..end].to_vec();
                    out.splice(end..end, slice);
                }
            }
            4 => out.truncate(at),
            _ => {
                // A random byte anywhere.
                out.insert(at, (rng.next() & 0xff) as u8);
            }
        }
    }
    out
}

/// Seeded mutation fuzzing of every JSON endpoint: a 2xx only for bodies that still parse as
/// the valid request, a 4xx with the error body otherwise, never a 5xx. The owner's session
/// is never touched (the refresh base token has a real session id but a guessed secret).
async fn mutated_bodies_never_get_a_5xx(backend: Backend) {
    const PER_ENDPOINT: usize = 150;
    let app = spawn_app_with(backend, &[("SESSIOND_RATE_LIMITS", "off")]).await;
    let owner = app.signed_in_user("fuzz-owner@example.com").await;
    let real = sessiond_actors::refresh_token::RefreshToken::parse(&owner.refresh).unwrap();
    let guessed = sessiond_actors::refresh_token::RefreshToken {
        session_id: real.session_id,
        secret: sessiond_actors::refresh_token::RefreshSecret::random(),
    }
    .encode();
    let bases: [(&str, Value); 3] = [
        (
            "/v1/auth/register",
            json!({"email": "fuzz@example.com", "password": PASSWORD, "name": "Fuzz"}),
        ),
        (
            "/v1/auth/sessions",
            json!({"email": "fuzz-owner@example.com", "password": PASSWORD, "device_name": "fuzzer"}),
        ),
        ("/v1/auth/tokens/refresh", json!({"refresh_token": guessed})),
    ];
    let seed = 0x5e55_10d5_eed5_u64;
    let mut rng = Rng(seed);
    let mut tried = 0;
    let mut accepted = 0;
    for (path, base) in &bases {
        let base = base.to_string().into_bytes();
        for i in 0..PER_ENDPOINT {
            let body = mutate(&mut rng, &base);
            let status = check(
                post_raw(&app, path, body.clone(), "application/json").await,
                &format!(
                    "{path} mutation {i} (seed {seed:#x}): {:?}",
                    String::from_utf8_lossy(&body)
                ),
                *path != "/v1/auth/tokens/refresh",
            )
            .await;
            if status.is_success() {
                accepted += 1;
            }
            tried += 1;
        }
    }
    let after = app.stored_session(&owner.session_id).await;
    assert_eq!(after.generation, 0, "the owner's session was not rotated");
    assert_eq!(after.status, sessiond_actors::model::SessionStatus::Active);
    assert_eq!(app.refresh(&owner.refresh).await.status(), StatusCode::OK);
    eprintln!("input_fuzzing: {tried} mutated bodies, {accepted} still valid, none 5xx");
    app.stop().await;
}

both_backends!(
    malformed_and_hostile_bodies_get_4xx_and_change_nothing,
    mutated_bodies_never_get_a_5xx,
);
