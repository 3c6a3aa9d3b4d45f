//! Cryptography: signing keys, access tokens (JWT), password hashing, and two small helpers
//! shared by all of them.

pub mod access_token;
pub mod keys;
pub mod oauth_tokens;
pub mod password;
pub mod priority_scope;

use rand::Rng;
use subtle::ConstantTimeEq;

/// Compares two byte strings in time that depends only on their lengths, never on where they
/// differ, so secrets cannot be guessed byte by byte from response times. Different lengths
/// are unequal (lengths are not secret here: every compared value has a fixed format).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// `N` bytes from the thread-local CSPRNG (ChaCha, seeded and periodically reseeded from the
/// operating system).
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_compares_contents_and_lengths() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn random_bytes_differ_between_calls() {
        let a = random_bytes::<32>();
        let b = random_bytes::<32>();
        assert_ne!(a, b);
        assert_ne!(a, [0u8; 32]);
    }
}
