//! The observers installed on the store, the session engine and the hashing pool: each turns
//! the component's reports into Prometheus series.

use std::time::Duration;

use prometheus::{HistogramVec, IntCounter, IntCounterVec};
use sessiond_actors::observe::{MessageKind, SessionObserver};
use sessiond_actors::store::{SessionChange, StoreError};

use crate::crypto::password::HashObserver;
use crate::store::StoreObserver;

/// Store operations that only read.
const READS: &[&str] = &[
    "ping",
    "load_session",
    "find_generation",
    "find_user_by_email",
    "get_user",
    "list_active_sessions",
    "active_session_ids",
    "find_api_key",
    "get_api_key",
    "list_api_keys",
    "list_audit_events",
    "totp_enrolment",
    "mfa_status",
    "unused_recovery_codes",
    "second_factor_lock",
    "newest_verification_code",
    "find_application",
    "list_applications",
    "active_grant_ids",
    "list_grants",
    "list_passkeys",
    "passkey_by_credential_id",
    "find_media",
    "allowed_origins",
    "find_authorization_request",
    "find_spent_authorization_code",
    "find_sso_session",
    "consented_scopes",
    "list_consents",
    "user_grant_ids",
    "find_identity",
    "list_identities",
];

/// Store operations that write.
const WRITES: &[&str] = &[
    "migrate",
    "insert_session",
    "apply",
    "insert_user",
    "purge_ended",
    "create_api_key",
    "revoke_api_key",
    "revoke_all_api_keys",
    "record_api_key_use",
    "insert_application",
    "update_application",
    "delete_application",
    "record_event",
    "begin_totp_enrolment",
    "enable_totp",
    "disable_totp",
    "create_mfa_challenge",
    "attempt_mfa_challenge",
    "complete_mfa_challenge",
    "consume_second_factor",
    "replace_recovery_codes",
    "remove_second_factors_since",
    "put_second_factor_lock",
    "clear_second_factor_lock",
    "set_user_name",
    "set_password_hash",
    "set_user_status",
    "issue_code",
    "take_verification_attempt",
    "redeem_verification_code",
    "purge_verification_codes",
    "insert_webauthn_ceremony",
    "take_webauthn_ceremony",
    "insert_passkey",
    "rename_passkey",
    "delete_passkey",
    "record_passkey_use",
    "set_avatar",
    "set_application_logo",
    "purge_orphaned_media",
    "purge_authorization_requests",
    "insert_authorization_request",
    "delete_authorization_request",
    "purge_authorization_codes",
    "insert_authorization_code",
    "redeem_authorization_code",
    "attach_code_grant",
    "purge_sso_sessions",
    "insert_sso_session",
    "remember_consent",
    "withdraw_consents",
    "insert_oidc_flow",
    "take_oidc_flow",
    "insert_identity",
    "unlink_identity",
    "mark_email_verified",
];

/// `read`, `write`, or `other` for an operation added later and not listed here.
fn kind_of(operation: &str) -> &'static str {
    if READS.contains(&operation) {
        "read"
    } else if WRITES.contains(&operation) {
        "write"
    } else {
        "other"
    }
}

/// Store call durations and errors. Installed with `Store::with_observer`.
pub struct StoreMetrics {
    /// `sessiond_store_operation_duration_seconds{operation, kind}`.
    pub duration: HistogramVec,
    /// `sessiond_store_errors_total{operation, error}`.
    pub errors: IntCounterVec,
}

impl StoreMetrics {
    /// Creates every known operation's series, so rates exist before the first call.
    pub(super) fn init_series(&self) {
        for op in READS.iter().chain(WRITES) {
            self.duration.with_label_values(&[op, kind_of(op)]);
            for error in ["unavailable", "other"] {
                self.errors.with_label_values(&[op, error]);
            }
        }
    }
}

impl StoreObserver for StoreMetrics {
    fn observe(&self, operation: &'static str, elapsed: Duration, error: Option<&StoreError>) {
        if operation == "close" {
            // Shutdown, not traffic.
            return;
        }
        self.duration
            .with_label_values(&[operation, kind_of(operation)])
            .observe(elapsed.as_secs_f64());
        if let Some(error) = error {
            let class = match error {
                StoreError::Unavailable(_) => "unavailable",
                StoreError::Other(_) => "other",
            };
            self.errors.with_label_values(&[operation, class]).inc();
        }
    }
}

/// Session actor handling times, revocations and compromises. Installed with
/// `Sessions::observe`.
pub struct SessionMetrics {
    /// `sessiond_session_message_handling_seconds{kind}`.
    pub handling: HistogramVec,
    /// `sessiond_session_revocations_total{reason}`: revocations committed (an already ended
    /// session is not counted again).
    pub revocations: IntCounterVec,
    /// `sessiond_sessions_compromised_total`.
    pub compromised: IntCounter,
}

impl std::fmt::Debug for SessionMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionMetrics").finish_non_exhaustive()
    }
}

impl SessionMetrics {
    pub(super) fn init_series(&self) {
        for kind in MessageKind::ALL {
            self.handling.with_label_values(&[kind.as_str()]);
        }
    }
}

impl SessionObserver for SessionMetrics {
    fn handled(&self, kind: MessageKind, elapsed: Duration) {
        self.handling
            .with_label_values(&[kind.as_str()])
            .observe(elapsed.as_secs_f64());
    }

    fn committed(&self, change: &SessionChange) {
        match change {
            SessionChange::Rotate { .. } | SessionChange::Authenticate { .. } => {}
            SessionChange::Revoke { reason, .. } => {
                self.revocations.with_label_values(&[reason.as_str()]).inc();
            }
            SessionChange::Compromise { .. } => self.compromised.inc(),
        }
    }
}

/// Password hashing durations, queue waits and refusals. Installed with
/// `PasswordHasher::observe`.
pub struct HashMetrics {
    /// `sessiond_password_hash_duration_seconds{operation}`.
    pub duration: HistogramVec,
    /// `sessiond_password_hash_queue_wait_seconds`.
    pub queue_wait: HistogramVec,
    /// `sessiond_password_hash_refused_total`.
    pub refused: IntCounterVec,
}

impl HashMetrics {
    pub(super) fn init_series(&self) {
        for op in ["hash", "verify"] {
            self.duration.with_label_values(&[op]);
        }
        self.queue_wait.with_label_values(&[] as &[&str]);
        self.refused.with_label_values(&[] as &[&str]);
    }
}

impl HashObserver for HashMetrics {
    fn admitted(&self, wait: Duration) {
        self.queue_wait
            .with_label_values(&[] as &[&str])
            .observe(wait.as_secs_f64());
    }

    fn refused(&self) {
        self.refused.with_label_values(&[] as &[&str]).inc();
    }

    fn ran(&self, operation: &'static str, elapsed: Duration) {
        self.duration
            .with_label_values(&[operation])
            .observe(elapsed.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_are_classified() {
        assert_eq!(kind_of("apply"), "write");
        assert_eq!(kind_of("load_session"), "read");
        assert_eq!(kind_of("something_new"), "other");
    }

    /// Every operation name the store modules report (their `observed("…")` calls) is
    /// classified here, so none lands in `other` and every one has its series from the start.
    #[test]
    fn every_observed_store_operation_is_classified() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/store");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            // Names given to `observed` directly, through `users`' update helper, or as the
            // second argument of `authorize`'s `query_on!` (the first quoted string after it).
            for marker in ["observed(\"", "update_user_with_event(\"", "query_on!(\n"] {
                for part in text.split(marker).skip(1) {
                    let part = if marker.starts_with("query_on") {
                        &part[part.find('"').unwrap() + 1..]
                    } else {
                        part
                    };
                    let name = &part[..part.find('"').unwrap()];
                    assert_ne!(kind_of(name), "other", "{name} in {}", path.display());
                    seen += 1;
                }
            }
        }
        assert!(seen > 30, "found only {seen} observed calls");
    }
}
