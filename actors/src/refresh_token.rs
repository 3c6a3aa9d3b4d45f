//! Refresh tokens: format, parsing, derivation and hashing. Pure functions, no I/O.
//!
//! Format: `rt1_<session id, base64url>_<secret, base64url of 256 bits>` (no padding).
//!
//! The first secret of a session is random. Each child is *derived*:
//! `child = HMAC-SHA256(refresh_key, session_id (16 bytes) ‖ child_generation (u64 BE) ‖ parent)`.
//! Because the child is a function of the parent, a client retrying with the parent during the
//! grace window gets the very same child back — after a restart or from another instance —
//! without any token ever being stored. Only SHA-256 hashes of secrets are stored.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use rand::Rng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::ids::SessionId;

const PREFIX: &str = "rt1_";
/// Longest token accepted for parsing; anything longer is malformed without further work.
pub const MAX_TOKEN_LEN: usize = 128;

/// A 256-bit refresh secret. Never logged: `Debug` prints a placeholder.
#[derive(Clone, PartialEq, Eq)]
pub struct RefreshSecret([u8; 32]);

impl fmt::Debug for RefreshSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RefreshSecret(..)")
    }
}

impl RefreshSecret {
    /// A fresh random secret from the OS-seeded thread RNG.
    pub fn random() -> Self {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// Wraps raw bytes (tests and derivation).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// SHA-256 of the secret: the only form that is stored.
    pub fn hash(&self) -> TokenHash {
        TokenHash(Sha256::digest(self.0).into())
    }
}

/// SHA-256 of a refresh secret. Compared in constant time.
#[derive(Clone, Copy, Eq)]
pub struct TokenHash(pub [u8; 32]);

impl TokenHash {
    /// The raw digest bytes (for storage).
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// From stored bytes; None unless exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; 32]>::try_from(bytes).ok().map(Self)
    }
}

impl PartialEq for TokenHash {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHash(..)")
    }
}

/// The key refresh secrets are derived with (`SESSIOND_REFRESH_KEY`). Never logged.
///
/// Held as the keyed HMAC state, not the key bytes: keying HMAC-SHA256 hashes the inner and
/// outer pads (two of the five SHA-256 blocks of a derivation), and every refresh derives a
/// child, so the pads are hashed once here and each derivation starts from a copy.
#[derive(Clone)]
pub struct RefreshKey(Hmac<Sha256>);

impl fmt::Debug for RefreshKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RefreshKey(..)")
    }
}

impl RefreshKey {
    /// Wraps key material; HMAC accepts any length, config enforces at least 32 bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        let bytes: Vec<u8> = bytes.into();
        Self(
            <Hmac<Sha256> as KeyInit>::new_from_slice(&bytes)
                .expect("HMAC accepts keys of any length"),
        )
    }

    /// The secret of generation `child_generation`, derived from its parent's secret.
    pub fn derive_child(
        &self,
        session: SessionId,
        child_generation: u64,
        parent: &RefreshSecret,
    ) -> RefreshSecret {
        let mut mac = self.0.clone();
        mac.update(session.as_uuid().as_bytes());
        mac.update(&child_generation.to_be_bytes());
        mac.update(&parent.0);
        RefreshSecret(mac.finalize().into_bytes().into())
    }
}

/// A parsed refresh token: which session it claims, and the secret that proves it.
#[derive(Clone, PartialEq, Eq)]
pub struct RefreshToken {
    /// The session the token names (not yet verified).
    pub session_id: SessionId,
    /// The secret.
    pub secret: RefreshSecret,
}

impl fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshToken")
            .field("session_id", &self.session_id)
            .finish_non_exhaustive()
    }
}

/// Why a token string is not a refresh token. Deliberately coarse: callers answer
/// `invalid_refresh_token` whatever the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed refresh token")]
pub struct MalformedToken;

impl RefreshToken {
    /// Parses `rt1_<sid>_<secret>`; rejects anything else without panicking.
    pub fn parse(s: &str) -> Result<Self, MalformedToken> {
        if s.len() > MAX_TOKEN_LEN {
            return Err(MalformedToken);
        }
        let rest = s.strip_prefix(PREFIX).ok_or(MalformedToken)?;
        // `_` is also a base64url character, so the separator is found by position (the id has
        // a fixed encoded length), not by searching for the first `_`.
        const SID_LEN: usize = (4 * 16usize).div_ceil(3);
        let sid = rest.get(..SID_LEN).ok_or(MalformedToken)?;
        let secret = rest
            .get(SID_LEN..)
            .and_then(|r| r.strip_prefix('_'))
            .ok_or(MalformedToken)?;
        let sid: [u8; 16] = decode_exact(sid)?;
        let secret: [u8; 32] = decode_exact(secret)?;
        Ok(Self {
            session_id: SessionId(Uuid::from_bytes(sid)),
            secret: RefreshSecret(secret),
        })
    }

    /// The wire form. This is a secret: never log it.
    pub fn encode(&self) -> String {
        format!(
            "{PREFIX}{}_{}",
            URL_SAFE_NO_PAD.encode(self.session_id.as_uuid().as_bytes()),
            URL_SAFE_NO_PAD.encode(self.secret.0)
        )
    }
}

fn decode_exact<const N: usize>(s: &str) -> Result<[u8; N], MalformedToken> {
    // base64url without padding: N bytes take exactly ceil(4N/3) characters.
    if s.len() != (4 * N).div_ceil(3) {
        return Err(MalformedToken);
    }
    let bytes = URL_SAFE_NO_PAD.decode(s).map_err(|_| MalformedToken)?;
    bytes.try_into().map_err(|_| MalformedToken)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_then_parse_round_trips() {
        let t = RefreshToken {
            session_id: SessionId::new(),
            secret: RefreshSecret::random(),
        };
        let s = t.encode();
        assert!(s.starts_with("rt1_"));
        assert_eq!(RefreshToken::parse(&s).unwrap(), t);
    }

    #[test]
    fn ids_and_secrets_containing_the_separator_round_trip() {
        // Base64url uses `_` itself: the sid 0xFF.. encodes to `_` characters throughout.
        let t = RefreshToken {
            session_id: SessionId(Uuid::from_bytes([0xFF; 16])),
            secret: RefreshSecret::from_bytes([0xFF; 32]),
        };
        let s = t.encode();
        assert!(s["rt1_".len()..].starts_with("___"));
        assert_eq!(RefreshToken::parse(&s).unwrap(), t);
        for _ in 0..1_000 {
            let t = RefreshToken {
                session_id: SessionId(Uuid::from_bytes(rand::random())),
                secret: RefreshSecret::random(),
            };
            assert_eq!(RefreshToken::parse(&t.encode()).unwrap(), t);
        }
    }

    #[test]
    fn malformed_tokens_are_rejected() {
        let good = RefreshToken {
            session_id: SessionId::new(),
            secret: RefreshSecret::random(),
        }
        .encode();
        for bad in [
            "",
            "rt1_",
            "rt2_",
            "rt1__",
            &good[..good.len() - 1],
            &format!("{good}A"),
            &good.replacen("rt1_", "rt0_", 1),
            &good.replace('_', "."),
            &"a".repeat(10_000),
            "rt1_ÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄ_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ] {
            assert_eq!(RefreshToken::parse(bad), Err(MalformedToken), "{bad:?}");
        }
    }

    #[test]
    fn derivation_is_deterministic_and_depends_on_every_input() {
        let key = RefreshKey::new(vec![7u8; 32]);
        let sid = SessionId::new();
        let parent = RefreshSecret::random();
        let child = key.derive_child(sid, 1, &parent);
        assert_eq!(child, key.derive_child(sid, 1, &parent));
        assert_ne!(child, key.derive_child(sid, 2, &parent));
        assert_ne!(child, key.derive_child(SessionId::new(), 1, &parent));
        assert_ne!(child, key.derive_child(sid, 1, &RefreshSecret::random()));
        assert_ne!(
            child,
            RefreshKey::new(vec![8u8; 32]).derive_child(sid, 1, &parent)
        );
    }

    /// The kept HMAC state gives exactly HMAC-SHA256(key, session ‖ generation ‖ parent), as
    /// documented at the top of this file: tokens issued before the change stay valid.
    #[test]
    fn derivation_is_hmac_sha256_of_the_documented_message() {
        let key_bytes = b"a refresh key of thirty-two bytes or more".to_vec();
        let sid = SessionId::new();
        let parent = RefreshSecret::random();
        let mut message = sid.as_uuid().as_bytes().to_vec();
        message.extend_from_slice(&9u64.to_be_bytes());
        message.extend_from_slice(parent.as_bytes());
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&key_bytes).unwrap();
        mac.update(&message);
        let expected: [u8; 32] = mac.finalize().into_bytes().into();
        let key = RefreshKey::new(key_bytes);
        assert_eq!(key.derive_child(sid, 9, &parent).as_bytes(), &expected);
        // The state is copied per derivation, never advanced: the same inputs again agree.
        assert_eq!(key.derive_child(sid, 9, &parent).as_bytes(), &expected);
    }

    #[test]
    fn hashes_compare_by_value() {
        let s = RefreshSecret::random();
        assert_eq!(s.hash(), s.hash());
        assert_ne!(s.hash(), RefreshSecret::random().hash());
    }
}
