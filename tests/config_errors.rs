//! Acceptance: a broken configuration stops the service before it starts, with one message per
//! problem naming both the environment variable and the TOML key.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sessiond::config::Config;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn problems(toml: Option<&str>, pairs: &[(&str, &str)]) -> Vec<String> {
    Config::from_sources(toml, &env(pairs))
        .expect_err("the configuration must be rejected")
        .problems()
        .to_vec()
}

fn names_both(problem: &str, env_key: &str, toml_key: &str) -> bool {
    problem.contains(env_key) && problem.contains(&format!("toml: {toml_key}"))
}

/// The one problem the configuration has (asserted to be exactly one).
fn only_problem(toml: Option<&str>, pairs: &[(&str, &str)]) -> String {
    let p = problems(toml, pairs);
    assert_eq!(p.len(), 1, "{p:#?}");
    p.into_iter().next().unwrap()
}

/// Asserts that `problem` names both `env_key` and its TOML key.
fn assert_names_both(problem: &str, env_key: &str, toml_key: &str) {
    assert!(names_both(problem, env_key, toml_key), "{problem}");
}

/// Asserts that each (environment variable, TOML key) pair is named by one of the problems.
fn assert_each_named(problems: &[String], keys: &[(&str, &str)]) {
    for (env_key, toml_key) in keys {
        assert!(
            problems.iter().any(|m| names_both(m, env_key, toml_key)),
            "{env_key} missing from {problems:#?}"
        );
    }
}

/// Asserts that each of `needles` is in `text`.
fn assert_contains_all(text: &str, needles: &[&str]) {
    for needle in needles {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}

#[test]
fn unsupported_database_scheme_is_rejected() {
    let p = only_problem(
        None,
        &[("DATABASE_URL", "mysql://root:pw@localhost/sessiond")],
    );
    assert_names_both(&p, "DATABASE_URL", "database_url");
    assert!(p.contains("postgres://"), "{p}");
    assert!(!p.contains("root:pw"), "the URL may hold a password: {}", p);
}

#[test]
fn negative_lifetime_is_rejected_clearly() {
    let p = only_problem(None, &[("SESSIOND_ACCESS_TTL", "-5m")]);
    assert_names_both(&p, "SESSIOND_ACCESS_TTL", "access_ttl");
    assert!(p.contains("must be a positive duration"), "{p}");
}

#[test]
fn access_ttl_longer_than_refresh_idle_ttl_is_rejected() {
    let p = only_problem(
        None,
        &[
            ("SESSIOND_ACCESS_TTL", "2h"),
            ("SESSIOND_REFRESH_IDLE_TTL", "1h"),
        ],
    );
    assert_names_both(&p, "SESSIOND_ACCESS_TTL", "access_ttl");
    assert_names_both(&p, "SESSIOND_REFRESH_IDLE_TTL", "refresh_idle_ttl");
}

#[test]
fn the_same_rules_apply_to_the_toml_file() {
    let p = only_problem(
        Some("access_ttl = \"2h\"\nrefresh_idle_ttl = \"1h\"\n"),
        &[],
    );
    assert_names_both(&p, "SESSIOND_ACCESS_TTL", "access_ttl");
}

#[test]
fn postgres_without_keys_is_rejected() {
    let p = problems(
        None,
        &[("DATABASE_URL", "postgres://app@db.internal/sessiond")],
    );
    assert_eq!(p.len(), 2, "{p:#?}");
    assert!(
        p.iter().any(
            |m| names_both(m, "SESSIOND_SIGNING_KEY_FILE", "signing_key_file")
                && m.contains("instances must share keys")
        ),
        "{p:#?}"
    );
    assert!(
        p.iter()
            .any(|m| names_both(m, "SESSIOND_REFRESH_KEY", "refresh_key")
                && m.contains("instances must share keys")),
        "{p:#?}"
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let err = Config::from_sources(
        Some("grace_window = \"1m\"\nunknown_setting = 1\n"),
        &env(&[
            ("DATABASE_URL", "mysql://localhost/x"),
            ("SESSIOND_ACCESS_TTL", "abc"),
            ("SESSIOND_REFRESH_IDLE_TTL", "-1d"),
            ("SESSIOND_ARGON2_ITERATIONS", "0"),
        ]),
    )
    .unwrap_err();
    let p = err.problems();
    assert_eq!(p.len(), 5, "{p:#?}");
    assert_each_named(
        p,
        &[
            ("DATABASE_URL", "database_url"),
            ("SESSIOND_ACCESS_TTL", "access_ttl"),
            ("SESSIOND_REFRESH_IDLE_TTL", "refresh_idle_ttl"),
            ("SESSIOND_ARGON2_ITERATIONS", "argon2_iterations"),
        ],
    );
    assert!(p.iter().any(|m| m.contains("unknown_setting")), "{p:#?}");
    assert!(
        p.contains(
            &"SESSIOND_ACCESS_TTL (toml: access_ttl): \"abc\" is not a duration (e.g. 15m, 10s)"
                .to_string()
        )
    );
    // Display: a header line, then one line per problem.
    assert_eq!(err.to_string().lines().count(), 1 + p.len());
}

/// Runs the real binary in an empty directory with only `vars` (plus PATH and HOME) set.
/// The child is killed if it has not exited after a generous bound, so a configuration that
/// is wrongly accepted fails the test instead of hanging it; nothing is asserted about time.
fn run_binary(vars: &[(&str, &str)]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sessiond"));
    cmd.env_clear()
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for key in ["PATH", "HOME"] {
        if let Some(v) = std::env::var_os(key) {
            cmd.env(key, v);
        }
    }
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("the sessiond binary starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("sessiond kept running with an invalid configuration");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (status.code(), stderr)
}

/// Runs the binary with `vars`; asserts it refuses to start with exit code 2 (configuration
/// errors) and names each of `needles` on stderr, which it returns.
fn binary_rejects(vars: &[(&str, &str)], needles: &[&str]) -> String {
    let (code, stderr) = run_binary(vars);
    assert_ne!(code, Some(0), "stderr: {stderr}");
    assert_eq!(
        code,
        Some(2),
        "configuration errors exit with 2; stderr: {stderr}"
    );
    assert_contains_all(&stderr, needles);
    stderr
}

#[test]
fn binary_exits_non_zero_naming_a_bad_database_scheme() {
    let stderr = binary_rejects(
        &[("DATABASE_URL", "mysql://root:pw@localhost/sessiond")],
        &["DATABASE_URL (toml: database_url)"],
    );
    assert!(!stderr.contains("root:pw"), "{stderr}");
}

#[test]
fn binary_reports_every_problem_naming_each_key() {
    binary_rejects(
        &[
            ("SESSIOND_ACCESS_TTL", "-5m"),
            ("DATABASE_URL", "postgres://app@db.internal/sessiond"),
        ],
        &[
            "SESSIOND_ACCESS_TTL (toml: access_ttl)",
            "must be a positive duration",
            "SESSIOND_SIGNING_KEY_FILE (toml: signing_key_file)",
            "SESSIOND_REFRESH_KEY (toml: refresh_key)",
        ],
    );
}

#[test]
fn binary_rejects_an_unreadable_config_file() {
    binary_rejects(
        &[("SESSIOND_CONFIG", "/nonexistent/sessiond.toml")],
        &["SESSIOND_CONFIG", "/nonexistent/sessiond.toml"],
    );
}

/// Trusting proxies while reading no forwarding header from them would give every client the
/// proxy's address (one shared budget): a contradiction, reported with the other problems.
#[test]
fn client_ip_header_none_with_trusted_proxies_is_rejected_with_the_others() {
    let p = problems(
        Some("client_ip_header = \"none\"\n"),
        &[
            ("SESSIOND_TRUSTED_PROXIES", "10.0.0.0/8"),
            ("SESSIOND_RATE_LIMIT_IPV6_PREFIX", "129"),
            ("SESSIOND_ACCESS_TTL", "abc"),
        ],
    );
    assert_eq!(p.len(), 3, "{p:#?}");
    assert_each_named(
        &p,
        &[
            ("SESSIOND_CLIENT_IP_HEADER", "client_ip_header"),
            ("SESSIOND_RATE_LIMIT_IPV6_PREFIX", "rate_limit_ipv6_prefix"),
            ("SESSIOND_ACCESS_TTL", "access_ttl"),
        ],
    );
    assert!(
        p.iter()
            .any(|m| m.contains("none contradicts SESSIOND_TRUSTED_PROXIES")),
        "{p:#?}"
    );
    // Each alone is fine.
    Config::from_sources(None, &env(&[("SESSIOND_CLIENT_IP_HEADER", "none")])).unwrap();
    Config::from_sources(
        None,
        &env(&[
            ("SESSIOND_CLIENT_IP_HEADER", "x-real-ip"),
            ("SESSIOND_TRUSTED_PROXIES", "10.0.0.0/8"),
        ]),
    )
    .unwrap();
}

#[test]
fn binary_exits_2_for_client_ip_header_none_with_trusted_proxies() {
    binary_rejects(
        &[
            ("SESSIOND_CLIENT_IP_HEADER", "none"),
            ("SESSIOND_TRUSTED_PROXIES", "10.0.0.0/8"),
        ],
        &["SESSIOND_CLIENT_IP_HEADER (toml: client_ip_header)"],
    );
}

/// Cookies without `Secure` are for local development over plain HTTP only: turning them off
/// on a bind other hosts can reach is refused; on a loopback bind it is accepted (the cookie is
/// then `sessiond_rt`); the default (an `http://` issuer) keeps them `Secure` on any bind.
#[test]
fn secure_cookies_off_is_accepted_only_on_a_loopback_bind() {
    let p = only_problem(
        None,
        &[
            ("SESSIOND_SECURE_COOKIES", "false"),
            ("SESSIOND_BIND", "0.0.0.0:8080"),
        ],
    );
    assert_names_both(&p, "SESSIOND_SECURE_COOKIES", "secure_cookies");
    assert!(p.contains("loopback"), "{p}");
    for bind in ["127.0.0.1:8080", "[::1]:8080"] {
        let c = Config::from_sources(
            None,
            &env(&[("SESSIOND_SECURE_COOKIES", "off"), ("SESSIOND_BIND", bind)]),
        )
        .unwrap();
        assert!(c.abuse.http.insecure_cookies, "{bind}");
    }
    let public = Config::from_sources(None, &env(&[("SESSIOND_BIND", "0.0.0.0:8080")])).unwrap();
    assert!(!public.abuse.http.secure && !public.abuse.http.insecure_cookies);
    // The default (an `http://` issuer: no HSTS) keeps the cookie `Secure` on loopback too.
    let local = Config::from_sources(None, &env(&[("SESSIOND_BIND", "127.0.0.1:8080")])).unwrap();
    assert!(!local.abuse.http.secure && !local.abuse.http.insecure_cookies);
}

#[test]
fn binary_exits_2_for_secure_cookies_off_on_a_public_bind() {
    binary_rejects(
        &[
            ("SESSIOND_SECURE_COOKIES", "false"),
            ("SESSIOND_BIND", "0.0.0.0:0"),
        ],
        &["SESSIOND_SECURE_COOKIES (toml: secure_cookies)"],
    );
}

/// `SESSIOND_REQUIRE_AAL2_FOR` names known action classes only; each unknown one is listed
/// with the known ones, in the environment and in the file alike.
#[test]
fn unknown_aal2_action_classes_are_named() {
    let p = only_problem(
        None,
        &[("SESSIOND_REQUIRE_AAL2_FOR", "api_keys, bogus,sessions,Mfa")],
    );
    assert_names_both(&p, "SESSIOND_REQUIRE_AAL2_FOR", "require_aal2_for");
    assert!(p.contains("\"bogus\", \"Mfa\""), "{p}");
    assert!(
        p.contains("api_keys, password, mfa, passkeys, sessions"),
        "{}",
        p
    );
    let p = only_problem(Some("require_aal2_for = [\"applications\"]\n"), &[]);
    assert!(p.contains("\"applications\""), "{p}");

    use sessiond::auth::reauth::ActionClass;
    let c = Config::from_sources(
        Some("require_aal2_for = [\"password\", \"passkeys\"]\n"),
        &[],
    )
    .unwrap();
    let listed: Vec<ActionClass> = c.require_aal2_for.iter().collect();
    assert_eq!(listed, [ActionClass::Password, ActionClass::Passkeys]);
    assert!(
        Config::from_sources(None, &[])
            .unwrap()
            .require_aal2_for
            .iter()
            .next()
            .is_none(),
        "nothing needs aal 2 by default"
    );
}

#[test]
fn binary_exits_2_for_an_unknown_aal2_action_class() {
    binary_rejects(
        &[("SESSIOND_REQUIRE_AAL2_FOR", "api_keys,everything")],
        &[
            "SESSIOND_REQUIRE_AAL2_FOR (toml: require_aal2_for)",
            "\"everything\"",
        ],
    );
}

#[test]
fn webauthn_settings_are_checked_together_with_the_others() {
    let p = problems(
        None,
        &[
            ("SESSIOND_ACCESS_TTL", "-5m"),
            ("SESSIOND_WEBAUTHN_RP_ID", "127.0.0.1"),
            (
                "SESSIOND_WEBAUTHN_ORIGINS",
                "http://example.com, https://[::1]:8443, https://example.com/app",
            ),
        ],
    );
    assert_eq!(p.len(), 3, "{p:#?}");
    assert!(
        names_both(&p[0], "SESSIOND_ACCESS_TTL", "access_ttl"),
        "{p:#?}"
    );
    let rp = p
        .iter()
        .find(|m| names_both(m, "SESSIOND_WEBAUTHN_RP_ID", "webauthn_rp_id"))
        .expect("the RP id is named");
    assert!(rp.contains("IP address"), "{rp}");
    let origins = p
        .iter()
        .find(|m| names_both(m, "SESSIOND_WEBAUTHN_ORIGINS", "webauthn_origins"))
        .expect("the origins are named");
    assert_contains_all(
        origins,
        &["must be https", "refuses IP addresses", "no path"],
    );
}

#[test]
fn webauthn_origin_must_be_on_the_rp_id_and_both_are_needed() {
    let p = only_problem(
        None,
        &[
            ("SESSIOND_WEBAUTHN_RP_ID", "example.com"),
            ("SESSIOND_WEBAUTHN_ORIGINS", "https://login.example.org"),
        ],
    );
    assert!(p.contains("is not on SESSIOND_WEBAUTHN_RP_ID"), "{}", p);

    let p = only_problem(None, &[("SESSIOND_WEBAUTHN_RP_ID", "example.com")]);
    assert!(p.contains("needs SESSIOND_WEBAUTHN_ORIGINS"), "{p}");

    let p = only_problem(Some("webauthn_origins = [\"https://example.com\"]"), &[]);
    assert!(p.contains("needs SESSIOND_WEBAUTHN_RP_ID"), "{p}");
}

#[test]
fn webauthn_relying_party_is_accepted_and_defaults_on_development_keys() {
    use sessiond::config::WebauthnSetting;
    let c = Config::from_sources(
        None,
        &env(&[
            ("SESSIOND_WEBAUTHN_RP_ID", "example.com"),
            (
                "SESSIOND_WEBAUTHN_ORIGINS",
                "https://example.com,https://login.example.com",
            ),
        ]),
    )
    .unwrap();
    let WebauthnSetting::Configured(rp) = c.webauthn else {
        panic!("configured: {:?}", c.webauthn)
    };
    assert_eq!(rp.rp_id, "example.com");
    assert_eq!(rp.rp_name, "example.com");
    assert_eq!(rp.origins.len(), 2);
    // SQLite with generated keys: the development relying party on localhost.
    let c = Config::from_sources(None, &[]).unwrap();
    assert_eq!(c.webauthn, WebauthnSetting::DevelopmentDefault);
    // Configured keys and nothing else: off.
    let c = Config::from_sources(
        None,
        &env(&[
            ("SESSIOND_SIGNING_KEY_FILE", "/nonexistent/signing.pem"),
            (
                "SESSIOND_REFRESH_KEY",
                "dGhpcy1pcy1hLXRlc3QtcmVmcmVzaC1rZXktb2YtMzItYnl0ZXM",
            ),
        ]),
    )
    .unwrap();
    assert_eq!(c.webauthn, WebauthnSetting::Disabled);
}

#[test]
fn binary_exits_2_for_an_ip_address_as_rp_id() {
    binary_rejects(
        &[
            ("SESSIOND_WEBAUTHN_RP_ID", "192.168.1.10"),
            ("SESSIOND_WEBAUTHN_ORIGINS", "https://192.168.1.10"),
        ],
        &[
            "SESSIOND_WEBAUTHN_RP_ID (toml: webauthn_rp_id)",
            "SESSIOND_WEBAUTHN_ORIGINS (toml: webauthn_origins)",
        ],
    );
}

/// OpenID Connect needs the RS256 ID-token key published in the JWKS; with HS256 access tokens
/// the JWKS is empty, so configuring an ID-token key then stops the service.
#[test]
fn binary_exits_2_for_openid_connect_with_hs256_access_tokens() {
    binary_rejects(
        &[
            ("SESSIOND_SIGNING_ALG", "HS256"),
            ("SESSIOND_ID_TOKEN_KEY_FILE", "/run/secrets/id.pem"),
        ],
        &[
            "SESSIOND_ID_TOKEN_KEY_FILE (toml: id_token_key_file)",
            "HS256",
        ],
    );
}
