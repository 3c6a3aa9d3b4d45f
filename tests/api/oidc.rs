//! sessiond as an OpenID Connect provider over HTTP, on both stores: UserInfo (a live grant's
//! OAuth access token with `openid` only; RFC 6750 errors), discovery, refresh-token
//! introspection, ID tokens on refresh, per-application CORS, and grants among the user's
//! sessions. Grants are opened through the session engine (as the authorization-code exchange
//! does) and their tokens come from the real `/oauth2/token` refresh grant.

use std::time::Duration;

use reqwest::{Response, StatusCode};
use serde_json::Value;
use sessiond::crypto::oauth_tokens::AccessGrant;
use sessiond_actors::ids::UserId;

use crate::both_backends;
use crate::helpers::{TestApp, spawn_app_with};
use crate::oauth_token::{Client, post_form, register};

pub(crate) const ADA: &str = "ada@example.com";
const ALL_SCOPES: &[&str] = &["openid", "profile", "email", "offline_access", "api"];

/// A grant's tokens from the token endpoint.
pub(crate) struct GrantTokens {
    pub access: String,
    pub refresh: String,
    /// The whole token response.
    pub body: Value,
}

/// A signed-in Ada, her user id and a confidential application allowed [`ALL_SCOPES`].
pub(crate) async fn ada_and_client(app: &TestApp) -> (crate::helpers::Tokens, UserId, Client) {
    let ada = app.signed_in_user(ADA).await;
    let user = app.stored_session(&ada.session_id).await.user_id;
    let client = register(app, &ada.access, "confidential", ALL_SCOPES).await;
    (ada, user, client)
}

/// Opens a grant of `client_id` for `user` with `scope` through the session engine, as the
/// authorization-code exchange does (aal 1, password).
pub(crate) async fn open_grant(
    app: &TestApp,
    user: UserId,
    client_id: &str,
    scope: &str,
) -> (
    sessiond_actors::model::SessionRecord,
    sessiond_actors::refresh_token::RefreshToken,
) {
    app.sessions
        .create(crate::oauth_grants::grant_session(user, client_id, scope))
        .await
        .unwrap()
}

/// Opens a grant of `client` for `user` with `scope` through the session engine and redeems its
/// first refresh token at `/oauth2/token` with `form` extras (e.g. a narrower `scope`).
pub(crate) async fn grant(
    app: &TestApp,
    user: UserId,
    client: &Client,
    scope: &str,
    extra: &[(&str, &str)],
) -> GrantTokens {
    let (_, refresh) = open_grant(app, user, &client.id, scope).await;
    let refresh = refresh.encode();
    let mut form = vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh.as_str()),
    ];
    form.extend_from_slice(extra);
    let response = post_form(
        app,
        "/oauth2/token",
        Some((&client.id, &client.secret)),
        &form,
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    GrantTokens {
        access: body["access_token"].as_str().unwrap().to_owned(),
        refresh: body["refresh_token"].as_str().unwrap().to_owned(),
        body,
    }
}

/// sessiond with OpenID Connect on: an operator's RSA ID-token key (on PostgreSQL none is
/// generated), and Ada allowed to register applications. The key's directory lives as long as
/// the returned guard.
pub(crate) async fn oidc_app(backend: crate::helpers::Backend) -> (TestApp, tempfile::TempDir) {
    use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
    let dir = tempfile::tempdir().unwrap();
    let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let private = AsDer::<Pkcs8V1Der>::as_der(&pair).unwrap();
    let path = dir.path().join("id-token.pem");
    std::fs::write(
        &path,
        pem::encode(&pem::Pem::new("PRIVATE KEY", private.as_ref())),
    )
    .unwrap();
    let app = spawn_app_with(
        backend,
        &[
            ("SESSIOND_APP_CREATORS", ADA),
            ("SESSIOND_ID_TOKEN_KEY_FILE", path.to_str().unwrap()),
        ],
    )
    .await;
    (app, dir)
}

async fn userinfo(app: &TestApp, token: &str) -> Response {
    app.get_authed("/oauth2/userinfo", token).await
}

/// Asserts an RFC 6750 refusal: status, and the error code in `WWW-Authenticate`.
async fn bearer_refusal(response: Response, status: StatusCode, error: &str) {
    assert_eq!(response.status(), status);
    let challenge = response.headers()["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.starts_with("Bearer realm=\"sessiond\""),
        "{challenge}"
    );
    assert!(
        challenge.contains(&format!("error=\"{error}\"")),
        "{challenge}"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], error);
}

async fn userinfo_reads_claims_by_scope_for_live_grants_only(backend: crate::helpers::Backend) {
    let (app, _key) = oidc_app(backend).await;
    let (ada, user, client) = ada_and_client(&app).await;

    // openid + email: sub, email, email_verified; no name (the account has none).
    let full = grant(
        &app,
        user,
        &client,
        "openid email profile offline_access",
        &[],
    )
    .await;
    let response = userinfo(&app, &full.access).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let claims: Value = response.json().await.unwrap();
    assert_eq!(claims["sub"], user.to_string());
    assert_eq!(claims["email"], ADA);
    assert_eq!(claims["email_verified"], false);
    assert!(claims.get("name").is_none(), "{claims}");
    // POST with the token in the form body (RFC 6750 §2.2) answers the same.
    let response = post_form(
        &app,
        "/oauth2/userinfo",
        None,
        &[("access_token", &full.access)],
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<Value>().await.unwrap(), claims);
    // ...but not both ways at once.
    let response = app
        .client
        .post(app.url("/oauth2/userinfo"))
        .bearer_auth(&full.access)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("access_token={}", full.access))
        .send()
        .await
        .unwrap();
    bearer_refusal(response, StatusCode::BAD_REQUEST, "invalid_request").await;

    // openid alone: sub only.
    let bare = grant(&app, user, &client, "openid offline_access", &[]).await;
    let claims: Value = userinfo(&app, &bare.access).await.json().await.unwrap();
    assert_eq!(claims.as_object().unwrap().len(), 1, "{claims}");
    // A refresh that narrows the scope narrows the claims too.
    let narrowed = grant(
        &app,
        user,
        &client,
        "openid email offline_access",
        &[("scope", "openid")],
    )
    .await;
    let claims: Value = userinfo(&app, &narrowed.access).await.json().await.unwrap();
    assert!(claims.get("email").is_none(), "{claims}");

    // Without openid: 403 insufficient_scope.
    let no_openid = grant(&app, user, &client, "email offline_access", &[]).await;
    let response = userinfo(&app, &no_openid.access).await;
    assert!(
        response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("scope=\"openid\"")
    );
    bearer_refusal(response, StatusCode::FORBIDDEN, "insufficient_scope").await;

    // No token: 401 with a bare challenge.
    let response = app.get("/oauth2/userinfo").await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.headers()["www-authenticate"],
        "Bearer realm=\"sessiond\""
    );
    // A first-party access token (another audience), a client-credentials token (no user), a
    // refresh token and garbage: invalid_token.
    let response = post_form(
        &app,
        "/oauth2/token",
        Some((&client.id, &client.secret)),
        &[("grant_type", "client_credentials"), ("scope", "openid")],
    )
    .await;
    let service: Value = response.json().await.unwrap();
    for token in [
        ada.access.as_str(),
        service["access_token"].as_str().unwrap(),
        full.refresh.as_str(),
        "not-a-token",
    ] {
        bearer_refusal(
            userinfo(&app, token).await,
            StatusCode::UNAUTHORIZED,
            "invalid_token",
        )
        .await;
    }
    // An expired access token of a live grant, signed with the server's own key.
    let oauth = app.oauth_tokens(Duration::from_secs(60));
    let claims: Value = {
        let payload = full.access.split('.').nth(1).unwrap();
        use base64::Engine;
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap(),
        )
        .unwrap()
    };
    let (expired, _) = oauth
        .issue_access(
            &AccessGrant {
                subject: &user.to_string(),
                client_id: &client.id,
                scope: "openid email",
                session: claims["sid"].as_str(),
                secret_fingerprint: None,
                not_after: None,
            },
            chrono::Utc::now() - chrono::Duration::hours(1),
        )
        .unwrap();
    bearer_refusal(
        userinfo(&app, &expired).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;

    // Revoking the grant (RFC 7009) makes its access token useless at once.
    let response = post_form(
        &app,
        "/oauth2/revoke",
        Some((&client.id, &client.secret)),
        &[("token", &full.refresh)],
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    bearer_refusal(
        userinfo(&app, &full.access).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
    // Another grant of the same user is untouched.
    assert_eq!(userinfo(&app, &bare.access).await.status(), StatusCode::OK);
    app.stop().await;
}

async fn introspect_as(app: &TestApp, caller: &Client, token: &str, hint: Option<&str>) -> Value {
    let mut form = vec![
        ("token", token),
        ("client_id", caller.id.as_str()),
        ("client_secret", caller.secret.as_str()),
    ];
    if let Some(hint) = hint {
        form.push(("token_type_hint", hint));
    }
    let response = post_form(app, "/oauth2/introspect", None, &form).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

async fn discovery_documents_describe_what_is_served(backend: crate::helpers::Backend) {
    let (app, _key) = oidc_app(backend).await;
    let oidc = app.get_json("/.well-known/openid-configuration").await;
    let oauth = app
        .get_json("/.well-known/oauth-authorization-server")
        .await;
    assert_eq!(oidc, oauth, "one description of one server");
    // The issuer is the tokens' `iss`.
    let (_, user, client) = ada_and_client(&app).await;
    let tokens = grant(&app, user, &client, "openid offline_access", &[]).await;
    let active = introspect_as(&app, &client, &tokens.access, None).await;
    assert_eq!(oidc["issuer"], active["iss"]);
    let issuer = oidc["issuer"].as_str().unwrap();
    for (field, path) in [
        ("authorization_endpoint", "/oauth2/authorize"),
        ("token_endpoint", "/oauth2/token"),
        ("userinfo_endpoint", "/oauth2/userinfo"),
        ("introspection_endpoint", "/oauth2/introspect"),
        ("revocation_endpoint", "/oauth2/revoke"),
        ("jwks_uri", "/.well-known/jwks.json"),
    ] {
        assert_eq!(oidc[field], format!("{issuer}{path}"), "{field}");
    }
    assert_eq!(oidc["authorization_response_iss_parameter_supported"], true);
    assert_eq!(
        oidc["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(
        oidc["response_types_supported"],
        serde_json::json!(["code"])
    );
    assert_eq!(
        oidc["id_token_signing_alg_values_supported"],
        serde_json::json!(["RS256"])
    );
    assert_eq!(
        oidc["token_endpoint_auth_methods_supported"],
        serde_json::json!(["client_secret_basic", "client_secret_post", "none"])
    );
    for scope in ["openid", "profile", "email", "offline_access"] {
        assert!(
            oidc["scopes_supported"]
                .as_array()
                .unwrap()
                .contains(&Value::from(scope)),
            "{scope}"
        );
    }
    app.stop().await;
}

async fn refresh_tokens_introspect_from_the_live_grant(backend: crate::helpers::Backend) {
    let (app, _key) = oidc_app(backend).await;
    let (ada, user, client) = ada_and_client(&app).await;
    let other = register(&app, &ada.access, "confidential", &["openid"]).await;
    let spa = register(&app, &ada.access, "public", &["openid"]).await;
    let first = grant(&app, user, &client, "openid offline_access", &[]).await;

    // The current refresh token is active, whatever the hint says.
    for hint in [
        None,
        Some("refresh_token"),
        Some("access_token"),
        Some("bogus"),
    ] {
        let active = introspect_as(&app, &client, &first.refresh, hint).await;
        assert_eq!(active["active"], true, "{hint:?}: {active}");
        assert_eq!(active["token_type"], "refresh_token");
        assert_eq!(active["client_id"], client.id);
        assert_eq!(active["sub"], user.to_string());
        assert_eq!(active["scope"], "openid offline_access");
        // ...and an access token too, with either hint.
        let access = introspect_as(&app, &client, &first.access, hint).await;
        assert_eq!(access["active"], true, "{hint:?}");
        assert_eq!(access["token_type"], "Bearer");
    }
    // Another client sees nothing; a public client may not introspect at all.
    assert_eq!(
        introspect_as(&app, &other, &first.refresh, None).await,
        serde_json::json!({"active": false})
    );
    let response = post_form(
        &app,
        "/oauth2/introspect",
        None,
        &[("token", &first.refresh), ("client_id", &spa.id)],
    )
    .await;
    crate::oauth_token::oauth_error(response, StatusCode::UNAUTHORIZED, "invalid_client").await;
    // A first-party refresh token is never active for a client.
    assert_eq!(
        introspect_as(&app, &client, &ada.refresh, Some("refresh_token")).await["active"],
        false
    );

    // After a rotation the spent parent is inactive and the child active.
    let response = post_form(
        &app,
        "/oauth2/token",
        Some((&client.id, &client.secret)),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &first.refresh),
        ],
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let rotated: Value = response.json().await.unwrap();
    let child = rotated["refresh_token"].as_str().unwrap();
    assert!(
        rotated.get("id_token").is_none(),
        "no ID token unless asked by scope"
    );
    assert_eq!(
        introspect_as(&app, &client, &first.refresh, None).await["active"],
        false
    );
    assert_eq!(
        introspect_as(&app, &client, child, None).await["active"],
        true
    );

    // Revoking the grant (by its access token) turns every token of it inactive at once.
    let response = post_form(
        &app,
        "/oauth2/revoke",
        Some((&client.id, &client.secret)),
        &[("token", &first.access)],
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        introspect_as(&app, &client, child, None).await["active"],
        false
    );
    let access = rotated["access_token"].as_str().unwrap();
    assert_eq!(
        introspect_as(&app, &client, access, None).await["active"],
        false
    );
    app.stop().await;
}

async fn a_refresh_asking_for_openid_gets_a_verifiable_id_token(backend: crate::helpers::Backend) {
    let (app, _key) = oidc_app(backend).await;
    let (_, user, client) = ada_and_client(&app).await;
    let tokens = grant(
        &app,
        user,
        &client,
        "openid email offline_access",
        &[("scope", "openid email")],
    )
    .await;
    let id_token = tokens.body["id_token"]
        .as_str()
        .expect("an ID token")
        .to_owned();
    // Verified with nothing but the published JWKS and the discovery document's issuer.
    let jwks: jsonwebtoken::jwk::JwkSet = app
        .get("/.well-known/jwks.json")
        .await
        .json()
        .await
        .unwrap();
    let issuer = app.get_json("/.well-known/openid-configuration").await;
    let header = jsonwebtoken::decode_header(&id_token).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::RS256);
    let jwk = jwks.find(header.kid.as_deref().unwrap()).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_issuer(&[issuer["issuer"].as_str().unwrap()]);
    validation.set_audience(&[&client.id]);
    let claims: Value = jsonwebtoken::decode(
        &id_token,
        &jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap(),
        &validation,
    )
    .unwrap()
    .claims;
    assert_eq!(claims["sub"], user.to_string());
    assert_eq!(claims["acr"], "aal1");
    assert_eq!(claims["amr"], serde_json::json!(["pwd"]));
    assert_eq!(claims["email"], ADA);
    assert!(claims.get("nonce").is_none());
    assert_eq!(
        claims["at_hash"],
        sessiond::crypto::oauth_tokens::at_hash(&tokens.access)
    );
    // A refresh without `scope` (or without openid in it) gets none.
    let plain = grant(&app, user, &client, "openid email offline_access", &[]).await;
    assert!(plain.body.get("id_token").is_none());
    let narrowed = grant(
        &app,
        user,
        &client,
        "openid email offline_access",
        &[("scope", "email")],
    )
    .await;
    assert!(narrowed.body.get("id_token").is_none());
    app.stop().await;
}

/// The grant's refresh token is inactive and its access token reads no profile.
async fn assert_grant_ended(app: &TestApp, client: &Client, tokens: &GrantTokens) {
    let refresh = introspect_as(app, client, &tokens.refresh, None).await;
    assert_eq!(refresh["active"], false);
    let response = userinfo(app, &tokens.access).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

async fn grants_are_listed_with_their_application_and_end_with_the_users_sessions(
    backend: crate::helpers::Backend,
) {
    let (app, _key) = oidc_app(backend).await;
    let (ada, user, client) = ada_and_client(&app).await;
    let first = grant(&app, user, &client, "openid offline_access", &[]).await;
    let sid = {
        let active = introspect_as(&app, &client, &first.refresh, None).await;
        active["sid"].as_str().unwrap().to_owned()
    };
    let list: Value = app.get_authed_json("/v1/auth/sessions", &ada.access).await;
    let sessions = list["sessions"].as_array().unwrap();
    let marked = sessions
        .iter()
        .find(|s| s["id"] == sid.as_str())
        .expect("the grant is listed");
    assert_eq!(marked["application"]["client_id"], client.id);
    assert_eq!(marked["application"]["name"], "Svc");
    let own = sessions.iter().find(|s| s["current"] == true).unwrap();
    assert!(
        own.get("application").is_none(),
        "a login is not a grant: {own}"
    );

    // "Sign out everywhere else" ends the user's grants too: an application the user let in is
    // a credential like any device (decided in issue #12; README "Grants are sessions").
    let response = app
        .client
        .delete(app.url("/v1/auth/sessions"))
        .bearer_auth(&ada.access)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    assert_grant_ended(&app, &client, &first).await;

    // A password change ends them as well.
    let second = grant(&app, user, &client, "openid offline_access", &[]).await;
    let response = app
        .client
        .post(app.url("/v1/auth/password"))
        .bearer_auth(&ada.access)
        .json(
            &serde_json::json!({"current_password": "correct horse battery",
                                  "new_password": "a brand new passphrase"}),
        )
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    assert_grant_ended(&app, &client, &second).await;
    app.stop().await;
}

/// The OAuth endpoints a browser application calls answer CORS for the origins registered
/// applications allow, preflight included, and for no other origin; other paths do not take
/// the applications' origins.
async fn oauth_endpoints_allow_the_applications_origins_only(backend: crate::helpers::Backend) {
    let (app, _key) = oidc_app(backend).await;
    let ada = app.signed_in_user(ADA).await;
    let created = app
        .client
        .post(app.url("/v1/applications"))
        .bearer_auth(&ada.access)
        .json(&serde_json::json!({"name": "Spa", "client_type": "public",
            "redirect_uris": ["https://spa.example/cb"], "allowed_origins": ["https://spa.example"],
            "allowed_scopes": ["openid"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let preflight = |path: &'static str, origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, app.url(path))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
    };
    let allowed = |r: &Response| {
        r.headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap().to_owned())
    };
    for path in [
        "/oauth2/token",
        "/oauth2/userinfo",
        "/oauth2/revoke",
        "/oauth2/introspect",
    ] {
        let ok = preflight(path, "https://spa.example").await.unwrap();
        assert_eq!(
            allowed(&ok).as_deref(),
            Some("https://spa.example"),
            "{path}"
        );
        assert!(
            ok.headers()
                .get("access-control-allow-credentials")
                .is_none()
        );
        let foreign = preflight(path, "https://evil.example").await.unwrap();
        assert_eq!(allowed(&foreign), None, "{path}");
    }
    // The first-party API does not take an application's origin.
    let me = preflight("/v1/auth/me", "https://spa.example")
        .await
        .unwrap();
    assert_eq!(allowed(&me), None);
    // An actual request: the answer (an RFC 6749 error here) carries the header.
    let token = app
        .client
        .post(app.url("/oauth2/token"))
        .header("origin", "https://spa.example")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=refresh_token&refresh_token=x")
        .send()
        .await
        .unwrap();
    assert_eq!(allowed(&token).as_deref(), Some("https://spa.example"));
    app.stop().await;
}

both_backends!(
    oauth_endpoints_allow_the_applications_origins_only,
    grants_are_listed_with_their_application_and_end_with_the_users_sessions,
    userinfo_reads_claims_by_scope_for_live_grants_only,
    discovery_documents_describe_what_is_served,
    refresh_tokens_introspect_from_the_live_grant,
    a_refresh_asking_for_openid_gets_a_verifiable_id_token,
);
