//! Refresh-token decoding (`RefreshToken::parse`): never panics; accepts only canonical tokens.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sessiond::fuzzing::refresh_token(data));
