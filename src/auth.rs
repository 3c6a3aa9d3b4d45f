//! The flows layer: what the HTTP handlers call to authenticate users and to decide whether an
//! authenticated session may do what it asks.

pub mod reauth;
pub mod reset;
