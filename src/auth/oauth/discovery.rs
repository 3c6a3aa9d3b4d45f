//! What sessiond tells clients about itself (RFC 8414 authorization-server metadata, OpenID
//! Connect Discovery 1.0 §3): endpoints, and exactly the choices it implements — `code` only,
//! PKCE `S256` only, RFC 9207 `iss` on every authorization response, RS256 ID tokens.
//!
//! **When OpenID Connect is on.** Exactly when the key ring holds the RS256 ID-token key:
//! `SESSIOND_ID_TOKEN_KEY_FILE` is set, or development keys were generated with EdDSA or RS256
//! access tokens. With HS256 access tokens the JWKS is empty, so relying parties could verify
//! nothing: the configuration refuses an ID-token key file then (exit 2), no key is generated,
//! `/.well-known/openid-configuration` answers 404, and the OAuth metadata leaves out the
//! OpenID fields (`userinfo_endpoint`, `id_token_signing_alg_values_supported`, the `openid`
//! scope and the user claims).

use serde::Serialize;

use super::scope::{EMAIL, OFFLINE_ACCESS, OPENID, PROFILE};

/// Authorization-server / OpenID provider metadata.
#[derive(Debug, Serialize)]
pub struct ProviderMetadata {
    /// The issuer identifier: `SESSIOND_ISSUER`, exactly as in `iss` claims.
    pub issuer: String,
    /// `/oauth2/authorize`.
    pub authorization_endpoint: String,
    /// `/oauth2/token`.
    pub token_endpoint: String,
    /// `/.well-known/jwks.json`: access-token keys and the ID-token key.
    pub jwks_uri: String,
    /// `/oauth2/userinfo` (OpenID Connect only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub userinfo_endpoint: Option<String>,
    /// `/oauth2/introspect` (RFC 7662).
    pub introspection_endpoint: String,
    /// `/oauth2/revoke` (RFC 7009).
    pub revocation_endpoint: String,
    /// Scopes with a meaning here (applications may be allowed others of their own).
    pub scopes_supported: Vec<&'static str>,
    /// `code` only (OAuth 2.1).
    pub response_types_supported: [&'static str; 1],
    /// `query` only.
    pub response_modes_supported: [&'static str; 1],
    /// The grant types of the token endpoint.
    pub grant_types_supported: [&'static str; 3],
    /// Client authentication at the token endpoint.
    pub token_endpoint_auth_methods_supported: [&'static str; 3],
    /// Client authentication at introspection (public clients may not introspect).
    pub introspection_endpoint_auth_methods_supported: [&'static str; 2],
    /// Client authentication at revocation.
    pub revocation_endpoint_auth_methods_supported: [&'static str; 3],
    /// PKCE: `S256` only, required of every client.
    pub code_challenge_methods_supported: [&'static str; 1],
    /// RFC 9207: every authorization response carries `iss`.
    pub authorization_response_iss_parameter_supported: bool,
    /// `public`: `sub` is the user id for every client.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject_types_supported: Option<[&'static str; 1]>,
    /// `RS256` (OpenID Connect only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token_signing_alg_values_supported: Option<[&'static str; 1]>,
    /// `aal1`, `aal2` (OpenID Connect only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acr_values_supported: Option<[&'static str; 2]>,
    /// The claims of ID tokens and UserInfo (OpenID Connect only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claims_supported: Option<Vec<&'static str>>,
    /// `prompt` values the authorization endpoint understands.
    pub prompt_values_supported: [&'static str; 3],
    /// No `claims` request parameter.
    pub claims_parameter_supported: bool,
    /// No request objects.
    pub request_parameter_supported: bool,
    /// No request objects by reference.
    pub request_uri_parameter_supported: bool,
}

/// The metadata of the server whose issuer is `issuer`; `oidc` = the ID-token key is loaded.
pub fn metadata(issuer: &str, oidc: bool) -> ProviderMetadata {
    let base = issuer.trim_end_matches('/');
    let at = |path: &str| format!("{base}{path}");
    let mut scopes = vec![OFFLINE_ACCESS];
    if oidc {
        scopes.splice(0..0, [OPENID, PROFILE, EMAIL]);
    }
    ProviderMetadata {
        issuer: issuer.to_owned(),
        authorization_endpoint: at("/oauth2/authorize"),
        token_endpoint: at("/oauth2/token"),
        jwks_uri: at("/.well-known/jwks.json"),
        userinfo_endpoint: oidc.then(|| at("/oauth2/userinfo")),
        introspection_endpoint: at("/oauth2/introspect"),
        revocation_endpoint: at("/oauth2/revoke"),
        scopes_supported: scopes,
        response_types_supported: ["code"],
        response_modes_supported: ["query"],
        grant_types_supported: ["authorization_code", "refresh_token", "client_credentials"],
        token_endpoint_auth_methods_supported: [
            "client_secret_basic",
            "client_secret_post",
            "none",
        ],
        introspection_endpoint_auth_methods_supported: [
            "client_secret_basic",
            "client_secret_post",
        ],
        revocation_endpoint_auth_methods_supported: [
            "client_secret_basic",
            "client_secret_post",
            "none",
        ],
        code_challenge_methods_supported: ["S256"],
        authorization_response_iss_parameter_supported: true,
        subject_types_supported: oidc.then_some(["public"]),
        id_token_signing_alg_values_supported: oidc.then_some(["RS256"]),
        acr_values_supported: oidc.then_some(["aal1", "aal2"]),
        claims_supported: oidc.then(|| {
            vec![
                "iss",
                "sub",
                "aud",
                "exp",
                "iat",
                "auth_time",
                "nonce",
                "at_hash",
                "acr",
                "amr",
                "name",
                "picture",
                "email",
                "email_verified",
            ]
        }),
        prompt_values_supported: ["none", "login", "consent"],
        claims_parameter_supported: false,
        request_parameter_supported: false,
        request_uri_parameter_supported: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_hang_off_the_issuer_and_oidc_fields_follow_the_key() {
        let on = serde_json::to_value(metadata("https://id.example.com", true)).unwrap();
        assert_eq!(on["issuer"], "https://id.example.com");
        assert_eq!(on["token_endpoint"], "https://id.example.com/oauth2/token");
        assert_eq!(
            on["userinfo_endpoint"],
            "https://id.example.com/oauth2/userinfo"
        );
        assert_eq!(on["id_token_signing_alg_values_supported"][0], "RS256");
        assert_eq!(on["authorization_response_iss_parameter_supported"], true);
        let off = serde_json::to_value(metadata("https://id.example.com/", false)).unwrap();
        assert_eq!(off["issuer"], "https://id.example.com/");
        assert_eq!(
            off["jwks_uri"],
            "https://id.example.com/.well-known/jwks.json"
        );
        for absent in [
            "userinfo_endpoint",
            "id_token_signing_alg_values_supported",
            "claims_supported",
        ] {
            assert!(off.get(absent).is_none(), "{absent}");
        }
        assert_eq!(
            off["scopes_supported"],
            serde_json::json!(["offline_access"])
        );
    }
}
