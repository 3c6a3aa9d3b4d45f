//! OAuth scopes: the space-separated `scope` parameter (RFC 6749 §3.3), checked against what an
//! application is allowed, and the scopes with an OpenID Connect meaning.

use std::fmt;

use super::applications::is_scope_token;

/// Asks for an ID token (OpenID Connect).
pub const OPENID: &str = "openid";
/// The `name` claim.
pub const PROFILE: &str = "profile";
/// The `email` and `email_verified` claims.
pub const EMAIL: &str = "email";
/// A refresh token (without it, the grant gives access tokens only).
pub const OFFLINE_ACCESS: &str = "offline_access";

/// Why a `scope` parameter was refused (RFC 6749 `invalid_scope`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    /// Not a list of scope tokens separated by single spaces.
    #[error("scope must be scope tokens separated by spaces")]
    Malformed,
    /// A scope the application is not allowed.
    #[error("scope {0:?} is not allowed for this client")]
    NotAllowed(String),
}

/// A set of scopes, kept in the order first given, without duplicates.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scopes(Vec<String>);

impl Scopes {
    /// Parses a `scope` parameter: tokens separated by single spaces (RFC 6749 §3.3).
    /// Absent or empty = no scopes.
    pub fn parse(raw: Option<&str>) -> Result<Self, ScopeError> {
        let raw = raw.unwrap_or_default();
        if raw.is_empty() {
            return Ok(Self::default());
        }
        let mut out: Vec<String> = Vec::new();
        for token in raw.split(' ') {
            if !is_scope_token(token) {
                return Err(ScopeError::Malformed);
            }
            if !out.iter().any(|s| s == token) {
                out.push(token.to_owned());
            }
        }
        Ok(Self(out))
    }

    /// Every scope is in `allowed`; otherwise the first that is not.
    pub fn check_allowed(&self, allowed: &[String]) -> Result<(), ScopeError> {
        match self.0.iter().find(|s| !allowed.contains(s)) {
            Some(s) => Err(ScopeError::NotAllowed(s.clone())),
            None => Ok(()),
        }
    }

    /// Whether `scope` is in the set.
    pub fn contains(&self, scope: &str) -> bool {
        self.0.iter().any(|s| s == scope)
    }

    /// Whether every scope of `self` is in `other` (a refresh may narrow, never widen).
    pub fn is_subset_of(&self, other: &Scopes) -> bool {
        self.0.iter().all(|s| other.contains(s))
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The scopes in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }
}

impl fmt::Display for Scopes {
    /// The `scope` parameter form: space-separated.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_space_separated_tokens_without_duplicates() {
        let s = Scopes::parse(Some("openid profile openid email")).unwrap();
        assert_eq!(s.to_string(), "openid profile email");
        assert!(s.contains(OPENID) && !s.contains(OFFLINE_ACCESS));
        assert_eq!(Scopes::parse(None).unwrap(), Scopes::default());
        assert_eq!(Scopes::parse(Some("")).unwrap(), Scopes::default());
        for bad in ["openid  profile", " openid", "openid ", "open\tid", "a\"b"] {
            assert_eq!(
                Scopes::parse(Some(bad)),
                Err(ScopeError::Malformed),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn allowed_and_subset_rules() {
        let allowed = vec!["openid".to_owned(), "email".to_owned()];
        assert_eq!(
            Scopes::parse(Some("openid email"))
                .unwrap()
                .check_allowed(&allowed),
            Ok(())
        );
        assert_eq!(
            Scopes::parse(Some("openid admin"))
                .unwrap()
                .check_allowed(&allowed),
            Err(ScopeError::NotAllowed("admin".into()))
        );
        let granted = Scopes::parse(Some("openid email")).unwrap();
        assert!(Scopes::parse(Some("email")).unwrap().is_subset_of(&granted));
        assert!(
            !Scopes::parse(Some("email profile"))
                .unwrap()
                .is_subset_of(&granted)
        );
    }
}
