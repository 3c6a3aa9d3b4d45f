//! Forged and broken access tokens: every one is answered 401 `invalid_token` with the error
//! body, none is accepted. A correctly forged control token (signed with the server's own key)
//! is accepted, which proves the forging in this file works and that each refusal comes from
//! the one thing each case breaks.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{Backend, TestApp, Tokens, assert_error, spawn_app_with, write_keys};

/// A server whose signing key this test holds.
struct Target {
    app: TestApp,
    alg: Algorithm,
    key: EncodingKey,
    /// The server's `kid` (from its JWKS).
    kid: String,
    /// Its public key as a JWKS entry.
    jwk: Value,
    /// The public key as PEM (SPKI), what an attacker would find published.
    public_pem: String,
    _keys: tempfile::TempDir,
}

fn b64(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

/// `header.payload.signature` from raw JSON texts, signed with `key` under `alg` (so duplicate
/// members and odd spellings survive exactly as written).
fn sign_raw(header: &str, payload: &str, key: &EncodingKey, alg: Algorithm) -> String {
    let signed = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
    let signature = jsonwebtoken::crypto::sign(signed.as_bytes(), key, alg).unwrap();
    format!("{signed}.{signature}")
}

fn sign(header: &Value, claims: &Value, key: &EncodingKey, alg: Algorithm) -> String {
    sign_raw(&header.to_string(), &claims.to_string(), key, alg)
}

pub(crate) fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn ed25519_public_pem(private_pem: &str) -> (String, Vec<u8>) {
    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
    let p = pem::parse(private_pem).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(p.contents()).unwrap();
    let raw = pair.public_key().as_ref().to_vec();
    let mut spki = vec![
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    spki.extend_from_slice(&raw);
    (pem::encode(&pem::Pem::new("PUBLIC KEY", spki)), raw)
}

/// An RSA-2048 private key (PKCS#8 PEM) and its public key (SPKI PEM).
fn rsa_keys() -> (String, String) {
    use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
    use aws_lc_rs::signature::KeyPair;
    let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let private = AsDer::<Pkcs8V1Der>::as_der(&pair).unwrap();
    let public = AsDer::<PublicKeyX509Der>::as_der(pair.public_key()).unwrap();
    (
        pem::encode(&pem::Pem::new("PRIVATE KEY", private.as_ref())),
        pem::encode(&pem::Pem::new("PUBLIC KEY", public.as_ref())),
    )
}

async fn target(backend: Backend, alg: Algorithm) -> Target {
    let dir = tempfile::tempdir().unwrap();
    let (key_file, private_pem, public_pem, key) = match alg {
        Algorithm::EdDSA => {
            let (path, _) = write_keys(dir.path());
            let private_pem = std::fs::read_to_string(&path).unwrap();
            let (public_pem, _) = ed25519_public_pem(&private_pem);
            let key = EncodingKey::from_ed_pem(private_pem.as_bytes()).unwrap();
            (path, private_pem, public_pem, key)
        }
        Algorithm::RS256 => {
            let (private_pem, public_pem) = rsa_keys();
            let path = dir.path().join("rsa.pem");
            std::fs::write(&path, &private_pem).unwrap();
            let key = EncodingKey::from_rsa_pem(private_pem.as_bytes()).unwrap();
            (path.display().to_string(), private_pem, public_pem, key)
        }
        other => panic!("no target for {other:?}"),
    };
    let _ = private_pem;
    let alg_name = match alg {
        Algorithm::EdDSA => "EdDSA",
        _ => "RS256",
    };
    // EdDSA: room for 100 KB tokens; RS256: the default limit.
    let header_limit = if alg == Algorithm::EdDSA {
        (256 * 1024).to_string()
    } else {
        (16 * 1024).to_string()
    };
    let app = spawn_app_with(
        backend,
        &[
            ("SESSIOND_SIGNING_KEY_FILE", key_file.as_str()),
            ("SESSIOND_SIGNING_ALG", alg_name),
            ("SESSIOND_RATE_LIMITS", "off"),
            // 100 KB tokens must reach the verifier (the default header limit answers 431
            // before it; see `rsa_algorithm_confusion_is_refused`).
            ("SESSIOND_MAX_HEADER_BYTES", &header_limit),
        ],
    )
    .await;
    let jwks: Value = app.get_json("/.well-known/jwks.json").await;
    let jwk = jwks["keys"][0].clone();
    let kid = jwk["kid"].as_str().unwrap().to_owned();
    Target {
        app,
        alg,
        key,
        kid,
        jwk,
        public_pem,
        _keys: dir,
    }
}

/// Sends `token` to `/v1/auth/me` and expects the documented 401.
async fn assert_refused(app: &TestApp, case: &str, token: &str) {
    let response = app
        .get_with_header("/v1/auth/me", "authorization", format!("Bearer {token}"))
        .await;
    assert_eq!(
        response.status(),
        StatusCode::UNAUTHORIZED,
        "case {case:?} was not refused"
    );
    assert!(
        response.headers().contains_key("www-authenticate"),
        "{case}: WWW-Authenticate"
    );
    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_token").await;
}

/// Every attack against an EdDSA server (the default). Returns the number of cases tried.
async fn forged_access_tokens_are_refused(backend: Backend) {
    let t = target(backend, Algorithm::EdDSA).await;
    let app = &t.app;
    let victim = app.signed_in_user("victim@example.com").await;
    let other = app.signed_in_user("other@example.com").await;
    let good = claims_of(&victim.access);
    let header = json!({"alg": "EdDSA", "typ": "at+jwt", "kid": t.kid});

    // Control: a token forged with the server's own key and the same claims is accepted, so
    // every refusal below is caused by what that case changes.
    let control = sign(&header, &good, &t.key, t.alg);
    let response = app.get_authed("/v1/auth/me", &control).await;
    assert_eq!(response.status(), StatusCode::OK, "control token");

    let with = |patch: Value| {
        let mut claims = good.clone();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                claims.as_object_mut().unwrap().remove(k);
            } else {
                claims[k] = v.clone();
            }
        }
        claims
    };
    let header_with = |patch: Value| {
        let mut h = header.clone();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                h.as_object_mut().unwrap().remove(k);
            } else {
                h[k] = v.clone();
            }
        }
        h
    };
    let signed = |h: &Value, c: &Value| sign(h, c, &t.key, t.alg);
    let unsigned = |h: &Value, c: &Value, sig: &str| {
        format!(
            "{}.{}.{sig}",
            b64(h.to_string().as_bytes()),
            b64(c.to_string().as_bytes())
        )
    };

    let mut cases: Vec<(String, String)> = Vec::new();
    let mut case = |name: &str, token: String| cases.push((name.to_owned(), token));

    // alg: none, in its spellings, with and without a signature.
    for none in ["none", "None", "NONE", "nOnE"] {
        let h = header_with(json!({"alg": none}));
        case(
            &format!("alg {none}, empty signature"),
            unsigned(&h, &good, ""),
        );
        case(
            &format!("alg {none}, the real signature kept"),
            unsigned(&h, &good, control.rsplit('.').next().unwrap()),
        );
    }
    case(
        "alg none, no signature segment",
        format!(
            "{}.{}",
            b64(header_with(json!({"alg": "none"})).to_string().as_bytes()),
            b64(good.to_string().as_bytes())
        ),
    );

    // Algorithm confusion: HS256/384/512 keyed with the published public key in every form
    // an attacker could pick.
    let (public_pem, raw_public) = ed25519_public_pem(&{
        // The PEM written by write_keys is in the temp dir; reread it.
        std::fs::read_to_string(t._keys.path().join("signing.pem")).unwrap()
    });
    assert_eq!(public_pem, t.public_pem);
    let x = t.jwk["x"].as_str().unwrap().to_owned();
    for (label, secret) in [
        ("raw public key", raw_public.clone()),
        ("public key PEM", public_pem.as_bytes().to_vec()),
        ("JWK x", x.as_bytes().to_vec()),
        ("JWKS JSON", t.jwk.to_string().into_bytes()),
    ] {
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let h = header_with(json!({"alg": format!("{alg:?}")}));
            case(
                &format!("{alg:?} keyed with the {label}"),
                sign(&h, &good, &EncodingKey::from_secret(&secret), alg),
            );
        }
    }
    // Our own signature but a header claiming another algorithm.
    for alg in ["HS256", "RS256", "ES256", "PS256", "Ed25519", "eddsa", ""] {
        let h = header_with(json!({"alg": alg}));
        case(
            &format!("alg {alg:?} over an EdDSA signature"),
            signed(&h, &good),
        );
    }

    // Keys: unknown kid, no kid, a stranger's key under our kid or its own, an embedded JWK
    // or a key URL pointing at the attacker's key.
    let stranger_dir = tempfile::tempdir().unwrap();
    let (stranger_path, _) = write_keys(stranger_dir.path());
    let stranger_pem = std::fs::read_to_string(Path::new(&stranger_path)).unwrap();
    let stranger = EncodingKey::from_ed_pem(stranger_pem.as_bytes()).unwrap();
    let (_, stranger_raw) = ed25519_public_pem(&stranger_pem);
    for kid in [
        json!("unknown-kid"),
        json!(""),
        json!(format!("{}x", t.kid)),
        json!(t.kid.to_uppercase()),
        json!(["a", t.kid]),
        json!(12),
        Value::Null,
    ] {
        let h = header_with(json!({"kid": kid}));
        let token = if kid.is_null() {
            let mut h = header.clone();
            h.as_object_mut().unwrap().remove("kid");
            signed(&h, &good)
        } else {
            signed(&h, &good)
        };
        case(&format!("kid {kid}"), token);
    }
    case(
        "stranger's key under our kid",
        sign(&header, &good, &stranger, Algorithm::EdDSA),
    );
    let attacker_jwk =
        json!({"kty": "OKP", "crv": "Ed25519", "x": b64(&stranger_raw), "kid": "evil"});
    case(
        "embedded jwk of the attacker, our kid",
        sign(
            &header_with(json!({"jwk": attacker_jwk})),
            &good,
            &stranger,
            Algorithm::EdDSA,
        ),
    );
    case(
        "embedded jwk of the attacker, its kid",
        sign(
            &header_with(json!({"jwk": attacker_jwk, "kid": "evil"})),
            &good,
            &stranger,
            Algorithm::EdDSA,
        ),
    );
    case(
        "jku pointing at the attacker",
        sign(
            &header_with(json!({"jku": "http://127.0.0.1:9/jwks.json", "kid": "evil"})),
            &good,
            &stranger,
            Algorithm::EdDSA,
        ),
    );

    // Time: expired (past the leeway), not yet valid, absurd values.
    let n = now();
    case(
        "expired a minute ago",
        signed(&header, &with(json!({"exp": n - 60, "iat": n - 960}))),
    );
    case(
        "expired long ago",
        signed(&header, &with(json!({"exp": 1_000_000, "iat": 999_000}))),
    );
    case("exp 0", signed(&header, &with(json!({"exp": 0}))));
    case("exp negative", signed(&header, &with(json!({"exp": -1}))));
    case("no exp", signed(&header, &with(json!({"exp": null}))));
    case(
        "exp as a string",
        signed(&header, &with(json!({"exp": (n + 600).to_string()}))),
    );
    case("exp float", signed(&header, &with(json!({"exp": 1e300}))));
    case(
        "exp beyond i64",
        sign_raw(
            &header.to_string(),
            &good.to_string().replace(
                &format!("\"exp\":{}", good["exp"]),
                "\"exp\":99999999999999999999999",
            ),
            &t.key,
            t.alg,
        ),
    );
    case(
        "nbf in an hour",
        signed(&header, &with(json!({"nbf": n + 3600}))),
    );
    case(
        "nbf in a minute",
        signed(&header, &with(json!({"nbf": n + 60}))),
    );
    case(
        "nbf far future",
        signed(&header, &with(json!({"nbf": i64::MAX}))),
    );
    case(
        "nbf as a string",
        signed(&header, &with(json!({"nbf": "soon"}))),
    );
    case(
        "iat in an hour",
        signed(&header, &with(json!({"iat": n + 3600}))),
    );

    // Issuer and audience.
    for iss in [
        json!("https://evil.example.com"),
        json!(""),
        json!(null),
        json!(["http://localhost:8080"]),
    ] {
        case(
            &format!("iss {iss}"),
            signed(&header, &with(json!({"iss": iss}))),
        );
    }
    for aud in [
        json!("other-api"),
        json!(""),
        json!(null),
        json!(["other-api"]),
        json!([]),
    ] {
        case(
            &format!("aud {aud}"),
            signed(&header, &with(json!({"aud": aud}))),
        );
    }

    // Type: another token kind, or none.
    for typ in [
        json!("JWT"),
        json!("jwt"),
        json!("id+jwt"),
        json!("rt+jwt"),
        json!("mfa+jwt"),
        json!("logout+jwt"),
        json!(""),
        json!(1),
    ] {
        case(
            &format!("typ {typ}"),
            signed(&header_with(json!({"typ": typ})), &good),
        );
    }
    case("no typ", {
        let mut h = header.clone();
        h.as_object_mut().unwrap().remove("typ");
        signed(&h, &good)
    });

    // Subject and session: not UUIDs, someone else's, or mixed between users.
    let other_claims = claims_of(&other.access);
    case(
        "sub not a uuid",
        signed(&header, &with(json!({"sub": "admin"}))),
    );
    case(
        "sid not a uuid",
        signed(&header, &with(json!({"sid": "1 OR 1=1"}))),
    );
    case("no sid", signed(&header, &with(json!({"sid": null}))));
    case("no sub", signed(&header, &with(json!({"sub": null}))));
    case(
        "victim's sub with another user's sid",
        signed(&header, &with(json!({"sid": other_claims["sid"]}))),
    );
    case(
        "unknown session id",
        signed(
            &header,
            &with(json!({"sid": uuid::Uuid::now_v7().to_string()})),
        ),
    );

    // Duplicate members: the parser must not pick a favourable copy.
    let body = good.to_string();
    let inner = &body[1..body.len() - 1];
    case(
        "duplicate sub (victim first)",
        sign_raw(
            &header.to_string(),
            &format!("{{{inner},\"sub\":{}}}", other_claims["sub"]),
            &t.key,
            t.alg,
        ),
    );
    case(
        "duplicate sid",
        sign_raw(
            &header.to_string(),
            &format!("{{\"sid\":{},{inner}}}", other_claims["sid"]),
            &t.key,
            t.alg,
        ),
    );
    case(
        "duplicate exp (expired copy last)",
        sign_raw(
            &header.to_string(),
            &format!("{{{inner},\"exp\":1}}"),
            &t.key,
            t.alg,
        ),
    );
    case(
        "duplicate aud",
        sign_raw(
            &header.to_string(),
            &format!("{{{inner},\"aud\":\"other-api\"}}"),
            &t.key,
            t.alg,
        ),
    );
    let h = header.to_string();
    let h_inner = &h[1..h.len() - 1];
    case(
        "duplicate alg in the header (none last)",
        sign_raw(
            &format!("{{{h_inner},\"alg\":\"none\"}}"),
            &body,
            &t.key,
            t.alg,
        ),
    );
    case(
        "duplicate kid in the header",
        sign_raw(
            &format!("{{{h_inner},\"kid\":\"evil\"}}"),
            &body,
            &t.key,
            t.alg,
        ),
    );

    // Structure: truncated, tampered, too long, not base64, not JSON.
    let real = victim.access.clone();
    let (head, sig) = real.rsplit_once('.').unwrap();
    case("last character dropped", real[..real.len() - 1].to_owned());
    case("signature dropped", format!("{head}."));
    case("signature segment missing", head.to_owned());
    case("header only", real.split('.').next().unwrap().to_owned());
    case("half a token", real[..real.len() / 2].to_owned());
    case("four segments", format!("{real}.{sig}"));
    case("empty segments", "..".to_owned());
    case("one dot", ".".to_owned());
    let mut tampered = with(json!({}));
    tampered["aal"] = json!(3);
    case(
        "payload changed, signature kept",
        format!(
            "{}.{}.{sig}",
            real.split('.').next().unwrap(),
            b64(tampered.to_string().as_bytes())
        ),
    );
    let mut flipped = sig.to_owned().into_bytes();
    flipped[0] = if flipped[0] == b'A' { b'B' } else { b'A' };
    case(
        "one signature character changed",
        format!("{head}.{}", String::from_utf8(flipped).unwrap()),
    );
    case("100 KB token", format!("{head}.{}", "A".repeat(100 * 1024)));
    case(
        "100 KB kid",
        signed(&header_with(json!({"kid": "k".repeat(100 * 1024)})), &good),
    );
    case(
        "100 KB claim",
        signed(&header, &with(json!({"pad": "p".repeat(100 * 1024)}))),
    );
    case("non-base64 characters", "abc$%^.def!@#.ghi&*(".to_owned());
    case("spaces inside", real.replacen('.', ". ", 1));
    case("standard base64 with padding", {
        use base64::engine::general_purpose::STANDARD;
        let parts: Vec<String> = real
            .split('.')
            .map(|p| STANDARD.encode(URL_SAFE_NO_PAD.decode(p).unwrap()))
            .collect();
        parts.join(".")
    });
    case(
        "header not JSON",
        format!(
            "{}.{}.{sig}",
            b64(b"not json"),
            real.split('.').nth(1).unwrap()
        ),
    );
    case(
        "payload not JSON",
        sign_raw(&header.to_string(), "[1,2,3]", &t.key, t.alg),
    );
    case(
        "payload JSON null",
        sign_raw(&header.to_string(), "null", &t.key, t.alg),
    );
    case("unicode", "ünïcødé.tøkén.sïg".to_owned());
    case("refresh token as access token", victim.refresh.clone());

    let tried = cases.len();
    for (name, token) in &cases {
        assert_refused(app, name, token).await;
    }
    // A token is only a header value: control characters cannot even be sent, and a value
    // that reqwest refuses is not a case.
    eprintln!("jwt_attacks: {tried} forged tokens refused");
    assert!(tried >= 90, "{tried}");

    // Nothing above hurt the victim: the real token still works.
    assert_eq!(
        app.get_authed("/v1/auth/me", &victim.access).await.status(),
        StatusCode::OK
    );
    t.app.stop().await;
}

/// RS256: the classic confusion (HS256 keyed with the RSA public key PEM) and an RS/PS swap.
async fn rsa_algorithm_confusion_is_refused(backend: Backend) {
    let t = target(backend, Algorithm::RS256).await;
    let app = &t.app;
    let victim: Tokens = app.signed_in_user("rsa@example.com").await;
    let good = claims_of(&victim.access);
    let header = json!({"alg": "RS256", "typ": "at+jwt", "kid": t.kid});
    let control = sign(&header, &good, &t.key, t.alg);
    assert_eq!(
        app.get_authed("/v1/auth/me", &control).await.status(),
        StatusCode::OK,
        "control token"
    );
    let mut tried = 0;
    for secret in [t.public_pem.clone(), t.public_pem.trim_end().to_owned()] {
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let h = json!({"alg": format!("{alg:?}"), "typ": "at+jwt", "kid": t.kid});
            let token = sign(&h, &good, &EncodingKey::from_secret(secret.as_bytes()), alg);
            assert_refused(
                app,
                &format!("{alg:?} keyed with the RSA public PEM"),
                &token,
            )
            .await;
            tried += 1;
        }
    }
    for alg in [Algorithm::PS256, Algorithm::RS384, Algorithm::RS512] {
        let h = json!({"alg": format!("{alg:?}"), "typ": "at+jwt", "kid": t.kid});
        let token = sign(&h, &good, &t.key, alg);
        assert_refused(app, &format!("{alg:?} with our RSA key"), &token).await;
        tried += 1;
    }
    // With the default header limit a 100 KB token never reaches the verifier: 431 (or 401),
    // with the error body either way.
    let huge = format!("{}{}", victim.access, "A".repeat(100 * 1024));
    let response = app
        .get_with_header("/v1/auth/me", "authorization", format!("Bearer {huge}"))
        .await;
    let status = response.status().as_u16();
    assert!(matches!(status, 401 | 431), "{status}");
    let code = if status == 401 {
        "invalid_token"
    } else {
        "request_header_fields_too_large"
    };
    let body: Value = response.json().await.expect("error body is JSON");
    assert!(
        body["error"]["code"] == code || status == 431 && body["error"]["code"].is_string(),
        "{body}"
    );
    tried += 1;
    eprintln!("jwt_attacks (RS256): {tried} forged tokens refused");
    t.app.stop().await;
}

both_backends!(
    forged_access_tokens_are_refused,
    rsa_algorithm_confusion_is_refused
);
