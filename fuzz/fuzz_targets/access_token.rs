//! Access-token (JWT) header parsing and verification: never panics; nothing forged verifies.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sessiond::fuzzing::access_token(data));
