//! sessiond: an authentication and session service in which every user session is a
//! supervised actor. See ARCHITECTURE.md for the map.
#![warn(missing_docs)]

pub mod accounts;
pub mod api_keys;
pub mod app;
pub mod auth;
pub mod cache;
pub mod cli;
pub mod codes;
pub mod config;
pub mod correlation;
pub mod crypto;
pub mod domain;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod mail;
pub mod media;
pub mod memory;
pub mod metrics;
pub mod mfa;
pub mod ratelimit;
pub mod seed;
pub mod store;
pub mod telemetry;
#[doc(hidden)]
pub mod testing;
