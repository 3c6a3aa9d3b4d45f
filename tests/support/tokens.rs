//! What login and refresh answer, parsed: shared by the `api` and `processes` test crates.

use serde_json::Value;

/// What login and refresh answer, parsed.
#[derive(Clone, Debug)]
pub struct Tokens {
    pub access: String,
    pub refresh: String,
    pub session_id: String,
}

impl Tokens {
    /// Reads a token response; panics naming the body when a token or the session id is
    /// missing.
    pub fn from_body(body: Value) -> Tokens {
        let field = |v: &Value| {
            v.as_str()
                .unwrap_or_else(|| panic!("incomplete token response: {body}"))
                .to_owned()
        };
        Tokens {
            access: field(&body["access_token"]),
            refresh: field(&body["refresh_token"]),
            session_id: field(&body["session"]["id"]),
        }
    }
}
