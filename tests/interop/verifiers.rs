//! Standard verifiers of other languages against sessiond's real tokens and live JWKS:
//! Node's `jose` (`createRemoteJWKSet` + `jwtVerify`, `tests/interop/node/verify.mjs`) and
//! Python's PyJWT (`PyJWKClient` + `jwt.decode`, `tests/interop/python/verify.py`), both
//! pinned, for EdDSA and RS256. Each script gets the JWKS URL, the issuer, the audience, the
//! algorithm allow-list and tokens as arguments, and prints one JSON line per token.
//!
//! Every refused token changes one thing of a token the verifier accepts (the control, signed
//! by this test with the server's own key), so each refusal is that change's.
//!
//! RFC 9864 deprecates the polymorphic `EdDSA` name for `Ed25519`. sessiond's tokens and JWKS
//! say `EdDSA`; `rfc9864_*` records what the pinned libraries do with either name.

use std::path::PathBuf;
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, spawn_app_with};
use crate::support::{
    Upstream, encoding_key, flip_signature, now, parts_of, repo_root, require_tool,
    rsa_private_pem, sign, with_claims, with_header,
};

const ISSUER: &str = "http://auth.interop.test";
const AUDIENCE: &str = "interop-api";
/// How long one verifier run may take (it starts an interpreter and fetches the JWKS once).
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// The pinned versions (tests/interop/node/package.json, tests/interop/python/requirements.txt).
const JOSE_VERSION: &str = "6.2.19";
const PYJWT_VERSION: &str = "2.15.1";

#[derive(Clone, Copy, Debug)]
enum Verifier {
    /// Node's jose.
    Jose,
    /// Python's PyJWT.
    PyJwt,
}

impl Verifier {
    const ALL: [Verifier; 2] = [Verifier::Jose, Verifier::PyJwt];

    fn dir(self) -> PathBuf {
        repo_root().join("tests/interop").join(match self {
            Verifier::Jose => "node",
            Verifier::PyJwt => "python",
        })
    }

    /// Fails loudly unless the interpreter and the pinned library are installed.
    fn require(self) {
        match self {
            Verifier::Jose => {
                require_tool("node", &["--version"], "node is required (Debian `nodejs`)");
                let manifest = self.dir().join("node_modules/jose/package.json");
                let installed: Value = std::fs::read(&manifest)
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok())
                    .unwrap_or_else(|| {
                        panic!(
                            "{} is missing: run `npm ci` in tests/interop/node (scripts/test does)",
                            manifest.display()
                        )
                    });
                assert_eq!(
                    installed["version"], JOSE_VERSION,
                    "jose {JOSE_VERSION} expected in tests/interop/node/node_modules (npm ci)"
                );
            }
            Verifier::PyJwt => require_tool(
                "python3",
                &[
                    "-c",
                    &format!("import jwt, sys; sys.exit(jwt.__version__ != '{PYJWT_VERSION}')"),
                ],
                "PyJWT[crypto] is required: python3 -m pip install -r \
                 tests/interop/python/requirements.txt (scripts/test does)",
            ),
        }
    }

    /// Runs the verifier on `tokens`: its exit code and one parsed line per token.
    async fn run(
        self,
        jwks_url: &str,
        issuer: &str,
        audience: &str,
        algs: &str,
        tokens: &[String],
    ) -> (i32, Vec<Value>) {
        self.require();
        let (program, script) = match self {
            Verifier::Jose => ("node", "verify.mjs"),
            Verifier::PyJwt => ("python3", "verify.py"),
        };
        let mut command = tokio::process::Command::new(program);
        command
            .current_dir(self.dir())
            .arg(script)
            .args([jwks_url, issuer, audience, algs])
            .args(tokens)
            .kill_on_drop(true);
        let out = tokio::time::timeout(RUN_TIMEOUT, command.output())
            .await
            .unwrap_or_else(|_| panic!("{self:?} ran longer than {RUN_TIMEOUT:?}"))
            .unwrap_or_else(|e| panic!("{program} cannot be run: {e}"));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<Value> = stdout
            .lines()
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("{self:?}: not JSON ({e}): {l}\n{stderr}"))
            })
            .collect();
        assert_eq!(
            lines.len(),
            tokens.len(),
            "{self:?}: one line per token\n{stdout}\n{stderr}"
        );
        (out.status.code().unwrap_or(-1), lines)
    }
}

/// A live sessiond signing with `alg`, a signed-in user, and the server's key.
struct Issuer {
    app: TestApp,
    alg: Algorithm,
    key: EncodingKey,
    jwks_url: String,
    /// A real access token, as login answers it.
    token: String,
    _dir: tempfile::TempDir,
}

async fn issuer(alg: Algorithm) -> Issuer {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = vec![
        ("SESSIOND_ISSUER", ISSUER.to_owned()),
        ("SESSIOND_AUDIENCE", AUDIENCE.to_owned()),
    ];
    let rsa_file = dir.path().join("rsa.pem");
    if alg == Algorithm::RS256 {
        std::fs::write(&rsa_file, rsa_private_pem()).unwrap();
        settings.push(("SESSIOND_SIGNING_ALG", "RS256".into()));
        settings.push(("SESSIOND_SIGNING_KEY_FILE", rsa_file.display().to_string()));
    } else {
        settings.push(("SESSIOND_SIGNING_ALG", "EdDSA".into()));
    }
    let settings: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let app = spawn_app_with(Backend::Sqlite, &settings).await;
    let key_file = if alg == Algorithm::RS256 {
        rsa_file
    } else {
        app.dir().join("signing.pem")
    };
    let key = encoding_key(&key_file, alg);
    let token = app.signed_in_user("interop@example.com").await.access;
    let jwks_url = app.url("/.well-known/jwks.json");
    Issuer {
        app,
        alg,
        key,
        jwks_url,
        token,
        _dir: dir,
    }
}

impl Issuer {
    fn alg_name(&self) -> &'static str {
        match self.alg {
            Algorithm::EdDSA => "EdDSA",
            _ => "RS256",
        }
    }

    /// The real token's header and claims, re-signed with the server's key after `change`.
    fn resigned(&self, change: impl FnOnce(&mut Value, &mut Value)) -> String {
        let (mut header, mut claims) = parts_of(&self.token);
        change(&mut header, &mut claims);
        sign(&header, &claims, &self.key, self.alg)
    }

    async fn jwks(&self) -> Value {
        let response = self.app.client.get(&self.jwks_url).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }
}

fn assert_outcomes(verifier: Verifier, cases: &[(&str, bool)], lines: &[Value]) {
    for ((what, accepted), line) in cases.iter().zip(lines) {
        eprintln!("{verifier:?}: {what}: {line}");
        assert_eq!(
            line["ok"],
            *accepted,
            "{verifier:?}: {what} must be {}: {line}",
            if *accepted { "accepted" } else { "refused" }
        );
    }
}

async fn standard_verifiers_accept_real_tokens_and_refuse_tampered_ones(alg: Algorithm) {
    let issuer = issuer(alg).await;
    let alg_name = issuer.alg_name();
    let (header, claims) = parts_of(&issuer.token);
    assert_eq!(header["alg"], alg_name, "{header}");
    assert_eq!(header["typ"], "at+jwt");
    let jwks = issuer.jwks().await;
    assert_eq!(jwks["keys"][0]["alg"], alg_name, "{jwks}");
    assert_eq!(jwks["keys"][0]["kid"], header["kid"]);

    // The other asymmetric algorithm's name, for the swap.
    let other_alg = if alg == Algorithm::EdDSA {
        "RS256"
    } else {
        "EdDSA"
    };
    // HS256 keyed with the published public key material (the classic confusion).
    let public = jwks["keys"][0]["x"]
        .as_str()
        .or(jwks["keys"][0]["n"].as_str())
        .unwrap();
    let hs256 = sign(
        &json!({"alg": "HS256", "typ": "at+jwt", "kid": header["kid"]}),
        &claims,
        &EncodingKey::from_secret(public.as_bytes()),
        Algorithm::HS256,
    );
    let mut other_sub = claims.clone();
    other_sub["sub"] = json!(uuid::Uuid::now_v7().to_string());
    let unsigned = {
        let mut h = header.clone();
        h["alg"] = json!("none");
        let t = with_header(&issuer.token, &h);
        format!("{}.", t.rsplit_once('.').unwrap().0)
    };

    let cases: Vec<(&str, bool, String)> = vec![
        ("the real token", true, issuer.token.clone()),
        (
            "the control (re-signed unchanged)",
            true,
            issuer.resigned(|_, _| {}),
        ),
        (
            "the payload changed (sub), signature kept",
            false,
            with_claims(&issuer.token, &other_sub),
        ),
        (
            "the signature changed",
            false,
            flip_signature(&issuer.token),
        ),
        (
            "the alg swapped to the other asymmetric one, signature kept",
            false,
            with_header(&issuer.token, &{
                let mut h = header.clone();
                h["alg"] = json!(other_alg);
                h
            }),
        ),
        ("alg none, no signature", false, unsigned),
        ("HS256 keyed with the public key", false, hs256),
        (
            "typ JWT instead of at+jwt",
            false,
            issuer.resigned(|h, _| h["typ"] = json!("JWT")),
        ),
        (
            "another audience",
            false,
            issuer.resigned(|_, c| c["aud"] = json!("another-api")),
        ),
        (
            "another issuer",
            false,
            issuer.resigned(|_, c| c["iss"] = json!("http://evil.test")),
        ),
        (
            "expired",
            false,
            issuer.resigned(|_, c| {
                c["iat"] = json!(now() - 3600);
                c["exp"] = json!(now() - 1800);
            }),
        ),
    ];
    let tokens: Vec<String> = cases.iter().map(|(_, _, t)| t.clone()).collect();
    let expected: Vec<(&str, bool)> = cases.iter().map(|(w, a, _)| (*w, *a)).collect();

    for verifier in Verifier::ALL {
        let (code, lines) = verifier
            .run(&issuer.jwks_url, ISSUER, AUDIENCE, alg_name, &tokens)
            .await;
        assert_outcomes(verifier, &expected, &lines);
        assert_eq!(code, 1, "{verifier:?}: exit 1 when any token is refused");
        assert_eq!(lines[0]["sub"], claims["sub"], "{verifier:?}");
        assert_eq!(lines[0]["sid"], claims["sid"], "{verifier:?}");
        assert_eq!(lines[0]["alg"], alg_name, "{verifier:?}");

        // The algorithm confusions are refused by the library itself too, not only by the
        // allow-list: with every algorithm allowed, the key (its type and its JWK `alg`)
        // still decides.
        let confusions = &tokens[4..7];
        assert!(
            expected[4..7]
                .iter()
                .all(|(what, _)| what.contains("alg") || what.contains("HS256")),
            "cases 4..7 are the algorithm confusions"
        );
        let (code, lines) = verifier
            .run(
                &issuer.jwks_url,
                ISSUER,
                AUDIENCE,
                "EdDSA,RS256,HS256,none",
                confusions,
            )
            .await;
        assert_outcomes(verifier, &expected[4..7], &lines);
        assert_eq!(code, 1);

        // Exit 0 when every token verifies; and the issuer and audience checks are in force.
        let real = std::slice::from_ref(&issuer.token);
        let (code, _) = verifier
            .run(&issuer.jwks_url, ISSUER, AUDIENCE, alg_name, real)
            .await;
        assert_eq!(code, 0, "{verifier:?}: the real token alone verifies");
        for (iss, aud) in [(ISSUER, "another-api"), ("http://evil.test", AUDIENCE)] {
            let (code, lines) = verifier
                .run(&issuer.jwks_url, iss, aud, alg_name, real)
                .await;
            assert_eq!(
                (code, &lines[0]["ok"]),
                (1, &json!(false)),
                "{verifier:?} expecting iss {iss}, aud {aud}: {}",
                lines[0]
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standard_verifiers_with_eddsa() {
    standard_verifiers_accept_real_tokens_and_refuse_tampered_ones(Algorithm::EdDSA).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standard_verifiers_with_rs256() {
    standard_verifiers_accept_real_tokens_and_refuse_tampered_ones(Algorithm::RS256).await;
}

/// RFC 9864: sessiond's tokens and JWKS say `EdDSA` (checked above, accepted by both). What
/// the pinned libraries do with the fully specified `Ed25519`, recorded so a library upgrade
/// that changes it is noticed (README, "Standard verifiers").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc9864_ed25519_name_in_the_pinned_libraries() {
    let issuer = issuer(Algorithm::EdDSA).await;
    let ed25519_token = issuer.resigned(|h, _| h["alg"] = json!("Ed25519"));
    let both = "EdDSA,Ed25519";

    // sessiond's JWKS (alg EdDSA), a token saying Ed25519 (same key, same signature bytes).
    for verifier in Verifier::ALL {
        let (_, lines) = verifier
            .run(
                &issuer.jwks_url,
                ISSUER,
                AUDIENCE,
                both,
                std::slice::from_ref(&ed25519_token),
            )
            .await;
        eprintln!("{verifier:?}, JWKS EdDSA, token Ed25519: {}", lines[0]);
        assert_eq!(lines[0]["ok"], false, "{verifier:?}: {}", lines[0]);
    }

    // The same key published under `alg: Ed25519`.
    let mut jwks = issuer.jwks().await;
    jwks["keys"][0]["alg"] = json!("Ed25519");
    let served = Upstream::serving(jwks).await;
    let url = format!("http://{}/jwks.json", served.addr);
    let tokens = [ed25519_token.clone(), issuer.token.clone()];
    let mut outcomes = Vec::new();
    for verifier in Verifier::ALL {
        let (_, lines) = verifier.run(&url, ISSUER, AUDIENCE, both, &tokens).await;
        eprintln!("{verifier:?}, JWKS Ed25519, token Ed25519: {}", lines[0]);
        eprintln!("{verifier:?}, JWKS Ed25519, token EdDSA: {}", lines[1]);
        outcomes.push((lines[0]["ok"].clone(), lines[1]["ok"].clone()));
    }
    assert_eq!(
        outcomes,
        vec![
            // jose: Ed25519 end to end works; the token's alg must equal the JWK's.
            (json!(true), json!(false)),
            // PyJWT: `Ed25519` is not an algorithm it knows, in a token or a JWK.
            (json!(false), json!(false)),
        ],
        "RFC 9864 support changed in the pinned libraries: update README and this test"
    );
}
