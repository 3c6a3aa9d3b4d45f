//! The authentication flows, without HTTP: handlers parse, call a flow here, and build the view.

pub mod codes;
