//! How a client presents its credentials at the token, introspection and revocation endpoints
//! (RFC 6749 §2.3.1): `client_secret_basic` (HTTP Basic, each part form-urlencoded before
//! base64), `client_secret_post` (`client_id` and `client_secret` in the form), or `none` (a
//! public client sends only `client_id`). Parsing only; [`super::applications::authenticate_client`]
//! checks the secret.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// What the request presented.
#[derive(Clone, PartialEq, Eq)]
pub struct PresentedClient {
    /// The client id.
    pub client_id: String,
    /// The secret, if any (None = method `none`).
    pub secret: Option<String>,
}

impl std::fmt::Debug for PresentedClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PresentedClient")
            .field("client_id", &self.client_id)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Why the presented credentials cannot even be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClientAuthError {
    /// No client id anywhere (RFC 6749 `invalid_client`).
    #[error("client authentication is required")]
    Missing,
    /// A malformed `Authorization: Basic` header (`invalid_client`).
    #[error("malformed Basic credentials")]
    MalformedBasic,
    /// More than one method, or a `client_id` in the form that differs from the Basic one
    /// (RFC 6749 §2.3: a client must not use more than one method; `invalid_request`).
    #[error("use exactly one client authentication method")]
    SeveralMethods,
}

fn form_decode(part: &str) -> Option<String> {
    // The same decoding as a form value: percent-escapes, and '+' for a space.
    let query = format!("v={part}");
    url::form_urlencoded::parse(query.as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
}

/// Reads the client's credentials from the `Authorization` header (if it is `Basic`) and the
/// form's `client_id` / `client_secret`.
pub fn presented(
    authorization: Option<&str>,
    form_client_id: Option<&str>,
    form_secret: Option<&str>,
) -> Result<PresentedClient, ClientAuthError> {
    let basic = match authorization {
        Some(value) => match value.split_once(' ') {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("basic") => {
                let decoded = STANDARD
                    .decode(rest.trim())
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or(ClientAuthError::MalformedBasic)?;
                let (id, secret) = decoded
                    .split_once(':')
                    .ok_or(ClientAuthError::MalformedBasic)?;
                let id = form_decode(id).ok_or(ClientAuthError::MalformedBasic)?;
                let secret = form_decode(secret).ok_or(ClientAuthError::MalformedBasic)?;
                if id.is_empty() {
                    return Err(ClientAuthError::MalformedBasic);
                }
                Some(PresentedClient {
                    client_id: id,
                    secret: Some(secret),
                })
            }
            // Another scheme (e.g. a bearer token) is not client authentication.
            _ => None,
        },
        None => None,
    };
    match (basic, form_client_id.filter(|s| !s.is_empty()), form_secret) {
        (Some(_), _, Some(_)) => Err(ClientAuthError::SeveralMethods),
        (Some(b), Some(id), None) if id != b.client_id => Err(ClientAuthError::SeveralMethods),
        (Some(b), _, None) => Ok(b),
        (None, Some(id), secret) => Ok(PresentedClient {
            client_id: id.to_owned(),
            secret: secret.map(str::to_owned),
        }),
        (None, None, _) => Err(ClientAuthError::Missing),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(id: &str, secret: &str) -> String {
        format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
    }

    #[test]
    fn basic_post_and_none() {
        let b = presented(Some(&basic("app", "cs_s3cret")), None, None).unwrap();
        assert_eq!(
            (b.client_id.as_str(), b.secret.as_deref()),
            ("app", Some("cs_s3cret"))
        );
        // RFC 6749 §2.3.1: form-urlencoded before base64 (a secret may hold ':' or '+').
        let b = presented(Some(&basic("my%20app", "a%3Ab+c")), None, None).unwrap();
        assert_eq!(
            (b.client_id.as_str(), b.secret.as_deref()),
            ("my app", Some("a:b c"))
        );
        let p = presented(None, Some("app"), Some("cs_s3cret")).unwrap();
        assert_eq!(p.secret.as_deref(), Some("cs_s3cret"));
        let n = presented(None, Some("spa"), None).unwrap();
        assert_eq!((n.client_id.as_str(), n.secret), ("spa", None));
        // The same id in the form beside Basic is allowed (some clients send both).
        assert!(presented(Some(&basic("app", "x")), Some("app"), None).is_ok());
        // A bearer header is not client authentication.
        assert_eq!(
            presented(Some("Bearer abc"), Some("spa"), None)
                .unwrap()
                .client_id,
            "spa"
        );
        assert!(!format!("{b:?}").contains("a:b c"));
    }

    #[test]
    fn refusals() {
        assert_eq!(presented(None, None, None), Err(ClientAuthError::Missing));
        assert_eq!(
            presented(None, Some(""), Some("x")),
            Err(ClientAuthError::Missing)
        );
        assert_eq!(
            presented(Some("Basic !!!"), None, None),
            Err(ClientAuthError::MalformedBasic)
        );
        assert_eq!(
            presented(
                Some(&format!("Basic {}", STANDARD.encode("nocolon"))),
                None,
                None
            ),
            Err(ClientAuthError::MalformedBasic)
        );
        assert_eq!(
            presented(Some(&basic("", "x")), None, None),
            Err(ClientAuthError::MalformedBasic)
        );
        assert_eq!(
            presented(Some(&basic("app", "x")), None, Some("x")),
            Err(ClientAuthError::SeveralMethods)
        );
        assert_eq!(
            presented(Some(&basic("app", "x")), Some("other"), None),
            Err(ClientAuthError::SeveralMethods)
        );
    }
}
