//! The cargo-fuzz targets' checks (`sessiond::fuzzing`, also run by `fuzz/`) as property tests,
//! so every test run exercises them without a nightly toolchain: arbitrary bytes, arbitrary
//! strings, and mutations of real tokens.

use proptest::prelude::*;
use sessiond::fuzzing;
use sessiond_actors::refresh_token::{RefreshSecret, RefreshToken};

fn real_refresh_token() -> String {
    RefreshToken {
        session_id: sessiond_actors::ids::SessionId::new(),
        secret: RefreshSecret::random(),
    }
    .encode()
}

/// A real token with one to four characters replaced, inserted or removed.
fn mutated(base: String) -> impl Strategy<Value = String> {
    let len = base.len();
    proptest::collection::vec((0..=len, 0u8..3, any::<char>()), 1..=4).prop_map(move |edits| {
        let mut chars: Vec<char> = base.chars().collect();
        for (at, kind, c) in edits {
            let at = at.min(chars.len());
            match kind {
                0 if at < chars.len() => chars[at] = c,
                1 => chars.insert(at, c),
                _ if at < chars.len() => {
                    chars.remove(at);
                }
                _ => chars.push(c),
            }
        }
        chars.into_iter().collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn refresh_token_decoding_bytes(data in proptest::collection::vec(any::<u8>(), 0..200)) {
        fuzzing::refresh_token(&data);
    }

    #[test]
    fn refresh_token_decoding_near_misses(s in mutated(real_refresh_token())) {
        fuzzing::refresh_token(s.as_bytes());
    }

    #[test]
    fn refresh_token_decoding_alphabet(s in "rt1_[A-Za-z0-9_=+/-]{0,80}") {
        fuzzing::refresh_token(s.as_bytes());
    }

    #[test]
    fn access_token_bytes(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        fuzzing::access_token(&data);
    }

    #[test]
    fn access_token_json_headers(
        alg in prop_oneof![Just("EdDSA".to_owned()), Just("none".to_owned()), Just("HS256".to_owned()), Just("RS256".to_owned()), "[A-Za-z0-9]{0,8}"],
        typ in prop_oneof![Just("at+jwt".to_owned()), Just("JWT".to_owned()), "[ -~]{0,10}"],
        kid in "[ -~]{0,30}",
        extra in "[ -~]{0,40}",
    ) {
        let header = format!(
            "{{\"alg\":{},\"typ\":{},\"kid\":{}{extra}}}",
            serde_json::Value::from(alg),
            serde_json::Value::from(typ),
            serde_json::Value::from(kid),
        );
        fuzzing::access_token(header.as_bytes());
    }

    #[test]
    fn access_token_segments(s in "[A-Za-z0-9_.=-]{0,400}") {
        fuzzing::access_token(s.as_bytes());
    }
}
